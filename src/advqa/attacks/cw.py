"""Carlini & Wagner L2: "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017.

Change of variables ``x' = (tanh(w) + 1)/2`` keeps the image in the box; minimise

``‖x' − x‖₂² + c · max(Z_y − max_{i≠y} Z_i, −κ)``

with Adam, and binary-search ``c`` per sample: on success the upper bound
falls to ``c``; on failure the lower bound rises, and ``c`` grows ×10 until an
upper bound exists. The smallest successful perturbation seen is kept;
samples never fooled are returned unchanged.
"""

from __future__ import annotations

import torch

from advqa.attacks.base import Attack
from advqa.attacks.budgets import flat
from advqa.attacks.objectives import ClassifierObjective


class CarliniWagner(Attack):
    """C&W L2 with binary search over the trade-off constant.

    Parameters
    ----------
    c : float
        Initial trade-off constant. The paper's search starts at 1e-3; we start at
        1 (torchattacks' fixed value), which needs fewer search steps on ImageNet
        models; the search moves down as well as up.
    kappa : float
        Confidence margin κ.
    steps : int
        Adam iterations per search step.
    learning_rate : float
        Adam step size on ``w``.
    binary_search_steps : int
        Number of values of ``c`` tried per sample.
    """

    name = "cw"
    norms = ("l2",)
    strength = "kappa"

    def __init__(self, *, norm="l2", c=1.0, kappa=0.0, steps=100, learning_rate=0.01,
                 binary_search_steps=5, seed=0):
        super().__init__(seed=seed)
        if norm != "l2":
            raise ValueError(f"cw supports norm 'l2' only, not {norm!r}")
        if not (c > 0 and kappa >= 0 and steps >= 1 and binary_search_steps >= 1):
            raise ValueError("cw needs c > 0, kappa >= 0, steps >= 1, binary_search_steps >= 1")
        self.c, self.kappa, self.steps = float(c), float(kappa), int(steps)
        self.learning_rate, self.binary_search_steps = float(learning_rate), binary_search_steps

    def parameters(self):
        return {"attack": self.name, "norm": "l2", "c": self.c, "kappa": self.kappa,
                "steps": self.steps, "learning_rate": self.learning_rate,
                "binary_search_steps": self.binary_search_steps}

    def perturb(self, objective, images):
        if not isinstance(objective, ClassifierObjective):
            raise TypeError("cw needs a ClassifierObjective")
        count = images.shape[0]
        w_start = torch.atanh(torch.clamp(2 * images - 1, -1 + 1e-6, 1 - 1e-6))
        const = torch.full((count,), self.c, device=images.device)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, float("inf"))
        best, best_l2 = images.clone(), torch.full_like(const, float("inf"))
        steps_used = torch.zeros(count, dtype=torch.long, device=images.device)
        for search in range(self.binary_search_steps):
            succeeded = self.minimise(objective, images, w_start, const, best, best_l2,
                                      steps_used, offset=search * self.steps)
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
        return best, steps_used

    def minimise(self, objective, images, w_start, const, best, best_l2, steps_used, offset):
        """One Adam run at fixed ``c``; updates ``best`` in place, returns who succeeded."""
        w = w_start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=self.learning_rate)
        succeeded = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        for step in range(self.steps):
            adversarial = (torch.tanh(w) + 1) / 2
            logits = objective.logits(adversarial)
            margin = objective.margin(logits)
            squared = flat(adversarial - images).square().sum(dim=1)
            loss = squared + const * torch.clamp(margin, min=-self.kappa)
            optimizer.zero_grad()
            loss.sum().backward()
            with torch.no_grad():
                fooled = objective.success_from_logits(logits) & (margin <= -self.kappa)
                improved = fooled & (squared.sqrt() < best_l2)
                best_l2[improved] = squared.sqrt()[improved]
                best[improved] = adversarial.detach()[improved]
                steps_used[improved] = offset + step + 1
                succeeded |= fooled
            optimizer.step()
        return succeeded
