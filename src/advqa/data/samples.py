"""Containers for loaded images: :class:`Sample`, :class:`LoadFailure` and :class:`SampleSet`."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable, Iterator
from typing import overload

import torch

__all__ = ["ImageLoadWarning", "LoadFailure", "Sample", "SampleSet"]


class ImageLoadWarning(UserWarning):
    """Warning emitted when a loader skips a file it cannot read."""


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
    """One image with its provenance.

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
    Equality is identity: comparing tensors element-wise would make ``==``
    ambiguous, so compare ``name`` and ``image`` explicitly instead.
    """

    image: torch.Tensor
    label: int | None
    name: str
    source: str
    path: pathlib.Path | None = None

    def __post_init__(self) -> None:
        image = self.image
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"Sample {self.name!r}: image must be a torch.Tensor")
        if image.dtype != torch.float32:
            raise TypeError(f"Sample {self.name!r}: image must be float32, got {image.dtype}")
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"Sample {self.name!r}: image must have shape (C, H, W) with C in (1, 3), "
                f"got {tuple(image.shape)}"
            )
        if self.label is not None and (isinstance(self.label, bool) or self.label < 0):
            raise ValueError(f"Sample {self.name!r}: label must be a non-negative int or None")

    @property
    def channels(self) -> int:
        """Number of colour channels of :attr:`image` (1 or 3)."""
        return int(self.image.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """Native ``(height, width)`` of :attr:`image`."""
        return int(self.image.shape[1]), int(self.image.shape[2])


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
