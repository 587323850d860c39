"""Reading and writing single images as float tensors in ``[0, 1]``."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pathlib
import re
import secrets
import threading

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS_VARIABLE",
    "ImageHeader",
    "ImageReadError",
    "max_image_pixels",
    "quantize",
    "read_image",
    "read_image_header",
    "save_png",
]

#: File suffixes (lower case) that the folder loaders treat as images.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

#: Largest image, in pixels (width × height), that the readers accept unless told
#: otherwise: 80 megapixels, so 8000 × 8000 passes and 10000 × 10000 is refused.
DEFAULT_MAX_IMAGE_PIXELS = 80_000_000
#: Environment variable that overrides :data:`DEFAULT_MAX_IMAGE_PIXELS`.
MAX_IMAGE_PIXELS_VARIABLE = "ADVQA_MAX_IMAGE_PIXELS"

# Restricting Pillow to these plugins keeps behaviour predictable and stops it from
# handing untrusted files to plugins such as EPS (which runs Ghostscript).
# Multi-picture (MPO) files open through the JPEG plugin.
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_JPEG_END_MARKER = b"\xff\xd9"
_JPEG_START_OF_SCAN = 0xDA

_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
# Pillow's DCT scaling (Image.draft) offers 1/2, 1/4 and 1/8.
_JPEG_SCALES = (8, 4, 2)

_EIGHT_BIT_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La"})
_SIXTEEN_BIT_GRAYSCALE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_RANGE_TOLERANCE = 1e-6


class ImageReadError(ValueError):
    """Raised when a file exists but cannot be decoded as an image.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file.
    reason : str
        What went wrong, without the path.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[str, str]]:
        # The default pickling would call __init__ with the formatted message only.
        return type(self), (self.path, self.reason)


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding its pixels.

    Attributes
    ----------
    format : str
        Pillow's name of the format: ``"PNG"``, ``"JPEG"``, ``"MPO"``, ``"BMP"`` or
        ``"TIFF"``.
    height, width : int
        Native size in pixels.
    channels : int
        Channels :func:`read_image` returns for this file in the mode it was read
        for: 3, or 1 for a grayscale source read with ``mode="keep"``.
    """

    format: str
    height: int
    width: int
    channels: int


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit in force for one read.

    Parameters
    ----------
    max_pixels : int, optional
        Explicit limit (width × height). Without it, the environment variable
        ``ADVQA_MAX_IMAGE_PIXELS`` is used when set, else
        :data:`DEFAULT_MAX_IMAGE_PIXELS` (80,000,000).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If the limit (argument or variable) is not a positive integer.
    """
    where = "max_pixels"
    if max_pixels is None:
        text = os.environ.get(MAX_IMAGE_PIXELS_VARIABLE, "").strip()
        if not text:
            return DEFAULT_MAX_IMAGE_PIXELS
        where = f"${MAX_IMAGE_PIXELS_VARIABLE}"
        try:
            max_pixels = int(text)
        except ValueError:
            raise ValueError(
                f"{where} must be a positive integer number of pixels, got {text!r}"
            ) from None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"{where} must be a positive integer number of pixels, got {max_pixels!r}")
    return max_pixels


def read_image_header(
    path: str | os.PathLike, *, mode: str = "rgb", max_pixels: int | None = None
) -> ImageHeader:
    """Check an image file as far as possible without decoding its pixels.

    Parameters
    ----------
    path : str or os.PathLike
        Image file.
    mode : {"rgb", "keep"}, optional
        The mode the file will be read with (see :func:`read_image`); it decides
        :attr:`ImageHeader.channels`.
    max_pixels : int, optional
        Pixel limit; see :func:`max_image_pixels`.

    Returns
    -------
    ImageHeader

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImageReadError
        If the file is empty, truncated (no end marker), not a supported image,
        or larger than the pixel limit.

    Notes
    -----
    Corrupt pixel data is found only by decoding, that is by :func:`read_image`.
    """
    keep_grayscale = _keep_grayscale(mode)
    limit = max_image_pixels(max_pixels)
    path = pathlib.Path(path)
    data = _file_bytes(path)
    with _pillow_limit_suspended(), _opened(path, data, limit=limit) as image:
        return ImageHeader(
            format=str(image.format),
            height=image.height,
            width=image.width,
            channels=_channels(image.mode, keep_grayscale=keep_grayscale),
        )


def read_image(
    path: str | os.PathLike,
    *,
    mode: str = "rgb",
    max_pixels: int | None = None,
    min_side: int | None = None,
) -> torch.Tensor:
    """Decode a PNG, JPEG, BMP or TIFF file into a float tensor.

    Parameters
    ----------
    path : str or os.PathLike
        Image file.
    mode : {"rgb", "keep"}, optional
        ``"rgb"`` (default) always returns three channels, replicating grayscale.
        ``"keep"`` returns one channel for grayscale sources (8- or 16-bit) and
        three channels for everything else.
    max_pixels : int, optional
        Largest accepted width × height, checked from the header before anything
        is decoded. Defaults to ``$ADVQA_MAX_IMAGE_PIXELS`` or 80,000,000; see
        :func:`max_image_pixels`.
    min_side : int, optional
        Allow decoding at a reduced size: by an integer factor ``k`` chosen so that
        the shorter side stays at least ``min_side`` (``k = short // min_side``).
        JPEG files are reduced while decoding (DCT scaling, by 2, 4 or 8), others
        after decoding by averaging ``k × k`` blocks (``PIL.Image.reduce``), so
        memory stays near that of the 8-bit image. ``None`` (default) or a factor
        of 1 decodes at full size. See :func:`advqa.data.preprocess`.

    Returns
    -------
    torch.Tensor
        Float32 tensor of shape ``(C, H, W)`` with values in ``[0, 1]``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImageReadError
        If the file is not a supported image, is larger than ``max_pixels``, or
        is corrupt or truncated; the message names the file and the cause.

    Notes
    -----
    The whole file is decoded, so corrupt pixel data fails here and not later.
    Truncated JPEG and PNG files are rejected by checking for their end markers
    as well, because Pillow pads truncated data silently whenever some other
    code has set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``. libjpeg only warns
    about corrupt JPEG entropy-coded data (e.g. "Corrupt JPEG data: premature end
    of data segment") and Pillow discards those warnings, so JPEG files are
    also decoded by libjpeg-turbo through ``simplejpeg`` in strict mode, at 1/8
    scale, and any such warning is raised as an :class:`ImageReadError`.
    Corruption that the decoder cannot notice (bytes replaced by other valid
    codes) stays undetected.

    Within this function the pixel limit replaces Pillow's own decompression-bomb
    check (``PIL.Image.MAX_IMAGE_PIXELS``), which is suspended while advqa reads
    and restored afterwards, so that Pillow neither warns about nor refuses an
    image the limit allows. (Pillow reads in other threads during that time run
    without Pillow's check.)

    Conversions: palette, CMYK (naively, without ICC profiles) and YCbCr images
    become RGB; alpha channels are dropped, not composited; 16-bit grayscale is
    scaled by 1/65535 and 8-bit data by 1/255. EXIF orientation is ignored, so
    pixels are returned as stored, as torchvision's loaders do.
    """
    return _read(path, mode=mode, max_pixels=max_pixels, min_side=min_side)[0]


def _read(
    path: str | os.PathLike, *, mode: str, max_pixels: int | None, min_side: int | None
) -> tuple[torch.Tensor, tuple[int, int]]:
    # The decoded image and the native (height, width) the header declared.
    keep_grayscale = _keep_grayscale(mode)
    limit = max_image_pixels(max_pixels)
    if min_side is not None and (isinstance(min_side, bool) or not isinstance(min_side, int)
                                 or min_side < 1):
        raise ValueError(f"min_side must be a positive integer or None, got {min_side!r}")
    path = pathlib.Path(path)
    data = _file_bytes(path)
    with _pillow_limit_suspended(), _opened(path, data, limit=limit) as image:
        native = (image.height, image.width)
        if image.format in _JPEG_FORMATS:
            _check_jpeg_data(path, data)
        try:
            return _decode(image, keep_grayscale=keep_grayscale, min_side=min_side), native
        # Pillow reports corrupt data through many unrelated exception types
        # (OSError, SyntaxError, struct.error, EOFError, ValueError, ...).
        except Exception as error:
            raise ImageReadError(path, str(error) or type(error).__name__) from error


def _keep_grayscale(mode: str) -> bool:
    if mode not in ("rgb", "keep"):
        raise ValueError(f"mode must be 'rgb' or 'keep', got {mode!r}")
    return mode == "keep"


def _file_bytes(path: pathlib.Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ImageReadError(path, str(error) or type(error).__name__) from error
    if not data:
        raise ImageReadError(path, "file is empty")
    if not _has_end_marker(data):
        raise ImageReadError(path, "file is truncated (no end marker)")
    return data


@contextlib.contextmanager
def _opened(path: pathlib.Path, data: bytes, *, limit: int):
    # Image.open reads only the header; nothing is decoded before the size check.
    try:
        image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except UnidentifiedImageError as error:
        raise ImageReadError(path, "not a PNG, JPEG, BMP or TIFF image") from error
    except Exception as error:
        raise ImageReadError(path, str(error) or type(error).__name__) from error
    with image:
        pixels = image.width * image.height
        if pixels > limit:
            raise ImageReadError(
                path,
                f"{image.width}×{image.height} is {pixels:,} pixels, more than the limit of "
                f"{limit:,}; to read it, pass max_pixels= or set {MAX_IMAGE_PIXELS_VARIABLE}",
            )
        yield image


class _PillowLimit:
    """Suspends ``PIL.Image.MAX_IMAGE_PIXELS`` while any advqa read is under way.

    Pillow warns above its limit and refuses above twice it, independently of
    ours; inside our reads our limit, checked from the header, is the only one.
    A count lets overlapping reads (threads) restore the user's value only once
    the last of them ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._saved: int | None = None

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if self._active == 0:
                self._saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    Image.MAX_IMAGE_PIXELS = self._saved


_pillow_limit_suspended = _PillowLimit()


def _channels(pillow_mode: str, *, keep_grayscale: bool) -> int:
    # The channel count _to_tensor produces for an image of this mode.
    grayscale = (
        pillow_mode in _SIXTEEN_BIT_GRAYSCALE_MODES
        or pillow_mode in _EIGHT_BIT_GRAYSCALE_MODES
        or pillow_mode == "F"
    )
    return 1 if grayscale and keep_grayscale else 3


def _decode(image: Image.Image, *, keep_grayscale: bool, min_side: int | None) -> torch.Tensor:
    factor = _reduction_factor(image.size, min_side)
    if factor > 1 and image.format in _JPEG_FORMATS:
        scale = next(scale for scale in _JPEG_SCALES if scale <= factor)
        # draft picks the largest scale s with size // requested >= s.
        image.draft(None, (image.width // scale, image.height // scale))
    image.load()
    factor = _reduction_factor(image.size, min_side)
    if factor > 1:
        image = _reducible(image).reduce(factor)
    return _to_tensor(image, keep_grayscale=keep_grayscale)


def _reduction_factor(size: tuple[int, int], min_side: int | None) -> int:
    return 1 if min_side is None else max(1, min(size) // min_side)


def _reducible(image: Image.Image) -> Image.Image:
    # Average in the mode _to_tensor reads: averaging palette indices or bilevel
    # pixels would be meaningless, and Pillow cannot reduce 16-bit modes.
    if image.mode in ("L", "RGB", "I", "F"):
        return image  # convert() would copy the full-size image
    if image.mode in _SIXTEEN_BIT_GRAYSCALE_MODES:
        return image.convert("I")
    return image.convert("L" if image.mode in _EIGHT_BIT_GRAYSCALE_MODES else "RGB")


def _check_jpeg_data(path: pathlib.Path, data: bytes) -> None:
    # Pillow's libjpeg error manager drops warnings; simplejpeg's strict mode turns
    # them into ValueError. 1/8 scale still entropy-decodes every coefficient.
    import simplejpeg

    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
    except ValueError:
        return  # a header simplejpeg cannot parse: the verdict is Pillow's
    options = {
        "colorspace": "CMYK" if colorspace in ("CMYK", "YCCK") else "GRAY",
        "min_height": 1,
        "min_width": 1,
        "min_factor": 8,
    }
    try:
        simplejpeg.decode_jpeg(data, strict=True, **options)
    except ValueError as warning:
        try:
            simplejpeg.decode_jpeg(data, strict=False, **options)
        except ValueError:
            return  # a fatal error, not a warning: Pillow's decoder reports its own
        raise ImageReadError(path, str(warning)) from warning


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round images to the 8-bit grid that :func:`save_png` stores.

    Parameters
    ----------
    images : torch.Tensor
        Floating-point tensor of any shape with values in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        ``round(clip(images, 0, 1) * 255) / 255`` with the dtype of ``images``.
        For float32 input this equals, bit for bit, what :func:`read_image`
        returns for the PNG that :func:`save_png` writes. Ties round to even.
    """
    if not images.is_floating_point():
        raise TypeError(f"quantize expects a floating-point tensor, got {images.dtype}")
    return _to_levels(images) / 255


def save_png(image: torch.Tensor, path: str | os.PathLike) -> pathlib.Path:
    """Write an image losslessly as an 8-bit PNG, atomically.

    Parameters
    ----------
    image : torch.Tensor
        Tensor of shape ``(C, H, W)`` with ``C`` in ``(1, 3)``, or ``(H, W)``,
        with values in ``[0, 1]``.
    path : str or os.PathLike
        Destination; its directory must exist. An existing file is replaced.

    Returns
    -------
    pathlib.Path
        ``path``, so that ``read_image(save_png(x, p))`` equals ``quantize(x)``.

    Raises
    ------
    ValueError
        If the shape is unsupported, or any value is NaN or lies outside ``[0, 1]``
        by more than 1e-6; the message names ``path``.

    Notes
    -----
    Values are quantised exactly as :func:`quantize` does. The PNG is written to
    a temporary file in the destination directory, flushed to disk and renamed
    over ``path``, so readers never see a partially written file.
    """
    path = pathlib.Path(path)
    return atomic_write_bytes(path, encode_png(image, where=path))


def encode_png(image: torch.Tensor, *, where: str | os.PathLike = "image") -> bytes:
    """The lossless 8-bit PNG bytes of ``image``, quantised as :func:`quantize` does.

    ``where`` names the image in error messages.
    """
    buffer = io.BytesIO()
    Image.fromarray(_png_pixels(image, pathlib.Path(where))).save(buffer, format="PNG")
    return buffer.getvalue()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *,
                       mode: int = 0o666) -> pathlib.Path:
    """Write ``data`` so that ``path`` is absent, old or complete — never partial.

    The bytes go to a temporary file in the destination directory, are flushed
    to disk and renamed over ``path``; missing parent directories are created.
    ``mode`` is the new file's permission bits before the umask (``0o600`` for a
    secret: the file is never readable by others, not even while being written).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's PID in the name lets a clean-up tell a dead run's leftovers from a
    # live process's file in flight (remove_stale_temporaries).
    temporary = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(8)}.tmp"
    # os.open with mode 0o666 lets the umask decide the permissions, as for any new
    # file; tempfile would create it readable by the owner only.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def remove_stale_temporaries(root: str | os.PathLike) -> list[pathlib.Path]:
    """Delete the temporaries of :func:`atomic_write_bytes` whose writer has died.

    A file in flight in a live process (this one or another) is never touched, nor
    is a ``.tmp`` file whose name carries no PID (not ours to judge).
    """
    stale = []
    for path in pathlib.Path(root).rglob(".*.tmp"):
        match = _TEMPORARY.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _process_alive(pid):
            path.unlink(missing_ok=True)
            stale.append(path)
    return stale


_TEMPORARY = re.compile(r"\..+\.([0-9]+)-[0-9a-f]{16}\.tmp")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def _png_pixels(image: torch.Tensor, path: pathlib.Path) -> np.ndarray:
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise ValueError(f"cannot save {path}: image must be a floating-point tensor")
    image = image.detach().cpu()
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = image.permute(1, 2, 0)
    elif image.ndim != 2:
        raise ValueError(
            f"cannot save {path}: expected shape (C, H, W) with C in (1, 3) or (H, W), "
            f"got {tuple(image.shape)}"
        )
    if torch.isnan(image).any():
        raise ValueError(f"cannot save {path}: image contains NaN")
    if image.numel() and (image.min() < -_RANGE_TOLERANCE or image.max() > 1 + _RANGE_TOLERANCE):
        raise ValueError(
            f"cannot save {path}: values must lie in [0, 1], "
            f"got [{image.min().item():.6g}, {image.max().item():.6g}]"
        )
    pixels = _to_levels(image).to(torch.uint8).numpy()
    # Pillow stores an (H, W, 1) array only as (H, W).
    return pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels


def _to_levels(images: torch.Tensor) -> torch.Tensor:
    return torch.round(images.clamp(0, 1) * 255)


def _fsync_directory(directory: pathlib.Path) -> None:
    # Persists the rename itself; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _has_end_marker(data: bytes) -> bool:
    if data.startswith(_PNG_SIGNATURE):
        return _PNG_END_CHUNK in data
    if data.startswith(_JPEG_SIGNATURE):
        return _jpeg_has_end_marker(data)
    return True


def _jpeg_has_end_marker(data: bytes) -> bool:
    # Walk the marker segments to the first scan. Inside entropy-coded data every
    # 0xFF byte is stuffed, so 0xFFD9 after the scan starts can only be the real
    # end marker, whereas earlier segments (an EXIF thumbnail) may contain one.
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return True  # unexpected layout: leave the verdict to Pillow
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:
            position += 2
        elif marker == _JPEG_START_OF_SCAN:
            return data.find(_JPEG_END_MARKER, position) != -1
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False


def _to_tensor(image: Image.Image, *, keep_grayscale: bool) -> torch.Tensor:
    if image.mode in _SIXTEEN_BIT_GRAYSCALE_MODES:
        channels = _scaled(np.asarray(image).astype(np.int32), maximum=65535)[None]
    elif image.mode == "F":
        channels = _checked_float(np.asarray(image))[None]
    elif image.mode in _EIGHT_BIT_GRAYSCALE_MODES:
        channels = _scaled(np.asarray(image.convert("L")), maximum=255)[None]
    else:
        channels = _scaled(np.asarray(image.convert("RGB")), maximum=255).permute(2, 0, 1)
    if channels.shape[0] == 1 and not keep_grayscale:
        channels = channels.repeat(3, 1, 1)
    return channels.contiguous()


def _scaled(pixels: np.ndarray, *, maximum: int) -> torch.Tensor:
    # Arrays viewing a Pillow image are read-only, which torch.from_numpy warns about.
    values = torch.from_numpy(np.array(pixels))
    if (
        values.dtype != torch.uint8
        and values.numel()
        and (values.min() < 0 or values.max() > maximum)
    ):
        raise ValueError(f"pixel values outside [0, {maximum}]")
    # Division in float32 by torch keeps read_image bit-identical to quantize().
    return values.to(torch.float32) / maximum


def _checked_float(pixels: np.ndarray) -> torch.Tensor:
    values = torch.from_numpy(np.array(pixels, dtype=np.float32))
    if not torch.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise ValueError("floating-point pixel values outside [0, 1]")
    return values


def codec_roundtrip(images: torch.Tensor, **save_options) -> torch.Tensor:
    """Encode each image of an NCHW [0, 1] batch as 8-bit with Pillow, then decode it.

    ``save_options`` go to ``PIL.Image.save`` (``format="JPEG", quality=80``, or
    ``format="JPEG2000", quality_mode="rates", quality_layers=[20]``). One-channel
    images round-trip as greyscale, three-channel ones as RGB; the result has the
    input's dtype and device.
    """
    decoded = []
    for image in images.detach().cpu():
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        mode = "L" if pixels.shape[2] == 1 else "RGB"
        buffer = io.BytesIO()
        Image.fromarray(pixels.squeeze(2) if mode == "L" else pixels, mode).save(
            buffer, **save_options)
        array = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert(mode))
        array = array[..., None] if mode == "L" else array
        decoded.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return (torch.stack(decoded).to(images.dtype) / 255).to(images.device)
