"""Containers for loaded images: :class:`Sample`, :class:`LoadFailure` and :class:`SampleSet`."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable, Iterator
from typing import overload

import torch

from advqa.data.io import (
    ImageHeader,
    ImageReadError,
    _read,
    max_image_pixels,
    read_image_header,
)

__all__ = ["ImageLoadWarning", "LoadFailure", "Sample", "SampleSet"]


class ImageLoadWarning(UserWarning):
    """Warning emitted when a loader, or preprocessing, skips a file it cannot read."""


class Sample:
    """One image with its provenance, held in memory or read from its file when needed.

    Parameters
    ----------
    image : torch.Tensor
        Float32 tensor of shape ``(C, H, W)`` with values in ``[0, 1]`` at the
        native resolution of the source; ``C`` is 3 (RGB) or 1 (grayscale source).
    label : int or None
        Zero-based class index, or ``None`` when the source has no label.
    name : str
        Identifier that is unique within its :class:`SampleSet` and stable across
        runs (usually the file stem).
    source : str
        Name of the sample set or the folder the image came from.
    path : pathlib.Path or None
        File the image was decoded from, or ``None`` when the image is not a file
        of its own (for example a record of an IDX archive).

    Notes
    -----
    :meth:`from_file` makes a sample that keeps only its path and header: the
    folder loaders return such samples, so that a folder of large images does
    not sit in memory. Reading :attr:`image` then decodes the file each time (the
    pixels are not cached); :meth:`load` can decode at a reduced size.

    Samples are read-only. Equality is identity: comparing tensors element-wise
    would make ``==`` ambiguous, so compare ``name`` and ``image`` explicitly.
    """

    __slots__ = ("_label", "_mode", "_name", "_path", "_pixels", "_shape", "_source")

    def __init__(
        self,
        image: torch.Tensor,
        label: int | None,
        name: str,
        source: str,
        path: pathlib.Path | None = None,
    ) -> None:
        _check_pixels(image, name)
        self._pixels: torch.Tensor | None = image
        self._shape = (int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))
        self._mode = "keep"
        self._init_fields(label, name, source, path)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        *,
        label: int | None,
        name: str,
        source: str,
        mode: str = "rgb",
        header: ImageHeader | None = None,
    ) -> Sample:
        """A sample that reads its pixels from ``path`` only when asked for them.

        Parameters
        ----------
        path : str or os.PathLike
            Image file.
        label, name, source
            As for :class:`Sample`.
        mode : {"rgb", "keep"}, optional
            Passed to :func:`advqa.data.read_image` on every read.
        header : ImageHeader, optional
            The file's header if already read (with the same ``mode``); otherwise
            :func:`advqa.data.read_image_header` reads it now.

        Raises
        ------
        FileNotFoundError, ImageReadError
            From :func:`advqa.data.read_image_header`.
        """
        path = pathlib.Path(path)
        if header is None:
            header = read_image_header(path, mode=mode)
        sample = cls.__new__(cls)
        sample._pixels = None
        sample._shape = (header.channels, header.height, header.width)
        sample._mode = mode
        sample._init_fields(label, name, source, path)
        return sample

    def _init_fields(
        self, label: int | None, name: str, source: str, path: pathlib.Path | None
    ) -> None:
        if label is not None and (isinstance(label, bool) or label < 0):
            raise ValueError(f"Sample {name!r}: label must be a non-negative int or None")
        self._label, self._name, self._source = label, name, source
        self._path = None if path is None else pathlib.Path(path)

    @property
    def label(self) -> int | None:
        """Zero-based class index, or ``None``."""
        return self._label

    @property
    def name(self) -> str:
        """Identifier, unique within its :class:`SampleSet`."""
        return self._name

    @property
    def source(self) -> str:
        """Name of the sample set or folder the image came from."""
        return self._source

    @property
    def path(self) -> pathlib.Path | None:
        """File the image comes from, or ``None``."""
        return self._path

    @property
    def in_memory(self) -> bool:
        """Whether the pixels are held (``True``) or read from :attr:`path` on use."""
        return self._pixels is not None

    @property
    def image(self) -> torch.Tensor:
        """The float32 ``(C, H, W)`` image at native size; a file-backed sample decodes it now.

        Raises
        ------
        ImageReadError
            If a file-backed sample's file no longer decodes, or no longer has the
            size and channels it had when the sample was made.
        """
        return self.load()

    def load(self, *, min_side: int | None = None) -> torch.Tensor:
        """The image, decoded at a reduced size where that is allowed.

        Parameters
        ----------
        min_side : int, optional
            For a file-backed sample: decode reduced by an integer factor as long
            as the shorter side stays at least ``min_side`` (see
            :func:`advqa.data.read_image`). Held pixels are returned as they are.

        Returns
        -------
        torch.Tensor
            Float32 ``(C, h, w)`` in ``[0, 1]``; ``(h, w)`` is :attr:`size` unless
            the file was reduced.
        """
        if self._pixels is not None:
            return self._pixels
        assert self._path is not None
        channels, height, width = self._shape
        # The file was admitted at its size, perhaps under a raised limit.
        limit = max(height * width, max_image_pixels())
        image, native = _read(self._path, mode=self._mode, max_pixels=limit, min_side=min_side)
        if native != (height, width) or image.shape[0] != channels:
            raise ImageReadError(
                self._path,
                f"the file changed since it was listed: it was {width}×{height} with "
                f"{channels} channel(s), now {native[1]}×{native[0]} with {image.shape[0]}",
            )
        return image

    @property
    def channels(self) -> int:
        """Number of colour channels of :attr:`image` (1 or 3)."""
        return self._shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """Native ``(height, width)`` of :attr:`image`."""
        return self._shape[1], self._shape[2]

    def __repr__(self) -> str:
        where = "in memory" if self.in_memory else f"file {self._path}"
        return (
            f"Sample(name={self._name!r}, label={self._label!r}, source={self._source!r}, "
            f"size={self.size[0]}×{self.size[1]}×{self.channels}, {where})"
        )


def _check_pixels(image: object, name: str) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"Sample {name!r}: image must be a torch.Tensor")
    if image.dtype != torch.float32:
        raise TypeError(f"Sample {name!r}: image must be float32, got {image.dtype}")
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"Sample {name!r}: image must have shape (C, H, W) with C in (1, 3), "
            f"got {tuple(image.shape)}"
        )


@dataclasses.dataclass(frozen=True)
class LoadFailure:
    """A file a loader skipped.

    Parameters
    ----------
    path : str
        Path of the file (or of the missing file a label table referred to).
    reason : str
        Human-readable cause.
    """

    path: str
    reason: str


class SampleSet:
    """An ordered collection of :class:`Sample` plus the files that failed to load.

    Parameters
    ----------
    samples : iterable of Sample
        Loaded samples; their names must be unique.
    failures : iterable of LoadFailure, optional
        Files that were skipped while loading.

    Notes
    -----
    Slicing returns a new :class:`SampleSet` that keeps all :attr:`failures`,
    because failures describe the loading of the whole source, not of a subset.
    """

    def __init__(
        self,
        samples: Iterable[Sample],
        failures: Iterable[LoadFailure] = (),
    ) -> None:
        self.samples: list[Sample] = list(samples)
        self.failures: list[LoadFailure] = list(failures)
        _check_unique_names(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> SampleSet: ...

    def __getitem__(self, index: int | slice) -> Sample | SampleSet:
        if isinstance(index, slice):
            return SampleSet(self.samples[index], self.failures)
        return self.samples[index]

    def __repr__(self) -> str:
        return f"SampleSet({len(self.samples)} samples, {len(self.failures)} failures)"

    @property
    def labels(self) -> list[int | None]:
        """Label of every sample, in order."""
        return [sample.label for sample in self.samples]

    @property
    def names(self) -> list[str]:
        """Name of every sample, in order."""
        return [sample.name for sample in self.samples]


def _check_unique_names(samples: list[Sample]) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.name in seen:
            raise ValueError(f"duplicate sample name {sample.name!r}")
        seen.add(sample.name)
