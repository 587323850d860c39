"""DTNIQ-f: the trainer, the safe loader and the shipped SSIM-trained proxy."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from advqa.evaluate.correlation import correlations
from advqa.quality import dtniq as dtniq_module
from advqa.quality.dtniq import DtniqModelError, dtniq, load_dtniq, model_paths
from advqa.workflows.train_nr import _read_png, constructed_mos_table, read_mos_table, train_nr

# No proxy model ships yet: the one trained so far (EfficientNet-Lite0 final features,
# 23 training sources) reached a held-out SROCC of 0.62, below the 0.85 bar. The
# tests of the shipped proxy (clean beats distorted on held-out photos; SROCC >= 0.85
# computed here) come with the model that passes.


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-source constructed set and a head trained on it (3 epochs, one patch each)."""
    folder = tmp_path_factory.mktemp("tiny")
    table = constructed_mos_table(folder / "set", sets=("imagenet",),
                                  sources=("imagenet_00_243", "imagenet_01_559",
                                           "imagenet_02_438"),
                                  distortions=("blur", "noise"), levels=(1, 3, 5),
                                  short_side=224, progress=False)
    trained = train_nr(table, folder / "tiny.pt", grid=1, holdout=0.34, epochs=3,
                       float16=False, progress=False, say=lambda *_: None)
    return table, trained


def test_trainer_on_a_tiny_constructed_set(tiny):
    table, trained = tiny
    out = trained.weights
    record = json.loads(trained.sidecar.read_text())
    held = trained.heldout["sources"]
    assert len(held) == 1 and held[0] not in record["train_sources"]
    assert record["heldout"]["images"] == 7 and record["data"]["images"] == 21
    assert len(record["data"]["images_sha256"]) == 64 and record["seed"] == 0
    # The sidecar's SROCC is advqa's correlations() of the saved model's predictions.
    rows = [row for row in read_mos_table(table) if row.source in held]
    model = load_dtniq(out, device="cpu")
    with torch.no_grad():
        predicted = model(torch.stack([_read_png(row.image) for row in rows])).numpy()
    mos = np.array([row.mos for row in read_mos_table(table)])
    target = (np.array([row.mos for row in rows]) - mos.min()) / (mos.max() - mos.min())
    assert correlations(predicted, target)["srocc"] == pytest.approx(
        trained.heldout["srocc"], abs=1e-4)


def test_the_loader_refuses_pickles_and_altered_files(tiny, tmp_path):
    weights, sidecar = model_paths(tiny[1].weights)
    record = json.loads(sidecar.read_text())
    altered = tmp_path / "altered.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    altered.write_bytes(bytes(data))
    altered.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(DtniqModelError, match="SHA-256"):
        load_dtniq(altered)
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"weight": np.ones(3)}))  # arbitrary objects
    pickled.with_suffix(".json").write_text(json.dumps(
        {**record, "weights_sha256": dtniq_module.file_sha256(pickled)}))
    with pytest.raises(DtniqModelError, match="weights_only"):
        load_dtniq(pickled)


def test_dtniq_is_differentiable_and_checks_its_input(tiny):
    table, trained = tiny
    model = str(trained.weights)
    image = _read_png(read_mos_table(table)[0].image)[None].clone().requires_grad_()
    scores = dtniq(image, model=model)
    assert scores.shape == (1,) and 0 <= float(scores.detach()) <= 1
    scores.sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="clamp"):
        dtniq(image.detach() * 2, model=model)
    assert dtniq(image.detach() * 2, clamp=True, model=model).shape == (1,)


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(DtniqModelError, match="dtniq train"):
        load_dtniq(tmp_path / "absent.pt")
