"""gate-eval with Fool_EV: Tables II/III, Figure 4, the Fool_EV rows and its ledger unit.

One small gate-eval (3 photos, 2 splits, 2 Fool_GD and 3 Fool_EV images evolved for 2
generations of 8) is shared by the module; the other runs reuse its ledger.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil

import numpy as np
import pytest

EV_COUNT = 3
GD_COUNT = 2
PHOTOS = 3


def rows(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def number(text: str) -> float:
    return float("nan") if text == "" else float(text)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch/OpenMP thread: on a shared 2-core machine, two threads per process
    slow these small runs down many times over (the checks here do not depend on it)."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from advqa.data import load_samples, save_png

    folder = tmp_path_factory.mktemp("gate-eval") / "photos"
    folder.mkdir()
    for sample in load_samples("imagenet")[:PHOTOS]:
        save_png(sample.image, folder / f"{sample.name}.png")
    return folder


def job(photos):
    from advqa.workflows.gate import GateJob

    return GateJob(source=str(photos), squeeze=False, uap_epochs=1)


def run(photos, out, **options):
    from advqa.workflows.gate import evaluate_gate

    settings = {"repeats": 2, "fooling": GD_COUNT, "fooling_ev": EV_COUNT,
                "ev_generations": 2, "ev_population": 8, **options}
    return evaluate_gate(job(photos), out, **settings)


@pytest.fixture(scope="module")
def evaluated(photos):
    out = photos.parent / "eval"
    return out, run(photos, out)


def test_gate_eval_writes_tables_ii_iii_and_figure_4(evaluated):
    out, written = evaluated
    names = {path.name for path in written}
    assert {"table_iv.csv", "table_v.csv", "table2_quality.csv", "table3_confidence.csv",
            "figure4_tsne.png", "summary.json"} <= names
    assert all(path.is_file() for path in written)
    sizes = json.loads((out / "summary.json").read_text())["sizes"]
    assert sizes["fooling_ev"] == EV_COUNT and sizes["fooling"] == GD_COUNT
    expected = {"clean": sizes["clean"], "uap": sizes["adversarial"], "ev": EV_COUNT,
                "gd": GD_COUNT}

    table_ii = rows(out / "table2_quality.csv")
    assert [row["group"] for row in table_ii] == ["clean", "uap", "ev", "gd"]
    for row in table_ii:
        assert int(row["Number of images"]) == expected[row["group"]]
        median, mean, std = (number(row[c]) for c in ("Median", "Mean", "Std."))
        assert 0 <= median <= 1 and 0 <= mean <= 1 and std >= 0

    table_iii = rows(out / "table3_confidence.csv")
    assert [row["group"] for row in table_iii] == ["ev", "gd", "uap", "clean"]
    for row in table_iii:
        median, mean, std = (number(row[c]) for c in ("Median", "Mean", "Std."))
        assert 0 <= median <= 1 and 0 <= mean <= 1 and 0 <= std <= 0.5 + 1e-4

    png = (out / "figure4_tsne.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    from PIL import Image

    with Image.open(out / "figure4_tsne.png") as image:
        image.verify()


def test_tables_iv_v_have_a_fool_ev_row_like_fool_gd(evaluated):
    out, _ = evaluated
    for table in ("table_iv.csv", "table_v.csv"):
        table_rows = rows(out / table)
        for method in {row["method"] for row in table_rows}:
            groups = [row["group"] for row in table_rows if row["method"] == method]
            assert groups.index("fooling_ev") + 1 == groups.index("fooling"), groups
        for row in table_rows:
            if row["group"] == "fooling_ev":
                assert number(row["n_mean"]) == EV_COUNT
                assert row["baseline1_accuracy_mean"] == ""   # no true label
                assert 0 <= number(row["detection_rate_mean"]) <= 1


def test_fool_ev_unit_resumes_from_the_ledger(evaluated, photos, monkeypatch):
    """A second run recomputes no generation unit (Fool_EV included) and writes the
    same tables."""
    from advqa.detect import fooling_ev
    from advqa.detect import groups as groups_module

    out, _ = evaluated
    tables = ("table_iv.csv", "table_v.csv", "table2_quality.csv", "table3_confidence.csv")
    before = {name: (out / name).read_bytes() for name in tables}

    def recomputed(*args, **kwargs):
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr(groups_module, "group_part", recomputed)
    monkeypatch.setattr(fooling_ev, "evolve_fooling_images", recomputed)
    run(photos, out)
    assert {name: (out / name).read_bytes() for name in tables} == before


def test_fooling_ev_zero_omits_the_group_and_reuses_every_other_unit(evaluated, photos,
                                                                      monkeypatch, capsys):
    """``--fooling-ev 0`` (CLI): no EV rows or points anywhere; the other units come
    from the ledger, whose keys do not depend on the Fool_EV settings."""
    from advqa.cli import gate as gate_cli
    from advqa.detect import groups as groups_module

    source, _ = evaluated
    out = source.parent / "no-ev"
    out.mkdir()
    shutil.copy(source / "ledger.sqlite", out / "ledger.sqlite")

    def recomputed(*args, **kwargs):
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr(groups_module, "group_part", recomputed)
    top = argparse.ArgumentParser(prog="advqa")
    gate_cli.add_commands(top.add_subparsers().add_parser("detect").add_subparsers())
    arguments = top.parse_args([
        "detect", "gate-eval", "--source", str(photos), "--no-squeeze", "--uap-epochs", "1",
        "--repeats", "2", "--fooling", str(GD_COUNT), "--fooling-ev", "0", "--out", str(out)])
    assert arguments.handler(arguments) == 0
    assert "table2_quality.csv" in capsys.readouterr().out

    for table in ("table_iv.csv", "table_v.csv", "runs.csv"):
        assert "fooling_ev" not in {row["group"] for row in rows(out / table)}
        assert "fooling" in {row["group"] for row in rows(out / table)}
    assert [row["group"] for row in rows(out / "table2_quality.csv")] == ["clean", "uap", "gd"]
    assert [row["group"] for row in rows(out / "table3_confidence.csv")] == [
        "gd", "uap", "clean"]
    summary = json.loads((out / "summary.json").read_text())
    assert "fooling_ev" not in summary["sizes"] and "fooling_ev" not in summary["groups"]
    assert summary["settings"]["fooling_ev"] == 0
    assert (out / "figure4_tsne.png").stat().st_size > 0
    # The Fool_GD rows are the same as with Fool_EV (same images, same splits' tests).
    gd = [row for row in rows(source / "table_iv.csv") if row["group"] == "fooling"]
    assert gd == [row for row in rows(out / "table_iv.csv") if row["group"] == "fooling"]


def test_gate_eval_help_documents_the_fool_ev_flags():
    from advqa.cli import gate as gate_cli

    top = argparse.ArgumentParser(prog="advqa")
    gate_cli.add_commands(top.add_subparsers().add_parser("detect").add_subparsers())
    arguments = top.parse_args(["detect", "gate-eval", "--out", "x"])
    assert (arguments.fooling_ev, arguments.ev_generations, arguments.ev_population) == (
        10, 20, 32)
    evaluate = top._subparsers._group_actions[0].choices["detect"]._subparsers \
        ._group_actions[0].choices["gate-eval"]
    text = " ".join(evaluate.format_help().split())
    for flag in ("--fooling-ev", "--ev-generations", "--ev-population", "Fool_EV",
                 "table2_quality.csv", "table3_confidence.csv", "figure4_tsne.png"):
        assert flag in text


def test_fool_ev_settings_key_only_the_fool_ev_unit():
    from advqa.detect.groups import GroupSettings, fooling_ev_targets

    base = GroupSettings(model="m", weights=None, quality={})
    evolved = GroupSettings(model="m", weights=None, quality={}, fooling_ev_count=5,
                            fooling_ev_generations=7)
    assert base.describe() == evolved.describe()
    assert not any(key.startswith("fooling_ev") for key in base.describe())
    assert evolved.describe_ev()["fooling_ev_count"] == 5
    assert base.describe_ev() != evolved.describe_ev()
    targets = fooling_ev_targets(5, 1000, seed=0)
    assert len(set(targets.tolist())) == 5
    assert np.array_equal(targets, fooling_ev_targets(5, 1000, seed=0))
    assert not np.array_equal(targets, fooling_ev_targets(5, 1000, seed=1))
    with pytest.raises(ValueError, match="distinct target classes"):
        fooling_ev_targets(11, 10, seed=0)


@pytest.mark.parametrize("option", [{"fooling_ev": -1}, {"ev_generations": 0},
                                    {"ev_population": 0}, {"fooling_ev": True}])
def test_gate_eval_rejects_bad_fool_ev_settings(tmp_path, option):
    from advqa.workflows.gate import GateJob, evaluate_gate

    with pytest.raises(ValueError, match="must be an integer"):
        evaluate_gate(GateJob(source=str(tmp_path)), tmp_path / "out", **option)
    assert not (tmp_path / "out").exists()   # refused before any work


# --------------------------------------------------------------- Fashion-MNIST (grey, 28×28)

GREY_DISTORTIONS = ("blur", "noise", "jpeg")


def grey_job(**options):
    from advqa.workflows.gate import GateJob

    settings = {"source": "fashion-mnist", "model": "fashion-mnist-cnn", "quality": "brisque",
                "distortions": GREY_DISTORTIONS, "uap_epochs": 1, **options}
    return GateJob(**settings)


@pytest.fixture(scope="module")
def grey_evaluated(tmp_path_factory):
    """gate-eval on the 20 Fashion-MNIST samples with the grey 28×28 CNN, squeezing on."""
    from advqa.workflows.gate import evaluate_gate

    out = tmp_path_factory.mktemp("gate-eval-fmnist") / "eval"
    # BRISQUE's photo range puts most 28×28 garments below 0.3: the run says so
    with pytest.warns(UserWarning, match="Baseline-2 and the gate will reject most clean"):
        written = evaluate_gate(grey_job(), out, repeats=2, fooling=GD_COUNT,
                                fooling_ev=EV_COUNT, ev_generations=2, ev_population=8)
    return out, written


def test_fashion_mnist_gate_eval_tables_have_every_group(grey_evaluated):
    out, written = grey_evaluated
    assert {"table_iv.csv", "table_v.csv", "per_distortion.csv", "table2_quality.csv",
            "table3_confidence.csv", "figure4_tsne.png", "summary.json"} <= {
        path.name for path in written}
    groups = ["adversarial", "distorted", "fooling_ev", "fooling", "clean"]
    table_iv, table_v = rows(out / "table_iv.csv"), rows(out / "table_v.csv")
    assert {row["method"] for row in table_iv} == {"baseline-1 (no gate)",
                                                   "baseline-2 (quality)"}
    assert {row["method"] for row in table_v} == {"squeeze", "svm",
                                                  "gate (svm+quality+squeeze)"}
    for table in (table_iv, table_v):
        for method in {row["method"] for row in table}:
            assert [row["group"] for row in table if row["method"] == method] == groups
    summary = json.loads((out / "summary.json").read_text())
    sizes = summary["sizes"]
    assert sizes["distorted"] == len(GREY_DISTORTIONS) * 5 * sizes["clean"]
    assert summary["settings"]["distortions"] == list(GREY_DISTORTIONS)
    assert summary["groups"]["distortions"] == list(GREY_DISTORTIONS)
    assert [row["group"] for row in rows(out / "table2_quality.csv")] == [
        "clean", "uap", "ev", "gd"]


def test_fashion_mnist_per_distortion_has_three_kinds_by_five_levels(grey_evaluated):
    out, _ = grey_evaluated
    table = rows(out / "per_distortion.csv")
    for method in {row["method"] for row in table}:
        cells = [(row["kind"], int(row["level"])) for row in table if row["method"] == method]
        assert sorted(cells) == sorted((kind, level) for kind in GREY_DISTORTIONS
                                       for level in range(1, 6))
    assert "jpeg2000" not in {row["kind"] for row in table}


def test_fashion_mnist_groups_are_one_channel_28px(grey_evaluated):
    """Every generated group is at the grey victim's input: the UAP, Fool_GD and Fool_EV
    images are 1×28×28 (the Fool_EV genome is the victim's 28², not the default 64²)."""
    out, _ = grey_evaluated
    groups = json.loads((out / "summary.json").read_text())["groups"]
    assert groups["image_shape"] == [1, 28, 28]
    assert groups["fooling_shape"] == [1, 28, 28]
    assert groups["fooling_ev"]["image_shape"] == [1, 28, 28]
    assert groups["fooling_ev"]["fooling_ev_size"] == 64
    assert len(groups["fooling_ev"]["targets"]) == EV_COUNT
    assert all(0 <= target < 10 for target in groups["fooling_ev"]["targets"])
    assert 0 <= groups["uap_fooling_rate"] <= 1
    assert set(groups["quality_unscored"]) == {"clean", "adversarial", "distorted",
                                               "fooling", "fooling_ev"}


def test_fashion_mnist_jpeg2000_is_refused_with_a_clear_message(tmp_path, monkeypatch,
                                                                 capsys):
    """JPEG2000 on 1×28×28: `advqa detect gate-eval` exits 2 with one line naming the
    fix, before any unit runs (no traceback from Pillow)."""
    from advqa.cli.main import main
    from advqa.detect import groups as groups_module

    def recomputed(*args, **kwargs):
        raise AssertionError("a unit ran")

    monkeypatch.setattr(groups_module, "group_part", recomputed)
    code = main(["detect", "gate-eval", "--source", "fashion-mnist", "--model",
                 "fashion-mnist-cnn", "--quality", "brisque", "--distortions",
                 "blur,jpeg2000", "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2
    assert "advqa: error: JPEG2000 levels are not distinct on (1, 28, 28)" in error
    assert "--distortions blur" in error and "Traceback" not in error
    assert not (tmp_path / "out" / "ledger.sqlite").exists()


def test_gate_eval_distortions_option_is_validated(tmp_path):
    from advqa.cli import gate as gate_cli
    from advqa.cli.common import CommandError
    from advqa.detect.distortions import DISTORTIONS

    top = argparse.ArgumentParser(prog="advqa")
    gate_cli.add_commands(top.add_subparsers().add_parser("detect").add_subparsers())
    default = top.parse_args(["detect", "gate-eval", "--out", "x"])
    assert tuple(default.distortions) == DISTORTIONS and default.uap_images is None
    assert gate_cli._job(default).distortions == DISTORTIONS
    chosen = top.parse_args(["detect", "gate-eval", "--out", "x", "--distortions",
                             "blur, noise,jpeg", "--uap-images", "500"])
    job = gate_cli._job(chosen)
    assert job.distortions == GREY_DISTORTIONS and job.uap_images == 500
    for bad, message in (("blur,fog", "unknown distortion.*'fog'"),
                         ("blur,blur", "repeat"), (",", "at least one")):
        arguments = top.parse_args(["detect", "gate-eval", "--out", "x", "--distortions", bad])
        with pytest.raises(CommandError, match=message):
            gate_cli._job(arguments)


def test_niqe_on_28px_is_refused_before_any_unit(tmp_path, monkeypatch):
    from advqa.detect import groups as groups_module
    from advqa.workflows.gate import evaluate_gate

    def recomputed(*args, **kwargs):
        raise AssertionError("a unit ran")

    monkeypatch.setattr(groups_module, "group_part", recomputed)
    with pytest.raises(ValueError, match=r"NIQE needs images of at least 96×192.*28×28"):
        evaluate_gate(grey_job(quality="niqe"), tmp_path / "out", repeats=1, fooling=0,
                      fooling_ev=0)


def test_distortions_key_only_the_distorted_units():
    """The distortion list is not part of the UAP's (or any other unit's) key: adding or
    dropping a type reuses every finished unit but its own (distortion, level) ones."""
    from advqa.detect.groups import GroupSettings

    every = GroupSettings(model="m", weights=None, quality={})
    grey = GroupSettings(model="m", weights=None, quality={}, distortions=GREY_DISTORTIONS)
    assert every.describe() == grey.describe() and "distortions" not in every.describe()
