"""Turn collected opinion scores into a MOS table, optionally stored beside a study.

Order of operations (:func:`mos_table`): ITU-R BT.500 β2 observer screening on all
ratings, then the rejected raters' scores are dropped, then at most one outlier individual
score per item is removed (the AdvDSS paper's §3.1 step; the exact rule is in
:mod:`advqa.annotate.screening`), then the remaining scores are averaged.

:func:`export_mos` writes ``item_id, mos, std, ci95, n`` to a CSV and, next to it,
``<stem>_screening.csv`` (every rater: P, Q, N, ratios, rejected, reason; rejected first)
and ``<stem>_removed_scores.csv`` (each removed individual score and why). Given a study's
``manifest.parquet`` it also stores the MOS the way ``advqa evaluate import`` does
(``mos.parquet``/``mos.csv`` in the study directory, columns ``id, mos, mos_std,
n_ratings, mos_source``) with the source ``annotate:<database name>``: an earlier export
of the same database is replaced, MOS from other sources (an imported sheet) are kept,
and an item that another source already scored is an error unless ``replace_source``
(:func:`advqa.evaluate.mos.store_mos`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from scipy import stats

from advqa.annotate.screening import (
    REMOVED_COLUMNS,
    SCREENING_COLUMNS,
    ScreeningResult,
    bt500_screen,
    check_ratings,
    remove_outlier_scores,
)
from advqa.data import atomic_write_bytes
from advqa.evaluate.mos import MosUpdate, store_mos
from advqa.study.layout import StudyDir

EXPORT_COLUMNS = ("item_id", "mos", "std", "ci95", "n")
SHOWN_IDS = 20  # unknown ids listed in a message before "... and N more"


class UnknownItemsError(ValueError):
    """Ratings name items that the study's manifest does not hold."""


@dataclass
class ExportReport:
    """What screening did: the BT.500 result (None if skipped) and the removed scores."""

    screening: ScreeningResult | None
    removed: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(REMOVED_COLUMNS)))
    n_ratings: int = 0
    n_raters: int = 0

    @property
    def rejected(self) -> list[str]:
        return [] if self.screening is None else list(self.screening.rejected)

    @property
    def screening_table(self) -> pd.DataFrame:
        if self.screening is None:
            return pd.DataFrame(columns=list(SCREENING_COLUMNS))
        return self.screening.raters


@dataclass
class ExportResult:
    table: pd.DataFrame
    report: ExportReport
    paths: dict[str, Path]
    study: MosUpdate | None = None  # what storing the study's MOS did (with a manifest)


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """``item_id, mos, std, ci95, n`` of ratings ``rater, item_id, score``.

    ``std`` has ddof=1; ``ci95`` is the half-width ``t(0.975, n−1)·std/√n`` (NaN for
    n < 2).
    """
    grouped = scores.groupby("item_id", sort=True)["score"]
    table = pd.DataFrame({"mos": grouped.mean(), "std": grouped.std(ddof=1),
                          "n": grouped.size().astype(int)})
    n = table["n"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        quantile = stats.t.ppf(0.975, np.where(n >= 2, n - 1, np.nan))
        table["ci95"] = np.where(n >= 2, quantile * table["std"] / np.sqrt(n), np.nan)
    return table.reset_index()[list(EXPORT_COLUMNS)]


def mos_table(ratings: pd.DataFrame, *, screen: bool = True, remove_outliers: bool = True,
              ) -> tuple[pd.DataFrame, ExportReport]:
    """MOS per item after BT.500 screening and outlier-score removal.

    Parameters
    ----------
    ratings : pandas.DataFrame
        Columns ``rater, item_id, score`` (others, e.g. ``updated``, are ignored).
    screen : bool
        Reject raters by ITU-R BT.500 β2 screening first.
    remove_outliers : bool
        Then remove at most one outlier individual score per item.

    Returns
    -------
    table : pandas.DataFrame
        ``item_id, mos, std, ci95, n`` sorted by item; every rated item appears, with
        ``n = 0`` and NaN scores if all its scores were dropped.
    report : ExportReport
    """
    scores = check_ratings(ratings)
    report = ExportReport(screening=None, n_ratings=len(scores),
                          n_raters=scores["rater"].nunique())
    items = sorted(scores["item_id"].unique())
    if screen and len(scores):
        report.screening = bt500_screen(scores)
        scores = scores[~scores["rater"].isin(report.screening.rejected)]
    if remove_outliers and len(scores):
        scores, report.removed = remove_outlier_scores(scores)
    table = summarise(scores).set_index("item_id").reindex(items)
    table["n"] = table["n"].fillna(0).astype(int)
    return table.rename_axis("item_id").reset_index()[list(EXPORT_COLUMNS)], report


def read_ratings(database) -> pd.DataFrame:
    """Ratings ``rater, item_id, score, updated`` from a rating database (path or URL)."""
    text = os.fspath(database) if isinstance(database, os.PathLike) else str(database)
    if "://" not in text and not Path(text).is_file():
        raise FileNotFoundError(f"no such rating database: {text}")
    from advqa.annotate.store import RatingStore

    store = RatingStore(database)
    try:
        return store.ratings()
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def _check_items(table: pd.DataFrame, manifest: pd.DataFrame, path: Path) -> None:
    known = set(manifest["id"].astype(str))
    unknown = sorted(set(table["item_id"]) - known)
    if unknown:
        shown = ", ".join(map(repr, unknown[:SHOWN_IDS]))
        more = f" ... and {len(unknown) - SHOWN_IDS} more" if len(unknown) > SHOWN_IDS else ""
        raise UnknownItemsError(f"{len(unknown)} rated item(s) are not in {path}: "
                                f"{shown}{more}")


def database_source(database) -> str:
    """``annotate:<name>``: the ``mos_source`` of MOS exported from a rating database.

    The name is the file name of a SQLite database, or the database name of a
    ``postgresql://`` URL (never its user or password).
    """
    text = os.fspath(database) if isinstance(database, os.PathLike) else str(database)
    if "://" in text:
        parts = urlsplit(text)
        name = parts.path.strip("/") or (parts.hostname or "postgresql")
    else:
        name = Path(text).name
    return f"annotate:{name}"


def store_study_mos(table: pd.DataFrame, manifest_path: str | Path, *, source: str,
                    replace_source: bool = False) -> MosUpdate:
    """Store ``table`` (``item_id, mos, std, n``) as the study's MOS from ``source``.

    Writes ``mos.parquet``/``mos.csv`` beside ``manifest_path`` as ``advqa evaluate
    import`` does (:func:`advqa.evaluate.mos.store_mos`: other sources are kept, and
    overwriting them needs ``replace_source``); items whose every score was dropped
    (``n = 0``) are left out.
    """
    study = StudyDir.of_manifest(manifest_path)
    manifest = study.manifest()
    _check_items(table, manifest, study.manifest_path)
    return _store(table, manifest, study, source=source, replace_source=replace_source)


def _store(table: pd.DataFrame, manifest: pd.DataFrame, study: StudyDir, *,
           source: str, replace_source: bool) -> MosUpdate:
    rated = table[table["n"] > 0]
    # A single rating has no std (NaN): stored as missing, which correlations accept.
    stored = pd.DataFrame({"id": rated["item_id"].astype(str), "mos": rated["mos"],
                           "mos_std": rated["std"], "n_ratings": rated["n"]})
    return store_mos(study.path, stored, source=source,
                     replace_source=replace_source, manifest=manifest)


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write_bytes(path, frame.to_csv(index=False).encode())


def export_mos(source, out_csv: str | Path, *, manifest: str | Path | None = None,
               screen: bool = True, remove_outliers: bool = True,
               mos_source: str | None = None, replace_source: bool = False) -> ExportResult:
    """Write the MOS CSV, its screening reports and, with ``manifest``, the study's MOS.

    Parameters
    ----------
    source : pandas.DataFrame, str or Path
        Ratings (``rater, item_id, score``) or a rating database read through
        :class:`advqa.annotate.store.RatingStore`.
    out_csv : str or Path
        The MOS CSV (``item_id, mos, std, ci95, n``); ``<stem>_screening.csv`` and
        ``<stem>_removed_scores.csv`` go beside it (written even when empty, so no stale
        report survives).
    manifest : str or Path, optional
        A study's ``manifest.parquet``: every rated item must be in it, and the MOS is
        stored in that study (``mos.parquet``/``mos.csv``) with ``mos_source``
        `mos_source`, keeping MOS from other sources. A file of another name is refused
        (:meth:`advqa.study.StudyDir.of_manifest`).
    screen, remove_outliers : bool
        See :func:`mos_table`.
    mos_source : str, optional
        Default :func:`database_source` of the database (``annotate:ratings.sqlite``), or
        ``annotate`` for a DataFrame.
    replace_source : bool, default False
        Replace study MOS of the same items from another source instead of refusing.

    Returns
    -------
    ExportResult
        With ``study`` (a :class:`advqa.evaluate.mos.MosUpdate`) when `manifest` is given.

    Raises
    ------
    UnknownItemsError
        Rated items absent from ``manifest`` (listed); nothing is written then.
    advqa.evaluate.mos.MosSourceError
        Rated items that another source already scored in the study, unless
        ``replace_source``; nothing is written then.
    """
    if isinstance(source, pd.DataFrame):
        ratings, name = source, mos_source or "annotate"
    else:
        ratings, name = read_ratings(source), mos_source or database_source(source)
    table, report = mos_table(ratings, screen=screen, remove_outliers=remove_outliers)
    paths, update = {}, None
    if manifest is not None:
        study = StudyDir.of_manifest(manifest)
        manifest_frame = study.manifest()
        _check_items(table, manifest_frame, study.manifest_path)
        # First, so a refused overwrite leaves every file as it was.
        update = _store(table, manifest_frame, study, source=name,
                        replace_source=replace_source)
    out_csv = Path(out_csv)
    paths["mos"] = _write_csv(table, out_csv)
    paths["screening"] = _write_csv(report.screening_table,
                                    out_csv.with_name(f"{out_csv.stem}_screening.csv"))
    paths["removed"] = _write_csv(report.removed,
                                  out_csv.with_name(f"{out_csv.stem}_removed_scores.csv"))
    if update is not None:
        paths["study_mos"] = update.path
    return ExportResult(table, report, paths, update)
