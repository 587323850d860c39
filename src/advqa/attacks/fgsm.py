"""FGSM: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.

``x' = Π_B(x + ε · s(∇J(x)))`` — one step of the full budget; ``s`` is
``sign`` for L∞ and the budget's steepest-ascent direction for other norms.
"""

from advqa.attacks.base import GradientAttack


class FGSM(GradientAttack):
    """Fast gradient (sign) method: one step of size ``eps``.

    Parameters
    ----------
    norm : {"linf", "l2", "l1", "l0"}
    eps : float
        Budget radius; for ``l0`` the fraction of pixels that may change.
    step_size : float, optional
        Defaults to ``eps``; for ``l0`` to 1 (the box width), so chosen pixels saturate.
    budget : str, optional
        A perceptual budget, e.g. ``"advdss>=0.99"``: the step is shortened to meet it.
    """

    name = "fgsm"

    def __init__(self, *, norm="linf", eps=8 / 255, step_size=None, seed=0, budget=None):
        super().__init__(norm=norm, eps=eps, steps=1, step_size=step_size, seed=seed,
                         budget=budget)

    def parameters(self):
        parameters = super().parameters()
        del parameters["steps"], parameters["random_start"]  # fixed: one step from x
        return parameters
