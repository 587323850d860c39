"""Scatter plots of metric scores against MOS, with the fitted logistic curve."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from advqa.evaluate.correlation import MIN_ITEMS, fitted_curve
from advqa.plotting import LEGEND_FONT_SIZE, new_figure, save_figure, subplots


def _draw_metric(axes, frame: pd.DataFrame, metric: str, *, mos: str, colour_by: str | None):
    """One panel: points coloured by `colour_by`, and the fitted curve if it can be fitted."""
    usable = frame[np.isfinite(frame[metric].astype(float)) & np.isfinite(frame[mos])]
    groups = usable.groupby(colour_by, sort=True) if colour_by else [("all", usable)]
    for name, part in groups:
        axes.scatter(part[metric], part[mos], s=12, alpha=0.7, label=str(name))
    if len(usable) >= MIN_ITEMS and usable[metric].nunique() > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the table already warned about these data
            curve = fitted_curve(usable[metric], usable[mos])
        grid = np.linspace(usable[metric].min(), usable[metric].max(), 200)
        axes.plot(grid, curve(grid), color="black", linewidth=1.2, label=f"{curve.kind} fit")
    axes.set_xlabel(metric)
    axes.set_ylabel(mos.upper() if mos == "mos" else mos)
    axes.set_title(metric)


def scatter_plots(frame: pd.DataFrame, metrics: Sequence[str], path: str | Path, *,
                  mos: str = "mos", colour_by: str | None = "attack",
                  columns: int = 4) -> Path:
    """Write a grid of metric-vs-MOS scatter plots to one image file.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per item with the metric columns and the MOS column.
    metrics : sequence of str
        Metric columns, one panel each.
    path : str or Path
        Output file, written atomically; ``.svg`` writes SVG, anything else PNG.
    mos : str, default "mos"
        Column of mean opinion scores.
    colour_by : str or None, default "attack"
        Column whose values colour the points (ignored if absent).
    columns : int, default 4
        Panels per row.

    Returns
    -------
    Path
        `path`.
    """
    if colour_by not in frame.columns:
        colour_by = None
    columns = max(1, min(columns, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / columns))
    figure = new_figure(3.6 * columns, 3.2 * rows)
    grid = subplots(figure, rows, columns)
    for axes, metric in zip(grid.ravel(), metrics, strict=False):
        _draw_metric(axes, frame, metric, mos=mos, colour_by=colour_by)
    for axes in grid.ravel()[len(metrics):]:
        axes.set_visible(False)
    handles, labels = grid.ravel()[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)),
                      fontsize=LEGEND_FONT_SIZE)
    return save_figure(figure, path)
