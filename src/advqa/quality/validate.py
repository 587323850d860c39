"""One input validator shared by every quality metric, and the colour conversions they use."""

from __future__ import annotations

import torch

# ITU-R BT.601 luma as MATLAB's rgb2ycbcr computes it: RGB in [0, 1], Y in [16, 235].
YCBCR_LUMA = (65.481, 128.553, 24.966)
YCBCR_OFFSET = 16.0
# MATLAB's rgb2gray weights (NIQE, BRISQUE and MAD reference code convert with it).
GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def check_images(images: torch.Tensor, *, data_range: float = 1.0, name: str = "images",
                 min_size: int = 1, clamp: bool = False) -> torch.Tensor:
    """Validate an (N, C, H, W) batch with C in {1, 3} and values in [0, data_range].

    Parameters
    ----------
    images : torch.Tensor
        Floating-point batch.
    data_range : float
        Largest admissible value (1.0 or 255.0 typically).
    name : str
        How the error messages call the tensor.
    min_size : int
        Smallest admissible height and width, e.g. a metric's window size.
    clamp : bool
        Clamp out-of-range values instead of raising (NaN always raises).

    Returns
    -------
    torch.Tensor
        ``images`` (clamped if asked).

    Raises
    ------
    ValueError
        If the shape, dtype or values are wrong, or the batch is empty (N = 0).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be an (N, C, H, W) tensor with C = 1 or 3, got {shape}")
    if images.shape[0] == 0:
        # Checked before anything reduces over the batch, which fails inside torch.
        raise ValueError(f"empty batch: {name} has shape {tuple(images.shape)}, no images to "
                         "score (N = 0)")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {images.dtype}")
    if torch.isnan(images).any():
        raise ValueError(f"{name} contain NaN")
    if min(images.shape[-2:]) < min_size:
        raise ValueError(f"{name} are {images.shape[-2]}×{images.shape[-1]}, smaller than the "
                         f"{min_size}×{min_size} this metric needs")
    if clamp:
        return images.clamp(0, data_range)
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > data_range:
        raise ValueError(f"{name} must lie in [0, {data_range:g}], found [{low:.4g}, {high:.4g}]; "
                         "pass clamp=True to clamp them")
    return images


def check_pair(reference: torch.Tensor, distorted: torch.Tensor, **options):
    """Validate a reference and a distorted batch of the same shape."""
    if reference.shape != distorted.shape:
        raise ValueError(f"reference shape {tuple(reference.shape)} and distorted shape "
                         f"{tuple(distorted.shape)} differ")
    reference = check_images(reference, name="reference", **options)
    distorted = check_images(distorted, name="distorted", **options)
    return reference, distorted


def weighted_channels(images: torch.Tensor, weights, offset: float = 0.0) -> torch.Tensor:
    """``offset + Σ_c weights[c] · images[:, c]`` as (N, 1, H, W).

    Written as three scaled adds: a reduction over the channel axis is several
    times slower on CPU because it strides across planes.
    """
    red, green, blue = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    result = red * weights[0] + green * weights[1]
    return (result + blue * weights[2]) + offset


def ycbcr_luma(images: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """BT.601 luma Y on MATLAB's 0–255 scale (16–235 for RGB); one channel is taken as Y.

    Single-channel input is rescaled to 0–255 and otherwise used as it is.
    """
    if images.shape[1] == 1:
        return images * (255.0 / data_range)
    weights = [weight / data_range for weight in YCBCR_LUMA]
    return weighted_channels(images, weights, YCBCR_OFFSET)


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """``(N, C, H, W)`` in [0, 1] → ``(N, channels, H, W)``: grey is repeated to RGB, RGB
    becomes grey by MATLAB's ``rgb2gray`` weights (unrounded); equal counts pass unchanged.
    Used to feed a classifier the channels it takes (:func:`advqa.models.input_channels`).
    """
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        return weighted_channels(images, GRAY_WEIGHTS).clamp(0, 1)
    raise ValueError(f"cannot turn {have}-channel images into the {channels}-channel input "
                     "the classifier takes")


def gray(images: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """MATLAB ``rgb2gray`` on a 0–255 scale; one-channel input is only rescaled."""
    if images.shape[1] == 1:
        return images * (255.0 / data_range)
    return weighted_channels(images, [255.0 * weight / data_range for weight in GRAY_WEIGHTS])


def check_clips(distorted: torch.Tensor, reference: torch.Tensor | None = None, *,
                data_range: float = 1.0, clamp: bool = False):
    """Validate a distorted clip batch (and its reference) for a frame-pooled metric.

    Parameters
    ----------
    distorted, reference : torch.Tensor
        ``(N, T, C, H, W)`` float batches, or single ``(T, C, H, W)`` clips (N = 1), C ∈
        {1, 3}, N, T ≥ 1, values in [0, data_range]; the reference (if given) of the same
        shape.
    data_range : float
        The value of white.
    clamp : bool
        Clamp out-of-range values instead of raising (NaN always raises).

    Returns
    -------
    tuple
        ``(distorted, reference)`` as ``(N, T, C, H, W)`` (reference None if not given),
        clamped if asked.

    Raises
    ------
    ValueError
        Saying what is wrong and what to do about it. Values are checked by
        :func:`check_images` on the frames, as image metrics check
        images; :func:`advqa.quality.strred.check_videos` is ST-RRED's stricter version
        (T ≥ 2, frames ≥ 72 pixels).
    """
    clips = {"distorted": distorted, "reference": reference}
    for name, value in clips.items():
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (N, T, C, H, W), got "
                             f"{type(value).__name__}")
        shape = tuple(value.shape)
        if value.dim() == 4:
            value = value.unsqueeze(0)
        if value.dim() != 5 or value.shape[2] not in (1, 3):
            raise ValueError(f"{name} must be video clips (N, T, C, H, W) or one clip "
                             f"(T, C, H, W) with C = 1 or 3, got shape {shape}; for a batch "
                             "of images use the image metric (advqa.quality.get_metric)")
        if value.shape[0] == 0 or value.shape[1] == 0:
            raise ValueError(f"empty batch: {name} has shape {tuple(value.shape)}, no clips "
                             "or no frames to score (N and T must be at least 1)")
        if not value.is_floating_point():
            raise ValueError(f"{name} must be floating point in [0, {data_range:g}], got "
                             f"{value.dtype}; divide 8-bit frames by 255")
        clips[name] = value
    distorted, reference = clips["distorted"], clips["reference"]
    if reference is not None and reference.shape != distorted.shape:
        raise ValueError(f"reference shape {tuple(reference.shape)} and distorted shape "
                         f"{tuple(distorted.shape)} differ; a full-reference video metric "
                         "compares clips of the same batch size, length, channels and frame "
                         "size (trim or resize one of them)")
    checked = []
    for name, value in (("distorted", distorted), ("reference", reference)):
        if value is None:
            checked.append(None)
            continue
        frames = check_images(value.reshape(-1, *value.shape[2:]), data_range=data_range,
                              name=f"{name} frames", clamp=clamp)
        checked.append(frames.reshape(value.shape))
    return checked[0], checked[1]
