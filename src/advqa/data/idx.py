"""Reader for the IDX files that MNIST and Fashion-MNIST are distributed in.

The format (http://yann.lecun.com/exdb/mnist/) is a big-endian header: two zero
bytes, a type code, the number of dimensions, then one unsigned 32-bit size per
dimension, followed by the array data in row-major order.
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import re
import zlib

import numpy as np
import torch

from advqa.data.samples import Sample, SampleSet

__all__ = [
    "IdxFormatError",
    "find_idx_files",
    "idx_samples",
    "idx_splits",
    "load_idx",
    "read_idx",
]

_TYPE_CODES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_GZIP_SIGNATURE = b"\x1f\x8b"
_SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}
_SPLITS = ("train", "test", "all")


class IdxFormatError(ValueError):
    """Raised when an IDX file is malformed or inconsistent with its partner file."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse one IDX file, plain or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike
        IDX file; gzip compression is detected from the content, not the name.

    Returns
    -------
    numpy.ndarray
        Array with the shape from the header, in native byte order.

    Raises
    ------
    IdxFormatError
        If the magic number is invalid or the data size differs from the size the
        header declares; the message names the file.
    """
    return _parse(pathlib.Path(path))[1]


def find_idx_files(
    directory: str | os.PathLike, *, split: str
) -> tuple[pathlib.Path, pathlib.Path]:
    """Locate the images and labels files of one split.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder holding MNIST-style files.
    split : {"train", "test"}
        ``"train"`` matches ``train-*``; ``"test"`` matches ``t10k-*`` (or ``test-*``).

    Returns
    -------
    tuple of pathlib.Path
        ``(images_file, labels_file)``.

    Raises
    ------
    FileNotFoundError
        If either file is missing.

    Notes
    -----
    Accepted names are ``{prefix}-{images|labels}-idx{3|1}-ubyte`` with ``.``
    instead of the second ``-`` allowed, optionally followed by ``.gz``. When
    both a plain and a compressed file exist the plain one is used.
    """
    if split not in _SPLIT_PREFIXES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    directory = pathlib.Path(directory)
    return (
        _find_file(directory, split=split, kind="images", ndim=3),
        _find_file(directory, split=split, kind="labels", ndim=1),
    )


def idx_splits(directory: str | os.PathLike) -> list[str]:
    """Splits (``"train"``, ``"test"``) whose two IDX files are present in ``directory``."""
    present = []
    for split in _SPLIT_PREFIXES:
        try:
            find_idx_files(directory, split=split)
        except FileNotFoundError:
            continue
        present.append(split)
    return present


def load_idx(
    directory: str | os.PathLike, *, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST-style image/label pair from a directory of IDX files.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder with the standard MNIST file names (see :func:`find_idx_files`),
        plain or ``.gz``; MNIST and Fashion-MNIST share this layout.
    split : {"train", "test", "all"}, optional
        ``"all"`` concatenates train then test.

    Returns
    -------
    images : torch.Tensor
        ``uint8`` tensor of shape ``(N, 1, H, W)``.
    labels : torch.Tensor
        ``int64`` tensor of shape ``(N,)``.

    Raises
    ------
    FileNotFoundError
        If a required file is missing.
    IdxFormatError
        If a file is malformed, has the wrong magic number or its image and label
        counts differ; the message names the file.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if split == "all":
        parts = [load_idx(directory, split=part) for part in ("train", "test")]
        return torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])
    images_path, labels_path = find_idx_files(directory, split=split)
    images = _read_checked(images_path, magic=_IMAGES_MAGIC)
    labels = _read_checked(labels_path, magic=_LABELS_MAGIC)
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).to(torch.int64)


def idx_samples(
    directory: str | os.PathLike, *, split: str = "train", source: str | None = None
) -> SampleSet:
    """Load an IDX image/label pair as a :class:`SampleSet`.

    Parameters
    ----------
    directory : str or os.PathLike
        See :func:`load_idx`.
    split : {"train", "test", "all"}, optional
        See :func:`load_idx`.
    source : str, optional
        Value for :attr:`Sample.source`; defaults to ``directory``.

    Returns
    -------
    SampleSet
        One-channel samples named ``{split}_{index}`` (index zero-padded, counted
        within its split), with ``path`` set to ``None``.

    Notes
    -----
    The images share one float32 buffer; each sample's ``image`` is a view into it.
    """
    splits = ("train", "test") if split == "all" else (split,)
    source = str(directory) if source is None else source
    samples: list[Sample] = []
    for part in splits:
        images, labels = load_idx(directory, split=part)
        floats = images.to(torch.float32) / 255
        width = len(str(max(len(images) - 1, 0)))
        samples.extend(
            Sample(image=image, label=label, name=f"{part}_{index:0{width}d}", source=source)
            for index, (image, label) in enumerate(zip(floats, labels.tolist(), strict=True))
        )
    return SampleSet(samples)


def _find_file(directory: pathlib.Path, *, split: str, kind: str, ndim: int) -> pathlib.Path:
    prefixes = "|".join(_SPLIT_PREFIXES[split])
    pattern = re.compile(rf"(?:{prefixes})-{kind}[-.]idx{ndim}-ubyte(?P<gz>\.gz)?", re.IGNORECASE)
    matches = []
    if directory.is_dir():
        for path in directory.iterdir():
            match = pattern.fullmatch(path.name)
            if match and path.is_file():
                matches.append((match["gz"] is not None, path.name, path))
    if not matches:
        raise FileNotFoundError(
            f"no {split} {kind} file (such as {_SPLIT_PREFIXES[split][0]}-{kind}-idx{ndim}-ubyte"
            f"[.gz]) in {directory}"
        )
    return min(matches)[2]


def _read_decompressed(path: pathlib.Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(_GZIP_SIGNATURE):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise IdxFormatError(f"{path}: corrupt gzip data ({error})") from error


def _read_checked(path: pathlib.Path, *, magic: int) -> np.ndarray:
    found, array = _parse(path)
    if found != magic:
        raise IdxFormatError(
            f"{path}: expected magic number {magic} (unsigned bytes, {magic & 0xFF} "
            f"dimensions), found {found}"
        )
    return array


def _parse(path: pathlib.Path) -> tuple[int, np.ndarray]:
    data = _read_decompressed(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _TYPE_CODES:
        raise IdxFormatError(f"{path}: not an IDX file (bad magic number {data[:4].hex()!r})")
    dtype, ndim = _TYPE_CODES[data[2]], data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxFormatError(f"{path}: header truncated ({len(data)} bytes)")
    shape = tuple(np.frombuffer(data, dtype=">u4", count=ndim, offset=4).tolist())
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise IdxFormatError(
            f"{path}: header declares shape {shape} ({expected} bytes) "
            f"but the data has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    # astype copies, which also makes the array writable for torch.from_numpy.
    return int.from_bytes(data[:4], "big"), array.astype(dtype.newbyteorder("="))
