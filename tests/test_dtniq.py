"""DTNIQ-f: the trainer, the safe loader and the shipped VIF-trained proxy."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from advqa.data.io import read_image
from advqa.evaluate.correlation import correlations
from advqa.quality import dtniq as dtniq_module
from advqa.quality.dtniq import DtniqModelError, dtniq, load_dtniq, model_paths
from advqa.workflows.train_nr import constructed_mos_table, read_mos_table, train_nr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-source constructed set and a head trained on it (3 epochs, one patch each)."""
    folder = tmp_path_factory.mktemp("tiny")
    table = constructed_mos_table(folder / "set", sets=("imagenet",),
                                  sources=("imagenet_00_243", "imagenet_01_559",
                                           "imagenet_02_438"),
                                  distortions=("blur", "noise"), levels=(1, 3, 5),
                                  short_side=224, tiles=0, progress=False)
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
        predicted = model(torch.stack([read_image(row.image, mode="keep") for row in rows])).numpy()
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
    image = read_image(read_mos_table(table)[0].image, mode="keep")[None].clone().requires_grad_()
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


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The suite's small constructed set (12 ImageNet photos at 224 px, blur, noise and
    JPEG at levels 1, 3, 5, VIF labels; 4 photos held out) and a head trained on it."""
    folder = tmp_path_factory.mktemp("small")
    from advqa.data import load_samples

    sources = [sample.name for sample in load_samples("imagenet")][:12]
    table = constructed_mos_table(folder / "set", sets=("imagenet",), sources=sources,
                                  distortions=("blur", "noise", "jpeg"), levels=(1, 3, 5),
                                  short_side=224, tiles=0, progress=False)
    trained = train_nr(table, folder / "small.pt", grid=1, holdout=0.34, epochs=40,
                       progress=False, say=lambda *_: None, cache=folder / "features.pt")
    return table, trained


def test_dtniq_learns_the_constructed_labels_on_unseen_photos(small):
    table, trained = small
    record = json.loads(trained.sidecar.read_text())
    assert record["heldout"]["images"] == 4 * 10 and len(record["train_sources"]) == 8
    assert trained.heldout["srocc"] >= 0.85, trained.heldout
    # Loaded back from its files, the model gives the sidecar's held-out SROCC.
    rows = [row for row in read_mos_table(table) if row.source in trained.heldout["sources"]]
    model = load_dtniq(trained.weights, device="cpu")
    with torch.no_grad():
        predicted = model(torch.stack([read_image(row.image, mode="keep") for row in rows])).numpy()
    assert correlations(predicted, [row.mos for row in rows])["srocc"] == pytest.approx(
        trained.heldout["srocc"], abs=2e-3)


def test_the_shipped_proxy_is_registered_as_a_proxy():
    from advqa.quality import get_metric, list_metrics

    info = list_metrics()["dtniq"]
    assert not info.full_reference and info.higher_is_better and info.range == (0.0, 1.0)
    assert "not human" in info.description
    weights, sidecar = model_paths("dtniq-f-proxy")
    record = json.loads(sidecar.read_text())
    assert "proxy" in record["description"].lower() and "vif" in record["description"].lower()
    assert record["heldout"]["srocc"] >= 0.85 and record["weights_sha256"] == \
        dtniq_module.file_sha256(weights)
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    scores = get_metric("dtniq")(image)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()


def test_the_shipped_proxy_reproduces_its_held_out_srocc(tmp_path):
    # Rebuild the held-out photos the sidecar names (never trained on) and score them:
    # the SROCC against their VIF labels is the one the sidecar records (>= 0.85).
    _, sidecar = model_paths("dtniq-f-proxy")
    record = json.loads(sidecar.read_text())
    held = record["heldout"]["sources"]
    table = constructed_mos_table(tmp_path / "held", sources=held, tiles=0, progress=False)
    rows = read_mos_table(table)
    assert {row.source for row in rows} == set(held)
    assert len(rows) == record["heldout"]["images"]
    with torch.no_grad():
        predicted = torch.cat([dtniq(read_image(row.image, mode="keep")[None])
                               for row in rows]).numpy()
    srocc = correlations(predicted, [row.mos for row in rows])["srocc"]
    assert srocc == pytest.approx(record["heldout"]["srocc"], abs=2e-3) and srocc >= 0.85


def test_the_fashion_mnist_proxy_reproduces_its_held_out_srocc(tmp_path):
    # dtniq-f-proxy-fmnist: the Fashion-MNIST CNN's features, SSIM labels on 28×28 grey
    # training images; its held-out sources are rebuilt and scored through the registry.
    from advqa.quality import get_metric, list_metrics

    info = list_metrics()["dtniq_fmnist"]
    assert not info.full_reference and info.higher_is_better and "not human" in info.description
    _, sidecar = model_paths("dtniq-f-proxy-fmnist")
    record = json.loads(sidecar.read_text())
    assert record["backbone"] == "fashion-mnist-cnn" and "proxy" in record["description"].lower()
    held = record["heldout"]["sources"]
    table = constructed_mos_table(tmp_path / "held", sets=("fashion-mnist-train",),
                                  sources=held, short_side=None, tiles=0, label="ssim",
                                  distortions=("blur", "noise", "jpeg", "contrast"),
                                  progress=False)
    rows = read_mos_table(table)
    assert len(rows) == record["heldout"]["images"]
    images = torch.stack([read_image(row.image, mode="keep") for row in rows])
    assert images.shape[1:] == (1, 28, 28)
    metric = get_metric("dtniq_fmnist")
    with torch.no_grad():
        predicted = metric(images).numpy()
        rgb = metric(images[:4].expand(-1, 3, -1, -1)).numpy()
    srocc = correlations(predicted, [row.mos for row in rows])["srocc"]
    assert srocc == pytest.approx(record["heldout"]["srocc"], abs=2e-3) and srocc >= 0.85
    np.testing.assert_allclose(rgb, predicted[:4], atol=1e-5)  # RGB → rgb2gray → same grey
