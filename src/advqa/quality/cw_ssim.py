"""Complex wavelet structural similarity (CW-SSIM), batched and differentiable.

Sampat, Wang, Gupta, Bovik and Markey, "Complex Wavelet Structural Similarity: A New Image
Similarity Index", IEEE Trans. Image Processing 18(11), 2009.

The computation follows the authors' release ``cwssim_index.m`` as the common benchmark
evaluations run it, ``cwssim_index(double(rgb2gray(ref)), double(rgb2gray(dist)), 4, 8, 0,
0)`` (four scales, eight orientations, no guard band, K = 0; e.g. the IQA-PyTorch calibration
against MATLAB). The release's help example, ``cwssim_index(img1, img2, 6, 16, 0, 0)``, stays
available as ``levels=6, orientations=16``; its values are far higher (0.94 instead of 0.28
on a heavily distorted TID2013 pair), so the setting must be reported with any number.

* a complex steerable pyramid (``buildSCFpyr`` of Simoncelli's matlabPyrTools, built in the
  frequency domain as that function does) with ``levels`` scales and ``orientations`` bands
  (``buildSCFpyr`` order ``orientations − 1``, at most 15);
* only the oriented sub-bands of the coarsest scale (scale ``levels``) are compared;
* in each sub-band the local index ``(2|Σ c₁c₂*| + K) / (Σ|c₁|² + Σ|c₂|² + K)`` is computed over
  a sliding 7×7 uniform window (``filter2(ones(7)/49, ·, 'valid')``), with ``K = 0``;
* the index map is pooled with a Gaussian weighting (``fspecial('gaussian', s - 6, s₁/4)``,
  ``s`` the sub-band size) and the sub-band scores are averaged;
* no guard band (``guardb = 0``).

The transition masks of the pyramid are evaluated in closed form (``cos``/``sin`` of the log
radius, ``cosᵒʳᵈᵉʳ`` of the angle) instead of through the 256- and 1024-entry lookup tables
that ``buildSCFpyr`` interpolates; the indices agree to better than 1e-6.

Input: colour images become ``double(rgb2gray(·))`` of the uint8 image — grey levels rounded
to integers (:func:`advqa.quality.matlab.release_grey`), with a straight-through gradient;
``conversion="rgb2gray-double"`` skips the rounding (advqa's default before 0.3).

``buildSCFpyr`` accepts at most ``floor(log2(min(H, W))) - 2`` scales, so four scales need
images of at least 64×64 (six: 256×256). By default (``levels=None``) four are used when the
images allow it and otherwise as many as they allow (3 for 32–63 pixels, …), so that every
batch of one size is scored with one setting; an explicit ``levels`` is used as given or
refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advqa.quality.matlab import release_grey
from advqa.quality.validate import check_pair

LEVELS = 4
ORIENTATIONS = 8
WINDOW = 7
MATLAB_EPS = 2.220446049250313e-16


def max_levels(height: int, width: int) -> int:
    """The most pyramid scales ``buildSCFpyr`` allows for an image of this size."""
    return math.floor(math.log2(min(height, width))) - 2


def min_size(levels: int = LEVELS) -> int:
    """The smallest image side that allows ``levels`` scales."""
    return 2 ** (levels + 2)


def _frequency_grid(height: int, width: int, dtype: torch.dtype, device: torch.device):
    """Log2 radius (1 = Nyquist) and angle of each ``fftshift``-ed DFT sample."""
    cy, cx = height // 2, width // 2  # MATLAB's ceil((n + 0.5) / 2), 0-based
    y = (torch.arange(height, dtype=dtype, device=device) - cy) / (height / 2)
    x = (torch.arange(width, dtype=dtype, device=device) - cx) / (width / 2)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    angle = torch.atan2(yy, xx)
    radius = torch.sqrt(xx**2 + yy**2)
    radius[cy, cx] = radius[cy, cx - 1]  # as buildSCFpyr: no log of 0 at DC
    return torch.log2(radius), angle


def _high_mask(log_rad: torch.Tensor, level: int) -> torch.Tensor:
    """Raised-cosine high-pass ``Yrcos`` with its transition ``level`` octaves below Nyquist."""
    return torch.cos(math.pi / 2 * (log_rad + level).clamp(-1.0, 0.0))


def _low_mask(log_rad: torch.Tensor, level: int) -> torch.Tensor:
    """The complementary low-pass ``YIrcos = sqrt(1 - Yrcos²)``."""
    return torch.sin(math.pi / 2 * (log_rad + level).clamp(-1.0, 0.0)).abs()


def _angle_masks(angle: torch.Tensor, orientations: int) -> torch.Tensor:
    """One-sided angular masks of the complex pyramid, (orientations, h, w)."""
    order = orientations - 1
    const = (2 ** (2 * order)) * math.factorial(order) ** 2 / (
        orientations * math.factorial(2 * order))
    masks = []
    for band in range(orientations):
        x = angle - math.pi * band / orientations
        alfa = torch.remainder(math.pi + x, 2 * math.pi) - math.pi
        masks.append(2 * math.sqrt(const) * torch.cos(x) ** order * (alfa.abs() < math.pi / 2))
    return torch.stack(masks)


def _crop_indices(size: int) -> tuple[int, int]:
    """buildSCFpyrLevs' low-pass crop of a centred DFT axis: (start, length), 0-based."""
    centre = math.ceil((size + 0.5) / 2)
    low = math.ceil((size - 0.5) / 2)
    low_centre = math.ceil((low + 0.5) / 2)
    return centre - low_centre, low


def coarsest_bands(images: torch.Tensor, levels: int = LEVELS,
                   orientations: int = ORIENTATIONS) -> torch.Tensor:
    """Complex sub-bands of the coarsest scale of ``buildSCFpyr(images, levels, orientations-1)``.

    Parameters
    ----------
    images : torch.Tensor
        Real (N, 1, H, W) grey images.
    levels, orientations : int
        Pyramid height and number of oriented bands.

    Returns
    -------
    torch.Tensor
        Complex (N, orientations, h, w), the bands ``pyrBand(pyr, pind, (levels-1)·or + 1 + b)``.
    """
    height, width = images.shape[-2:]
    log_rad, angle = _frequency_grid(height, width, images.dtype, images.device)
    dft = torch.fft.fftshift(torch.fft.fft2(images[:, 0]), dim=(-2, -1))
    dft = dft * _low_mask(log_rad, 0)
    for level in range(1, levels):
        (top, rows), (left, cols) = _crop_indices(dft.shape[-2]), _crop_indices(dft.shape[-1])
        log_rad = log_rad[top:top + rows, left:left + cols]
        angle = angle[top:top + rows, left:left + cols]
        dft = dft[..., top:top + rows, left:left + cols] * _low_mask(log_rad, level)
    masks = _angle_masks(angle, orientations) * _high_mask(log_rad, levels)
    phase = (1, -1j, -1, 1j)[(orientations - 1) % 4]  # (-i)^(nbands-1)
    band_dft = phase * dft[:, None] * masks
    return torch.fft.ifft2(torch.fft.ifftshift(band_dft, dim=(-2, -1)))


def _fspecial_gaussian(rows: int, cols: int, sigma: float, dtype, device) -> torch.Tensor:
    """MATLAB ``fspecial('gaussian', [rows cols], sigma)``."""
    y = torch.arange(rows, dtype=dtype, device=device) - (rows - 1) / 2
    x = torch.arange(cols, dtype=dtype, device=device) - (cols - 1) / 2
    kernel = torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    kernel = torch.where(kernel < MATLAB_EPS * kernel.max(), 0.0, kernel)
    return kernel / kernel.sum()


def _window_mean(values: torch.Tensor) -> torch.Tensor:
    """``filter2(ones(7)/49, values, 'valid')`` over the last two axes."""
    return F.avg_pool2d(values, WINDOW, stride=1)


def cw_ssim_bands(band1: torch.Tensor, band2: torch.Tensor, *, k: float = 0.0,
                  sigma: float | None = None) -> torch.Tensor:
    """CW-SSIM of matching complex sub-bands (N, B, h, w), pooled per band → (N, B).

    ``sigma`` is the standard deviation of the Gaussian pooling window (default ``h / 4``).
    """
    rows, cols = band1.shape[-2:]
    if min(rows, cols) < WINDOW:
        raise ValueError(f"sub-bands of {rows}×{cols} are smaller than the {WINDOW}×{WINDOW} "
                         "window; use fewer levels or larger images")
    corr = band1 * band2.conj()
    varr = band1.real**2 + band1.imag**2 + band2.real**2 + band2.imag**2
    corr_band = torch.complex(_window_mean(corr.real), _window_mean(corr.imag))
    varr_band = _window_mean(varr)
    numerator = 2 * corr_band.abs() + k
    denominator = varr_band + k
    # K = 0 leaves 0/0 where both bands vanish (MATLAB gives NaN there); call that a match.
    defined = denominator > 0
    cssim_map = torch.where(defined, numerator, 1.0) / torch.where(defined, denominator, 1.0)
    weights = _fspecial_gaussian(rows - WINDOW + 1, cols - WINDOW + 1,
                                 rows / 4 if sigma is None else sigma,
                                 cssim_map.dtype, cssim_map.device)
    return (cssim_map * weights).sum(dim=(-2, -1))


def _check_settings(height: int, width: int, levels: int, orientations: int,
                    guard_band: int) -> None:
    if not 1 <= orientations <= 16:
        raise ValueError(f"orientations must lie in 1..16 (buildSCFpyr order 0..15), "
                         f"got {orientations}")
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    allowed = max_levels(height, width)
    if levels > allowed:
        hint = (f"pass levels={allowed} or fewer" if allowed >= 1 else
                f"CW-SSIM needs at least {min_size(1)}×{min_size(1)}")
        raise ValueError(
            f"CW-SSIM with levels={levels} needs images of at least {min_size(levels)}×"
            f"{min_size(levels)} (the complex steerable pyramid allows "
            f"floor(log2(min(H, W))) - 2 scales); these are {height}×{width}: {hint}")
    if guard_band < 0:
        raise ValueError(f"guard_band must be non-negative, got {guard_band}")


def default_levels(height: int, width: int) -> int:
    """The default four scales, or as many as an image of this size allows."""
    return max(1, min(LEVELS, max_levels(height, width)))


def cw_ssim(reference: torch.Tensor, distorted: torch.Tensor, *, data_range: float = 1.0,
            clamp: bool = False, levels: int | None = None, orientations: int = ORIENTATIONS,
            guard_band: int = 0, k: float = 0.0,
            conversion: str = "rgb2gray") -> torch.Tensor:
    """Complex wavelet SSIM of each distorted image against its reference.

    Parameters
    ----------
    reference, distorted : torch.Tensor
        (N, C, H, W) batches with C in {1, 3} and values in [0, data_range]; at least
        ``2**(levels + 2)`` pixels on each side (64 for four scales, 8 at the very least).
    data_range : float
        Largest pixel value (1.0 or 255.0).
    clamp : bool
        Clamp out-of-range values instead of raising.
    levels : int, optional
        Scales of the complex steerable pyramid; only the coarsest one is compared
        (benchmark setting: 4; the release's help example: 6). ``None``: 4, or as many as
        the image size allows (:func:`default_levels`).
    orientations : int
        Oriented sub-bands per scale, at most 16 (benchmark setting: 8; help example: 16).
    guard_band : int
        Pixels (at full resolution) discarded at each border; ``guard_band // 2**(levels-1)``
        are cut from the sub-bands. The reference runs only with 0, the default.
    k : float
        Stabilising constant K on the 0–255 scale (reference: 0).
    conversion : {"rgb2gray", "rgb2gray-double", "luma"}
        Colour to grey (:func:`advqa.quality.matlab.release_grey`); ``"rgb2gray"`` is the
        release's input, ``double(rgb2gray(imread(file)))``.

    Returns
    -------
    torch.Tensor
        (N,) scores in [0, 1], 1 for identical images; higher is better. Differentiable with
        respect to both inputs.
    """
    reference, distorted = check_pair(reference, distorted, data_range=data_range, clamp=clamp)
    height, width = reference.shape[-2:]
    if levels is None:
        levels = default_levels(height, width)
    _check_settings(height, width, levels, orientations, guard_band)
    both = release_grey(torch.cat([reference, distorted]), data_range, conversion)
    bands = coarsest_bands(both, levels, orientations)
    band1, band2 = bands[: len(reference)], bands[len(reference):]
    sigma = band1.shape[-2] / 4  # from the uncut sub-band, as the reference
    cut = guard_band // 2 ** (levels - 1)
    if cut:
        band1 = band1[..., cut:-cut, cut:-cut]
        band2 = band2[..., cut:-cut, cut:-cut]
    return cw_ssim_bands(band1, band2, k=k, sigma=sigma).mean(dim=-1)


class CWSSIM(nn.Module):
    """:func:`cw_ssim` as a module: ``CWSSIM()(distorted, reference)`` → (N,) scores."""

    def __init__(self, *, data_range: float = 1.0, clamp: bool = False,
                 levels: int | None = None,
                 orientations: int = ORIENTATIONS, guard_band: int = 0, k: float = 0.0,
                 conversion: str = "rgb2gray"):
        super().__init__()
        self.options = dict(data_range=data_range, clamp=clamp, levels=levels,
                            orientations=orientations, guard_band=guard_band, k=k,
                            conversion=conversion)

    def forward(self, distorted: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return cw_ssim(reference, distorted, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())
