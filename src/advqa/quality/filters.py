"""Separable 'valid' filtering of image maps, fast on CPU and differentiable.

PyTorch's single-channel convolutions are slow on CPU; SciPy's separable
correlation is several times faster there. :func:`separable_valid` runs SciPy
on CPU tensors inside an autograd Function (its gradient is the same
correlation with the flipped kernel on the zero-padded output gradient) and
``conv2d`` on other devices, so results and gradients agree on both paths.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F


def _correlate_chunk(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    trim = len(kernel) - 1
    start, stop = trim // 2, trim - trim // 2
    origin = -(trim - 2 * start) // 2
    array = scipy.ndimage.correlate1d(array, kernel, axis=-1, mode="constant", origin=origin)
    array = array[..., start:array.shape[-1] - stop]
    array = scipy.ndimage.correlate1d(array, kernel, axis=-2, mode="constant", origin=origin)
    return array[..., start:array.shape[-2] - stop, :]


def _correlate_valid(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'valid' correlation along the last two axes.

    SciPy releases the GIL while filtering, so chunks of the batch run on
    torch's thread count in parallel.
    """
    maps = array.reshape(-1, *array.shape[-2:])
    workers = max(1, min(torch.get_num_threads(), maps.shape[0]))
    if workers == 1:
        result = _correlate_chunk(maps, kernel)
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = pool.map(_correlate_chunk, np.array_split(maps, workers),
                             [kernel] * workers)
            result = np.concatenate(list(parts))
    return result.reshape(*array.shape[:-2], *result.shape[-2:])


def _correlate_full(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The adjoint of :func:`_correlate_valid`: zero-pad by the kernel, correlate flipped."""
    trim = len(kernel) - 1
    padded = np.pad(array, [(0, 0)] * (array.ndim - 2) + [(trim, trim)] * 2)
    return _correlate_valid(padded, kernel[::-1].copy())


class _SeparableValid(torch.autograd.Function):
    @staticmethod
    def forward(context, maps, kernel):
        context.kernel = kernel
        values = _correlate_valid(maps.detach().numpy(), kernel)
        return torch.from_numpy(np.ascontiguousarray(values))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(context, gradient):
        values = _correlate_full(gradient.contiguous().numpy(), context.kernel)
        return torch.from_numpy(np.ascontiguousarray(values)), None


def separable_valid(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate (..., H, W) maps with ``kernel ⊗ kernel``, keeping the 'valid' part."""
    if maps.device.type == "cpu":
        return _SeparableValid.apply(maps, kernel.to(maps.dtype).numpy())
    shape = maps.shape
    flat = maps.reshape(-1, 1, *shape[-2:])
    kernel = kernel.to(maps.dtype)
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(*shape[:-2], *flat.shape[-2:])
