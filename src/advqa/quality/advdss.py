"""AdvDSS: a saliency-then-structure quality index for adversarial examples.

Paper: the AdvDSS/AEQA paper (ACM MM 2024), section 4.1, Eq. 2–7. The paper
leaves details open; this module implements advqa's specification of it:

1. **Luma.** RGB is converted to BT.601 luma as MATLAB's ``rgb2ycbcr`` does,
   ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with RGB in [0, 1]. A single
   channel is taken as Y on a 0–255 scale.
2. **Gamma correction** (Eq. 2). ``Ŷ = 255 · (Y/255)^(1/2.2)``.
3. **CSF** (Eq. 3–6): Mannos–Sakrison with Daly's adjustment, MAD's constants.
   On an M×N image ``fu = fftfreq(M)``, ``fv = fftfreq(N)``,
   ``f = sqrt(fu² + fv²) · ppd`` (cycles/degree, ppd = 64 by default),
   ``θ = atan2(fv, fu)``, ``f_θ = f / (0.15 cos 4θ + 0.85)``,
   ``H = 2.6 (0.0192 + 0.114 f_θ) exp(−(0.114 f_θ)^1.1)``, and ``H = 0.9809``
   where ``f_θ < 7.8909``. ``Y' = real(ifft2(H · fft2(Ŷ)))``. H is real and
   point-symmetric, so the real FFT gives the same result at half the cost.
4. **Saliency map.** ``S = Ŷ − Y'``.
5. **Structure** (Eq. 7). An 11×11 Gaussian window (σ = 1.5, normalised,
   'valid', no downsampling); ``C1 = (0.01·255)²``, ``C2 = (0.03·255)²``,
   ``C3 = C2/2``; variances clamped at 0;
   ``l = (2μaμb + C1)/(μa² + μb² + C1)``, ``c = (2σaσb + C2)/(σa² + σb² + C2)``,
   ``s = (σab + C3)/(σaσb + C3)``; map ``max(l,0)^λ1 · c^λ2 · max(s,0)^λ3``
   with ``(λ1, λ2, λ3) = (1, 0.48, 0.48)``. AdvDSS is the mean of the map:
   one value per image, 1 for identical images.

Ablations (the paper's Table 4): ``gamma_correction=False`` skips step 2,
``csf=False`` uses the (gamma-corrected) luma itself instead of the residual;
both False give exponent-SSIM on Y.

Gradients: powers are evaluated through a safe branch so that zero bases
(flat regions, clamped terms) give zero gradients instead of NaN.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advqa.quality.filters import separable_valid
from advqa.quality.validate import check_pair, ycbcr_luma

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
GAMMA = 1 / 2.2
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
C3 = C2 / 2


def safe_power(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """``max(base, 0) ** exponent`` with a finite gradient everywhere."""
    if exponent == 1:
        return base.clamp_min(0)
    positive = base > 0
    return torch.where(positive, torch.where(positive, base, 1.0) ** exponent, 0.0)


def csf_response(height: int, width: int, pixels_per_degree: float, *, device=None,
                 dtype=torch.float32) -> torch.Tensor:
    """Mannos–Sakrison CSF with Daly's adjustment on the rFFT grid, shape (H, W//2 + 1)."""
    fu = torch.fft.fftfreq(height, device=device, dtype=torch.float64)[:, None]
    fv = torch.fft.rfftfreq(width, device=device, dtype=torch.float64)[None, :]
    frequency = torch.sqrt(fu**2 + fv**2) * pixels_per_degree
    angle = torch.atan2(fv, fu)
    adjusted = frequency / (0.15 * torch.cos(4 * angle) + 0.85)
    response = 2.6 * (0.0192 + 0.114 * adjusted) * torch.exp(-((0.114 * adjusted) ** 1.1))
    return torch.where(adjusted < 7.8909, 0.9809, response).to(dtype)


def saliency(images: torch.Tensor, *, data_range: float = 1.0, gamma_correction: bool = True,
             csf: bool = True, pixels_per_degree: float = 64.0) -> torch.Tensor:
    """Steps 1–4: the map whose structure AdvDSS compares, (N, 1, H, W) on a 0–255 scale."""
    luma = ycbcr_luma(images, data_range)
    if gamma_correction:
        luma = 255.0 * safe_power(luma / 255.0, GAMMA)
    if not csf:
        return luma
    response = csf_response(*luma.shape[-2:], pixels_per_degree, device=luma.device,
                            dtype=luma.dtype)
    filtered = torch.fft.irfft2(torch.fft.rfft2(luma) * response, s=luma.shape[-2:])
    return luma - filtered


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA, *, device=None,
                    dtype=torch.float32) -> torch.Tensor:
    """The normalised 1-D Gaussian whose outer product is the 2-D window."""
    positions = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    weights = torch.exp(-(positions**2) / (2 * sigma**2))
    return (weights / weights.sum()).to(dtype)


def structure_map(a: torch.Tensor, b: torch.Tensor,
                  exponents: tuple[float, float, float] = (1.0, 0.48, 0.48)) -> torch.Tensor:
    """``max(l,0)^λ1 · c^λ2 · max(s,0)^λ3`` over 'valid' 11×11 Gaussian windows."""
    window = gaussian_window(device=a.device, dtype=a.dtype)
    # One filtering pass over the five stacked moments instead of five passes.
    moments = separable_valid(torch.cat([a, b, a * a, b * b, a * b], dim=1), window)
    mean_a, mean_b = moments[:, 0], moments[:, 1]
    variance_a = (moments[:, 2] - mean_a**2).clamp_min(0)
    variance_b = (moments[:, 3] - mean_b**2).clamp_min(0)
    covariance = moments[:, 4] - mean_a * mean_b
    deviations = torch.sqrt((variance_a * variance_b).clamp_min(1e-12))
    luminance = (2 * mean_a * mean_b + C1) / (mean_a**2 + mean_b**2 + C1)
    contrast = (2 * deviations + C2) / (variance_a + variance_b + C2)
    structure = (covariance + C3) / (deviations + C3)
    first, second, third = exponents
    return (safe_power(luminance, first) * safe_power(contrast, second)
            * safe_power(structure, third))


def advdss(*, reference: torch.Tensor, distorted: torch.Tensor, data_range: float = 1.0,
           exponents: tuple[float, float, float] = (1.0, 0.48, 0.48),
           gamma_correction: bool = True, csf: bool = True,
           pixels_per_degree: float = 64.0, clamp: bool = False) -> torch.Tensor:
    """AdvDSS of each distorted image against its reference; higher is better, 1 = identical.

    The images are keyword arguments: the functions of :mod:`advqa.quality` take
    ``(reference, distorted)`` while a metric module is called ``(distorted, reference)``
    (piq's order), and AdvDSS, the metric people call most by hand, should not depend on
    remembering which.

    Parameters
    ----------
    reference, distorted : torch.Tensor
        (N, 3, H, W) or (N, 1, H, W) in [0, data_range]; H, W ≥ 11.
    data_range : float
        Value of white.
    exponents : (float, float, float)
        (λ1, λ2, λ3) of the luminance, contrast and structure terms.
    gamma_correction, csf : bool
        The saliency front end's steps; switch off for the paper's ablations.
    pixels_per_degree : float
        Viewing resolution of the CSF, in pixels per degree of visual angle.
    clamp : bool
        Clamp out-of-range inputs instead of raising.

    Returns
    -------
    torch.Tensor
        Shape (N,); differentiable with respect to ``distorted``.

    References
    ----------
    .. [1] AdvDSS/AEQA paper, ACM MM 2024, section 4.1.
    .. [2] Mannos & Sakrison, "The effects of a visual fidelity criterion on the
       encoding of images", IEEE Trans. Inf. Theory, 1974; Daly, "Subroutine for
       the generation of a two-dimensional human visual contrast sensitivity
       function", 1987.
    .. [3] Wang et al., "Image quality assessment: from error visibility to
       structural similarity", IEEE TIP, 2004.
    """
    reference, distorted = check_pair(reference, distorted, data_range=data_range,
                                      min_size=WINDOW_SIZE, clamp=clamp)
    if len(exponents) != 3 or not all(math.isfinite(e) and e >= 0 for e in exponents):
        raise ValueError(f"exponents must be three finite numbers >= 0, got {exponents!r}")
    front_end = {"data_range": data_range, "gamma_correction": gamma_correction, "csf": csf,
                 "pixels_per_degree": pixels_per_degree}
    maps = structure_map(saliency(reference, **front_end), saliency(distorted, **front_end),
                         tuple(exponents))
    return maps.flatten(1).mean(dim=1)


class AdvDSS(nn.Module):
    """Module form of :func:`advdss`; ``forward(distorted, reference)``."""

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, distorted: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return advdss(reference=reference, distorted=distorted, **self.options)
