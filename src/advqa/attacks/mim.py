"""MIM / MI-FGSM: Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018.

``g_{t+1} = μ · g_t + ∇J(x_t) / ‖∇J(x_t)‖₁;  x_{t+1} = Π_B(x_t + α · s(g_{t+1}))``

The L1 normalisation is computed as a mean (‖·‖₁/d), which only rescales every
term by the same constant. Default ``α = ε/T`` and ``μ = 1``, the paper's.
"""

from advqa.attacks.base import GradientAttack


class MIM(GradientAttack):
    """Momentum iterative method; ``decay`` is μ."""

    name = "mim"
    step_factor = 1.0

    def __init__(self, *, norm="linf", eps=8 / 255, steps=10, step_size=None, decay=1.0,
                 early_stop=False, seed=0, budget=None):
        super().__init__(norm=norm, eps=eps, steps=steps, step_size=step_size,
                         random_start=False, early_stop=early_stop, seed=seed, budget=budget)
        self.decay = float(decay)

    def parameters(self):
        return {**super().parameters(), "decay": self.decay}

    def ascent(self, gradient, state):
        normalised = gradient / gradient.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        velocity = normalised + state.get("velocity", 0.0) * self.decay
        state["velocity"] = velocity
        return self.budget.direction(velocity)
