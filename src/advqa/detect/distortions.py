"""Four distortion types at five monotone levels (Feng & Cai, Sec. V-A).

Gaussian blur, additive white Gaussian noise, JPEG and JPEG2000 compression, as in
the "distorted images" group of Feng & Cai. Level 1 is the mildest, level 5 the
most severe; for a natural photo the PSNR against the original falls strictly
from level to level (``tests/test_gate.py`` checks it).

Every function maps an ``(N, C, H, W)`` float batch in ``[0, 1]``, C = 3 (RGB) or 1
(grey, e.g. Fashion-MNIST), to a batch of the same shape. Blur, JPEG and JPEG2000 go
through Pillow on 8-bit images; the
noise is seeded and uses the same standard-normal field at every level, only
scaled, so severity is strictly ordered.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter

from advqa.data import codec_roundtrip

#: Parameters of levels 1..5 per distortion type.
LEVELS: dict[str, tuple[float, ...]] = {
    # Gaussian standard deviation in pixels (Pillow's GaussianBlur radius).
    "blur": (0.5, 1.0, 2.0, 3.5, 6.0),
    # Standard deviation of the additive noise on the [0, 1] scale.
    "noise": (0.01, 0.025, 0.05, 0.1, 0.2),
    # Pillow JPEG quality factor (lower = stronger compression).
    "jpeg": (60, 30, 15, 8, 3),
    # JPEG2000 compression ratio (Pillow quality_mode="rates").
    "jpeg2000": (10, 20, 40, 80, 160),
}
DISTORTIONS = tuple(LEVELS)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(C, H, W) in [0, 1] → an 8-bit Pillow image: mode L for one channel, RGB for three."""
    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if array.shape[0] == 1:
        return Image.fromarray(array[0], mode="L")
    return Image.fromarray(array.transpose(1, 2, 0), mode="RGB")


def from_pil(image: Image.Image) -> torch.Tensor:
    """An L or RGB Pillow image → (C, H, W) float in [0, 1]."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _check(images: torch.Tensor, level: int) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected an (N, 3, H, W) or (N, 1, H, W) batch, got shape "
                         f"{tuple(images.shape)}")
    if level not in range(1, 6):
        raise ValueError(f"level must be 1..5, got {level!r}")


def _per_image(images: torch.Tensor, function) -> torch.Tensor:
    return torch.stack([from_pil(function(to_pil(image))) for image in images]).to(images.device)


def gaussian_blur(images: torch.Tensor, level: int) -> torch.Tensor:
    _check(images, level)
    radius = LEVELS["blur"][level - 1]
    return _per_image(images, lambda image: image.filter(ImageFilter.GaussianBlur(radius)))


def white_noise(images: torch.Tensor, level: int, *, seed: int = 0) -> torch.Tensor:
    _check(images, level)
    generator = torch.Generator().manual_seed(seed)
    field = torch.randn(images.shape, generator=generator).to(images.device)
    noisy = (images + LEVELS["noise"][level - 1] * field).clamp(0, 1)
    return (noisy * 255).round() / 255  # 8-bit, like every other group


def jpeg(images: torch.Tensor, level: int) -> torch.Tensor:
    _check(images, level)
    quality = int(LEVELS["jpeg"][level - 1])
    return codec_roundtrip(images, format="JPEG", quality=quality)


#: Smallest H·W·C for which every JPEG2000 level is a distinct distortion. OpenJPEG's
#: stream has a floor of roughly 100–150 bytes, so a byte budget H·W·C / rate below
#: ~160 gives the same (floor) image for several rates: measured on photos, 28×28 and
#: 64×64 grey images come out identical at every level ≥ 2, 96×96 RGB (27,648) does not.
JPEG2000_MIN_VALUES = 160 * 160


def _check_jpeg2000(shape) -> None:
    """Refuse ``(C, H, W)`` images too small for five distinct JPEG2000 levels."""
    values = int(np.prod(shape))
    if values < JPEG2000_MIN_VALUES:
        raise ValueError(
            f"JPEG2000 levels are not distinct on {tuple(shape)} images: at "
            f"compression ratio {LEVELS['jpeg2000'][-1]} they get fewer bytes than the "
            f"codec's minimum stream (need H·W·C >= {JPEG2000_MIN_VALUES}); leave jpeg2000 "
            "out for small images such as Fashion-MNIST")


def check_distortions(kinds, shape) -> tuple[str, ...]:
    """Validate distortion names for ``(C, H, W)`` images, without distorting anything.

    Returns ``kinds`` as a tuple (empty: no distorted group). Raises ValueError for an
    unknown or repeated name, or a distortion these images cannot take (JPEG2000 on images smaller
    than :data:`JPEG2000_MIN_VALUES` values, e.g. 1×28×28 Fashion-MNIST), so a long
    run is refused before it starts rather than failing in its distortion units.
    """
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in DISTORTIONS]
    if unknown:
        raise ValueError(f"unknown distortion(s) {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(DISTORTIONS)}")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"distortions repeat a name: {', '.join(kinds)}")
    if shape is not None and "jpeg2000" in kinds:
        _check_jpeg2000(tuple(shape))
    return kinds


def jpeg2000(images: torch.Tensor, level: int) -> torch.Tensor:
    _check(images, level)
    _check_jpeg2000(images.shape[1:])
    rate = float(LEVELS["jpeg2000"][level - 1])
    return codec_roundtrip(images, format="JPEG2000", quality_mode="rates",
                           quality_layers=[rate])


_FUNCTIONS = {"blur": gaussian_blur, "noise": white_noise, "jpeg": jpeg, "jpeg2000": jpeg2000}


def distort(images: torch.Tensor, kind: str, level: int, *, seed: int = 0) -> torch.Tensor:
    """Apply distortion ``kind`` (one of :data:`DISTORTIONS`) at ``level`` 1..5."""
    if kind not in _FUNCTIONS:
        raise ValueError(f"unknown distortion {kind!r}; valid: {', '.join(DISTORTIONS)}")
    if kind == "noise":
        return white_noise(images, level, seed=seed)
    return _FUNCTIONS[kind](images, level)
