"""torchvision classifiers through its weights API, loaded from local files only."""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

from advqa.models.classifier import Classifier, ModelInfo
from advqa.models.registry import (
    MissingWeightsError,
    ModelEntry,
    UnknownModelError,
    load_state_dict,
    weight_directories,
)

# Inception-style networks were trained with the aux head attached; their
# published state dicts contain it, so it is built and then switched off.
AUX_HEAD = {"inception_v3", "googlenet"}


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """ImageNet-1k class names in index order, as torchvision ships them."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def classification_names() -> list[str]:
    import torchvision.models as models

    return sorted(models.list_models(module=models))


def default_weights(name: str):
    import torchvision.models as models

    if name not in classification_names():
        valid = ", ".join(f"torchvision:{n}" for n in classification_names())
        raise UnknownModelError(f"unknown torchvision classifier {name!r}; valid names: {valid}")
    return models.get_model_weights(name).DEFAULT


def weight_file_name(weights) -> str:
    return weights.url.rsplit("/", 1)[-1]


def find_weight_file(weights) -> Path | None:
    file_name = weight_file_name(weights)
    for directory in weight_directories():
        if (directory / file_name).is_file():
            return directory / file_name
    return None


def check_hash_prefix(path: Path) -> None:
    """torchvision file names end in the first hex digits of their SHA-256."""
    match = re.search(r"-([a-f0-9]{6,})\.", path.name)
    if match is None:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        raise ValueError(
            f"weight file {path} is corrupt: its SHA-256 starts with {digest[:8]}, "
            f"the name promises {match.group(1)}; download it again"
        )


def missing_weights_message(name: str, weights) -> str:
    places = " or ".join(str(directory) for directory in weight_directories())
    return (
        f"weights for torchvision:{name} not found: expected file {weight_file_name(weights)!r} "
        f"in {places}. On a machine with internet, download {weights.url} and copy it there "
        "(or point ADVQA_WEIGHTS_DIR at its folder); pass weights=None for random weights."
    )


def entries() -> list[ModelEntry]:
    rows = []
    for name in classification_names():
        published = default_weights(name)
        path = find_weight_file(published)
        size = published.transforms().crop_size[0]
        rows.append(
            ModelEntry(
                f"torchvision:{name}",
                f"torchvision {name}, ImageNet, {size}×{size}",
                path is not None,
                str(path) if path else weight_file_name(published),
            )
        )
    return rows


def build(name: str, *, weights="default") -> Classifier:
    import torchvision.models as models

    published = default_weights(name)
    transforms = published.transforms()
    options = {"num_classes": len(published.meta["categories"])}
    if name in AUX_HEAD:
        options.update(aux_logits=True, init_weights=False, transform_input=True)
    network = models.get_model(name, weights=None, **options)
    source = "random"
    if weights == "default":
        path = find_weight_file(published)
        if path is None:
            raise MissingWeightsError(missing_weights_message(name, published))
        check_hash_prefix(path)
        weights = path
    if weights is not None:
        network.load_state_dict(load_state_dict(weights))
        source = str(weights)
    if name in AUX_HEAD:
        network.aux_logits = False
        if name == "inception_v3":
            network.AuxLogits = None
        else:
            network.aux1 = network.aux2 = None
    info = ModelInfo(
        f"torchvision:{name}",
        transforms.crop_size[0],
        transforms.resize_size[0],
        options["num_classes"],
        tuple(published.meta["categories"]),
        source,
    )
    return Classifier(network, transforms.mean, transforms.std, info)
