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


@functools.lru_cache(maxsize=64)
def imresize_matrix(in_length: int, scale: float = 0.5) -> np.ndarray:
    """The (out, in) matrix of MATLAB ``imresize`` along one axis (bicubic, antialiased).

    Follows ``contributions()`` of MATLAB's imresize.m: output length
    ``ceil(scale·in)``, centres ``u = x/scale + ½(1 − 1/scale)``, kernel
    ``scale·cubic(scale·x)`` of width ``4/scale`` when shrinking, weights
    normalised per output sample, indices mirrored at the borders.
    """
    out_length = math.ceil(scale * in_length)
    width = 4.0
    if scale < 1:
        def kernel(x):
            return scale * _cubic(scale * x)
        width = width / scale
    else:
        kernel = _cubic
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


def imresize_half(images: torch.Tensor) -> torch.Tensor:
    """MATLAB ``imresize(images, 0.5)`` (bicubic, antialiased) of an (N, C, H, W) batch."""
    height, width = images.shape[-2:]
    rows = torch.from_numpy(imresize_matrix(height)).to(images)
    cols = torch.from_numpy(imresize_matrix(width)).to(images)
    return rows @ images @ cols.T
