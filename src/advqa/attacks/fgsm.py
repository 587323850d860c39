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
    """

    name = "fgsm"

    def __init__(self, *, norm="linf", eps=8 / 255, step_size=None, seed=0):
        super().__init__(norm=norm, eps=eps, steps=1, step_size=step_size, seed=seed)

    def parameters(self):
        return {"attack": self.name, "norm": self.budget.name, "eps": self.budget.eps,
                "step_size": self.step_size}
