"""Loading image folders: plain folders with an optional labels CSV, and the NIPS 2017 layout."""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import pathlib
import re
import warnings

from advqa.data.io import IMAGE_SUFFIXES, ImageReadError, read_image_header
from advqa.data.samples import ImageLoadWarning, LoadFailure, Sample, SampleSet

__all__ = ["find_images", "is_nips2017_layout", "load_folder", "load_nips2017"]

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NIPS_IMAGES = "images"
_NIPS_TABLE = "images.csv"
# NIPS 2017 labels index 1001 classes where 0 is "background", so ImageNet-1k
# class k is stored as k + 1.
_NIPS_FIRST_LABEL = 1
_IMAGENET_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class _Row:
    line: int
    key: str
    label: int


def find_images(path: str | os.PathLike, *, recursive: bool = False) -> list[str]:
    """List the image files in a folder.

    Parameters
    ----------
    path : str or os.PathLike
        Folder to search.
    recursive : bool, optional
        Also search sub-folders.

    Returns
    -------
    list of str
        Paths relative to ``path`` with ``/`` separators, sorted as strings. Only
        suffixes in :data:`advqa.data.io.IMAGE_SUFFIXES` count (case-insensitive);
        hidden files and folders (name starting with ``.``) are ignored.
    """
    root = _existing_directory(path)
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = (
            [name for name in subdirectories if not name.startswith(".")] if recursive else []
        )
        relative = pathlib.PurePath(directory).relative_to(root)
        found.extend(
            (relative / name).as_posix()
            for name in files
            if not name.startswith(".") and pathlib.PurePath(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(found)


def load_folder(
    path: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    recursive: bool = False,
    mode: str = "rgb",
    max_pixels: int | None = None,
    num_classes: int | None = None,
) -> SampleSet:
    """Load every image in a folder.

    Parameters
    ----------
    path : str or os.PathLike
        Folder of PNG, JPEG, BMP or TIFF files (see :func:`find_images`).
    labels : str or os.PathLike, optional
        CSV file with a header row and columns ``filename`` and ``label`` (other
        columns are ignored). ``filename`` is the path relative to ``path``, the
        same without extension, or a bare file stem when that is unambiguous.
        ``label`` is a non-negative integer.
    recursive : bool, optional
        Also load images in sub-folders.
    mode : {"rgb", "keep"}, optional
        Passed to :func:`advqa.data.io.read_image`.
    max_pixels : int, optional
        Largest accepted width × height; larger files are skipped. Defaults to
        ``$ADVQA_MAX_IMAGE_PIXELS`` or 80,000,000 (see
        :func:`advqa.data.io.max_image_pixels`).
    num_classes : int, optional
        The classes of the model the labels are for: a label outside
        ``0..num_classes-1`` is an error naming its CSV line.

    Returns
    -------
    SampleSet
        File-backed samples (:meth:`Sample.from_file`) in sorted relative-path
        order. ``name`` is the relative path without extension with ``/`` replaced
        by ``__`` (the extension is kept when two files would otherwise share a
        name); ``source`` is ``str(path)``; images without a CSV row have label
        ``None``.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If ``path`` is not a folder.
    ValueError
        If the labels CSV lacks a column, has a non-integer, negative or (with
        ``num_classes``) too large label, names a file twice or names a stem that
        matches several files; the message names the CSV file and line.

    Warns
    -----
    ImageLoadWarning
        Once per unreadable image and per CSV row whose file does not exist; both
        are recorded in :attr:`SampleSet.failures` and the rest still loads.

    Notes
    -----
    Nothing is decoded here: each file's header is checked (readable, a
    supported format, within the pixel limit, end marker present), and the
    pixels are decoded when used, one image at a time, by
    :func:`advqa.data.preprocess_batch` or :attr:`Sample.image`. Corrupt pixel
    data is therefore found then, not here.

    When ``labels`` is ``None`` and the folder is in the NIPS 2017 layout (see
    :func:`is_nips2017_layout`) this delegates to :func:`load_nips2017`.
    """
    root = _existing_directory(path)
    if labels is None and is_nips2017_layout(root):
        return load_nips2017(root, max_pixels=max_pixels)
    relative_paths = find_images(root, recursive=recursive)
    label_of: dict[str, int] = {}
    missing: list[LoadFailure] = []
    if labels is not None:
        table = pathlib.Path(labels)
        rows = _read_rows(table, key_column="filename", label_column="label",
                          label_count=num_classes)
        label_of, missing = _match_rows(rows, table=table, root=root, relative_paths=relative_paths)
    samples, unreadable = _load_files(
        root, relative_paths, label_of=label_of, source=str(root), mode=mode,
        max_pixels=max_pixels,
    )
    return _finish(samples, unreadable + missing)


def is_nips2017_layout(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds ``images/`` and an ``images.csv`` with an ``ImageId`` column."""
    root = pathlib.Path(path)
    table = root / _NIPS_TABLE
    if not (root / _NIPS_IMAGES).is_dir() or not table.is_file():
        return False
    try:
        with table.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return "imageid" in (column.strip().lower() for column in header)


def load_nips2017(path: str | os.PathLike, *, max_pixels: int | None = None) -> SampleSet:
    """Load the NIPS 2017 adversarial competition development set layout.

    Parameters
    ----------
    path : str or os.PathLike
        Folder holding ``images/<ImageId>.png`` and ``images.csv`` with at least
        the columns ``ImageId`` and ``TrueLabel``.
    max_pixels : int, optional
        As for :func:`load_folder`.

    Returns
    -------
    SampleSet
        File-backed samples named by ``ImageId`` with ``label = TrueLabel - 1``. The
        competition numbers 1001 classes with 0 as "background", so this turns
        its labels into 0-based ImageNet-1k indices like every other loader here.
        Images without a CSV row have label ``None``.

    Raises
    ------
    FileNotFoundError
        If ``images/`` or ``images.csv`` is missing.
    ValueError
        If the CSV lacks a column or a ``TrueLabel`` is not an integer in 1..1000;
        the message names the file and line.

    Warns
    -----
    ImageLoadWarning
        Once per unreadable image and per CSV row whose image is missing; both are
        recorded in :attr:`SampleSet.failures`.
    """
    root = _existing_directory(path)
    images, table = root / _NIPS_IMAGES, root / _NIPS_TABLE
    if not images.is_dir() or not table.is_file():
        raise FileNotFoundError(
            f"{root} is not in the NIPS 2017 layout: expected {_NIPS_IMAGES}/ and {_NIPS_TABLE}"
        )
    rows = _read_rows(
        table,
        key_column="ImageId",
        label_column="TrueLabel",
        first_label=_NIPS_FIRST_LABEL,
        label_count=_IMAGENET_CLASSES,
    )
    relative_paths = find_images(images)
    label_of, missing = _match_rows(
        rows, table=table, root=images, relative_paths=relative_paths, missing_suffix=".png"
    )
    samples, unreadable = _load_files(
        images, relative_paths, label_of=label_of, source=str(root), mode="rgb",
        max_pixels=max_pixels,
    )
    return _finish(samples, unreadable + missing)


def _existing_directory(path: str | os.PathLike) -> pathlib.Path:
    root = pathlib.Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    return root


def _read_rows(
    table: pathlib.Path,
    *,
    key_column: str,
    label_column: str,
    first_label: int = 0,
    label_count: int | None = None,
) -> list[_Row]:
    try:
        with table.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(
                    f"{table}: empty file, expected columns {key_column},{label_column}"
                )
            key_index, label_index = _column_indices(table, header, (key_column, label_column))
            rows = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                where = f"{table}, line {reader.line_num}"
                if len(cells) <= max(key_index, label_index):
                    raise ValueError(f"{where}: expected at least {len(header)} columns")
                label = _parse_label(
                    cells[label_index], where=where, first=first_label, count=label_count
                )
                rows.append(_Row(reader.line_num, cells[key_index].strip(), label))
    except UnicodeDecodeError as error:
        raise ValueError(f"{table}: not UTF-8 text ({error})") from error
    except csv.Error as error:
        raise ValueError(f"{table}: malformed CSV ({error})") from error
    return rows


def _column_indices(
    table: pathlib.Path, header: list[str], wanted: tuple[str, ...]
) -> tuple[int, ...]:
    columns = [column.strip().lower() for column in header]
    missing = [name for name in wanted if name.lower() not in columns]
    if missing:
        raise ValueError(
            f"{table}, line 1: missing column(s) {', '.join(missing)}; found {', '.join(header)}"
        )
    return tuple(columns.index(name.lower()) for name in wanted)


def _parse_label(text: str, *, where: str, first: int, count: int | None) -> int:
    text = text.strip()
    # int() would also accept "1_000" and surrounding whitespace variants we reject.
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"{where}: label {text!r} is not an integer")
    value = int(text)
    last = None if count is None else first + count - 1
    if value < first or (last is not None and value > last):
        allowed = f">= {first}" if last is None else f"in {first}..{last}"
        raise ValueError(f"{where}: label {value} is not {allowed}")
    return value - first


def _match_rows(
    rows: list[_Row],
    *,
    table: pathlib.Path,
    root: pathlib.Path,
    relative_paths: list[str],
    missing_suffix: str = "",
) -> tuple[dict[str, int], list[LoadFailure]]:
    lookups = _key_lookups(relative_paths)
    label_of: dict[str, int] = {}
    missing = []
    for row in rows:
        key = row.key.replace("\\", "/").removeprefix("./")
        candidates = next((lookup[key] for lookup in lookups if key in lookup), [])
        where = f"{table}, line {row.line}"
        if not candidates:
            expected = key if pathlib.PurePosixPath(key).suffix else key + missing_suffix
            missing.append(LoadFailure(str(root / expected), f"{where} lists a missing image"))
            continue
        if len(candidates) > 1:
            raise ValueError(f"{where}: {row.key!r} matches several images: {candidates}")
        if candidates[0] in label_of:
            raise ValueError(f"{where}: second row for {candidates[0]}")
        label_of[candidates[0]] = row.label
    return label_of, missing


def _key_lookups(relative_paths: list[str]) -> list[dict[str, list[str]]]:
    # Exact relative paths win over paths without extension, which win over bare stems.
    lookups: list[dict[str, list[str]]] = [collections.defaultdict(list) for _ in range(3)]
    for relative in relative_paths:
        pure = pathlib.PurePosixPath(relative)
        lookups[0][relative].append(relative)
        lookups[1][str(pure.with_suffix(""))].append(relative)
        lookups[2][pure.stem].append(relative)
    return lookups


def _sample_names(relative_paths: list[str]) -> list[str]:
    full = [relative.replace("/", "__") for relative in relative_paths]
    names = [str(pathlib.PurePosixPath(name).with_suffix("")) for name in full]
    # Names that clash fall back to keeping their extension; repeat because a
    # fallback ("a.png") can clash with another file's stem ("a.png.jpg").
    while True:
        counts = collections.Counter(names)
        clashing = [
            index for index, name in enumerate(names) if counts[name] > 1 and name != full[index]
        ]
        if not clashing:
            return names
        for index in clashing:
            names[index] = full[index]


def _load_files(
    root: pathlib.Path,
    relative_paths: list[str],
    *,
    label_of: dict[str, int],
    source: str,
    mode: str,
    max_pixels: int | None,
) -> tuple[list[Sample], list[LoadFailure]]:
    samples, failures = [], []
    for relative, name in zip(relative_paths, _sample_names(relative_paths), strict=True):
        path = root / relative
        try:
            header = read_image_header(path, mode=mode, max_pixels=max_pixels)
        except ImageReadError as error:
            failures.append(LoadFailure(str(path), error.reason))
            continue
        except OSError as error:  # e.g. deleted between listing and reading
            failures.append(LoadFailure(str(path), error.strerror or str(error)))
            continue
        samples.append(
            Sample.from_file(
                path, label=label_of.get(relative), name=name, source=source, mode=mode,
                header=header,
            )
        )
    return samples, failures


def _finish(samples: list[Sample], failures: list[LoadFailure]) -> SampleSet:
    for failure in failures:
        # stacklevel 3 points at the caller of the public loader.
        warnings.warn(f"skipped {failure.path}: {failure.reason}", ImageLoadWarning, stacklevel=3)
    return SampleSet(samples, failures)
