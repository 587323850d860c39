"""The shipped Fashion-MNIST victims: loading, accuracy, robustness, sidecars, training."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from advqa.data import FASHION_MNIST_DIRECTORY, load_idx
from advqa.models import MissingWeightsError, load_classifier
from advqa.models import fashion_mnist as fm
from advqa.models.training import evaluate_accuracy, pgd_attack, train_classifier

NAMES = (fm.NAME, fm.ADVERSARIAL_NAME)
# Measured on the first 1000 test images: 89.4% and 78.3% (10k test set: 88.9%, 78.4%,
# in the sidecars); the thresholds sit a few points below.
CLEAN_MINIMUM = {fm.NAME: 0.87, fm.ADVERSARIAL_NAME: 0.75}

needs_data = pytest.mark.skipif(not FASHION_MNIST_DIRECTORY.is_dir(),
                                reason="Fashion-MNIST IDX files not installed")


@pytest.fixture(scope="module")
def test_split():
    images, labels = load_idx(FASHION_MNIST_DIRECTORY, split="test")
    return images[:1000].float() / 255, labels[:1000]


@pytest.fixture(scope="module")
def models():
    return {name: load_classifier(name, device="cpu") for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_loads_by_name_with_metadata(models, name):
    model = models[name]
    assert model.info.name == name
    assert model.info.num_classes == 10 and model.info.input_size == 28
    assert model.info.class_names[0] == "T-shirt/top" and model.info.class_names[9] == "Ankle boot"
    assert model.info.weights == str(fm.weights_path(name == fm.ADVERSARIAL_NAME))
    assert not model.training
    assert all(not parameter.requires_grad for parameter in model.parameters())
    logits = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()


@needs_data
@pytest.mark.parametrize("name", NAMES)
def test_clean_accuracy(models, test_split, name):
    images, labels = test_split
    assert evaluate_accuracy(models[name], images, labels) >= CLEAN_MINIMUM[name]


@needs_data
def test_adversarial_training_buys_robustness(models, test_split):
    images, labels = test_split[0][:200], test_split[1][:200]
    attack = pgd_attack(0.1, 10, seed=0)
    natural = evaluate_accuracy(models[fm.NAME], images, labels, attack=attack)
    robust = evaluate_accuracy(models[fm.ADVERSARIAL_NAME], images, labels, attack=attack)
    assert robust >= natural + 0.3, (natural, robust)
    assert robust >= 0.5


@pytest.mark.parametrize("name", NAMES)
def test_sidecar_records_the_run(name):
    adversarial = name == fm.ADVERSARIAL_NAME
    path = fm.weights_path(adversarial)
    assert path.stat().st_size < 2_000_000
    record = json.loads(fm.sidecar_path(path).read_text())
    assert record["name"] == name
    assert record["command"].startswith("advqa train fashion-mnist-cnn")
    assert ("--adversarial" in record["command"]) == adversarial
    assert 0 < record["test_accuracy"]["clean"] <= 1
    assert 0 <= record["test_accuracy"]["pgd_eps0.1"] <= record["test_accuracy"]["clean"]
    for key in ("seed", "epochs", "train_seconds", "torch", "date"):
        assert key in record
    if adversarial:
        assert record["adversarial"]["eps"] == 0.1 and record["adversarial"]["steps"] >= 1
    assert fm.read_sidecar(adversarial) == record


TINY = {"natural": None, "pgd": {"eps": 0.1, "steps": 1}}


def _tiny_run(adversarial):
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (512, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (512,), generator=generator)
    model = fm.classifier(fm.make_network(seed=7))
    history = train_classifier(model, images, labels, epochs=1, batch_size=128, lr=1e-3,
                               seed=5, adversarial=adversarial, progress=False)
    assert len(history["loss"]) == 1
    return model.network.state_dict()


@pytest.fixture(scope="module")
def tiny_runs():
    """Each training path twice: 1 epoch on 512 images, same seeds."""
    return {kind: (_tiny_run(settings), _tiny_run(settings)) for kind, settings in TINY.items()}


@pytest.mark.parametrize("kind", TINY)
def test_training_is_reproducible(tiny_runs, kind):
    first, second = tiny_runs[kind]
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    initial = fm.make_network(seed=7).state_dict()
    assert not torch.equal(first["fc2.weight"], initial["fc2.weight"])


def test_training_paths_differ(tiny_runs):
    assert not torch.equal(tiny_runs["natural"][0]["conv1.weight"],
                           tiny_runs["pgd"][0]["conv1.weight"])


def test_missing_weights_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DATA_DIRECTORY", tmp_path)
    for name in NAMES:
        with pytest.raises(MissingWeightsError, match="advqa train fashion-mnist-cnn"):
            load_classifier(name, device="cpu")
    with pytest.raises(MissingWeightsError, match="not found"):
        fm.build(weights=tmp_path / "absent.pt")
    random = load_classifier(fm.NAME, weights=None, device="cpu")
    assert random.info.weights == "random"


def test_models_command_lists_both(capsys):
    from advqa.cli.main import main

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in NAMES:
        row = next(line for line in lines if line.split()[0] == name)
        assert "present" in row


def _train_parser():
    from advqa.cli import train

    top = argparse.ArgumentParser(prog="advqa")
    train.register(top.add_subparsers())
    return top


@pytest.mark.parametrize("options", [["--epochs", "0"], ["--steps", "3"], ["--eps", "0"],
                                     ["--adversarial", "--steps", "0"]])
def test_train_command_rejects_bad_options(options, tmp_path):
    from advqa.cli.common import CommandError

    arguments = _train_parser().parse_args(
        ["train", fm.NAME, "--out", str(tmp_path / "x.pt"), *options])
    with pytest.raises(CommandError):
        arguments.handler(arguments)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.skipif(not FASHION_MNIST_DIRECTORY.is_dir(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_train_workflow_equals_the_command(tmp_path):
    """``advqa train`` is train_victim(TrainJob(...)): same weights, same sidecar command."""
    from advqa.cli.main import main
    from advqa.workflows.train import TrainJob, train_victim

    options = ["--limit", "256", "--epochs", "1", "--eval-steps", "1", "--no-progress"]
    assert main(["train", fm.NAME, "--out", str(tmp_path / "cli.pt"), *options]) == 0
    trained = train_victim(TrainJob(limit=256, epochs=1, eval_steps=1), tmp_path / "py.pt",
                           progress=False, say=lambda message: None)
    cli = torch.load(tmp_path / "cli.pt", weights_only=True)
    python = torch.load(trained.weights, weights_only=True)
    assert cli.keys() == python.keys()
    assert all(torch.equal(cli[key], python[key]) for key in cli)
    record = json.loads((tmp_path / "cli.json").read_text())
    assert record["test_accuracy"] == json.loads(trained.sidecar.read_text())["test_accuracy"]
    assert "--limit 256" in record["command"] and "--epochs 1" in record["command"]


@pytest.mark.skipif(not FASHION_MNIST_DIRECTORY.is_dir(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_until_plateau_stops_after_patience_and_keeps_the_best_epoch(tmp_path):
    """The held-out PGD accuracy is monitored each epoch; the run stops ``patience``
    epochs after the best one (or at the most epochs) and saves the best epoch's weights:
    re-measuring them gives the recorded best accuracy."""
    from advqa.workflows.train import TrainJob, train_victim

    job = TrainJob(model=fm.ADVERSARIAL_NAME, until_plateau=True, epochs=4, patience=1,
                   limit=700, validation=200, monitor_steps=2, steps=1, eval_steps=1,
                   threads=1)
    trained = train_victim(job, tmp_path / "adv.pt", progress=False, say=lambda message: None)
    record = json.loads(trained.sidecar.read_text())
    plateau = record["plateau"]
    curve = plateau["validation_pgd_accuracy"]
    best = plateau["best_epoch"]
    assert curve[best - 1] == max(curve) and best == curve.index(max(curve)) + 1
    assert plateau["epochs_run"] == len(curve) == record["epochs"]
    assert len(curve) == 4 or len(curve) - best == 1  # stopped by patience or the cap
    assert "--until-plateau --patience 1 --validation 200 --monitor-steps 2" in record["command"]
    assert record["optimizer"].endswith("constant")
    images, labels = load_idx(FASHION_MNIST_DIRECTORY, split="train")
    model = fm.build(weights=trained.weights)
    again = evaluate_accuracy(model, images[500:700], labels[500:700],
                              attack=pgd_attack(0.1, 2, seed=0))
    assert again == pytest.approx(curve[best - 1], abs=1e-9)


def test_until_plateau_needs_adversarial_training():
    from advqa.workflows.train import TrainJob

    with pytest.raises(ValueError, match="until_plateau"):
        TrainJob(until_plateau=True)
    with pytest.raises(ValueError, match="patience"):
        TrainJob(model=fm.ADVERSARIAL_NAME, until_plateau=True, patience=0)
