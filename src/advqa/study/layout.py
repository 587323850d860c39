"""The layout of a study directory: every file a study holds, and how to read or write it.

:class:`StudyDir` is the one place that names a study's files. Every module that
reads or writes a study does it through its accessors, so the directory is an
explicit contract rather than path literals spread over the package::

    study.json                settings            StudyDir.settings / write_settings
    manifest.{parquet,csv}    one row per AE      manifest / write_manifest
    images/ref, images/adv    the PNGs            reference_path, adversarial_path, resolve
    failures.csv              failed units        failures / write_failures
    summary.{parquet,csv}     success per cell    success_table / write_success_table
    ledger.sqlite, study.lock resuming, writer    ledger_path, lock()
    scores, scored_manifest,  ``advqa score``     scores, scored_manifest, score_failures
    score_failures
    mos.{parquet,csv}         opinion scores      mos / write_mos
    correlations, scatter.png metric vs MOS       correlations, scatter_path
    detection, detection_summary  WS detector     detection, detection_summary
    aeqa_applications/        Table 6, Figure 7   applications (:class:`Applications`)
    report.html               the report          report_path / write_report

Tables are written as Parquet (read back) and CSV (for people), atomically. A reader
of a file that every study has (settings, manifest) raises ``FileNotFoundError``
naming the command that writes it; a reader of an optional file returns ``None``
when it is absent, or raises that error when called with ``required=True``.

This module imports only the standard library and pandas, so
``from advqa.study.layout import StudyDir`` does not import torch; writing imports
:mod:`advqa.study.store` when it happens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["Applications", "StudyDir"]


def _read_table(path: Path, *, required: bool, hint: str,
                columns: list[str] | None = None) -> pd.DataFrame | None:
    """``path`` (a Parquet file) as a DataFrame; None or an error when it is absent."""
    if path.is_file():
        return pd.read_parquet(path, columns=columns)
    if required:
        raise FileNotFoundError(f"no {path.name} in {path.parent}: {hint}")
    return None


def _write_table(table: pd.DataFrame, path: Path) -> tuple[Path, Path]:
    """Write ``path`` (``.parquet``) and its ``.csv`` twin atomically; return both."""
    from advqa.study.store import write_table

    return write_table(table, path.with_suffix(""))


class Applications:
    """The AEQA applications of a study (``aeqa_applications/``), written by
    :func:`advqa.evaluate.applications.write_applications`.

    Parameters
    ----------
    study : StudyDir
        The study they belong to.

    Attributes
    ----------
    path : Path
        The folder.
    """

    FOLDER = "aeqa_applications"
    ATTACK_COMPARISON = "attack_comparison"
    BEST_SETTINGS = "best_settings"
    CURVES = "aeqa_curves"
    CURVES_FIGURE = "aeqa_curves.png"
    LBFGS = "lbfgs_vs_pgd"

    def __init__(self, study: StudyDir):
        self.study = study
        self.path = study.path / self.FOLDER

    def __repr__(self) -> str:
        return f"Applications({str(self.path)!r})"

    def _path(self, stem: str) -> Path:
        return self.path / f"{stem}.parquet"

    def _hint(self) -> str:
        return f"compute them with `advqa evaluate aeqa {self.study.path}`"

    @property
    def attack_comparison_path(self) -> Path:
        """``attack_comparison.parquet`` (Table 6)."""
        return self._path(self.ATTACK_COMPARISON)

    @property
    def best_settings_path(self) -> Path:
        """``best_settings.parquet`` (Figure 7's peaks)."""
        return self._path(self.BEST_SETTINGS)

    @property
    def curves_path(self) -> Path:
        """``aeqa_curves.parquet`` (Figure 7's data)."""
        return self._path(self.CURVES)

    @property
    def curves_figure_path(self) -> Path:
        """``aeqa_curves.png`` (Figure 7)."""
        return self.path / self.CURVES_FIGURE

    @property
    def lbfgs_path(self) -> Path:
        """``lbfgs_vs_pgd.parquet`` (Table 7)."""
        return self._path(self.LBFGS)

    def attack_comparison(self, *, required: bool = False) -> pd.DataFrame | None:
        """Table 6: every attack at one budget, with mean AEQA, JS, AdvDSS, success rate.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (naming the command) instead of returning None.
        """
        return _read_table(self.attack_comparison_path, required=required, hint=self._hint())

    def best_settings(self, *, required: bool = False) -> pd.DataFrame | None:
        """Per (attack, norm): ``best_strength`` and ``peak_mean_aeqa``; None if absent.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (naming the command) instead of returning None.
        """
        return _read_table(self.best_settings_path, required=required, hint=self._hint())

    def curves(self, *, required: bool = False) -> pd.DataFrame | None:
        """Mean AEQA per (attack, norm, strength), column ``mean_aeqa``; None if absent.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (naming the command) instead of returning None.
        """
        return _read_table(self.curves_path, required=required, hint=self._hint())

    def lbfgs(self, *, required: bool = False) -> pd.DataFrame | None:
        """Table 7: L-BFGS AEQA AEs next to PGD at equal success; None if absent.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (naming the command) instead of returning None.
        """
        hint = f"compute it with `advqa evaluate aeqa {self.study.path} --lbfgs N`"
        return _read_table(self.lbfgs_path, required=required, hint=hint)

    def curves_figure(self) -> bytes | None:
        """The PNG of Figure 7, or None if absent."""
        path = self.curves_figure_path
        return path.read_bytes() if path.is_file() else None

    def write_attack_comparison(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write Table 6; returns the Parquet and CSV paths."""
        return _write_table(table, self.attack_comparison_path)

    def write_best_settings(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write the peaks of Figure 7; returns the Parquet and CSV paths."""
        return _write_table(table, self.best_settings_path)

    def write_curves(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write Figure 7's data; returns the Parquet and CSV paths."""
        return _write_table(table, self.curves_path)

    def write_lbfgs(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write Table 7; returns the Parquet and CSV paths."""
        return _write_table(table, self.lbfgs_path)


class StudyDir:
    """A study directory and every file in it (see the module docstring).

    Constructing one touches nothing on disk; readers and writers do.

    Parameters
    ----------
    path : str or Path
        The study directory (``advqa build --out``).

    Attributes
    ----------
    path : Path
        The study directory.
    applications : Applications
        The AEQA applications folder.

    Examples
    --------
    >>> study = StudyDir("runs/demo")
    >>> study.manifest_path.name
    'manifest.parquet'
    >>> StudyDir.adversarial_path("cat__pgd-linf-0.03-1a2b3c4d")
    'images/adv/cat__pgd-linf-0.03-1a2b3c4d.png'
    """

    SETTINGS = "study.json"
    MANIFEST = "manifest"
    REFERENCES = "images/ref"
    ADVERSARIAL = "images/adv"
    FAILURES = "failures.csv"
    SUCCESS = "summary"
    LEDGER = "ledger.sqlite"
    LOCK = "study.lock"
    SCORES = "scores"
    SCORED_MANIFEST = "scored_manifest"
    SCORE_FAILURES = "score_failures"
    MOS = "mos"
    CORRELATIONS = "correlations"
    SCATTER = "scatter.png"
    DETECTION = "detection"
    DETECTION_SUMMARY = "detection_summary"
    REPORT = "report.html"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.applications = Applications(self)

    @classmethod
    def of_manifest(cls, manifest: str | Path) -> StudyDir:
        """The study whose ``manifest.parquet`` is ``manifest``.

        Raises
        ------
        ValueError
            When ``manifest`` is not named ``manifest.parquet``: any other file is not
            the study's manifest, and reading it would mix two tables.
        """
        manifest = Path(manifest)
        expected = f"{cls.MANIFEST}.parquet"
        if manifest.name != expected:
            raise ValueError(f"{manifest} is not a study manifest: give the study's "
                             f"{expected} (or the study directory)")
        return cls(manifest.parent)

    def __repr__(self) -> str:
        return f"StudyDir({str(self.path)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, StudyDir) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    def _table(self, stem: str) -> Path:
        return self.path / f"{stem}.parquet"

    def _score_hint(self) -> str:
        return f"score the study first (`advqa score --study {self.path}`)"

    # -- paths -----------------------------------------------------------------------------

    @property
    def settings_path(self) -> Path:
        """``study.json``."""
        return self.path / self.SETTINGS

    @property
    def manifest_path(self) -> Path:
        """``manifest.parquet`` (``manifest.csv`` beside it is its copy for people)."""
        return self._table(self.MANIFEST)

    @property
    def failures_path(self) -> Path:
        """``failures.csv``: unreadable images and failed work units of the build."""
        return self.path / self.FAILURES

    @property
    def success_table_path(self) -> Path:
        """``summary.parquet``: the build's success table per grid cell."""
        return self._table(self.SUCCESS)

    @property
    def ledger_path(self) -> Path:
        """``ledger.sqlite``: finished work units and scores, for resuming."""
        return self.path / self.LEDGER

    @property
    def lock_path(self) -> Path:
        """``study.lock``: held by the one process writing the study."""
        return self.path / self.LOCK

    @property
    def scores_path(self) -> Path:
        """``scores.parquet``: id and one column per metric."""
        return self._table(self.SCORES)

    @property
    def scored_manifest_path(self) -> Path:
        """``scored_manifest.parquet``: the manifest with one column per metric."""
        return self._table(self.SCORED_MANIFEST)

    @property
    def score_failures_path(self) -> Path:
        """``score_failures.parquet``: (AE, metric) pairs that failed, with the error."""
        return self._table(self.SCORE_FAILURES)

    @property
    def mos_path(self) -> Path:
        """``mos.parquet``: stored opinion scores."""
        return self._table(self.MOS)

    @property
    def correlations_path(self) -> Path:
        """``correlations.parquet``: agreement of each metric with the MOS."""
        return self._table(self.CORRELATIONS)

    @property
    def scatter_path(self) -> Path:
        """``scatter.png``: each metric against the MOS."""
        return self.path / self.SCATTER

    @property
    def detection_path(self) -> Path:
        """``detection.parquet``: the WS statistic of every AE."""
        return self._table(self.DETECTION)

    @property
    def detection_summary_path(self) -> Path:
        """``detection_summary.parquet``: detection rate and AUC per grid cell."""
        return self._table(self.DETECTION_SUMMARY)

    @property
    def report_path(self) -> Path:
        """``report.html``."""
        return self.path / self.REPORT

    # -- images ----------------------------------------------------------------------------

    @classmethod
    def reference_path(cls, name: str) -> str:
        """Where the reference image ``name`` lives, relative to the study, as the
        manifest's ``reference_path`` stores it: ``images/ref/<name>.png``."""
        return f"{cls.REFERENCES}/{name}.png"

    @classmethod
    def adversarial_path(cls, ae_id: str) -> str:
        """Where the AE ``ae_id`` lives, relative to the study, as the manifest's
        ``adversarial_path`` stores it: ``images/adv/<id>.png``."""
        return f"{cls.ADVERSARIAL}/{ae_id}.png"

    def resolve(self, relative: str | Path) -> Path:
        """The file a manifest path (relative to the study) names."""
        return self.path / relative

    def reference_files(self) -> list[Path]:
        """Every reference PNG on disk, sorted by name."""
        return sorted((self.path / self.REFERENCES).glob("*.png"))

    # -- the build -------------------------------------------------------------------------

    def settings(self, *, required: bool = True) -> dict | None:
        """``study.json``: versions, model, seed, the grid and every contributing grid.

        Parameters
        ----------
        required : bool, default True
            Every built study has settings; with False a missing file gives None.
        """
        if self.settings_path.is_file():
            return json.loads(self.settings_path.read_text(encoding="utf-8"))
        if required:
            raise FileNotFoundError(f"no {self.SETTINGS} in {self.path}: run `advqa build` "
                                    "first")
        return None

    def write_settings(self, document: dict) -> Path:
        """Write ``study.json`` atomically (indented JSON); returns its path."""
        from advqa.data import atomic_write_bytes

        return atomic_write_bytes(self.settings_path, json.dumps(document, indent=2).encode())

    def require_built(self) -> StudyDir:
        """Return self if the study has a manifest, else raise ``FileNotFoundError``
        saying to run ``advqa build``; for a check before slow set-up."""
        if not self.manifest_path.is_file():
            raise FileNotFoundError(f"no {self.manifest_path.name} in {self.path}: run "
                                    "`advqa build` first")
        return self

    def manifest(self, *, columns: list[str] | None = None) -> pd.DataFrame:
        """The manifest: one row per kept AE (columns in the README).

        Parameters
        ----------
        columns : list of str, optional
            Read only these columns.

        Raises
        ------
        FileNotFoundError
            Without a manifest, saying to run ``advqa build``.
        ValueError
            A manifest without an ``id`` column (not one advqa wrote).
        """
        table = pd.read_parquet(self.require_built().manifest_path, columns=columns)
        if "id" not in table.columns and (columns is None or "id" in columns):
            raise ValueError(f"{self.manifest_path} has no 'id' column; it is not a study "
                             "manifest")
        return table

    def write_manifest(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write ``manifest.{parquet,csv}`` atomically; returns both paths."""
        return _write_table(table, self.manifest_path)

    def failures(self, *, required: bool = False) -> pd.DataFrame | None:
        """``failures.csv`` (``path, unit, reason``); None if absent."""
        if self.failures_path.is_file():
            return pd.read_csv(self.failures_path)
        if required:
            raise FileNotFoundError(f"no {self.FAILURES} in {self.path}: run `advqa build`")
        return None

    def write_failures(self, table: pd.DataFrame) -> Path:
        """Write ``failures.csv`` atomically (CSV only); returns its path."""
        from advqa.data import atomic_write_bytes

        return atomic_write_bytes(self.failures_path, table.to_csv(index=False).encode())

    def success_table(self, *, required: bool = False) -> pd.DataFrame | None:
        """The build's success table per grid cell (tried, correct, fooled, success
        rate, median distances), written by ``advqa build``; None if absent."""
        return _read_table(self.success_table_path, required=required,
                           hint=f"run `advqa build --out {self.path}`")

    def write_success_table(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write ``summary.{parquet,csv}``; returns both paths."""
        return _write_table(table, self.success_table_path)

    def lock(self):
        """A :class:`advqa.study.store.StudyLock` on this study, to use as a context
        manager around any write."""
        from advqa.study.store import StudyLock

        return StudyLock(self.path)

    # -- scores ----------------------------------------------------------------------------

    def scores(self, *, required: bool = False) -> pd.DataFrame | None:
        """``id`` and one column per scored metric; None before ``advqa score``.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (saying to score the study) instead of None.
        """
        return _read_table(self.scores_path, required=required, hint=self._score_hint())

    def write_scores(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write ``scores.{parquet,csv}``; returns both paths."""
        return _write_table(table, self.scores_path)

    def scored_manifest(self, *, required: bool = False) -> pd.DataFrame | None:
        """The manifest with one column per scored metric; None before ``advqa score``.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (saying to score the study) instead of None.
        """
        return _read_table(self.scored_manifest_path, required=required,
                           hint=self._score_hint())

    def write_scored_manifest(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write ``scored_manifest.{parquet,csv}``; returns both paths."""
        return _write_table(table, self.scored_manifest_path)

    def score_failures(self, *, required: bool = False) -> pd.DataFrame | None:
        """(AE, metric) pairs that could not be scored, with the error; None if absent."""
        return _read_table(self.score_failures_path, required=required,
                           hint=self._score_hint())

    def write_score_failures(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write ``score_failures.{parquet,csv}``; returns both paths."""
        return _write_table(table, self.score_failures_path)

    # -- opinion scores and agreement ------------------------------------------------------

    def mos(self, *, required: bool = False) -> pd.DataFrame | None:
        """The stored opinion scores as written (``id, mos, mos_std, n_ratings,
        mos_source``); None if none. :func:`advqa.evaluate.mos.load_mos` adds what
        older files lack.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (saying how to import MOS) instead of None.
        """
        hint = (f"import opinion scores with `advqa evaluate import {self.path} SHEET` or "
                "`advqa annotate export --manifest`")
        return _read_table(self.mos_path, required=required, hint=hint)

    def write_mos(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write ``mos.{parquet,csv}``; returns both paths."""
        return _write_table(table, self.mos_path)

    def correlations(self, *, required: bool = False) -> pd.DataFrame | None:
        """Agreement of each metric with the MOS, per group; None if not computed.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (naming the command) instead of None.
        """
        hint = f"compute it with `advqa evaluate correlations {self.path}`"
        return _read_table(self.correlations_path, required=required, hint=hint)

    def write_correlations(self, table: pd.DataFrame) -> tuple[Path, Path]:
        """Write ``correlations.{parquet,csv}``; returns both paths."""
        return _write_table(table, self.correlations_path)

    def scatter(self) -> bytes | None:
        """The PNG of the metric-against-MOS scatter plots, or None if absent."""
        return self.scatter_path.read_bytes() if self.scatter_path.is_file() else None

    # -- detection -------------------------------------------------------------------------

    def detection(self, *, required: bool = False) -> pd.DataFrame | None:
        """The WS statistic of every AE and whether it is flagged; None if not run.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (naming the command) instead of None.
        """
        return _read_table(self.detection_path, required=required,
                           hint=f"run `advqa detect study {self.path}`")

    def detection_summary(self, *, required: bool = False) -> pd.DataFrame | None:
        """Detection rate and ROC AUC per grid cell; None if not run.

        Parameters
        ----------
        required : bool, default False
            Raise ``FileNotFoundError`` (naming the command) instead of None.
        """
        return _read_table(self.detection_summary_path, required=required,
                           hint=f"run `advqa detect study {self.path}`")

    def write_detection(self, per_ae: pd.DataFrame, summary: pd.DataFrame) -> None:
        """Write ``detection.{parquet,csv}`` and ``detection_summary.{parquet,csv}``."""
        _write_table(per_ae, self.detection_path)
        _write_table(summary, self.detection_summary_path)

    # -- the report ------------------------------------------------------------------------

    def write_report(self, document: str) -> Path:
        """Write ``report.html`` (UTF-8) atomically; returns its path."""
        from advqa.data import atomic_write_bytes

        return atomic_write_bytes(self.report_path, document.encode("utf-8"))
