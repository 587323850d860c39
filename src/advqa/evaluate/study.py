"""Agreement with opinion scores on a study: the table ``advqa evaluate correlations``
prints and writes (``correlations.{parquet,csv}`` and the scatter plots)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from advqa.study.layout import StudyDir


def study_frame(study: str | Path, sources: list[str] | None = None):
    """The scored AEs with a MOS from the chosen source(s), and the rows per source.

    Raises FileNotFoundError without scores, MissingMosError without MOS and
    MosSourceError for several sources and none chosen.
    """
    from advqa.evaluate.mos import select_mos_source, with_mos

    scored = StudyDir(study).scored_manifest(required=True)
    return select_mos_source(with_mos(scored, study), sources)


def chosen_metrics(frame: pd.DataFrame, requested: list[str] | None) -> list[str]:
    """The requested metric columns, or every registry metric scored in ``frame``."""
    from advqa.quality import list_metrics

    if requested is None:
        return [name for name in list_metrics()
                if name in frame.columns and frame[name].notna().any()]
    unknown = [name for name in requested if name not in frame.columns]
    if unknown:
        raise ValueError(f"not scored in this study: {', '.join(unknown)}")
    return requested


@dataclass
class StudyCorrelations:
    """What :func:`study_correlations` computed and wrote."""

    table: pd.DataFrame
    rated: int
    sources: dict[str, int]
    with_std: int
    paths: list[Path] = field(default_factory=list)


def study_correlations(study: str | Path, *, metrics: list[str] | None = None,
                       group: str | None = "attack", mos_source: list[str] | None = None,
                       bootstrap: int = 0, seed: int = 0, plot: bool = True,
                       progress: bool = False) -> StudyCorrelations:
    """SROCC, KROCC, PLCC, RMSE (and the outlier ratio where items have a rating std) of
    every metric against the MOS, per ``group`` and pooled; written into the study.
    ``progress`` shows a bar over the (metric, group) cells once they take a while."""
    from advqa.evaluate.correlation import correlation_table

    rated, sources = study_frame(study, mos_source)
    metrics = chosen_metrics(rated, metrics)
    if not metrics:
        raise ValueError(f"no metric scores in {study}: run `advqa score --study {study}`")
    if group is not None and group not in rated.columns:
        raise ValueError(f"no column {group!r} to group by")
    with_std = int(rated["mos_std"].notna().sum()) if "mos_std" in rated else 0
    # The std only feeds the outlier ratio; items rated once (no std) count everywhere else.
    mos_std = "mos_std" if with_std else None
    criteria = ("srocc", "krocc", "plcc", "rmse", *(("outlier_ratio",) if mos_std else ()))
    table = correlation_table(rated, metrics, group=group, criteria=criteria,
                              mos_std=mos_std, bootstrap=bootstrap, seed=seed,
                              progress=progress)
    layout = StudyDir(study)
    paths = list(layout.write_correlations(table.reset_index()))
    if plot:
        from advqa.evaluate.plots import scatter_plots

        paths.append(scatter_plots(rated, metrics, layout.scatter_path))
    return StudyCorrelations(table, len(rated), dict(sources), with_std, paths)
