"""Fit-for-task gate (Feng & Cai): distortions, SVM parity, file format, splits, squeezing, CLI."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from advqa.detect.distortions import DISTORTIONS, distort
from advqa.detect.features import Features, QualityScale
from advqa.detect.fitness_eval import grouped_splits
from advqa.detect.gate import (
    Gate,
    GateFormatError,
    GateSignatureError,
    SVMDetector,
    create_gate_key,
    rbf_decision,
    read_gate_key,
)
from advqa.detect.squeeze import FeatureSqueezing, median_filter, reduce_bit_depth
from advqa.quality import list_metrics

ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def photo():
    """One natural photo (chelsea the cat), 128×128."""
    from advqa.data import load_samples, preprocess

    samples = load_samples("photos")
    chosen = [sample for sample in samples if "chelsea" in sample.name][:1] or [samples[0]]
    return preprocess(chosen, size=128)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def sharpness(images: torch.Tensor) -> float:
    return float((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
                 + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_distortions_are_monotone_in_severity(photo, kind):
    levels = [distort(photo, kind, level) for level in range(1, 6)]
    assert all(level.shape == photo.shape for level in levels)
    values = [psnr(photo, level) for level in levels]
    assert all(a > b for a, b in itertools.pairwise(values)), values
    if kind == "blur":  # sharpness falls strictly
        values = [sharpness(level) for level in levels]
        assert all(a > b for a, b in itertools.pairwise(values)), values
    if kind == "noise":  # high-frequency energy rises strictly
        values = [sharpness(level) for level in levels]
        assert all(a < b for a, b in itertools.pairwise(values)), values


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_grey_images_are_distorted_as_grey(kind):
    # Fashion-MNIST is one-channel, 28×28: every distortion keeps the channel count, and
    # blur matches the RGB path on a grey image replicated to three channels.
    from advqa.data import load_samples

    grey = torch.stack([sample.image for sample in load_samples("fashion-mnist")][:4]).float()
    assert grey.shape[1:] == (1, 28, 28)
    if kind == "jpeg2000":  # the codec's minimum stream: every level would be the same
        with pytest.raises(ValueError, match="not distinct"):
            distort(grey, kind, 1)
        return
    levels = [distort(grey, kind, level) for level in range(1, 6)]
    assert all(level.shape == grey.shape for level in levels)
    values = [psnr(grey, level) for level in levels]
    assert all(a > b for a, b in itertools.pairwise(values)), values
    if kind == "blur":
        rgb = distort(grey.expand(-1, 3, -1, -1), kind, 3)
        torch.testing.assert_close(levels[2], rgb[:, :1], atol=0, rtol=0)


def test_distortion_rejects_bad_level(photo):
    with pytest.raises(ValueError, match="level"):
        distort(photo, "jpeg", 6)
    with pytest.raises(ValueError, match="unknown distortion"):
        distort(photo, "fog", 1)


def test_quality_scale_maps_to_unit_interval():
    scale = QualityScale.default("brisque")
    assert (scale.lo, scale.hi, scale.higher_is_better) == (0.0, 100.0, False)
    np.testing.assert_allclose(scale.normalise([-5, 0, 25, 100, 150]), [1, 1, 0.75, 0, 0])
    assert QualityScale.default("niqe").hi == 20.0
    assert QualityScale.from_json(scale.to_json()) == scale


@pytest.mark.parametrize(("metric", "range_"), [
    ("brisque", (0.0, 100.0)), ("niqe", (0.0, 20.0)), ("piqe", (0.0, 100.0))])
def test_quality_scale_is_the_registry_range(metric, range_):
    # One range per metric, stated in the registry; the gate's numbers stay as they were.
    scale = QualityScale.default(metric)
    assert (scale.lo, scale.hi) == range_ == list_metrics()[metric].range


def test_numpy_rbf_decision_equals_sklearn():
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (40, 6)), rng.normal(0.8, 1.3, (40, 6))])
    y = np.r_[np.zeros(40), np.ones(40)]
    test = rng.normal(0.4, 1.5, (25, 6))
    for gamma in ("scale", 0.3):
        svc = SVC(kernel="rbf", C=2.0, gamma=gamma).fit(x, y)
        ours = rbf_decision(test, svc.support_vectors_, svc.dual_coef_[0], svc.intercept_[0],
                            svc._gamma)
        np.testing.assert_allclose(ours, svc.decision_function(test), rtol=1e-10, atol=1e-12)
    detector = SVMDetector.fit(x, y, penalty=2.0)
    scaler = StandardScaler().fit(x)
    svc = SVC(kernel="rbf", C=2.0, gamma="scale").fit(scaler.transform(x), y)
    np.testing.assert_allclose(detector.decision(test),
                               svc.decision_function(scaler.transform(test)),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(detector.flags(test), svc.predict(scaler.transform(test)) == 1)


def test_rbf_decision_in_chunks_equals_one_pass(monkeypatch):
    """Bounded memory: the decision over many rows is computed in chunks of rows, with
    the same values as sklearn whatever the chunk size."""
    from sklearn.svm import SVC

    from advqa.detect import gate as gate_module

    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (60, 6)), rng.normal(0.5, 1.2, (60, 6))])
    svc = SVC(kernel="rbf", gamma="scale").fit(x, np.r_[np.zeros(60), np.ones(60)])
    test = rng.normal(0.2, 1.4, (101, 6))
    arrays = (svc.support_vectors_, svc.dual_coef_[0], svc.intercept_[0], svc._gamma)
    whole = rbf_decision(test, *arrays)
    monkeypatch.setattr(gate_module, "RBF_CHUNK_VALUES", 7 * len(svc.support_vectors_))
    np.testing.assert_allclose(rbf_decision(test, *arrays), whole, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(whole, svc.decision_function(test), rtol=1e-10, atol=1e-12)
    assert rbf_decision(np.zeros((0, 6)), *arrays).shape == (0,)


def test_check_distortions_refuses_before_any_work():
    from advqa.detect.distortions import check_distortions

    assert check_distortions(["blur", "jpeg"], (1, 28, 28)) == ("blur", "jpeg")
    assert check_distortions(DISTORTIONS, (3, 224, 224)) == DISTORTIONS
    assert check_distortions((), (1, 28, 28)) == ()
    with pytest.raises(ValueError, match=r"not distinct on \(1, 28, 28\)"):
        check_distortions(["blur", "jpeg2000"], (1, 28, 28))
    with pytest.raises(ValueError, match="unknown distortion"):
        check_distortions(["blur", "fog"], None)
    with pytest.raises(ValueError, match="repeat"):
        check_distortions(["jpeg", "jpeg"], None)


def test_prepare_gives_images_the_victims_channels():
    """A grey victim gets colour images as grey (rgb2gray weights), an RGB one gets grey
    images repeated; sizes go to the victim's input either way."""
    from advqa.detect.features import match_channels, model_channels, prepare
    from advqa.models import load_classifier

    grey_model = load_classifier("fashion-mnist-cnn", device="cpu")
    assert model_channels(grey_model) == 1
    generator = torch.Generator().manual_seed(0)
    colour = torch.rand(2, 3, 56, 56, generator=generator)
    prepared = prepare(colour, grey_model)
    assert prepared.shape == (2, 1, 28, 28)
    grey = torch.rand(2, 1, 28, 28, generator=generator)
    assert torch.equal(prepare(grey, grey_model), grey)
    assert torch.equal(prepare([grey[0], grey[1]], grey_model), grey)
    torch.testing.assert_close(match_channels(grey.expand(-1, 3, -1, -1), 1), grey)
    assert match_channels(grey, 3).shape == (2, 3, 28, 28)
    with pytest.raises(ValueError, match="2-channel"):
        match_channels(torch.zeros(1, 2, 4, 4), 1)


def test_an_unscorable_image_gets_the_worst_quality():
    """BRISQUE cannot score a flat image (NaN): its normalised quality is 0, its raw score
    stays NaN, and the features stay finite for the SVM."""
    from advqa.detect.features import count_unscored, extract
    from advqa.models import load_classifier

    grey_model = load_classifier("fashion-mnist-cnn", device="cpu")
    from advqa.data import load_samples

    garment = load_samples("fashion-mnist")[0].image[None]
    images = torch.cat([garment, torch.zeros(1, 1, 28, 28)])
    features = extract(grey_model, images, QualityScale.default("brisque"))
    assert np.isfinite(features.quality_raw[0]) and np.isnan(features.quality_raw[1])
    assert features.quality[1] == 0 and np.all(np.isfinite(features.features))
    assert count_unscored(features) == 1
    # A gate's decision says why that image's quality is 0.
    clean = synthetic_features(20, adversarial=False, seed=1)
    adversarial = synthetic_features(20, adversarial=True, seed=2)
    gate = Gate.from_features(clean, adversarial, scale=QualityScale.default("brisque"),
                              quality_threshold=0.3, use_squeeze=False)
    first, second = gate.decide(Features(features.features, features.predictions,
                                         features.quality_raw))
    assert not any("could not score" in reason for reason in first.reasons)
    assert not second.fit and "brisque could not score this image (raw nan)" in " ".join(
        second.reasons)


def test_grouped_splits_never_separate_a_pair():
    pairs = np.repeat(np.arange(15), 2)  # clean and adversarial share a pair id
    splits = grouped_splits(pairs, repeats=10, seed=3)
    assert len(splits) == 10
    seen = set()
    for train, test in splits:
        assert not set(pairs[train]) & set(pairs[test])
        assert sorted(np.r_[train, test]) == list(range(30))
        assert abs(len(set(pairs[test])) - 7.5) <= 0.5
        seen.add(tuple(sorted(test)))
    assert len(seen) > 1


def synthetic_features(count: int, *, adversarial: bool, seed: int) -> Features:
    rng = np.random.default_rng(seed)
    top1 = rng.uniform(0.2, 0.6, count) if adversarial else rng.uniform(0.7, 1.0, count)
    rest = np.sort(rng.uniform(0, 1 - top1[:, None], (count, 4)) / 4, axis=1)[:, ::-1]
    quality = rng.uniform(0.3, 0.6, count) if adversarial else rng.uniform(0.5, 0.9, count)
    features = np.column_stack([top1, rest, quality])
    return Features(features, rng.integers(0, 1000, count), 100 * (1 - quality),
                    rng.uniform(0, 1.5 if adversarial else 0.4, count))


@pytest.fixture()
def synthetic_gate():
    clean = synthetic_features(30, adversarial=False, seed=0)
    adversarial = synthetic_features(30, adversarial=True, seed=1)
    gate = Gate.from_features(clean, adversarial, scale=QualityScale.default("brisque"),
                              quality_threshold=0.3, target_fpr=0.1)
    probe = Features.concatenate([synthetic_features(20, adversarial=False, seed=5),
                                  synthetic_features(20, adversarial=True, seed=6)])
    return gate, probe


KEY = b"0123456789abcdef-test-key"


def test_gate_save_load_round_trip(tmp_path, synthetic_gate):
    gate, probe = synthetic_gate
    json_path, arrays_path = gate.save(tmp_path / "gate.json", key=KEY)
    assert arrays_path == tmp_path / "gate.npz"
    document = json.loads(json_path.read_text())
    assert document["format_version"] == 1 and len(document["arrays_sha256"]) == 64
    assert document["signature"]["algorithm"] == "HMAC-SHA256"
    with np.load(arrays_path, allow_pickle=False) as archive:
        assert "svm_support_vectors" in archive.files
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified gate loads without a warning
        loaded = Gate.load(json_path, key=KEY)
    assert loaded.detectors == gate.detectors == ["svm", "quality", "squeeze"]
    before, after = gate.decide(probe), loaded.decide(probe)
    assert [d.fit for d in before] == [d.fit for d in after]
    assert [d.reasons for d in before] == [d.reasons for d in after]
    assert [d.scores for d in before] == [d.scores for d in after]
    assert 0 < sum(d.fit for d in before) < len(before)
    unfit = [d for d in before if not d.fit]
    assert all(d.reasons for d in unfit)


def test_gate_load_refuses_tampering(tmp_path, synthetic_gate):
    gate, _ = synthetic_gate
    json_path, arrays_path = gate.save(tmp_path / "gate.json", key=KEY)
    original_json, original_arrays = json_path.read_text(), arrays_path.read_bytes()

    # Tampered arrays: one byte changed.
    data = bytearray(original_arrays)
    data[len(data) // 2] ^= 0xFF
    arrays_path.write_bytes(bytes(data))
    with pytest.raises(GateFormatError, match="SHA-256 does not match"):
        Gate.load(json_path, key=KEY)
    arrays_path.write_bytes(original_arrays)

    # Edited JSON: a threshold changed, still valid JSON.
    document = json.loads(original_json)
    document["detectors"]["quality"]["threshold"] = 0.0
    json_path.write_text(json.dumps(document))
    with pytest.raises(GateFormatError, match="edited or corrupted"):
        Gate.load(json_path, key=KEY)

    # Wrong version.
    document = json.loads(original_json)
    document["format_version"] = 99
    json_path.write_text(json.dumps(document))
    with pytest.raises(GateFormatError, match="unsupported gate format_version 99"):
        Gate.load(json_path, key=KEY)

    # Corrupt JSON.
    json_path.write_text(original_json[: len(original_json) // 2])
    with pytest.raises(GateFormatError, match="not a valid gate JSON"):
        Gate.load(json_path, key=KEY)
    assert issubclass(GateFormatError, ValueError)

    # Restored: loads again.
    json_path.write_text(original_json)
    assert Gate.load(json_path, key=KEY).detectors == gate.detectors


def forge(json_path: Path, edit) -> None:
    """The attack of issue 11: edit the JSON, then recompute its unkeyed SHA-256."""
    from advqa.detect.gate import _canonical, _sha256

    document = json.loads(json_path.read_text())
    document.pop("json_sha256")
    edit(document)
    document["json_sha256"] = _sha256(_canonical(document))
    json_path.write_text(json.dumps(document, indent=2))


def screen(folder, gate_path, *options) -> int:
    from advqa.cli.main import main

    return main(["screen", str(folder), "--gate", str(gate_path),
                 "--out", str(folder.parent / "decisions.csv"), *options])


def test_signature_refuses_an_edited_threshold_with_a_recomputed_hash(tmp_path, synthetic_gate,
                                                                      capsys):
    gate, probe = synthetic_gate
    key_file = create_gate_key(tmp_path / "gate.key")
    key = read_gate_key(key_file)
    json_path, _ = gate.save(tmp_path / "gate.json", key=key)
    folder = tmp_path / "incoming"
    folder.mkdir()
    # Untouched and the right key: loads (library and screen, which then stops at the empty
    # folder: exit 2, "no image files", past the gate's checks).
    assert Gate.load(json_path, key=key).detectors == gate.detectors
    capsys.readouterr()
    assert screen(folder, json_path, "--key-file", str(key_file)) == 2
    assert "no image files" in capsys.readouterr().err

    # The attack: every detector made blind, hashes recomputed.
    def blind(document):
        document["detectors"]["svm"]["threshold"] = 1e9
        document["detectors"]["squeeze"]["threshold"] = 1e9
        document["detectors"]["quality"]["threshold"] = -1.0

    forge(json_path, blind)
    with pytest.warns(UserWarning, match="NOT verified"):  # what the unkeyed check let through
        blinded = Gate.load(json_path, allow_unsigned=True)
    assert all(d.fit for d in blinded.decide(probe))     # every AE would pass as fit
    with pytest.raises(GateSignatureError, match="signature does not match"):
        Gate.load(json_path, key=key)
    with pytest.raises(GateSignatureError, match="is signed"):
        Gate.load(json_path)
    capsys.readouterr()
    assert screen(folder, json_path, "--key-file", str(key_file)) == 2
    assert "signature does not match" in capsys.readouterr().err
    assert screen(folder, json_path) == 2
    assert "--allow-unsigned" in capsys.readouterr().err

    # Stripping the signature does not help: an unsigned gate needs an explicit opt-in.
    forge(json_path, lambda document: document.pop("signature"))
    with pytest.raises(GateSignatureError, match="not signed"):
        Gate.load(json_path, key=key)
    assert screen(folder, json_path, "--key-file", str(key_file)) == 2
    assert "not signed" in capsys.readouterr().err


def test_wrong_key_and_unsigned_gates(tmp_path, synthetic_gate, capsys):
    gate, _ = synthetic_gate
    signed, _ = gate.save(tmp_path / "signed.json", key=KEY)
    with pytest.raises(GateSignatureError, match="signature does not match"):
        Gate.load(signed, key=b"another key of 16+ bytes")
    with pytest.raises(GateSignatureError, match="signature does not match"):
        Gate.load(signed, key=b"another key, 16+ bytes", allow_unsigned=True)  # never waived
    with pytest.warns(UserWarning, match="signature NOT verified"):
        assert Gate.load(signed, allow_unsigned=True).detectors == gate.detectors
    with pytest.raises(ValueError, match="fewer than 16"):
        gate.save(tmp_path / "weak.json", key=b"short")

    unsigned, _ = gate.save(tmp_path / "unsigned.json")
    assert "signature" not in json.loads(unsigned.read_text())
    for key in (None, KEY):
        with pytest.raises(GateSignatureError, match="not signed"):
            Gate.load(unsigned, key=key)
    with pytest.warns(UserWarning, match="corruption, not deliberate edits"):
        assert Gate.load(unsigned, allow_unsigned=True).detectors == gate.detectors
    folder = tmp_path / "incoming"
    folder.mkdir()
    capsys.readouterr()
    assert screen(folder, unsigned) == 2
    assert "--allow-unsigned" in capsys.readouterr().err
    assert screen(folder, unsigned, "--allow-unsigned") == 2  # loaded; the folder is empty
    error = capsys.readouterr().err
    assert "corruption, not deliberate edits" in error and "no image files" in error


def test_gate_key_file(tmp_path, monkeypatch, capsys):
    from advqa.cli.main import main

    path = tmp_path / "keys" / "gate.key"
    assert main(["detect", "gate-key", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_gate_key(path)
    assert len(key) == 64 and int(key, 16) >= 0  # 32 random bytes as hex
    assert main(["detect", "gate-key", str(path)]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err
    assert read_gate_key(path) == key

    monkeypatch.delenv("ADVQA_GATE_KEY_FILE", raising=False)
    assert read_gate_key() is None
    monkeypatch.setenv("ADVQA_GATE_KEY_FILE", str(path))
    assert read_gate_key() == key

    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789\n")
    os.chmod(short, 0o600)
    with pytest.raises(ValueError, match="10 bytes, fewer than 16"):
        read_gate_key(short)
    os.chmod(path, 0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        assert read_gate_key(path) == key


def test_squeezers_match_reference():
    from scipy.ndimage import median_filter as scipy_median

    images = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    ours = median_filter(images, 2).numpy()
    reference = scipy_median(images.numpy(), size=(1, 1, 2, 2), mode="nearest")
    np.testing.assert_allclose(ours, reference)
    squeezed = reduce_bit_depth(images, 5)
    assert len(torch.unique(squeezed)) <= 32


@pytest.fixture(scope="module")
def model():
    from advqa.models import load_classifier

    return load_classifier("efficientnet-lite0", device="cpu")


@pytest.fixture(scope="module")
def photos(model):
    from advqa.data import load_samples, preprocess

    samples = load_samples("imagenet")[:4]
    images = preprocess(samples, size=224, resize=model.info.resize_size)
    return images, torch.tensor(samples.labels)


@pytest.fixture(scope="module")
def adversarial(model, photos):
    from advqa.attacks import get_attack

    images, labels = photos
    cache = ARTIFACTS / "gate_deepfool_imagenet2.npy"
    if cache.exists():
        cached = torch.from_numpy(np.load(cache, allow_pickle=False))
        with torch.no_grad():
            if (model(cached).argmax(1) != labels[:2]).all():
                return cached
    attack = get_attack("deepfool", norm="linf", overshoot=0.02, steps=20, candidates=5)
    result = attack(model, images[:2], labels[:2])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, result.numpy())
    return result


def test_feature_squeezing_flags_strong_ae_more_than_clean(model, photos, adversarial):
    """A successful DeepFool AE sits near the boundary: squeezing moves its softmax a lot."""
    images, labels = photos
    with torch.no_grad():
        assert (model(adversarial).argmax(1) != labels[:2]).all()
    squeezer = FeatureSqueezing()
    clean_scores = squeezer.score(model, images[:2])
    adversarial_scores = squeezer.score(model, adversarial)
    assert (adversarial_scores > clean_scores).all(), (clean_scores, adversarial_scores)


def cli():
    from advqa.cli import gate as gate_cli

    top = argparse.ArgumentParser(prog="advqa")
    subparsers = top.add_subparsers()
    gate_cli.register(subparsers)
    gate_cli.add_commands(subparsers.add_parser("detect").add_subparsers())
    return top


def test_screen_writes_decisions_and_lists_unreadable(tmp_path, model, photos, adversarial,
                                                      capsys, monkeypatch):
    from advqa.data import save_png

    images, _ = photos
    noisy = (images[2:3] + 0.3 * torch.randn(images[2:3].shape,
                                             generator=torch.Generator().manual_seed(0)))
    gate = Gate.fit(model, images[:3], torch.cat([adversarial, noisy.clamp(0, 1)]))
    key_file = create_gate_key(tmp_path / "gate.key")
    monkeypatch.setenv("ADVQA_GATE_KEY_FILE", str(key_file))  # screen finds the key here
    gate_path, _ = gate.save(tmp_path / "gate.json", key=read_gate_key(key_file))

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(2):
        save_png(images[index], folder / f"clean{index}.png")
    save_png(adversarial[0], folder / "adversarial.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    out = tmp_path / "decisions.csv"
    arguments = cli().parse_args(["screen", str(folder), "--gate", str(gate_path),
                                  "--out", str(out)])
    assert arguments.handler(arguments) == 0  # skipped and listed: exit 0 (advqa --help)
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "broken.png" not in out.read_text()
    failures = list(csv.DictReader((tmp_path / "decisions.failures.csv").open()))
    assert [row["path"] for row in failures] == ["broken.png"] and failures[0]["reason"]
    rows = list(csv.DictReader(out.open()))
    assert [row["path"] for row in rows] == ["adversarial.png", "clean0.png", "clean1.png"]
    assert {row["decision"] for row in rows} <= {"fit", "unfit"}
    assert {"reasons", "svm", "quality", "squeeze"} <= set(rows[0])
    # The saved gate decides like the in-memory one.
    reloaded = Gate.load(gate_path, key=read_gate_key(), model=model)
    features = gate.features(torch.cat([images[:2], adversarial]))
    assert [d.fit for d in reloaded.decide(features)] == [d.fit for d in gate.decide(features)]


def test_screen_exit_codes_empty_all_failed_and_missing_gate(tmp_path, model, photos,
                                                             adversarial, capsys):
    """Empty folder → 2, every image unreadable → 1, a missing gate file → a clear
    message (not a raw Errno), as ``advqa --help`` documents."""
    from advqa.cli.main import main

    images, _ = photos
    gate = Gate.fit(model, images[:3], adversarial)
    gate_path, _ = gate.save(tmp_path / "gate.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    common = ["--gate", str(gate_path), "--allow-unsigned", "--out", str(tmp_path / "d.csv")]
    assert main(["screen", str(empty), *common]) == 2
    assert "no image files" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not an image")
    assert main(["screen", str(broken), *common]) == 1
    assert main(["screen", str(broken), "--gate", str(tmp_path / "absent.json")]) == 2
    error = capsys.readouterr().err
    assert "gate file" in error and "advqa detect fit-gate" in error and "Errno" not in error


def test_cli_parses_detect_commands():
    parser = cli()
    arguments = parser.parse_args(["detect", "gate-eval", "--out", "x", "--repeats", "3"])
    assert arguments.repeats == 3 and arguments.quality == "dtniq"
    arguments = parser.parse_args(["detect", "fit-gate", "--quality", "niqe"])
    assert arguments.out.name == "gate.json"


def test_fit_gate_runs_on_the_job_engine_and_resumes(tmp_path, monkeypatch):
    """fit-gate's generation is keyed units in a ledger beside the gate: a second run
    recomputes nothing and writes the same gate."""
    from advqa.data import load_samples, save_png
    from advqa.detect import groups as groups_module
    from advqa.workflows.gate import GateJob, fit_gate

    photos = tmp_path / "photos"
    photos.mkdir()
    for sample in load_samples("imagenet")[:5]:
        save_png(sample.image, photos / f"{sample.name}.png")
    job = GateJob(source=str(photos), squeeze=False, uap_epochs=1)
    first = fit_gate(job, tmp_path / "gate.json")
    assert (tmp_path / "gate.ledger.sqlite").is_file()
    document, arrays = first.json_path.read_bytes(), first.arrays_path.read_bytes()

    def recomputed(*args, **kwargs):
        raise AssertionError("a finished unit ran again")

    monkeypatch.setattr(groups_module, "group_part", recomputed)
    again = fit_gate(job, tmp_path / "gate.json")
    assert again.json_path.read_bytes() == document
    assert again.arrays_path.read_bytes() == arrays
    assert (again.adversarial_flagged, again.clean_flagged) == (
        first.adversarial_flagged, first.clean_flagged)
