"""Objectives: what an attack maximises, one loss per sample.

An objective maps a batch of images to a per-sample loss. The engine ascends
its gradient; it never knows whether the loss comes from a classifier, an
image-quality metric or a combination of both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Evaluation(NamedTuple):
    """One forward pass: the loss to maximise and, when defined, who succeeded."""

    loss: torch.Tensor
    success: torch.Tensor | None


class Objective:
    """Base class: a per-sample loss to maximise.

    Subclasses implement :meth:`evaluate`. ``module`` names the network whose
    parameters must stay frozen while the attack runs.
    """

    module: nn.Module | None = None

    def evaluate(self, images: torch.Tensor) -> Evaluation:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.evaluate(images).loss


class ClassifierObjective(Objective):
    """Cross-entropy of a classifier, untargeted (raise it) or targeted (lower it).

    Parameters
    ----------
    model : nn.Module
        Maps RGB [0, 1] NCHW to logits.
    labels : torch.Tensor
        True labels (untargeted) or target labels (targeted), shape (N,).
    targeted : bool
        When True the loss is ``-CE(target)`` and success means predicting it.
    """

    def __init__(self, model: nn.Module, labels: torch.Tensor, *, targeted: bool = False):
        self.module = model
        self.labels = labels
        self.targeted = targeted

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images)

    def success_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        predictions = logits.argmax(dim=1)
        return predictions == self.labels if self.targeted else predictions != self.labels

    def loss_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, self.labels, reduction="none")
        return -loss if self.targeted else loss

    def margin(self, logits: torch.Tensor) -> torch.Tensor:
        """Carlini–Wagner margin: positive while the attack has not yet succeeded.

        Untargeted: ``Z_y − max_{i≠y} Z_i``; targeted: ``max_{i≠t} Z_i − Z_t``.
        """
        own = logits.gather(1, self.labels[:, None]).squeeze(1)
        others = logits.scatter(1, self.labels[:, None], float("-inf")).amax(dim=1)
        return others - own if self.targeted else own - others

    def evaluate(self, images: torch.Tensor) -> Evaluation:
        logits = self.logits(images)
        return Evaluation(self.loss_from_logits(logits), self.success_from_logits(logits))

    def subset(self, index: torch.Tensor) -> ClassifierObjective:
        """The same objective restricted to some samples of the batch."""
        return ClassifierObjective(self.module, self.labels[index], targeted=self.targeted)
