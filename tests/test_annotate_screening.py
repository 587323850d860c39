"""BT.500 rater screening, outlier-score removal and the MOS export."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from advqa.annotate import export as export_module
from advqa.annotate.export import (
    EXPORT_COLUMNS,
    UnknownItemsError,
    export_mos,
    mos_table,
)
from advqa.annotate.screening import bt500_screen, remove_outlier_scores
from advqa.cli import annotate_export
from advqa.cli.common import CommandError
from advqa.evaluate.mos import load_mos, with_mos


def frame(scores: dict[str, dict[str, float]]) -> pd.DataFrame:
    """``{item: {rater: score}}`` as ratings ``rater, item_id, score``."""
    return pd.DataFrame([(rater, item, score) for item, by_rater in scores.items()
                         for rater, score in by_rater.items()],
                        columns=["rater", "item_id", "score"])


RATERS = [f"r{index}" for index in range(10)]


def hand_case() -> pd.DataFrame:
    """Ten raters, five items; see test_bt500_hand_case for the arithmetic."""
    def item(default, special):
        return {rater: special.get(rater, default) for rater in RATERS}
    return frame({
        "a": item(1, {"r8": 4, "r9": 5}),  # β2 = 3.6756 (normal): r9's 5 >= mean + 2 std
        "b": item(5, {"r8": 2, "r9": 1}),  # mirror of a: r9's 1 <= mean - 2 std
        "c": item(3, {"r8": 1}),  # β2 = 8.111: sqrt(20) band, r8's 1 is inside it
        "d": item(3, {}),  # all equal: std 0, carries no evidence
        "e": item(1, {"r8": 4, "r7": 5}),  # as a, with r7 above the band
    })


def test_bt500_hand_case():
    result = bt500_screen(hand_case())
    items = result.items.set_index("item_id")
    # Item a: 1 x8, 4, 5. mean 1.7; deviations -0.7 x8, 2.3, 3.3.
    # m2 = (8*0.49 + 5.29 + 10.89)/10 = 2.01; m4 = (8*0.2401 + 27.9841 + 118.5921)/10
    # = 14.8497; beta2 = 14.8497/2.01^2 = 3.67557 -> normal, band 2 std.
    # std (ddof=1) = sqrt(20.1/9) = 1.49443; mean + 2 std = 4.68887 <= 5 (r9), > 4 (r8).
    assert items.loc["a", "beta2"] == pytest.approx(14.8497 / 2.01 ** 2)
    assert items.loc["a", "beta2"] == pytest.approx(3.675577, abs=1e-6)
    assert items.loc["a", "std"] == pytest.approx(math.sqrt(20.1 / 9))
    assert items.loc["a", "normal"]
    assert items.loc["a", "high"] == pytest.approx(1.7 + 2 * math.sqrt(20.1 / 9))
    # Item c: 3 x9, 1. mean 2.8; m2 = (9*0.04 + 3.24)/10 = 0.36;
    # m4 = (9*0.0016 + 10.4976)/10 = 1.0512; beta2 = 1.0512/0.1296 = 8.1111 -> not normal.
    # std = sqrt(3.6/9) = 0.63246; sqrt(20)*std = 2.8284 > 1.8, so r8's 1 is not counted
    # (with the 2 std band, 2.8 - 1.2649 = 1.535 >= 1, it would have been).
    assert items.loc["c", "beta2"] == pytest.approx(1.0512 / 0.1296)
    assert not items.loc["c", "normal"]
    assert items.loc["c", "low"] == pytest.approx(2.8 - math.sqrt(20) * math.sqrt(0.4))
    assert np.isnan(items.loc["d", "beta2"]) and not items.loc["d", "used"]

    raters = result.raters.set_index("rater")
    # r9: P=1 (a), Q=1 (b), N=5: (P+Q)/N = 0.4 > 0.05 and |P-Q|/(P+Q) = 0 < 0.3 -> rejected.
    assert raters.loc["r9", ["p", "q", "n"]].tolist() == [1, 1, 5]
    assert raters.loc["r9", "outside_ratio"] == pytest.approx(0.4)
    assert raters.loc["r9", "balance"] == 0
    # r7: P=1 (e), Q=0: ratio 0.2 but |P-Q|/(P+Q) = 1 -> a consistent bias, kept.
    assert raters.loc["r7", ["p", "q"]].tolist() == [1, 0]
    assert raters.loc["r7", "balance"] == 1
    assert not raters.loc["r7", "rejected"] and "consistent bias" in raters.loc["r7", "reason"]
    assert raters.loc["r8", ["p", "q"]].tolist() == [0, 0]
    assert result.rejected == ["r9"]
    assert result.rejected_table["rater"].tolist() == ["r9"]
    assert "BT.500" in raters.loc["r9", "reason"] and "0.400" in raters.loc["r9", "reason"]


def synthetic_study(seed: int = 0, items: int = 60, noise: float = 0.4) -> pd.DataFrame:
    """11 consistent raters (latent quality + noise, rounded, clipped) and one random."""
    generator = np.random.default_rng(seed)
    quality = generator.uniform(1, 5, items)
    rows = []
    for rater in range(11):
        scores = np.clip(np.rint(quality + generator.normal(0, noise, items)), 1, 5)
        rows += [(f"consistent{rater:02d}", f"item{k:03d}", s) for k, s in enumerate(scores)]
    scores = generator.integers(1, 6, items)
    rows += [("random", f"item{k:03d}", s) for k, s in enumerate(scores)]
    return pd.DataFrame(rows, columns=["rater", "item_id", "score"])


def test_random_rater_is_rejected():
    result = bt500_screen(synthetic_study(seed=0))
    assert result.rejected == ["random"]
    random_row = result.raters.set_index("rater").loc["random"]
    assert random_row["outside_ratio"] > 0.05 and random_row["balance"] < 0.3
    # Missing ratings are fine: N counts what each rater scored.
    ratings = synthetic_study(seed=1)
    ratings = ratings.drop(index=ratings.index[::7])
    result = bt500_screen(ratings)
    assert result.rejected == ["random"]
    counted = result.raters.set_index("rater")["n"].sort_index()
    assert counted.to_dict() == ratings.groupby("rater").size().to_dict()


def test_outlier_removal_hand_case():
    ratings = frame({
        # 3 x7, 1: mean 2.75, std sqrt(3.5/7) = 0.7071; |1 - 2.75| = 1.75 > 1.414: removed.
        "x": {**{f"r{k:02d}": 3 for k in range(7)}, "r07": 1},
        # 3 x10, 1, 1: mean 2.667, std 0.778; both 1s are 1.667 > 1.557 away, same value:
        # exactly one goes (the first rater in sorted order, r10).
        "y": {**{f"r{k:02d}": 3 for k in range(10)}, "r11": 1, "r10": 1},
        # 3 x10, 1, 5: both 2 > 1.706 away but on opposite sides: no single outlier.
        "z": {**{f"r{k:02d}": 3 for k in range(10)}, "r10": 1, "r11": 5},
        "w": {"r00": 2, "r01": 3, "r02": 4},  # farthest is 1 std away: nothing removed
        "v": {"r00": 1, "r01": 5},  # two scores: never removed
    })
    kept, removed = remove_outlier_scores(ratings)
    assert removed[["item_id", "rater", "score"]].values.tolist() == [
        ["x", "r07", 1.0], ["y", "r10", 1.0]]
    assert removed["item_mean"].tolist() == pytest.approx([2.75, 32 / 12])
    assert removed["item_std"].iloc[0] == pytest.approx(math.sqrt(0.5))
    assert removed.groupby("item_id").size().max() == 1
    assert len(kept) == len(ratings) - 2
    assert not ((kept["item_id"] == "x") & (kept["rater"] == "r07")).any()
    assert "outlier" in removed["reason"].iloc[0]


def test_outlier_removal_at_most_one_per_item():
    _, removed = remove_outlier_scores(synthetic_study(seed=2))
    assert len(removed) > 0
    assert removed["item_id"].is_unique


def test_mos_table_statistics():
    ratings = frame({"p": {"a": 1, "b": 2, "c": 3, "d": 5}, "q": {"a": 4}})
    table, report = mos_table(ratings, screen=False, remove_outliers=False)
    assert list(table.columns) == list(EXPORT_COLUMNS)
    row = table.set_index("item_id").loc["p"]
    values = np.array([1, 2, 3, 5], dtype=float)
    assert row["mos"] == pytest.approx(values.mean())
    assert row["std"] == pytest.approx(values.std(ddof=1))
    assert row["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2)
    assert row["ci95"] == pytest.approx(2.7175, abs=1e-3)
    assert row["n"] == 4
    single = table.set_index("item_id").loc["q"]
    assert single["mos"] == 4 and single["n"] == 1
    assert np.isnan(single["std"]) and np.isnan(single["ci95"])
    assert report.screening is None and report.removed.empty


def test_mos_table_drops_rejected_rater_and_outliers():
    ratings = synthetic_study(seed=0)
    table, report = mos_table(ratings)
    assert report.rejected == ["random"]
    counts = ratings[ratings["rater"] != "random"].groupby("item_id").size()
    removed = report.removed.groupby("item_id").size().reindex(counts.index, fill_value=0)
    assert table.set_index("item_id")["n"].tolist() == (counts - removed).tolist()
    assert not report.removed["rater"].eq("random").any()


@pytest.fixture
def study(tmp_path):
    """A study directory whose manifest holds the synthetic study's 60 AEs and one more."""
    directory = tmp_path / "study"
    directory.mkdir()
    ids = [f"item{k:03d}" for k in range(61)]
    manifest = pd.DataFrame({"id": ids[::-1], "image": "img0", "attack": "fgsm",
                             "norm": "linf", "strength": 0.01})
    manifest.to_parquet(directory / "manifest.parquet", index=False)
    return directory


def test_export_writes_csv_reports_and_study_mos(tmp_path, study):
    ratings = synthetic_study(seed=0)
    out = tmp_path / "out" / "mos.csv"
    result = export_mos(ratings, out, manifest=study / "manifest.parquet")
    written = pd.read_csv(out)
    assert list(written.columns) == ["item_id", "mos", "std", "ci95", "n"]
    assert len(written) == 60
    screening = pd.read_csv(tmp_path / "out" / "mos_screening.csv")
    assert screening.loc[screening["rejected"], "rater"].tolist() == ["random"]
    assert screening["reason"].iloc[0].startswith("rejected")
    removed = pd.read_csv(tmp_path / "out" / "mos_removed_scores.csv")
    assert len(removed) == len(result.report.removed)
    assert {"item_id", "rater", "score", "reason"} <= set(removed.columns)

    stored = load_mos(study)
    assert list(stored.columns) == ["id", "mos", "mos_std", "n_ratings", "mos_source"]
    assert set(stored["mos_source"]) == {"annotate"}
    assert (result.study.added, result.study.replaced) == (60, 0)
    assert stored["id"].tolist() == [f"item{k:03d}" for k in range(59, -1, -1)]  # manifest order
    expected = result.table.set_index("item_id").loc[stored["id"]]
    assert stored["mos"].to_numpy() == pytest.approx(expected["mos"].to_numpy())
    assert stored["mos_std"].to_numpy() == pytest.approx(expected["std"].to_numpy())
    assert stored["n_ratings"].tolist() == expected["n"].tolist()
    merged = with_mos(pd.read_parquet(study / "manifest.parquet"), study)
    assert merged["mos"].notna().sum() == 60  # item060 was never rated


def test_export_unknown_items_error(tmp_path, study):
    ratings = pd.concat([synthetic_study(seed=0),
                         frame({"ghost1": {"consistent00": 3}, "ghost2": {"random": 1}})])
    with pytest.raises(UnknownItemsError, match=r"2 rated item.*'ghost1', 'ghost2'"):
        export_mos(ratings, tmp_path / "mos.csv", manifest=study / "manifest.parquet")
    assert not (tmp_path / "mos.csv").exists() and not (study / "mos.parquet").exists()


def test_export_refuses_a_file_that_is_not_the_study_manifest(tmp_path, study):
    """The MOS goes into the manifest's study, ordered by that study's manifest: another
    table standing in for it (here a copy) would be read instead of the study's own."""
    other = study / "manifest_copy.parquet"
    other.write_bytes((study / "manifest.parquet").read_bytes())
    with pytest.raises(ValueError, match="not a study manifest"):
        export_mos(synthetic_study(seed=0), tmp_path / "mos.csv", manifest=other)
    assert not (tmp_path / "mos.csv").exists() and not (study / "mos.parquet").exists()


def test_export_options_and_bad_ratings(tmp_path):
    ratings = synthetic_study(seed=0)
    result = export_mos(ratings, tmp_path / "plain.csv", screen=False, remove_outliers=False)
    assert result.report.rejected == [] and result.report.removed.empty
    assert (result.table["n"] == 12).all()
    assert pd.read_csv(tmp_path / "plain_screening.csv").empty
    twice = pd.concat([ratings, ratings.head(1)])
    with pytest.raises(ValueError, match="more than once"):
        mos_table(twice)
    with pytest.raises(ValueError, match="lack column"):
        mos_table(ratings.drop(columns="score"))
    with pytest.raises(FileNotFoundError, match="rating database"):
        export_mos(tmp_path / "missing.sqlite", tmp_path / "x.csv")


def test_cli_export(tmp_path, study, monkeypatch, capsys):
    ratings = synthetic_study(seed=0)
    monkeypatch.setattr(export_module, "read_ratings", lambda database: ratings)
    top = argparse.ArgumentParser()
    annotate_export.add_commands(top.add_subparsers())
    out = tmp_path / "mos.csv"
    arguments = top.parse_args(["export", "--db", "ratings.sqlite", "--out", str(out),
                                "--manifest", str(study / "manifest.parquet")])
    assert arguments.handler(arguments) == 0
    printed = capsys.readouterr().out
    assert "1 rater(s) rejected" in printed and "random: rejected" in printed
    assert out.is_file() and (study / "mos.parquet").is_file()
    assert "MOS source 'annotate:ratings.sqlite': 60 added, 0 replaced" in printed
    assert "no MOS from other sources" in printed
    # Another database scoring the same items is refused unless --replace-source.
    other = ["export", "--db", "other.sqlite", "--out", str(out),
             "--manifest", str(study / "manifest.parquet")]
    arguments = top.parse_args(other)
    with pytest.raises(CommandError, match=r"60 from 'annotate:ratings\.sqlite'"):
        arguments.handler(arguments)
    arguments = top.parse_args([*other, "--replace-source"])
    assert arguments.handler(arguments) == 0
    assert "replaced the MOS of 60 item(s) from 'annotate:ratings.sqlite'" in (
        capsys.readouterr().out)

    arguments = top.parse_args(["export", "--db", "x", "--out", str(out), "--no-screening",
                                "--keep-outliers"])
    assert not arguments.screen and not arguments.remove_outliers
    assert arguments.handler(arguments) == 0
    assert "skipped" in capsys.readouterr().out

    monkeypatch.setattr(export_module, "read_ratings",
                        lambda database: pd.concat([ratings, frame({"nope": {"r": 1}})]))
    arguments = top.parse_args(["export", "--db", "x", "--out", str(out),
                                "--manifest", str(study / "manifest.parquet")])
    with pytest.raises(CommandError, match="'nope'"):
        arguments.handler(arguments)


def test_export_from_rating_store(tmp_path):
    from advqa.annotate.store import RatingStore

    database = tmp_path / "ratings.sqlite"
    store = RatingStore(database)
    try:
        tokens = store.invite(4)
        for token, scores in zip(tokens, [(1, 4), (2, 4), (2, 5), (1, 5)], strict=True):
            store.rate(token, "ae1", scores[0])
            store.rate(token, "ae2", scores[1])
        store.rate(tokens[0], "ae1", 2)  # an update, not a second score
    finally:
        store.close()
    result = export_mos(database, tmp_path / "mos.csv")
    table = result.table.set_index("item_id")
    assert table["n"].tolist() == [4, 4]
    assert table["mos"].tolist() == pytest.approx([1.75, 4.5])
    assert result.report.n_raters == 4 and result.report.rejected == []
