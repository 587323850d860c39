"""PGD: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.

``x_0 = x + U(B) (optional);  x_{t+1} = Π_{B(x,ε)}(x_t + α · s(∇J(x_t)))``

Default ``α = 2.5·ε/T``, the paper's choice.
"""

from advqa.attacks.base import GradientAttack


class PGD(GradientAttack):
    """Projected gradient descent, with an optional uniform random start."""

    name = "pgd"
    step_factor = 2.5

    def __init__(self, *, norm="linf", eps=8 / 255, steps=10, step_size=None,
                 random_start=True, early_stop=False, seed=0, budget=None):
        super().__init__(norm=norm, eps=eps, steps=steps, step_size=step_size,
                         random_start=random_start, early_stop=early_stop, seed=seed,
                         budget=budget)
