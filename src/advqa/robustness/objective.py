"""Attacks on image-quality metrics: the metric as one more objective of the engine.

The public benchmark (MSU Metrics Robustness Benchmark; Antsiferova et al.,
"Comparing the robustness of modern no-reference image- and video-quality
metrics to adversarial attacks", AAAI 2024) descends
``J(θ, I) = 1 − score(I)/range``, where ``range`` is the spread (max − min) of
the metric over a calibration set. Descending ``J`` is ascending
``score/range``: :class:`MetricObjective` hands the engine that per-sample loss,
with the sign flipped for metrics where lower is better (GMSD, NIQE, BRISQUE,
LPIPS…), so every attack pushes the metric toward "better".

A full-reference metric is attacked on a distorted copy of the image (JPEG at
quality 80 by default, :func:`jpeg_copy`) and scored against the pristine image.
"""

from __future__ import annotations

import math

import torch

from advqa.attacks.objectives import Evaluation, Objective
from advqa.data import codec_roundtrip


class MetricObjective(Objective):
    """Per-sample loss ``direction · metric(images[, references]) / range`` to maximise.

    Parameters
    ----------
    metric : advqa.quality.Metric
        The attacked metric (``metric.info`` gives its direction and type).
    metric_range : float
        ``high − low`` of the metric on a calibration set (see
        :func:`advqa.robustness.calibration.metric_range`); it puts metrics with
        different scales on one step size.
    references : torch.Tensor, optional
        Pristine images, required for a full-reference metric: the attacked
        images are scored against them.
    """

    def __init__(self, metric, *, metric_range: float, references: torch.Tensor | None = None):
        if not (math.isfinite(metric_range) and metric_range > 0):
            raise ValueError(f"metric_range of {metric.info.name} must be finite and > 0, "
                             f"got {metric_range!r}")
        if metric.info.full_reference and references is None:
            raise ValueError(f"{metric.info.name} is full-reference: pass references=")
        self.module = metric
        self.metric = metric
        self.metric_range = float(metric_range)
        self.references = references if metric.info.full_reference else None
        self.direction = 1.0 if metric.info.higher_is_better else -1.0

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """The metric itself, (N,)."""
        if self.references is None:
            return self.metric(images)
        return self.metric(images, self.references)

    def evaluate(self, images: torch.Tensor) -> Evaluation:
        if images.requires_grad:
            # Metrics take square roots of gradient magnitudes (GMSD, FSIM…), whose
            # derivative at an exactly flat patch is 0·∞ = NaN; such a point has no
            # preferred direction, and one NaN would otherwise poison the sign step.
            images.register_hook(zero_non_finite)
        return Evaluation(self.direction * self.scores(images) / self.metric_range, None)

    def subset(self, index: torch.Tensor) -> MetricObjective:
        """The same objective restricted to some samples of the batch."""
        references = None if self.references is None else self.references[index]
        return MetricObjective(self.metric, metric_range=self.metric_range,
                               references=references)


def zero_non_finite(gradient: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(gradient, nan=0.0, posinf=0.0, neginf=0.0)


def jpeg_copy(images: torch.Tensor, *, quality: int = 80) -> torch.Tensor:
    """JPEG-compress and decode each image of an NCHW [0, 1] batch (Pillow, 4:2:0).

    The distorted starting point for attacks on full-reference metrics.
    """
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must lie in 1..100, got {quality!r}")
    return codec_roundtrip(images, format="JPEG", quality=int(quality))
