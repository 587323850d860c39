"""DeepFool: Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method
to fool deep neural networks", CVPR 2016 (Algorithm 2, multi-class, with overshoot).

At each iteration, for candidate classes k ≠ y (the top ``candidates`` of the
clean logits):

``f_k = Z_k − Z_y,  w_k = ∇f_k,  l = argmin_k |f_k| / ‖w_k‖_q``

``r = (|f_l| + 1e-4) / ‖w_l‖_q^q · |w_l|^{q−1} ⊙ sign(w_l)``, accumulated into
``r_tot``; the iterate is ``x + (1 + overshoot) · r_tot``, clipped to [0, 1].
q is the dual of the attack norm: q = 2 for L2, q = 1 for L∞. A sample stops
once it is misclassified.
"""

from __future__ import annotations

import torch

from advqa.attacks.base import Attack
from advqa.attacks.budgets import per_sample
from advqa.attacks.objectives import ClassifierObjective


class DeepFool(Attack):
    """Minimal-perturbation attack by repeated linearisation of the decision boundaries.

    Parameters
    ----------
    norm : {"l2", "linf"}
    overshoot : float
        Scales the accumulated perturbation by ``1 + overshoot``; the paper uses 0.02.
    steps : int
        Maximum iterations.
    candidates : int
        Number of top classes (including the true one) to linearise, as in the
        reference implementation; bounds the cost on 1000-class models.
    """

    name = "deepfool"
    norms = ("l2", "linf")
    strength = "overshoot"

    def __init__(self, *, norm="l2", overshoot=0.02, steps=50, candidates=10, seed=0):
        super().__init__(seed=seed)
        if norm not in self.norms:
            raise ValueError(f"deepfool supports norms {self.norms}, not {norm!r}")
        if not overshoot >= 0:
            raise ValueError(f"overshoot must be >= 0, got {overshoot!r}")
        if candidates < 2:
            raise ValueError(f"candidates must be >= 2, got {candidates!r}")
        self.norm, self.overshoot = norm, float(overshoot)
        self.steps, self.candidates = int(steps), int(candidates)

    def parameters(self):
        return {"attack": self.name, "norm": self.norm, "overshoot": self.overshoot,
                "steps": self.steps, "candidates": self.candidates}

    def step(self, gaps: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        """The minimal linearised step towards the closest candidate boundary."""
        dual = 2 if self.norm == "l2" else 1
        norms = gradients.flatten(2).norm(p=dual, dim=2).clamp_min(1e-12)
        closest = (gaps.abs() / norms).argmin(dim=1)
        rows = torch.arange(gaps.shape[0], device=gaps.device)
        gap, gradient, norm = gaps[rows, closest], gradients[rows, closest], norms[rows, closest]
        if self.norm == "l2":
            return per_sample((gap.abs() + 1e-4) / norm.square(), gradient) * gradient
        return per_sample((gap.abs() + 1e-4) / norm, gradient) * gradient.sign()

    def perturb(self, objective, images):
        if not isinstance(objective, ClassifierObjective) or objective.targeted:
            raise TypeError("deepfool needs an untargeted ClassifierObjective")
        labels = objective.labels
        with torch.no_grad():
            clean_logits = objective.logits(images)
        count = min(self.candidates, clean_logits.shape[1]) - 1
        others = clean_logits.scatter(1, labels[:, None], float("-inf")).topk(count).indices
        total = torch.zeros_like(images)
        adversarial = images.clone()
        steps_used = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        active = torch.arange(images.shape[0], device=images.device)
        for _ in range(self.steps):
            current = adversarial[active].requires_grad_(True)
            logits = objective.logits(current)
            still = logits.argmax(dim=1) == labels[active]
            if not still.any():
                break
            active, logits = active[still], logits[still]
            gaps = logits.gather(1, others[active]) - logits.gather(1, labels[active, None])
            # One backward pass per candidate class: w_k = ∇(Z_k − Z_y).
            gradients = torch.stack(
                [torch.autograd.grad(gaps[:, k].sum(), current, retain_graph=k < count - 1)[0]
                 for k in range(count)], dim=1)[still]
            total[active] += self.step(gaps.detach(), gradients)
            scaled = images[active] + (1 + self.overshoot) * total[active]
            adversarial[active] = torch.clamp(scaled, min=0, max=1)
            steps_used[active] += 1
        return adversarial, steps_used
