"""Score table and leaderboard of the metric-robustness benchmark, and their HTML page.

Follows the comparison methodology of the MSU Metrics Robustness Benchmark
(Antsiferova et al., "Comparing the robustness of modern no-reference image-
and video-quality metrics to adversarial attacks", AAAI 2024): every metric is
scored per attack with :func:`advqa.robustness.scores.robustness_scores`;
universal-perturbation (UAP) attacks are run at several amplitudes and their
scores averaged over the amplitudes; a metric's leaderboard entry averages its
scores over the attacks.

The input is the benchmark's per-item table, one row per (image, attack,
amplitude, metric) with columns ``image, dataset, attack, amplitude, metric,
clean, attacked, gain, psnr, ssim, mse, error``. Datasets are pooled. The
``gain`` column is not read: the scores rescale ``clean`` and ``attacked`` by
the metric's calibration range themselves.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from advqa.plotting import figure_png, legend, new_figure, subplots
from advqa.robustness.scores import robustness_scores
from advqa.study.store import write_table

ITEM_COLUMNS = ("image", "dataset", "attack", "amplitude", "metric", "clean", "attacked",
                "gain", "psnr", "ssim", "mse", "error")
SCORES = ("abs_gain", "rel_gain", "robustness_score", "wasserstein_score", "energy_score")
# Scores for which a smaller value means a more robust metric (the attack moved it less
# upward); for the robustness score a larger value does.
SMALLER_IS_ROBUST = {"abs_gain": True, "rel_gain": True, "robustness_score": False,
                     "wasserstein_score": True, "energy_score": True}
INTERVAL_COLUMNS = tuple(f"{score}_{side}" for score in SCORES for side in ("low", "high"))
VISIBILITY = ("psnr", "ssim", "mse")
# Label of the row averaging a UAP attack's per-amplitude rows.
MEAN_AMPLITUDE = "mean"

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1200px;padding:1em 2em;color:#222;line-height:1.4}
h2{border-bottom:1px solid #bbc;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
th,td{border:1px solid #ccd;padding:.2em .5em;text-align:right}
thead th{background:#eef}
tbody tr:nth-child(even){background:#f7f7fb}
.note{color:#555;font-style:italic}
img{max-width:100%;height:auto}
.wide{overflow-x:auto;max-width:100%}
"""


def score_table(items: pd.DataFrame, ranges: Mapping[str, tuple[float, float, bool]], *,
                confidence: float = 0.95, bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Robustness scores of every (metric, attack) pair of the per-item table.

    Parameters
    ----------
    items : pandas.DataFrame
        The benchmark's per-item table (columns in :data:`ITEM_COLUMNS`). A row
        whose ``error`` is set (not null, not blank) failed: it is excluded and
        counted in ``n_failed``. ``amplitude`` is NaN except for UAP attacks.
    ranges : mapping
        ``{metric: (low, high, higher_is_better)}``, the calibration range and
        direction of every metric in ``items``.
    confidence, bootstrap, seed
        Passed to :func:`advqa.robustness.scores.robustness_scores`.

    Returns
    -------
    pandas.DataFrame
        One row per (metric, attack) with ``metric, attack, amplitude``, every
        key of ``robustness_scores``, ``mean_psnr, mean_ssim, mean_mse`` (means
        over the finite values of the attacked images: an unchanged image has
        PSNR = ∞) and ``n_failed``. ``amplitude`` is a string column: empty
        (None) for a non-UAP attack. A UAP attack (one with a non-NaN
        amplitude) has one row per amplitude, labelled by the amplitude, and a
        row labelled ``"mean"`` that averages the per-amplitude rows the way
        the benchmark averages its UAP amplitudes: scores and visibility are
        the means of the per-amplitude values, counts are their sums, and the
        interval bounds are NaN, because the amplitudes share their images and
        averaging per-amplitude bounds would not give a confidence interval.
        A (metric, attack, amplitude) group with no usable pair has NaN scores
        and ``n = 0``.

    Raises
    ------
    ValueError
        When ``items`` lacks a column, a metric has no range, or a successful
        row of a UAP attack has no amplitude.
    """
    check_items(items, ranges)
    failed = failed_rows(items)
    rows = []
    for (metric, attack), group in items.groupby(["metric", "attack"], sort=True):
        low, high, higher_is_better = ranges[metric]
        options = {"low": low, "high": high, "higher_is_better": higher_is_better,
                   "confidence": confidence, "bootstrap": bootstrap, "seed": seed}
        labels = {"metric": metric, "attack": attack}
        if group["amplitude"].notna().any():
            rows += uap_rows(group, failed[group.index], labels, options)
        else:
            rows.append({**labels, "amplitude": None,
                         **group_scores(group, failed[group.index], options)})
    return pd.DataFrame(rows, columns=score_columns())


def leaderboard(scores: pd.DataFrame) -> pd.DataFrame:
    """Per metric, every score averaged over the attacks, ranked; most robust first.

    Parameters
    ----------
    scores : pandas.DataFrame
        The output of :func:`score_table`. A UAP attack enters through its
        ``"mean"`` row only, so that every attack counts once.

    Returns
    -------
    pandas.DataFrame
        ``metric, n_attacks``, the five scores (means over attacks, skipping
        attacks without a usable pair), ``<score>_rank`` for each (1 = most
        robust: smallest gain, Wasserstein and energy scores, largest
        robustness score; ties share the best rank) and ``mean_rank``, sorted
        by ``mean_rank`` then metric.
    """
    per_attack = scores[scores["amplitude"].isna() | (scores["amplitude"] == MEAN_AMPLITUDE)]
    board = per_attack.groupby("metric", sort=True)[list(SCORES)].mean()
    board.insert(0, "n_attacks", per_attack.groupby("metric")["attack"].nunique())
    for score in SCORES:
        board[f"{score}_rank"] = board[score].rank(ascending=SMALLER_IS_ROBUST[score],
                                                   method="min")
    board["mean_rank"] = board[[f"{score}_rank" for score in SCORES]].mean(axis=1)
    board = board.reset_index().sort_values(["mean_rank", "metric"], kind="stable")
    return board.reset_index(drop=True)


def write_leaderboard(items: pd.DataFrame, ranges: Mapping[str, tuple[float, float, bool]],
                      out_dir: str | Path, *, confidence: float = 0.95, bootstrap: int = 1000,
                      seed: int = 0) -> dict[str, Path]:
    """Write the score table, the leaderboard and a self-contained HTML page.

    Parameters
    ----------
    items, ranges, confidence, bootstrap, seed
        As for :func:`score_table`.
    out_dir : str or Path
        Created if missing.

    Returns
    -------
    dict of Path
        ``scores_csv, scores_parquet, leaderboard_csv, leaderboard_parquet,
        html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = score_table(items, ranges, confidence=confidence, bootstrap=bootstrap, seed=seed)
    board = leaderboard(scores)
    scores_parquet, scores_csv = write_table(scores, out_dir / "scores")
    board_parquet, board_csv = write_table(board, out_dir / "leaderboard")
    page = out_dir / "leaderboard.html"
    page.write_text(leaderboard_html(scores, board, n_failed=int(failed_rows(items).sum()),
                                     confidence=confidence), encoding="utf-8")
    return {"scores_csv": scores_csv, "scores_parquet": scores_parquet,
            "leaderboard_csv": board_csv, "leaderboard_parquet": board_parquet, "html": page}


# --- score table -----------------------------------------------------------------------------


def check_items(items: pd.DataFrame, ranges: Mapping) -> None:
    missing = [column for column in ITEM_COLUMNS if column not in items.columns]
    if missing:
        raise ValueError(f"per-item table lacks columns {missing}")
    unranged = sorted(set(items["metric"]) - set(ranges))
    if unranged:
        raise ValueError(f"no calibration range for metrics {unranged}")


def failed_rows(items: pd.DataFrame) -> pd.Series:
    """Rows whose ``error`` is set; a blank string (CSV round trip of "no error") is not."""
    error = items["error"]
    return error.notna() & (error.astype(str).str.strip() != "")


def uap_rows(group: pd.DataFrame, failed: pd.Series, labels: dict, options: dict) -> list[dict]:
    """One row per amplitude of a UAP attack, then their average labelled ``"mean"``."""
    unplaced = group["amplitude"].isna()
    if (unplaced & ~failed).any():
        raise ValueError(f"UAP attack {labels['attack']!r} on {labels['metric']!r} has "
                         f"{int((unplaced & ~failed).sum())} successful rows without amplitude")
    rows = []
    for amplitude, level in group.groupby("amplitude", sort=True):
        rows.append({**labels, "amplitude": format(float(amplitude), "g"),
                     **group_scores(level, failed[level.index], options)})
    # Failed rows may lack an amplitude; they still count against the attack.
    averaged = average_rows(rows, int(unplaced.sum()))
    return [*rows, {**labels, "amplitude": MEAN_AMPLITUDE, **averaged}]


def group_scores(group: pd.DataFrame, failed: pd.Series, options: dict) -> dict:
    """Scores and visibility of one (metric, attack, amplitude) group of items."""
    used = group[~failed]
    visibility = {f"mean_{name}": finite_mean(used[name]) for name in VISIBILITY}
    try:
        scores = robustness_scores(used["clean"].to_numpy(float), used["attacked"].to_numpy(float),
                                   **options)
    except ValueError as error:
        if "no pair" not in str(error):
            raise
        # Every pair failed or is non-finite: keep the row so the table shows the gap.
        scores = {"n": 0, "n_dropped": len(used),
                  **{name: math.nan for name in (*SCORES, *INTERVAL_COLUMNS)}}
    return {**scores, **visibility, "n_failed": int(failed.sum())}


def average_rows(rows: list[dict], unplaced_failures: int) -> dict:
    """The benchmark's average over amplitudes: means of scores, sums of counts."""
    frame = pd.DataFrame(rows)
    averaged = {name: float(frame[name].mean()) for name in
                (*SCORES, *(f"mean_{name}" for name in VISIBILITY))}
    averaged.update({name: math.nan for name in INTERVAL_COLUMNS})
    averaged.update({name: int(frame[name].sum()) for name in ("n", "n_dropped")})
    averaged["n_failed"] = int(frame["n_failed"].sum()) + unplaced_failures
    return averaged


def finite_mean(values: pd.Series) -> float:
    values = values.to_numpy(float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


def score_columns() -> list[str]:
    scores = [column for score in SCORES for column in (score, f"{score}_low", f"{score}_high")]
    return ["metric", "attack", "amplitude", "n", "n_dropped", *scores,
            *(f"mean_{name}" for name in VISIBILITY), "n_failed"]


# --- HTML ------------------------------------------------------------------------------------


def leaderboard_html(scores: pd.DataFrame, board: pd.DataFrame, *, n_failed: int,
                     confidence: float) -> str:
    """One HTML page without external references: inline style, plots as base64 PNG."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>Metric robustness leaderboard</title>", f"<style>{STYLE}</style></head><body>",
        "<h1>Robustness of quality metrics to adversarial attacks</h1>",
        f'<p class="note">{escape(method_note(n_failed, confidence))}</p>',
        "<h2>Leaderboard</h2>", table_html(board),
        "<h2>Scores by metric</h2>", image_tag(score_bars(board), "scores by metric"),
        "<h2>Gain against visibility</h2>",
        image_tag(gain_scatter(scores), "absolute gain against mean PSNR"),
        "<h2>Scores per metric and attack</h2>", table_html(scores),
        "</body></html>",
    ]
    return "\n".join(parts)


def method_note(n_failed: int, confidence: float) -> str:
    return (f"Scores of the MSU Metrics Robustness Benchmark (Antsiferova et al., AAAI 2024) "
            f"on min–max scaled metric values. Rank 1 is the most robust metric: smallest "
            f"gains, Wasserstein and energy scores, largest robustness score. UAP attacks "
            f"are averaged over their amplitudes. Intervals: {confidence:.0%}. "
            f"Failed items excluded: {n_failed}.")


def table_html(frame: pd.DataFrame) -> str:
    header = "".join(f"<th>{escape(str(column))}</th>" for column in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell_text(value))}</td>" for value in row)
                   + "</tr>" for row in frame.itertuples(index=False))
    # A wide table scrolls in its own box; the page itself never scrolls sideways.
    return (f'<div class="wide"><table><thead><tr>{header}</tr></thead><tbody>{body}'
            "</tbody></table></div>")


def cell_text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


def score_bars(board: pd.DataFrame) -> bytes:
    figure = new_figure(3.2 * len(SCORES), 3.4 + 0.08 * len(board))
    for axes, score in zip(subplots(figure, 1, len(SCORES))[0], SCORES, strict=True):
        axes.bar(board["metric"].astype(str), board[score].to_numpy(float))
        axes.set_title(score)
        axes.axhline(0, color="black", linewidth=0.6)
        axes.tick_params(axis="x", labelrotation=60, labelsize="small")
    return figure_png(figure)


def gain_scatter(scores: pd.DataFrame) -> bytes:
    # Per-amplitude rows rather than the averaged ones: each is one visibility level.
    points = scores[scores["amplitude"] != MEAN_AMPLITUDE]
    figure = new_figure(6.4, 4.2)
    axes = subplots(figure)[0][0]
    for metric, rows in points.groupby("metric", sort=True):
        axes.scatter(rows["mean_psnr"], rows["abs_gain"], label=str(metric), s=18)
    axes.set_xlabel("mean PSNR of attacked images (dB; lower = more visible)")
    axes.set_ylabel("absolute gain")
    legend(axes)
    return figure_png(figure)


def image_tag(png: bytes, alt: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img src="{uri}" alt="{escape(alt)}">'
