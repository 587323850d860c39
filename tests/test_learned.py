"""Learned metric adapters: local weights only, clear errors, never a network access.

The real weight files are not on this machine, so the loaders are exercised on stand-ins of
the right shapes made from randomly initialised modules and saved under the file names piq
would download; one test checks that the adapters assemble piq's modules exactly as piq's
own constructors do (fed the same stand-ins through a patched, offline download function).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import types
import urllib.request

import pytest
import torch

from advqa.models import MissingWeightsError
from advqa.quality import learned
from tests.conftest import network_used

piq = pytest.importorskip("piq")



def _vgg_features():
    from torchvision.models import vgg

    torch.manual_seed(0)
    return vgg.make_layers(vgg.cfgs["D"])


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory):
    """Stand-ins with the layout of the published files, saved once under their names."""
    directory = tmp_path_factory.mktemp("stand_ins")
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in _vgg_features().state_dict().items()}
    torch.save(state, directory / "vgg16-397923af.pth")
    torch.save([torch.rand(1, c, 1, 1) for c in learned.LPIPS_CHANNELS],
               directory / "lpips_weights.pt")
    alpha, beta = torch.rand(1, 1475, 1, 1), torch.rand(1, 1475, 1, 1)
    total = alpha.sum() + beta.sum()
    torch.save({"alpha": alpha / total, "beta": beta / total}, directory / "dists_weights.pt")
    state = piq.pieapp.PieAPPModel().state_dict()
    # The published file stores this (1, 1) weight as shape (1,); piq fixes it on load.
    state["ref_score_subtract.weight"] = state["ref_score_subtract.weight"].reshape(1)
    torch.save(state, directory / "PieAPPv0.1.pth")
    return directory


def _install(stand_ins, directory, name):
    """Link the stand-ins ``name`` needs into ``directory``; file name → path."""
    files = {}
    for file in learned.weight_files(name):
        files[file.name] = directory / file.name
        files[file.name].symlink_to(stand_ins / file.name)
    return files


@pytest.fixture
def trusted_hash(monkeypatch):
    """The stand-in VGG file cannot have the SHA-256 its torchvision name promises."""
    import advqa.models.torchvision_zoo as zoo

    monkeypatch.setattr(zoo, "check_hash_prefix", lambda path: None)


def _pair(size=32, n=2):
    generator = torch.Generator().manual_seed(2)
    reference = torch.rand(n, 3, size, size, generator=generator)
    distorted = (reference + 0.1 * torch.randn(reference.shape, generator=generator)).clamp(0, 1)
    return reference, distorted


EXPECTED_FILES = {
    "lpips": {"vgg16-397923af.pth": "https://download.pytorch.org/models/vgg16-397923af.pth",
              "lpips_weights.pt": piq.LPIPS._weights_url},
    "dists": {"vgg16-397923af.pth": "https://download.pytorch.org/models/vgg16-397923af.pth",
              "dists_weights.pt": piq.DISTS._weights_url},
    "pieapp": {"PieAPPv0.1.pth": piq.PieAPP._weights_url},
}


@pytest.mark.parametrize("name", ["lpips", "dists", "pieapp"])
def test_missing_weights_error_names_each_file_url_and_place(offline, name):
    with pytest.raises(MissingWeightsError) as caught:
        learned.load_learned_metric(name, device="cpu")
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    for file_name, url in EXPECTED_FILES[name].items():
        assert f"'{file_name}'" in message and url in message
    assert str(offline) in message
    assert os.path.join(str(offline.parent / "torch"), "hub", "checkpoints") in message
    assert "ADVQA_WEIGHTS_DIR" in message
    entry = {row.info.name: row for row in learned.list_learned_metrics()}[name]
    assert {f.name for f in entry.missing} == set(EXPECTED_FILES[name])


@pytest.mark.parametrize("name", ["lpips", "dists", "pieapp"])
def test_stand_in_weights_load_and_score(offline, stand_ins, trusted_hash, name):
    _install(stand_ins, offline, name)
    metric = learned.load_learned_metric(name, device="cpu")
    size = 64 if name == "pieapp" else 32
    reference, distorted = _pair(size)
    scores = metric(distorted, reference)
    assert scores.shape == (2,)
    assert torch.isfinite(scores).all()
    assert metric.info.full_reference and not metric.info.higher_is_better
    assert {p.name for p in metric.files} == set(EXPECTED_FILES[name])
    if name != "pieapp":  # distances: 0 for identical images, more for different ones
        assert torch.allclose(metric(reference, reference), torch.zeros(2), atol=1e-5)
        assert torch.all(scores > 1e-4)
    assert not learned.list_learned_metrics()[learned.PIQ_METRICS.index(name)].missing
    distorted.requires_grad_(True)  # differentiable w.r.t. the distorted image
    metric(distorted, reference).sum().backward()
    assert torch.isfinite(distorted.grad).all() and distorted.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["lpips", "dists", "pieapp"])
def test_factory_metric_info_is_the_registry_entry(offline, stand_ins, trusted_hash, name):
    from advqa.quality import get_metric, list_metrics

    _install(stand_ins, offline, name)
    assert get_metric(name, device="cpu").info == list_metrics()[name]
    assert learned.learned_metric_info(name) == list_metrics()[name]


@pytest.mark.parametrize("name", ["lpips", "dists", "pieapp"])
def test_adapters_build_what_piqs_own_constructors_build(offline, stand_ins, trusted_hash,
                                                         monkeypatch, name):
    files = _install(stand_ins, offline, name)
    ours = learned.load_learned_metric(name, device="cpu")
    by_url = {url: files[file_name] for file_name, url in EXPECTED_FILES[name].items()}

    def offline_download(url, *args, **kwargs):
        return torch.load(by_url[url], weights_only=True)

    def vgg16(**kwargs):
        network = types.SimpleNamespace(features=_vgg_features())
        network.features.load_state_dict(
            {k[len("features."):]: v for k, v in offline_download(
                "https://download.pytorch.org/models/vgg16-397923af.pth").items()})
        return network

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline_download)
    monkeypatch.setattr(piq.perceptual, "vgg16", vgg16)
    theirs = {"lpips": piq.LPIPS, "dists": piq.DISTS, "pieapp": piq.PieAPP}[name](
        reduction="none")
    reference, distorted = _pair(64 if name == "pieapp" else 32)
    with torch.no_grad():
        assert torch.allclose(ours(distorted, reference), theirs(distorted, reference),
                              atol=1e-6)


def test_weights_in_torch_hub_checkpoints_are_found(offline, stand_ins, trusted_hash,
                                                     tmp_path):
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    _install(stand_ins, checkpoints, "lpips")
    metric = learned.load_learned_metric("lpips", device="cpu")
    assert all(path.parent == checkpoints for path in metric.files)


def test_corrupt_or_foreign_files_are_rejected_by_name(offline, stand_ins, monkeypatch):
    import advqa.models.torchvision_zoo as zoo

    files = _install(stand_ins, offline, "lpips")
    with pytest.raises(ValueError, match="corrupt"):  # SHA-256 prefix in the VGG file name
        learned.load_learned_metric("lpips", device="cpu")
    monkeypatch.setattr(zoo, "check_hash_prefix", lambda path: None)
    files["lpips_weights.pt"].unlink()  # a link to the shared stand-in
    torch.save({"something": torch.zeros(3)}, files["lpips_weights.pt"])
    with pytest.raises(ValueError, match=r"lpips_weights\.pt"):
        learned.build_piq_lpips(files["vgg16-397923af.pth"], files["lpips_weights.pt"])


def test_lpips_package_weight_layout_is_accepted(offline, stand_ins, trusted_hash):
    files = _install(stand_ins, offline, "lpips")
    listed = torch.load(files["lpips_weights.pt"], weights_only=True)
    # The `lpips` package's weights/v0.1/vgg.pth: lin{i}.model.1.weight of shape (1, C, 1, 1).
    files["lpips_weights.pt"].unlink()
    torch.save({f"lin{i}.model.1.weight": w for i, w in enumerate(listed)},
               files["lpips_weights.pt"])
    reference, distorted = _pair()
    as_dict = learned.load_learned_metric("lpips", device="cpu")(distorted, reference)
    files["lpips_weights.pt"].unlink()
    torch.save(listed, files["lpips_weights.pt"])
    as_list = learned.load_learned_metric("lpips", device="cpu")(distorted, reference)
    assert torch.allclose(as_dict, as_list)


def test_functional_forms_scale_and_grey(offline, stand_ins, trusted_hash):
    _install(stand_ins, offline, "lpips")
    reference, distorted = _pair()
    scores = learned.lpips(reference, distorted)
    assert scores.shape == (2,)
    assert torch.allclose(learned.lpips(reference * 255, distorted * 255, data_range=255.0),
                          scores, atol=1e-6)
    assert learned.lpips(reference[:, :1], distorted[:, :1]).shape == (2,)
    with pytest.raises(ValueError, match="full-reference"):
        next(iter(learned._CACHE.values()))(distorted)
    with pytest.raises(ValueError, match="clamp=True"):
        learned.lpips(reference, distorted + 1)
    with pytest.raises(ValueError, match="32×32"):
        learned.lpips(reference[..., :16, :16], distorted[..., :16, :16])
    assert len(learned._CACHE) == 2  # one module per (data_range, clamp); grey reuses it


# ----------------------------------------------------------------------------------- pyiqa
def test_pyiqa_not_installed_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # makes `import pyiqa` fail
    with pytest.raises(ImportError, match=r"pip install pyiqa.*non-commercial"):
        learned.load_learned_metric("pyiqa:lpips", device="cpu")


FAKE_URL = "https://example.invalid/releases/fake_iqa_weights.pth"
# pyiqa downloads with torch.hub's own function; the offline fixture booby-traps it.
DOWNLOAD_URL_TO_FILE, URLOPEN = torch.hub.download_url_to_file, urllib.request.urlopen


@pytest.fixture
def fake_pyiqa(monkeypatch, tmp_path):
    """A stand-in for pyiqa with its download path: create_metric() loads
    ``pretrained_model_path`` when given, else fetches its default weights through
    pyiqa.utils.download_util.load_file_from_url, which calls torch.hub's
    download_url_to_file, as pyiqa's metrics do. urllib is real here, so the request
    meets advqa's refusal; name resolution and connections stay booby-trapped."""
    cache = tmp_path / "torch" / "hub" / "pyiqa"
    package = types.ModuleType("pyiqa")
    utils = types.ModuleType("pyiqa.utils")
    download_util = types.ModuleType("pyiqa.utils.download_util")
    download_util.download_url_to_file = DOWNLOAD_URL_TO_FILE
    monkeypatch.setattr(torch.hub, "urlopen", URLOPEN)
    monkeypatch.setattr(socket, "getaddrinfo", network_used)

    def load_file_from_url(url, model_dir=None, progress=True, file_name=None):
        model_dir = model_dir or str(cache)
        os.makedirs(model_dir, exist_ok=True)
        cached = os.path.join(model_dir, file_name or os.path.basename(url))
        if not os.path.exists(cached):
            download_util.download_url_to_file(url, cached, hash_prefix=None, progress=progress)
        return cached

    download_util.load_file_from_url = load_file_from_url

    class InferenceModel(torch.nn.Module):
        metric_mode, lower_better, score_range = "FR", True, "~0, ~1"

        def __init__(self, name, as_loss=False, device=None, loss_reduction="mean",
                     pretrained_model_path=None):
            super().__init__()
            path = pretrained_model_path or load_file_from_url(FAKE_URL)
            self.scale = torch.load(path, weights_only=True)["scale"]
            self.as_loss = as_loss

        def forward(self, target, ref=None):
            with torch.set_grad_enabled(self.as_loss):
                return (self.scale * (target - ref) ** 2).mean(dim=(1, 2, 3))[:, None]

    package.create_metric = lambda name, **kwargs: InferenceModel(name, **kwargs)
    package.utils = utils
    utils.download_util = download_util
    for name, module in {"pyiqa": package, "pyiqa.utils": utils,
                         "pyiqa.utils.download_util": download_util}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return cache


def _check_fake_metric(metric, scale):
    info = metric.info
    assert (info.name, info.full_reference, info.higher_is_better, info.range) == (
        "pyiqa:fake", True, False, (0.0, 1.0))
    reference, distorted = _pair()
    distorted.requires_grad_(True)
    scores = metric(distorted, reference)
    assert scores.shape == (2,)
    assert torch.allclose(scores, scale * ((distorted - reference) ** 2).mean(dim=(1, 2, 3)))
    scores.sum().backward()
    assert distorted.grad.abs().sum() > 0


def test_pyiqa_missing_weight_names_file_and_url_without_downloading(offline, fake_pyiqa):
    environment = dict(os.environ)
    with pytest.raises(MissingWeightsError) as caught:
        learned.load_learned_metric("pyiqa:fake", device="cpu")
    message = str(caught.value)
    assert "'fake_iqa_weights.pth'" in message and FAKE_URL in message
    assert str(fake_pyiqa) in message and str(offline) in message
    assert "pretrained_model_path" in message
    assert not (fake_pyiqa / "fake_iqa_weights.pth").exists()
    # Nothing was patched and no environment variable set, not even for the call.
    assert sys.modules["pyiqa.utils.download_util"].download_url_to_file is DOWNLOAD_URL_TO_FILE
    assert dict(os.environ) == environment


def test_pyiqa_weights_named_explicitly_are_found_in_advqa_weights_dir(offline, fake_pyiqa):
    torch.save({"scale": torch.tensor(3.0)}, offline / "fake_iqa_weights.pth")
    metric = learned.load_learned_metric("pyiqa:fake", device="cpu", differentiable=True,
                                         pretrained_model_path="fake_iqa_weights.pth")
    _check_fake_metric(metric, 3.0)
    assert not fake_pyiqa.exists()  # handed to pyiqa by path, never copied into its cache
    with pytest.raises(MissingWeightsError, match=r"'elsewhere\.pth'.*searched") as caught:
        learned.load_learned_metric("pyiqa:fake", device="cpu",
                                    pretrained_model_path="elsewhere.pth")
    assert str(offline) in str(caught.value)


def test_pyiqa_weights_in_pyiqas_own_cache_are_used(offline, fake_pyiqa):
    fake_pyiqa.mkdir(parents=True)
    torch.save({"scale": torch.tensor(2.0)}, fake_pyiqa / "fake_iqa_weights.pth")
    _check_fake_metric(learned.load_learned_metric("pyiqa:fake", device="cpu",
                                                   differentiable=True), 2.0)


def test_refuse_network_is_scoped_to_the_calling_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ADVQA_WEIGHTS_DIR", raising=False)
    connect, download = socket.socket.connect, torch.hub.download_url_to_file
    numeric = {"flags": socket.AI_NUMERICHOST}  # resolves locally, never on the network
    environment = dict(os.environ)
    with learned.refuse_network("test"):
        # Nothing patched, no environment variable set, even while it holds.
        assert socket.socket.connect is connect and torch.hub.download_url_to_file is download
        assert dict(os.environ) == environment
        with pytest.raises(MissingWeightsError, match=r"'w\.pth'.*example\.invalid/w\.pth"):
            torch.hub.load_state_dict_from_url("https://example.invalid/w.pth")
        with pytest.raises(MissingWeightsError, match="network"):
            socket.getaddrinfo("192.0.2.1", 9, **numeric)
        with pytest.raises(MissingWeightsError, match="network"):
            socket.create_connection(("192.0.2.1", 9), timeout=1)
        assert socket.getaddrinfo("127.0.0.1", 9, **numeric)  # loopback is not the network
        elsewhere = []
        thread = threading.Thread(
            target=lambda: elsewhere.append(socket.getaddrinfo("192.0.2.1", 9, **numeric)))
        thread.start()
        thread.join()
        assert elsewhere and elsewhere[0], "another thread was refused"
    assert socket.getaddrinfo("192.0.2.1", 9, **numeric)  # nothing refused afterwards
    assert socket.socket.connect is connect and torch.hub.download_url_to_file is download
