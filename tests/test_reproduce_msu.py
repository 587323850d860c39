"""``advqa reproduce msu`` at smoke scale: the files, the leaderboard they copy, the split."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from advqa.experiments import metric_robustness as msu
from advqa.experiments import reproduce
from advqa.jobs import Ledger
from advqa.robustness.benchmark import STEPPED_ATTACKS, step_label


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the suite shares two cores
    try:
        out = tmp_path_factory.mktemp("repro-msu")
        written = reproduce("msu", out, scale="smoke")
    finally:
        torch.set_num_threads(threads)
    return out, written


def comparison(out) -> pd.DataFrame:
    return pd.read_parquet(out / "comparison.parquet")


def test_smoke_writes_every_file_it_lists(smoke):
    out, written = smoke
    assert {"comparison.csv", "comparison.parquet", "reproduction.md", "reproduction.json",
            "gain_vs_psnr.png", "gain_vs_step.png", "scores_by_metric.png",
            "leaderboard.html"} <= {
        path.name for path in written}
    record = json.loads((out / "reproduction.json").read_text())
    assert record["name"] == "msu" and record["settings"]["scale"] == "smoke"
    assert record["settings"]["benchmark"]["mifgsm_form"] == "msu"
    assert record["settings"]["benchmark"]["amplitudes"] == list(msu.SEED_AMPLITUDES)
    for name in record["files"]:
        assert (out / name).is_file(), name
    assert sum(name.endswith(".png") for name in record["files"]) == 3
    text = (out / "reproduction.md").read_text()
    assert "SMOKE" in text and "| | paper | ours | difference | note |" in text
    assert text.count("![") == 3


def test_split_is_recorded_disjoint_and_covers_the_images(smoke):
    from advqa.data import load_source

    out, _ = smoke
    data = json.loads((out / "reproduction.json").read_text())["data"]
    train, test, images = set(data["train"]), set(data["test"]), data["images"]
    assert train and test and not train & test
    assert train | test == set(images) and len(data["train"]) + len(data["test"]) == len(images)
    assert images == list(load_source("photos").names)[:len(images)]
    assert data["names_sha256"] == hashlib.sha256("\n".join(images).encode()).hexdigest()
    items = pd.read_parquet(out / "benchmark" / "items.parquet")
    assert set(items["image"]) == test  # only the test images are attacked


def test_cells_hold_their_invariants(smoke):
    out, _ = smoke
    frame = comparison(out)
    both = frame.dropna(subset=["paper", "ours"])
    assert ((both["difference"] - (both["ours"] - both["paper"])).abs() < 1e-9).all()
    assert frame.loc[frame["paper"].isna() | frame["ours"].isna(), "difference"].isna().all()
    assert frame.loc[frame["unit"] == "%", "ours"].dropna().between(0, 100).all()
    # The seed text publishes no per-metric number: no paper cell may be filled in.
    assert not msu.PUBLISHED and frame["paper"].isna().all()
    assert "publishes no per-metric result" in (out / "reproduction.md").read_text()


def test_leaderboard_cells_are_the_benchmarks_leaderboard(smoke):
    out, _ = smoke
    frame = comparison(out)
    board = pd.read_parquet(out / "benchmark" / "leaderboard.parquet")
    metrics = list(board["metric"])
    assert sorted(metrics) == ["piqe", "psnr"]
    for column, label in [("mean_rank", "mean rank"), *msu.SCORES.items()]:
        table = frame[frame["table"].str.startswith(f"Leaderboard: {label}")]
        assert list(table["row"]) == metrics, label  # in rank order
        for metric, ours in zip(table["row"], table["ours"], strict=True):
            theirs = board.set_index("metric").loc[metric, column]
            assert (pd.isna(ours) and pd.isna(theirs)) or ours == pytest.approx(theirs)


def test_each_attack_enters_at_its_strongest_step_recomputed_from_items(smoke):
    out, _ = smoke
    items = pd.read_parquet(out / "benchmark" / "items.parquet")
    items = items[items["error"].isna()]
    with Ledger(out / "benchmark" / "benchmark.sqlite", "benchmark-calibrate") as ledger:
        facts = {row["id"]: row["facts"] for row in ledger.rows()}
    scores = pd.read_parquet(out / "benchmark" / "scores.parquet")
    ranked = scores[scores["ranked"]].set_index(["metric", "attack"])
    frame = comparison(out)
    checked = 0
    for (metric, attack), rows in items.groupby(["metric", "attack"]):
        span = facts[metric]["high"] - facts[metric]["low"]
        cell = frame[(frame["table"] == f"Absolute gain per attack: {attack}")
                     & (frame["row"] == metric)]["ours"].item()
        if attack in STEPPED_ATTACKS:
            means = rows.groupby("step")["gain"].mean()  # sorted by step: ties → smaller
            best = means.index[int(means.to_numpy().argmax())]
            assert ranked.loc[(metric, attack), "step"] == step_label(best), (metric, attack)
            assert cell == pytest.approx(means[best] / span)
            checked += 1
        elif rows["amplitude"].isna().all():
            assert cell == pytest.approx(rows["gain"].mean() / span)
        else:  # a UAP: the mean over amplitudes of the mean gain
            assert cell == pytest.approx(rows.groupby("amplitude")["gain"].mean().mean() / span)
    assert checked == 2  # ifgsm on both metrics, at two steps each
    assert items[items["attack"] == "ifgsm"]["step"].nunique() == 2


def test_a_rerun_recomputes_nothing(smoke, monkeypatch):
    from advqa.robustness import benchmark

    out, _ = smoke
    before = (out / "comparison.csv").read_text()
    with Ledger(out / "benchmark" / "benchmark.sqlite", "benchmark") as ledger:
        finished = ledger.finished()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit was recomputed")

    for name in ("run_unit", "prepare_metric", "train_unit"):
        monkeypatch.setattr(benchmark, name, refuse)
    reproduce("msu", out, scale="smoke")
    assert (out / "comparison.csv").read_text() == before
    with Ledger(out / "benchmark" / "benchmark.sqlite", "benchmark") as ledger:
        assert ledger.finished() == finished


def test_the_command_resumes_and_bad_scale_is_refused(smoke, capsys, tmp_path):
    from advqa.cli.main import main

    out, _ = smoke
    assert main(["reproduce", "msu", "--scale", "smoke", "--out", str(out), "--no-progress"]) == 0
    assert f"wrote {out / 'reproduction.md'}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="scale"):
        reproduce("msu", tmp_path, scale="huge")
