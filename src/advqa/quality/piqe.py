"""Perception-based image quality evaluator (PIQE), batched, as MATLAB's ``piqe``.

Venkatanath N, Praneeth D, Maruthi Chandrasekhar Bh, S. S. Channappayya and S. S. Medasani,
"Blind image quality evaluation using perception based features", NCC 2015.

Steps, with the constants of MATLAB's ``piqe.m`` (Image Processing Toolbox, R2018b on):

1. pad the image at the bottom and right by replicating its last row and column up to a
   multiple of 16; convert colour to grey with ``rgb2gray`` and round to integer grey levels
   on 0–255 (``round(255 * im2double(I))``);
2. MSCN coefficients ``(I - μ) / (σ + 1)``, μ and σ from a 7×7 Gaussian window with
   σ_w = 7/6 and replicated borders (``imgaussfilt(I, 7/6, 'FilterSize', 7)``);
3. split into 16×16 blocks; a block is *active* when the (unbiased) variance ``v`` of its
   MSCN coefficients exceeds 0.1;
4. an active block shows a *noticeable artifact* when any of the 11 six-pixel segments along
   any of its four edges has a standard deviation below 0.1, and *noise* when
   ``sqrt(v) > 2β``, β the relative difference between ``sqrt(v)`` and the ratio of the
   standard deviation of the two centre columns to that of the surround (with the same
   column bookkeeping as ``piqe.m``, which leaves the second centre column in the surround);
5. score ``100 · (1 + Σ_active [artifact·(1 - v) + noise·v]) / (1 + #active)``: 0–100 in
   practice, lower is better; a flat image scores 100.

Gradients: the block classification (active / artifact / noise) is a set of hard
thresholds, so it is computed without gradient; the score is differentiable through the
block variances ``v`` of the selected blocks, back through the MSCN normalisation to the
pixels. The integer rounding of step 1 passes gradients straight through (identity);
``quantize=False`` skips it. Everything is computed in float64, as MATLAB does, so that the
thresholds fall the same way; the scores are returned in the input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advqa.quality.validate import check_images, gray

BLOCK = 16
ACTIVITY_THRESHOLD = 0.1
IMPAIRED_THRESHOLD = 0.1
SEGMENT = 6
GAUSSIAN_SIZE = 7
GAUSSIAN_SIGMA = 7 / 6
C = 1.0
# Columns of a 16-wide block that piqe.m's centerSurDev treats as the surround: it deletes
# column 8 and then column 9 of the remaining 15 (1-based), i.e. original columns 8 and 10.
_SURROUND = [c for c in range(BLOCK) if c not in (7, 9)]
_CENTRE = [7, 8]


@dataclass(frozen=True)
class PIQEResult:
    """Scores and the three spatial quality masks of ``[score, activity, artifacts, noise] =
    piqe(I)``; masks are (N, H, W) booleans at pixel resolution."""

    score: torch.Tensor
    activity_mask: torch.Tensor
    artifacts_mask: torch.Tensor
    noise_mask: torch.Tensor


def _gaussian_kernel(dtype, device) -> torch.Tensor:
    x = torch.arange(GAUSSIAN_SIZE, dtype=dtype, device=device) - (GAUSSIAN_SIZE - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * GAUSSIAN_SIGMA**2))
    return kernel / kernel.sum()


def _gaussian_filter(images: torch.Tensor) -> torch.Tensor:
    """``imgaussfilt(I, 7/6, 'FilterSize', 7, 'Padding', 'replicate')`` on (N, 1, H, W)."""
    kernel = _gaussian_kernel(images.dtype, images.device)
    half = GAUSSIAN_SIZE // 2
    padded = F.pad(images, (half, half, half, half), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, -1, 1))
    return F.conv2d(rows, kernel.view(1, 1, 1, -1))


def _safe_sqrt(values: torch.Tensor, tiny: float = 1e-12) -> torch.Tensor:
    """``sqrt`` that is exactly 0 at 0 with a finite gradient everywhere."""
    return torch.where(values > 0, values.clamp_min(tiny).sqrt(), 0.0)


def mscn(grey: torch.Tensor) -> torch.Tensor:
    """PIQE's mean-subtracted contrast-normalised coefficients of 0–255 grey images."""
    mu = _gaussian_filter(grey)
    sigma = _safe_sqrt((_gaussian_filter(grey * grey) - mu * mu).abs())
    return (grey - mu) / (sigma + 1)


def _prepare(images: torch.Tensor, data_range: float, clamp: bool, quantize: bool):
    images = check_images(images, data_range=data_range, clamp=clamp)
    height, width = images.shape[-2:]
    pad_rows, pad_cols = (-height) % BLOCK, (-width) % BLOCK
    grey = gray(images.to(torch.float64), data_range)
    if pad_rows or pad_cols:
        grey = F.pad(grey, (0, pad_cols, 0, pad_rows), mode="replicate")
    if quantize:
        # MATLAB rounds half away from zero; values are non-negative. Straight-through.
        grey = grey + (torch.floor(grey + 0.5) - grey).detach()
    return grey, (height, width)


def _blocks(coefficients: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) → (N, H/16, W/16, 16, 16)."""
    n, _, height, width = coefficients.shape
    blocks = coefficients.view(n, height // BLOCK, BLOCK, width // BLOCK, BLOCK)
    return blocks.permute(0, 1, 3, 2, 4)


def _unbiased_std(values: torch.Tensor, dims) -> torch.Tensor:
    return values.std(dim=dims, correction=1)


@torch.no_grad()
def _classify(blocks: torch.Tensor, variance: torch.Tensor):
    """Boolean (N, by, bx) masks: active, noticeable artifact, noise."""
    active = variance > ACTIVITY_THRESHOLD
    edges = torch.stack([blocks[..., 0, :], blocks[..., :, -1], blocks[..., -1, :],
                         blocks[..., :, 0]], dim=-2)  # top, right, bottom, left
    segments = edges.unfold(-1, SEGMENT, 1)  # (..., 4, 11, 6)
    artifacts = (_unbiased_std(segments, -1) < IMPAIRED_THRESHOLD).flatten(-2).any(-1)
    sigma = variance.sqrt()
    centre = _unbiased_std(blocks[..., :, _CENTRE], (-2, -1))
    surround = _unbiased_std(blocks[..., :, _SURROUND], (-2, -1))
    ratio = torch.nan_to_num(centre / surround, nan=0.0, posinf=torch.inf)
    beta = (sigma - ratio).abs() / torch.maximum(sigma, ratio)
    noise = sigma > 2 * beta
    return active, artifacts & active, noise & active


def _upsample(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    pixels = mask.repeat_interleave(BLOCK, dim=-2).repeat_interleave(BLOCK, dim=-1)
    return pixels[..., : size[0], : size[1]]


def _piqe(images: torch.Tensor, data_range: float, clamp: bool, quantize: bool,
          masks: bool) -> PIQEResult:
    grey, size = _prepare(images, data_range, clamp, quantize)
    blocks = _blocks(mscn(grey))
    variance = blocks.var(dim=(-2, -1), correction=1)
    active, artifacts, noise = _classify(blocks, variance)
    block_scores = (artifacts.to(variance.dtype) * (1 - variance)
                    + noise.to(variance.dtype) * variance)
    distortion = block_scores.flatten(1).sum(dim=1)
    count = active.flatten(1).sum(dim=1).to(variance.dtype)
    score = ((distortion + C) / (C + count) * 100).to(images.dtype)
    if not masks:
        return PIQEResult(score, active, artifacts, noise)
    return PIQEResult(score, _upsample(active, size), _upsample(artifacts, size),
                      _upsample(noise, size))


def piqe_result(images: torch.Tensor, *, data_range: float = 1.0, clamp: bool = False,
                quantize: bool = True) -> PIQEResult:
    """PIQE scores with MATLAB's activity, noticeable-artifact and noise masks.

    See :func:`piqe` for the parameters.
    """
    return _piqe(images, data_range, clamp, quantize, masks=True)


def piqe(images: torch.Tensor, *, data_range: float = 1.0, clamp: bool = False,
         quantize: bool = True) -> torch.Tensor:
    """No-reference PIQE score of each image, as MATLAB's ``piqe``.

    Parameters
    ----------
    images : torch.Tensor
        (N, C, H, W) batch, C in {1, 3} (RGB), values in [0, data_range]; any size (the
        image is padded to a multiple of 16 as ``piqe.m`` does).
    data_range : float
        Largest pixel value (1.0 or 255.0).
    clamp : bool
        Clamp out-of-range values instead of raising.
    quantize : bool
        Round grey levels to integers as ``piqe.m`` does (gradient passed straight through).

    Returns
    -------
    torch.Tensor
        (N,) scores, 0–100 in practice (0 best, 100 for a flat image); lower is better.
        Differentiable through the variances of the selected blocks, not through the
        thresholded block selection.
    """
    return _piqe(images, data_range, clamp, quantize, masks=False).score


class PIQE(nn.Module):
    """:func:`piqe` as a module: ``PIQE()(images)`` → (N,) scores, lower is better."""

    def __init__(self, *, data_range: float = 1.0, clamp: bool = False, quantize: bool = True):
        super().__init__()
        self.options = dict(data_range=data_range, clamp=clamp, quantize=quantize)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return piqe(images, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())
