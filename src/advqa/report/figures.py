"""The report's figures, drawn with :mod:`advqa.plotting` (one house style, no pyplot).

:func:`curves_png` draws one *family* of curves as small multiples: the success rate and
every score against strength, one line per attack. A family shares one strength axis:
ε of one norm (log axis when it spans a decade or more, ticks at the strengths tried),
or a strength that is not a budget — DeepFool's overshoot, C&W's κ — each on a panel
set of its own, never mixed with ε. An axis is logarithmic only when every strength on it
is positive and they span a decade (:func:`log_axis`), so κ = 0 is a point on a linear
axis, never lost off a log one.
"""

from __future__ import annotations

import math

import pandas as pd

from advqa.plotting import figure_png, legend, new_figure, subplots
from advqa.report.markup import (
    metric_label,
    norm_label,
    strength_symbol,
    strength_text,
)

PER_ROW = 5
PANEL = (2.25, 1.8)  # inches per small multiple
LINE_STYLES = {"linf": "-", "l2": "--", "l1": ":", "l0": "-."}
# Distinct strengths up to which the ticks sit exactly at the strengths tried.
TICKED = 8


def families(cells: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(key, title, cells) per strength axis: one per norm for ε, one per other
    strength name (overshoot, κ…) with every norm of it."""
    found = []
    for norm, rows in cells[cells["strength_name"] == "eps"].groupby("norm", sort=True):
        attacks = ", ".join(sorted(rows["attack"].unique()))
        found.append((f"eps-{norm}", f"\u03b5, {norm_label(norm)} norm ({attacks}), "
                      f"{axis_kind(rows)} axis", rows))
    for name, rows in cells[cells["strength_name"] != "eps"].groupby("strength_name",
                                                                     sort=True):
        attacks = ", ".join(sorted(rows["attack"].unique()))
        norms = ", ".join(norm_label(n) for n in sorted(rows["norm"].unique()))
        found.append((str(name), f"{strength_symbol(name)} ({attacks}; {norms}), "
                      f"{axis_kind(rows)} axis", rows))
    return found


def log_axis(strengths) -> bool:
    """A log strength axis when every strength is positive and they span a decade."""
    strengths = [float(value) for value in strengths]
    return (len(strengths) > 1 and all(value > 0 for value in strengths)
            and max(strengths) / min(strengths) >= 10)


def axis_kind(rows: pd.DataFrame) -> str:
    return "log" if log_axis(rows["strength"].dropna().unique()) else "linear"


def attack_colours(attacks) -> dict[str, str]:
    """One colour per attack, the same in every figure of a report."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {attack: palette[index % len(palette)]
            for index, attack in enumerate(sorted(set(attacks)))}


def curves_png(cells: pd.DataFrame, metrics: list[str], *, title: str,
               colours: dict[str, str], rates=(0.5, 0.9),
               peaks: pd.DataFrame | None = None) -> bytes:
    """Small multiples of one family: success rate then each of ``metrics`` (means over
    each cell's AEs) against strength, a line per (attack, norm).

    Parameters
    ----------
    cells : DataFrame
        Rows of :func:`advqa.report.visibility.cell_table` sharing one strength axis.
    metrics : list of str
        Score columns to draw, one panel each.
    title : str
        The figure's title (the strength axis).
    colours : dict
        Attack → colour (:func:`attack_colours`).
    rates : tuple of float
        Success rates marked by dashed lines on the success panel.
    peaks : DataFrame, optional
        ``advqa evaluate aeqa``'s best settings (``attack, norm, best_strength,
        peak_mean_aeqa``): starred on the AEQA panel.
    """
    panels = ["success_rate", *metrics]
    columns = min(PER_ROW, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = new_figure(PANEL[0] * columns, PANEL[1] * rows + 0.5)
    axes = subplots(figure, rows, columns).ravel()
    name = str(cells["strength_name"].iloc[0])
    norms = sorted(cells["norm"].unique())
    strengths = sorted(cells["strength"].dropna().unique())
    for ax, panel in zip(axes, panels, strict=False):
        for (attack, norm), curve in cells.groupby(["attack", "norm"], sort=True):
            curve = curve.sort_values("strength")
            label = attack if len(norms) == 1 else f"{attack} {norm_label(norm)}"
            ax.plot(curve["strength"], curve[panel], marker="o", markersize=3.5, linewidth=1.3,
                    linestyle=LINE_STYLES.get(norm, "-"), color=colours.get(attack),
                    label=label)
            if panel == "aeqa" and peaks is not None:
                peak = peaks[(peaks["attack"] == attack) & (peaks["norm"] == norm)]
                ax.plot(peak["best_strength"], peak["peak_mean_aeqa"], linestyle="none",
                        marker="*", markersize=11, color=colours.get(attack),
                        markeredgecolor="black", markeredgewidth=0.6)
        if panel == "success_rate":
            for rate in rates:
                ax.axhline(rate, color="#777", linewidth=0.8, linestyle=":")
            ax.set_ylim(-0.04, 1.04)
            ax.set_title("success rate (dotted: " + ", ".join(f"{r:.0%}" for r in rates) + ")",
                         fontsize=8)
        else:
            ax.set_title(f"mean {metric_label(panel)}"
                         + (" (\u2605 peak)" if panel == "aeqa" and peaks is not None else ""),
                         fontsize=8)
        strength_axis(ax, strengths, name, norms[0] if len(norms) == 1 else None)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    legend(axes[0], fontsize=7, loc="best")
    figure.suptitle(title, fontsize=9)
    return figure_png(figure)


def strength_axis(ax, strengths: list[float], name: str, norm: str | None) -> None:
    """Log when every strength is positive and they span a decade, else linear; ticks at
    the strengths tried (k/255 for an L∞ ε) when there are few, labelled where they do
    not crowd each other."""
    import numpy as np
    from matplotlib.ticker import NullLocator, ScalarFormatter

    log = log_axis(strengths)
    if log:
        ax.set_xscale("log")
    elif len(strengths) == 1:
        # One strength (C&W at κ = 0): a point in the middle of a linear axis.
        value = strengths[0]
        half = abs(value) * 0.5 if value else 1.0
        ax.set_xlim(value - half, value + half)
    else:
        span = max(strengths) - min(strengths)
        ax.set_xlim(min(strengths) - 0.08 * span, max(strengths) + 0.08 * span)
    if len(strengths) <= TICKED:
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(strengths)
        place = np.log10(strengths) if log else np.asarray(strengths, float)
        gap = (place.max() - place.min()) / 7 if len(place) > 1 else 0.0
        labels, last = [], None
        for value, where in zip(strengths, place, strict=True):
            shown = last is None or where - last >= gap
            labels.append(strength_text(value, name, norm) if shown else "")
            last = where if shown else last
        ax.set_xticklabels(labels, rotation=35, fontsize=6.5)
    ax.set_xlabel(strength_symbol(name), fontsize=7, labelpad=1)
    formatter = ax.yaxis.get_major_formatter()
    if isinstance(formatter, ScalarFormatter):
        formatter.set_useOffset(False)


# --- figures of evaluate's tables, kept for callers ---------------------------------------------


def aeqa_plot(curves: pd.DataFrame, peaks: pd.DataFrame) -> bytes:
    """Figure 7 from ``advqa evaluate aeqa``'s tables: mean AEQA against strength per norm,
    each curve's peak starred (log axis when every strength is positive)."""
    norms = sorted(curves["norm"].unique())
    figure = new_figure(5 * len(norms), 3.6)
    axes = subplots(figure, 1, len(norms))[0]
    for ax, norm in zip(axes, norms, strict=True):
        for attack, curve in curves[curves["norm"] == norm].groupby("attack"):
            curve = curve.sort_values("strength")
            (line,) = ax.plot(curve["strength"], curve["mean_aeqa"], marker="o", label=attack)
            peak = peaks[(peaks["attack"] == attack) & (peaks["norm"] == norm)]
            ax.plot(peak["best_strength"], peak["peak_mean_aeqa"], marker="*", markersize=16,
                    color=line.get_color(), markeredgecolor="black")
        if (curves.loc[curves["norm"] == norm, "strength"] > 0).all():
            ax.set_xscale("log")
        ax.set_title(f"norm {norm}")
        ax.set_xlabel("strength")
        ax.set_ylabel("mean AEQA")
        legend(ax)
    return figure_png(figure)


def mos_scatter(merged: pd.DataFrame, columns: list[str]) -> bytes:
    """Each score against the mean opinion score, one small panel per score."""
    count = len(columns)
    per_row = min(count, 4)
    rows = (count + per_row - 1) // per_row
    figure = new_figure(3.2 * per_row, 3 * rows)
    axes = subplots(figure, rows, per_row).ravel()
    for ax, column in zip(axes, columns, strict=False):
        ax.scatter(merged[column], merged["mos"], s=8, alpha=0.6)
        ax.set_xlabel(metric_label(column))
        ax.set_ylabel("MOS")
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure_png(figure)


__all__ = ["aeqa_plot", "attack_colours", "curves_png", "families", "mos_scatter"]
