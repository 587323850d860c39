"""BRISQUE, the Blind/Referenceless Image Spatial Quality Evaluator, batched and differentiable.

Mittal, Moorthy & Bovik, "No-Reference Image Quality Assessment in the Spatial
Domain", IEEE Transactions on Image Processing 21(12), 2012.

Followed line by line: the authors' MATLAB release (``BRISQUE_release.zip``,
LIVE, UT Austin, 2011): ``brisquescore.m``, ``brisque_feature.m``,
``estimateggdparam.m``, ``estimateaggdparam.m``, and its LibSVM files
``allrange`` (feature ranges) and ``allmodel`` (ε-SVR, RBF kernel, γ = 0.05,
trained on the whole LIVE database).

The pipeline, per image:

Release call reproduced: ``qualityscore = brisquescore(rgb2gray(imread(file)))``.

1. grey = MATLAB ``rgb2gray`` on the 0–255 scale, rounded to whole levels for colour
   input as ``rgb2gray`` of a uint8 file (:func:`advqa.quality.matlab.rgb2gray`).
2. Two scales, the second MATLAB ``imresize(im, 0.5)`` (bicubic, antialiased;
   :func:`advqa.quality.matlab.imresize_half`); the whole image, no cropping.
3. MSCN at each scale with ``filter2(fspecial('gaussian', 7, 7/6), im, 'same')``
   — zero padding, unlike NIQE — and ``(im − μ)/(σ + 1)``.
4. 18 features per scale: GGD fit of the MSCN coefficients (α, σ²) and AGGD
   fits of the products with ``circshift``-ed copies (shifts [0 1], [1 0],
   [1 1], [−1 1]): α, mean, σ_l², σ_r².
5. ``svm-scale -r allrange``: each feature mapped linearly from its
   [min, max] to [−1, 1]; ``svm-predict -b 1`` with ``allmodel``:
   ``Σ_i coef_i · exp(−γ‖x − sv_i‖²) − ρ`` (for ε-SVR the ``-b 1``
   probability model does not change the predicted value). The score is
   about 0 (best) to 100 (worst), and may leave that range; the registry
   (:mod:`advqa.quality.registry`) states that practical range, ``(0, 100)``.

Differentiability and deviations from the MATLAB code
-----------------------------------------------------
- ``mode="matlab"`` (default): MATLAB's forward pass — the grid lookup of the
  GGD/AGGD shape α, for colour input ``uint8`` + ``rgb2gray`` rounding of
  the grey levels, and the rounding of the LibSVM text files — with
  straight-through gradients (the derivative of the continuous inverse for
  α, identity for rounding). ``mode="smooth"``: no rounding and a Newton
  inverse for α, one smooth function with exact gradients. See
  :mod:`advqa.quality.niqe`. The smooth α alone moves the score by < 0.06
  (0–100 scale) on the scikit-image photos, but skipping the grey
  rounding of colour input moves it more (``coffee`` 30.07 → 30.52,
  ``chelsea`` 2.57 → 2.32), so report scores from ``"matlab"``.
- ``brisquescore.m`` hands the features to LibSVM through text files: features
  printed with ``fprintf('%f')`` (6 decimals), scaled by ``svm-scale``, which
  prints ``%g`` (6 significant digits). ``mode="matlab"`` reproduces both
  roundings (:func:`printf_f`, :func:`printf_g`, straight-through gradients);
  ``"smooth"`` skips them. They move the score by a few thousandths, which is
  0.4 % of a score near 0 (TID2013 ``I04``: −0.10718 without, −0.10762 with,
  MATLAB −0.107618). ``svm-predict`` prints the score with ``%g``: the
  published values have 6 significant digits.
- MSCN numerators that are zero in exact arithmetic (flat 7×7 patches, common
  in uint8 photos: ``|im − μ| ≤ 1e-9``) are set to exactly 0, as in
  :mod:`advqa.quality.niqe`, whose docstring explains the consequence: MATLAB
  leaves a round-off residual there whose sign (or absence) depends on the
  grey level and on the bits of ``filter2``'s separable kernels, and the AGGD
  fits count those residuals. This is the one known difference left from the
  release; it is large where flat patches are many and the score is small.
  On the TID2013 calibration pairs (scores of the distorted images; MATLAB's
  from IQA-PyTorch's ``results_official.csv``):

  ==========  ==========  ==========  =========  =========  =========
  image       I03         I04         I06        I08        I19
  ==========  ==========  ==========  =========  =========  =========
  MATLAB      94.6421     −0.107618   0.992889   5.35827    72.2617
  here        94.6405     −0.107618   0.991165   5.90331    74.4303
  diff (%)    −0.002      0.000       −0.17      +10.2      +3.0
  ==========  ==========  ==========  =========  =========  =========

  Giving MATLAB's residual signs to the flat patches (found by trying all
  sign patterns per grey level) reproduces I08 (5.358271) and I06 (0.992889)
  to the printed digits and I19 to 0.006 %; which levels MATLAB leaves exact
  could not be predicted (see :mod:`advqa.quality.niqe`), so no such pattern is
  applied here.
- Float64 inside; the result has the input's dtype. A constant image has no
  defined BRISQUE (MATLAB divides 0 by 0): its score is NaN.

Model files
-----------
``model="live"`` (default) reads ``data/brisque_allmodel.txt`` (the release's
``allmodel``, verbatim) and ``data/brisque_allrange.txt`` (its ``allrange``);
see ``data/brisque_SOURCE.txt``.

``model="brisque-0.2.0"`` reads ``models/svm.txt`` and ``models/normalize.pickle``
of the PyPI package ``brisque`` (Apache-2.0) from its installed directory at run
time, without importing the package (it needs OpenCV) and without unpickling
(the pickle is walked with :func:`pickletools.genops`; only a dict of float
lists is accepted). That model is **not** MATLAB's: it has 770 support vectors
(``allmodel`` 774), ρ = −155.845 (−153.591), other feature ranges (e.g. α of the
MSCN in [0.336999, 9.999411] instead of [0.338, 10]), and was fitted to
that package's own Python features. With MATLAB's features it gives other
numbers (7.0 instead of 52.5 for the first reference image in the tests), so
it is offered only to compare with that package's model; nothing is shipped for it.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import pickletools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from advqa.quality.matlab import imresize_half
from advqa.quality.niqe import (
    DATA_DIR,
    _check_mode,
    _gamma_ratio,
    aggd_fit,
    grey_levels,
    mscn,
    shape_from_ratio,
)
from advqa.quality.validate import check_images

# The second scale must still hold the 7×7 window: ceil(13/2) = 7.
MIN_SIZE = 13
FEATURES = 36
# brisque_feature.m's circshift shifts, [rows, columns].
BRISQUE_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))
MODELS = ("live", "brisque-0.2.0")

@dataclass(frozen=True)
class BrisqueModel:
    """A LibSVM ε-SVR with RBF kernel and its svm-scale feature ranges."""

    support_vectors: np.ndarray    # (n, 36)
    coefficients: np.ndarray       # (n,)
    rho: float
    gamma: float
    feature_min: np.ndarray        # (36,)
    feature_max: np.ndarray        # (36,)
    lower: float = -1.0
    upper: float = 1.0
    source: str = ""


def parse_libsvm_model(text: str, features: int = FEATURES) -> dict:
    """Parse a LibSVM text model of an ε-SVR with RBF kernel.

    Returns ``{"gamma", "rho", "coefficients" (n,), "support_vectors" (n, features)}``;
    indices missing from a (sparse) support vector are zeros, as in LibSVM.
    """
    lines = text.splitlines()
    header = {}
    for position, line in enumerate(lines):
        if line.strip() == "SV":
            body = lines[position + 1:]
            break
        key, _, value = line.strip().partition(" ")
        header[key] = value
    else:
        raise ValueError("not a LibSVM model: no 'SV' line")
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"expected an epsilon_svr model with rbf kernel, got "
                         f"{header.get('svm_type')!r} / {header.get('kernel_type')!r}")
    body = [line.split() for line in body if line.strip()]
    if "total_sv" in header and int(header["total_sv"]) != len(body):
        raise ValueError(f"model announces {header['total_sv']} support vectors, has {len(body)}")
    coefficients = np.empty(len(body))
    vectors = np.zeros((len(body), features))
    for row, tokens in enumerate(body):
        coefficients[row] = float(tokens[0])
        for token in tokens[1:]:
            index, _, value = token.partition(":")
            if not 1 <= int(index) <= features:
                raise ValueError(f"feature index {index} outside 1..{features}")
            vectors[row, int(index) - 1] = float(value)
    return {"gamma": float(header["gamma"]), "rho": float(header["rho"].split()[0]),
            "coefficients": coefficients, "support_vectors": vectors}


def parse_svm_scale_range(text: str, features: int = FEATURES):
    """Parse an ``svm-scale -s`` range file → ``(lower, upper, min (F,), max (F,))``."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["x"]:
        raise ValueError("not an svm-scale range file (first line must be 'x')")
    lower, upper = (float(v) for v in lines[1])
    low, high = np.full(features, np.nan), np.full(features, np.nan)
    for index, minimum, maximum in lines[2:]:
        low[int(index) - 1], high[int(index) - 1] = float(minimum), float(maximum)
    if np.isnan(low).any():
        raise ValueError("range file does not cover every feature")
    return lower, upper, low, high


# Opcodes a pickled ``{str: [float, ...]}`` may consist of; anything else is refused.
_SAFE_OPCODES = {
    "PROTO", "FRAME", "EMPTY_DICT", "EMPTY_LIST", "MARK", "MEMOIZE", "BINPUT",
    "LONG_BINPUT", "PUT", "SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINFLOAT",
    "FLOAT", "BININT", "BININT1", "BININT2", "INT", "APPEND", "APPENDS",
    "SETITEM", "SETITEMS", "STOP",
}


def parse_float_lists_pickle(data: bytes) -> dict[str, list[float]]:
    """Read a pickled ``dict`` of ``str`` → list of numbers without unpickling.

    Walks the opcodes with :func:`pickletools.genops`; any opcode outside a
    plain dict of number lists (globals, reduce, ...) raises ``ValueError``,
    so no code in the file can run.
    """
    result: dict[str, list[float]] = {}
    key, current = None, None
    for opcode, argument, _ in pickletools.genops(data):
        name = opcode.name
        if name not in _SAFE_OPCODES:
            raise ValueError(f"unexpected pickle opcode {name}: not a dict of number lists")
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            key, current = argument, []
            result[key] = current
        elif name in ("BINFLOAT", "FLOAT", "BININT", "BININT1", "BININT2", "INT"):
            if current is None:
                raise ValueError("number outside a list")
            current.append(float(argument))
    return result


def _installed_package_dir(package: str) -> Path | None:
    # find_spec on a top-level name locates the package without importing it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=4)
def load_model(name: str = "live") -> BrisqueModel:
    """The SVR and feature ranges: ``"live"`` (MATLAB's, shipped) or ``"brisque-0.2.0"``."""
    if name == "live":
        svm = parse_libsvm_model((DATA_DIR / "brisque_allmodel.txt").read_text())
        lower, upper, low, high = parse_svm_scale_range(
            (DATA_DIR / "brisque_allrange.txt").read_text())
        return BrisqueModel(svm["support_vectors"], svm["coefficients"], svm["rho"],
                            svm["gamma"], low, high, lower, upper,
                            source="LIVE BRISQUE_release allmodel + allrange")
    if name == "brisque-0.2.0":
        package = _installed_package_dir("brisque")
        if package is None or not (package / "models" / "svm.txt").is_file():
            raise ValueError("model='brisque-0.2.0' needs the PyPI package brisque==0.2.0 "
                             "installed (its models/svm.txt and models/normalize.pickle)")
        svm = parse_libsvm_model((package / "models" / "svm.txt").read_text())
        ranges = parse_float_lists_pickle((package / "models" / "normalize.pickle").read_bytes())
        low, high = np.array(ranges["min_"]), np.array(ranges["max_"])
        if low.shape != (FEATURES,) or high.shape != (FEATURES,):
            raise ValueError("normalize.pickle must hold 36 'min_' and 36 'max_' values")
        return BrisqueModel(svm["support_vectors"], svm["coefficients"], svm["rho"],
                            svm["gamma"], low, high, source=f"PyPI brisque at {package}")
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def ggd_fit(values: torch.Tensor, mode: str = "matlab"):
    """``estimateggdparam.m`` along the last dimension → (α, σ², defined).

    All-zero values (a constant image) have no defined ratio (MATLAB: 0/0);
    they get α = 0.2 and ``defined`` False.
    """
    sigma_sq = (values * values).mean(-1)
    mean_abs = values.abs().mean(-1)
    defined = mean_abs > 0
    safe = torch.where(defined, mean_abs, torch.ones_like(mean_abs))
    ratio = torch.where(defined, sigma_sq / (safe * safe), torch.ones_like(safe))
    alpha = shape_from_ratio(ratio, "ggd", mode)
    return torch.where(defined, alpha, torch.full_like(alpha, 0.2)), sigma_sq, defined


def scale_features(grey: torch.Tensor, mode: str = "matlab"):
    """``brisque_feature.m`` for one scale of a 0–255 (N, 1, H, W) batch.

    Returns (N, 18) features and an (N,) mask of images whose fits are all
    defined (MATLAB gets NaN where a product has no negative or no positive value).
    """
    coefficients = mscn(grey, "zeros")
    flat = coefficients.flatten(1)
    alpha, sigma_sq, defined = ggd_fit(flat, mode)
    features = [alpha, sigma_sq]
    for shift in BRISQUE_SHIFTS:
        pair = flat * torch.roll(coefficients, shifts=shift, dims=(-2, -1)).flatten(1)
        alpha, left, right, has_left, has_right = aggd_fit(pair, mode)
        defined = defined & has_left & has_right
        constant = torch.sqrt(_gamma_ratio(alpha, 1, 3))
        mean = (right - left) * _gamma_ratio(alpha, 2, 1) * constant
        features += [alpha, mean, left * left, right * right]
    return torch.stack(features, -1), defined


def brisque_features(grey: torch.Tensor, mode: str = "matlab") -> torch.Tensor:
    """The (N, 36) BRISQUE features of a 0–255 (N, 1, H, W) float64 batch (NaN where undefined)."""
    features, defined = _features(grey, mode)
    return torch.where(defined[:, None], features, torch.full_like(features, math.nan))


def _features(grey, mode):
    first, defined_first = scale_features(grey, mode)
    second, defined_second = scale_features(imresize_half(grey), mode)
    return torch.cat([first, second], -1), defined_first & defined_second


def _round_decimals(values: torch.Tensor, decimals: torch.Tensor | int) -> torch.Tensor:
    """Round to ``decimals`` places (half to even, as C's printf on a binary tie)."""
    scale = torch.pow(torch.full_like(values, 10.0), decimals)
    return torch.round(values * scale) / scale


def printf_f(values: torch.Tensor) -> torch.Tensor:
    """``sscanf(sprintf('%f', v))``: v rounded to 6 decimals, straight-through gradient."""
    rounded = _round_decimals(values.detach(), 6)
    return values + (rounded - values).detach()


def printf_g(values: torch.Tensor) -> torch.Tensor:
    """``sscanf(sprintf('%g', v))``: v rounded to 6 significant digits, straight-through."""
    detached = values.detach()
    nonzero = detached != 0
    magnitude = torch.where(nonzero, detached.abs(), torch.ones_like(detached))
    exponent = torch.floor(torch.log10(magnitude))
    rounded = _round_decimals(detached, 5 - exponent)
    # A value that rounds up to the next power of ten (9.999996 → 10.0000) is
    # printed with one digit less; rounding to 6 digits of the old exponent
    # already gives that number.
    rounded = torch.where(nonzero, rounded, detached)
    return values + (rounded - values).detach()


def svr_score(features: torch.Tensor, model: BrisqueModel, *,
              text_round_trip: bool = False) -> torch.Tensor:
    """``svm-scale`` with the model's ranges, then the ε-SVR prediction, for (N, 36) features.

    ``text_round_trip=True`` reproduces ``brisquescore.m``'s files: features
    written with ``fprintf('%f')`` (6 decimals) and scaled by ``svm-scale``,
    which writes ``%g`` (6 significant digits); both roundings pass the
    gradient straight through.
    """
    if text_round_trip:
        features = printf_f(features)
    low = features.new_tensor(model.feature_min)
    high = features.new_tensor(model.feature_max)
    scaled = model.lower + (model.upper - model.lower) * (features - low) / (high - low)
    if text_round_trip:
        scaled = printf_g(scaled)
    vectors = features.new_tensor(model.support_vectors)
    distance = ((scaled[:, None, :] - vectors[None]) ** 2).sum(-1)
    kernel = torch.exp(-model.gamma * distance)
    return kernel @ features.new_tensor(model.coefficients) - model.rho


def _check(images, data_range, clamp):
    return check_images(images, data_range=data_range, name="images", min_size=MIN_SIZE,
                        clamp=clamp)


def _brisque(images, model, data_range, mode):
    features, defined = _features(grey_levels(images, data_range, mode), mode)
    # Undefined features (a constant image) give NaN without NaN gradients elsewhere.
    scores = svr_score(torch.where(defined[:, None], features, torch.zeros_like(features)), model,
                       text_round_trip=mode == "matlab")
    return torch.where(defined, scores, torch.full_like(scores, math.nan)).to(images.dtype)


def brisque(images: torch.Tensor, *, data_range: float = 1.0, clamp: bool = False,
            model: str = "live", mode: str = "matlab") -> torch.Tensor:
    """BRISQUE of each image in an (N, C, H, W) batch, C = 1 or 3; lower is better.

    Parameters
    ----------
    images : torch.Tensor
        Values in [0, data_range]; at least 13×13.
    data_range : float
        1.0 for [0, 1] images, 255.0 for [0, 255].
    clamp : bool
        Clamp out-of-range values instead of raising.
    model : {"live", "brisque-0.2.0"}
        SVR and feature ranges (see the module docstring).
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
    return _brisque(images, load_model(model), data_range, mode)


class BRISQUE(nn.Module):
    """:func:`brisque` as a module; ``forward(images)`` → (N,) scores."""

    def __init__(self, data_range: float = 1.0, *, model: str = "live",
                 mode: str = "matlab", clamp: bool = False):
        super().__init__()
        _check_mode(mode)
        self.data_range, self.model_name, self.mode, self.clamp = data_range, model, mode, clamp
        self.model = load_model(model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = _check(images, self.data_range, self.clamp)
        return _brisque(images, self.model, self.data_range, self.mode)

    def extra_repr(self) -> str:
        return f"data_range={self.data_range}, model={self.model_name!r}, mode={self.mode!r}"
