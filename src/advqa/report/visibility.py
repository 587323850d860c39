"""Which attack is least visible at equal success: the numbers of the report's first section.

Everything here is a grouping of what the study holds, nothing is scored:

- :func:`cell_table` — one row per grid cell (attack, norm, strength): images tried,
  correctly classified and fooled, the success rate (the build's success table), the
  number of kept AEs that fooled the model and the mean of every score column over them
  (the scored manifest).
- :func:`equal_success` — per (attack, norm) and target success rate: where its
  success-against-strength curve first reaches the rate, and the mean scores of its AEs
  there. The strength is interpolated linearly between the last strength tried below the
  rate and the first at or above it (``bound = "≈"``); when the first strength tried
  already reaches it, that strength is an upper bound (``bound = "≤"``), the curve below
  it was never measured. The scores are the means at the first tried strength at or above
  the rate (``scored_strength``): AEs exist only at strengths that were run, so they are
  taken there rather than interpolated. An attack that never reaches the rate is a row
  with ``reached = False``, its highest rate and strongest strength, never dropped.
  Rows are sorted least visible first: by mean AdvDSS, descending (higher AdvDSS = closer
  to the reference), then the rows that did not reach the rate.
- :func:`minimal_visibility` — per (attack, norm, budget), over the AEs of a
  minimal-strength search (``advqa build --search minimal``, rows ``search =
  "minimal"``): the distribution of the per-image least visible AE's score (AdvDSS by
  default, ``--metric`` otherwise), its median with a bootstrap 95 % interval and n. The
  per-image form of the AEQA paper's "best setting" (Figure 7). Those rows are no grid
  cell: :func:`cell_table` and :func:`derive_success` leave them out.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from advqa.study.build import grid_rows, minimal_search_rows

CELL = ["attack", "norm", "strength"]
PAIR = ["attack", "norm"]
RATES = (0.5, 0.9)
# The scores of the ranking, in this order; the first one scored sorts it.
VISIBILITY_METRICS = ("advdss", "aeqa", "psnr", "ssim")
SORT_ORDER = ("advdss", "ssim", "psnr")
# Manifest columns that are not quality scores.
MANIFEST_COLUMNS = {
    "id", "reference_path", "adversarial_path", "image", "attack", "norm", "strength_name",
    "strength", "parameters", "label", "clean_prediction", "adversarial_prediction",
    "clean_class", "adversarial_class", "clean_correct", "success", "steps",
    "search", "searched", "searched_value", "bisection_calls",
}
DISTANCES = ("l0", "l1", "l2", "linf")
# Two strengths closer than this are the same grid value (float round trips).
SAME = 1e-9


def metric_columns(scored: pd.DataFrame) -> list[str]:
    """Score columns: numeric columns that are not manifest bookkeeping, distances last."""
    columns = [c for c in scored.columns if c not in MANIFEST_COLUMNS and c not in DISTANCES
               and pd.api.types.is_numeric_dtype(scored[c])
               and not pd.api.types.is_bool_dtype(scored[c])]
    return columns + [c for c in DISTANCES if c in scored.columns]


def fooled_aes(table: pd.DataFrame) -> pd.DataFrame:
    """The AEs that fooled the model (a study built with ``--keep-failed`` also holds the
    others, flagged ``success = False``)."""
    if "success" not in table.columns:
        return table
    return table[table["success"].fillna(False).astype(bool)]


def bootstrap_median(values: np.ndarray, *, draws: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """The median of ``values`` and a percentile-bootstrap ``level`` interval for it."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan, math.nan
    generator = np.random.default_rng(seed)
    medians = np.median(generator.choice(values, size=(draws, len(values))), axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(np.median(values)), float(low), float(high)


def minimal_visibility(scores: pd.DataFrame, metric: str = "advdss",
                       success: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (attack, norm, budget): the per-image minimal AEs' ``metric`` -- its median
    with a bootstrap 95 % interval, n (images with a fooling AE), the images searched,
    what was searched and the median value found. Sorted least visible first (the median
    ``metric`` at its better end first: descending for a higher-is-better metric).

    An image searched from several cells of one attack (a grid with three ε for PGD)
    counts once, by its least visible fooling AE under ``metric``: the per-image minimum
    over every bracket searched. Rows of a budgeted cell are their own group (PGD with an
    AdvDSS budget is another attack than plain PGD). Empty when the study holds no
    minimal rows or they are not scored with ``metric``.

    ``searched`` counts the images searched: the correctly classified references of the
    build's success table (``success``, its ``search = "minimal"`` rows), since a study
    built without ``--keep-failed`` holds no row for an image that was searched and not
    fooled; without the table, the images that have a row.
    """
    columns = ["attack", "norm", "budget", "strength_name", "n", "searched",
               "median_strength", f"median_{metric}", "low", "high"]
    rows = minimal_search_rows(scores)
    if not len(rows) or metric not in rows.columns:
        return pd.DataFrame(columns=columns)
    better_high = higher_is_better(metric)
    rows = rows.assign(budget=rows["parameters"].map(cell_budget)
                       if "parameters" in rows.columns else "",
                       _image=rows["image"] if "image" in rows.columns else rows["id"])
    out = []
    for (attack, norm, budget), group in rows.groupby([*PAIR, "budget"], sort=True):
        aes = fooled_aes(group).dropna(subset=[metric])
        best = (aes.sort_values(metric, ascending=not better_high, kind="stable")
                .drop_duplicates("_image"))
        median, low, high = bootstrap_median(best[metric].to_numpy(float))
        name = searched_name(group, attack)
        found = (best["searched_value"] if "searched_value" in best.columns
                 else best["strength"])
        out.append({"attack": attack, "norm": norm, "budget": budget, "strength_name": name,
                    "n": len(best), "searched": searched_images(group, success, attack, norm),
                    "median_strength": float(found.median()) if len(best) else math.nan,
                    f"median_{metric}": median, "low": low, "high": high})
    table = pd.DataFrame(out, columns=columns)
    table = table.sort_values(f"median_{metric}", ascending=not better_high,
                              na_position="last", kind="stable")
    return table.reset_index(drop=True)


def searched_images(group: pd.DataFrame, success: pd.DataFrame | None, attack: str,
                    norm: str) -> int:
    """The images a minimal search tried for (attack, norm): see :func:`minimal_visibility`."""
    rows = 0 if success is None or "search" not in success.columns else success[
        (success["search"] == "minimal") & (success["attack"] == attack)
        & (success["norm"] == norm)]
    if isinstance(rows, pd.DataFrame) and len(rows):
        return max(int(rows["correct"].max()), group["_image"].nunique())
    return int(group["_image"].nunique())


def higher_is_better(metric: str) -> bool:
    """The registry's direction of ``metric``; a column it does not know (a user's
    plug-in scored elsewhere) is taken as higher-is-better, like AdvDSS."""
    from advqa.quality import list_metrics

    info = list_metrics().get(metric)
    return True if info is None else bool(info.higher_is_better)


def cell_budget(parameters) -> str:
    """The perceptual budget of the cell a row was searched from ("" for none)."""
    if not isinstance(parameters, str):
        return ""
    parameters = json.loads(parameters)
    return str(parameters.get("cell_budget") or "")


def searched_name(group: pd.DataFrame, attack: str) -> str:
    """What a minimal search bisected: ``budget``, else the attack's strength name."""
    if "searched" in group.columns and group["searched"].notna().any():
        return str(group["searched"].dropna().iloc[0])
    if "strength_name" in group.columns:
        return str(group["strength_name"].iloc[0])
    return attack_strength_name(attack)


def derive_success(manifest: pd.DataFrame) -> pd.DataFrame:
    """The success table from the manifest alone, when the build's is absent (a study
    built from Python rather than ``advqa build``). Without the build's counts of images
    tried, the manifest knows only the AEs it kept."""
    manifest = grid_rows(manifest)
    correct = manifest["clean_correct"].fillna(True).astype(bool)
    rows = manifest.assign(correct=correct,
                           fooled=manifest["success"].fillna(False).astype(bool) & correct)
    table = rows.groupby(CELL).agg(tried=("id", "size"), correct=("correct", "sum"),
                                   fooled=("fooled", "sum")).reset_index()
    table["success_rate"] = table["fooled"] / table["correct"].clip(lower=1)
    return table


def strength_names(manifest: pd.DataFrame, pairs) -> dict[tuple[str, str], str]:
    """(attack, norm) → the name of its strength (eps, overshoot, kappa…): from the
    manifest, else from the attack's class for a pair without a kept AE."""
    names = {}
    if "strength_name" in manifest.columns and len(manifest):
        first = manifest.groupby(PAIR)["strength_name"].first()
        names = {(str(a), str(n)): str(v) for (a, n), v in first.items()}
    for attack, norm in pairs:
        if (attack, norm) not in names:
            names[(attack, norm)] = attack_strength_name(attack)
    return names


def attack_strength_name(attack: str) -> str:
    try:
        from advqa.attacks import attack_class

        return attack_class(attack).strength
    except Exception:  # an attack this version does not know: the column's own name
        return "strength"


def cell_table(success: pd.DataFrame, scores: pd.DataFrame,
               strength_name: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """One row per grid cell: the success table's counts and rate, ``aes`` (kept AEs that
    fooled the model) and the mean of every score column over them.

    Parameters
    ----------
    success : DataFrame
        ``attack, norm, strength, tried, correct, fooled, success_rate`` (more columns
        are kept).
    scores : DataFrame
        The scored manifest (or the manifest, for an unscored study).
    strength_name : dict, optional
        (attack, norm) → strength name; the ``strength_name`` column.
    """
    aes = fooled_aes(grid_rows(scores))
    success = grid_rows(success).drop(columns=["search"], errors="ignore")
    columns = metric_columns(scores)
    grouped = aes.groupby(CELL)
    means = grouped[columns].mean() if columns else pd.DataFrame(index=grouped.size().index)
    means.insert(0, "aes", grouped.size())
    means = means.reset_index()
    cells = success.copy()
    cells["_key"] = cells["strength"].round(9)
    means["_key"] = means["strength"].round(9)
    table = cells.merge(means.drop(columns=["strength"]), on=["attack", "norm", "_key"],
                        how="outer", suffixes=("", "_means"))
    # A cell with AEs but no success-table row (a hand-made study): take its strength.
    missing = table["strength"].isna()
    table.loc[missing, "strength"] = table.loc[missing, "_key"]
    table["aes"] = table["aes"].fillna(0).astype(int)
    names = strength_name or {}
    table.insert(2, "strength_name", [names.get((a, n), "strength")
                                      for a, n in zip(table["attack"], table["norm"],
                                                      strict=True)])
    table = table.drop(columns=["_key"]).sort_values(CELL, kind="stable")
    return table.reset_index(drop=True)


def equal_success(cells: pd.DataFrame, rates=RATES) -> pd.DataFrame:
    """Per target rate and (attack, norm): where success first reaches the rate and the
    mean scores there, sorted least visible first (see the module docstring).

    Returns
    -------
    DataFrame
        ``rate, attack, norm, strength_name, reached, bound, strength, scored_strength,
        scored_rate, aes, max_rate, rank`` and the mean of each of
        :data:`VISIBILITY_METRICS` that ``cells`` holds. ``strength`` is the interpolated
        (``bound = "≈"``) or bounding (``"≤"``) strength; for a row that did not reach
        the rate, ``strength`` is NaN and ``scored_strength`` the strongest strength
        tried. ``rank`` is 1 for the least visible; NaN where not reached.
    """
    metrics = [m for m in VISIBILITY_METRICS if m in cells.columns]
    rows = []
    for rate in rates:
        block = []
        for (attack, norm), curve in cells.groupby(PAIR, sort=True):
            curve = curve.sort_values("strength").reset_index(drop=True)
            block.append({"rate": rate, "attack": attack, "norm": norm,
                          "strength_name": curve["strength_name"].iloc[0],
                          **crossing(curve, rate, metrics)})
        rows += sort_block(block, metrics)
    columns = ["rate", "attack", "norm", "strength_name", "reached", "bound", "strength",
               "scored_strength", "scored_rate", "aes", "max_rate", "rank", *metrics]
    return pd.DataFrame(rows, columns=columns)


def crossing(curve: pd.DataFrame, rate: float, metrics: list[str]) -> dict:
    """Where one success curve (sorted by strength) first reaches ``rate``."""
    rates = curve["success_rate"].to_numpy(float)
    strengths = curve["strength"].to_numpy(float)
    # NaN rates (a cell without a correctly classified image) never count as reached.
    above = np.flatnonzero(np.nan_to_num(rates, nan=-1.0) >= rate - 1e-12)
    max_rate = float(np.nanmax(rates)) if np.isfinite(rates).any() else math.nan
    if not len(above):
        last = curve.iloc[-1]
        return {"reached": False, "bound": None, "strength": math.nan,
                "scored_strength": float(last["strength"]), "scored_rate": float(rates[-1]),
                "aes": int(last["aes"]), "max_rate": max_rate,
                **{m: math.nan for m in metrics}}
    index = int(above[0])
    if index == 0:
        bound, strength = "≤", float(strengths[0])
    else:
        low, high = rates[index - 1], rates[index]
        share = (rate - low) / (high - low) if high > low else 1.0
        strength = float(strengths[index - 1] + share * (strengths[index] - strengths[index - 1]))
        bound = "≈"
    row = curve.iloc[index]
    return {"reached": True, "bound": bound, "strength": strength,
            "scored_strength": float(strengths[index]), "scored_rate": float(rates[index]),
            "aes": int(row["aes"]), "max_rate": max_rate,
            **{m: float(row[m]) for m in metrics}}


def sort_block(block: list[dict], metrics: list[str]) -> list[dict]:
    """Reached rows least visible first (by the first of :data:`SORT_ORDER` scored,
    descending: each is higher for an AE closer to its reference; ties by attack and
    norm), then the rows that did not reach the rate, by attack and norm."""
    key = next((m for m in SORT_ORDER if m in metrics), None)
    reached = [row for row in block if row["reached"]]
    others = [row for row in block if not row["reached"]]

    def order(row):
        value = row[key] if key else math.nan
        if value is None or not math.isfinite(value):
            return (1, 0.0, row["attack"], row["norm"])
        return (0, -value, row["attack"], row["norm"])

    reached.sort(key=order)
    for rank, row in enumerate(reached, start=1):
        row["rank"] = rank
    for row in others:
        row["rank"] = math.nan
    return reached + sorted(others, key=lambda row: (row["attack"], row["norm"]))


def sort_metric(frame: pd.DataFrame) -> str | None:
    """The score the ranking is sorted by: the first of :data:`SORT_ORDER` present."""
    return next((m for m in SORT_ORDER if m in frame.columns), None)


def same_strength(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= SAME * max(1.0, abs(float(a)))


def same_strength_mask(strengths: pd.Series, value: float) -> pd.Series:
    """Which of ``strengths`` are the grid value ``value`` (float round trips aside)."""
    return (strengths.astype(float) - float(value)).abs() <= SAME * max(1.0, abs(float(value)))
