"""``advqa reproduce``: the comparison files and the gate reproduction at smoke scale."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from advqa.experiments import reproduce
from advqa.experiments import robust_classification as paper
from advqa.experiments.comparison import Cell, markdown


def test_a_cell_without_a_value_shows_no_difference():
    assert Cell("T", "d", "r", 55.42, 42.84, "%").difference == pytest.approx(42.84 - 55.42)
    assert Cell("T", "d", "r", None, 1.0).difference is None
    assert Cell("T", "d", "r", 1.0, None).difference is None
    text = markdown([Cell("Table V", "photos", "svm: UAP detection", 65.95, 83.33, "%"),
                     Cell("Table V", "photos", "not reported", None, 0.5)])
    assert "| | paper | ours | difference | note |" in text
    assert "| svm: UAP detection | 65.95% | 83.33% | +17.38 pp |  |" in text
    assert "| not reported | – | 0.500 | – |  |" in text


def test_unknown_reproduction_and_scale_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"valid: .*msu"):
        reproduce("nope", tmp_path)
    with pytest.raises(ValueError, match="scale"):
        reproduce("gate", tmp_path, scale="huge")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the suite shares two cores
    try:
        out = tmp_path_factory.mktemp("repro-gate")
        written = reproduce("gate", out, scale="smoke")
    finally:
        torch.set_num_threads(threads)
    return out, written


def test_gate_smoke_writes_every_file(smoke):
    out, written = smoke
    names = {path.name for path in written}
    assert {"comparison.csv", "comparison.parquet", "reproduction.md",
            "reproduction.json"} <= names
    record = json.loads((out / "reproduction.json").read_text())
    assert record["settings"]["scale"] == "smoke" and record["versions"]["torch"]
    assert record["data"]["fmnist"]["source_images"] == 20
    assert set(record["data"]["models"]) == {"dtniq-f-proxy", "dtniq-f-proxy-fmnist"}
    for name in record["files"]:
        assert (out / name).is_file(), name
    text = (out / "reproduction.md").read_text()
    assert "SMOKE SCALE" in text and "| | paper | ours | difference | note |" in text
    assert text.count("![") == 3  # Fig. 3 and Fig. 4 on both data sets


def test_gate_smoke_cells_hold_their_invariants(smoke):
    out, _ = smoke
    frame = pd.read_parquet(out / "comparison.parquet")
    assert frame.equals(pd.read_parquet(out / "comparison.parquet"))
    both = frame.dropna(subset=["paper", "ours"])
    assert (both["difference"] - (both["ours"] - both["paper"])).abs().max() < 1e-9
    rates = frame[frame["unit"] == "%"]
    assert rates["ours"].dropna().between(0, 100).all()
    stats = frame[frame["table"].str.startswith(("Table II", "Table III"))]
    assert stats["ours"].between(0, 1).all()
    assert (stats[stats["row"].str.endswith(": std")]["ours"] >= 0).all()
    # Every published number of Tables II-V appears, with ours beside it, for both data sets.
    for dataset in frame[frame["table"].str.startswith("Table V")]["dataset"].unique():
        cells = frame[(frame["dataset"] == dataset) & frame["paper"].notna()]
        expected = (3 * len(paper.TABLE_II) + 3 * len(paper.TABLE_III) + len(paper.TABLE_IV)
                    + len(paper.TABLE_V))
        assert len(cells) == expected, dataset
        assert cells["ours"].notna().all(), cells[cells["ours"].isna()]
    # "judged fit" is 100 − the clean detection rate of the SVM in the run's Table V.
    table_v = pd.read_csv(out / "fmnist" / "table_v.csv")
    clean = table_v[(table_v["method"] == "svm") & (table_v["group"] == "clean")]
    fit = frame[frame["row"] == "svm: clean judged fit"]
    fit = fit[fit["dataset"].str.startswith("Fashion")]["ours"].item()
    assert math.isclose(fit, 100 - 100 * clean["detection_rate_mean"].item())


def test_gate_smoke_resumes_without_recomputing(smoke, monkeypatch):
    out, _ = smoke
    before = (out / "comparison.csv").read_text()
    from advqa.detect import groups

    def refuse(*args, **kwargs):
        raise AssertionError("a finished unit was recomputed")

    monkeypatch.setattr(groups, "group_part", refuse)
    reproduce("gate", out, scale="smoke")
    assert (out / "comparison.csv").read_text() == before


def test_the_command_resumes_the_smoke_run(smoke, capsys):
    from advqa.cli.main import main

    out, _ = smoke
    assert main(["reproduce", "gate", "--scale", "smoke", "--out", str(out), "--no-progress"]) == 0
    assert f"wrote {out / 'reproduction.md'}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def stego(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("repro-stego")
        reproduce("stego", out, scale="smoke")
    finally:
        torch.set_num_threads(threads)
    return out


def test_stego_smoke_has_table_ii_beside_the_paper(stego):
    from advqa.experiments import steganalysis

    frame = pd.read_parquet(stego / "comparison.parquet")
    table = frame[frame["table"] == "Table II (TPR)"]
    assert len(table) == 6 and table["paper"].notna().all() and table["ours"].notna().all()
    for role in ("natural", "secret"):
        rows = table[table["row"].str.startswith(role)]
        eps = [float(row.split("= ")[1]) for row in rows["row"]]
        assert eps == sorted(eps)
        assert rows["ours"].is_monotonic_increasing, rows  # TPR non-decreasing in ε
        for epsilon, paper_value in zip(eps, rows["paper"], strict=True):
            column = 0 if role == "natural" else 1
            assert paper_value == pytest.approx(100 * steganalysis.TABLE_II[epsilon][column])
    results = pd.read_csv(stego / "results.csv")
    assert sorted(table["ours"]) == pytest.approx(sorted(100 * results["tpr"]))
    figures = frame[frame["table"].str.startswith("Figures")]
    auc = figures[figures["row"].str.contains("AUC")]["ours"]
    assert auc.between(0, 1).all() and len(auc) == 6
    assert figures[figures["unit"] == "%"]["ours"].between(0, 100).all()
    benign = frame[frame["table"] == "Benign images"]
    assert benign["paper"].item() == 0.0 and 0 <= benign["ours"].item() <= 100
    record = json.loads((stego / "reproduction.json").read_text())
    assert record["data"]["test_images"] == 40 and "fig2_tpr.png" in record["files"]
    assert "SMOKE SCALE" in (stego / "reproduction.md").read_text()


def test_stego_smoke_has_figure4_minimum_and_the_victims_records(stego):
    from advqa.models import fashion_mnist

    frame = pd.read_parquet(stego / "comparison.parquet")
    results = pd.read_csv(stego / "results.csv")
    minimum = frame[frame["table"] == "Figure 4 (lowest accuracy over ε)"].set_index("row")
    for model, role in (("fashion-mnist-cnn", "natural"), ("fashion-mnist-cnn-adv", "secret")):
        lowest = results[results["model"] == model]["pipeline_accuracy"].min()
        assert minimum.loc[f"{role}: detector then classifier", "ours"] == pytest.approx(
            100 * lowest)
    victims = frame[frame["table"].str.startswith("Victims")].set_index("row")
    record = fashion_mnist.read_sidecar(True)
    assert victims.loc["secret: clean test accuracy", "ours"] == pytest.approx(
        100 * record["test_accuracy"]["clean"])
    assert victims.loc["secret: training time (s)", "ours"] == record["train_seconds"]
