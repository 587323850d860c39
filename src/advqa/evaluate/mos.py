"""Import mean opinion scores (MOS) from a spreadsheet into a study.

Imported scores live in ``mos.parquet``/``mos.csv`` in the study directory (columns
``id, mos, mos_std, n_ratings``), not in ``manifest.parquet``, which ``advqa build``
regenerates. A manifest may still carry its own ``mos``/``mos_std``/``n_ratings`` columns;
:func:`with_mos` merges both, imported values first.

Example: the QoMEX 2019 study's per-image subjective results spreadsheet has one row per
adversarial image with its file name and MOS. Map its columns onto the manifest with e.g.
``mapping={"id": "Image name", "mos": "MOS", "mos_std": "Std", "n_ratings": "N"}`` (on the
command line ``--map "id=Image name,mos=MOS,mos_std=Std,n_ratings=N"``); if the sheet
names images by their source image, attack and strength instead of an AE id, map
``image``, ``attack``, ``norm`` and ``strength`` rather than ``id``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from advqa.study.store import write_table

MOS_COLUMNS = ("id", "mos", "mos_std", "n_ratings")
KEY_COLUMNS = ("image", "attack", "norm", "strength")
TARGETS = (*MOS_COLUMNS, *KEY_COLUMNS)
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SHOWN_ROWS = 20  # offending rows listed in a message before "... and N more"
IMPORT_HINT = "import opinion scores with `advqa evaluate import STUDY SHEET --map ...`"


class MosImportError(ValueError):
    """A spreadsheet that cannot be mapped onto the study; the message lists the rows."""


class MissingMosError(ValueError):
    """The study has no opinion scores."""


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
    """Parse a column as numbers; return them and a message naming bad rows, if any."""
    text = table[column].astype(str).str.strip()
    values = pd.to_numeric(text.replace("", np.nan), errors="coerce")
    bad = values.isna() & ((text != "") | required)
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


def _read_manifest(study: Path) -> pd.DataFrame:
    path = study / "manifest.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest.parquet in {study}: build the study first "
                                f"(`advqa build`)")
    return pd.read_parquet(path)


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
    return columns


def import_mos(study_dir: str | Path, sheet_path: str | Path, *, id_column: str | None = None,
               mapping: dict[str, str] | None = None, sheet: str | None = None) -> pd.DataFrame:
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

    Returns
    -------
    pandas.DataFrame
        The stored table: ``id, mos, mos_std, n_ratings``, in manifest order. It replaces
        any earlier import.

    Raises
    ------
    MosImportError
        Listing the sheet rows (header = row 1) with unknown ids, duplicates, missing or
        non-numeric scores, or the missing columns.
    ImportError
        For an XLSX file without openpyxl installed.
    """
    study = Path(study_dir)
    manifest = _read_manifest(study)
    table = read_sheet(sheet_path, sheet=sheet)
    mapping = _resolve_mapping(table, mapping, id_column)
    _check_columns(table, mapping, Path(sheet_path).name)
    problems: list[str] = []
    ids = _identify(table, manifest, mapping, problems)
    scores = _scores(table, mapping, problems)
    if problems:
        raise MosImportError(f"cannot import {Path(sheet_path).name}:\n  "
                             + "\n  ".join(problems))
    imported = pd.DataFrame({"id": ids.astype(str), **scores})
    imported["n_ratings"] = imported["n_ratings"].astype("Int64")
    order = pd.Series(range(len(manifest)), index=manifest["id"])
    imported = imported.iloc[np.argsort(order[imported["id"]].to_numpy(), kind="stable")]
    imported = imported.reset_index(drop=True)[list(MOS_COLUMNS)]
    write_table(imported, study / "mos")
    return imported


def load_mos(study_dir: str | Path) -> pd.DataFrame:
    """The study's imported opinion scores (``id, mos, mos_std, n_ratings``); empty if none."""
    path = Path(study_dir) / "mos.parquet"
    if not path.is_file():
        return pd.DataFrame({column: pd.Series(dtype=object if column == "id" else float)
                             for column in MOS_COLUMNS})
    return pd.read_parquet(path)


def with_mos(frame: pd.DataFrame, study_dir: str | Path) -> pd.DataFrame:
    """`frame` with the study's imported MOS columns merged in by ``id``.

    Imported values take precedence; rows the import does not cover keep any MOS the
    frame (e.g. a manifest) already carried.
    """
    imported = load_mos(study_dir)
    if imported.empty:
        return frame
    merged = frame.merge(imported, on="id", how="left", suffixes=("", "_imported"))
    for column in MOS_COLUMNS[1:]:
        if f"{column}_imported" in merged:
            merged[column] = merged[f"{column}_imported"].combine_first(merged[column])
            merged = merged.drop(columns=f"{column}_imported")
    return merged


def require_mos(frame: pd.DataFrame, *, column: str = "mos") -> pd.DataFrame:
    """Return `frame` if it has opinion scores, else raise :class:`MissingMosError`."""
    if column not in frame.columns or not frame[column].notna().any():
        raise MissingMosError(f"no MOS in this study: {IMPORT_HINT}")
    return frame
