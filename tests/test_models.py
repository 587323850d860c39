"""Classifier zoo: real weights where they ship, clear errors where they do not."""

from __future__ import annotations

import pytest
import torch

from advqa.models import MissingWeightsError, UnknownModelError, list_models, load_classifier


def test_default_model_top1_on_labelled_photos(default_model, imagenet_batch):
    images, labels = imagenet_batch
    with torch.no_grad():
        correct = (default_model(images).argmax(1) == labels).sum().item()
    # EfficientNet-Lite0 is 75% top-1 on ImageNet; these 20 photos give 17.
    assert 16 <= correct <= 19
    assert default_model.info.input_size == 224
    assert default_model.info.class_names[243] == "bull mastiff"


def test_classifier_is_frozen_eval_and_normalises_inside(default_model):
    assert not default_model.training
    assert not any(p.requires_grad for p in default_model.parameters())
    images = torch.rand(1, 3, 224, 224)
    raw = default_model.network((images - 127 / 255) / (128 / 255))
    torch.testing.assert_close(default_model(images), raw)


@pytest.mark.parametrize(("name", "size"), [("inception_v3", 299), ("resnet18", 224)])
def test_torchvision_wrapper_with_random_weights(name, size):
    model = load_classifier(f"torchvision:{name}", weights=None, device="cpu")
    assert model.info.input_size == size
    assert model(torch.rand(2, 3, size, size)).shape == (2, 1000)
    assert len(model.info.class_names) == 1000


def test_torchvision_loads_a_local_state_dict(tmp_path):
    source = load_classifier("torchvision:resnet18", weights=None, device="cpu")
    path = tmp_path / "weights.pth"
    torch.save(source.network.state_dict(), path)
    loaded = load_classifier("torchvision:resnet18", weights=path, device="cpu")
    images = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded(images), source(images))


def test_missing_weights_name_the_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVQA_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError) as raised:
        load_classifier("torchvision:resnet152")
    message = str(raised.value)
    assert "resnet152-f82ba261.pth" in message and str(tmp_path) in message
    assert "https://download.pytorch.org/models/resnet152-f82ba261.pth" in message


def test_corrupt_weight_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVQA_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "resnet18-f37072fd.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_classifier("torchvision:resnet18")


def test_pickled_code_is_never_executed(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="cannot load weights"):
        load_classifier("torchvision:resnet18", weights=path)


def test_unknown_names_list_valid_ones():
    with pytest.raises(UnknownModelError, match="efficientnet-lite0"):
        load_classifier("efficientnet-b9")
    with pytest.raises(UnknownModelError, match="torchvision:resnet18"):
        load_classifier("torchvision:resnet9000")


def test_model_list_reports_weight_presence():
    rows = {row.name: row for row in list_models()}
    assert rows["efficientnet-lite0"].weights_present
    assert "torchvision:inception_v3" in rows and "torchvision:resnet152" in rows


def test_folded_batch_norm_computes_the_published_network(default_model, imagenet_batch):
    """Folding BN into the convolutions and running channels-last are speed-ups
    only: logits and input gradients match the unmodified network."""
    from efficientnet_lite_pytorch import EfficientNet

    from advqa.models.efficientnet_lite import MEAN, NAME, packaged_weights
    from advqa.models.registry import load_state_dict

    original = EfficientNet.from_name(NAME)
    original.load_state_dict(load_state_dict(packaged_weights()))
    original.eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in default_model.modules())
    images = imagenet_batch[0][:4].clone().requires_grad_(True)
    expected = original((images - MEAN[0]) / (128 / 255))  # the Lite normalisation
    ours = default_model(images)
    assert torch.allclose(ours, expected, atol=1e-4)
    gradient_ours, = torch.autograd.grad(ours.logsumexp(1).sum(), images)
    gradient_expected, = torch.autograd.grad(expected.logsumexp(1).sum(), images)
    # float32 reassociation: same direction, entries within 2% of the largest.
    cosine = torch.nn.functional.cosine_similarity(gradient_ours.flatten(),
                                                   gradient_expected.flatten(), dim=0)
    assert cosine > 0.9999
    assert (gradient_ours - gradient_expected).abs().max() < 0.02 * gradient_expected.abs().max()
