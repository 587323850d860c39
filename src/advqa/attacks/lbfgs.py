"""L-BFGS on a box reparametrisation: the optimiser Szegedy et al. used for the first AEs.

Szegedy et al., "Intriguing properties of neural networks", ICLR 2014, found AEs
with box-constrained L-BFGS. Here the box is enforced by ``x' = (tanh(w)+1)/2``
(Carlini & Wagner's change of variables) and torch's L-BFGS minimises
``−Σ_n J(x'_n)`` for any objective J. A small uniform random start (``start_eps``)
moves every sample off the clean image, where objectives built on divergences
(AEQA) have zero value and zero gradient.
"""

from __future__ import annotations

import torch

from advqa.attacks.base import Attack
from advqa.attacks.budgets import Linf


class LBFGS(Attack):
    """Maximise an objective with L-BFGS inside the [0, 1] box.

    Parameters
    ----------
    steps : int
        L-BFGS iterations (each may evaluate the objective several times).
    learning_rate : float
        L-BFGS step scale.
    history : int
        Number of curvature pairs kept.
    start_eps : float
        Half-width of the uniform random start around the clean image.
    seed : int
        Seeds the random start.
    """

    name = "lbfgs"
    norms = ("l2",)
    strength = "steps"

    def __init__(self, *, steps=20, learning_rate=1.0, history=10, start_eps=4 / 255, seed=0):
        super().__init__(seed=seed)
        if steps < 1 or learning_rate <= 0 or start_eps <= 0:
            raise ValueError("lbfgs needs steps >= 1, learning_rate > 0 and start_eps > 0")
        self.steps, self.learning_rate = int(steps), float(learning_rate)
        self.history, self.start_eps = int(history), float(start_eps)

    def parameters(self):
        return {"attack": self.name, "steps": self.steps, "learning_rate": self.learning_rate,
                "history": self.history, "start_eps": self.start_eps}

    def perturb(self, objective, images):
        start = Linf(self.start_eps).random_start(images, self.generator(images.device))
        w = torch.atanh(torch.clamp(2 * start - 1, -1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
        optimizer = torch.optim.LBFGS([w], lr=self.learning_rate, max_iter=self.steps,
                                      history_size=self.history, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = -objective((torch.tanh(w) + 1) / 2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        steps = torch.full((images.shape[0],), optimizer.state[w]["n_iter"],
                           dtype=torch.long, device=images.device)
        return ((torch.tanh(w) + 1) / 2).detach(), steps
