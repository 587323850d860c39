"""Perturbation budgets: an Lp ball around the clean image, intersected with [0, 1].

Each budget supplies the three things a step rule needs: the steepest-ascent
``direction`` of a gradient under its norm, a ``project`` back into the ball
and the image box, and a ``random_start`` inside the ball.

What ``eps`` means
------------------
- ``linf``: the largest change of any component, in [0, 1] units.
- ``l2``: the Euclidean norm of the whole perturbation (all channels), in [0, 1] units.
- ``l1``: the sum of absolute changes over all components.
- ``l0``: the *fraction of pixel positions* (H·W, all channels of a pixel count
  as one) that may change: ``k = ceil(eps·H·W)`` pixels, capped at H·W. The size
  of a change is limited only by the [0, 1] box. This sparse model follows
  Croce & Hein, "Sparse and Imperceivable Adversarial Attacks", ICCV 2019.

References
----------
.. [1] Tramèr & Boneh, "Adversarial Training and Robustness for Multiple
   Perturbations", NeurIPS 2019 (the sparse L1 step).
.. [2] Duchi et al., "Efficient Projections onto the l1-Ball for Learning in
   High Dimensions", ICML 2008.
"""

from __future__ import annotations

import math

import torch

from advqa.norms import distances, flat, per_sample

__all__ = [
    "L0",
    "L1",
    "L2",
    "NORMS",
    "Budget",
    "Linf",
    "distances",
    "flat",
    "make_budget",
    "per_sample",
    "project_l1_ball",
    "scale_note",
]

NORMS = ("linf", "l2", "l1", "l0")
TINY = 1e-12


class Budget:
    """The feasible set ``{x' ∈ [0,1]^d : ‖x' − x‖ ≤ eps}``."""

    name = ""

    def __init__(self, eps: float):
        if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps for norm {self.name} must be a finite number > 0, got {eps!r}")
        self.eps = float(eps)

    def direction(self, gradient: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def project(self, adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def random_start(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class Linf(Budget):
    name = "linf"

    def direction(self, gradient):
        return gradient.sign()

    def project(self, adversarial, images):
        delta = torch.clamp(adversarial - images, min=-self.eps, max=self.eps)
        return torch.clamp(images + delta, min=0, max=1)

    def random_start(self, images, generator):
        noise = torch.rand(images.shape, generator=generator, device=images.device)
        return self.project(images + (2 * noise - 1) * self.eps, images)


class L2(Budget):
    name = "l2"

    def direction(self, gradient):
        norms = flat(gradient).norm(p=2, dim=1) + 1e-10
        return gradient / per_sample(norms, gradient)

    def project(self, adversarial, images):
        delta = adversarial - images
        norms = flat(delta).norm(p=2, dim=1)
        factor = torch.clamp(self.eps / norms.clamp_min(TINY), max=1.0)
        return torch.clamp(images + delta * per_sample(factor, delta), min=0, max=1)

    def random_start(self, images, generator):
        noise = torch.randn(images.shape, generator=generator, device=images.device)
        radius = torch.rand(images.shape[0], generator=generator, device=images.device)
        noise = noise / per_sample(flat(noise).norm(dim=1), noise)
        return self.project(images + noise * per_sample(radius * self.eps, noise), images)


def project_l1_ball(delta: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of each sample onto the L1 ball (Duchi et al., Fig. 1)."""
    vectors = flat(delta)
    magnitudes = vectors.abs()
    inside = magnitudes.sum(dim=1) <= radius
    ordered, _ = torch.sort(magnitudes, dim=1, descending=True)
    cumulative = ordered.cumsum(dim=1)
    ranks = torch.arange(1, vectors.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    positive = ordered * ranks > (cumulative - radius)
    rho = positive.sum(dim=1, keepdim=True).clamp_min(1)
    theta = (cumulative.gather(1, rho - 1) - radius) / rho.to(delta.dtype)
    shrunk = vectors.sign() * (magnitudes - theta).clamp_min(0)
    return torch.where(inside[:, None], vectors, shrunk).view_as(delta)


class L1(Budget):
    """L1 ball; steps move the top ``1 − sparsity_quantile`` share of gradient coordinates."""

    name = "l1"

    def __init__(self, eps: float, *, sparsity_quantile: float = 0.99):
        super().__init__(eps)
        if not 0.0 <= sparsity_quantile < 1.0:
            raise ValueError(f"sparsity_quantile must be in [0, 1), got {sparsity_quantile}")
        self.sparsity_quantile = sparsity_quantile

    def direction(self, gradient):
        magnitudes = flat(gradient).abs()
        count = max(1, round((1 - self.sparsity_quantile) * magnitudes.shape[1]))
        threshold = magnitudes.topk(count, dim=1).values[:, -1:]
        chosen = (magnitudes >= threshold) & (magnitudes > 0)
        steps = flat(gradient).sign() * chosen
        return (steps / chosen.sum(dim=1, keepdim=True).clamp_min(1)).view_as(gradient)

    def project(self, adversarial, images):
        delta = project_l1_ball(adversarial - images, self.eps)
        return torch.clamp(images + delta, min=0, max=1)

    def random_start(self, images, generator):
        noise = torch.rand(images.shape, generator=generator, device=images.device)
        laplace = -torch.log(noise.clamp_min(TINY)) * torch.where(noise > 0.5, 1.0, -1.0)
        radius = torch.rand(images.shape[0], generator=generator, device=images.device)
        laplace = laplace / per_sample(flat(laplace).abs().sum(dim=1), laplace)
        return self.project(images + laplace * per_sample(radius * self.eps, laplace), images)


class L0(Budget):
    """At most ``k = ceil(eps·H·W)`` changed pixel positions; any change within the box.

    Steps follow the gradient scaled to unit root-mean-square component, so a
    step size has the same scale as an L∞ step. The projection is exact for
    the set "at most k pixels differ, image in [0,1]": each pixel is either
    reset or box-clipped, keeping the k pixels whose clipping saves the most
    squared distance.
    """

    name = "l0"

    def pixels(self, images: torch.Tensor) -> int:
        positions = images.shape[-1] * images.shape[-2]
        return min(positions, max(1, math.ceil(self.eps * positions)))

    def direction(self, gradient):
        norms = flat(gradient).norm(p=2, dim=1) + 1e-10
        scale = math.sqrt(flat(gradient).shape[1])
        return gradient * per_sample(scale / norms, gradient)

    def project(self, adversarial, images):
        target = adversarial - images
        clipped = torch.clamp(adversarial, min=0, max=1) - images
        gain = (target.square() - (target - clipped).square()).sum(dim=1)
        count = self.pixels(images)
        keep_index = flat(gain).topk(count, dim=1).indices
        keep = torch.zeros_like(flat(gain), dtype=torch.bool).scatter_(1, keep_index, True)
        keep = keep.view_as(gain).unsqueeze(1)
        return torch.where(keep, torch.clamp(adversarial, min=0, max=1), images)

    def random_start(self, images, generator):
        noise = torch.rand(images.shape, generator=generator, device=images.device)
        return self.project(images + (2 * noise - 1), images)


def make_budget(norm: str, eps: float, **options) -> Budget:
    """Build the budget for ``norm`` in ``("linf", "l2", "l1", "l0")``."""
    budgets = {"linf": Linf, "l2": L2, "l1": L1, "l0": L0}
    key = str(norm).lower()
    key = {"inf": "linf", "l_inf": "linf", "2": "l2", "1": "l1", "0": "l0"}.get(key, key)
    if key not in budgets:
        raise ValueError(f"unknown norm {norm!r}; valid norms: {', '.join(NORMS)}")
    return budgets[key](eps, **options)


def scale_note(norm: str, eps: float, shape: tuple[int, ...]) -> tuple[str, bool]:
    """What ``eps`` amounts to on images of ``shape`` (C, H, W), and whether it is suspect.

    ε is in [0, 1] units, so ``--eps 4`` meant as 4/255 saturates every pixel: an L∞
    ε ≥ 1 lets every component take any value. For L2 and L1 the note gives the
    uniform change of every component that spends the whole budget
    (ε/√(CHW) and ε/(CHW)); it is suspect when that change is ≥ 1, i.e. the ball
    holds the whole [0, 1] box. An L0 ε ≥ 1 lets every pixel change.

    Returns
    -------
    (str, bool)
        A sentence for the user, and whether it should be a warning.
    """
    components = math.prod(shape)
    key = make_budget(norm, eps).name
    if key == "linf":
        if eps >= 1:
            return (f"L∞ ε = {eps:g} ≥ 1 lets every component take any value — the whole "
                    "[0, 1] range: any image is within budget. ε is in [0, 1] units; for "
                    f"{eps:g}/255 write {eps / 255:.4g}"), True
        return f"L∞ ε = {eps:g} lets every component move by {eps * 255:.3g}/255", False
    if key in ("l2", "l1"):
        uniform = eps / (math.sqrt(components) if key == "l2" else components)
        text = (f"{key.upper()} ε = {eps:g} on {'×'.join(map(str, shape))} images equals a "
                f"change of every component by {uniform:.3g} ({uniform * 255:.3g}/255)")
        if uniform >= 1:
            text += " — the whole [0, 1] range: any image is within budget"
        return text, uniform >= 1
    text = f"L0 ε = {eps:g}: up to {min(eps, 1):.3g} of the pixel positions may change"
    if eps >= 1:
        text += " — every pixel: any image is within budget"
    return text, eps >= 1
