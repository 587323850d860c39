"""Resizing and cropping images to the square input of a classifier."""

from __future__ import annotations

import collections
import dataclasses
import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from advqa.data.io import ImageReadError
from advqa.data.samples import ImageLoadWarning, LoadFailure, Sample

__all__ = ["PreparedBatch", "SmallImageWarning", "preprocess", "preprocess_batch",
           "resize_center_crop"]

# Bounds the memory of the intermediate batches of in-memory samples.
_CHUNK = 256
# File-backed images are decoded reduced by an integer factor only while the
# reduced shorter side stays at least this many times the resize target (as
# Pillow's reducing_gap), so the antialiased resize still does the final step.
_REDUCING_GAP = 2
# Upsampling by more than this makes an image mostly interpolation: warn.
_UPSAMPLING_WARNING = 4
# How many small images a warning names.
_NAMED = 5


class SmallImageWarning(UserWarning):
    """Warning emitted when preprocessing upsamples images by more than 4×."""


@dataclasses.dataclass(frozen=True)
class PreparedBatch:
    """What :func:`preprocess_batch` made of some samples.

    Attributes
    ----------
    images : torch.Tensor
        Float32 ``(K, C, size, size)`` batch of the samples that decoded.
    samples : list of Sample
        Those ``K`` samples, in input order.
    failures : list of LoadFailure
        The samples whose file failed to decode, in input order.
    """

    images: torch.Tensor
    samples: list[Sample]
    failures: list[LoadFailure]


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
    batch = _center_crop(batch, size)
    return batch if image.ndim == 4 else batch[0]


def _center_crop(batch: torch.Tensor, size: int) -> torch.Tensor:
    height, width = batch.shape[-2:]
    top, left = round((height - size) / 2), round((width - size) / 2)
    return batch[..., top : top + size, left : left + size].clamp(0, 1).contiguous()


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
    ImageReadError
        If a file-backed sample's file fails to decode. Long runs should call
        :func:`preprocess_batch`, which skips such samples instead.

    Warns
    -----
    SmallImageWarning
        Once per call when images are upsampled by more than 4× (shorter side
        below ``resize / 4``), naming them and their factors.

    Notes
    -----
    Sizes are the caller's choice: the AdvDB paper crops ImageNet images to
    299 x 299 for Inception v3 and uses 224 x 224 for the other classifiers.
    Classifiers in :mod:`advqa` carry their own ``input_size`` and
    ``resize_size``, which callers pass here as ``size`` and ``resize``.

    Memory: samples held in memory are resized in chunks of equal shape;
    file-backed samples (from the folder loaders) are decoded one at a time,
    so at most one decoded image is held besides the outputs. A file whose
    shorter side is at least ``4 * resize`` is decoded reduced by the integer
    factor ``k = short // (2 * resize)`` (JPEG by DCT scaling to 1/2, 1/4 or 1/8,
    then, like other formats, by averaging ``k × k`` blocks in 8 bits; see
    :func:`advqa.data.read_image`), then resized to the geometry of the full
    image with the same antialiased bilinear filter. This differs from
    resizing the full-resolution image by a few 8-bit levels at sharp edges: on
    scikit-image's astronaut photo upscaled (bicubic) to 4000 × 4000 and
    preprocessed to 224 with resize 256, the largest absolute difference is 6/255
    for a PNG file and 2/255 for a JPEG one, the mean 0.26/255 and 0.11/255
    (checked by ``tests/test_data.py``); over astronaut, coffee and chelsea at
    4000 px and sizes 224/224, 224/256 and 299/342 it stayed at most 9/255, with
    means below 0.35/255. Smaller files are decoded and resized exactly as
    in-memory samples are, bit for bit.
    """
    batch = _prepare(samples, size=size, resize=resize, rgb=rgb, skip_failures=False)
    return batch.images


def preprocess_batch(
    samples: Iterable[Sample],
    *,
    size: int = 224,
    resize: int | None = None,
    rgb: bool = True,
) -> PreparedBatch:
    """Like :func:`preprocess`, but samples whose file fails to decode are skipped.

    Folder loaders check only file headers, so corrupt pixel data surfaces
    here. A long run calls this once per batch and carries on without the
    failed samples.

    Parameters
    ----------
    samples, size, resize, rgb
        As for :func:`preprocess`.

    Returns
    -------
    PreparedBatch
        The images that decoded, their samples, and one :class:`LoadFailure` per
        sample that did not (``path`` and the decoder's reason).

    Raises
    ------
    ValueError
        As for :func:`preprocess`.

    Warns
    -----
    ImageLoadWarning
        Once per skipped sample, naming its file and the reason.
    SmallImageWarning
        As for :func:`preprocess`.
    """
    batch = _prepare(samples, size=size, resize=resize, rgb=rgb, skip_failures=True)
    for failure in batch.failures:
        warnings.warn(f"skipped {failure.path}: {failure.reason}", ImageLoadWarning, stacklevel=2)
    return batch


def _prepare(
    samples: Iterable[Sample], *, size: int, resize: int | None, rgb: bool, skip_failures: bool
) -> PreparedBatch:
    samples = list(samples)
    resize = size if resize is None else resize
    if size < 1 or resize < size:
        raise ValueError(f"need 1 <= size <= resize, got size={size}, resize={resize}")
    if not samples:
        raise ValueError("no samples to preprocess")
    channels = {sample.channels for sample in samples}
    if not rgb and len(channels) > 1:
        raise ValueError(f"samples mix {sorted(channels)} channels; pass rgb=True")
    _warn_if_small(samples, resize=resize)
    outputs: list[torch.Tensor | None] = [None] * len(samples)
    _fit_in_memory(samples, outputs, size=size, resize=resize)
    failures = []
    for index, sample in enumerate(samples):
        if sample.in_memory:
            continue
        try:
            image = sample.load(min_side=_REDUCING_GAP * resize)
        except (ImageReadError, OSError) as error:
            if not skip_failures:
                raise
            reason = error.reason if isinstance(error, ImageReadError) else str(error)
            failures.append(LoadFailure(str(sample.path), reason))
            continue
        outputs[index] = _fit(image, native=sample.size, size=size, resize=resize)
    kept = [index for index, output in enumerate(outputs) if output is not None]
    width = 3 if rgb else channels.pop()
    images = (
        torch.stack([_expanded(outputs[index], rgb=rgb) for index in kept])
        if kept else torch.empty(0, width, size, size)
    )
    return PreparedBatch(images, [samples[index] for index in kept], failures)


def _fit_in_memory(
    samples: list[Sample], outputs: list[torch.Tensor | None], *, size: int, resize: int
) -> None:
    # Images of one shape are resized together, which is much faster for
    # uniform sets such as MNIST than one call per image (and bit-identical).
    held = {index: sample.image for index, sample in enumerate(samples) if sample.in_memory}
    for indices in _indices_by_shape(held).values():
        for start in range(0, len(indices), _CHUNK):
            chunk = indices[start : start + _CHUNK]
            batch = resize_center_crop(torch.stack([held[index] for index in chunk]), size,
                                       resize=resize)
            for index, output in zip(chunk, batch, strict=True):
                outputs[index] = output


def _fit(image: torch.Tensor, *, native: tuple[int, int], size: int, resize: int) -> torch.Tensor:
    if tuple(image.shape[-2:]) == native:
        return resize_center_crop(image, size, resize=resize)
    # A reduced decode: reduced pixel j averages native pixels [j k, j k + k), and
    # the last one may be partial, so resizing by shape would stretch the picture
    # by up to (k - 1) native pixels. Resizing by the native scale times k keeps
    # every output pixel where the full-resolution resize puts it.
    factor = round(native[0] / image.shape[-2])
    target = _resized_shape(*native, resize=resize)
    # interpolate's output is floor(side * scale), which rounding error could put
    # one short of the target; the nudge moves output pixels by under 1e-6 px.
    scales = [factor * length / side * (1 + 1e-9) for length, side in zip(target, native,
                                                                         strict=True)]
    resized = F.interpolate(
        image[None],
        scale_factor=scales,
        recompute_scale_factor=False,
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return _center_crop(resized[..., : target[0], : target[1]], size)[0]


def _expanded(image: torch.Tensor, *, rgb: bool) -> torch.Tensor:
    return image.expand(3, -1, -1) if rgb and image.shape[0] == 1 else image


def _warn_if_small(samples: list[Sample], *, resize: int) -> None:
    small = [
        (sample.name, min(sample.size), resize / min(sample.size))
        for sample in samples
        if resize > _UPSAMPLING_WARNING * min(sample.size)
    ]
    if not small:
        return
    named = ", ".join(
        f"{name} ({short} px, {factor:.1f}×)" for name, short, factor in small[:_NAMED]
    )
    more = f" and {len(small) - _NAMED} more" if len(small) > _NAMED else ""
    warnings.warn(
        f"{len(small)} of {len(samples)} images are upsampled more than "
        f"{_UPSAMPLING_WARNING}× to a shorter side of {resize} px: {named}{more}; what a "
        "classifier sees of them is mostly interpolation (use a model whose input size "
        "matches them)",
        SmallImageWarning,
        stacklevel=4,
    )


def _resized_shape(height: int, width: int, *, resize: int) -> tuple[int, int]:
    short, long = min(height, width), max(height, width)
    new_long = int(resize * long / short)
    return (resize, new_long) if height <= width else (new_long, resize)


def _indices_by_shape(images: dict[int, torch.Tensor]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = collections.defaultdict(list)
    for index, image in images.items():
        groups[tuple(image.shape)].append(index)
    return groups
