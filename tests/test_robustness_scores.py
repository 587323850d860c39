"""Robustness scores, score table and leaderboard of the metric-robustness benchmark."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from advqa.robustness.leaderboard import (
    ITEM_COLUMNS,
    leaderboard,
    score_table,
    write_leaderboard,
)
from advqa.robustness.scores import batched_signed_distances, mean_interval, robustness_scores


def synthetic(shift: float, count: int = 40, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    clean = generator.uniform(10, 50, count)
    return clean, clean + shift + generator.normal(0, 2, count)


# --- robustness_scores ---------------------------------------------------------------------


@pytest.mark.parametrize("shift", [6.0, -6.0])
def test_scores_match_an_independent_computation(shift):
    clean, attacked = synthetic(shift)
    low, high = 0.0, 60.0
    scores = robustness_scores(clean, attacked, low, high, bootstrap=50)
    before, after = clean / 60, attacked / 60
    assert scores["n"] == 40 and scores["n_dropped"] == 0
    assert scores["abs_gain"] == pytest.approx(np.mean(after - before))
    assert scores["rel_gain"] == pytest.approx(np.mean((after - before) / (before + 1)))
    numerator = np.where(1 - after > before, 1 - after, before)
    assert scores["robustness_score"] == pytest.approx(
        np.mean(np.log10(numerator / (np.abs(after - before) + 1e-6))))
    sign = 1.0 if shift > 0 else -1.0  # upward shift positive, downward negative
    assert np.sign(scores["wasserstein_score"]) == sign
    assert scores["wasserstein_score"] == pytest.approx(
        sign * stats.wasserstein_distance(before, after))
    assert scores["energy_score"] == pytest.approx(sign * stats.energy_distance(before, after))


def test_three_pairs_by_hand():
    # Scaled by [0, 10]: s = (0.2, 0.5, 0.8), s′ = (0.4, 0.5, 0.6).
    scores = robustness_scores([2.0, 5.0, 8.0], [4.0, 5.0, 6.0], 0.0, 10.0, bootstrap=0)
    assert scores["abs_gain"] == pytest.approx((0.2 + 0 - 0.2) / 3)
    assert scores["rel_gain"] == pytest.approx((0.2 / 1.2 + 0 - 0.2 / 1.8) / 3)
    # max(1 − s′, s) = (0.6, 0.5, 0.8); |s′ − s| = (0.2, 0, 0.2).
    expected = (math.log10(0.6 / (0.2 + 1e-6)) + math.log10(0.5 / 1e-6)
                + math.log10(0.8 / (0.2 + 1e-6))) / 3
    assert scores["robustness_score"] == pytest.approx(expected)
    # Equal means: the distance scores carry sign 0.
    assert scores["wasserstein_score"] == 0 and scores["energy_score"] == 0
    assert math.isnan(scores["wasserstein_score_low"])


def test_lower_is_better_flips_the_scale():
    clean, attacked = synthetic(-6.0)
    flipped = robustness_scores(clean, attacked, 0.0, 60.0, higher_is_better=False,
                                bootstrap=100)
    oriented = robustness_scores(60.0 - clean, 60.0 - attacked, 0.0, 60.0, bootstrap=100)
    assert flipped == pytest.approx(oriented)
    assert flipped["abs_gain"] > 0 and flipped["wasserstein_score"] > 0


def test_torch_input_gives_the_numpy_scores():
    clean, attacked = synthetic(3.0)
    from_torch = robustness_scores(torch.tensor(clean, requires_grad=True),
                                   torch.tensor(attacked), 0.0, 60.0, bootstrap=20)
    assert from_torch == pytest.approx(robustness_scores(clean, attacked, 0.0, 60.0,
                                                         bootstrap=20))


def test_intervals_contain_the_estimate_and_repeat_with_the_seed():
    clean, attacked = synthetic(4.0, count=60)
    scores = robustness_scores(clean, attacked, 0.0, 60.0, seed=7)
    for name in ("abs_gain", "rel_gain", "robustness_score", "wasserstein_score",
                 "energy_score"):
        assert scores[f"{name}_low"] <= scores[name] <= scores[f"{name}_high"], name
    assert robustness_scores(clean, attacked, 0.0, 60.0, seed=7) == scores
    other = robustness_scores(clean, attacked, 0.0, 60.0, seed=8)
    assert other["wasserstein_score_low"] != scores["wasserstein_score_low"]


def test_t_interval_is_scipys():
    values = np.random.default_rng(0).normal(1, 2, 25)
    mean, low, high = mean_interval(values, 0.9)
    expected = stats.t.interval(0.9, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(expected)
    single = mean_interval([3.0])
    assert single[0] == 3.0 and math.isnan(single[1]) and math.isnan(single[2])


def test_batched_distances_match_scipy_with_ties():
    generator = np.random.default_rng(2)
    before = generator.integers(0, 5, (6, 12)).astype(float)  # many ties
    after = before + generator.integers(-1, 3, (6, 12))
    wasserstein, energy = batched_signed_distances(before, after)
    for row in range(6):
        sign = np.sign(after[row].mean() - before[row].mean())
        assert wasserstein[row] == pytest.approx(
            sign * stats.wasserstein_distance(before[row], after[row]))
        assert energy[row] == pytest.approx(sign * stats.energy_distance(before[row], after[row]))


def test_non_finite_pairs_are_dropped_and_counted():
    clean, attacked = synthetic(5.0, count=10)
    dirty_clean, dirty_attacked = clean.copy(), attacked.copy()
    dirty_clean[2], dirty_attacked[5], dirty_attacked[7] = np.nan, np.inf, -np.inf
    scores = robustness_scores(dirty_clean, dirty_attacked, 0.0, 60.0, bootstrap=30)
    keep = np.ones(10, bool)
    keep[[2, 5, 7]] = False
    assert scores["n"] == 7 and scores["n_dropped"] == 3
    assert scores == pytest.approx({**robustness_scores(clean[keep], attacked[keep], 0.0, 60.0,
                                                        bootstrap=30), "n_dropped": 3})


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="no pair"):
        robustness_scores([np.nan, 1.0], [2.0, np.nan], 0.0, 1.0)
    for low, high in [(1.0, 1.0), (2.0, 1.0), (0.0, np.inf), (np.nan, 1.0)]:
        with pytest.raises(ValueError, match="calibration range"):
            robustness_scores([0.5], [0.6], low, high)
    with pytest.raises(ValueError, match="equal length"):
        robustness_scores([0.5, 0.2], [0.6], 0.0, 1.0)


# --- score table and leaderboard -----------------------------------------------------------


def item_rows(metric: str, attack: str, clean: np.ndarray, attacked: np.ndarray,
              amplitude: float = math.nan) -> list[dict]:
    return [{"image": f"img{index}", "dataset": "toy", "attack": attack, "amplitude": amplitude,
             "metric": metric, "clean": before, "attacked": after, "gain": after - before,
             "psnr": 40 - 10 * amplitude if amplitude == amplitude else 35.0, "ssim": 0.9,
             "mse": 1e-3, "error": None}
            for index, (before, after) in enumerate(zip(clean, attacked, strict=True))]


def toy_items() -> pd.DataFrame:
    clean = np.linspace(0.2, 0.6, 12)
    rows = []
    for attack in ("fgsm", "ifgsm"):
        rows += item_rows("steady", attack, clean, clean)  # never moves
        rows += item_rows("shaky", attack, clean, clean + 0.3)
        rows += item_rows("nudged", attack, clean, clean + 0.05)
    for amplitude in (0.2, 0.4, 0.8):
        rows += item_rows("steady", "uap", clean, clean, amplitude)
        rows += item_rows("shaky", "uap", clean, clean + amplitude / 2, amplitude)
        rows += item_rows("nudged", "uap", clean, clean + amplitude / 20, amplitude)
    items = pd.DataFrame(rows, columns=list(ITEM_COLUMNS))
    # Two failed rows: their values are NaN and must not be scored.
    failed = (items["metric"] == "shaky") & (items["attack"] == "fgsm") & (
        items["image"].isin(["img0", "img1"]))
    items.loc[failed, ["clean", "attacked"]] = math.nan
    items.loc[failed, "error"] = "CUDA out of memory"
    return items


RANGES = {"steady": (0.0, 1.0, True), "shaky": (0.0, 1.0, True), "nudged": (0.0, 1.0, True)}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return score_table(toy_items(), RANGES, bootstrap=50)


def test_uap_mean_row_averages_the_amplitudes(table):
    uap = table[(table["metric"] == "shaky") & (table["attack"] == "uap")]
    assert list(uap["amplitude"]) == ["0.2", "0.4", "0.8", "mean"]
    levels, mean = uap.iloc[:3], uap.iloc[3]
    for column in ("abs_gain", "rel_gain", "robustness_score", "wasserstein_score",
                   "energy_score", "mean_psnr"):
        assert mean[column] == pytest.approx(levels[column].mean()), column
    assert levels["abs_gain"].tolist() == pytest.approx([0.1, 0.2, 0.4])
    assert mean["n"] == 36 and math.isnan(mean["abs_gain_low"])
    assert table.loc[table["attack"] == "fgsm", "amplitude"].isna().all()


def test_failed_rows_are_excluded_and_counted(table):
    row = table[(table["metric"] == "shaky") & (table["attack"] == "fgsm")].iloc[0]
    assert row["n"] == 10 and row["n_failed"] == 2 and row["n_dropped"] == 0
    assert row["abs_gain"] == pytest.approx(0.3)
    assert table.loc[table["metric"] != "shaky", "n_failed"].eq(0).all()


def test_leaderboard_ranks_the_unmoved_metric_first(table):
    board = leaderboard(table)
    assert board["metric"].tolist() == ["steady", "nudged", "shaky"]
    assert (board.filter(like="_rank").iloc[0] == 1).all()
    assert board["n_attacks"].tolist() == [3, 3, 3]
    steady_uap = table[(table["metric"] == "steady") & (table["amplitude"] == "mean")]
    assert board.loc[0, "robustness_score"] == pytest.approx(
        steady_uap["robustness_score"].iloc[0])
    shaky = table[(table["metric"] == "shaky")
                  & (table["amplitude"].isna() | (table["amplitude"] == "mean"))]
    assert board.loc[2, "abs_gain"] == pytest.approx(shaky["abs_gain"].mean())


def test_missing_range_raises():
    with pytest.raises(ValueError, match="no calibration range"):
        score_table(toy_items(), {"steady": (0.0, 1.0, True)})


def test_written_files_and_self_contained_html(tmp_path):
    items = toy_items()
    items.loc[items["metric"] == "nudged", "metric"] = "a<b & c"
    ranges = {**RANGES, "a<b & c": (0.0, 1.0, True)}
    paths = write_leaderboard(items, ranges, tmp_path / "out", bootstrap=20)
    assert {path.name for path in paths.values()} == {
        "scores.csv", "scores.parquet", "leaderboard.csv", "leaderboard.parquet",
        "leaderboard.html"}
    assert all(path.is_file() for path in paths.values())
    assert len(pd.read_parquet(paths["leaderboard_parquet"])) == 3
    assert len(pd.read_csv(paths["scores_csv"])) == len(pd.read_parquet(paths["scores_parquet"]))
    page = paths["html"].read_text(encoding="utf-8")
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page)
    assert "http://" not in page and "https://" not in page
    assert page.count('src="data:image/png;base64,') >= 2
    for metric in ("steady", "shaky"):
        assert metric in page
    assert html.escape("a<b & c") in page and "a<b & c" not in page
