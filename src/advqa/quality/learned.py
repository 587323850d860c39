"""Learned perceptual metrics from local weight files only: LPIPS, DISTS, PieAPP, ``pyiqa:<name>``.

``piq``'s ``LPIPS()``, ``DISTS()`` and ``PieAPP()`` download their weights when constructed;
this module never calls those constructors. It looks for the very files they would download
(same file names) in ``$ADVQA_WEIGHTS_DIR`` and then in torch hub's checkpoint folder
(``torch.hub.get_dir()/checkpoints``, where ``torch.hub.load_state_dict_from_url`` and
torchvision would have saved them), loads them with ``torch.load(weights_only=True)`` and
assembles piq's modules exactly as piq 0.8.0's constructors do. Missing files raise
:class:`~advqa.models.MissingWeightsError` naming each file, its URL and where to put it.

* ``lpips``: ``vgg16-397923af.pth`` (torchvision's VGG16) and ``lpips_weights.pt`` (piq; the
  v0.1 VGG linear layers, also accepted in the layout of the ``lpips`` package's
  ``weights/v0.1/vgg.pth``). A distance, lower is better, about [0, 1]; images ≥ 32×32.
* ``dists``: ``vgg16-397923af.pth`` and ``dists_weights.pt`` (piq). 1 − DISTS similarity,
  lower is better, [0, 1]; piq resizes images whose short side exceeds 256 to 256.
* ``pieapp``: ``PieAPPv0.1.pth`` (piq). Perceptual error, lower is better, unbounded (≥ 0 in
  practice); images ≥ 64×64, 64×64 patches at stride 27.

``pyiqa:<name>`` wraps ``pyiqa.create_metric(name)``. pyiqa is licensed for non-commercial
use only (PolyForm Noncommercial 1.0.0), so it is never a dependency of advqa: it is imported
only inside :class:`PyIQAMetric`. Offline loading is explicit: give the metric's weight file
as ``pretrained_model_path`` (a path, or a file name found in ``$ADVQA_WEIGHTS_DIR`` or torch
hub's checkpoints), which advqa resolves and hands to pyiqa. What pyiqa fetches beyond that
(its default weights, torchvision backbones, Hugging Face files) it reads from its own caches
(``torch.hub.get_dir()/pyiqa``, torch hub's checkpoints, the Hugging Face cache) when the files
are there; a download or outgoing connection is refused with a
:class:`~advqa.models.MissingWeightsError` naming the file, its URL and where to put it
(:func:`refuse_network`: an audit hook scoped to the calling thread; no function is patched
and no environment variable set). Note that pyiqa loads its checkpoints with
``weights_only=False``: only put files from sources you trust there.

Every metric takes RGB images in [0, data_range] (grey images are repeated to three
channels) and returns (N,) scores; ``metric.info`` is a
:class:`~advqa.quality.registry.MetricInfo` (full-reference? higher is better? range?).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from advqa.models.registry import (
    MissingWeightsError,
    load_state_dict,
    resolve_device,
    weight_directories,
)
from advqa.quality.registry import MetricInfo, list_metrics
from advqa.quality.validate import check_images, check_pair

INFINITY = math.inf
PIQ_VERSION = "0.8.0"
# Layers and channel counts that piq 0.8.0's LPIPS/DISTS constructors hard-code.
VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)
PIQ_METRICS = ("lpips", "dists", "pieapp")
PYIQA_PREFIX = "pyiqa:"
PYIQA_INSTALL = ("`pip install pyiqa` (optional; pyiqa is licensed for non-commercial use only, "
                 "PolyForm Noncommercial 1.0.0, and advqa never depends on it)")


@dataclass(frozen=True)
class WeightFile:
    """A weight file a metric needs: its name on disk, where it is published, what it is."""

    name: str
    url: str
    description: str

    def find(self) -> Path | None:
        """The first copy in :func:`~advqa.models.registry.weight_directories`, if any."""
        for directory in weight_directories():
            if (directory / self.name).is_file():
                return directory / self.name
        return None


@dataclass(frozen=True)
class LearnedMetricEntry:
    """One row of :func:`list_learned_metrics`."""

    info: MetricInfo
    files: tuple[WeightFile, ...]
    missing: tuple[WeightFile, ...]


def _piq():
    try:
        import piq
    except ImportError as error:
        raise ImportError(f"LPIPS, DISTS and PieAPP need piq: pip install piq=={PIQ_VERSION}"
                          ) from error
    return piq


def _file_from_url(url: str, description: str) -> WeightFile:
    return WeightFile(Path(urlparse(url).path).name, url, description)


def weight_files(name: str) -> tuple[WeightFile, ...]:
    """The files ``lpips``, ``dists`` or ``pieapp`` needs, as piq would download them."""
    if name not in PIQ_METRICS:
        raise ValueError(f"unknown learned metric {name!r}; valid names: "
                         f"{', '.join(PIQ_METRICS)}, {PYIQA_PREFIX}<name>")
    from torchvision.models import VGG16_Weights

    piq = _piq()
    # piq calls vgg16(pretrained=True), i.e. torchvision's IMAGENET1K_V1 weights.
    vgg = _file_from_url(VGG16_Weights.IMAGENET1K_V1.url, "torchvision VGG16 ImageNet backbone")
    if name == "lpips":
        return vgg, _file_from_url(piq.LPIPS._weights_url, "piq LPIPS linear-layer weights")
    if name == "dists":
        return vgg, _file_from_url(piq.DISTS._weights_url, "piq DISTS alpha/beta weights")
    return (_file_from_url(piq.PieAPP._weights_url, "piq PieAPP network weights"),)


def missing_weights_message(label: str, missing: tuple[WeightFile, ...]) -> str:
    places = " or ".join(str(directory) for directory in weight_directories())
    lines = [f"{label} needs weight files that are not on this machine "
             "(advqa never downloads at run time):"]
    lines += [f"  - {file.name!r} ({file.description}) from {file.url}" for file in missing]
    lines.append(f"Searched {places}. On a machine with internet, download each URL and copy "
                 "the file into one of those folders (or point ADVQA_WEIGHTS_DIR at its folder).")
    return "\n".join(lines)


def _locate(name: str) -> dict[str, Path]:
    files = weight_files(name)
    found = {file.name: file.find() for file in files}
    missing = tuple(file for file in files if found[file.name] is None)
    if missing:
        raise MissingWeightsError(missing_weights_message(name, missing))
    return found


# ---------------------------------------------------------------- reading the weight files
def _bad_file(path: Path, expected: str, detail: str) -> ValueError:
    return ValueError(f"weight file {path} does not look like {expected}: {detail}")


def _vgg16_features(path: Path) -> nn.Sequential:
    from torchvision.models import vgg

    from advqa.models.torchvision_zoo import check_hash_prefix

    check_hash_prefix(path)
    state = load_state_dict(path)
    if not isinstance(state, dict):
        raise _bad_file(path, "a VGG16 state dict", f"it holds a {type(state).__name__}")
    if any(key.startswith("features.") for key in state):
        state = {key[len("features."):]: value for key, value in state.items()
                 if key.startswith("features.")}
    features = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    try:
        features.load_state_dict(state)
    except RuntimeError as error:
        raise _bad_file(path, "torchvision's VGG16 weights", str(error)) from error
    return features


def _lpips_weights(path: Path) -> list[torch.Tensor]:
    """piq's ``lpips_weights.pt`` (a list of five tensors) or the ``lpips`` package's
    ``weights/v0.1/vgg.pth`` (a dict ``lin{i}.model.{0,1}.weight``)."""
    loaded = load_state_dict(path)
    if isinstance(loaded, dict):
        tensors = []
        for index in range(len(LPIPS_CHANNELS)):
            keys = [key for key in loaded
                    if key.startswith(f"lin{index}.") and key.endswith("weight")]
            if len(keys) != 1:
                raise _bad_file(path, "LPIPS linear weights", f"no unique lin{index} weight")
            tensors.append(loaded[keys[0]])
    elif isinstance(loaded, (list, tuple)):
        tensors = list(loaded)
    else:
        raise _bad_file(path, "LPIPS linear weights", f"it holds a {type(loaded).__name__}")
    sizes = tuple(t.numel() if isinstance(t, torch.Tensor) else None for t in tensors)
    if sizes != LPIPS_CHANNELS:
        raise _bad_file(path, "LPIPS linear weights",
                        f"sizes {sizes}, expected {LPIPS_CHANNELS}")
    return [t.detach().float().reshape(1, -1, 1, 1) for t in tensors]


def _dists_weights(path: Path) -> list[torch.Tensor]:
    loaded = load_state_dict(path)
    total = sum(DISTS_CHANNELS)
    if not isinstance(loaded, dict) or not {"alpha", "beta"} <= set(loaded):
        raise _bad_file(path, "DISTS weights", "no 'alpha' and 'beta' entries")
    parts = []
    for key in ("alpha", "beta"):
        if loaded[key].numel() != total:
            raise _bad_file(path, "DISTS weights",
                            f"{key} has {loaded[key].numel()} values, expected {total}")
        # As piq: per-layer weights are the alpha (then beta) tensor split by channels.
        parts.extend(torch.split(loaded[key].float().reshape(1, total, 1, 1),
                                 DISTS_CHANNELS, dim=1))
    return parts


def _pieapp_state(path: Path) -> dict:
    state = load_state_dict(path)
    if not isinstance(state, dict) or "ref_score_subtract.weight" not in state:
        raise _bad_file(path, "PieAPP weights", "no 'ref_score_subtract.weight'")
    state = dict(state)
    if state["ref_score_subtract.weight"].dim() == 1:
        # piq fixes the published file the same way ("small bug in original weights").
        state["ref_score_subtract.weight"] = state["ref_score_subtract.weight"].unsqueeze(1)
    return state


# --------------------------------------------------------- assembling piq's modules offline
def _piq_content_loss(cls, features: nn.Module, weights: list[torch.Tensor], **options):
    """Instance of piq ``cls`` (LPIPS or DISTS) built as its constructor would, without the
    download: ``ContentLoss.__init__`` with a ready feature extractor."""
    from piq.perceptual import VGG16_LAYERS, ContentLoss

    module = cls.__new__(cls)
    ContentLoss.__init__(module, feature_extractor=features,
                         layers=[VGG16_LAYERS[layer] for layer in VGG_LAYERS],
                         weights=weights, reduction="none", **options)
    return module


def build_piq_lpips(vgg_path: Path, lpips_path: Path) -> nn.Module:
    """piq's ``LPIPS()`` (reduction 'none') from local files."""
    return _piq_content_loss(_piq().LPIPS, _vgg16_features(vgg_path), _lpips_weights(lpips_path),
                             replace_pooling=False, distance="mse", normalize_features=True)


def build_piq_dists(vgg_path: Path, dists_path: Path) -> nn.Module:
    """piq's ``DISTS()`` (reduction 'none') from local files."""
    return _piq_content_loss(_piq().DISTS, _vgg16_features(vgg_path), _dists_weights(dists_path),
                             replace_pooling=True, normalize_features=False,
                             allow_layers_weights_mismatch=True)


def build_piq_pieapp(path: Path, *, stride: int = 27) -> nn.Module:
    """piq's ``PieAPP()`` (reduction 'none', data range 1) from a local file."""
    from torch.nn.modules.loss import _Loss

    piq = _piq()
    module = piq.PieAPP.__new__(piq.PieAPP)
    _Loss.__init__(module, reduction="none")
    module.model = piq.pieapp.PieAPPModel()
    try:
        module.model.load_state_dict(_pieapp_state(path))
    except RuntimeError as error:
        raise _bad_file(path, "piq's PieAPP weights", str(error)) from error
    for parameter in module.model.parameters():
        parameter.requires_grad_(False)
    module.data_range = 1.0
    module.stride = stride
    module.enable_grad = False
    return module


# ------------------------------------------------------------------------- the adapters
class LearnedMetric(nn.Module):
    """A learned metric: ``metric(distorted, reference=None)`` → (N,) scores.

    Inputs are RGB (or grey, repeated to RGB) in [0, data_range]; ``info`` describes the
    scores and ``files`` the weight files that were loaded.
    """

    def __init__(self, info: MetricInfo, backend: nn.Module, *, data_range: float = 1.0,
                 clamp: bool = False, min_size: int = 1, files: tuple[Path, ...] = ()):
        super().__init__()
        self.info = info
        self.backend = backend.eval()
        self.data_range = data_range
        self.clamp = clamp
        self.min_size = min_size
        self.files = files
        for parameter in self.backend.parameters():
            parameter.requires_grad_(False)

    def _inputs(self, distorted, reference):
        options = dict(data_range=self.data_range, clamp=self.clamp, min_size=self.min_size)
        if self.info.full_reference:
            if reference is None:
                raise ValueError(f"{self.info.name} is full-reference: pass reference=")
            reference, distorted = check_pair(reference, distorted, **options)
        else:
            distorted = check_images(distorted, name="distorted", **options)
            reference = None
        return [None if x is None else _rgb01(x, self.data_range) for x in (distorted, reference)]

    def score(self, distorted: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        return self.backend(distorted, reference)

    def forward(self, distorted: torch.Tensor, reference: torch.Tensor | None = None):
        distorted, reference = self._inputs(distorted, reference)
        return self.score(distorted, reference).reshape(len(distorted))

    def extra_repr(self) -> str:
        return f"name={self.info.name!r}, files={[str(f) for f in self.files]!r}"


def _rgb01(images: torch.Tensor, data_range: float) -> torch.Tensor:
    images = images / data_range if data_range != 1.0 else images
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class PieAPPMetric(LearnedMetric):
    """PieAPP; gradients flow when autograd is on (piq computes them only if asked to)."""

    def score(self, distorted, reference):
        self.backend.enable_grad = torch.is_grad_enabled()
        return self.backend(distorted, reference)


_MIN_SIZE = {"lpips": 32, "dists": 16, "pieapp": 64}  # piq runs all of VGG16 for LPIPS


def learned_metric_info(name: str) -> MetricInfo:
    """Metadata of ``lpips``, ``dists`` or ``pieapp`` without loading anything: the
    registry's own entry (the only source of metric facts)."""
    if name not in PIQ_METRICS:
        raise ValueError(f"unknown learned metric {name!r}; valid names: "
                         f"{', '.join(PIQ_METRICS)}, {PYIQA_PREFIX}<name>")
    return list_metrics()[name]


def list_learned_metrics() -> list[LearnedMetricEntry]:
    """The piq metrics with the files each needs and which of them are missing."""
    rows = []
    for name in PIQ_METRICS:
        files = weight_files(name)
        rows.append(LearnedMetricEntry(learned_metric_info(name), files,
                                       tuple(f for f in files if f.find() is None)))
    return rows


def load_learned_metric(name: str, *, device: str | torch.device | None = None,
                        data_range: float = 1.0, clamp: bool = False,
                        **options) -> LearnedMetric:
    """Build ``lpips``, ``dists``, ``pieapp`` or ``pyiqa:<name>`` from local weights.

    Parameters
    ----------
    name : str
        Metric name; ``pyiqa:<name>`` for any pyiqa metric (optional, non-commercial).
    device : str or torch.device, optional
        Defaults to CUDA when present, else CPU.
    data_range : float
        Largest input pixel value.
    clamp : bool
        Clamp out-of-range inputs instead of raising.
    **options
        ``stride`` for PieAPP; ``differentiable`` and pyiqa metric options for pyiqa.

    Raises
    ------
    MissingWeightsError
        A weight file is not on disk; the message names each file, its URL and where to put it.
    ImportError
        piq (or, for ``pyiqa:``, pyiqa) is not installed.
    """
    if name.startswith(PYIQA_PREFIX):
        return PyIQAMetric(name[len(PYIQA_PREFIX):], device=device, data_range=data_range,
                           clamp=clamp, **options)
    info = learned_metric_info(name)
    paths = _locate(name)
    files = tuple(paths.values())
    if name == "lpips":
        backend = build_piq_lpips(*files)
    elif name == "dists":
        backend = build_piq_dists(*files)
    else:
        backend = build_piq_pieapp(*files, **options)
    cls = PieAPPMetric if name == "pieapp" else LearnedMetric
    metric = cls(info, backend, data_range=data_range, clamp=clamp,
                 min_size=_MIN_SIZE[name], files=files)
    return metric.to(resolve_device(device))


_CACHE: dict[tuple, LearnedMetric] = {}


def _cached(name: str, device: torch.device, data_range: float, clamp: bool) -> LearnedMetric:
    key = (name, str(device), data_range, clamp, tuple(_locate(name).values()))
    if key not in _CACHE:
        _CACHE[key] = load_learned_metric(name, device=device, data_range=data_range,
                                          clamp=clamp)
    return _CACHE[key]


def lpips(reference: torch.Tensor, distorted: torch.Tensor, *, data_range: float = 1.0,
          clamp: bool = False) -> torch.Tensor:
    """LPIPS distance (VGG16, piq) of each pair → (N,), lower is better; the module is
    built once per device from local weights (see :func:`load_learned_metric`)."""
    metric = _cached("lpips", distorted.device, data_range, clamp)
    return metric(distorted, reference)


def dists(reference: torch.Tensor, distorted: torch.Tensor, *, data_range: float = 1.0,
          clamp: bool = False) -> torch.Tensor:
    """DISTS distance (1 − similarity, piq) of each pair → (N,), lower is better."""
    metric = _cached("dists", distorted.device, data_range, clamp)
    return metric(distorted, reference)


def pieapp(reference: torch.Tensor, distorted: torch.Tensor, *, data_range: float = 1.0,
           clamp: bool = False) -> torch.Tensor:
    """PieAPP error (piq) of each pair → (N,), lower is better; images at least 64×64."""
    metric = _cached("pieapp", distorted.device, data_range, clamp)
    return metric(distorted, reference)


# ------------------------------------------------------------------------------- pyiqa
def _import_pyiqa():
    try:
        import pyiqa
    except ImportError as error:
        raise ImportError(f"pyiqa metrics need pyiqa, which is not installed: {PYIQA_INSTALL}"
                          ) from error
    return pyiqa


def _parse_range(text) -> tuple[float, float]:
    try:
        low, high = (float(part.strip().lstrip("~")) for part in str(text).split(","))
    except ValueError:
        return (-INFINITY, INFINITY)
    return (low, high)


# Who is offline: set by refuse_network() for the current thread / asyncio task only.
_OFFLINE: contextvars.ContextVar[str | None] = contextvars.ContextVar("advqa_offline",
                                                                     default=None)
_GUARD_LOCK = threading.Lock()
_GUARD_INSTALLED = False
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _refusal(label: str, url: str) -> MissingWeightsError:
    name = Path(urlparse(url).path).name or url
    hub = Path(torch.hub.get_dir())
    return MissingWeightsError(
        f"{label} needs weight file {name!r}, which is not on this machine (advqa never "
        f"downloads at run time). On a machine with internet, download {url} and put it "
        f"where pyiqa looks for it ({hub / 'pyiqa'} for pyiqa's own weights, "
        f"{hub / 'checkpoints'} for torchvision backbones), or give the metric's weights "
        "explicitly with pretrained_model_path=FILE (a path, or a file name found in "
        f"{' or '.join(str(d) for d in weight_directories())}).")


def _audit(event: str, args: tuple) -> None:
    """PEP 578 audit hook: inert unless :func:`refuse_network` is active in this context."""
    if event not in ("urllib.Request", "socket.getaddrinfo", "socket.connect"):
        return
    label = _OFFLINE.get()
    if label is None:
        return
    if event == "urllib.Request":  # torch.hub and pyiqa downloads, before any DNS lookup
        if urlparse(str(args[0])).scheme == "file":
            return
        raise _refusal(label, str(args[0]))
    if event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
        if host is None or str(host) in _LOOPBACK:
            return
        address = (host, args[1])
    else:
        sock, address = args
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or address[0] in _LOOPBACK:
            return
    raise MissingWeightsError(
        f"{label} tried to reach {address!r} over the network, presumably to fetch weights "
        "(e.g. from the Hugging Face hub); advqa never downloads at run time. Place the "
        "files it needs on this machine first (pyiqa and the Hugging Face hub read their "
        "own caches without a connection).")


@contextlib.contextmanager
def refuse_network(label: str) -> Iterator[None]:
    """Run third-party code with downloads and outgoing connections refused.

    Nothing is patched and no environment variable is set: an audit hook
    (:func:`sys.addaudithook`, added once per process, inert outside this context)
    raises :class:`~advqa.models.MissingWeightsError` on a ``urllib`` request (the URL
    and file named) or a DNS lookup / connection to a non-loopback host. The refusal
    holds for the calling thread (and asyncio task) only; other threads are
    unaffected, and threads started inside the block are not covered.
    """
    global _GUARD_INSTALLED
    with _GUARD_LOCK:
        if not _GUARD_INSTALLED:
            sys.addaudithook(_audit)
            _GUARD_INSTALLED = True
    token = _OFFLINE.set(label)
    try:
        yield
    finally:
        _OFFLINE.reset(token)


def local_weight_file(label: str, path: str | Path) -> Path:
    """``path`` if it is a file, else the file of that name in a weight directory.

    Raises
    ------
    MissingWeightsError
        When neither exists; the message names the file and the folders searched.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path.resolve()
    for directory in weight_directories():
        if (directory / path.name).is_file():
            return directory / path.name
    places = " or ".join(str(directory) for directory in weight_directories())
    raise MissingWeightsError(
        f"{label}: weight file {str(path)!r} is not on this machine (searched {path.parent}"
        f" and {places}); advqa never downloads at run time. Copy the file there or give "
        "its full path.")


class PyIQAMetric(LearnedMetric):
    """``pyiqa.create_metric(name)`` behind the uniform interface, offline.

    Weights are explicit: ``pretrained_model_path`` (a path, or a file name found in
    :func:`~advqa.models.registry.weight_directories`) is resolved here and handed to
    pyiqa, which then loads that file instead of fetching its default. Anything pyiqa
    still fetches (its default weights when no path is given, torchvision backbones,
    Hugging Face files) is read from its own caches when present there, and refused
    otherwise (:func:`refuse_network`) with a :class:`~advqa.models.MissingWeightsError`
    naming the file, its URL and where to put it.

    Parameters
    ----------
    name : str
        A pyiqa metric name (``pyiqa.list_models()``).
    device : str or torch.device, optional
    data_range, clamp
        As for :class:`LearnedMetric`.
    differentiable : bool
        Build it with ``as_loss=True`` so that gradients flow (pyiqa disables autograd
        otherwise).
    pretrained_model_path : str or Path, optional
        The metric's weight file, passed to pyiqa as ``pretrained_model_path``.
    **options
        Passed to ``pyiqa.create_metric``.
    """

    def __init__(self, name: str, *, device: str | torch.device | None = None,
                 data_range: float = 1.0, clamp: bool = False, differentiable: bool = False,
                 pretrained_model_path: str | Path | None = None, **options):
        pyiqa = _import_pyiqa()
        label = f"{PYIQA_PREFIX}{name}"
        device = resolve_device(device)
        if pretrained_model_path is not None:
            options["pretrained_model_path"] = str(local_weight_file(label,
                                                                     pretrained_model_path))
        with refuse_network(label):
            try:
                backend = pyiqa.create_metric(name, as_loss=differentiable, device=device,
                                              loss_reduction="none", **options)
            except MissingWeightsError:
                raise
            except OSError as error:  # the Hugging Face hub without a connection, and the like
                raise MissingWeightsError(
                    f"{label} could not find the files it needs on this machine (advqa never "
                    f"downloads at run time): {error}") from error
        info = MetricInfo(
            name=label, full_reference=getattr(backend, "metric_mode", "NR") == "FR",
            higher_is_better=not getattr(backend, "lower_better", False),
            range=_parse_range(getattr(backend, "score_range", None)),
            differentiable=differentiable, description=f"pyiqa {name} (non-commercial licence)")
        super().__init__(info, backend, data_range=data_range, clamp=clamp)
        self.label = label

    def score(self, distorted, reference):
        # Some pyiqa metrics fetch files on their first forward pass: refused here too.
        with refuse_network(self.label):
            if self.info.full_reference:
                output = self.backend(distorted, reference)
            else:
                output = self.backend(distorted)
        if isinstance(output, tuple):
            output = output[0]
        return torch.as_tensor(output).to(distorted.dtype)
