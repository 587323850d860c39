"""Score table and leaderboard of the metric-robustness benchmark, and their HTML page.

Follows the comparison methodology of the MSU Metrics Robustness Benchmark
(Antsiferova et al., "Comparing the robustness of modern no-reference image-
and video-quality metrics to adversarial attacks", AAAI 2024): every metric is
scored per attack with :func:`advqa.robustness.scores.robustness_scores`;
universal-perturbation (UAP) attacks are run at several amplitudes and their
scores averaged over the amplitudes; a metric's leaderboard entry averages its
scores over the attacks.

Three choices of ours, stated on the page as well:

- **Step grid.** An iterative attack run at several step sizes enters at its
  strongest step: the one with the largest mean absolute gain (the mean of
  ``s′ − s`` on scaled values oriented so that up is "judged better", i.e. in
  the direction the attack pushes); a tie goes to the smaller step. Every step
  keeps its own row in the score table.
- **Failed attacks.** A (metric, attack) cell whose mean absolute gain is
  negative is *failed*: the attack made the metric judge the images worse, the
  opposite of its aim, which says that the attack failed, not that the metric
  resisted it. Failed cells are shown, marked, and left out of the metric's
  averages and ranks; a metric whose every attack failed is listed without a
  rank. A gain of exactly 0 (the metric did not move) is not a failure: that is
  robustness. For a stepped attack the cell is its best step, so it fails only
  when every step of the grid failed.
- **AMI-FGSM's ball.** Where ``steps × step ≤ 1/NIQE`` on every image the ball
  never binds and AMI-FGSM is MI-FGSM (also without the ε ball when
  ``steps × step > ε``); the row says so.

The input is the benchmark's per-item table, one row per (image, attack,
amplitude, step, metric) with columns ``image, dataset, attack, amplitude, step,
metric, clean, attacked, gain, psnr, ssim, mse, radius, error`` (``step`` and
``radius`` may be missing: tables written before they existed). Datasets are
pooled. The ``gain`` column is not read: the scores rescale ``clean`` and
``attacked`` by the metric's calibration range themselves.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from advqa.plotting import figure_png, new_figure, subplots
from advqa.robustness.amifgsm import ball_never_binds
from advqa.robustness.benchmark import step_label
from advqa.robustness.mifgsm import MIFGSM_FORMS
from advqa.robustness.scores import ROBUSTNESS_VARIANTS, check_r_score, robustness_scores
from advqa.study.store import write_table

ITEM_COLUMNS = ("image", "dataset", "attack", "amplitude", "step", "metric", "clean",
                "attacked", "gain", "psnr", "ssim", "mse", "radius", "error")
# Columns an older per-item table may lack; they are read as missing (NaN).
OPTIONAL_COLUMNS = ("step", "radius")
SCORES = ("abs_gain", "rel_gain", "robustness_score", "wasserstein_score", "energy_score")
# Scores for which a smaller value means a more robust metric (the attack moved it less
# upward); for the robustness score a larger value does.
SMALLER_IS_ROBUST = {"abs_gain": True, "rel_gain": True, "robustness_score": False,
                     "wasserstein_score": True, "energy_score": True}
INTERVAL_COLUMNS = tuple(f"{score}_{side}" for score in SCORES for side in ("low", "high"))
VISIBILITY = ("psnr", "ssim", "mse")
# Label of the row averaging a UAP attack's per-amplitude rows.
MEAN_AMPLITUDE = "mean"
# A cell's status: the attack raised the metric (or left it), lowered it, or has no data.
OK, FAILED, NO_DATA = "ok", "failed", "no data"
MOMENTUM_ATTACKS = ("mifgsm", "amifgsm")
# Free-text columns and the class of their cells.
TEXT_COLUMNS = {"failed": "text", "note": "note"}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1200px;padding:1em 2em;color:#222;line-height:1.4}
h2{border-bottom:1px solid #bbc;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
th,td{border:1px solid #ccd;padding:.2em .5em;text-align:right}
thead th{background:#eef}
tbody tr:nth-child(even){background:#f7f7fb}
.note{color:#555;font-style:italic}
.legend{font-size:.9em;color:#333;max-width:60em}
.legend li{margin:.2em 0}
table.settings th{text-align:left;background:#eef;font-weight:600}
table.settings td{text-align:left}
tr.failed td,td.failed{background:#fde4e4;color:#8a1010}
td.failed b{font-weight:600}
td.best{font-weight:600}
td.text{text-align:left;min-width:12em}
td.note{text-align:left;min-width:36em}
td.num{white-space:nowrap}
.label{text-align:left;white-space:nowrap}
table.scores .small{font-size:.78em}
tr.note-row td{border-top:none;font-size:.9em;color:#444;min-width:0}
tr.note-row td.note{text-align:left}
th.text,th.note{text-align:left}
.small{font-size:.8em;color:#555}
img{max-width:100%;height:auto}
.wide{overflow-x:auto;max-width:100%}
"""


def score_table(items: pd.DataFrame, ranges: Mapping[str, tuple[float, float, bool]], *,
                confidence: float = 0.95, bootstrap: int = 1000, seed: int = 0,
                r_score: str = "paper", settings: Mapping | None = None) -> pd.DataFrame:
    """Robustness scores of every (metric, attack) pair of the per-item table.

    Parameters
    ----------
    items : pandas.DataFrame
        The benchmark's per-item table (columns in :data:`ITEM_COLUMNS`). A row
        whose ``error`` is set (not null, not blank) failed: it is excluded and
        counted in ``n_failed``. ``amplitude`` is NaN except for UAP attacks,
        ``step`` except for the iterative ones.
    ranges : mapping
        ``{metric: (low, high, higher_is_better)}``, the calibration range and
        direction of every metric in ``items``.
    confidence, bootstrap, seed, r_score
        Passed to :func:`advqa.robustness.scores.robustness_scores`.
    settings : mapping, optional
        The run's attack settings (``Settings.describe()``): ``mifgsm_form``
        fills the column of that name, ``steps`` and ``eps`` let the AMI-FGSM
        rows tell whether the 1/NIQE ball ever bound.

    Returns
    -------
    pandas.DataFrame
        One row per (metric, attack[, amplitude][, step]) with ``metric, attack,
        amplitude, step, status, ranked``, every key of ``robustness_scores``,
        ``mean_psnr, mean_ssim, mean_mse`` (means over the finite values of the
        attacked images: an unchanged image has PSNR = ∞), ``n_failed``, ``note``,
        ``r_score_variant`` and ``mifgsm_form`` (MI- and AMI-FGSM rows only).

        ``amplitude`` and ``step`` are string columns, empty (None) where they do
        not apply; ``step`` reads ``"0.5/255"``. A UAP attack has one row per
        amplitude and a row labelled ``"mean"`` that averages them the way the
        benchmark averages its UAP amplitudes: scores and visibility are the
        means of the per-amplitude values, counts are their sums, and the
        interval bounds are NaN, because the amplitudes share their images and
        averaging per-amplitude bounds would not give a confidence interval. An
        iterative attack has one row per step size.

        ``ranked`` is True for the one row per (metric, attack) that enters the
        leaderboard: the attack's only row, a UAP's ``"mean"`` row, or an
        iterative attack's strongest step (largest ``abs_gain``; ties to the
        smaller step). ``status`` is ``"failed"`` where ``abs_gain < 0``,
        ``"no data"`` where it is NaN (no usable pair: ``n = 0``), else ``"ok"``.

    Raises
    ------
    ValueError
        When ``items`` lacks a column, a metric has no range, a successful row
        of a UAP attack has no amplitude, or ``r_score`` is unknown.
    """
    check_r_score(r_score)
    # A unique index: the failed-row mask is aligned on it (concatenated tables repeat it).
    items = with_optional_columns(items).reset_index(drop=True)
    check_items(items, ranges)
    failed = failed_rows(items)
    settings = dict(settings or {})
    rows = []
    for (metric, attack), group in items.groupby(["metric", "attack"], sort=True):
        low, high, higher_is_better = ranges[metric]
        options = {"low": low, "high": high, "higher_is_better": higher_is_better,
                   "confidence": confidence, "bootstrap": bootstrap, "seed": seed,
                   "r_score": r_score}
        labels = {"metric": metric, "attack": attack}
        if group["amplitude"].notna().any():
            rows += uap_rows(group, failed[group.index], labels, options)
        elif group["step"].notna().any():
            rows += step_rows(group, failed[group.index], labels, options, settings)
        else:
            rows.append({**labels, "amplitude": None, "step": None, "ranked": True,
                         **group_scores(group, failed[group.index], options)})
    table = pd.DataFrame(rows, columns=[column for column in score_columns()
                                        if column not in ("status", "r_score_variant",
                                                          "mifgsm_form")])
    table["status"] = [status_of(gain) for gain in table["abs_gain"]]
    table["ranked"] = table["ranked"].astype(bool)
    table["note"] = [note if isinstance(note, str) else "" for note in table["note"]]
    table["r_score_variant"] = r_score
    form = settings.get("mifgsm_form")
    table["mifgsm_form"] = [form if attack in MOMENTUM_ATTACKS else None
                            for attack in table["attack"]]
    return table[score_columns()]


def leaderboard(scores: pd.DataFrame) -> pd.DataFrame:
    """Per metric, every score averaged over the attacks that did not fail, ranked.

    Parameters
    ----------
    scores : pandas.DataFrame
        The output of :func:`score_table`. Only its ``ranked`` rows enter (one
        per attack: a UAP's ``"mean"`` row, an iterative attack's best step).

    Returns
    -------
    pandas.DataFrame
        ``metric, n_attacks`` (attacks averaged), ``failed_attacks`` (how many
        failed) and ``failed`` (``"ifgsm (gain −0.031); …"``), the five scores
        (means over the attacks with status ``"ok"``; failed cells and cells
        without data are left out), ``<score>_rank`` for each (1 = most robust:
        smallest gain, Wasserstein and energy scores, largest robustness score;
        ties share the best rank; metrics without an ``"ok"`` attack get no
        rank) and ``mean_rank``, sorted by ``mean_rank`` (unranked last) then
        metric; then the run's ``r_score_variant``, ``mifgsm_form`` (None without
        MI- or AMI-FGSM) and ``step_sizes`` (the grid, ``"0.25/255, 1/255"``; None
        without an iterative attack), the same on every row.
    """
    entered = scores[scores["ranked"].astype(bool)]
    counted = entered[entered["status"] == OK]
    failed = entered[entered["status"] == FAILED]
    metrics = sorted(scores["metric"].unique())
    board = counted.groupby("metric", sort=True)[list(SCORES)].mean().reindex(metrics)
    board.insert(0, "n_attacks", counted.groupby("metric")["attack"].nunique()
                 .reindex(metrics).fillna(0).astype(int))
    board.insert(1, "failed_attacks", failed.groupby("metric")["attack"].nunique()
                 .reindex(metrics).fillna(0).astype(int))
    board.insert(2, "failed", [failure_list(failed[failed["metric"] == metric])
                               for metric in metrics])
    for score in SCORES:
        board[f"{score}_rank"] = board[score].rank(ascending=SMALLER_IS_ROBUST[score],
                                                   method="min")
    board["mean_rank"] = board[[f"{score}_rank" for score in SCORES]].mean(axis=1)
    board["r_score_variant"] = ", ".join(sorted(scores["r_score_variant"].dropna().unique()))
    forms = sorted(scores["mifgsm_form"].dropna().unique())
    board["mifgsm_form"] = ", ".join(forms) if forms else None
    board["step_sizes"] = ", ".join(ordered_steps(scores)) or None
    board = board.reset_index().sort_values(["mean_rank", "metric"], kind="stable",
                                            na_position="last")
    return board.reset_index(drop=True)


def write_leaderboard(items: pd.DataFrame, ranges: Mapping[str, tuple[float, float, bool]],
                      out_dir: str | Path, *, confidence: float = 0.95, bootstrap: int = 1000,
                      seed: int = 0, r_score: str = "paper",
                      settings: Mapping | None = None) -> dict[str, Path]:
    """Write the score table, the leaderboard and a self-contained HTML page.

    Parameters
    ----------
    items, ranges, confidence, bootstrap, seed, r_score, settings
        As for :func:`score_table`; the page lists ``settings`` (MI-FGSM form,
        step grid, ε, iterations, momentum, UAP amplitudes) beside the
        robustness-score variant.
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
    scores = score_table(items, ranges, confidence=confidence, bootstrap=bootstrap, seed=seed,
                         r_score=r_score, settings=settings)
    board = leaderboard(scores)
    scores_parquet, scores_csv = write_table(scores, out_dir / "scores")
    board_parquet, board_csv = write_table(board, out_dir / "leaderboard")
    page = out_dir / "leaderboard.html"
    page.write_text(leaderboard_html(scores, board, n_failed=int(failed_rows(items).sum()),
                                     confidence=confidence, r_score=r_score,
                                     settings=settings),
                    encoding="utf-8")
    return {"scores_csv": scores_csv, "scores_parquet": scores_parquet,
            "leaderboard_csv": board_csv, "leaderboard_parquet": board_parquet, "html": page}


# --- score table -----------------------------------------------------------------------------


def with_optional_columns(items: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in OPTIONAL_COLUMNS if column not in items.columns]
    return items.assign(**{column: math.nan for column in missing}) if missing else items


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


def status_of(abs_gain: float) -> str:
    """``"failed"`` for a negative mean gain, ``"no data"`` for NaN, else ``"ok"``."""
    if abs_gain is None or not math.isfinite(abs_gain):
        return NO_DATA
    return FAILED if abs_gain < 0 else OK


def uap_rows(group: pd.DataFrame, failed: pd.Series, labels: dict, options: dict) -> list[dict]:
    """One row per amplitude of a UAP attack, then their average labelled ``"mean"``."""
    unplaced = group["amplitude"].isna()
    if (unplaced & ~failed).any():
        raise ValueError(f"UAP attack {labels['attack']!r} on {labels['metric']!r} has "
                         f"{int((unplaced & ~failed).sum())} successful rows without amplitude")
    rows = []
    for amplitude, level in group.groupby("amplitude", sort=True):
        rows.append({**labels, "amplitude": format(float(amplitude), "g"), "step": None,
                     "ranked": False, **group_scores(level, failed[level.index], options)})
    # Failed rows may lack an amplitude; they still count against the attack.
    averaged = average_rows(rows, int(unplaced.sum()))
    return [*rows, {**labels, "amplitude": MEAN_AMPLITUDE, "step": None, "ranked": True,
                    **averaged}]


def step_rows(group: pd.DataFrame, failed: pd.Series, labels: dict, options: dict,
              settings: dict) -> list[dict]:
    """One row per step size of an iterative attack; the strongest is ``ranked``."""
    rows = []
    for step, level in group.groupby("step", sort=True, dropna=False):
        row = {**labels, "amplitude": None, "step": None if pd.isna(step) else step_label(step),
               "ranked": False, **group_scores(level, failed[level.index], options)}
        row["note"] = ball_note(level[~failed[level.index]], step, settings) \
            if labels["attack"] == "amifgsm" else ""
        rows.append(row)
    best = best_step(rows)
    rows[best]["ranked"] = True
    if len(rows) > 1:
        grid = ", ".join(str(row["step"]) for row in rows)
        chosen = f"strongest step of {grid} (largest abs_gain)"
        rows[best]["note"] = "; ".join(part for part in (chosen, rows[best]["note"]) if part)
    return rows


def best_step(rows: list[dict]) -> int:
    """Index of the row with the largest finite ``abs_gain``; ties (and an all-NaN grid)
    go to the first, i.e. the smallest step, as the rows are sorted by step."""
    gains = [row["abs_gain"] for row in rows]
    finite = [index for index, gain in enumerate(gains) if math.isfinite(gain)]
    if not finite:
        return 0
    return max(finite, key=lambda index: (gains[index], -index))


def ball_note(used: pd.DataFrame, step: float, settings: dict) -> str:
    """What AMI-FGSM's 1/NIQE ball did at this step: never bound (then it is MI-FGSM), or
    could bind on some images. Empty when the radii or the iteration count are unknown."""
    radii = used["radius"].to_numpy(float)
    radii = radii[np.isfinite(radii)]
    steps = settings.get("steps")
    if not len(radii) or steps is None or pd.isna(step):
        return ""
    reach = f"{steps} × {step_label(step)}"
    free = ball_never_binds(radii, steps=int(steps), step_size=float(step))
    if not free.all():
        return (f"1/NIQE ball can bind on {int((~free).sum())} of {len(radii)} images "
                f"({reach} > 1/NIQE there)")
    eps = settings.get("eps")
    same = eps is not None and bool(ball_never_binds(float(eps), steps=int(steps),
                                                     step_size=float(step)))
    outcome = ("so AMI-FGSM = MI-FGSM (same images)" if same else
               "so AMI-FGSM = MI-FGSM without its ε ball")
    return (f"1/NIQE ball never binds: {reach} ≤ 1/NIQE = {radii.min():.3g}–{radii.max():.3g} "
            f"on every image, {outcome}")


def failure_list(failed: pd.DataFrame) -> str:
    return "; ".join(f"{row.attack} (gain {row.abs_gain:+.3g})"
                     for row in failed.sort_values("attack").itertuples())


def group_scores(group: pd.DataFrame, failed: pd.Series, options: dict) -> dict:
    """Scores and visibility of one (metric, attack, amplitude, step) group of items."""
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
    return ["metric", "attack", "amplitude", "step", "status", "ranked", "n", "n_dropped",
            *scores, *(f"mean_{name}" for name in VISIBILITY), "n_failed", "note",
            "r_score_variant", "mifgsm_form"]


# --- HTML ------------------------------------------------------------------------------------


def leaderboard_html(scores: pd.DataFrame, board: pd.DataFrame, *, n_failed: int,
                     confidence: float, r_score: str = "paper",
                     settings: Mapping | None = None) -> str:
    """One HTML page without external references: inline style, plots as base64 PNG.

    Tables stay about a page wide (each also scrolls in its own box): the leaderboard
    shows each score beside its rank, the full score table folds each interval under its
    score and leaves the run-wide columns to the settings box. Failed attacks are marked
    in every table and as red crosses in the gain-against-visibility plot, whose points
    are labelled with their attack.
    """
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Metric robustness leaderboard</title>", f"<style>{STYLE}</style></head><body>",
        "<h1>Robustness of quality metrics to adversarial attacks</h1>",
        f'<p class="note">{escape(method_note(n_failed, confidence))}</p>',
        "<h2>Settings</h2>", settings_html(scores, r_score, settings or {}),
        "<h2>Leaderboard</h2>", board_html(board), legend_html(scores),
        "<h2>Absolute gain per metric and attack</h2>", gain_matrix_html(scores, board),
        "<h2>Scores by metric</h2>", image_tag(score_bars(board), "scores by metric"),
        "<h2>Gain against visibility</h2>",
        image_tag(gain_scatter(scores), "absolute gain against mean PSNR, one panel per "
                  "metric, points labelled with their attack, failed attacks as red crosses"),
        '<p class="note">One panel per metric; each point is one attack (a UAP per amplitude, '
        "an iterative attack per step), labelled. Red ✗ below the line: a failed attack "
        "(negative mean gain), not counted in the leaderboard.</p>",
        "<h2>Scores per metric and attack</h2>",
        f'<p class="note">Every row, every step and amplitude; rows marked failed have a '
        f"negative mean gain. ranked = the row that enters the leaderboard. Under each score, "
        f"its {confidence:.0%} interval. The run-wide columns (R-score variant, MI-FGSM "
        "form) are in the settings above and in scores.csv.</p>",
        scores_html(scores),
        "</body></html>",
    ]
    return "\n".join(parts)


def board_html(board: pd.DataFrame) -> str:
    """The leaderboard: each score with its rank beside it, failed attacks marked."""
    header = ["metric", "mean rank", "attacks averaged", "failed attacks",
              *[score.replace("_", " ") + " (rank)" for score in SCORES]]
    lines = []
    for row in board.to_dict("records"):
        failed = int(row["failed_attacks"])
        cells = [f"<th class=\"label\">{escape(str(row['metric']))}</th>",
                 f"<td>{escape(cell_text(row['mean_rank']))}</td>",
                 f"<td>{int(row['n_attacks'])}</td>",
                 (f'<td class="failed text"><b>{failed} failed</b>: '
                  f"{escape(str(row['failed']))}</td>" if failed else
                  '<td class="text">none</td>')]
        for score in SCORES:
            rank = row[f"{score}_rank"]
            rank_text = "" if rank is None or pd.isna(rank) else f" (#{int(rank)})"
            cells.append(f'<td class="num">{escape(cell_text(row[score]))}'
                         f'<span class="small">{rank_text}</span></td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f'<th class="{"label" if name in ("metric", "failed attacks") else ""}">'
                   f"{escape(name)}</th>" for name in header)
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>'
            f'{"".join(lines)}</tbody></table></div>')


def scores_html(scores: pd.DataFrame) -> str:
    """Every row of the score table, about a page wide: intervals under their score, the
    amplitude or step in one column, a row's note on a line of its own under it, failed
    rows marked."""
    header = ["metric", "attack", "amplitude / step", "status", "ranked", "n",
              "dropped / failed", *[score.replace("_", " ") for score in SCORES],
              *[f"mean {name.upper()}" for name in VISIBILITY]]
    lines = []
    for row in scores.to_dict("records"):
        failed = row["status"] == FAILED
        status = f"<b>{FAILED}</b>" if failed else escape(str(row["status"]))
        setting = row["amplitude"] if row["amplitude"] is not None and not pd.isna(
            row["amplitude"]) else row["step"]
        cells = [f'<td class="label">{escape(str(row["metric"]))}</td>',
                 f'<td class="label">{escape(str(row["attack"]))}</td>',
                 f'<td class="num">{escape(cell_text(setting))}</td>',
                 f'<td class="label">{status}</td>',
                 f"<td>{'✓' if row['ranked'] else ''}</td>",
                 f'<td class="num">{escape(cell_text(row["n"]))}</td>',
                 f'<td class="num">{escape(cell_text(row["n_dropped"]))} / '
                 f"{escape(cell_text(row['n_failed']))}</td>"]
        for score in SCORES:
            low, high = row[f"{score}_low"], row[f"{score}_high"]
            interval = ("" if pd.isna(low) or pd.isna(high) else
                        f'<br><span class="small">[{low:.3g}, {high:.3g}]</span>')
            cells.append(f'<td class="num">{escape(cell_text(row[score]))}{interval}</td>')
        cells += [f'<td class="num">{escape(cell_text(row[f"mean_{name}"]))}</td>'
                  for name in VISIBILITY]
        opening = f'<tr class="{FAILED}">' if failed else "<tr>"
        lines.append(opening + "".join(cells) + "</tr>")
        note = row["note"] if isinstance(row["note"], str) else ""
        if note:
            lines.append(f'<tr class="{"note-row " + FAILED if failed else "note-row"}">'
                         f'<td></td><td class="note" colspan="{len(header) - 1}">'
                         f"{escape(note)}</td></tr>")
    head = "".join(f'<th class="{"label" if name in ("metric", "attack", "status") else ""}">'
                   f"{escape(name)}</th>" for name in header)
    return (f'<div class="wide"><table class="scores"><thead><tr>{head}</tr></thead><tbody>'
            f'{"".join(lines)}</tbody></table></div>')


def method_note(n_failed: int, confidence: float) -> str:
    return (f"Scores of the MSU Metrics Robustness Benchmark (Antsiferova et al., AAAI 2024) "
            f"on min–max scaled metric values. Rank 1 is the most robust metric: smallest "
            f"gains, Wasserstein and energy scores, largest robustness score. UAP attacks "
            f"are averaged over their amplitudes. Intervals: {confidence:.0%}. Items whose "
            f"attack or scoring raised an error, excluded: {n_failed}.")


def settings_html(scores: pd.DataFrame, r_score: str, settings: Mapping) -> str:
    """The settings that change the numbers, as a two-column table."""
    rows = [("Robustness score", f"{r_score}: mean log10({ROBUSTNESS_VARIANTS[r_score]} / "
             f"(|s′ − s| + 1e-6)), s clean and s′ attacked, scaled — "
             + ("the benchmark's text" if r_score == "paper" else "the benchmark's code"))]
    form = settings.get("mifgsm_form")
    if form:
        rows.append(("MI-FGSM form (MI- and AMI-FGSM)", f"{form}: {MIFGSM_FORMS[form]}"))
    steps = settings.get("step_sizes")
    if steps:
        grid = ", ".join(step_label(step) for step in steps)
        rows.append(("Step sizes (I-, MI-, AMI-FGSM, Korhonen)",
                     grid + ("; each attack ranked at its strongest step (largest mean "
                             "absolute gain)" if len(steps) > 1 else "")))
    for key, label, text in (("eps", "ε (L∞)", lambda value: f"{value * 255:.4g}/255"),
                             ("steps", "Iterations", str), ("momentum", "Momentum ν", str),
                             ("amplitudes", "UAP amplitudes",
                              lambda value: ", ".join(f"{level:g}" for level in value))):
        if key in settings:
            rows.append((label, text(settings[key])))
    ami = ami_summary(scores)
    if ami:
        rows.append(("AMI-FGSM", ami))
    if "pooling" in settings:  # a video run (advqa.robustness.video): items are clips
        temporal = settings.get("temporal", "frame")
        rows.append(("Video", "each item is a clip: its frame scores pooled by "
                     f"{settings['pooling']} (clips.parquet; a row per frame in items.parquet); "
                     + ("one perturbation shared by all of a clip's frames"
                        if temporal == "clip" else "every frame attacked on its own, as the "
                        "benchmark does; UAPs added to every frame")))
    body = "".join(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>"
                   for label, value in rows)
    return f'<div class="wide"><table class="settings"><tbody>{body}</tbody></table></div>'


def ami_summary(scores: pd.DataFrame) -> str:
    """One line on AMI-FGSM's ball over all its rows: at which steps it never bound."""
    notes = scores["note"].fillna("").astype(str)  # a CSV round trip reads "" as NaN
    rows = scores[(scores["attack"] == "amifgsm") & notes.str.contains("1/NIQE")]
    # A step is "never binds" only if it never binds for any metric (their starts, and so
    # their radii, differ: a full-reference metric starts from the JPEG copy).
    binds = ~rows["note"].str.contains("never binds")
    bound_steps = set(rows.loc[binds, "step"])
    free = rows[~rows["step"].isin(bound_steps)]
    bound = rows[rows["step"].isin(bound_steps)]
    parts = []
    if len(free):
        same = free["note"].str.contains("same images").all()
        parts.append(f"the 1/NIQE ball never binds at step {', '.join(ordered_steps(free))} "
                     f"(iterations × step ≤ 1/NIQE on every image), so AMI-FGSM "
                     + ("gives MI-FGSM's images there" if same else
                        "is MI-FGSM without its ε ball there"))
    if len(bound):
        parts.append(f"it can bind at step {', '.join(ordered_steps(bound))} on some images")
    return "; ".join(parts)


def ordered_steps(rows: pd.DataFrame) -> list[str]:
    """The distinct step labels of ``rows``, smallest step first."""
    labels = {str(label) for label in rows["step"].dropna()}
    return sorted(labels, key=lambda label: float(label.split("/")[0]))


def legend_html(scores: pd.DataFrame) -> str:
    entered = scores[scores["ranked"].astype(bool)]
    failures = int((entered["status"] == FAILED).sum())
    items = [
        "<b>gain</b> is measured on values min–max scaled by the metric's calibration range "
        "and oriented so that positive = judged better (for NIQE, BRISQUE, GMSD… a lower "
        "value): the direction every attack pushes.",
        f"<b>failed</b> ({failures} cell{'s' if failures != 1 else ''} here): the attack's "
        "mean gain is negative, it made the metric judge the images <i>worse</i>. That is a "
        "failure of the attack, not robustness of the metric, so a failed cell is shown but "
        "left out of the metric's averages and ranks (<i>failed_attacks</i>, <i>failed</i>); "
        "a metric whose every attack failed gets no rank. A gain of exactly 0 is not a "
        "failure. n_attacks is the number of attacks averaged, which can differ between "
        "metrics.",
        "<b>step grid</b>: an iterative attack enters at its strongest step, the one with the "
        "largest mean gain (a tie goes to the smaller step); it fails only if every step "
        "failed. Each step's row is in the table at the bottom.",
        "<b>ranks</b>: 1 = most robust (smallest gains, Wasserstein and energy scores, "
        "largest robustness score); ties share the best rank; mean_rank averages the five.",
    ]
    body = "".join(f"<li>{item}</li>" for item in items)
    return f'<ul class="legend">{body}</ul>'


def gain_matrix_html(scores: pd.DataFrame, board: pd.DataFrame) -> str:
    """Metric × attack absolute gain of the ranked cells, failed cells marked."""
    entered = scores[scores["ranked"].astype(bool)]
    attacks = sorted(entered["attack"].unique())
    header = "<th>metric</th>" + "".join(f"<th>{escape(attack)}</th>" for attack in attacks)
    lines = []
    for metric in board["metric"]:
        cells = [f"<th>{escape(str(metric))}</th>"]
        for attack in attacks:
            found = entered[(entered["metric"] == metric) & (entered["attack"] == attack)]
            cells.append(gain_cell(found.iloc[0] if len(found) else None))
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="wide"><table><thead><tr>{header}</tr></thead><tbody>'
            f'{"".join(lines)}</tbody></table></div>'
            '<p class="note">Mean absolute gain of each attack (UAPs: mean over amplitudes; '
            "iterative attacks: at the step shown). Red: failed, not counted in the "
            "leaderboard. †: AMI-FGSM's 1/NIQE ball never bound.</p>")


def gain_cell(row) -> str:
    if row is None:
        return "<td>–</td>"
    if row["status"] == NO_DATA:
        return '<td class="small">no data</td>'
    step = f'<br><span class="small">step {escape(str(row["step"]))}</span>' \
        if row["step"] is not None and not pd.isna(row["step"]) else ""
    dagger = "†" if "never binds" in str(row["note"]) else ""
    if row["status"] == FAILED:
        return (f'<td class="failed"><b>failed</b> (gain {row["abs_gain"]:+.3g}){dagger}'
                f"{step}</td>")
    return f"<td>{row['abs_gain']:+.3g}{dagger}{step}</td>"


def table_html(frame: pd.DataFrame, *, row_classes: list[str] | None = None) -> str:
    # Long snake_case headers may break after an underscore, so that columns stay narrow.
    header = "".join((f'<th class="{TEXT_COLUMNS[column]}">' if column in TEXT_COLUMNS
                      else "<th>") + escape(str(column)).replace("_", "_<wbr>") + "</th>"
                     for column in frame.columns)
    classes = row_classes or [""] * len(frame)
    # Free-text columns read left-aligned and wide enough not to break every word.
    opening = [f'<td class="{TEXT_COLUMNS[column]}">' if column in TEXT_COLUMNS else "<td>"
               for column in frame.columns]
    body = "".join((f'<tr class="{name}">' if name else "<tr>")
                   + "".join(f"{tag}{escape(cell_text(value))}</td>"
                             for tag, value in zip(opening, row, strict=True))
                   + "</tr>" for row, name in zip(frame.itertuples(index=False), classes,
                                                  strict=True))
    # A wide table scrolls in its own box; the page itself never scrolls sideways.
    return (f'<div class="wide"><table><thead><tr>{header}</tr></thead><tbody>{body}'
            "</tbody></table></div>")


def cell_text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
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
    """The PNG of :func:`gain_scatter_figure`."""
    return figure_png(gain_scatter_figure(scores))


def gain_scatter_figure(scores: pd.DataFrame):
    """Absolute gain against the attacked images' mean PSNR: one panel per metric, each
    point labelled with its attack (and amplitude or step), failed attacks (negative gain)
    as red crosses over a shaded band below 0. Labels are moved up or down a line where
    they would overlap, with a thin leader to their point."""
    # Per-amplitude rows rather than the averaged ones: each is one visibility level.
    points = scores[scores["amplitude"] != MEAN_AMPLITUDE]
    metrics = sorted(points["metric"].astype(str).unique())
    columns = min(4, max(len(metrics), 1))
    rows = max(1, math.ceil(len(metrics) / columns))
    figure = new_figure(3.0 * columns, 2.6 * rows + 0.4)
    axes = subplots(figure, rows, columns, sharex=True, sharey=True).ravel()
    gains = points["abs_gain"].to_numpy(float)
    low = min(0.0, float(np.nanmin(gains))) if np.isfinite(gains).any() else 0.0
    labelled = []
    for ax, metric in zip(axes, metrics, strict=False):
        marks = []
        for row in points[points["metric"].astype(str) == metric].to_dict("records"):
            gain, psnr = row["abs_gain"], row["mean_psnr"]
            if not (np.isfinite(gain) and np.isfinite(psnr)):
                continue
            failed = row["status"] == FAILED if "status" in row else gain < 0
            ax.plot(psnr, gain, linestyle="none", marker="x" if failed else "o",
                    markersize=6 if failed else 4.5, color="#c00000" if failed else "#1f5fa8",
                    markeredgewidth=1.6 if failed else 1.0)
            marks.append((psnr, gain, point_label(row) + (" ✗" if failed else ""), failed))
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axhspan(min(low * 1.15, -0.02), 0, color="#fde4e4", zorder=0)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
        labelled.append((ax, marks))
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    for ax, marks in labelled:  # after every panel is drawn: the shared limits are final
        place_labels(ax, marks)
    figure.supxlabel("mean PSNR of attacked images (dB; lower = more visible)", fontsize=8)
    figure.supylabel("absolute gain (red band: below 0, attack failed)", fontsize=8)
    return figure


def place_labels(ax, marks: list[tuple[float, float, str, bool]]) -> None:
    """Annotate each (x, y, text, failed) point, moving a label by whole lines where it
    would overlap one already placed (a greedy pass, top to bottom)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    box = ax.get_position()
    width = box.width * ax.figure.get_figwidth() * 72  # points
    height = box.height * ax.figure.get_figheight() * 72
    line, char = 7.0, 3.2  # points per text line and per character at font size 6
    placed: list[tuple[float, float, float, float]] = []
    for x, y, text, failed in sorted(marks, key=lambda mark: -mark[1]):
        px = (x - x0) / (x1 - x0) * width if x1 > x0 else 0.0
        py = (y - y0) / (y1 - y0) * height if y1 > y0 else 0.0
        span = char * len(text)
        left = px + 4 + span > width  # a label past the right edge goes on the left
        start = px - 4 - span if left else px + 4
        shift = 0
        for shift in (0, -1, 1, -2, 2, -3, 3, -4, 4):
            candidate = (start, start + span, py + 1 + shift * line,
                         py + 1 + (shift + 1) * line)
            if not any(candidate[0] < b[1] and b[0] < candidate[1] and candidate[2] < b[3]
                       and b[2] < candidate[3] for b in placed):
                break
        placed.append(candidate)
        ax.annotate(text, (x, y), xytext=(-4 if left else 4, 1 + shift * line),
                    textcoords="offset points", ha="right" if left else "left",
                    fontsize=6, color="#8a1010" if failed else "#222", va="bottom",
                    arrowprops={"arrowstyle": "-", "linewidth": 0.4, "color": "#999"}
                    if shift else None)


def point_label(row: dict) -> str:
    """A point's attack, with its amplitude or step when it has one."""
    label = str(row.get("attack", ""))
    for key in ("amplitude", "step"):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            label += f" {value}"
    return label


def image_tag(png: bytes, alt: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img src="{uri}" alt="{escape(alt)}">'
