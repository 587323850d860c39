"""The weighted-stego detector of Schöttle et al. and its Fashion-MNIST experiment."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import auc, roc_curve
from torch import nn

from advqa.detect import stego_eval
from advqa.detect.ws import WSDetector, roc_from_scores, threshold_from_scores, ws_statistic

K = np.array([[-0.25, 0.5, -0.25], [0.5, 0.0, 0.5], [-0.25, 0.5, -0.25]])


def by_hand(channel: np.ndarray) -> float:
    """p̂ of one 0–255 channel with explicit loops over interior pixels."""
    h, w = channel.shape
    residuals, weights = [], []
    for i in range(1, h - 1):
        for j in range(1, w - 1):
            window = channel[i - 1:i + 2, j - 1:j + 2]
            predicted = float((window * K).sum())
            neighbours = np.array([channel[i - 1, j], channel[i + 1, j],
                                   channel[i, j - 1], channel[i, j + 1]])
            variance = ((neighbours - neighbours.mean()) ** 2).sum() / 3
            residuals.append(abs(channel[i, j] - predicted))
            weights.append(1 / (5 + variance))
    weights = np.array(weights) / np.sum(weights)
    return float((weights * np.array(residuals)).sum())


def test_single_interior_pixel_by_hand():
    # One interior pixel: its weight normalises to 1, so p̂ = |x − x̂| on the 0–255 scale.
    pixels = np.array([[10, 20, 30], [40, 100, 60], [70, 80, 90]], dtype=float)
    # x̂ = ½(20 + 40 + 60 + 80) − ¼(10 + 30 + 70 + 90) = 100 − 50 = 50.
    image = torch.tensor(pixels / 255).view(1, 1, 3, 3)
    assert ws_statistic(image).item() == pytest.approx(50.0, abs=1e-9)


def test_multichannel_against_loops():
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, size=(2, 3, 5, 6)).astype(float)
    pixels[1, 2] = 128  # a flat channel: zero residual everywhere
    images = torch.tensor(pixels / 255, dtype=torch.float32)
    expected = [np.mean([by_hand(pixels[n, c]) for c in range(3)]) for n in range(2)]
    result = ws_statistic(images)
    assert result.shape == (2,)
    assert result.dtype == torch.float64
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-5)
    # Scale: the statistic is on 0–255, not [0, 1].
    assert result[0] > 1
    # Batching does not change anything.
    np.testing.assert_allclose(ws_statistic(images, batch_size=1).numpy(), result.numpy())


def test_constant_and_linear_images_are_perfectly_predicted():
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(3, 1, 8, 8).clone()
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(ws_statistic(ramp), torch.zeros(3, dtype=torch.float64), atol=1e-9)
    assert ws_statistic(flat).item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 8, 8), "NCHW"),
    (torch.rand(1, 1, 2, 8), "at least 3x3"),
    (torch.rand(1, 1, 8, 2), "at least 3x3"),
    (torch.rand(1, 1, 8, 8) * 2, r"\[0, 1\]"),
    (torch.rand(1, 1, 8, 8) - 0.5, r"\[0, 1\]"),
    (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "float"),
    (torch.full((1, 1, 8, 8), float("nan")), "NaN"),
    (np.zeros((1, 1, 8, 8)), "torch.Tensor"),
])
def test_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        ws_statistic(bad)


def noisy_images(n: int, noise: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = torch.linspace(0.2, 0.8, 16).view(1, 1, 1, 16).expand(n, 1, 16, 16)
    return (base + noise * torch.randn(n, 1, 16, 16, generator=generator)).clamp(0, 1)


def test_calibration_has_no_false_positives():
    benign = noisy_images(200, 0.01, seed=1)
    detector = WSDetector().calibrate(benign)
    assert detector.threshold == pytest.approx(ws_statistic(benign).max().item())
    assert not detector.predict(benign).any()           # ties are not flagged
    flags = detector.predict(noisy_images(50, 0.1, seed=2))
    assert flags.dtype == torch.bool and flags.shape == (50,) and flags.all()


def test_target_fpr():
    benign = noisy_images(400, 0.02, seed=3)
    detector = WSDetector().calibrate(benign, target_fpr=0.05)
    assert detector.predict(benign).float().mean().item() == pytest.approx(0.05)
    scores = np.arange(10.0)
    assert threshold_from_scores(scores) == 9.0
    assert threshold_from_scores(scores, target_fpr=0.0) == 9.0
    assert threshold_from_scores(scores, target_fpr=0.2) == 7.0   # flags 8 and 9
    with pytest.raises(ValueError, match="target_fpr"):
        threshold_from_scores(scores, target_fpr=1.0)
    with pytest.raises(ValueError, match="not calibrated"):
        WSDetector().predict(benign)


def test_roc_matches_sklearn():
    generator = np.random.default_rng(4)
    benign, adversarial = generator.normal(0, 1, 300), generator.normal(1, 1, 200)
    roc = roc_from_scores(benign, adversarial)
    truth = np.r_[np.zeros(300), np.ones(200)]
    fpr, tpr, thresholds = roc_curve(truth, np.r_[benign, adversarial])
    np.testing.assert_array_equal(roc.fpr, fpr)
    np.testing.assert_array_equal(roc.tpr, tpr)
    np.testing.assert_array_equal(roc.thresholds, thresholds)
    assert roc.auc == pytest.approx(auc(fpr, tpr))
    images_benign, images_adversarial = noisy_images(40, 0.01, 5), noisy_images(40, 0.05, 6)
    fpr, tpr, _, area = WSDetector().roc(images_benign, images_adversarial)
    assert area == pytest.approx(1.0)


# ----------------------------------------------------------------- Fashion-MNIST experiment

def fashion_mnist_available() -> bool:
    from advqa.data import FASHION_MNIST_DIRECTORY, idx_splits

    return FASHION_MNIST_DIRECTORY.is_dir() and set(idx_splits(FASHION_MNIST_DIRECTORY)) == {
        "train", "test"}


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist)")


def registered_weights() -> str | None:
    """Reason to skip, or None when the natural Fashion-MNIST CNN's weights are on disk."""
    try:
        from advqa.models import fashion_mnist
    except ImportError:
        return "advqa.models.fashion_mnist is not available"
    if not fashion_mnist.weights_path(False).is_file():
        return f"weights not on disk: {fashion_mnist.weights_path(False)}"
    return None


@needs_fashion_mnist
@pytest.mark.skipif(registered_weights() is not None, reason=str(registered_weights()))
def test_detection_rate_rises_with_eps():
    from advqa.attacks import get_attack
    from advqa.models import load_classifier

    model = load_classifier("fashion-mnist-cnn", device="cpu")
    benign, _ = stego_eval.load_fashion_mnist("train", 2000)
    detector = WSDetector().calibrate(benign)
    images, labels = stego_eval.load_fashion_mnist("test", 100)
    assert detector.predict(images).float().mean() < 0.05
    rates, means = [], []
    for eps in (0.02, 0.1, 0.3):
        attack = get_attack("pgd", norm="linf", eps=eps, steps=10, random_start=True)
        adversarial = attack(model, images, labels)
        rates.append(detector.predict(adversarial).float().mean().item())
        means.append(detector.score(adversarial).mean().item())
    assert means[0] < means[1] < means[2]
    assert rates[0] <= rates[1] <= rates[2]
    assert rates[0] < 0.1 and rates[2] > 0.5


def tiny_classifier(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 5, stride=4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 36, 10))
    return model.eval().requires_grad_(False)


@needs_fashion_mnist
def test_stego_eval_end_to_end_and_resume(tmp_path, monkeypatch):
    config = stego_eval.StegoEvalConfig(
        models=["tiny-a", "tiny-b"], eps=[0.05, 0.3], subset=40, calibration=300,
        steps=3, chunk_size=20, seed=1, histogram_eps=(0.3,))
    results = stego_eval.run_stego_eval(tmp_path, config, loader=tiny_classifier,
                                        progress=False)
    assert list(results[["model", "eps"]].itertuples(index=False, name=None)) == [
        ("tiny-a", 0.05), ("tiny-a", 0.3), ("tiny-b", 0.05), ("tiny-b", 0.3)]
    assert (results["n"] == 40).all()
    for column in ("tpr", "ae_accuracy", "pipeline_accuracy", "benign_fpr", "auc"):
        assert results[column].between(0, 1).all()
    assert (results["pipeline_accuracy"] >= results["ae_accuracy"]).all()
    assert (results["pipeline_accuracy"] >= results["tpr"]).all()
    for name in ("results.parquet", "results.csv", "table_ii.csv", "samples.parquet",
                 "calibration.json", "fig2_tpr.png", "fig3_4_accuracy.png", "histograms.png",
                 "roc.png",
                 "ledger.sqlite"):
        assert (tmp_path / name).is_file(), name
    table = pd.read_csv(tmp_path / "table_ii.csv")
    assert list(table.columns) == ["model", "0.050", "0.300"]
    samples = pd.read_parquet(tmp_path / "samples.parquet")
    assert len(samples) == 2 * 2 * 40
    flagged = samples["statistic"] > results["threshold"].iloc[0]
    assert results["tpr"].mean() == pytest.approx(flagged.mean())

    def no_attacks(*args, **kwargs):
        raise AssertionError("a finished unit was attacked again")

    monkeypatch.setattr(stego_eval, "attack_unit", no_attacks)
    again = stego_eval.run_stego_eval(tmp_path, config, loader=tiny_classifier,
                                      progress=False, plots=False)
    pd.testing.assert_frame_equal(again, results)

    # A smaller subset reuses the finished chunks; new settings are new work.
    smaller = stego_eval.StegoEvalConfig(**{**config.__dict__, "subset": 20})
    assert (stego_eval.run_stego_eval(tmp_path, smaller, loader=tiny_classifier,
                                      progress=False, plots=False)["n"] == 20).all()
    changed = stego_eval.StegoEvalConfig(**{**config.__dict__, "steps": 4})
    with pytest.raises(RuntimeError, match="attacked again"), pytest.warns(UserWarning):
        stego_eval.run_stego_eval(tmp_path, changed, loader=tiny_classifier, progress=False)
    # Retrained weights under the same name are new work too.
    with pytest.raises(RuntimeError, match="attacked again"), pytest.warns(UserWarning):
        stego_eval.run_stego_eval(tmp_path, config, loader=retrained_tiny_classifier,
                                  progress=False)


@needs_fashion_mnist
def test_stego_eval_tables_do_not_depend_on_the_executor(tmp_path):
    from advqa.jobs import DaskExecutor, LocalExecutor, ProcessExecutor

    config = stego_eval.StegoEvalConfig(models=["tiny-a"], eps=[0.1, 0.3], subset=30,
                                        calibration=100, steps=3, chunk_size=10, seed=2)
    tables = {}
    for name, executor in (("local", LocalExecutor()), ("process", ProcessExecutor(2)),
                           ("dask", DaskExecutor(workers=2))):
        with executor:
            stego_eval.run_stego_eval(tmp_path / name, config, loader=tiny_classifier,
                                      executor=executor, progress=False, plots=False)
        tables[name] = pd.read_parquet(tmp_path / name / "samples.parquet")
        assert len(tables[name]) == 2 * 30
    pd.testing.assert_frame_equal(tables["process"], tables["local"])
    pd.testing.assert_frame_equal(tables["dask"], tables["local"])


def retrained_tiny_classifier(name: str) -> nn.Module:
    return tiny_classifier(name, seed=1)


SLEEPY = """
import os, time
from pathlib import Path

def loader(name):
    Path(os.environ["SLEEPY_DIR"], f"worker-{os.getpid()}").touch()
    time.sleep(600)  # a long unit
"""

PARENT = """
import sys
import torch
import sleepy
from advqa.detect import stego_eval
from advqa.jobs import Ledger, ProcessExecutor, Unit, run_units

if __name__ == "__main__":
    units = [Unit(f"unit{i}", {}, ({"model": f"m{i}", "eps": 0.1, "start": 0, "stop": 1,
                                    "steps": 1, "step_size": None, "seed": 0, "tag": ""},))
             for i in range(2)]
    run_units(Ledger(sys.argv[1], "stego-eval"), units, stego_eval.stego_unit,
              executor=ProcessExecutor(2), progress=False,
              shared={"images": torch.zeros(1, 1, 28, 28),
                      "labels": torch.zeros(1, dtype=torch.long), "loader": sleepy.loader})
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by init) counts as gone."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 and re-parenting are POSIX")
def test_stego_eval_workers_exit_when_the_parent_is_killed(tmp_path):
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path, "SLEEPY_DIR": str(tmp_path)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "ledger.sqlite")],
                              env=environment)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while len(workers) < 2:  # both workers are inside a unit
            assert parent.poll() is None, "the parent stopped before its workers started"
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
            workers = [int(name.name.split("-")[1]) for name in tmp_path.glob("worker-*")]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)], "workers outlived their parent"
    finally:  # on failure, end the workers this test started, by pid
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_exit_with_parent_watchdog_fallback(monkeypatch):
    """Where prctl is unavailable, a thread notices the re-parenting and exits."""
    from advqa import workers

    monkeypatch.setattr(workers, "_death_signal", lambda signum: False)
    exits = []
    monkeypatch.setattr(workers.os, "_exit", lambda code: exits.append(code))
    parent = os.getppid()
    assert workers.exit_with_parent(parent, poll=0.01) == "watchdog"
    assert exits == []
    monkeypatch.setattr(workers.os, "getppid", lambda: 1)  # the parent died: adopted by init
    deadline = time.monotonic() + 5
    while not exits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exits == [1]
    assert workers.exit_with_parent(parent) == "watchdog" and exits == [1, 1]  # already gone


@pytest.mark.parametrize(("options", "message"), [
    ({"steps": 0}, "steps must be >= 1"), ({"step_size": 0.0}, "step_size"),
    ({"chunk_size": 0}, "chunk_size")])
def test_stego_eval_refuses_bad_settings_before_any_work(tmp_path, options, message):
    config = stego_eval.StegoEvalConfig(models=["tiny"], eps=[0.1], **options)
    with pytest.raises(ValueError, match=message):
        stego_eval.run_stego_eval(tmp_path, config, loader=tiny_classifier, data_dir=tmp_path)


def test_combined_pipeline_definition():
    samples = pd.DataFrame({
        "model": "m", "eps": 0.1, "index": [0, 1, 2, 3], "label": [0, 0, 0, 0],
        "clean_prediction": [0, 0, 1, 0], "adversarial_prediction": [0, 1, 1, 1],
        "success": [False, True, True, True], "linf": 0.1,
        "statistic": [1.0, 5.0, 1.0, 6.0]})
    benign = np.array([3.0, 1.0, 1.0, 1.0])
    row = stego_eval.aggregate(samples, benign, threshold=2.0).iloc[0]
    assert row["tpr"] == 0.5                        # images 1 and 3 flagged
    assert row["ae_accuracy"] == 0.25               # only image 0 still correct
    assert row["pipeline_accuracy"] == 0.75         # 0 passes and is correct; 1, 3 rejected
    assert row["flagged_and_misclassified"] == 0.5
    assert row["benign_fpr"] == 0.25
    assert row["benign_pipeline_accuracy"] == 0.5   # 0 rejected; 1, 2, 3 pass, 1 and 3 right
    assert row["clean_accuracy"] == 0.75


def test_cli_parsing_and_registration():
    from advqa.cli import detect

    top = argparse.ArgumentParser()
    subparsers = top.add_subparsers()
    detect.register(subparsers)
    arguments = top.parse_args(["detect", "stego-eval", "--eps", "0.01:0.05:0.01",
                                "--models", "a,b", "--subset", "5", "--no-progress"])
    assert arguments.eps == [0.01, 0.02, 0.03, 0.04, 0.05]
    assert arguments.models == ["a", "b"]
    assert arguments.handler is detect.run_stego_eval
    assert detect.eps_grid("0.1,8/255") == [0.1, 8 / 255]
    with pytest.raises(argparse.ArgumentTypeError):
        detect.eps_grid("0.5:0.1:0.1")
    bad = top.parse_args(["detect", "stego-eval", "--subset", "0"])
    from advqa.cli.common import CommandError

    with pytest.raises(CommandError, match="--subset"):
        bad.handler(bad)
