"""The wrapper shared by every classifier: normalisation inside, metadata beside."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """What a caller needs to feed a classifier and read its output.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"efficientnet-lite0"`` or ``"torchvision:resnet152"``.
    input_size : int
        Side of the square input the network was trained on (224 or 299).
    resize_size : int
        Shorter side to resize to before the centre crop, as in the model's
        published evaluation protocol.
    num_classes : int
        Length of the logit vector.
    class_names : tuple of str
        Human-readable class names, empty when unknown.
    weights : str
        Where the weights came from: a file path, ``"random"`` or a package name.
    """

    name: str
    input_size: int
    resize_size: int
    num_classes: int
    class_names: tuple[str, ...] = field(default=(), repr=False)
    weights: str = "random"


def input_channels(model) -> int:
    """The colour channels ``model`` takes: ``model.mean.shape[1]`` for a
    :class:`Classifier` (3 for the RGB ImageNet models, 1 for the grey Fashion-MNIST
    CNNs); 3 for bare networks without ``mean`` (tests)."""
    mean = getattr(model, "mean", None)
    return int(mean.shape[1]) if isinstance(mean, torch.Tensor) and mean.ndim == 4 else 3


class Classifier(nn.Module):
    """``logits = network((images - mean) / std)`` for RGB images in [0, 1].

    Parameters
    ----------
    network : nn.Module
        Maps normalised NCHW images to logits.
    mean, std : sequence of float
        Per-channel normalisation the network was trained with.
    info : ModelInfo
        Metadata returned by :func:`advqa.models.load_classifier`.
    """

    def __init__(self, network: nn.Module, mean, std, info: ModelInfo):
        super().__init__()
        # Channels-last runs the depthwise convolutions of mobile networks about
        # 1.7x faster on CPU (forward + backward), the inner loop of every attack.
        self.network = network.to(memory_format=torch.channels_last)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.info = info

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        normalised = (images - self.mean) / self.std
        return self.network(normalised.contiguous(memory_format=torch.channels_last))

    @property
    def device(self) -> torch.device:
        return self.mean.device
