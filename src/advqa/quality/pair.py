"""Scores of one reference/distorted pair: ``advqa score REFERENCE DISTORTED``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from advqa.quality.plugins import load_metric
from advqa.quality.registry import get_metric, list_metrics


@dataclass
class PairScores:
    """What :func:`score_pair` computed and what it left out.

    Attributes
    ----------
    scores : dict
        Metric name → score, in the order asked for.
    skipped : dict
        Metric name → why it was not computed (a metric that needs a classifier when
        none was given).
    """

    scores: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _batch(image) -> torch.Tensor:
    if isinstance(image, str | Path):
        from advqa.data import read_image

        image = read_image(image)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"images must be paths or tensors, got {type(image).__name__}")
    image = image[None] if image.dim() == 3 else image
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"score_pair scores one image pair: give (C, H, W) or (1, C, H, W) "
                         f"tensors, got shape {tuple(image.shape)}")
    return image


def score_pair(reference, distorted, metrics: Sequence[str] | None = None, *,
               model=None) -> PairScores:
    """Score one distorted image against its reference with each metric.

    Parameters
    ----------
    reference, distorted : path or torch.Tensor
        Image files, or (C, H, W) / (1, C, H, W) tensors in [0, 1].
    metrics : sequence of str, optional
        Registry or ``pyiqa:<name>`` metric names; default: every study metric whose
        code is available here (:func:`advqa.quality.scoring.default_metrics`).
    model : str or nn.Module, optional
        The classifier for metrics that need one (``info.needs_model``: ``aeqa``,
        ``js``), or a name for :func:`advqa.models.load_classifier`; loaded once and
        shared. Without it those metrics are skipped, with the reason in
        :attr:`PairScores.skipped`.

    Returns
    -------
    PairScores
    """
    if metrics is None:
        from advqa.quality.scoring import default_metrics

        metrics = default_metrics()
    if isinstance(model, str):
        from advqa.models import load_classifier

        model = load_classifier(model)
    reference, distorted = _batch(reference), _batch(distorted)
    registry, result = list_metrics(), PairScores()
    for name in metrics:
        info = registry.get(name)
        if info is not None and info.needs_model and model is None:
            result.skipped[name] = "needs a classifier: give --model NAME (model=)"
            continue
        metric = (get_metric(name, **({"model": model} if info.needs_model else {}))
                  if info is not None else load_metric(name))  # a plug-in's module:Class
        with torch.no_grad():
            value = (metric(distorted, reference) if metric.info.full_reference
                     else metric(distorted))
        result.scores[name] = value.item()
    return result
