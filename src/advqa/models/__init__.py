"""Classifier zoo: every model takes RGB [0, 1] NCHW and returns logits.

Normalisation lives inside the returned module, so attacks and metrics never
see model-specific preprocessing.
"""

from advqa.models.classifier import Classifier, ModelInfo
from advqa.models.registry import (
    MissingWeightsError,
    UnknownModelError,
    list_models,
    load_classifier,
)

__all__ = [
    "Classifier",
    "MissingWeightsError",
    "ModelInfo",
    "UnknownModelError",
    "list_models",
    "load_classifier",
]
