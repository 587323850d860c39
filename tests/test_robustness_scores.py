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


# --- robustness-score variants -------------------------------------------------------------


@pytest.mark.parametrize(("variant", "numerators", "expected"), [
    # s = (0.2, 0.5, 0.8), s′ = (0.4, 0.5, 0.6), |s′ − s| = (0.2, 0, 0.2)
    # paper, max(1 − s′, s): (max(0.6, 0.2), max(0.5, 0.5), max(0.4, 0.8)) = (0.6, 0.5, 0.8)
    #   (log10 3 + log10 5e5 + log10 4)/3 = (0.47712 + 5.69897 + 0.60206)/3 = 2.25938
    ("paper", (0.6, 0.5, 0.8), 2.25938),
    # msu, max(1 − s, s): (max(0.8, 0.2), max(0.5, 0.5), max(0.2, 0.8)) = (0.8, 0.5, 0.8)
    #   (log10 4 + log10 5e5 + log10 4)/3 = (0.60206 + 5.69897 + 0.60206)/3 = 2.30103
    ("msu", (0.8, 0.5, 0.8), 2.30103),
])
def test_robustness_score_variants_by_hand(variant, numerators, expected):
    scores = robustness_scores([2.0, 5.0, 8.0], [4.0, 5.0, 6.0], 0.0, 10.0, bootstrap=0,
                               r_score=variant)
    denominators = (0.2 + 1e-6, 1e-6, 0.2 + 1e-6)
    exact = sum(math.log10(top / bottom) for top, bottom in
                zip(numerators, denominators, strict=True)) / 3
    assert scores["robustness_score"] == pytest.approx(exact)
    assert scores["robustness_score"] == pytest.approx(expected, abs=1e-5)
    # The variant changes the robustness score only.
    paper = robustness_scores([2.0, 5.0, 8.0], [4.0, 5.0, 6.0], 0.0, 10.0, bootstrap=0)
    for name in ("abs_gain", "rel_gain", "wasserstein_score", "energy_score"):
        assert scores[name] == paper[name]


def test_msu_variant_does_not_depend_on_the_orientation():
    # max(1 − s, s) is symmetric under s → 1 − s; the paper's max(1 − s′, s) is not.
    clean, attacked = synthetic(6.0)
    up = robustness_scores(clean, attacked, 0.0, 60.0, bootstrap=0, r_score="msu")
    down = robustness_scores(clean, attacked, 0.0, 60.0, bootstrap=0, r_score="msu",
                             higher_is_better=False)
    assert up["robustness_score"] == pytest.approx(down["robustness_score"])
    paper_up = robustness_scores(clean, attacked, 0.0, 60.0, bootstrap=0)
    paper_down = robustness_scores(clean, attacked, 0.0, 60.0, bootstrap=0,
                                   higher_is_better=False)
    assert paper_up["robustness_score"] != pytest.approx(paper_down["robustness_score"])


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown robustness-score variant 'code'"):
        robustness_scores([0.5], [0.6], 0.0, 1.0, r_score="code")
    with pytest.raises(ValueError, match="variant"):
        score_table(toy_items(), RANGES, r_score="nope")


# --- step grid, failed attacks, AMI-FGSM's ball ----------------------------------------------

STEPS = (0.25 / 255, 0.5 / 255, 1 / 255)


def grid_items() -> pd.DataFrame:
    """Three metrics attacked by a stepped attack on 12 images (values scaled in [0, 1]):
    ``nimble`` gains most at the middle step; ``rough`` (think NIQE at 1/255) gains at
    the small steps and loses at the largest; ``stubborn`` loses at every step, and with
    FGSM too. All three also face ``fgsm``; ``nimble`` and ``rough`` gain there."""
    clean = np.linspace(0.2, 0.6, 12)
    gains = {"nimble": (0.05, 0.2, 0.1), "rough": (0.08, 0.03, -0.3),
             "stubborn": (-0.01, -0.02, -0.05)}
    fgsm = {"nimble": 0.3, "rough": 0.01, "stubborn": -0.2}
    rows = []
    for metric, per_step in gains.items():
        for step, gain in zip(STEPS, per_step, strict=True):
            rows += [{**row, "step": step} for row in
                     item_rows(metric, "ifgsm", clean, clean + gain)]
        rows += item_rows(metric, "fgsm", clean, clean + fgsm[metric])
    return pd.DataFrame(rows, columns=list(ITEM_COLUMNS))


GRID_RANGES = {name: (0.0, 1.0, True) for name in ("nimble", "rough", "stubborn")}
GRID_SETTINGS = {"eps": 10 / 255, "steps": 10, "step_sizes": list(STEPS),
                 "mifgsm_form": "msu", "momentum": 1.0, "amplitudes": [0.2, 0.4, 0.8]}


@pytest.fixture(scope="module")
def grid_table() -> pd.DataFrame:
    return score_table(grid_items(), GRID_RANGES, bootstrap=0, settings=GRID_SETTINGS)


def test_step_grid_ranks_each_attack_at_its_largest_gain(grid_table):
    ifgsm = grid_table[grid_table["attack"] == "ifgsm"]
    assert list(ifgsm.loc[ifgsm["metric"] == "nimble", "step"]) == [
        "0.25/255", "0.5/255", "1/255"]
    best = ifgsm[ifgsm["ranked"]].set_index("metric")
    assert best.loc["nimble", "step"] == "0.5/255"          # 0.2 beats 0.05 and 0.1
    assert best.loc["rough", "step"] == "0.25/255"          # 0.08 beats 0.03 and −0.3
    assert best.loc["stubborn", "step"] == "0.25/255"       # the least bad: −0.01
    assert best.loc["nimble", "abs_gain"] == pytest.approx(0.2)
    assert "strongest step of 0.25/255, 0.5/255, 1/255" in best.loc["nimble", "note"]
    assert ifgsm.groupby("metric")["ranked"].sum().eq(1).all()
    # Per-step status: the rough metric's 1/255 step failed, its best did not.
    rough = ifgsm[ifgsm["metric"] == "rough"].set_index("step")["status"]
    assert rough.to_dict() == {"0.25/255": "ok", "0.5/255": "ok", "1/255": "failed"}
    assert (grid_table.loc[grid_table["attack"] == "fgsm", "step"].isna()).all()


def test_a_tie_goes_to_the_smaller_step():
    from advqa.robustness.leaderboard import best_step

    rows = [{"abs_gain": 0.1}, {"abs_gain": 0.3}, {"abs_gain": 0.3}, {"abs_gain": math.nan}]
    assert best_step(rows) == 1
    assert best_step([{"abs_gain": math.nan}, {"abs_gain": math.nan}]) == 0


def test_failed_cells_are_marked_and_not_ranked_as_robust(grid_table):
    cells = grid_table[grid_table["ranked"]].set_index(["metric", "attack"])["status"]
    assert cells[("stubborn", "ifgsm")] == "failed" and cells[("stubborn", "fgsm")] == "failed"
    assert cells[("rough", "ifgsm")] == "ok"
    board = leaderboard(grid_table).set_index("metric")
    # stubborn's attacks all failed: its negative gains would make it the "most robust"
    # metric; instead it has no rank and comes last.
    assert board.index[-1] == "stubborn"
    assert board.loc["stubborn", "n_attacks"] == 0 and board.loc["stubborn", "failed_attacks"] == 2
    assert board.loc["stubborn", "failed"] == "fgsm (gain -0.2); ifgsm (gain -0.01)"
    assert board.loc["stubborn", ["abs_gain", "abs_gain_rank", "mean_rank"]].isna().all()
    # rough is ranked on what worked: its best I-FGSM step (0.08) and FGSM (0.01).
    assert board.loc["rough", "abs_gain"] == pytest.approx((0.08 + 0.01) / 2)
    assert board.loc["rough", "abs_gain_rank"] == 1 and board.loc["nimble", "abs_gain_rank"] == 2
    assert list(board["r_score_variant"].unique()) == ["paper"]
    assert board["step_sizes"].iloc[0] == "0.25/255, 0.5/255, 1/255"


def test_a_partly_failed_metric_averages_only_its_working_attacks():
    items = grid_items()
    items = items[items["metric"] == "rough"].copy()
    fgsm = items["attack"] == "fgsm"
    items.loc[fgsm, "attacked"] = items.loc[fgsm, "clean"] - 0.1  # now FGSM fails on it
    board = leaderboard(score_table(items, GRID_RANGES, bootstrap=0)).iloc[0]
    assert board["n_attacks"] == 1 and board["failed_attacks"] == 1
    assert board["abs_gain"] == pytest.approx(0.08)
    assert board["mean_rank"] == 1


def ami_items(radii) -> pd.DataFrame:
    clean = np.linspace(0.2, 0.6, len(radii))
    rows = []
    for step in (1 / 255, 4 / 255):
        rows += [{**row, "step": step, "radius": radius} for row, radius in
                 zip(item_rows("psnr", "amifgsm", clean, clean + 0.1), radii, strict=True)]
    return pd.DataFrame(rows, columns=list(ITEM_COLUMNS))


def test_amifgsm_rows_say_when_the_ball_never_binds():
    # 1/NIQE per image; 10 × 1/255 ≈ 0.039 is below all three, 10 × 4/255 ≈ 0.157 above two.
    radii = [0.05, 0.12, 0.3]
    table = score_table(ami_items(radii), {"psnr": (0.0, 1.0, True)}, bootstrap=0,
                        settings=GRID_SETTINGS).set_index("step")
    assert table.loc["1/255", "note"].endswith(
        "1/NIQE ball never binds: 10 × 1/255 ≤ 1/NIQE = 0.05–0.3 on every image, "
        "so AMI-FGSM = MI-FGSM (same images)")
    assert table.loc["4/255", "note"].startswith(
        "1/NIQE ball can bind on 2 of 3 images (10 × 4/255 > 1/NIQE there)")
    assert set(table["mifgsm_form"]) == {"msu"}
    # With ε below 10 × step, AMI-FGSM is MI-FGSM without MI-FGSM's own ball.
    narrow = score_table(ami_items(radii), {"psnr": (0.0, 1.0, True)}, bootstrap=0,
                         settings={**GRID_SETTINGS, "eps": 8 / 255}).set_index("step")
    assert narrow.loc["1/255", "note"].endswith("MI-FGSM without its ε ball")
    # Across metrics a step "never binds" only where it binds for none of them.
    from advqa.robustness.leaderboard import ami_summary

    other = ami_items([0.02, 0.2, 0.3]).assign(metric="gmsd")  # 0.02 < 10 × 1/255
    both = score_table(pd.concat([ami_items(radii), other]),
                       {"psnr": (0.0, 1.0, True), "gmsd": (0.0, 1.0, True)}, bootstrap=0,
                       settings=GRID_SETTINGS)
    assert ami_summary(both) == "it can bind at step 1/255, 4/255 on some images"
    assert ami_summary(score_table(ami_items(radii), {"psnr": (0.0, 1.0, True)}, bootstrap=0,
                                   settings=GRID_SETTINGS)) == (
        "the 1/NIQE ball never binds at step 1/255 (iterations × step ≤ 1/NIQE on every "
        "image), so AMI-FGSM gives MI-FGSM's images there; it can bind at step 4/255 on some "
        "images")
    # Unknown iteration count: no claim.
    assert (score_table(ami_items(radii), {"psnr": (0.0, 1.0, True)}, bootstrap=0)["note"]
            .str.contains("1/NIQE").sum() == 0)


def test_the_page_names_the_choices_and_marks_failed_cells(tmp_path):
    items = pd.concat([grid_items(), ami_items([0.05, 0.12, 0.3])])
    ranges = {**GRID_RANGES, "psnr": (0.0, 1.0, True)}
    paths = write_leaderboard(items, ranges, tmp_path, bootstrap=0, r_score="msu",
                              settings=GRID_SETTINGS)
    page = paths["html"].read_text(encoding="utf-8")
    assert "msu: mean log10(max(1 − s, s) / (|s′ − s| + 1e-6))" in page
    assert "the benchmark&#x27;s code" in page
    assert "msu: g_t = ∇J + ν·g_{t−1}" in page
    assert "0.25/255, 0.5/255, 1/255; each attack ranked at its strongest step" in page
    assert '<td class="failed"><b>failed</b> (gain -0.2)' in page
    assert "the 1/NIQE ball never binds at step 1/255" in page
    assert "can bind at step 4/255" in page
    assert "left out of the metric's averages and ranks" in page
    board = pd.read_csv(paths["leaderboard_csv"])
    assert set(board["r_score_variant"]) == {"msu"} and set(board["mifgsm_form"]) == {"msu"}
    scores = pd.read_csv(paths["scores_csv"])
    assert set(scores["r_score_variant"]) == {"msu"}
