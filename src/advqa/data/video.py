"""Video clips as float tensors ``(T, 3, H, W)`` in ``[0, 1]``.

:func:`read_video` reads

* **Y4M** (YUV4MPEG2) files, as Derf's test-media collection ships them, with the
  parser in this module (no FFmpeg needed);
* any other video file (MP4, MKV, AVI, ...) through PyAV (the ``av`` package, an
  optional dependency);
* a **folder of frames** (PNG, JPEG, BMP, TIFF), in natural order of the file
  names (``f2.png`` before ``f10.png``);
* a **Vimeo-90k clip** folder (``im1.png`` ... ``im3.png`` for triplets, up to
  ``im7.png`` for septuplets); :func:`vimeo_triplets` lists the clips of a
  triplet root from ``tri_trainlist.txt`` / ``tri_testlist.txt``.

:func:`load_videos` reads many clips for a long run, skipping the ones that fail
with a warning and listing them as :class:`LoadFailure` records. Nothing here
downloads anything.

Y4M colour conversion
---------------------
A Y4M header names the chroma subsampling and siting (the ``C`` tag) but not the
colour matrix, and the range only through the optional ``XCOLORRANGE=`` extension.
The reader therefore assumes:

* **Range**: limited ("video", "tv") range -- Y in 16-235, Cb/Cr in 16-240, scaled by
  4 for 10-bit -- unless the header says ``XCOLORRANGE=FULL`` (JPEG/"pc" range:
  0-255). ``full_range=`` overrides the header.
* **Matrix**: BT.601 (Kr = 0.299, Kb = 0.114), which is what FFmpeg's swscale uses
  for untagged YUV, so results agree with ``ffmpeg -i clip.y4m -pix_fmt rgb24``.
  HD material such as Derf's 1080p sequences was probably mastered in BT.709; pass
  ``matrix="bt709"`` to read it so. The choice shifts colours slightly (a few
  levels in saturated regions); luma-only metrics are unaffected.
* **Chroma upsampling**: separable bilinear interpolation at the siting the
  ``C`` tag implies, with edge samples repeated: ``420jpeg`` and ``420`` (the
  YUV4MPEG2 default) site chroma at the centre of each 2×2 luma block,
  ``420mpeg2`` co-sites it horizontally with the left luma column (centred
  vertically), ``420paldv`` with the top-left luma sample (FFmpeg's reading of
  the tag), and ``422`` is co-sited horizontally (BT.601). Bilinear rather than
  nearest-neighbour keeps colour edges from stepping by two pixels; the siting
  keeps them from shifting by half a pixel.

Supported ``C`` tags: ``420jpeg``, ``420``, ``420mpeg2``, ``420paldv``, ``422``,
``444``, ``mono`` (8-bit), and ``420p10``, ``422p10``, ``444p10``, ``mono10``
(10-bit, little-endian 16-bit words). Interlaced files (``I`` tag ``t``/``b``/``m``)
are read frame by frame without deinterlacing.

Other containers
----------------
PyAV decodes with FFmpeg and converts to ``rgb24`` with swscale, which takes the
matrix and range from the stream's metadata (BT.601 limited when the stream has
none); ``matrix=`` and ``full_range=`` apply to Y4M only.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from advqa.data.io import IMAGE_SUFFIXES, ImageReadError, max_image_pixels, read_image
from advqa.data.samples import ImageLoadWarning, LoadFailure

__all__ = [
    "VIDEO_SUFFIXES",
    "LoadedVideos",
    "VideoReadError",
    "load_videos",
    "read_video",
    "vimeo_triplets",
]

#: File suffixes :func:`load_videos` and tools treat as video files (read through
#: PyAV, except ``.y4m``).
VIDEO_SUFFIXES = frozenset({".y4m", ".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v"})

_Y4M_MAGIC = b"YUV4MPEG2"
_FRAME_MAGIC = b"FRAME"
_MAX_HEADER = 4096

#: Kr, Kb of the supported colour matrices.
_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}

# tag -> (horizontal subsampling, vertical subsampling, horizontal centred,
# vertical centred, bit depth); chroma planes absent when subsampling is None.
_COLOURSPACES = {
    "420jpeg": (2, 2, True, True, 8),
    "420": (2, 2, True, True, 8),
    "420mpeg2": (2, 2, False, True, 8),
    "420paldv": (2, 2, False, False, 8),
    "422": (2, 1, False, True, 8),
    "444": (1, 1, True, True, 8),
    "mono": (None, None, True, True, 8),
    "420p10": (2, 2, True, True, 10),
    "422p10": (2, 1, False, True, 10),
    "444p10": (1, 1, True, True, 10),
    "mono10": (None, None, True, True, 10),
}

_VIMEO_LISTS = {"train": "tri_trainlist.txt", "test": "tri_testlist.txt"}
_VIMEO_FRAME = re.compile(r"im(\d+)$")
_TRIPLET = 3


class VideoReadError(ValueError):
    """Raised when a video file or frame folder exists but cannot be read.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file or folder.
    reason : str
        What went wrong (which frame, which byte), without the path.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot read video {path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type[VideoReadError], tuple[str, str]]:
        return type(self), (self.path, self.reason)


def read_video(
    path: str | os.PathLike,
    *,
    max_frames: int | None = None,
    start: int = 0,
    matrix: str = "bt601",
    full_range: bool | None = None,
) -> torch.Tensor:
    """Read a clip into a float32 RGB tensor.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.y4m`` file (or any file starting with ``YUV4MPEG2``), another video
        file (through PyAV), a folder of frame images, or a Vimeo-90k clip folder.
    max_frames : int, optional
        Read at most this many frames (all by default).
    start : int, optional
        Index of the first frame to return (0-based).
    matrix : {"bt601", "bt709"}, optional
        YUV-to-RGB matrix for Y4M files (see the module notes).
    full_range : bool, optional
        Y4M range: ``None`` (default) follows the header's ``XCOLORRANGE`` and
        assumes limited range without it.

    Returns
    -------
    torch.Tensor
        Float32 ``(T, 3, H, W)`` in ``[0, 1]``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    VideoReadError
        If the file is malformed or truncated (the message names the frame and
        byte offset), the folder's frames differ in size or are missing, or the
        clip has no frame at ``start``.
    ModuleNotFoundError
        If a non-Y4M file needs PyAV and it is not installed.
    """
    path = pathlib.Path(path)
    _check_window(start, max_frames)
    if matrix not in _MATRICES:
        raise ValueError(f"matrix must be one of {sorted(_MATRICES)}, got {matrix!r}")
    if not path.exists():
        raise FileNotFoundError(f"no such video file or frame folder: {path}")
    if path.is_dir():
        return _read_frame_folder(path, start=start, max_frames=max_frames)
    if path.suffix.lower() == ".y4m" or _starts_with(path, _Y4M_MAGIC):
        return _read_y4m(
            path, start=start, max_frames=max_frames, matrix=matrix, full_range=full_range
        )
    return _read_with_pyav(path, start=start, max_frames=max_frames)


def _check_window(start: int, max_frames: int | None) -> None:
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1
    ):
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")


def _starts_with(path: pathlib.Path, magic: bytes) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(magic)) == magic


# --------------------------------------------------------------------------- Y4M


@dataclasses.dataclass(frozen=True)
class _Y4mHeader:
    width: int
    height: int
    colourspace: str
    full_range: bool
    length: int  # bytes, including the newline


def _parse_y4m_header(path: pathlib.Path, data: bytes) -> _Y4mHeader:
    end = data.find(b"\n")
    if not data.startswith(_Y4M_MAGIC + b" "):
        raise VideoReadError(path, "not a Y4M file: it does not start with 'YUV4MPEG2 '")
    if end < 0:
        raise VideoReadError(
            path, f"the Y4M header has no newline within its first {len(data)} bytes"
        )
    try:
        fields = data[len(_Y4M_MAGIC) + 1 : end].decode("ascii").split()
    except UnicodeDecodeError as error:
        raise VideoReadError(path, "the Y4M header is not ASCII text") from error
    width = height = None
    colourspace = "420jpeg"  # the YUV4MPEG2 default when there is no C tag
    header_full = False
    for field in fields:
        tag, value = field[0], field[1:]
        if tag in "WH":
            if not value.isdigit() or int(value) < 1:
                raise VideoReadError(
                    path, f"the Y4M header's {tag} field must be a positive integer, got {value!r}"
                )
            if tag == "W":
                width = int(value)
            else:
                height = int(value)
        elif tag == "C":
            colourspace = value
        elif tag == "X" and value.upper().startswith("COLORRANGE="):
            header_full = value.split("=", 1)[1].upper() == "FULL"
        # F (rate), I (interlacing), A (aspect) and other X fields do not change pixels.
    if width is None or height is None:
        raise VideoReadError(path, "the Y4M header lacks its W (width) or H (height) field")
    if colourspace not in _COLOURSPACES:
        raise VideoReadError(
            path,
            f"unsupported Y4M colour space C{colourspace}; supported: "
            + ", ".join(f"C{name}" for name in _COLOURSPACES),
        )
    if width * height > max_image_pixels():
        raise VideoReadError(
            path, f"frames of {width}×{height} exceed the pixel limit of {max_image_pixels()}"
        )
    return _Y4mHeader(width, height, colourspace, header_full, end + 1)


def _plane_shapes(header: _Y4mHeader) -> list[tuple[int, int]]:
    sub_x, sub_y, _, _, _ = _COLOURSPACES[header.colourspace]
    shapes = [(header.height, header.width)]
    if sub_x is not None:
        chroma = (-(-header.height // sub_y), -(-header.width // sub_x))
        shapes += [chroma, chroma]
    return shapes


def _read_y4m(
    path: pathlib.Path,
    *,
    start: int,
    max_frames: int | None,
    matrix: str,
    full_range: bool | None,
) -> torch.Tensor:
    with path.open("rb") as handle:
        header = _parse_y4m_header(path, handle.read(_MAX_HEADER))
        handle.seek(header.length)
        depth = _COLOURSPACES[header.colourspace][4]
        sample_bytes = 1 if depth == 8 else 2
        shapes = _plane_shapes(header)
        frame_bytes = sum(h * w for h, w in shapes) * sample_bytes
        frames: list[torch.Tensor] = []
        index = 0
        while max_frames is None or len(frames) < max_frames:
            offset = handle.tell()
            line = handle.readline(_MAX_HEADER)
            if not line:
                break
            if not line.startswith(_FRAME_MAGIC) or not line.endswith(b"\n"):
                raise VideoReadError(
                    path,
                    f"frame {index} at byte {offset} does not start with a 'FRAME' line "
                    f"(found {line[:16]!r}); the file is corrupt or its header's size is wrong",
                )
            if index < start:
                handle.seek(frame_bytes, os.SEEK_CUR)
                if handle.tell() > path.stat().st_size:
                    raise _truncated(path, index, offset, frame_bytes, path.stat().st_size)
                index += 1
                continue
            payload = handle.read(frame_bytes)
            if len(payload) < frame_bytes:
                end = offset + len(line) + len(payload)
                raise _truncated(path, index, offset, frame_bytes, end)
            frames.append(_y4m_frame_to_rgb(payload, header, shapes, matrix, full_range))
            index += 1
    if not frames:
        raise VideoReadError(
            path, f"no frame at start={start}: the file holds {index} frame(s)"
        )
    return torch.stack(frames)


def _truncated(
    path: pathlib.Path, index: int, offset: int, frame_bytes: int, file_end: int
) -> VideoReadError:
    return VideoReadError(
        path,
        f"frame {index} is truncated: it starts at byte {offset} and needs {frame_bytes} "
        f"bytes of pixels, but the file ends at byte {file_end}",
    )


def _y4m_frame_to_rgb(
    payload: bytes,
    header: _Y4mHeader,
    shapes: list[tuple[int, int]],
    matrix: str,
    full_range: bool | None,
) -> torch.Tensor:
    sub_x, sub_y, centred_x, centred_y, depth = _COLOURSPACES[header.colourspace]
    dtype = np.uint8 if depth == 8 else np.dtype("<u2")
    samples = np.frombuffer(payload, dtype=dtype)
    planes, position = [], 0
    for height, width in shapes:
        planes.append(samples[position : position + height * width].reshape(height, width))
        position += height * width
    full = header.full_range if full_range is None else full_range
    scale = float(1 << (depth - 8))
    luma = torch.from_numpy(planes[0].astype(np.float32))
    y = luma / (255.0 * scale) if full else (luma - 16.0 * scale) / (219.0 * scale)
    if sub_x is None:
        return y.clamp(0.0, 1.0).expand(3, -1, -1).contiguous()
    chroma = []
    for plane in planes[1:]:
        values = torch.from_numpy(plane.astype(np.float32)) - 128.0 * scale
        values = values / ((255.0 if full else 224.0) * scale)
        values = _upsample(values, header.height, header.width, sub_y, centred_y, axis=0)
        values = _upsample(values, header.height, header.width, sub_x, centred_x, axis=1)
        chroma.append(values)
    cb, cr = chroma
    kr, kb = _MATRICES[matrix]
    kg = 1.0 - kr - kb
    red = y + 2.0 * (1.0 - kr) * cr
    blue = y + 2.0 * (1.0 - kb) * cb
    green = (y - kr * red - kb * blue) / kg
    return torch.stack([red, green, blue]).clamp(0.0, 1.0)


def _upsample(
    plane: torch.Tensor, height: int, width: int, factor: int, centred: bool, *, axis: int
) -> torch.Tensor:
    """Bilinear upsampling of one chroma axis to the luma grid, at the given siting."""
    size = height if axis == 0 else width
    if factor == 1:
        return plane
    # Luma sample i lies at chroma coordinate (i - offset) / factor, where the chroma
    # sample 0 sits at luma coordinate offset: (factor - 1) / 2 when centred, 0 when
    # co-sited with the first luma sample.
    offset = (factor - 1) / 2.0 if centred else 0.0
    coordinate = (torch.arange(size, dtype=torch.float32) - offset) / factor
    last = plane.shape[axis] - 1
    coordinate = coordinate.clamp(0.0, float(last))
    low = coordinate.floor().long()
    high = (low + 1).clamp(max=last)
    weight = coordinate - low.to(torch.float32)
    if axis == 0:
        return plane[low] * (1 - weight)[:, None] + plane[high] * weight[:, None]
    return plane[:, low] * (1 - weight) + plane[:, high] * weight


# -------------------------------------------------------------------------- PyAV


def _read_with_pyav(path: pathlib.Path, *, start: int, max_frames: int | None) -> torch.Tensor:
    try:
        import av
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"reading {path.suffix or 'this'} video files needs PyAV: install it with "
            "`pip install 'av>=12'` (Y4M files and frame folders need nothing)",
            name="av",
        ) from error
    frames: list[torch.Tensor] = []
    index = 0
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise VideoReadError(path, f"FFmpeg cannot open it: {error}") from error
    with container:
        if not container.streams.video:
            raise VideoReadError(path, "the file has no video stream")
        stream = container.streams.video[0]
        expected = _expected_frames(container, stream)
        try:
            for frame in container.decode(stream):
                if index >= start:
                    pixels = frame.to_ndarray(format="rgb24")
                    frames.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0)
                index += 1
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except av.error.FFmpegError as error:
            raise VideoReadError(
                path, f"decoding failed after {index} decoded frame(s): {error}"
            ) from error
    if not frames:
        raise VideoReadError(path, f"no frame at start={start}: {index} frame(s) decoded")
    complete = max_frames is not None and len(frames) >= max_frames
    if not complete and expected is not None and index < expected[0]:
        raise VideoReadError(
            path,
            f"the file is truncated or corrupt: only {index} frame(s) could be decoded, "
            f"but {expected[1]}",
        )
    return torch.stack(frames)


def _expected_frames(container, stream) -> tuple[int, str] | None:
    """Fewest frames the container promises, with the reason, or ``None`` if it does not say.

    MP4/MOV declare a frame count; Matroska and others declare a duration, from
    which the count is estimated at the average frame rate (less 5 % and two
    frames of slack for rounding and variable frame rates).
    """
    declared = int(stream.frames or 0)
    if declared:
        return declared, f"the container declares {declared}"
    rate = stream.average_rate
    if container.duration and rate:
        seconds = container.duration / 1_000_000  # in AV_TIME_BASE units
        estimate = seconds * float(rate)
        fewest = int(estimate * 0.95) - 2
        if fewest > 0:
            return fewest, (
                f"its duration of {seconds:.2f} s at {float(rate):g} frame/s "
                f"implies about {round(estimate)}"
            )
    return None


# ------------------------------------------------------------------ frame folders


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _frame_files(folder: pathlib.Path) -> list[pathlib.Path]:
    files = [
        entry
        for entry in folder.iterdir()
        if entry.is_file()
        and not entry.name.startswith(".")
        and entry.suffix.lower() in IMAGE_SUFFIXES
    ]
    files.sort(key=lambda entry: _natural_key(entry.name))
    numbered = {}
    for entry in files:
        match = _VIMEO_FRAME.match(entry.stem)
        if match:
            numbered[int(match.group(1))] = entry
    if 1 in numbered:  # a Vimeo-90k clip: im1, im2, ... without gaps, at least three
        expected = max(max(numbered), _TRIPLET)
        missing = [f"im{k}" for k in range(1, expected + 1) if k not in numbered]
        if missing:
            raise VideoReadError(
                folder,
                f"Vimeo-90k clip lacks {', '.join(missing)} (a triplet clip holds "
                "im1.png, im2.png and im3.png)",
            )
        return [numbered[k] for k in range(1, expected + 1)]
    return files


def _read_frame_folder(
    folder: pathlib.Path, *, start: int, max_frames: int | None
) -> torch.Tensor:
    files = _frame_files(folder)
    if not files:
        raise VideoReadError(
            folder,
            "the folder holds no frame images (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ")",
        )
    if start >= len(files):
        raise VideoReadError(folder, f"no frame at start={start}: the folder holds {len(files)}")
    stop = len(files) if max_frames is None else min(len(files), start + max_frames)
    frames = []
    for position in range(start, stop):
        try:
            frame = read_image(files[position], mode="rgb")
        except ImageReadError as error:
            raise VideoReadError(
                folder, f"frame {position} ({files[position].name}): {error.reason}"
            ) from error
        if frames and frame.shape != frames[0].shape:
            raise VideoReadError(
                folder,
                f"frame {position} ({files[position].name}) is {frame.shape[2]}×"
                f"{frame.shape[1]}, but frame {start} is {frames[0].shape[2]}×"
                f"{frames[0].shape[1]}; all frames of a clip must have one size",
            )
        frames.append(frame)
    return torch.stack(frames)


# ----------------------------------------------------------------------- Vimeo-90k


def vimeo_triplets(root: str | os.PathLike, split: str = "test") -> list[pathlib.Path]:
    """List the clip folders of a Vimeo-90k triplet tree.

    Parameters
    ----------
    root : str or os.PathLike
        The unpacked ``vimeo_triplet`` folder, holding ``sequences/``,
        ``tri_trainlist.txt`` and ``tri_testlist.txt``.
    split : {"test", "train"}, optional
        Which list to read.

    Returns
    -------
    list of pathlib.Path
        ``root/sequences/<folder>/<clip>`` for every line of the list, in order;
        each is readable by :func:`read_video`.

    Raises
    ------
    FileNotFoundError
        If ``root``, its ``sequences`` folder or the split's list is missing.
    VideoReadError
        If the list names clips that are missing or lack one of ``im1.png`` ...
        ``im3.png``, or has malformed lines; the message names the first few.
    """
    if split not in _VIMEO_LISTS:
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    root = pathlib.Path(root)
    layout = (
        "a Vimeo-90k triplet root holds sequences/<folder>/<clip>/im1.png..im3.png with "
        "tri_trainlist.txt and tri_testlist.txt beside sequences/"
    )
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root} ({layout})")
    listing = root / _VIMEO_LISTS[split]
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} is missing ({layout})")
    sequences = root / "sequences"
    if not sequences.is_dir():
        raise FileNotFoundError(f"{sequences} is missing ({layout})")
    clips, problems = [], []
    for number, raw in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split("/")
        if len(parts) != 2 or not all(parts) or ".." in parts:
            problems.append(f"line {number}: {entry!r} is not '<folder>/<clip>'")
            continue
        clip = sequences / parts[0] / parts[1]
        if not clip.is_dir():
            problems.append(f"line {number}: clip folder {entry} is missing")
            continue
        absent = [
            f"im{k}.png" for k in range(1, _TRIPLET + 1) if not (clip / f"im{k}.png").is_file()
        ]
        if absent:
            problems.append(f"line {number}: clip {entry} lacks {', '.join(absent)}")
            continue
        clips.append(clip)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise VideoReadError(
            listing, f"{len(problems)} listed clip(s) are not usable: {shown}{more}"
        )
    if not clips:
        raise VideoReadError(listing, "the list names no clips")
    return clips


# -------------------------------------------------------------------- many videos


@dataclasses.dataclass
class LoadedVideos:
    """Clips read by :func:`load_videos`, in input order, and the ones skipped.

    Attributes
    ----------
    paths : list of str
        Path of each clip that was read.
    videos : list of torch.Tensor
        Float32 ``(T, 3, H, W)`` clips, parallel to :attr:`paths`.
    failures : list of LoadFailure
        The paths that could not be read, with the reason.
    """

    paths: list[str]
    videos: list[torch.Tensor]
    failures: list[LoadFailure]

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(zip(self.paths, self.videos, strict=True))


def load_videos(
    paths: Iterable[str | os.PathLike],
    *,
    max_frames: int | None = None,
    start: int = 0,
    matrix: str = "bt601",
    full_range: bool | None = None,
) -> LoadedVideos:
    """Read many clips, skipping the unreadable ones.

    Each path goes to :func:`read_video` with the given options. A clip that is
    missing, truncated or malformed is skipped with an :class:`ImageLoadWarning`
    and recorded in :attr:`LoadedVideos.failures`; the others are returned. A
    missing PyAV installation is not skipped: it raises
    :class:`ModuleNotFoundError`, since every such file would fail alike.
    """
    _check_window(start, max_frames)
    if matrix not in _MATRICES:
        raise ValueError(f"matrix must be one of {sorted(_MATRICES)}, got {matrix!r}")
    read_paths, videos, failures = [], [], []
    for raw in paths:
        path = pathlib.Path(raw)
        try:
            video = read_video(
                path, max_frames=max_frames, start=start, matrix=matrix, full_range=full_range
            )
        except VideoReadError as error:
            failures.append(LoadFailure(str(path), error.reason))
            continue
        except OSError as error:
            failures.append(LoadFailure(str(path), error.strerror or str(error)))
            continue
        read_paths.append(str(path))
        videos.append(video)
    for failure in failures:
        warnings.warn(f"skipped {failure.path}: {failure.reason}", ImageLoadWarning, stacklevel=2)
    return LoadedVideos(read_paths, videos, failures)
