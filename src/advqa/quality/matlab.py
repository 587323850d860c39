"""MATLAB's image primitives, as the original metric releases call them.

The authors' releases (``ssim_index.m``, ``msssim.m``, ``GMSD.m``, ``vifvec.m``,
``brisquescore.m``, ``computequality.m`` …) are run on an RGB file read as
``uint8``: ``rgb2gray`` then returns ``uint8`` grey levels (rounded, halves away
from zero) and ``double()`` turns them into 0–255 floats. Reproducing their
published numbers needs exactly that input, so every metric that follows such a
release converts through :func:`rgb2gray` here, not through a float luma.

Rounding has no useful gradient; it passes the gradient straight through
(identity), as BPDA does, so attacks on these metrics still work.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from advqa.quality.validate import GRAY_WEIGHTS, weighted_channels


def matlab_round(values: torch.Tensor) -> torch.Tensor:
    """MATLAB ``round`` (halves away from zero) with a straight-through gradient.

    ``torch.round`` rounds halves to even, which differs from MATLAB on exact
    halves (e.g. 2.5 → 2 instead of 3).
    """
    rounded = torch.sign(values) * torch.floor(values.abs() + 0.5)
    return values + (rounded - values).detach()


def rgb2gray(images: torch.Tensor, data_range: float = 1.0, *,
             rounding: bool = True) -> torch.Tensor:
    """MATLAB ``rgb2gray`` of a uint8 image, as (N, 1, H, W) grey levels on 0–255.

    Parameters
    ----------
    images : torch.Tensor
        (N, 3, H, W) or (N, 1, H, W) in [0, data_range]. One channel is taken
        as grey already and only rescaled.
    data_range : float
        The value of white.
    rounding : bool, default True
        Round to whole levels, as ``rgb2gray`` does for ``uint8`` input (the way
        the releases read files). ``False`` keeps the exact weighted sum, as
        ``rgb2gray`` of a ``double`` image.

    Notes
    -----
    Weights are those of current MATLAB (0.298936…, 0.587043…, 0.114020…),
    the rounded inverse of ``rgb2ntsc``; releases before R2014 used
    (0.2989, 0.5870, 0.1140), which changes a grey level by at most 0.03 before
    rounding. Grey input is rounded too when ``rounding``: a uint8 grey file
    holds whole levels.
    """
    scale = 255.0 / data_range
    if images.shape[1] == 1:
        grey = images * scale
    else:
        grey = weighted_channels(images, [scale * weight for weight in GRAY_WEIGHTS])
    return matlab_round(grey) if rounding else grey


# ------------------------------------------------------------------------------ imresize

def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB imresize's cubic kernel (Keys, a = −0.5)."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def imresize_matrix(in_length: int, scale: float = 0.5) -> np.ndarray:
    """The (out, in) matrix of MATLAB ``imresize(·, scale)`` along one axis (bicubic, antialiased).

    Output length ``ceil(scale·in)``; see :func:`resize_matrix` for the weights.
    """
    return resize_matrix(in_length, math.ceil(scale * in_length), scale, "bicubic", True)


def imresize_half(images: torch.Tensor) -> torch.Tensor:
    """MATLAB ``imresize(images, 0.5)`` (bicubic, antialiased) of an (N, C, H, W) batch."""
    height, width = images.shape[-2:]
    rows = torch.from_numpy(imresize_matrix(height)).to(images)
    cols = torch.from_numpy(imresize_matrix(width)).to(images)
    return rows @ images @ cols.T


# ------------------------------------------------------------------ grey input of a release

GREY_CONVERSIONS = ("rgb2gray", "rgb2gray-double", "luma")


def release_grey(images: torch.Tensor, data_range: float = 1.0,
                 conversion: str = "rgb2gray") -> torch.Tensor:
    """The 0–255 grey image a grey-level release is fed, as (N, 1, H, W).

    ``conversion``:

    - ``"rgb2gray"`` (the releases' own input): ``double(rgb2gray(imread(file)))``,
      i.e. :func:`rgb2gray` with rounding to whole levels;
    - ``"rgb2gray-double"``: ``rgb2gray`` of a double image, no rounding;
    - ``"luma"``: BT.601 luma Y as ``rgb2ycbcr`` (16–235), no rounding — advqa's
      convention before it followed the releases (piq's too).

    One-channel input is taken as grey already (rescaled to 0–255, rounded for
    ``"rgb2gray"``).
    """
    from advqa.quality.validate import ycbcr_luma

    if conversion == "rgb2gray":
        return rgb2gray(images, data_range, rounding=True)
    if conversion == "rgb2gray-double":
        return rgb2gray(images, data_range, rounding=False)
    if conversion == "luma":
        return ycbcr_luma(images, data_range)
    raise ValueError(f"conversion must be one of {GREY_CONVERSIONS}, got {conversion!r}")


# ------------------------------------------------------------------ filtering, subsampling

def symmetric_pad(images: torch.Tensor, top: int, bottom: int, left: int,
                  right: int) -> torch.Tensor:
    """MATLAB's ``'symmetric'`` padding (mirror that repeats the edge: ``b a | a b c | c b``).

    ``torch``'s ``reflect`` mode does not repeat the edge; this indexes instead,
    so any width up to the image size works and gradients flow.
    """
    def index(length: int, before: int, after: int) -> torch.Tensor:
        positions = np.arange(-before, length + after)
        period = 2 * length
        folded = np.mod(positions, period)
        folded = np.where(folded >= length, period - 1 - folded, folded)
        return torch.from_numpy(folded).to(images.device)

    height, width = images.shape[-2:]
    rows = index(height, top, bottom)
    cols = index(width, left, right)
    return images.index_select(-2, rows).index_select(-1, cols)


def imfilter_average_subsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """``x = imfilter(x, ones(f)/f^2, 'symmetric', 'same'); x = x(1:f:end, 1:f:end)``.

    The downsampling of ``ssim.m`` (f = max(1, round(min(H, W)/256))) and of
    ``msssim.m`` (f = 2 between scales). ``imfilter`` centres an f×f kernel at
    ``floor((f+1)/2)``, so sample k averages rows ``k·f − (f+1)//2 + 1 …`` of the
    mirror-padded image: for even sizes and f = 2 this is a plain 2×2 mean, but an
    odd last row is averaged with itself and for f ≥ 3 the window straddles the
    top edge — unlike ``avg_pool2d``, which drops the remainder.
    """
    if factor == 1:
        return images
    before, after = (factor + 1) // 2 - 1, factor - (factor + 1) // 2
    padded = symmetric_pad(images, before, after, before, after)
    return torch.nn.functional.avg_pool2d(padded, kernel_size=factor, stride=factor)


def conv2_average_subsample(images: torch.Tensor) -> torch.Tensor:
    """``x = conv2(x, fspecial('average', 2), 'same'); x = x(1:2:end, 1:2:end)`` (``GMSD.m``).

    ``conv2(..., 'same')`` with a 2×2 kernel takes rows i and i+1, with zeros
    past the end: an odd last row is halved, not dropped.
    """
    padded = torch.nn.functional.pad(images, (0, 1, 0, 1))
    return torch.nn.functional.avg_pool2d(padded, kernel_size=2, stride=2)


# ------------------------------------------------------------- imresize to a size, any kernel

def _triangle(x: np.ndarray) -> np.ndarray:
    """MATLAB imresize's ``triangle`` kernel (``'bilinear'``), support [−1, 1]."""
    return (x + 1) * ((x >= -1) & (x < 0)) + (1 - x) * ((x >= 0) & (x <= 1))


# method → (kernel, kernel width), as imresize.m's ``getMethodInfo``.
_RESIZE_KERNELS = {"bicubic": (_cubic, 4.0), "bilinear": (_triangle, 2.0)}


@functools.lru_cache(maxsize=64)
def resize_matrix(in_length: int, out_length: int, scale: float | None = None,
                  method: str = "bilinear", antialiasing: bool = True) -> np.ndarray:
    """The (out, in) matrix of MATLAB ``imresize`` along one axis.

    ``contributions()`` of MATLAB's imresize.m for any kernel: the scale is
    ``out_length / in_length`` unless given (``imresize(A, scale)`` passes the
    factor, ``imresize(A, [rows cols])`` the sizes); centres ``u = x/scale +
    ½(1 − 1/scale)``; when shrinking with ``antialiasing`` (imresize's
    default) the kernel is widened to ``scale·k(scale·x)`` of width
    ``width/scale`` — for ``'bilinear'`` a triangle 2/scale input pixels
    wide, not the two-tap interpolation of ``torch.nn.functional.interpolate``;
    weights normalised per output sample; indices mirrored at the borders
    (``[1:n, n:-1:1]``). The all-zero columns MATLAB drops change nothing.

    :func:`imresize_matrix` (``imresize(·, 0.5)`` of NIQE and BRISQUE) is
    ``resize_matrix(n, ceil(n/2), 0.5, "bicubic")``.
    """
    if method not in _RESIZE_KERNELS:
        raise ValueError(f"method must be one of {tuple(_RESIZE_KERNELS)}, got {method!r}")
    if in_length < 1 or out_length < 1:
        raise ValueError(f"lengths must be positive, got {in_length} → {out_length}")
    if scale is None:
        scale = out_length / in_length
    base, width = _RESIZE_KERNELS[method]
    if scale < 1 and antialiasing:
        def kernel(x):
            return scale * base(scale * x)
        width = width / scale
    else:
        kernel = base
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    columns = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length))
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), columns.ravel()),
              weights.ravel())
    return matrix


@functools.lru_cache(maxsize=64)
def _resize_taps(in_length: int, out_length: int, method: str,
                 antialiasing: bool) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero entries of :func:`resize_matrix` as (out, taps) indices and weights."""
    matrix = resize_matrix(in_length, out_length, None, method, antialiasing)
    taps = max(1, int((matrix != 0).sum(1).max()))
    order = np.argsort(matrix == 0, axis=1, kind="stable")[:, :taps]
    return order, np.take_along_axis(matrix, order, 1)


def _resize_axis(images: torch.Tensor, axis: int, out_length: int, method: str,
                 antialiasing: bool) -> torch.Tensor:
    in_length = images.shape[axis]
    if in_length == out_length and method in _RESIZE_KERNELS:
        # Same length: weights are a unit impulse at every sample (u = x).
        return images
    indices, weights = _resize_taps(in_length, out_length, method, antialiasing)
    shape = [1] * images.dim()
    shape[axis] = out_length
    index = torch.from_numpy(indices.T.copy()).to(images.device)
    weight = torch.from_numpy(weights.T.copy()).to(images)
    # One gather and multiply-add per tap: no (…, out, taps, …) intermediate.
    out = images.index_select(axis, index[0]) * weight[0].view(shape)
    for tap in range(1, index.shape[0]):
        out = out + images.index_select(axis, index[tap]) * weight[tap].view(shape)
    return out


def imresize(images: torch.Tensor, output_size: tuple[int, int], method: str = "bilinear",
             *, antialiasing: bool = True) -> torch.Tensor:
    """MATLAB ``imresize(A, [rows cols], method)`` of an (N, C, H, W) batch of ``double`` s.

    Separable, one axis after the other with the nonzero weights of
    :func:`resize_matrix`, the more-shrunk axis first as MATLAB does (the
    order changes only round-off, and work). Linear in the image, so gradients flow.
    ``uint8`` input, which MATLAB rounds after resizing, is not modelled: the
    releases that call this resize ``double`` s.
    """
    if method not in _RESIZE_KERNELS:
        raise ValueError(f"method must be one of {tuple(_RESIZE_KERNELS)}, got {method!r}")
    sizes = [int(output_size[0]), int(output_size[1])]
    scales = [sizes[k] / images.shape[k - 2] for k in range(2)]
    out = images
    for k in sorted(range(2), key=lambda k: scales[k]):  # imresize's dimension order
        out = _resize_axis(out, images.dim() - 2 + k, sizes[k], method, antialiasing)
    return out


# ------------------------------------------------------------------ conv2, mat2gray

def conv2_same(images: torch.Tensor, kernel) -> torch.Tensor:
    """MATLAB ``conv2(A, K, 'same')`` of each (H, W) plane of an (N, C, H, W) batch.

    A true convolution (K rotated by 180°), zero padding, and the central part
    of the full result: output (i, j) is full (i + ⌊k_r/2⌋, j + ⌊k_c/2⌋), so an
    even-sized kernel reaches one row/column further down/right than up/left.
    ``kernel`` is a 2-D array-like (k_r, k_c).
    """
    kernel = torch.as_tensor(np.asarray(kernel, dtype=np.float64)).to(images)
    k_rows, k_cols = kernel.shape
    # The rotated kernel correlated; pad so output (i, j) covers rows
    # i − (k_r − 1 − ⌊k_r/2⌋) … i + ⌊k_r/2⌋.
    top, left = k_rows - 1 - k_rows // 2, k_cols - 1 - k_cols // 2
    padded = torch.nn.functional.pad(images, (left, k_cols // 2, top, k_rows // 2))
    channels = images.shape[1]
    weight = torch.flip(kernel, (0, 1)).expand(channels, 1, k_rows, k_cols)
    return torch.nn.functional.conv2d(padded, weight, groups=channels)


def conv2_same_average_subsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """``x = conv2(x, fspecial('average', f), 'same'); x = x(1:f:end, 1:f:end)`` for any f.

    The downsampling of Lin Zhang's releases (``FSIM.m``, ``VSI.m``: f =
    ``max(1, round(min(H, W)/256))``). Sample k averages rows
    ``k·f − ⌈f/2⌉ + 1 … k·f + ⌊f/2⌋`` (0-based k·f), zeros past the borders: an
    f×f mean for interior blocks, but the window straddles the top/left edge
    for f ≥ 3 and a remainder at the bottom/right is averaged with zeros.
    For f = 2 this is :func:`conv2_average_subsample`.
    """
    if factor == 1:
        return images
    top = (factor + 1) // 2 - 1
    bottom = factor // 2
    padded = torch.nn.functional.pad(images, (top, bottom, top, bottom))
    return torch.nn.functional.avg_pool2d(padded, kernel_size=factor, stride=factor)


def mat2gray(images: torch.Tensor) -> torch.Tensor:
    """MATLAB ``mat2gray(A)`` of each image of an (N, ...) batch: ``(A − min)/(max − min)``.

    Min and max over everything but the batch axis; the result is clipped to
    [0, 1] as MATLAB does. A constant image is returned as is (clipped), as
    ``mat2gray`` does when ``max == min``. Differentiable (the gradient of min
    and max goes to the extreme elements).
    """
    flat = images.flatten(1)
    low = flat.amin(1).view(-1, *([1] * (images.dim() - 1)))
    high = flat.amax(1).view(-1, *([1] * (images.dim() - 1)))
    spread = high - low
    constant = spread == 0
    scaled = (images - low) / torch.where(constant, torch.ones_like(spread), spread)
    return torch.where(constant, images, scaled).clamp(0, 1)


def downsample_factor(height: int, width: int) -> int:
    """``f = max(1, round(min(H, W)/256))`` with MATLAB's round (halves up).

    The automatic downsampling factor of ``ssim.m``, ``FeatureSIM.m`` and
    ``VSI.m``. Python's ``round`` takes halves to even, which gives 2 instead of
    3 for a 640-pixel side.
    """
    return max(1, math.floor(min(height, width) / 256 + 0.5))
