"""Screening opinion scores: ITU-R BT.500 observer rejection and outlier-score removal.

Two independent steps, both reported so a study organiser can see who or what was dropped
and why:

* :func:`bt500_screen` — the observer screening of ITU-R BT.500 (BT.500-14, Annex 2
  §2.3.1) with the β2 kurtosis test. For every item the scores' mean, standard deviation
  (``ddof=1``) and kurtosis ``β2 = m4 / m2²`` (moments about the mean) are computed. If
  ``2 ≤ β2 ≤ 4`` the item's scores count as normally distributed and a rater's score is
  *high* (``P``) if ``≥ mean + 2·std`` and *low* (``Q``) if ``≤ mean − 2·std``; otherwise
  the band is ``mean ± √20·std``. A rater ``i`` who scored ``N_i`` items is rejected if
  ``(P_i + Q_i) / N_i > 0.05`` *and* ``|P_i − Q_i| / (P_i + Q_i) < 0.3``: they often fall
  outside the band, and about as often above as below (noise rather than a consistent
  bias). Items whose scores all agree (``std == 0``) or that fewer than two raters scored
  carry no evidence and are skipped; with ``std == 0`` the literal ``≥ mean`` test would
  otherwise flag every rater.

* :func:`remove_outlier_scores` — the AdvDSS paper (§3.1, "Annotation") says only that
  "the outlier individual score is removed and then the remaining scores are averaged as
  the MOS". We make that precise: per item, take the mean and standard deviation
  (``ddof=1``) of all its scores, *including* the candidate; the score farthest from the
  mean is removed if it lies strictly outside ``mean ± 2·std``. At most one score per item
  is removed. If several scores tie for farthest and they all have the same value, one of
  them is removed (the first rater in sorted order; the MOS is the same whichever it is);
  if they differ (one above and one below the mean, equally far), none is removed, as
  there is no single outlier. Items with fewer than three scores are left alone (with two
  scores neither can lie outside ``mean ± 2·std``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

RATING_COLUMNS = ("rater", "item_id", "score")
NORMAL_BAND = 2.0  # std multiple when 2 <= β2 <= 4
OTHER_BAND = math.sqrt(20.0)  # std multiple otherwise
BETA2_RANGE = (2.0, 4.0)
OUTSIDE_LIMIT = 0.05  # (P + Q) / N above this ...
BALANCE_LIMIT = 0.3  # ... and |P - Q| / (P + Q) below this rejects a rater
OUTLIER_BAND = 2.0  # per-item outlier: farther than this many std from the item mean

SCREENING_COLUMNS = ("rater", "rejected", "n", "p", "q", "outside_ratio", "balance",
                     "reason")
REMOVED_COLUMNS = ("item_id", "rater", "score", "item_mean", "item_std", "deviation",
                   "reason")


def check_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """`ratings` reduced to ``rater, item_id, score`` with numeric scores; raise if malformed.

    Raises
    ------
    ValueError
        Missing columns, non-numeric scores or a rater scoring an item twice.
    """
    missing = [column for column in RATING_COLUMNS if column not in ratings.columns]
    if missing:
        raise ValueError(f"ratings lack column(s) {', '.join(missing)}; they have "
                         f"{', '.join(map(str, ratings.columns))}")
    table = ratings[list(RATING_COLUMNS)].copy()
    table["rater"] = table["rater"].astype(str)
    table["item_id"] = table["item_id"].astype(str)
    scores = pd.to_numeric(table["score"], errors="coerce")
    if scores.isna().any():
        bad = table.loc[scores.isna()].head(10)
        raise ValueError("ratings have missing or non-numeric scores: "
                         + ", ".join(f"{row.rater}/{row.item_id}={row.score!r}"
                                     for row in bad.itertuples()))
    table["score"] = scores.astype(float)
    twice = table.duplicated(["rater", "item_id"], keep=False)
    if twice.any():
        pairs = table.loc[twice, ["rater", "item_id"]].drop_duplicates().head(10)
        raise ValueError("a rater scored an item more than once: "
                         + ", ".join(f"{row.rater}/{row.item_id}"
                                     for row in pairs.itertuples()))
    return table.reset_index(drop=True)


def item_statistics(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per item: ``item_id, n, mean, std`` (ddof=1), ``beta2`` (m4/m2², NaN if m2 = 0),
    ``normal`` (2 ≤ β2 ≤ 4), ``band`` (std multiple used) and ``low``/``high`` limits."""
    grouped = ratings.groupby("item_id", sort=True)["score"]
    stats = pd.DataFrame({"n": grouped.size(), "mean": grouped.mean(),
                          "std": grouped.std(ddof=1)})
    deviation = ratings["score"] - ratings["item_id"].map(stats["mean"])
    moments = pd.DataFrame({"item_id": ratings["item_id"], "d2": deviation ** 2,
                            "d4": deviation ** 4}).groupby("item_id", sort=True).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        beta2 = moments["d4"] / moments["d2"] ** 2
    stats["beta2"] = beta2.where(moments["d2"] > 0)
    stats["normal"] = stats["beta2"].between(*BETA2_RANGE)
    stats["band"] = np.where(stats["normal"], NORMAL_BAND, OTHER_BAND)
    stats["low"] = stats["mean"] - stats["band"] * stats["std"]
    stats["high"] = stats["mean"] + stats["band"] * stats["std"]
    return stats.reset_index()


@dataclass
class ScreeningResult:
    """Outcome of :func:`bt500_screen`.

    Attributes
    ----------
    rejected : list of str
        Rejected raters, sorted.
    raters : pandas.DataFrame
        One row per rater: ``rater, rejected, n, p, q, outside_ratio`` ((P+Q)/N),
        ``balance`` (|P−Q|/(P+Q), NaN if P+Q = 0) and ``reason``; rejected raters first.
    items : pandas.DataFrame
        Per-item statistics used (see :func:`item_statistics`), with ``used`` marking the
        items that entered the test (n ≥ 2 and std > 0).
    """

    rejected: list[str]
    raters: pd.DataFrame
    items: pd.DataFrame

    @property
    def rejected_table(self) -> pd.DataFrame:
        """Only the rejected raters' rows of :attr:`raters`."""
        return self.raters[self.raters["rejected"]].reset_index(drop=True)


def _reason(row) -> str:
    counts = f"P={row.p}, Q={row.q} of N={row.n} scores"
    if row.rejected:
        return (f"rejected (ITU-R BT.500 β2 screening): {counts}; (P+Q)/N = "
                f"{row.outside_ratio:.3f} > {OUTSIDE_LIMIT} and |P-Q|/(P+Q) = "
                f"{row.balance:.3f} < {BALANCE_LIMIT}")
    if row.outside_ratio <= OUTSIDE_LIMIT:
        return f"kept: {counts}; (P+Q)/N = {row.outside_ratio:.3f} <= {OUTSIDE_LIMIT}"
    return (f"kept: {counts}; (P+Q)/N = {row.outside_ratio:.3f} > {OUTSIDE_LIMIT} but "
            f"|P-Q|/(P+Q) = {row.balance:.3f} >= {BALANCE_LIMIT} (consistent bias)")


def bt500_screen(ratings: pd.DataFrame) -> ScreeningResult:
    """ITU-R BT.500 observer screening with the β2 kurtosis test (see the module notes).

    Parameters
    ----------
    ratings : pandas.DataFrame
        Columns ``rater, item_id, score``; one score per rater and item, raters may skip
        items.

    Returns
    -------
    ScreeningResult
    """
    table = check_ratings(ratings)
    items = item_statistics(table)
    items["used"] = (items["n"] >= 2) & (items["std"] > 0)
    limits = items.set_index("item_id")
    high = table["score"] >= table["item_id"].map(limits["high"])
    low = table["score"] <= table["item_id"].map(limits["low"])
    used = table["item_id"].map(limits["used"]).astype(bool)
    per_rater = pd.DataFrame({"rater": table["rater"], "p": high & used,
                              "q": low & used}).groupby("rater", sort=True)
    raters = pd.DataFrame({"n": per_rater.size(), "p": per_rater["p"].sum(),
                           "q": per_rater["q"].sum()}).astype(int)
    outside = raters["p"] + raters["q"]
    raters["outside_ratio"] = outside / raters["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        raters["balance"] = ((raters["p"] - raters["q"]).abs() / outside).where(outside > 0)
    raters["rejected"] = ((raters["outside_ratio"] > OUTSIDE_LIMIT)
                          & (raters["balance"] < BALANCE_LIMIT))
    raters = raters.reset_index()
    raters["reason"] = [_reason(row) for row in raters.itertuples()]
    raters = raters.sort_values(["rejected", "rater"], ascending=[False, True],
                                kind="stable").reset_index(drop=True)
    rejected = sorted(raters.loc[raters["rejected"], "rater"])
    return ScreeningResult(rejected, raters[list(SCREENING_COLUMNS)], items)


def remove_outlier_scores(ratings: pd.DataFrame, *, band: float = OUTLIER_BAND,
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Remove at most one outlier individual score per item (the paper's §3.1 step).

    The rule (see the module notes): per item with three or more scores, the score
    farthest from the item mean is removed if ``|score − mean| > band·std`` (mean and
    ``ddof=1`` std over all the item's scores, the candidate included). Ties for farthest
    with equal values remove one (first rater in sorted order); ties of different values
    remove none.

    Parameters
    ----------
    ratings : pandas.DataFrame
        Columns ``rater, item_id, score``.
    band : float
        Std multiple beyond which the farthest score is an outlier (default 2).

    Returns
    -------
    kept : pandas.DataFrame
        The ratings without the removed scores (``rater, item_id, score``).
    removed : pandas.DataFrame
        ``item_id, rater, score, item_mean, item_std, deviation, reason``, one row per
        removed score.
    """
    table = check_ratings(ratings).sort_values(["item_id", "rater"], kind="stable")
    grouped = table.groupby("item_id", sort=False)["score"]
    mean = grouped.transform("mean")
    std = grouped.transform(lambda scores: scores.std(ddof=1))
    count = grouped.transform("size")
    distance = (table["score"] - mean).abs()
    farthest = distance.groupby(table["item_id"], sort=False).transform("max")
    candidate = (count >= 3) & np.isclose(distance, farthest) & (distance > band * std)
    drop = []
    for _, rows in table[candidate].groupby("item_id", sort=False):
        if rows["score"].nunique() == 1:
            drop.append(rows.index[0])
    removed = table.loc[drop, ["item_id", "rater", "score"]].copy()
    removed["item_mean"] = mean.loc[drop]
    removed["item_std"] = std.loc[drop]
    removed["deviation"] = table.loc[drop, "score"] - mean.loc[drop]
    removed["reason"] = [
        f"outlier score: |{row.score:g} - {row.item_mean:.3f}| = {abs(row.deviation):.3f} "
        f"> {band:g}·std = {band * row.item_std:.3f}" for row in removed.itertuples()]
    kept = table.drop(index=drop).sort_index().reset_index(drop=True)
    return kept, removed[list(REMOVED_COLUMNS)].reset_index(drop=True)
