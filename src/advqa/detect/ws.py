"""Weighted-stego (WS) residual detector for adversarial examples.

Schöttle, Schlögl, Pasquini and Böhme, "Detecting Adversarial Examples – A Lesson
from Multimedia Security", EUSIPCO 2018, Section III-A: an adversarial
perturbation behaves like a steganographic embedding, so a pixel whose value
cannot be predicted from its neighbours is evidence of tampering. The statistic
is the weighted mean absolute residual of a linear pixel predictor, with the
weights of weighted-stego steganalysis (Ker and Böhme, 2008).

Specification (scale-consistent; the paper's published code mixes pixel scales):

* images ``(N, C, H, W)`` in ``[0, 1]`` are evaluated on the 0–255 scale, one
  channel at a time, and the statistic is averaged over channels;
* prediction ``x̂ = x ⊛ K`` with
  ``K = [[-1/4, 1/2, -1/4], [1/2, 0, 1/2], [-1/4, 1/2, -1/4]]`` on interior pixels;
* local variance of the four neighbours (up, down, left, right), centre excluded,
  ``σ² = Σ (n − mean n)² / 3``;
* weights ``w = 1 / (5 + σ²)`` normalised to sum to one over the interior;
* statistic ``p̂ = Σ w · |x − x̂|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "KERNEL",
    "ROC",
    "WSDetector",
    "roc_from_scores",
    "threshold_from_scores",
    "ws_statistic",
]

#: The linear pixel predictor of Ker and Böhme (2008), used by Schöttle et al.
KERNEL = torch.tensor(
    [[-0.25, 0.5, -0.25], [0.5, 0.0, 0.5], [-0.25, 0.5, -0.25]], dtype=torch.float64
)

_STABILISER = 5.0


def _check(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must be an NCHW tensor, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    if images.shape[2] < 3 or images.shape[3] < 3:
        raise ValueError(
            f"images must be at least 3x3 (the predictor needs interior pixels), "
            f"got H x W = {images.shape[2]} x {images.shape[3]}")
    if images.numel() and not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    if images.numel():
        low, high = images.min().item(), images.max().item()
        if low < 0 or high > 1:
            raise ValueError(
                f"images must lie in [0, 1], found values in [{low:.4g}, {high:.4g}]")
    return images


def ws_statistic(images: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """The weighted-stego residual statistic ``p̂`` of each image.

    Parameters
    ----------
    images : torch.Tensor
        Float ``(N, C, H, W)`` batch with values in ``[0, 1]``, ``H, W >= 3``.
    batch_size : int, optional
        Images processed at once (bounds memory only; results do not depend on it).

    Returns
    -------
    torch.Tensor
        Float64 tensor of shape ``(N,)`` on the CPU: per image, the mean over
        channels of ``Σ w · |x − x̂|`` over interior pixels, on the 0–255 scale.

    Raises
    ------
    ValueError
        If ``images`` is not a finite float NCHW tensor in ``[0, 1]`` of at least 3x3.

    Notes
    -----
    With ``x`` the 0–255 channel, ``x̂ = x ⊛ K`` (valid, interior pixels only),
    ``σ²`` the unbiased variance of the up/down/left/right neighbours and
    ``w ∝ 1 / (5 + σ²)`` normalised over the interior, ``p̂ = Σ w |x − x̂|``.

    References
    ----------
    .. [1] P. Schöttle, A. Schlögl, C. Pasquini and R. Böhme, "Detecting Adversarial
       Examples – A Lesson from Multimedia Security", EUSIPCO 2018, Eq. (3).
    .. [2] A. D. Ker and R. Böhme, "Revisiting weighted stego-image steganalysis",
       Proc. SPIE 6819, 2008.
    """
    images = _check(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = [_statistic(images[start:start + batch_size])
             for start in range(0, images.shape[0], batch_size)]
    if not parts:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat(parts)


def _statistic(images: torch.Tensor) -> torch.Tensor:
    # Shifted views instead of conv2d: the same x ⊛ K, several times faster in float64.
    n, c, h, w = images.shape
    x = images.detach().to("cpu", torch.float64).reshape(n * c, h, w) * 255.0
    up, down = x[:, :-2, 1:-1], x[:, 2:, 1:-1]
    left, right = x[:, 1:-1, :-2], x[:, 1:-1, 2:]
    corners = x[:, :-2, :-2] + x[:, :-2, 2:] + x[:, 2:, :-2] + x[:, 2:, 2:]
    cross = up + down + left + right
    predicted = 0.5 * cross - 0.25 * corners                  # x ⊛ K, interior only
    mean = cross / 4
    variance = ((up - mean) ** 2 + (down - mean) ** 2 + (left - mean) ** 2
                + (right - mean) ** 2) / 3                    # Σ (n − mean)² / 3
    weights = 1.0 / (_STABILISER + variance)
    weights = weights / weights.sum(dim=(1, 2), keepdim=True)
    per_channel = (weights * (x[:, 1:-1, 1:-1] - predicted).abs()).sum(dim=(1, 2))
    return per_channel.view(n, c).mean(dim=1)


def threshold_from_scores(scores, target_fpr: float | None = None) -> float:
    """Detection threshold for benign ``scores`` (images are flagged when ``p̂ > threshold``).

    Parameters
    ----------
    scores : array-like
        Statistics of benign calibration images.
    target_fpr : float, optional
        ``None`` (default) or ``0``: the maximum score, so no calibration image is
        flagged (the paper's choice). Otherwise the order statistic
        ``s_(n − ⌊target_fpr · n⌋)`` (1-based, ascending), so at most
        ``⌊target_fpr · n⌋`` calibration images are flagged (exactly that many when
        there are no ties).
    """
    values = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("cannot calibrate on zero images")
    if not np.isfinite(values).all():
        raise ValueError("calibration scores contain NaN or infinite values")
    if target_fpr is None:
        return float(values[-1])
    if not (0.0 <= target_fpr < 1.0):
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr!r}")
    allowed = int(np.floor(target_fpr * values.size + 1e-9))
    return float(values[values.size - 1 - allowed])


@dataclass(frozen=True)
class ROC:
    """Receiver operating characteristic: adversarial is the positive class."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float

    def __iter__(self):
        return iter((self.fpr, self.tpr, self.thresholds, self.auc))


def roc_from_scores(benign_scores, adversarial_scores) -> ROC:
    """ROC and AUC of scores (higher = more adversarial), via :mod:`sklearn.metrics`."""
    from sklearn.metrics import auc, roc_curve

    benign = np.asarray(benign_scores, dtype=np.float64).ravel()
    adversarial = np.asarray(adversarial_scores, dtype=np.float64).ravel()
    if benign.size == 0 or adversarial.size == 0:
        raise ValueError("ROC needs at least one benign and one adversarial score")
    truth = np.concatenate([np.zeros(benign.size), np.ones(adversarial.size)])
    fpr, tpr, thresholds = roc_curve(truth, np.concatenate([benign, adversarial]))
    return ROC(fpr=fpr, tpr=tpr, thresholds=thresholds, auc=float(auc(fpr, tpr)))


class WSDetector:
    """Flag an image as adversarial when its WS statistic exceeds a threshold.

    Parameters
    ----------
    threshold : float, optional
        Set directly, or later by :meth:`calibrate`.

    Examples
    --------
    >>> detector = WSDetector().calibrate(benign)          # doctest: +SKIP
    >>> flags = detector.predict(adversarial)               # doctest: +SKIP
    >>> fpr, tpr, thresholds, auc = detector.roc(benign_test, adversarial)  # doctest: +SKIP

    References
    ----------
    .. [1] P. Schöttle, A. Schlögl, C. Pasquini and R. Böhme, "Detecting Adversarial
       Examples – A Lesson from Multimedia Security", EUSIPCO 2018.
    """

    def __init__(self, threshold: float | None = None):
        self.threshold = None if threshold is None else float(threshold)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """:func:`ws_statistic` of ``images``."""
        return ws_statistic(images)

    def calibrate(self, benign_images: torch.Tensor, *,
                  target_fpr: float | None = None) -> WSDetector:
        """Set the threshold from benign images; see :func:`threshold_from_scores`.

        By default the threshold is the largest benign statistic, so no
        calibration image is flagged (flags are strictly greater). Returns ``self``.
        """
        self.threshold = threshold_from_scores(ws_statistic(benign_images), target_fpr)
        return self

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Boolean ``(N,)``: ``True`` where ``p̂ > threshold`` (flagged as adversarial)."""
        if self.threshold is None:
            raise ValueError("detector is not calibrated: call calibrate() or set threshold")
        return ws_statistic(images) > self.threshold

    def roc(self, benign: torch.Tensor, adversarial: torch.Tensor) -> ROC:
        """ROC of the statistic on benign vs adversarial images (threshold-free)."""
        return roc_from_scores(ws_statistic(benign), ws_statistic(adversarial))

    def __repr__(self) -> str:
        return f"WSDetector(threshold={self.threshold!r})"
