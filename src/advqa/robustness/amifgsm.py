"""AMI-FGSM: Sang et al., "On the Generation of Adversarial Samples for Image Quality Assessment".

MI-FGSM (:class:`advqa.robustness.mifgsm.MIFGSM`) whose L∞ radius adapts to each image:

``ε_i = 1 / NIQE(x_i)``;  ``g_{t+1} = μ·g_t + ∇J / ‖∇J‖₁`` (form ``"dong"``, the
default) or ``g_{t+1} = ∇J + μ·g_t`` (form ``"msu"``, the benchmark's text);
``x_{t+1} = clip_{[0,1]}(clip_{x,ε_i}(x_t + α_i · sign(g_{t+1})))``

with ``α_i = ε_i / T`` by default and ``μ = 1``. NIQE is advqa's own
(``get_metric("niqe")``), computed once on the clean image.

Each sign step moves a pixel by at most α, so after T steps no pixel has moved
more than T·α: when ``T·α ≤ ε_i`` the ball of image i can never bind and
AMI-FGSM gives exactly MI-FGSM's images (with ``ε ≥ T·α`` for MI-FGSM as well).
That is the case with the default ``α = ε_i/T`` and with the benchmark's 10 steps
of 1/255 (10/255 < 1/NIQE on natural photos); :func:`ball_never_binds` tests it,
and the benchmark's leaderboard says so where it happens.

The radius is in [0, 1] pixel units, exactly as the formula reads — ``1/NIQE``
is not rescaled to 0–255. NIQE of natural photos lies around 3–20, so the radius
is large: on advqa's sample photos at 256×256, NIQE is 2.9–22.4 and
``1/NIQE`` is 0.045–0.35 (11–89 grey levels), median ≈ 0.19 (48 grey levels),
far above the 10/255 the benchmark gives its other attacks. A sharper (lower
NIQE) image gets the larger budget.

With the default ``α = ε_i/T`` the steps are 5–35 grey levels, and NIQE, which
is rough at that scale, gets *worse* (on three 128×256 crops of the photos:
6.0/4.3/6.2 → 12.3/11.8/9.6); a small fixed ``step_size`` such as 0.2/255
lowers it (→ 3.4/2.8/3.2) but then leaves the ball unused. The benchmark's own
``methods/amifgsm`` script computes no NIQE at all: it runs MI-FGSM with
α = 1/255 for 10 steps and clips only to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from advqa.attacks.base import check_images
from advqa.robustness.mifgsm import MIFGSM


def niqe_radius(images: torch.Tensor) -> torch.Tensor:
    """``1 / NIQE`` of each image, (N,), in [0, 1] pixel units."""
    from advqa.quality import get_metric

    with torch.no_grad():
        return 1.0 / get_metric("niqe")(images.detach())


def ball_never_binds(radius, *, steps: int, step_size: float, slack: float = 1e-6):
    """Whether an L∞ ball of ``radius`` can never bind ``steps`` sign steps of ``step_size``.

    True where ``steps · step_size ≤ radius`` (with a relative ``slack`` for rounding):
    no pixel can move farther than the ball allows, so the projection onto it never
    changes an iterate. Works on floats, arrays and tensors alike.
    """
    return steps * step_size <= radius * (1 + slack)


class AMIFGSM(MIFGSM):
    """MI-FGSM with the per-image L∞ radius ``1/NIQE(x)``.

    Parameters
    ----------
    steps : int
        T; default 10, the benchmark's.
    step_size : float, optional
        A fixed α for every image; default ``ε_i / T`` per image.
    decay : float
        μ; default 1.0, the benchmark's.
    form : {"dong", "msu"}, default "dong"
        The momentum term (see :mod:`advqa.robustness.mifgsm`).
    radius : callable, optional
        ``radius(images) -> (N,)`` tensor of L∞ radii; default :func:`niqe_radius`.
        Lets tests and studies swap the NIQE for something else.
    seed : int
        Unused (the attack is deterministic); kept for a uniform interface.

    References
    ----------
    .. [1] Sang et al., "On the Generation of Adversarial Samples for Image
       Quality Assessment".
    .. [2] Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018.
    """

    name = "amifgsm"
    norms = ("linf",)

    def __init__(self, *, steps=10, step_size=None, decay=1.0, form="dong",
                 radius: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 early_stop=False, seed=0):
        # The ball's radius is only known per image at perturb time; the
        # nominal eps=1 (the whole box) is never used for clipping.
        super().__init__(form=form, norm="linf", eps=1.0, steps=steps, step_size=step_size,
                         decay=decay, early_stop=early_stop, seed=seed)
        if not math.isfinite(self.decay):
            raise ValueError(f"decay must be finite, got {decay!r}")
        if radius is not None and not callable(radius):
            raise ValueError(f"radius must be a callable images -> (N,) tensor, got {radius!r}")
        self.fixed_step = step_size is not None
        self.radius = niqe_radius if radius is None else radius

    def parameters(self):
        return {"attack": self.name, "norm": "linf", "eps": "1/niqe", "steps": self.steps,
                "step_size": self.step_size if self.fixed_step else "eps/steps",
                "decay": self.decay, "form": self.form}

    def radii(self, images: torch.Tensor) -> torch.Tensor:
        """The per-image radius as an (N, 1, 1, 1) tensor, checked."""
        values = torch.as_tensor(self.radius(images), dtype=images.dtype, device=images.device)
        values = values.reshape(-1)
        if values.shape != (images.shape[0],):
            raise ValueError(f"radius must give one value per image ({images.shape[0]}), "
                             f"got shape {tuple(values.shape)}")
        if not (torch.isfinite(values).all() and (values > 0).all()):
            raise ValueError(f"radius must be finite and > 0 for every image, got {values.tolist()}"
                             " (a non-positive NIQE has no 1/NIQE radius)")
        return values.view(-1, 1, 1, 1)

    def perturb(self, objective, images):
        check_images(images)
        return super().perturb(objective, images.detach())

    def setup(self, images):
        # This call's per-image radius and step: MI-FGSM's ascent, projected onto each
        # image's own 1/NIQE ball.
        ball = self.radii(images)
        step_size = self.step_size if self.fixed_step else ball / self.steps
        return {**super().setup(images), "ball": ball, "step_size": step_size}

    def project(self, adversarial, state):
        images, ball = state["images"], state["ball"]
        clipped = torch.minimum(torch.maximum(adversarial, images - ball), images + ball)
        return clipped.clamp(0, 1)
