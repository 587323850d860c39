"""Resizing and cropping images to the square input of a classifier."""

from __future__ import annotations

import collections
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from advqa.data.samples import Sample

__all__ = ["preprocess", "resize_center_crop"]

# Bounds the memory of the intermediate batches in preprocess().
_CHUNK = 256


def resize_center_crop(
    image: torch.Tensor, size: int, *, resize: int | None = None
) -> torch.Tensor:
    """Resize the shorter side, then crop the centre square.

    Parameters
    ----------
    image : torch.Tensor
        Floating-point image ``(C, H, W)`` or batch ``(N, C, H, W)`` in ``[0, 1]``.
    size : int
        Side of the output square.
    resize : int, optional
        Length the shorter side is resized to before cropping; defaults to
        ``size``. Must be at least ``size``. The longer side becomes
        ``int(resize * long / short)``, as in torchvision.

    Returns
    -------
    torch.Tensor
        Float32 tensor of shape ``(C, size, size)`` or ``(N, C, size, size)``,
        clipped to ``[0, 1]``.

    Notes
    -----
    Resizing is bilinear with antialiasing (``torch.nn.functional.interpolate``
    with ``antialias=True``), which matches torchvision's ``Resize`` on tensors
    and closely follows Pillow's bilinear filter. It is skipped when the shorter
    side already equals ``resize``. The crop offset is
    ``round((side - size) / 2)``, as in torchvision's ``CenterCrop``.
    """
    resize = size if resize is None else resize
    if size < 1 or resize < size:
        raise ValueError(f"need 1 <= size <= resize, got size={size}, resize={resize}")
    if image.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (N, C, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"expected a floating-point image in [0, 1], got {image.dtype}")
    batch = (image if image.ndim == 4 else image.unsqueeze(0)).to(torch.float32)
    height, width = batch.shape[-2:]
    if min(height, width) != resize:
        batch = F.interpolate(
            batch,
            size=_resized_shape(height, width, resize=resize),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
    height, width = batch.shape[-2:]
    top, left = round((height - size) / 2), round((width - size) / 2)
    batch = batch[..., top : top + size, left : left + size].clamp(0, 1).contiguous()
    return batch if image.ndim == 4 else batch[0]


def preprocess(
    samples: Iterable[Sample],
    *,
    size: int = 224,
    resize: int | None = None,
    rgb: bool = True,
) -> torch.Tensor:
    """Stack samples of any native size into one classifier-ready batch.

    Parameters
    ----------
    samples : SampleSet or iterable of Sample
        Samples to stack, in order.
    size : int, optional
        Side of the square output; 224 by default.
    resize : int, optional
        Shorter-side length before the centre crop; defaults to ``size``. See
        :func:`resize_center_crop`.
    rgb : bool, optional
        Replicate one-channel images to three channels (default). With ``False``
        all samples must have the same number of channels.

    Returns
    -------
    torch.Tensor
        Float32 batch ``(N, C, size, size)`` in ``[0, 1]`` with ``C = 3`` when
        ``rgb`` is true.

    Raises
    ------
    ValueError
        If ``samples`` is empty, or channel counts differ and ``rgb`` is false.

    Notes
    -----
    Sizes are the caller's choice: the AdvDB paper crops ImageNet images to
    299 x 299 for Inception v3 and uses 224 x 224 for the other classifiers.
    Classifiers in :mod:`advqa` carry their own ``input_size`` and
    ``resize_size``, which callers pass here as ``size`` and ``resize``.
    """
    images = [sample.image for sample in samples]
    if not images:
        raise ValueError("no samples to preprocess")
    channels = {image.shape[0] for image in images}
    if not rgb and len(channels) > 1:
        raise ValueError(f"samples mix {sorted(channels)} channels; pass rgb=True")
    outputs: list[torch.Tensor] = [torch.empty(0)] * len(images)
    # Images of one shape are resized together, which is much faster for
    # uniform sets such as MNIST than one call per image.
    for indices in _indices_by_shape(images).values():
        for start in range(0, len(indices), _CHUNK):
            chunk = indices[start : start + _CHUNK]
            batch = torch.stack([images[index] for index in chunk])
            batch = resize_center_crop(batch, size, resize=resize)
            if rgb and batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)
            for index, output in zip(chunk, batch, strict=True):
                outputs[index] = output
    return torch.stack(outputs)


def _resized_shape(height: int, width: int, *, resize: int) -> tuple[int, int]:
    short, long = min(height, width), max(height, width)
    new_long = int(resize * long / short)
    return (resize, new_long) if height <= width else (new_long, resize)


def _indices_by_shape(images: list[torch.Tensor]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = collections.defaultdict(list)
    for index, image in enumerate(images):
        groups[tuple(image.shape)].append(index)
    return groups
