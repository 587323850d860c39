"""The IQA-metric robustness benchmark: units, store, resumption, executors, failures."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pandas as pd
import pytest
import torch

from advqa.cli.main import main
from advqa.quality import MetricInfo, get_metric
from advqa.robustness import benchmark
from advqa.robustness.benchmark import ImageSet, Settings, load_image_set, run_benchmark
from advqa.robustness.objective import jpeg_copy

SIZE = 192  # the smallest square NIQE accepts is 96×192: 192² keeps NIQE usable
FAST = Settings(amplitudes=(0.4, 0.8), uap={"epochs": 1})


@pytest.fixture(scope="module")
def image_sets():
    photos = load_image_set("photos", size=SIZE)
    train, test = benchmark.split_image_set(photos, seed=0)
    return (ImageSet(train.dataset, train.names[:3], train.images[:3]),
            ImageSet(test.dataset, test.names[:3], test.images[:3]))


@pytest.fixture(scope="module")
def local_run(image_sets, tmp_path_factory):
    train, test = image_sets
    out = tmp_path_factory.mktemp("bench")
    return run_benchmark(["psnr", "gmsd"], ["ifgsm", "cumulative-uap"], train, test, out,
                         settings=FAST, progress=False)


def test_items_have_one_row_per_image_and_unit(local_run, image_sets):
    items = local_run.items
    assert list(items.columns) == benchmark.ITEM_COLUMNS
    # 2 metrics × (ifgsm + 2 UAP amplitudes) × 3 test images
    assert len(items) == 2 * 3 * 3
    assert not items.duplicated(["metric", "attack", "amplitude", "image"]).any()
    assert items.error.isna().all()
    assert set(items.amplitude.dropna()) == {0.4, 0.8}
    on_disk = pd.read_parquet(local_run.out / "items.parquet")
    pd.testing.assert_frame_equal(on_disk, items)
    assert (local_run.out / "items.csv").is_file()
    assert (local_run.out / "leaderboard.html").is_file()
    assert (local_run.out / "uaps" / "cumulative-uap-psnr.npy").is_file()


def test_clean_scores_are_the_metric_on_the_jpeg_start(local_run, image_sets):
    _, test = image_sets
    start = jpeg_copy(test.images, quality=FAST.jpeg_quality)
    expected = get_metric("psnr")(start, test.images)
    rows = local_run.items.query("metric == 'psnr' and attack == 'ifgsm'")
    torch.testing.assert_close(torch.tensor(rows.clean.to_numpy()), expected.double(),
                               rtol=1e-5, atol=1e-5)


def test_gain_is_oriented_toward_better(local_run):
    items = local_run.items
    psnr = items.query("metric == 'psnr'")
    gmsd = items.query("metric == 'gmsd'")
    torch.testing.assert_close(torch.tensor(psnr.gain.to_numpy()),
                               torch.tensor((psnr.attacked - psnr.clean).to_numpy()))
    torch.testing.assert_close(torch.tensor(gmsd.gain.to_numpy()),
                               torch.tensor((gmsd.clean - gmsd.attacked).to_numpy()))
    # I-FGSM at the benchmark's settings does raise PSNR over the JPEG start.
    assert (items.query("metric == 'psnr' and attack == 'ifgsm'").gain > 0).all()


def test_visibility_columns_match_direct_psnr(local_run, image_sets):
    rows = local_run.items
    assert (rows.mse > 0).all()
    expected = 10 * numpy.log10(1 / rows.mse.to_numpy())
    numpy.testing.assert_allclose(rows.psnr.to_numpy(), expected, rtol=1e-3)


def test_rerun_is_a_no_op(local_run, image_sets, monkeypatch):
    train, test = image_sets

    def fail(*_arguments, **_options):
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr(benchmark, "run_unit", fail)
    monkeypatch.setattr(benchmark, "prepare_metric", fail)
    again = run_benchmark(["psnr", "gmsd"], ["ifgsm", "cumulative-uap"], train, test,
                          local_run.out, settings=FAST, progress=False)
    pd.testing.assert_frame_equal(again.items, local_run.items)


def test_other_settings_in_the_same_folder_are_refused(local_run, image_sets):
    train, test = image_sets
    with pytest.raises(ValueError, match="other settings"):
        run_benchmark(["psnr"], ["ifgsm"], train, test, local_run.out,
                      settings=Settings(eps=4 / 255, amplitudes=(0.4, 0.8)), progress=False)


@pytest.mark.parametrize("damage", ["array only", "sidecar only", "checksum mismatch"])
def test_a_half_written_uap_is_retrained_on_resume(local_run, image_sets, tmp_path, monkeypatch,
                                                   damage):
    from advqa.robustness import uap as uap_module
    from advqa.robustness.uap import UAP

    train, test = image_sets
    real = uap_module.atomic_write_bytes

    def killed_at_sidecar(path, data):
        if str(path).endswith(".json"):
            raise KeyboardInterrupt  # the kill: between the .npy and its sidecar
        return real(path, data)

    monkeypatch.setattr(uap_module, "atomic_write_bytes", killed_at_sidecar)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(["psnr"], ["cumulative-uap"], train, test, tmp_path, settings=FAST,
                      progress=False)
    monkeypatch.undo()
    array = tmp_path / "uaps" / "cumulative-uap-psnr.npy"
    sidecar = array.with_suffix(".json")
    assert array.is_file() and not sidecar.exists()
    if damage != "array only":  # a sidecar of another perturbation (sidecar-first writers)
        other = UAP(torch.zeros(3, 8, 8), "cumulative", "psnr", 0).save(tmp_path / "other.npy")
        sidecar.write_bytes(other.with_suffix(".json").read_bytes())
    if damage == "sidecar only":
        array.unlink()

    with pytest.warns(UserWarning, match=r"cumulative-uap-psnr.npy is incomplete or damaged"):
        resumed = run_benchmark(["psnr"], ["cumulative-uap"], train, test, tmp_path,
                                settings=FAST, progress=False)
    expected = local_run.items.query("metric == 'psnr' and attack == 'cumulative-uap'")
    key = ["amplitude", "image"]
    pd.testing.assert_frame_equal(resumed.items.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True))
    assert torch.equal(UAP.load(array).perturbation,
                       UAP.load(local_run.out / "uaps" / "cumulative-uap-psnr.npy").perturbation)


def test_a_uap_from_other_training_images_is_not_reused(local_run, image_sets, tmp_path):
    import shutil

    train, test = image_sets
    shutil.copytree(local_run.out / "uaps", tmp_path / "uaps")  # kept, database deleted
    other = ImageSet(train.dataset, train.names[:2], train.images[:2])
    with pytest.warns(UserWarning, match="not the one this run needs.*training_fingerprint"):
        run_benchmark(["psnr"], ["cumulative-uap"], other, test, tmp_path, settings=FAST,
                      progress=False)


class FlakyMetric(torch.nn.Module):
    """A plug-in metric (mean brightness) that returns NaN on one image and raises on another."""

    def __init__(self):
        super().__init__()
        self.info = MetricInfo("flaky", False, True, (0.0, 1.0), True, "test plug-in")

    def forward(self, distorted, reference=None):
        means = distorted.mean(dim=(1, 2, 3))
        if len(distorted) == 1 and bool(means[0] > 0.6):
            raise RuntimeError("cannot score very bright images")
        if bool((means > 0.6).any()):
            raise RuntimeError("batch contains a very bright image")
        return torch.where(means < 0.3, torch.nan, means)


def test_failing_metric_rows_are_recorded_and_the_run_goes_on(tmp_path):
    dark, middle, bright = torch.full((3, 3, 64, 64), 0.2), torch.full((3, 3, 64, 64), 0.45), \
        torch.full((3, 3, 64, 64), 0.7)
    images = torch.cat([dark[:1], middle[:1], bright[:1]]) + 0.05 * torch.rand(3, 3, 64, 64)
    texture = 0.1 * torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    train = ImageSet("train", tuple("abcdef"), (torch.cat([middle, middle]) + texture).clamp(0, 1))
    test = ImageSet("test", ("dark", "middle", "bright"), images.clamp(0, 1))
    summary = run_benchmark([f"{__name__}:FlakyMetric", "psnr"], ["ifgsm"], train, test,
                            tmp_path, settings=Settings(), progress=False)
    rows = summary.items.set_index(["metric", "image"])
    flaky = f"{__name__}:FlakyMetric"
    assert "non-finite" in rows.loc[(flaky, "dark"), "error"]
    assert "cannot score very bright" in rows.loc[(flaky, "bright"), "error"]
    assert pd.isna(rows.loc[(flaky, "middle"), "error"])
    assert rows.loc[(flaky, "middle"), "gain"] > 0
    assert pd.isna(rows.loc[("psnr", "bright"), "error"])  # the other metric is unaffected


def test_a_metric_that_cannot_be_calibrated_is_listed_and_skipped(image_sets, tmp_path):
    train, test = image_sets
    tiny = ImageSet("tiny", train.names, train.images[..., :64, :64])
    summary = run_benchmark(["niqe", "psnr"], ["fgsm"], tiny,
                            ImageSet("tiny-test", test.names, test.images[..., :64, :64]),
                            tmp_path, progress=False)
    assert any("niqe" in failure and "96" in failure for failure in summary.failures)
    assert set(summary.items.metric) == {"psnr"}


RESUMABLE_SCRIPT = """
import sys
from advqa.robustness.benchmark import (ImageSet, Settings, load_image_set, run_benchmark,
                                       split_image_set)
train, test = split_image_set(load_image_set("photos", size=192), seed=0)
train = ImageSet(train.dataset, train.names[:3], train.images[:3])
run_benchmark(["ssim", "gmsd"], ["fgsm", "ifgsm", "mifgsm"], train, test, sys.argv[1],
              settings=Settings(steps=30), progress=False)
"""


def finished_units(path) -> int:
    try:
        with sqlite3.connect(path) as connection:
            return connection.execute(
                "SELECT count(*) FROM job_units WHERE job = 'benchmark'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    command = [sys.executable, "-c", RESUMABLE_SCRIPT]
    process = subprocess.Popen([*command, str(killed)])
    deadline = time.monotonic() + 240
    while finished_units(killed / "benchmark.sqlite") < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "the benchmark never finished a unit"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = finished_units(killed / "benchmark.sqlite")
    assert 2 <= done_before < 6, "kill the run while units remain"
    subprocess.run([*command, str(killed)], check=True)
    subprocess.run([*command, str(whole)], check=True)
    resumed = pd.read_parquet(killed / "items.parquet")
    reference = pd.read_parquet(whole / "items.parquet")
    key = ["metric", "attack", "image"]
    assert not resumed.duplicated(key).any()
    assert len(resumed) == len(reference) == 2 * 3 * 5  # 5 test photos
    pd.testing.assert_frame_equal(resumed.sort_values(key).reset_index(drop=True),
                                  reference.sort_values(key).reset_index(drop=True))


def test_dask_local_cluster_gives_the_local_results(local_run, image_sets, tmp_path):
    distributed = pytest.importorskip("distributed")
    train, test = image_sets
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                  host="127.0.0.1", processes=True) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        from advqa.jobs import DaskExecutor

        with distributed.Client(cluster) as client:
            executor = DaskExecutor(scheduler=client)
            summary = run_benchmark(["psnr", "gmsd"], ["ifgsm", "cumulative-uap"], train, test,
                                    tmp_path, settings=FAST, executor=executor, progress=False)
    key = ["metric", "attack", "amplitude", "image"]
    ours = summary.items.sort_values(key).reset_index(drop=True)
    expected = local_run.items.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, expected, rtol=1e-5, atol=1e-6)


def test_cli_benchmark_runs_and_rejects_bad_input(tmp_path, capsys):
    assert main(["benchmark", "--attacks", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown attack" in capsys.readouterr().err
    assert main(["benchmark", "--metrics", "no-such-metric", "--attacks", "fgsm",
                 "--size", "96", "--out", str(tmp_path / "a"), "--no-progress"]) == 1
    assert "no-such-metric" in capsys.readouterr().out
    assert main(["benchmark", "--train-images", "photos", "--out", str(tmp_path)]) == 2
    assert main(["benchmark", "--engine", "dask", "--out", str(tmp_path)]) == 2
    assert "--scheduler" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "message"), [
    ({"steps": 0}, "steps must be an integer >= 1, got 0"),
    ({"steps": -3}, "steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"eps": 0.0}, "eps must be a finite number > 0"),
    ({"step_sizes": (float("nan"),)}, "step size must be a finite number > 0"),
    ({"step_sizes": (1 / 255, -1 / 255)}, "step size"),
    ({"step_sizes": ()}, "step_sizes must be a non-empty sequence"),
    ({"step_sizes": (1 / 255, 1 / 255)}, "step size 1/255 given twice"),
    ({"mifgsm_form": "kurakin"}, "mifgsm_form must be one of msu, dong"),
    ({"amplitudes": ()}, "amplitudes"),
    ({"amplitudes": (0.4, -0.1)}, "amplitude"),
    ({"jpeg_quality": 0}, "jpeg_quality"),
    ({"uap": {"epochs": 0}}, r"uap\['epochs'\]"),
])
def test_settings_that_would_fail_every_unit_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Settings(**options)


def test_cli_refuses_non_positive_counts_up_front(tmp_path, capsys, monkeypatch):
    def never(*_arguments, **_options):
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(benchmark, "run_benchmark", never)
    for option in (["--steps", "0"], ["--batch-size", "0"], ["--uap-epochs", "0"]):
        assert main(["benchmark", "--metrics", "psnr", "--attacks", "ifgsm", "--size", "96",
                     "--out", str(tmp_path), "--no-progress", *option]) == 2
        assert "bad setting" in capsys.readouterr().err


class NoGradientMetric(torch.nn.Module):
    """Scores images (mean brightness) but cannot be differentiated: every attack fails."""

    def __init__(self):
        super().__init__()
        self.info = MetricInfo("no-gradient", False, True, (0.0, 1.0), True, "test plug-in")

    def forward(self, distorted, reference=None):
        if distorted.requires_grad:
            raise RuntimeError("this metric has no gradient")
        return distorted.mean(dim=(1, 2, 3))


def test_a_run_in_which_every_unit_failed_exits_non_zero(tmp_path, capsys):
    metric = f"{__name__}:NoGradientMetric"
    assert main(["benchmark", "--metrics", metric, "--attacks", "fgsm,ifgsm", "--size", "96",
                 "--out", str(tmp_path), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "every unit failed" in captured.err
    assert f"FAILED {metric}|fgsm: all 5 image(s) failed" in captured.out
    items = pd.read_csv(tmp_path / "items.csv")
    assert len(items) == 2 * 5 and items.error.str.contains("no gradient").all()


def test_entry_point_plugins_are_found_and_checked(monkeypatch):
    from importlib.metadata import EntryPoint

    from advqa.quality import UnknownMetricError, plugins

    points = [EntryPoint("flaky", f"{__name__}:FlakyMetric", plugins.ENTRY_POINT_GROUP),
              EntryPoint("broken", "torch.nn:Identity", plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points)
    assert plugins.plugin_names() == ["broken", "flaky"]
    assert isinstance(plugins.load_metric("flaky"), FlakyMetric)
    with pytest.raises(TypeError, match="MetricInfo"):
        plugins.load_metric("broken")
    with pytest.raises(UnknownMetricError, match="flaky"):
        plugins.load_metric("nothing-like-this")
    with pytest.raises(UnknownMetricError, match="cannot import"):
        plugins.load_metric("no_such_package.metrics:Metric")
    assert plugins.load_metric("psnr").info.name == "psnr"


def test_metric_range_is_cached_per_metric_and_image_set(image_sets, tmp_path, monkeypatch):
    from advqa.robustness import calibration

    train, _ = image_sets
    cache = tmp_path / "ranges.json"
    metric = get_metric("psnr")
    first = calibration.metric_range(metric, train.images, cache=cache)

    def refuse(*_arguments, **_options):
        raise AssertionError("the cached range was computed again")

    monkeypatch.setattr(calibration, "calibration_scores", refuse)
    assert calibration.metric_range(metric, train.images, cache=cache) == first
    with pytest.raises(AssertionError, match="computed again"):
        calibration.metric_range(metric, train.images[:2], cache=cache)  # another set
    assert str(calibration.default_cache().parent) == os.environ["ADVQA_CACHE_DIR"]


def test_leaderboard_never_scrolls_sideways_at_1366(local_run, page_width):
    assert page_width(local_run.out / "leaderboard.html") <= 1366


# --- step grid, MI-FGSM form, robustness-score variant, failed cells, AMI-FGSM -------------

GRID = Settings(amplitudes=(0.4,), step_sizes=(0.25 / 255, 1 / 255))
GRID_ATTACKS = ["fgsm", "ifgsm", "mifgsm", "amifgsm"]


@pytest.fixture(scope="module")
def grid_run(image_sets, tmp_path_factory):
    train, test = image_sets
    out = tmp_path_factory.mktemp("grid")
    return run_benchmark(["psnr", "gmsd"], GRID_ATTACKS, train, test, out, settings=GRID,
                         progress=False)


def test_step_sizes_parse_fractions_and_plain_numbers():
    from advqa.robustness.benchmark import parse_step_sizes, step_label

    assert parse_step_sizes("0.25/255, 0.5/255,1/255") == pytest.approx(
        (0.25 / 255, 0.5 / 255, 1 / 255))
    assert parse_step_sizes("0.002,1e-3") == (0.002, 0.001)
    assert [step_label(step) for step in parse_step_sizes("0.25/255,1/255,0.002")] == [
        "0.25/255", "1/255", "0.51/255"]


@pytest.mark.parametrize(("text", "message"), [
    ("0", "step size '0' must be a finite number > 0"),
    ("0/255", "step size '0/255' must be a finite number > 0"),
    ("-1/255", "step size '-1/255' must be a finite number > 0"),
    ("nan", "step size 'nan' must be a finite number > 0"),
    ("inf", "must be a finite number > 0"),
    ("1/0", "not a step size: '1/0'"),
    ("one/255", "not a step size"),
    ("1/2/3", "not a step size"),
    (" , ", "no step size"),
    ("1/255,0.5/255,1/255", "step size 1/255 given twice"),
])
def test_bad_step_sizes_are_refused_with_a_clear_error(text, message):
    from advqa.robustness.benchmark import parse_step_sizes

    with pytest.raises(ValueError, match=re.escape(message)):
        parse_step_sizes(text)


def test_a_step_above_one_is_warned_about():
    with pytest.warns(UserWarning, match=r"step size 2 is above 1.*did you mean 2/255"):
        Settings(step_sizes=(2.0,))


def test_cli_refuses_bad_step_sizes_and_warns_on_suspicious_ones(tmp_path, capsys,
                                                                 monkeypatch):
    def never(*_arguments, **_options):
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(benchmark, "run_benchmark", never)
    command = ["benchmark", "--metrics", "psnr", "--attacks", "ifgsm", "--size", "96",
               "--out", str(tmp_path), "--no-progress"]
    with pytest.raises(SystemExit) as exit_code:
        main([*command, "--step-sizes", "0.5/255,-1/255"])
    assert exit_code.value.code == 2
    assert "step size '-1/255' must be a finite number > 0" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="the benchmark started"):
        main([*command, "--step-sizes", "0.5/255,3"])
    assert "warning: step size 3 is above 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*command, "--mifgsm-form", "kurakin"])
    with pytest.raises(SystemExit):
        main([*command, "--r-score", "code"])


def test_plan_has_one_unit_per_step_of_each_iterative_attack():
    units = benchmark.plan_units(["psnr"], ["fgsm", "ifgsm", "cumulative-uap"], (0.4, 0.8),
                                 (0.25 / 255, 1 / 255))
    assert [unit.key for unit in units] == [
        "psnr|fgsm", "psnr|ifgsm~0.25/255", "psnr|ifgsm~1/255", "psnr|cumulative-uap@0.4",
        "psnr|cumulative-uap@0.8"]


def test_grid_items_have_one_row_per_step(grid_run, image_sets):
    items = grid_run.items
    # 2 metrics × (fgsm + 3 iterative attacks × 2 steps) × 3 images
    assert len(items) == 2 * 7 * 3 and items.error.isna().all()
    assert not items.duplicated(["metric", "attack", "step", "image"]).any()
    assert items.loc[items.attack == "fgsm", "step"].isna().all()
    assert set(items.step.dropna()) == {0.25 / 255, 1 / 255}
    # The radius is AMI-FGSM's 1/NIQE of its start, recorded for that attack only.
    assert items.loc[items.attack == "amifgsm", "radius"].gt(0).all()
    assert items.loc[items.attack != "amifgsm", "radius"].isna().all()
    # Each step is its own attack: the larger step moves the image more.
    ifgsm = items[items.attack == "ifgsm"].groupby("step").mse.mean()
    assert ifgsm[1 / 255] > ifgsm[0.25 / 255]


def test_grid_leaderboard_picks_the_strongest_step_and_marks_failures(grid_run):
    scores = pd.read_csv(grid_run.out / "scores.csv")
    stepped = scores[scores.step.notna()]
    for (metric, attack), rows in stepped.groupby(["metric", "attack"]):
        assert rows.ranked.sum() == 1, (metric, attack)
        assert rows.loc[rows.ranked, "abs_gain"].iloc[0] == rows.abs_gain.max()
    board = pd.read_csv(grid_run.out / "leaderboard.csv").set_index("metric")
    ranked = scores[scores.ranked]
    for metric, rows in ranked.groupby("metric"):
        working = rows[rows.status == "ok"]
        assert board.loc[metric, "n_attacks"] == len(working)
        assert board.loc[metric, "failed_attacks"] == (rows.status == "failed").sum()
        assert board.loc[metric, "abs_gain"] == pytest.approx(working.abs_gain.mean())
    # FGSM's one full 10/255 sign step from the JPEG start lowers PSNR on these photos:
    # a failed attack, marked and not counted.
    psnr_fgsm = ranked[(ranked.metric == "psnr") & (ranked.attack == "fgsm")].iloc[0]
    assert psnr_fgsm.status == "failed" and psnr_fgsm.abs_gain < 0
    assert "fgsm (gain -" in board.loc["psnr", "failed"]
    # Defaults: Dong et al.'s MI-FGSM, the paper's R-score; both stated in the output.
    assert set(board.mifgsm_form) == {"dong"} and set(board.r_score_variant) == {"paper"}
    assert set(board.step_sizes) == {"0.25/255, 1/255"}


def test_amifgsm_whose_ball_never_binds_is_reported_as_mifgsm(grid_run):
    items = grid_run.items
    key = ["metric", "step", "image"]
    ami = items[items.attack == "amifgsm"].sort_values(key).reset_index(drop=True)
    mi = items[items.attack == "mifgsm"].sort_values(key).reset_index(drop=True)
    # 10 × 1/255 ≈ 0.039 lies below every 1/NIQE here: the ball never binds, and the
    # two attacks give the same images, hence the same scores.
    assert (ami.radius > 10 / 255).all()
    numpy.testing.assert_allclose(ami.attacked, mi.attacked, rtol=1e-5, atol=1e-6)
    scores = pd.read_csv(grid_run.out / "scores.csv")
    notes = scores.loc[scores.attack == "amifgsm", "note"]
    assert notes.str.contains("1/NIQE ball never binds").all()
    assert notes.str.contains(r"AMI-FGSM = MI-FGSM \(same images\)").all()
    page = (grid_run.out / "leaderboard.html").read_text(encoding="utf-8")
    assert "the 1/NIQE ball never binds at step 0.25/255, 1/255" in page


def test_the_leaderboard_page_says_form_variant_and_grid(grid_run):
    page = (grid_run.out / "leaderboard.html").read_text(encoding="utf-8")
    assert "dong: g_t = ν·g_{t−1} + ∇J/‖∇J‖₁" in page
    assert "paper: mean log10(max(1 − s′, s)" in page
    assert "0.25/255, 1/255; each attack ranked at its strongest step" in page
    assert '<td class="failed"><b>failed</b> (gain -' in page


def test_other_step_grid_or_form_in_the_same_folder_is_refused(grid_run, image_sets):
    train, test = image_sets
    for other in (Settings(amplitudes=(0.4,), step_sizes=(0.5 / 255, 1 / 255)),
                  Settings(amplitudes=(0.4,), step_sizes=GRID.step_sizes, mifgsm_form="msu")):
        with pytest.raises(ValueError, match="other settings"):
            run_benchmark(["psnr"], ["ifgsm"], train, test, grid_run.out, settings=other,
                          progress=False)


def test_the_other_r_score_rescores_without_attacking_again(grid_run, image_sets, tmp_path,
                                                            monkeypatch):
    train, test = image_sets
    folder = tmp_path / "copy"
    shutil.copytree(grid_run.out, folder)

    def fail(*_arguments, **_options):
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr(benchmark, "run_unit", fail)
    monkeypatch.setattr(benchmark, "prepare_metric", fail)
    again = run_benchmark(["psnr", "gmsd"], GRID_ATTACKS, train, test, folder, settings=GRID,
                          r_score="msu", progress=False)
    pd.testing.assert_frame_equal(again.items, grid_run.items)
    paper = pd.read_csv(grid_run.out / "scores.csv")
    msu = pd.read_csv(folder / "scores.csv")
    assert set(msu.r_score_variant) == {"msu"}
    assert not numpy.allclose(paper.robustness_score, msu.robustness_score)
    numpy.testing.assert_allclose(paper.abs_gain, msu.abs_gain)
    assert "msu: mean log10(max(1 − s, s)" in (folder / "leaderboard.html").read_text("utf-8")


def test_leaderboard_with_failed_cells_reads_well_at_1366(grid_run, page_width, chromium,
                                                          tmp_path):
    page = grid_run.out / "leaderboard.html"
    assert page_width(page) <= 1366
    screenshot = tmp_path / "leaderboard.png"
    result = subprocess.run(
        [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={screenshot}", "--window-size=1366,2200", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000
    artifacts = Path(__file__).parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(screenshot, artifacts / "leaderboard.png")  # kept for a person to look at
