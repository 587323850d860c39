"""MAD competition: Wang & Simoncelli, "Maximum differentiation (MAD) competition", J. Vision 2008.

Raise the objective ``J`` while holding the mean squared error to the clean
image ``x`` fixed. With ``g1 = ∇J(x_t)`` and ``g2 = ∇MSE(x_t, x) = 2(x_t − x)/d``,

``pg = g1 − (g2ᵀg1 / g2ᵀg2) · g2``   (per sample; ``pg ⊥ g2``)

``x' = clip(x_t + α · sign(pg))``, then ``x_{t+1} = clip(x + s·(x' − x))``

where the scale ``s`` is found by bisection so that ``rms(x_{t+1} − x)`` equals
the level to within ``precision``. Moving along ``g2`` is moving along
``x_t − x``, and with the [0, 1] clip the RMSE only grows with ``s``, so the
bisection always brackets the level. The first iterate is the benchmark's
plain signed step ``clip(x + ε·sign(∇J(x)))`` (at ``x`` the MSE gradient is
zero and there is nothing to project out); its RMSE is the level held.

The level and the precision
---------------------------
Both are RMSE = √MSE in absolute [0, 1] pixel units. The public benchmark's
script (MSU Metrics Robustness Benchmark, ``methods/madc``) has ``eps = 10/255
≈ 0.039`` — the "0.04" — and compares it with ``√mean((x_t − x)²)``: an
*absolute* RMSE, not relative to anything, and a ceiling it walks back under
with 0.0005 sign steps, not a tolerance around a level. Its 8 sign steps of
0.001 never get near that ceiling, so it does not actually hold the MSE.
Here the level is the RMSE of the first step (≈ ``eps`` = 0.001, the
benchmark's step, less where the clip bites or the gradient is zero), or an
explicit ``level=``, and every later iterate has RMSE within ``precision``
(default 1e-6 absolute, 0.1 % of that level) of it. On NIQE much larger levels
defeat the attack: on the sample photos a first step of 10/255 multiplies
NIQE by 4–15, and 7 tangential steps did not bring it back below the clean
image's.
An image that cannot reach the level inside [0, 1] keeps the largest RMSE it
can reach.
"""

import math

import torch

from advqa.attacks.base import Attack, check_images, input_gradient

TINY = 1e-12


def per_sample_dot(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return (first * second).flatten(1).sum(dim=1)


def root_mean_square(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.flatten(1).pow(2).mean(dim=1).sqrt()


def view(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def orthogonal_component(gradient: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
    """``g1 − (g2ᵀg1 / g2ᵀg2) · g2`` per sample; ``g1`` itself where ``g2 = 0``."""
    squared = per_sample_dot(held, held)
    coefficient = torch.where(squared > 0, per_sample_dot(held, gradient) / squared.clamp_min(TINY),
                              torch.zeros_like(squared))
    return gradient - view(coefficient) * held


def rescale_to_level(images: torch.Tensor, delta: torch.Tensor, level: torch.Tensor,
                     precision: float, *, iterations: int = 64) -> torch.Tensor:
    """``clip(x + s·δ)`` with ``s ≥ 0`` chosen per sample so its RMSE to ``x`` is ``level`` (N,).

    Bisection on ``s``; stops once every sample is within ``precision`` or
    after ``iterations`` halvings.
    """
    def rmse(scale):
        return root_mean_square((images + view(scale) * delta).clamp(0, 1) - images)

    size = root_mean_square(delta)
    low = torch.zeros_like(size)
    high = torch.where(size > 0, level / size.clamp_min(TINY), torch.ones_like(size))
    # Clipping only shrinks the perturbation, so the unclipped scale may fall
    # short; double until the level is bracketed (or the image is saturated).
    for _ in range(iterations):
        short = rmse(high) < level
        if not short.any():
            break
        high = torch.where(short, 2 * high, high)
    chosen = high.clone()
    done = (rmse(high) - level).abs() <= precision
    done |= rmse(high) < level  # unreachable: keep the largest reachable RMSE
    for _ in range(iterations):
        if done.all():
            break
        middle = (low + high) / 2
        error = rmse(middle) - level
        hit = (error.abs() <= precision) & ~done
        chosen = torch.where(hit, middle, chosen)
        done |= hit
        low = torch.where(error < 0, middle, low)
        high = torch.where(error >= 0, middle, high)
    chosen = torch.where(done, chosen, high)
    return (images + view(chosen) * delta).clamp(0, 1)


class MADC(Attack):
    """Maximise the objective on the sphere ``RMSE(x', x) = level`` per image.

    Parameters
    ----------
    norm : {"rmse"}
        The held distance; only the root mean squared error.
    eps : float
        L∞ size of the initial signed step ``clip(x + eps·sign(∇J(x)))``, in
        [0, 1] units; default 0.001, the benchmark's step. The RMSE of that
        step (``eps`` except where the clip bites) is the level held.
    level : float, optional
        Hold this RMSE instead (absolute, [0, 1] units); the initial step is
        rescaled onto it.
    steps : int
        Gradient evaluations including the initial one; default 8, the benchmark's.
    step_size : float
        L∞ size α of each signed tangential step ``α·sign(pg)`` before it is
        pulled back onto the level; default 0.001, the benchmark's.
    precision : float
        Largest allowed ``|RMSE − level|`` of every iterate after the first, in
        absolute [0, 1] RMSE units; default 1e-6 (0.1 % of the default level).
    seed : int
        Unused (the attack is deterministic); kept for a uniform interface.

    References
    ----------
    .. [1] Wang & Simoncelli, "Maximum differentiation (MAD) competition: A
       methodology for comparing computational models of perceptual
       quantities", Journal of Vision 8(12):8, 2008.
    .. [2] Antsiferova et al., "Comparing the Robustness of Modern No-Reference
       Image- and Video-Quality Metrics to Adversarial Attacks", AAAI 2024.
    """

    name = "madc"
    norms = ("rmse",)

    def __init__(self, *, norm="rmse", eps=0.001, level=None, steps=8, step_size=0.001,
                 precision=1e-6, seed=0):
        super().__init__(seed=seed)
        if norm not in self.norms:
            raise ValueError(f"madc holds the RMSE only (norm='rmse'), not {norm!r}")
        for label, value in (("eps", eps), ("step_size", step_size), ("precision", precision),
                             ("level", 1.0 if level is None else level)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be a finite number > 0, got {value!r}")
        if level is not None and not precision < level:
            raise ValueError(f"precision ({precision}) must be smaller than level ({level})")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.eps = float(eps)
        self.level = None if level is None else float(level)
        self.steps = steps
        self.step_size = float(step_size)
        self.precision = float(precision)

    def parameters(self):
        return {"attack": self.name, "norm": "rmse", "eps": self.eps, "level": self.level,
                "steps": self.steps, "step_size": self.step_size, "precision": self.precision}

    def start(self, objective, images):
        """The first iterate and the per-image RMSE level (N,) the attack then holds."""
        check_images(images)
        images = images.detach()
        gradient, _ = input_gradient(objective, images)
        # At x the MSE gradient is zero and nothing can be projected out: the
        # first step is the benchmark's plain signed step.
        adversarial = (images + self.eps * gradient.sign()).clamp(0, 1)
        if self.level is None:
            return adversarial, root_mean_square(adversarial - images)
        level = torch.full((images.shape[0],), self.level, dtype=images.dtype,
                           device=images.device)
        return rescale_to_level(images, adversarial - images, level, self.precision), level

    def perturb(self, objective, images):
        adversarial, level = self.start(objective, images)
        images = images.detach()
        for _ in range(self.steps - 1):
            gradient, _ = input_gradient(objective, adversarial)
            held = 2 * (adversarial - images) / images[0].numel()
            tangent = orthogonal_component(gradient, held)
            # The signed step leaves the tangent plane a little; the pull-back
            # along g2 (i.e. along x_t − x) puts it back on the level.
            moved = (adversarial + self.step_size * tangent.sign()).clamp(0, 1)
            adversarial = rescale_to_level(images, moved - images, level, self.precision)
        steps_used = torch.full((images.shape[0],), self.steps, dtype=torch.long,
                                device=images.device)
        return adversarial.detach(), steps_used
