"""Feature squeezing (Xu, Evans & Qi, "Feature Squeezing: Detecting Adversarial
Examples in Deep Neural Networks", NDSS 2018).

The score of an image is the largest L1 distance between the classifier's softmax
on the raw input and on each squeezed version; the squeezers are bit-depth
reduction and a 2×2 median filter, the two Xu et al. use for ImageNet besides
non-local means. The threshold is chosen on benign training images at a target
false-positive rate, as in the paper (5 % by default).

Both squeezers work per channel on any ``(N, C, H, W)`` batch, so grey victims (the
1×28×28 Fashion-MNIST CNNs) are squeezed as they are. The defaults stay Xu et al.'s
ImageNet/CIFAR-10 ones (5-bit depth, 2×2 median) for every victim: their MNIST setting
(1-bit depth) binarises Fashion-MNIST's grey textures, which, unlike MNIST's strokes,
carry the class: on 2,000 clean test images ``fashion-mnist-cnn`` keeps its answer on
87.5% of them after 1-bit squeezing (99.8% after 5-bit), and the 5 % FPR threshold
would be 1.64 of the score's maximum 2 (1.00 with 5 bits). Xu et al. did not evaluate
Fashion-MNIST.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def reduce_bit_depth(images: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantise [0, 1] values to ``2**bits`` levels: ``round(x·(2^b−1)) / (2^b−1)``."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be 1..8, got {bits!r}")
    levels = 2 ** bits - 1
    return torch.round(images * levels) / levels


def median_filter(images: torch.Tensor, size: int = 2) -> torch.Tensor:
    """Per-channel ``size``×``size`` median, as ``scipy.ndimage.median_filter``.

    Like scipy (which Xu et al. use) an even window takes the upper of the two
    middle values (rank ``size²//2``) and is anchored so that it covers the pixel
    and its top/left neighbours; borders repeat the edge pixel.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size!r}")
    if size == 1:
        return images
    before, after = size // 2, (size - 1) // 2
    padded = F.pad(images, (before, after, before, after), mode="replicate")
    patches = padded.unfold(2, size, 1).unfold(3, size, 1)
    patches = patches.reshape(*patches.shape[:4], size * size)
    return patches.sort(dim=-1).values[..., (size * size) // 2]


class FeatureSqueezing:
    """The feature-squeezing detector: flags an image when its score exceeds ``threshold``.

    Parameters
    ----------
    bits : int
        Bit depth of the first squeezer (Xu et al. use 5 on ImageNet).
    median : int
        Window of the median-filter squeezer (2 on ImageNet).
    threshold : float, optional
        Set directly or by :meth:`calibrate`.
    """

    def __init__(self, *, bits: int = 5, median: int = 2, threshold: float | None = None):
        self.bits, self.median = int(bits), int(median)
        self.threshold = None if threshold is None else float(threshold)

    def squeezed(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [reduce_bit_depth(images, self.bits), median_filter(images, self.median)]

    @torch.no_grad()
    def score(self, model, images: torch.Tensor, *, probabilities: torch.Tensor | None = None,
              batch_size: int = 16) -> np.ndarray:
        """Max over squeezers of ``‖softmax(x) − softmax(squeeze(x))‖₁``, shape (N,)."""
        scores = []
        for start in range(0, images.shape[0], batch_size):
            batch = images[start:start + batch_size]
            if probabilities is None:
                raw = torch.softmax(model(batch), dim=1)
            else:
                raw = probabilities[start:start + batch_size]
            distances = [(raw - torch.softmax(model(squeezed), dim=1)).abs().sum(dim=1)
                         for squeezed in self.squeezed(batch)]
            scores.append(torch.stack(distances).amax(dim=0).cpu())
        return torch.cat(scores).double().numpy() if scores else np.zeros(0)

    def calibrate(self, benign_scores, *, target_fpr: float = 0.05) -> FeatureSqueezing:
        """Threshold = the ``1 − target_fpr`` quantile of benign training scores."""
        self.threshold = threshold_at_fpr(benign_scores, target_fpr)
        return self

    def flags(self, scores) -> np.ndarray:
        if self.threshold is None:
            raise ValueError("feature squeezing is not calibrated: call calibrate()")
        return np.asarray(scores) > self.threshold


def threshold_at_fpr(benign_scores, target_fpr: float) -> float:
    """Smallest threshold that flags (strictly above) at most ``target_fpr`` of benign scores."""
    scores = np.sort(np.asarray(benign_scores, dtype=float))
    if scores.size == 0:
        raise ValueError("no benign scores to calibrate on")
    if not 0 <= target_fpr < 1:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr!r}")
    allowed = int(np.floor(target_fpr * scores.size))  # benign images allowed above
    return float(scores[scores.size - 1 - allowed])
