"""Import mean opinion scores (MOS) from a spreadsheet into a study.

Imported scores live in ``mos.parquet``/``mos.csv`` in the study directory (columns
``id, mos, mos_std, n_ratings, mos_source``), not in ``manifest.parquet``, which ``advqa
build`` regenerates. A manifest may still carry its own ``mos``/``mos_std``/``n_ratings``
columns; :func:`with_mos` merges both, imported values first.

Every row records where its opinion scores came from (``mos_source``: ``import:<sheet
file>`` for this module, ``annotate:<database>`` for ``advqa annotate export``). Storing
new scores (:func:`store_mos`) replaces only the rows of the same source; scores from
another source are never overwritten silently: an item already scored by another source
is an error unless ``replace_source=True``. Correlations use one source unless told to
pool several (:func:`select_mos_source`).

Example: the QoMEX 2019 study's per-image subjective results spreadsheet has one row per
adversarial image with its file name and MOS. Map its columns onto the manifest with e.g.
``mapping={"id": "Image name", "mos": "MOS", "mos_std": "Std", "n_ratings": "N"}`` (on the
command line ``--map "id=Image name,mos=MOS,mos_std=Std,n_ratings=N"``); if the sheet
names images by their source image, attack and strength instead of an AE id, map
``image``, ``attack``, ``norm`` and ``strength`` rather than ``id``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from advqa.study.layout import StudyDir

MOS_COLUMNS = ("id", "mos", "mos_std", "n_ratings", "mos_source")
SCORE_COLUMNS = MOS_COLUMNS[1:4]
#: ``mos_source`` of rows stored before sources were recorded, and of a manifest's own MOS.
UNRECORDED_SOURCE = "unrecorded"
MANIFEST_SOURCE = "manifest"
#: The declared opinion-score scale when none is given: the 1–5 scale of the rating app.
DEFAULT_SCALE = (1.0, 5.0)
#: MOS farther outside the scale than this fraction of its width get a warning.
SCALE_TOLERANCE = 0.1
KEY_COLUMNS = ("image", "attack", "norm", "strength")
TARGETS = (*MOS_COLUMNS, *KEY_COLUMNS)
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SHOWN_ROWS = 20  # offending rows listed in a message before "... and N more"
IMPORT_HINT = "import opinion scores with `advqa evaluate import STUDY SHEET --map ...`"


class MosImportError(ValueError):
    """A spreadsheet that cannot be mapped onto the study; the message lists the rows."""


class MissingMosError(ValueError):
    """The study has no opinion scores."""


class MosSourceError(ValueError):
    """Opinion scores of different sources would be overwritten or pooled unasked."""


@dataclass
class MosUpdate:
    """What :func:`store_mos` did to a study's ``mos.parquet``.

    Attributes
    ----------
    source : str
        The ``mos_source`` of the stored rows.
    rows : pandas.DataFrame
        The rows written by this update (:data:`MOS_COLUMNS`).
    stored : pandas.DataFrame
        The study's whole MOS table afterwards.
    added, replaced, dropped : int
        Items new to the study; items of the same source whose MOS was replaced; items of
        the same source that the new scores no longer hold, removed.
    kept : dict
        Rows kept from other sources, per source.
    overridden : dict
        Item ids of other sources replaced (only with ``replace_source=True``), per source.
    path : Path
        ``mos.parquet``.
    """

    source: str
    rows: pd.DataFrame
    stored: pd.DataFrame
    added: int
    replaced: int
    dropped: int
    kept: dict[str, int]
    overridden: dict[str, list[str]]
    path: Path

    def summary(self) -> str:
        """One line per fact, for the command line."""
        lines = [f"MOS source {self.source!r}: {self.added} added, {self.replaced} replaced"
                 + (f", {self.dropped} no longer scored removed" if self.dropped else "")]
        for source, ids in self.overridden.items():
            lines.append(f"replaced the MOS of {len(ids)} item(s) from {source!r} "
                         f"(--replace-source): {_ids_text(ids)}")
        kept = ", ".join(f"{count} from {source!r}" for source, count in self.kept.items())
        lines.append(f"kept {kept}" if kept else "no MOS from other sources")
        lines.append(f"wrote {self.path} ({len(self.stored)} AEs with MOS)")
        return "\n".join(lines)


def read_sheet(path: str | Path, *, sheet: str | None = None) -> pd.DataFrame:
    """Read a CSV or XLSX sheet as text, so ids like ``007`` keep their zeros.

    Parameters
    ----------
    path : str or Path
        ``.csv``/``.tsv``/``.txt`` or ``.xlsx``/``.xlsm`` file.
    sheet : str, optional
        Worksheet name of an Excel file; default the first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such sheet file: {path}")
    if path.suffix.lower() in EXCEL_SUFFIXES:
        return _read_excel(path, sheet)
    if sheet is not None:
        raise ValueError(f"--sheet applies to Excel files only, not {path.name}")
    separator = "\t" if path.suffix.lower() == ".tsv" else ","
    return pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False)


def _read_excel(path: Path, sheet: str | None) -> pd.DataFrame:
    try:
        import openpyxl
    except ImportError as error:
        raise ImportError(f"reading {path.name} needs openpyxl: pip install openpyxl "
                          f"(or save the sheet as CSV)") from error
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise ValueError(f"{path.name} has no worksheet {sheet!r}; it has "
                             f"{', '.join(map(repr, workbook.sheetnames))}")
        rows = list((workbook[sheet] if sheet else workbook.worksheets[0]).values)
    finally:
        workbook.close()
    if not rows:
        return pd.DataFrame()
    header = [("" if cell is None else str(cell).strip()) for cell in rows[0]]
    body = [["" if cell is None else _cell_text(cell) for cell in row] for row in rows[1:]]
    return pd.DataFrame(body, columns=header, dtype=str)


def _cell_text(cell) -> str:
    # Excel stores whole numbers as floats; "3.0" would not match an id or count "3".
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell)


def _ids_text(ids) -> str:
    ids = list(ids)
    more = f" ... and {len(ids) - SHOWN_ROWS} more" if len(ids) > SHOWN_ROWS else ""
    return ", ".join(map(repr, ids[:SHOWN_ROWS])) + more


def _rows_text(sheet_rows: pd.Series | list, values: pd.Series | list | None = None) -> str:
    """``row 3 ('x'), row 7 ('y')``, spreadsheet row numbers (header is row 1)."""
    rows = list(sheet_rows)
    labels = rows if values is None else list(values)
    shown = [f"row {row}" + ("" if values is None else f" ({label!r})")
             for row, label in zip(rows[:SHOWN_ROWS], labels[:SHOWN_ROWS], strict=True)]
    more = f" ... and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else ""
    return ", ".join(shown) + more


def _resolve_mapping(table: pd.DataFrame, mapping: dict | None,
                     id_column: str | None) -> dict[str, str]:
    """Target field -> sheet column; unmapped targets default to a same-named column."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(TARGETS))
    if unknown:
        raise MosImportError(f"unknown mapping target(s) {', '.join(unknown)}; "
                             f"use {', '.join(TARGETS)}")
    if id_column is not None:
        mapping["id"] = id_column
    by_lower = {str(column).lower(): column for column in table.columns}
    for target in TARGETS:
        if target not in mapping and target in by_lower:
            mapping[target] = by_lower[target]
    return mapping


def _check_columns(table: pd.DataFrame, mapping: dict[str, str], name: str) -> None:
    missing = [f"{column!r} (for {target})" for target, column in mapping.items()
               if column not in table.columns]
    if "mos" not in mapping:
        missing.append("a MOS column (map it with mos=COLUMN)")
    if "id" not in mapping and not any(key in mapping for key in KEY_COLUMNS):
        missing.append("an id column (map it with id=COLUMN) or image/attack/norm/strength")
    if missing:
        raise MosImportError(f"{name} lacks {'; '.join(missing)}; its columns are: "
                             f"{', '.join(map(repr, table.columns))}")


def _numbers(table: pd.DataFrame, column: str, target: str, *, required: bool,
             whole: bool = False) -> tuple[pd.Series, str | None]:
    """Parse a column as finite numbers; return them and a message naming bad rows, if any.

    "nan", "inf" and the like are bad values, not missing ones: only an empty cell is
    missing (and allowed when not ``required``).
    """
    text = table[column].astype(str).str.strip()
    values = pd.to_numeric(text.replace("", np.nan), errors="coerce")
    bad = ~np.isfinite(values) & ((text != "") | required)
    if whole:
        bad |= values.notna() & (values % 1 != 0)
    if not bad.any():
        return values, None
    kind = "whole number" if whole else "number"
    return values, (f"{target} column {column!r} is not a {kind} in "
                    f"{_rows_text(table.index[bad] + 2, text[bad])}")


def _strength_key(values) -> pd.Series:
    # Ten significant digits make 8/255 typed in a sheet equal the manifest's float.
    return pd.Series([f"{float(value):.10g}" for value in values], index=values.index)


def _match_keys(table: pd.DataFrame, manifest: pd.DataFrame, mapping: dict[str, str],
                problems: list[str]) -> tuple[pd.Series, pd.Series]:
    """Manifest id and label of each sheet row, matched on image/attack/norm/strength."""
    keys = [key for key in KEY_COLUMNS if key in mapping]
    sheet_keys = pd.DataFrame({key: table[mapping[key]].astype(str).str.strip()
                               for key in keys}, index=table.index)
    manifest_keys = manifest[keys].astype(str)
    if "strength" in keys:
        strengths, problem = _numbers(table, mapping["strength"], "strength", required=True)
        if problem:
            problems.append(problem)
            blank = pd.Series(None, index=table.index, dtype=object)
            return blank, blank
        sheet_keys["strength"] = _strength_key(strengths)
        manifest_keys["strength"] = _strength_key(manifest["strength"])
    manifest_tuples = [tuple(row) for row in manifest_keys.to_numpy()]
    counts = Counter(manifest_tuples)
    lookup = dict(zip(manifest_tuples, manifest["id"], strict=True))
    sheet_tuples = [tuple(row) for row in sheet_keys.to_numpy()]
    clashing = [row for row, key in zip(table.index, sheet_tuples, strict=True)
                if counts[key] > 1]
    if clashing:
        problems.append(f"rows match several AEs (map more of {', '.join(KEY_COLUMNS)}): "
                        f"{_rows_text(pd.Index(clashing) + 2)}")
    ids = pd.Series([None if counts[key] > 1 else lookup.get(key) for key in sheet_tuples],
                    index=table.index, dtype=object)
    return ids, sheet_keys.agg(" / ".join, axis=1)


def _sheet_ids(table, manifest, mapping, problems) -> tuple[pd.Series, pd.Series]:
    """Manifest id of every sheet row (None if unknown) and the label the sheet gave it."""
    if "id" in mapping:
        labels = table[mapping["id"]].astype(str).str.strip()
        ids = labels.where(labels.isin(set(manifest["id"])))
        return ids, labels
    return _match_keys(table, manifest, mapping, problems)


def _identify(table, manifest, mapping, problems) -> pd.Series:
    ids, labels = _sheet_ids(table, manifest, mapping, problems)
    clashing = any("several AEs" in problem for problem in problems)
    unknown = ids.isna() & labels.notna()
    if unknown.any() and not clashing:
        problems.append(f"{int(unknown.sum())} sheet row(s) name no AE of the study: "
                        f"{_rows_text(table.index[unknown] + 2, labels[unknown])}")
    duplicated = labels.duplicated(keep=False) & labels.notna()
    if duplicated.any():
        problems.append(f"duplicate entries in the sheet: "
                        f"{_rows_text(table.index[duplicated] + 2, labels[duplicated])}")
    return ids


def _scores(table: pd.DataFrame, mapping: dict[str, str], problems: list[str]) -> dict:
    """The mos, mos_std and n_ratings columns as numbers, collecting bad rows."""
    columns = {}
    for target, required, whole in (("mos", True, False), ("mos_std", False, False),
                                    ("n_ratings", False, True)):
        if target not in mapping:
            columns[target] = pd.Series(np.nan, index=table.index)
            continue
        values, problem = _numbers(table, mapping[target], target, required=required,
                                   whole=whole)
        columns[target] = values
        if problem:
            problems.append(problem)
    # A standard deviation below 0 or a count below 1 is a wrong column, not a score.
    for target, low, what in (("mos_std", 0, "negative"), ("n_ratings", 1, "below 1")):
        bad = columns[target] < low
        if bad.any():
            text = table[mapping[target]].astype(str).str.strip()
            problems.append(f"{target} column {mapping[target]!r} is {what} in "
                            f"{_rows_text(table.index[bad] + 2, text[bad])}")
    return columns


def check_scale(scale) -> tuple[float, float]:
    """``(low, high)`` as floats, or a ValueError saying what a scale is."""
    try:
        low, high = (float(value) for value in scale)
    except (TypeError, ValueError):
        raise ValueError(f"a MOS scale is (low, high), e.g. (1, 5); got {scale!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"a MOS scale needs finite low < high; got ({low}, {high})")
    return low, high


def _warn_off_scale(mos: pd.Series, table: pd.DataFrame, column: str,
                    scale: tuple[float, float], name: str) -> None:
    """Warn about MOS farther outside ``scale`` than SCALE_TOLERANCE of its width."""
    low, high = scale
    margin = SCALE_TOLERANCE * (high - low)
    off = (mos < low - margin) | (mos > high + margin)
    if off.any():
        text = table[column].astype(str).str.strip()
        warnings.warn(
            f"{name}: {int(off.sum())} MOS value(s) lie far outside the declared scale "
            f"{low:g}–{high:g}: {_rows_text(table.index[off] + 2, text[off])}. Check the "
            f"mapped column, or declare the sheet's scale (--scale LOW,HIGH)",
            stacklevel=3)


def import_mos(study_dir: str | Path, sheet_path: str | Path, *, id_column: str | None = None,
               mapping: dict[str, str] | None = None, sheet: str | None = None,
               scale=DEFAULT_SCALE, source: str | None = None,
               replace_source: bool = False) -> MosUpdate:
    """Read opinion scores from a CSV/XLSX sheet and store them in the study.

    Parameters
    ----------
    study_dir : str or Path
        Study directory holding ``manifest.parquet``.
    sheet_path : str or Path
        CSV (or TSV) or XLSX file, one row per rated AE; XLSX needs openpyxl.
    id_column : str, optional
        Sheet column holding manifest ids; shorthand for ``mapping["id"]``.
    mapping : dict, optional
        Field -> sheet column, fields among ``id, mos, mos_std, n_ratings`` and
        ``image, attack, norm, strength`` (used to match rows when ``id`` is not mapped).
        Unmapped fields default to a sheet column of the same name (any case). For the
        QoMEX 2019 per-image results: ``{"id": "Image name", "mos": "MOS", ...}``.
    sheet : str, optional
        Worksheet of an Excel file; default the first.
    scale : (float, float), default (1, 5)
        The sheet's opinion-score scale. MOS more than 10% of its width outside it get a
        warning naming the rows (they are still stored).
    source : str, optional
        The ``mos_source`` of the rows; default ``import:<sheet file name>``.
    replace_source : bool, default False
        Replace items that already have MOS from another source (else an error).

    Returns
    -------
    MosUpdate
        ``rows`` (``id, mos, mos_std, n_ratings, mos_source``, in manifest order), the
        whole stored table and the counts of what was added, replaced and kept.

    Raises
    ------
    MosImportError
        Listing the sheet rows (header = row 1) with unknown ids, duplicates, missing,
        non-numeric or non-finite scores, negative stds, counts below 1, or the missing
        columns.
    MosSourceError
        Items already scored by another source, unless ``replace_source``.
    ImportError
        For an XLSX file without openpyxl installed.
    """
    study = Path(study_dir)
    scale = check_scale(scale)
    manifest = StudyDir(study).manifest()
    table = read_sheet(sheet_path, sheet=sheet)
    name = Path(sheet_path).name
    mapping = _resolve_mapping(table, mapping, id_column)
    _check_columns(table, mapping, name)
    problems: list[str] = []
    ids = _identify(table, manifest, mapping, problems)
    scores = _scores(table, mapping, problems)
    if problems:
        raise MosImportError(f"cannot import {name}:\n  " + "\n  ".join(problems))
    _warn_off_scale(scores["mos"], table, mapping["mos"], scale, name)
    imported = pd.DataFrame({"id": ids.astype(str), **scores})
    return store_mos(study, imported, source=source or f"import:{name}",
                     replace_source=replace_source, manifest=manifest)


def _as_stored(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """``table``'s ``id, mos, mos_std, n_ratings`` with the stored dtypes and ``source``."""
    return pd.DataFrame({
        "id": table["id"].astype(str).to_numpy(),
        "mos": table["mos"].astype(float).to_numpy(),
        "mos_std": table["mos_std"].astype(float).to_numpy(),
        "n_ratings": pd.array(table["n_ratings"], dtype="Int64"),
        "mos_source": source,
    })


def _conflicts(others: pd.DataFrame, new_ids: set[str]) -> dict[str, list[str]]:
    """Item ids of ``new_ids`` already scored by another source, per source."""
    clashing = others[others["id"].isin(new_ids)]
    return {str(source): sorted(part["id"])
            for source, part in clashing.groupby("mos_source", sort=True)}


def store_mos(study_dir: str | Path, table: pd.DataFrame, *, source: str,
              replace_source: bool = False, manifest: pd.DataFrame | None = None,
              ) -> MosUpdate:
    """Store ``table`` as the study's MOS from ``source``, keeping other sources' MOS.

    Rows already stored from ``source`` are all replaced by ``table`` (so storing the
    same scores again changes nothing); rows of other sources are kept. An item that
    another source already scored is an error, unless ``replace_source``.

    Parameters
    ----------
    study_dir : str or Path
        The study directory; ``mos.parquet``/``mos.csv`` are written there.
    table : pandas.DataFrame
        ``id, mos`` and optionally ``mos_std``, ``n_ratings``; ids unique and finite MOS.
    source : str
        Where the scores come from, e.g. ``import:scores.csv`` or
        ``annotate:ratings.sqlite``.
    replace_source : bool, default False
        Replace the MOS of items that another source scored (reported in the result).
    manifest : pandas.DataFrame, optional
        The study's manifest (read from ``study_dir`` if not given): rows are stored in
        its order.

    Returns
    -------
    MosUpdate

    Raises
    ------
    MosSourceError
        Items scored by another source, naming them and the source, unless
        ``replace_source``; nothing is written then.
    ValueError
        Duplicate ids, a missing or non-finite MOS, or an empty ``source``.
    """
    study = Path(study_dir)
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"a MOS source is a non-empty name, not {source!r}")
    table = table.assign(**{column: table.get(column, np.nan)
                            for column in ("mos_std", "n_ratings")})
    rows = _as_stored(table, source)
    if rows["id"].duplicated().any():
        raise ValueError(f"MOS table repeats ids: {_ids_text(rows['id'][rows['id'].duplicated()])}")
    if not np.isfinite(rows["mos"]).all():
        raise ValueError(f"MOS is missing or not finite for "
                         f"{_ids_text(rows['id'][~np.isfinite(rows['mos'])])}")
    existing = load_mos(study)
    same = existing[existing["mos_source"] == source]
    others = existing[existing["mos_source"] != source]
    new_ids = set(rows["id"])
    overridden = _conflicts(others, new_ids)
    if overridden and not replace_source:
        listed = "; ".join(f"{len(ids)} from {name!r}: {_ids_text(ids)}"
                           for name, ids in overridden.items())
        raise MosSourceError(
            f"refusing to overwrite MOS from another source with {source!r}: {listed}. "
            f"Nothing was written. Pass --replace-source (replace_source=True) to replace "
            f"them, or store these scores in another study")
    kept = others[~others["id"].isin(new_ids)]
    stored = pd.concat([kept, rows], ignore_index=True) if len(kept) else rows
    if manifest is None:
        manifest = StudyDir(study).manifest()
    order = {item: index for index, item in enumerate(manifest["id"].astype(str))}
    position = [order.get(item, len(order)) for item in stored["id"]]
    stored = stored.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
    path, _ = StudyDir(study).write_mos(stored[list(MOS_COLUMNS)])
    same_ids = set(same["id"])
    return MosUpdate(
        source=source, rows=stored[stored["mos_source"] == source].reset_index(drop=True),
        stored=stored, added=len(new_ids - set(existing["id"])),
        replaced=len(new_ids & same_ids), dropped=len(same_ids - new_ids),
        kept=kept["mos_source"].value_counts(sort=False).sort_index().to_dict(),
        overridden=overridden, path=path)


def load_mos(study_dir: str | Path) -> pd.DataFrame:
    """The study's stored opinion scores (:data:`MOS_COLUMNS`); empty if none.

    A ``mos.parquet`` written before sources were recorded gets ``mos_source``
    ``"unrecorded"``.
    """
    table = StudyDir(study_dir).mos()
    if table is None:
        return pd.DataFrame({column: pd.Series(dtype=object if column in ("id", "mos_source")
                                               else float)
                             for column in MOS_COLUMNS})
    if "mos_source" not in table.columns:
        table["mos_source"] = UNRECORDED_SOURCE
    return table


def with_mos(frame: pd.DataFrame, study_dir: str | Path) -> pd.DataFrame:
    """`frame` with the study's stored MOS columns merged in by ``id``.

    Stored values take precedence; rows they do not cover keep any MOS the frame (e.g. a
    manifest) already carried, with ``mos_source`` ``"manifest"``.
    """
    frame = frame.copy()
    if "mos" in frame.columns:
        own = frame.get("mos_source", pd.Series(None, index=frame.index, dtype=object))
        frame["mos_source"] = own.where(own.notna() | frame["mos"].isna(), MANIFEST_SOURCE)
    stored = load_mos(study_dir)
    if stored.empty:
        return frame
    merged = frame.merge(stored, on="id", how="left", suffixes=("", "_imported"))
    if "mos_imported" not in merged:
        return merged
    # A stored row replaces the frame's score, std, count and source together, never a mix.
    has_stored = merged["mos_imported"].notna()
    for column in MOS_COLUMNS[1:]:
        if f"{column}_imported" in merged:
            merged[column] = merged[f"{column}_imported"].where(has_stored, merged[column])
            merged = merged.drop(columns=f"{column}_imported")
    return merged


def require_mos(frame: pd.DataFrame, *, column: str = "mos") -> pd.DataFrame:
    """Return `frame` if it has opinion scores, else raise :class:`MissingMosError`."""
    if column not in frame.columns or not frame[column].notna().any():
        raise MissingMosError(f"no MOS in this study: {IMPORT_HINT}")
    return frame


def select_mos_source(frame: pd.DataFrame, sources: list[str] | None = None,
                      ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows of ``frame`` with a MOS from the chosen source(s), and their counts.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows with ``mos`` and ``mos_source`` (as :func:`with_mos` gives).
    sources : list of str, optional
        Sources to use; several are pooled. Default: the only source present.

    Returns
    -------
    rated : pandas.DataFrame
        The rows with a MOS from those sources.
    used : dict
        Source -> number of rows used.

    Raises
    ------
    MissingMosError
        No MOS at all.
    MosSourceError
        Several sources present and none chosen (MOS of different studies are not
        pooled unasked), or a chosen source that is absent; the message lists the
        sources present.
    """
    require_mos(frame)
    rated = frame[frame["mos"].notna()]
    labels = rated.get("mos_source", pd.Series(MANIFEST_SOURCE, index=rated.index))
    labels = labels.fillna(MANIFEST_SOURCE)
    present = labels.value_counts(sort=False).sort_index().to_dict()
    listed = ", ".join(f"{name!r} ({count} AEs)" for name, count in present.items())
    if sources is None:
        if len(present) > 1:
            raise MosSourceError(
                f"this study has MOS from {len(present)} sources: {listed}. Choose one "
                f"with --mos-source NAME, or pool some explicitly with --mos-source A,B")
        return rated, present
    missing = [name for name in sources if name not in present]
    if missing:
        raise MosSourceError(f"no MOS from {', '.join(map(repr, missing))} in this study; "
                             f"its sources: {listed}")
    chosen = labels.isin(sources)
    return rated[chosen], {name: present[name] for name in sources}
