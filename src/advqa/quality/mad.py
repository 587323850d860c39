"""MAD, "Most Apparent Distortion", in PyTorch: batched and differentiable.

Paper: E. C. Larson and D. M. Chandler, "Most apparent distortion: full-reference
image quality assessment and the role of strategy", *Journal of Electronic Imaging*
19(1), 011006 (2010).

Source followed: Larson's ``MAD_index.m`` of the 2011 release (changelog ending
"2011: (september) Mad is now faster!", distributed as ``MAD_index_2011_10_07``)
together with its two mex helpers ``ical_std.c`` (detection statistics) and
``ical_stat.c`` (appearance statistics). The constants and the exact arithmetic of
that code are reproduced, not the paper's prose where the two differ:

Detection, ``d_detect`` (MATLAB's ``index.HI``)
    * grey levels ``I`` (0–255) → ``L = k·I^(2.2/3)`` with ``k = 0.02874``: the code
      keeps ``k`` outside the cube root (the paper's ``((k·I)^2.2)^(1/3)`` would be
      2.58 times larger, which matters for the luminance threshold ``G`` below);
    * CSF filtering in the frequency domain, ``make_csf(M, N, 32)'``: the grid
      ``-M/2+0.5 : M/2-0.5`` (half a sample off centre for even sizes) and *both*
      axes divided by the column count ``N``, radial frequency ``|f|·2·32/N``,
      angular term ``s = 0.15·cos 4θ + 0.85`` dividing it,
      ``2.6(0.0192 + 0.114f)·exp(-(0.114f)^1.1)`` and the plateau 0.9809 below
      7.8909; ``real(ifft2(ifftshift(fftshift(fft2(L)).*csf)))``;
    * 16×16 blocks at stride 4 (``ical_std``): mean of the filtered reference, sample
      standard deviation (``n − 1``) of the filtered difference, and the reference's
      "modified" deviation: the smallest sample deviation among 8×8 blocks at offsets
      (0, 0), (0, 4), (4, 0), (4, 4) of the 16×16 block (the C code reads its table
      at +5, where the block starting at +4 is stored — not the four disjoint 8×8
      quadrants the paper describes); an offset +4 counts only if ``origin + 5 <
      size − 15``, so the last block is never a neighbour when ``size − 16`` is a
      multiple of 4; each block's values fill the 4×4 pixels at its top-left corner;
    * log contrasts ``C_ref = ln(σ_mod/μ)``, ``C_dst = ln(σ_err/μ)``, visibility
      ``max(0, C_dst − max(C_ref, −5))`` (the code's two threshold branches with
      slope 1 and thresholds −5), zero where ``μ < G = 0.5``;
    * times the 16×16 local MSE of the grey levels (``filter2``; its zero padding, or
      the 2010 release's ``imfilter(…, 'symmetric')``, never reaches the cropped
      map), the map cropped by ``(17:end-17, 17:end-17)``,
      ``d_detect = 200·‖map‖₂/√numel``.

Appearance, ``d_appear`` (MATLAB's ``index.LO``)
    * Kovesi's log-Gabor bank as altered by Larson: 5 scales (wavelengths 3, 9, 27,
      81, 243; σ/f = 0.55) × 4 orientations (0, 45, 90, 135°; angular σ = π/4/1.5),
      grids ``(-N/2 : N/2-1)/(N/2)`` and ``(-M/2 : M/2-1)/(M/2)`` — normalised per
      axis, so non-square images are handled — with the radius at
      ``(round(M/2+1), round(N/2+1))`` set to 1 and that filter sample to 0;
      responses ``|ifft2(fft2(I).*filter)|`` of the grey levels (not luminance);
    * per 16×16 block (stride 4, ``ical_stat``): sample standard deviation
      (``n − 1``), skewness ``m3/m2^1.5`` and kurtosis ``m4/m2²`` (population
      moments, not excess kurtosis), both 0 on a flat block;
    * map ``Σ_scale w·(|Δσ| + 2|Δskew| + |Δkurt|)`` with scale weights
      ``[0.5, 0.75, 1, 5, 6]/13.25`` indexed by *scale* (coarse scales dominate),
      the same crop, ``d_appear = ‖map‖₂/√numel``.

Blend: ``MAD = d_appear^(1−α)·d_detect^α`` with ``α = 1/(1 + β1·d_detect^β2)``,
``β1 = exp(−2.55/3.35) ≈ 0.467``, ``β2 = 1/(ln 10·3.35) ≈ 0.130`` (computed as the
code does). Lower is better.

Identical images: MATLAB gives ``d_detect = d_appear = 0`` and
``MAD = 0^0·0^1 = 0``; so does this module, without NaN in value or gradient (the
gradient there is 0). More generally MAD is 0, with a zero gradient, whenever no
block's error contrast exceeds the reference's local contrast (or where the
reference is darker than ``G``), so that ``d_detect = 0``: as in MATLAB, weak
perturbations — e.g. ±2/255 sign noise on a photo — often score exactly 0.

Deviations from the MATLAB code
    1. Input as the release is run on files, ``MAD_index(double(rgb2gray(ref)),
       double(rgb2gray(dst)))``: colour becomes ``rgb2gray`` grey levels rounded to
       whole levels (:func:`advqa.quality.matlab.release_grey`, straight-through
       gradient); ``conversion="rgb2gray-double"`` skips the rounding (advqa's
       default before 0.3). Grey levels are then the code's double-input branch.
       Its uint8 branch (a uint8 image passed without ``double``) reads a table at
       ``I + 1``, which saturates at 255, so that 255 is treated as 254 there;
       that quirk is not reproduced.
    2. ``I^(2.2/3)`` is evaluated at ``max(I, 1e-6)`` so the gradient stays finite at
       black pixels (the value moves by at most ``k·1e-6^(2.2/3) ≈ 1e-6``).
    3. Square roots, logarithms and ratios are guarded where a variance is exactly 0
       (flat block, identical images): the values are MATLAB's (``log 0 = −∞`` only
       ever fails a threshold), the gradients there are 0 instead of NaN.
    4. Arithmetic is float64 for float64 input and float32 otherwise (MATLAB: double).
       Block moments are exact merges of 4×4-cell central moments (no one-pass
       raw-moment cancellation); the CSF is applied as ``irfft2`` with the filter
       symmetrised ``(H(k) + H(−k))/2``, which equals MATLAB's ``real(ifft2(…))``.
    5. Images must be at least 34×34: below that the code's crop is empty
       (MATLAB returns NaN).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advqa.quality.matlab import release_grey
from advqa.quality.validate import check_pair

__all__ = ["MAD", "MADComponents", "mad", "mad_components"]

# Smallest side: 16-pixel blocks and a crop of 16 + 17 border pixels must leave a pixel.
MIN_SIZE = 34

# hi_index: display model and masking thresholds.
K_LUMINANCE = 0.02874
LUMINANCE_EXPONENT = 2.2 / 3
LUMINANCE_THRESHOLD = 0.5  # G
CONTRAST_THRESHOLD = -5.0  # Ci_thrsh = Cd_thrsh, C_slope = 1
DETECT_SCALE = 200.0
CSF_NFREQ = 32
BLOCK = 16
STRIDE = 4
BORDER = 16  # mp(BSIZE+1:end-BSIZE-1, ...)

# gaborconvolve / lo_index.
N_SCALES = 5
N_ORIENTATIONS = 4
MIN_WAVELENGTH = 3.0
WAVELENGTH_MULT = 3.0
SIGMA_ON_F = 0.55
D_THETA_ON_SIGMA = 1.5
SCALE_WEIGHTS = (0.5, 0.75, 1.0, 5.0, 6.0)

# MAD_index: sigmoid blend from thresh1 = 2.55, thresh2 = 3.35.
BLEND_THRESH = (2.55, 3.35)
BETA1 = math.exp(-BLEND_THRESH[0] / BLEND_THRESH[1])
BETA2 = 1.0 / (math.log(10.0) * BLEND_THRESH[1])

_BLACK = 1e-6  # floor of the luminance power (deviation 2)
_TINY_VARIANCE = 1e-30  # below this a local error contrast is < −34, never visible


class MADComponents(NamedTuple):
    """MATLAB's ``index.MAD``, ``index.HI``, ``index.LO`` and ``index.sig``, each (N,)."""

    mad: torch.Tensor
    d_detect: torch.Tensor
    d_appear: torch.Tensor
    alpha: torch.Tensor


def _matlab_round(value: float) -> int:
    """MATLAB's ``round`` (halves away from zero) for non-negative values."""
    return math.floor(value + 0.5)


@lru_cache(maxsize=16)
def _csf_rfft(rows: int, cols: int) -> np.ndarray:
    """``ifftshift(make_csf(rows, cols, 32)')``, symmetrised and cut to rfft2's half."""
    u = np.arange(rows) - rows / 2 + 0.5  # MATLAB's "x" grid, rows after the transpose
    v = np.arange(cols) - cols / 2 + 0.5
    scale = 2.0 * CSF_NFREQ / cols  # both axes divided by the column count
    fu, fv = np.meshgrid(u * scale, v * scale, indexing="ij")
    radial = np.hypot(fu, fv)
    w = 0.7
    radial = radial / ((1 - w) / 2 * np.cos(4 * np.arctan2(fv, fu)) + (1 + w) / 2)
    csf = 2.6 * (0.0192 + 0.114 * radial) * np.exp(-((0.114 * radial) ** 1.1))
    csf[radial < 7.8909] = 0.9809
    unshifted = np.fft.ifftshift(csf)
    negated = unshifted[(-np.arange(rows)) % rows][:, (-np.arange(cols)) % cols]
    return ((unshifted + negated) / 2)[:, : cols // 2 + 1]


@lru_cache(maxsize=16)
def _log_gabor_bank(rows: int, cols: int) -> np.ndarray:
    """The 20 unshifted filters of ``gaborconvolve``, scale-major: (5·4, rows, cols)."""
    x = (np.arange(cols) - cols / 2) / (cols / 2)
    y = (np.arange(rows) - rows / 2) / (rows / 2)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    centre = (_matlab_round(rows / 2 + 1) - 1, _matlab_round(cols / 2 + 1) - 1)
    radius = np.hypot(xx, yy)
    radius[centre] = 1.0
    log_radius = np.log(radius)
    theta = np.arctan2(-yy, xx)
    sin_theta, cos_theta = np.sin(theta), np.cos(theta)
    theta_sigma = math.pi / N_ORIENTATIONS / D_THETA_ON_SIGMA

    radial = []
    for scale in range(N_SCALES):
        wavelength = MIN_WAVELENGTH * WAVELENGTH_MULT**scale
        centre_radius = (1.0 / wavelength) / 0.5
        component = np.exp((log_radius - math.log(centre_radius)) ** 2
                           / -(2 * math.log(SIGMA_ON_F) ** 2))
        component[centre] = 0.0
        radial.append(component)

    spreads = []
    for orientation in range(N_ORIENTATIONS):
        angle = orientation * math.pi / N_ORIENTATIONS
        d_sin = sin_theta * math.cos(angle) - cos_theta * math.sin(angle)
        d_cos = cos_theta * math.cos(angle) + sin_theta * math.sin(angle)
        d_theta = np.abs(np.arctan2(d_sin, d_cos))
        spreads.append(np.exp(-(d_theta**2) / (2 * theta_sigma**2)))

    bank = [np.fft.fftshift(radial[s] * spreads[o])
            for s in range(N_SCALES) for o in range(N_ORIENTATIONS)]
    return np.stack(bank)


@lru_cache(maxsize=8)
def _filters(kind: str, rows: int, cols: int, dtype: torch.dtype,
             device: torch.device) -> torch.Tensor:
    """The CSF (``kind="csf"``) or the log-Gabor bank as a tensor, cached per size."""
    array = _csf_rfft(rows, cols) if kind == "csf" else _log_gabor_bank(rows, cols)
    return torch.from_numpy(array).to(dtype=dtype, device=device)


def _safe_sqrt(value: torch.Tensor) -> torch.Tensor:
    """√value with value ≥ 0; 0 and a zero gradient where value is 0."""
    positive = value > 0
    return torch.where(positive, torch.where(positive, value, 1).sqrt(), 0)


def _cell_moments(x: torch.Tensor, order: int):
    """Means and central power sums of the 4×4 cells tiling ``x`` (B, H, W) from the origin.

    Returns ``mean`` (B, H//4, W//4) and the sums of ``(x − mean)^p`` for p = 2..order.
    """
    batch, rows, cols = x.shape
    cr, cc = rows // STRIDE, cols // STRIDE
    cells = x[:, : cr * STRIDE, : cc * STRIDE].reshape(batch, cr, STRIDE, cc, STRIDE)
    mean = cells.mean(dim=(2, 4))
    dev = cells - mean[:, :, None, :, None]
    dev2 = dev * dev
    sums = [dev2.sum(dim=(2, 4))]
    if order >= 3:
        sums.append((dev2 * dev).sum(dim=(2, 4)))
    if order >= 4:
        sums.append((dev2 * dev2).sum(dim=(2, 4)))
    return mean, sums


def _block_moments(mean: torch.Tensor, sums: list[torch.Tensor], cells: int):
    """Merge ``cells``×``cells`` groups of 4×4 cells (every cell offset) into blocks.

    Exact merge of central moments: with ``δ = μ_cell − μ_block`` and ``n = 16``,
    ``S2 = Σ(S2ᶜ + nδ²)``, ``S3 = Σ(S3ᶜ + 3δS2ᶜ + nδ³)``,
    ``S4 = Σ(S4ᶜ + 4δS3ᶜ + 6δ²S2ᶜ + nδ⁴)``. Returns the block mean and S2..S4.
    """
    n = float(STRIDE * STRIDE)

    def gather(t):  # (B, R, C) -> (B, R-cells+1, C-cells+1, cells²)
        windows = t.unfold(1, cells, 1).unfold(2, cells, 1)
        return windows.reshape(*windows.shape[:3], cells * cells)

    cell_mean = gather(mean)
    block_mean = cell_mean.mean(dim=-1, keepdim=True)
    delta = cell_mean - block_mean
    delta2 = delta * delta
    s2 = gather(sums[0])
    out = [(s2 + n * delta2).sum(-1)]
    if len(sums) >= 2:
        s3 = gather(sums[1])
        out.append((s3 + 3 * delta * s2 + n * delta2 * delta).sum(-1))
    if len(sums) >= 3:
        s4 = gather(sums[2])
        out.append((s4 + 4 * delta * s3 + 6 * delta2 * s2 + n * delta2 * delta2).sum(-1))
    return block_mean.squeeze(-1), out


def _n_blocks(size: int) -> int:
    """Number of 16×16 block origins ``0, 4, …`` with ``origin < size − 15``."""
    return (size - BLOCK) // STRIDE + 1


def _to_pixels(block_map: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Spread block values over the 4×4 pixels at each block's top-left, then crop."""
    pixels = block_map.repeat_interleave(STRIDE, dim=1).repeat_interleave(STRIDE, dim=2)
    return pixels[:, BORDER: rows - BORDER - 1, BORDER: cols - BORDER - 1]


def _rms(pixel_map: torch.Tensor) -> torch.Tensor:
    """``norm(map(:), 2)/sqrt(numel)`` per image."""
    return _safe_sqrt(pixel_map.square().flatten(1).mean(dim=1))


def _detection(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """``hi_index``: (B, H, W) grey levels on 0–255 → d_detect (B,)."""
    _, rows, cols = reference.shape
    nr, nc = _n_blocks(rows), _n_blocks(cols)

    def perceived(grey):
        lightness = K_LUMINANCE * grey.clamp_min(_BLACK) ** LUMINANCE_EXPONENT
        spectrum = torch.fft.rfft2(lightness)
        csf = _filters("csf", rows, cols, grey.dtype, grey.device)
        return torch.fft.irfft2(spectrum * csf, s=(rows, cols))

    ref = perceived(reference)
    err = perceived(distorted) - ref

    ref_cells = _cell_moments(ref, order=2)
    ref_mean, _ = _block_moments(ref_cells[0], ref_cells[1], cells=4)
    ref_mean = ref_mean[:, :nr, :nc]
    _, (ref_s2_8,) = _block_moments(ref_cells[0], ref_cells[1], cells=2)
    std8 = _safe_sqrt(ref_s2_8[:, :nr, :nc] / 63.0)
    # Smallest of the 8×8 deviations at block offsets (0|4, 0|4); ical_std.c admits the
    # block at +4 only if (origin + 5) < size − 15, i.e. if it starts at ≤ size − 17.
    neighbours = std8.clone()
    neighbours[:, (rows - BLOCK - 1) // STRIDE + 1:, :] = math.inf
    neighbours[:, :, (cols - BLOCK - 1) // STRIDE + 1:] = math.inf
    neighbours = F.pad(neighbours, (0, 1, 0, 1), value=math.inf)
    std_mod = torch.minimum(torch.minimum(std8, neighbours[:, 1:, :-1]),
                            torch.minimum(neighbours[:, :-1, 1:], neighbours[:, 1:, 1:]))

    err_cells = _cell_moments(err, order=2)
    _, (err_s2,) = _block_moments(err_cells[0], err_cells[1], cells=4)
    err_var = err_s2[:, :nr, :nc] / 255.0

    bright = ref_mean >= LUMINANCE_THRESHOLD
    log_mean = torch.log(torch.where(bright, ref_mean, 1))
    contrast_ref = torch.log(std_mod.clamp_min(_TINY_VARIANCE)) - log_mean
    contrast_err = 0.5 * torch.log(err_var.clamp_min(_TINY_VARIANCE)) - log_mean
    visibility = torch.relu(contrast_err - contrast_ref.clamp_min(CONTRAST_THRESHOLD))
    visibility = torch.where(bright, visibility, 0)

    lmse = F.avg_pool2d((reference - distorted).square().unsqueeze(1), BLOCK, stride=1)
    # filter2's 'same' 16×16 box at pixel p spans p−7 … p+8: avg_pool index p − 7.
    lmse = lmse[:, 0, BORDER - 7: rows - BORDER - 1 - 7, BORDER - 7: cols - BORDER - 1 - 7]
    return DETECT_SCALE * _rms(_to_pixels(visibility, rows, cols) * lmse)


def _gabor_statistics(responses: torch.Tensor, nr: int, nc: int):
    """``ical_stat`` on |responses| (B, H, W): block σ (n − 1), skewness, kurtosis."""
    mean, sums = _cell_moments(responses, order=4)
    _, (s2, s3, s4) = _block_moments(mean, sums, cells=4)
    s2, s3, s4 = s2[:, :nr, :nc], s3[:, :nr, :nc], s4[:, :nr, :nc]
    n = float(BLOCK * BLOCK)
    flat = s2 <= 0
    m2 = torch.where(flat, 1, s2 / n)
    skew = torch.where(flat, 0, (s3 / n) / m2.pow(1.5))
    kurt = torch.where(flat, 0, (s4 / n) / m2.square())
    return _safe_sqrt(s2 / (n - 1)), skew, kurt


def _appearance(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """``lo_index``: (B, H, W) grey levels on 0–255 → d_appear (B,)."""
    _, rows, cols = reference.shape
    nr, nc = _n_blocks(rows), _n_blocks(cols)
    bank = _filters("gabor", rows, cols, reference.dtype, reference.device)
    weights = [w / sum(SCALE_WEIGHTS) for w in SCALE_WEIGHTS]
    spectrum_ref = torch.fft.fft2(reference)
    spectrum_dst = torch.fft.fft2(distorted)
    block_map = reference.new_zeros(reference.shape[0], nr, nc)
    for index, weight in enumerate(w for w in weights for _ in range(N_ORIENTATIONS)):
        filt = bank[index]
        std_r, skew_r, kurt_r = _gabor_statistics(
            torch.fft.ifft2(spectrum_ref * filt).abs(), nr, nc)
        std_d, skew_d, kurt_d = _gabor_statistics(
            torch.fft.ifft2(spectrum_dst * filt).abs(), nr, nc)
        block_map = block_map + weight * ((std_r - std_d).abs() + 2 * (skew_r - skew_d).abs()
                                          + (kurt_r - kurt_d).abs())
    return _rms(_to_pixels(block_map, rows, cols))


def _blend(d_detect: torch.Tensor, d_appear: torch.Tensor):
    """``d_appear^(1−α)·d_detect^α``; 0 when either index is 0 (MATLAB: ``0^0 = 1``)."""
    detect_pos = d_detect > 0
    both = detect_pos & (d_appear > 0)
    detect_safe = torch.where(detect_pos, d_detect, 1)
    alpha = torch.where(detect_pos, 1 / (1 + BETA1 * detect_safe.pow(BETA2)), 1)
    log_detect = torch.log(torch.where(both, d_detect, 1))
    log_appear = torch.log(torch.where(both, d_appear, 1))
    value = torch.exp(alpha * log_detect + (1 - alpha) * log_appear)
    return torch.where(both, value, 0), alpha


def mad_components(reference: torch.Tensor, distorted: torch.Tensor, *,
                   data_range: float = 1.0, clamp: bool = False,
                   conversion: str = "rgb2gray") -> MADComponents:
    """MAD with its two strategies and their blending weight, each (N,).

    Parameters
    ----------
    reference, distorted : torch.Tensor
        (N, C, H, W) batches with C in {1, 3}, values in [0, data_range], H, W ≥ 34.
    data_range : float
        Value of white (1.0 or 255.0 typically).
    clamp : bool
        Clamp out-of-range values instead of raising.
    conversion : {"rgb2gray", "rgb2gray-double", "luma"}
        Colour to grey levels (:func:`advqa.quality.matlab.release_grey`).

    Returns
    -------
    MADComponents
        ``mad``, ``d_detect`` (MATLAB ``index.HI``), ``d_appear`` (``index.LO``) and
        ``alpha`` (``index.sig``, the weight of ``d_detect``).
    """
    reference, distorted = check_pair(reference, distorted, data_range=data_range,
                                      min_size=MIN_SIZE, clamp=clamp)
    dtype = torch.float64 if distorted.dtype == torch.float64 else torch.float32
    ref = release_grey(reference.to(dtype), data_range, conversion)[:, 0]
    dst = release_grey(distorted.to(dtype), data_range, conversion)[:, 0]
    d_detect = _detection(ref, dst)
    d_appear = _appearance(ref, dst)
    value, alpha = _blend(d_detect, d_appear)
    return MADComponents(value, d_detect, d_appear, alpha)


def mad(reference: torch.Tensor, distorted: torch.Tensor, *, data_range: float = 1.0,
        clamp: bool = False, conversion: str = "rgb2gray") -> torch.Tensor:
    """Most Apparent Distortion of Larson & Chandler (2010); lower is better, 0 if identical.

    Follows ``MAD_index.m`` (2011) on grey levels (``rgb2gray`` weights for colour);
    differentiable with respect to both inputs. See the module docstring for the
    details and the deviations from the MATLAB code.

    Parameters
    ----------
    reference, distorted : torch.Tensor
        (N, C, H, W) batches with C in {1, 3}, values in [0, data_range], H, W ≥ 34.
    data_range : float
        Value of white (1.0 or 255.0 typically).
    clamp : bool
        Clamp out-of-range values instead of raising.
    conversion : {"rgb2gray", "rgb2gray-double", "luma"}
        Colour to grey levels (:func:`advqa.quality.matlab.release_grey`).

    Returns
    -------
    torch.Tensor
        (N,) scores, float64 for float64 input and float32 otherwise.
    """
    return mad_components(reference, distorted, data_range=data_range, clamp=clamp,
                          conversion=conversion).mad


class MAD(nn.Module):
    """Module form of :func:`mad`: ``forward(distorted, reference)`` → (N,) scores."""

    def __init__(self, data_range: float = 1.0, clamp: bool = False):
        super().__init__()
        self.data_range = data_range
        self.clamp = clamp

    def forward(self, distorted: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return mad(reference, distorted, data_range=self.data_range, clamp=self.clamp)

    def extra_repr(self) -> str:
        return f"data_range={self.data_range}, clamp={self.clamp}"
