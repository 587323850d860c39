"""Classical full-reference metrics through piq (Apache-2.0), with advqa's conventions.

Each function takes ``(reference, distorted)`` batches in [0, data_range],
validates them with :mod:`advqa.quality.validate`, and returns (N,) scores.
piq's implementations follow the authors' MATLAB code; the choices below make
the inputs match what that code expects.

- ``psnr``: MSE over all channels, as MATLAB's ``psnr`` on RGB.
- ``ssim``: Wang et al.'s ``ssim.m`` — on BT.601 luma (0–255), 11×11 Gaussian
  σ = 1.5, K = (0.01, 0.03), automatic downsampling by
  ``max(1, round(min(H, W)/256))``; ``downsample=False`` gives the older
  ``ssim_index.m``, which never downsamples.
- ``ms_ssim``: Wang, Simoncelli & Bovik's ``msssim.m`` on luma, five scales.
- ``fsim``: Zhang et al.'s FSIMc on RGB (FSIM on one channel).
- ``gmsd``: Xue et al.'s GMSD (lower is better).
- ``vif``: Sheikh & Bovik's VIF in its pixel-domain form (VIFp, ``vifvec``'s
  multi-scale spatial variant), as piq implements it.
- ``vsi``: Zhang, Shen & Li's VSI (needs colour; grey input is replicated).
"""

from __future__ import annotations

import piq
import torch
import torch.nn.functional as F

from advqa.quality.advdss import gaussian_window
from advqa.quality.filters import separable_valid
from advqa.quality.validate import check_pair, ycbcr_luma

# msssim.m filters five scales with an 11×11 window: the smallest side must
# survive four halvings.
MS_SSIM_MIN_SIZE = 11 * 2**4


def _pair(reference, distorted, data_range, clamp, min_size=1):
    reference, distorted = check_pair(reference, distorted, data_range=data_range,
                                      min_size=min_size, clamp=clamp)
    return reference / data_range, distorted / data_range


def _colour(images: torch.Tensor) -> torch.Tensor:
    return images if images.shape[1] == 3 else images.repeat(1, 3, 1, 1)


def psnr(reference, distorted, *, data_range=1.0, clamp=False):
    """Peak signal-to-noise ratio in dB; higher is better."""
    reference, distorted = _pair(reference, distorted, data_range, clamp)
    return piq.psnr(distorted, reference, data_range=1.0, reduction="none")


def ssim(reference, distorted, *, data_range=1.0, clamp=False, downsample=True):
    """SSIM of Wang et al. (2004) as ``ssim.m`` (or, undownsampled, ``ssim_index.m``) on luma.

    Same computation as ``piq.ssim`` on the luma (its downsampling rule, an 11×11
    Gaussian window with σ = 1.5, 'valid' filtering, K = (0.01, 0.03)), but the five
    local moments are filtered in one separable SciPy pass: forward + backward is
    several times faster on CPU, which attacks on SSIM spend all their time in.
    """
    reference, distorted = _pair(reference, distorted, data_range, clamp, min_size=11)
    luma_distorted = ycbcr_luma(distorted) / 255
    luma_reference = ycbcr_luma(reference) / 255
    factor = max(1, round(min(luma_distorted.shape[-2:]) / 256))
    if factor > 1 and downsample:
        luma_distorted = F.avg_pool2d(luma_distorted, kernel_size=factor)
        luma_reference = F.avg_pool2d(luma_reference, kernel_size=factor)
    return ssim_index(luma_distorted, luma_reference)


def ssim_index(x: torch.Tensor, y: torch.Tensor, *, k1: float = 0.01,
               k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM map of one-channel [0, 1] batches over 'valid' 11×11 Gaussian windows."""
    window = gaussian_window(device=x.device, dtype=x.dtype)
    moments = separable_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mean_x, mean_y = moments[:, 0], moments[:, 1]
    variance_x = moments[:, 2] - mean_x**2
    variance_y = moments[:, 3] - mean_y**2
    covariance = moments[:, 4] - mean_x * mean_y
    constant1, constant2 = k1**2, k2**2
    luminance = (2 * mean_x * mean_y + constant1) / (mean_x**2 + mean_y**2 + constant1)
    contrast_structure = (2 * covariance + constant2) / (variance_x + variance_y + constant2)
    return (luminance * contrast_structure).mean(dim=(-1, -2))


def ms_ssim(reference, distorted, *, data_range=1.0, clamp=False):
    """Multi-scale SSIM (Wang, Simoncelli & Bovik, 2003) on luma."""
    reference, distorted = _pair(reference, distorted, data_range, clamp,
                                 min_size=MS_SSIM_MIN_SIZE)
    return piq.multi_scale_ssim(ycbcr_luma(distorted), ycbcr_luma(reference),
                                data_range=255.0, reduction="none")


def fsim(reference, distorted, *, data_range=1.0, clamp=False):
    """FSIMc (Zhang, Zhang, Mou & Zhang, 2011); FSIM on one-channel input."""
    reference, distorted = _pair(reference, distorted, data_range, clamp, min_size=7)
    chromatic = reference.shape[1] == 3
    return piq.fsim(distorted, reference, data_range=1.0, chromatic=chromatic,
                    reduction="none")


def gmsd(reference, distorted, *, data_range=1.0, clamp=False):
    """Gradient magnitude similarity deviation (Xue, Zhang, Mou & Bovik, 2014); lower is better."""
    reference, distorted = _pair(reference, distorted, data_range, clamp, min_size=7)
    return piq.gmsd(distorted, reference, data_range=1.0, reduction="none")


def vif(reference, distorted, *, data_range=1.0, clamp=False):
    """Pixel-domain visual information fidelity (Sheikh & Bovik, 2006)."""
    reference, distorted = _pair(reference, distorted, data_range, clamp, min_size=41)
    return piq.vif_p(distorted, reference, data_range=1.0, reduction="none")


def vsi(reference, distorted, *, data_range=1.0, clamp=False):
    """Visual saliency-induced index (Zhang, Shen & Li, 2014)."""
    reference, distorted = _pair(reference, distorted, data_range, clamp, min_size=7)
    return piq.vsi(_colour(distorted), _colour(reference), data_range=1.0, reduction="none")
