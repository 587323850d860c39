"""Perceptual quality of adversarial examples: AdvDSS, AEQA, classical and learned metrics.

Every metric is reached through :func:`get_metric` and called as
``metric(distorted, reference=None)`` → (N,) scores; ``list_metrics()`` maps every
name to its :class:`MetricInfo` (full-reference? higher is better? range?
differentiable? needs a classifier?), the same object as ``get_metric(name).info``.
"""

from advqa.quality.advdss import AdvDSS, advdss
from advqa.quality.aeqa import aeqa, aeqa_scores, js_divergence
from advqa.quality.pair import PairScores, score_pair
from advqa.quality.registry import (
    Metric,
    MetricInfo,
    UnknownMetricError,
    get_metric,
    list_metrics,
    register,
)

__all__ = [
    "AdvDSS",
    "Metric",
    "MetricInfo",
    "PairScores",
    "UnknownMetricError",
    "advdss",
    "aeqa",
    "aeqa_scores",
    "get_metric",
    "js_divergence",
    "list_metrics",
    "register",
    "score_pair",
]
