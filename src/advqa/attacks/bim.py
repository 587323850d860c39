"""BIM / I-FGSM: Kurakin, Goodfellow & Bengio, "Adversarial Examples in the Physical World", 2017.

``x_0 = x;  x_{t+1} = Clip_{x,ε}(x_t + α · sign(∇J(x_t)))``

Default ``α = 1.25·ε/T``: Kurakin et al. take α = 1/255 and
T = min(ε+4, 1.25ε) in 0–255 units, i.e. α·T ≈ 1.25ε.

For L∞ the projection is the paper's own
``Clip_{x,ε}(x') = min(1, x + ε, max(0, x − ε, x'))``.
"""

import torch

from advqa.attacks.base import GradientAttack


class BIM(GradientAttack):
    """Basic iterative method: FGSM repeated with a small step, clipped to the budget."""

    name = "bim"
    step_factor = 1.25

    def __init__(self, *, norm="linf", eps=8 / 255, steps=10, step_size=None,
                 early_stop=False, seed=0, budget=None):
        super().__init__(norm=norm, eps=eps, steps=steps, step_size=step_size,
                         random_start=False, early_stop=early_stop, seed=seed, budget=budget)

    def project(self, adversarial, state):
        if self.budget.name != "linf":
            return super().project(adversarial, state)
        images, eps = state["images"], self.budget.eps
        floor = torch.clamp(images - eps, min=0)
        ceiling = torch.clamp(images + eps, max=1)
        return torch.minimum(torch.maximum(adversarial, floor), ceiling)
