"""Small Fashion-MNIST CNNs: a natural and a PGD adversarially trained victim.

The architecture is a scaled-down version of the MNIST network of Madry et
al. (ICLR 2018), which Schöttle et al. ("Detecting adversarial examples – a
lesson from multimedia security", EUSIPCO 2018) attack and detect:

``conv 3×3×16 – ReLU – maxpool 2 – conv 3×3×32 – ReLU – maxpool 2 – fc 128 – ReLU – fc 10``

(Madry's has 5×5 kernels, 32/64 channels and a 1024-unit dense layer; this one
has 0.21 M parameters, a 0.8 MB weight file, and trains in minutes on two
shared CPU cores, ~3× faster per step than the 32/64-channel variant).
No batch norm or dropout, so train and eval mode compute the same function.

Both weight files ship in ``advqa/models/data/`` and were written by
``advqa train`` (:mod:`advqa.cli.train`); each has a JSON sidecar with the
exact command, seed, settings, training time and measured test accuracies.
Inputs are grayscale ``(N, 1, 28, 28)`` in [0, 1]; the Fashion-MNIST pixel
mean and standard deviation are applied inside the classifier.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from advqa.models.classifier import Classifier, ModelInfo
from advqa.models.registry import MissingWeightsError, ModelEntry, load_state_dict

NAME = "fashion-mnist-cnn"
ADVERSARIAL_NAME = "fashion-mnist-cnn-adv"
INPUT_SIZE = 28
#: Pixel mean and standard deviation of the 60,000 training images.
MEAN = (0.2860,)
STD = (0.3530,)
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Where the shipped weight files and their sidecars live.
DATA_DIRECTORY = Path(__file__).resolve().parent / "data"


def model_name(adversarial: bool) -> str:
    return ADVERSARIAL_NAME if adversarial else NAME


def weights_path(adversarial: bool = False) -> Path:
    """The default weight file of the natural or adversarially trained network."""
    return DATA_DIRECTORY / f"{model_name(adversarial)}.pt"


def sidecar_path(weights: str | Path) -> Path:
    """``<name>.json`` beside a weight file ``<name>.pt``."""
    return Path(weights).with_suffix(".json")


def read_sidecar(adversarial: bool = False) -> dict | None:
    """The training record of the default weights, or None when absent or unreadable."""
    try:
        return json.loads(sidecar_path(weights_path(adversarial)).read_text())
    except (OSError, ValueError):
        return None


def make_network(seed: int | None = None) -> nn.Sequential:
    """The bare network (normalised input → logits), initialised from ``seed`` if given.

    With a seed the initialisation draws from a forked RNG, so the global torch
    RNG is left untouched and two calls with the same seed give equal weights.
    """
    def layers() -> nn.Sequential:
        return nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 16, 3, padding=1)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(16, 32, 3, padding=1)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(32 * 7 * 7, 128)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(128, 10)),
        ]))

    if seed is None:
        return layers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return layers()


def classifier(network: nn.Module, *, adversarial: bool = False,
               source: str = "random") -> Classifier:
    """Wrap a bare network: [0, 1] input, normalisation inside, Fashion-MNIST metadata."""
    info = ModelInfo(model_name(adversarial), INPUT_SIZE, INPUT_SIZE, len(CLASS_NAMES),
                     CLASS_NAMES, source)
    return Classifier(network, MEAN, STD, info)


def _description(adversarial: bool) -> str:
    if adversarial:
        text = "Fashion-MNIST CNN, PGD adversarially trained (Madry-style)"
    else:
        text = "Fashion-MNIST CNN, natural training"
    record = read_sidecar(adversarial)
    if record:
        try:
            accuracy = record["test_accuracy"]
            text += f", test {100 * accuracy['clean']:.1f}%"
            pgd = accuracy.get("pgd_eps0.1")
            if pgd is not None:
                text += f" (PGD ε=0.1: {100 * pgd:.1f}%)"
        except (KeyError, TypeError):
            pass
    return text + ", 1×28×28"


def entries() -> list[ModelEntry]:
    """Rows of ``advqa models`` for the two networks."""
    rows = []
    for adversarial in (False, True):
        path = weights_path(adversarial)
        rows.append(ModelEntry(model_name(adversarial), _description(adversarial),
                               path.is_file(), str(path)))
    return rows


def build(*, weights="default", adversarial: bool = False) -> Classifier:
    """The natural (``adversarial=False``) or PGD-trained Fashion-MNIST classifier.

    Parameters
    ----------
    weights : {"default", None} or path
        ``"default"`` loads the shipped file, ``None`` leaves the network
        randomly initialised, a path loads that state dict (``weights_only=True``).
    adversarial : bool
        Select ``fashion-mnist-cnn-adv`` instead of ``fashion-mnist-cnn``.

    Raises
    ------
    MissingWeightsError
        When the weight file does not exist; the message says how to recreate it.
    """
    network = make_network()
    source = "random"
    if weights is not None:
        path = weights_path(adversarial) if weights == "default" else Path(weights)
        if not path.is_file():
            flag = " --adversarial" if adversarial else ""
            raise MissingWeightsError(
                f"{model_name(adversarial)} weights not found at {path}; they ship with advqa "
                f"(advqa/models/data/). Recreate them with `advqa train {NAME}{flag}` "
                f"or pass an existing weight file")
        network.load_state_dict(load_state_dict(path))
        source = str(path)
    return classifier(network.eval(), adversarial=adversarial, source=source)


def build_adversarial(*, weights="default") -> Classifier:
    """``build(adversarial=True)``: the registry's builder for ``fashion-mnist-cnn-adv``."""
    return build(weights=weights, adversarial=True)
