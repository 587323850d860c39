"""Universal adversarial perturbations: training, bounds, tiling, reproducibility, files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from advqa.quality import get_metric
from advqa.robustness import jpeg_copy
from advqa.robustness import uap as uap_module
from advqa.robustness.uap import (
    UAP,
    UAP_KINDS,
    UAPFormatError,
    apply_uap,
    recover_uap,
    train_uap,
)

SIZE = 192
FAST = {"epochs": 5, "batch_size": 4, "size": SIZE}


@pytest.fixture(scope="module")
def photos():
    from advqa.data import load_samples, preprocess

    return preprocess(load_samples("photos"), size=SIZE)


@pytest.fixture(scope="module")
def piqe():
    return get_metric("piqe")


@pytest.fixture(scope="module")
def trained(photos, piqe):
    """One seeded UAP of each kind against PIQE (no-reference, lower is better)."""
    return {kind: train_uap(kind, piqe, photos[:4], metric_range=60.0, seed=0, progress=False,
                            **FAST)
            for kind in UAP_KINDS}


@pytest.mark.parametrize("kind", UAP_KINDS)
def test_uap_improves_metric_on_held_out_photos(kind, trained, photos, piqe):
    held_out = photos[4:8]
    with torch.no_grad():
        clean = piqe(held_out).mean().item()
        attacked = piqe(apply_uap(held_out, trained[kind], 0.8)).mean().item()
    assert attacked < clean - 3.0, (kind, clean, attacked)


@pytest.mark.parametrize("kind", UAP_KINDS)
def test_uap_bounded_shaped_and_described(kind, trained):
    uap = trained[kind]
    assert uap.perturbation.shape == (3, SIZE, SIZE)
    assert uap.perturbation.dtype == torch.float32
    assert uap.perturbation.abs().max().item() <= 0.1 + 1e-7
    assert uap.perturbation.abs().max().item() > 0
    assert (uap.kind, uap.metric, uap.seed) == (kind, "piqe", 0)
    assert uap.settings["eps"] == 0.1 and uap.settings["epochs"] == 5
    assert uap.settings["jpeg_quality"] is None


@pytest.mark.parametrize("kind", UAP_KINDS)
def test_seeded_training_is_reproducible(kind, trained, photos, piqe):
    again = train_uap(kind, piqe, photos[:4], metric_range=60.0, seed=0, progress=False, **FAST)
    assert torch.equal(again.perturbation, trained[kind].perturbation)


def test_generative_seed_changes_the_uap(trained, photos, piqe):
    other = train_uap("generative", piqe, photos[:4], metric_range=60.0, seed=1, progress=False,
                      **FAST)
    assert not torch.equal(other.perturbation, trained["generative"].perturbation)


def test_full_reference_metric_attacks_the_jpeg_copy(photos):
    gmsd = get_metric("gmsd")
    pristine = photos[:2, :, :64, :64].contiguous()
    uap = train_uap("optimized", gmsd, pristine, metric_range=0.1, seed=0, progress=False,
                    epochs=2, batch_size=2, size=32, lr=1e-2)
    assert uap.settings["jpeg_quality"] == 80
    assert uap.perturbation.shape == (3, 32, 32)
    assert torch.isfinite(uap.perturbation).all()  # GMSD's NaN gradients are zeroed
    assert uap.perturbation.abs().max() <= 0.1 + 1e-7
    with torch.no_grad():
        score = gmsd(uap.apply(jpeg_copy(pristine), 0.8), pristine)
    assert torch.isfinite(score).all()


def test_apply_uap_tiles_like_numpy():
    perturbation = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5) / 100
    images = torch.zeros(2, 2, 7, 12)
    expected = np.tile(perturbation.numpy(), (1, 3, 3))[:, :7, :12]
    result = apply_uap(images, perturbation, 1.0)
    for image in result:
        np.testing.assert_array_equal(image.numpy(), expected)
    half = apply_uap(images, perturbation, 0.5)
    np.testing.assert_allclose(half[0].numpy(), 0.5 * expected, rtol=0, atol=1e-7)


def test_apply_uap_clips_and_amplitude_zero_is_identity(photos):
    images = photos[:2]
    perturbation = torch.full((3, 16, 16), 0.1)
    perturbation[:, ::2] = -0.1
    attacked = apply_uap(images, perturbation, 20.0)
    assert attacked.min() >= 0 and attacked.max() <= 1
    assert ((attacked == 0) | (attacked == 1)).float().mean() > 0.99
    assert torch.equal(apply_uap(images, perturbation, 0.0), images)


@pytest.mark.parametrize(("images", "amplitude", "message"), [
    (torch.rand(3, 8, 8), 0.5, "NCHW"),
    (torch.rand(1, 3, 8, 8) + 1, 0.5, r"\[0, 1\]"),
    (torch.rand(1, 3, 8, 8), -0.1, "amplitude"),
    (torch.rand(1, 3, 8, 8), float("nan"), "amplitude"),
    (torch.rand(1, 1, 8, 8), 0.5, "channels"),
])
def test_apply_uap_rejects_bad_inputs(images, amplitude, message):
    with pytest.raises(ValueError, match=message):
        apply_uap(images, torch.zeros(3, 4, 4), amplitude)


def test_train_uap_rejects_bad_inputs(photos, piqe):
    with pytest.raises(ValueError, match="valid kinds: cumulative, optimized, generative"):
        train_uap("universal", piqe, photos[:2], metric_range=60.0)
    with pytest.raises(ValueError, match="unknown setting"):
        train_uap("optimized", piqe, photos[:2], metric_range=60.0, width=8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_uap("cumulative", piqe, photos[:2] * 2, metric_range=60.0)
    with pytest.raises(ValueError, match="eps"):
        train_uap("cumulative", piqe, photos[:2], metric_range=60.0, eps=-1)
    with pytest.raises(ValueError, match="multiple of 8"):
        train_uap("generative", piqe, photos[:2], metric_range=60.0, size=100)


def test_save_load_round_trip(trained, tmp_path):
    uap = trained["generative"]
    path = uap.save(tmp_path / "uaps" / "piqe-generative")
    assert path.name == "piqe-generative.npy"
    loaded = UAP.load(path)
    assert torch.equal(loaded.perturbation, uap.perturbation)
    assert (loaded.kind, loaded.metric, loaded.seed) == ("generative", "piqe", 0)
    assert loaded.settings == uap.settings
    assert loaded.training_fingerprint == uap.training_fingerprint != ""
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["seed"] == 0 and sidecar["settings"]["lr"] == uap.settings["lr"]
    assert sidecar["advqa_version"]
    assert np.load(path, allow_pickle=False).dtype == np.float32


def test_load_reports_corrupt_or_missing_sidecar(trained, tmp_path):
    path = trained["cumulative"].save(tmp_path / "uap.npy")
    sidecar = path.with_suffix(".json")
    text = sidecar.read_text()
    sidecar.write_text(text[: len(text) // 2])
    with pytest.raises(UAPFormatError, match="not valid JSON"):
        UAP.load(path)
    sidecar.write_text(json.dumps({"kind": "cumulative"}))
    with pytest.raises(UAPFormatError, match="lacks fields"):
        UAP.load(path)
    sidecar.write_text(text)
    np.save(path, np.zeros((3, SIZE, SIZE), np.float32))
    with pytest.raises(UAPFormatError, match="checksum"):
        UAP.load(path)
    sidecar.unlink()
    with pytest.raises(FileNotFoundError, match="no sidecar"):
        UAP.load(path)
    with pytest.raises(FileNotFoundError, match="no UAP perturbation"):
        UAP.load(tmp_path / "absent.npy")


def small_uap(value: float, kind: str = "cumulative") -> UAP:
    return UAP(perturbation=torch.full((3, 8, 8), value), kind=kind, metric="psnr", seed=0,
               settings={"eps": 0.1}, training_fingerprint="images-a")


class Killed(BaseException):
    """Stands for a kill: nothing after it runs."""


@pytest.mark.parametrize("dies_at", [".npy", ".json"])
def test_a_kill_during_save_leaves_a_pair_or_a_recoverable_half(tmp_path, monkeypatch, dies_at):
    path = small_uap(0.01).save(tmp_path / "cumulative-uap-psnr.npy")
    real = uap_module.atomic_write_bytes

    def killed_writing(target, data):
        if Path(target).suffix == dies_at:
            real(Path(target).parent / f".{Path(target).name}.0123abcd.tmp", data[:10])
            raise Killed
        return real(target, data)

    monkeypatch.setattr(uap_module, "atomic_write_bytes", killed_writing)
    with pytest.raises(Killed):
        small_uap(0.02).save(path)
    monkeypatch.undo()
    # The old sidecar went first, so the old array alone is visibly incomplete.
    assert path.is_file() and not path.with_suffix(".json").exists()
    with pytest.raises(FileNotFoundError, match="no sidecar"):
        UAP.load(path)
    with pytest.warns(UserWarning, match="incomplete or damaged.*no sidecar"):
        assert recover_uap(path) is None
    assert list(tmp_path.iterdir()) == []  # the half and the temporary are gone
    assert recover_uap(path) is None       # nothing left: nothing to report


def test_recover_uap_keeps_good_pairs_and_removes_bad_ones(tmp_path):
    import warnings

    path = small_uap(0.01).save(tmp_path / "a.npy")
    sidecar = path.with_suffix(".json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = recover_uap(path, kind="cumulative-uap", training_fingerprint="images-a")
    assert torch.equal(found.perturbation, small_uap(0.01).perturbation)

    for damage, message in [
        (lambda: path.unlink(), "no UAP perturbation"),            # sidecar without array
        (lambda: np.save(path, np.zeros((3, 8, 8), np.float32)), "checksum"),
        (lambda: sidecar.write_text("{"), "not valid JSON"),
    ]:
        small_uap(0.01).save(path)
        damage()
        with pytest.warns(UserWarning, match=message):
            assert recover_uap(path) is None
        assert not path.exists() and not sidecar.exists()

    small_uap(0.01).save(path)
    with pytest.warns(UserWarning, match="training_fingerprint 'images-a', expected 'images-b'"):
        assert recover_uap(path, training_fingerprint="images-b") is None
    small_uap(0.01).save(path)
    with pytest.warns(UserWarning, match="kind 'cumulative', expected 'optimized'"):
        assert recover_uap(path, kind="optimized-uap") is None
