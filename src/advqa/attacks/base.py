"""The attack engine: one base class, one iterative loop, one result type.

Every gradient attack is ``x_{t+1} = Π_B(x_t + α · s(∇J(x_t)))`` with an
objective ``J`` (:mod:`advqa.attacks.objectives`), a budget ``B`` and its
projection ``Π_B`` (:mod:`advqa.attacks.budgets`), and a step rule ``s`` that
each attack file states in a few lines. An optional perceptual budget
(``budget="advdss>=0.99"``, :mod:`advqa.attacks.perceptual`) adds a metric bound
inside ``B``: it is enforced after every projection and, with the 8-bit
quantisation checked too, once more on the result.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from advqa.attacks.budgets import Budget, distances, make_budget
from advqa.attacks.objectives import ClassifierObjective, Objective
from advqa.attacks.perceptual import MetricBudget, parse_budget


def check_images(images: torch.Tensor, *, where: str = "images") -> None:
    """Reject anything that is not a finite NCHW float batch in [0, 1]."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{where} must be an NCHW tensor, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"{where} must be float in [0, 1], got dtype {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{where} contain NaN or infinite values")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"{where} must lie in [0, 1], found values in [{low:.4g}, {high:.4g}]")


@contextlib.contextmanager
def frozen(module: nn.Module | None):
    """Switch off parameter gradients for the duration of an attack."""
    if module is None:
        yield
        return
    saved = [(parameter, parameter.requires_grad) for parameter in module.parameters()]
    for parameter, _ in saved:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in saved:
            parameter.requires_grad_(flag)


def module_device(module: nn.Module) -> torch.device:
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


def input_gradient(objective: Objective, images: torch.Tensor):
    """∇ of the summed per-sample loss w.r.t. the images, and the success flags."""
    images = images.detach().requires_grad_(True)
    evaluation = objective.evaluate(images)
    (gradient,) = torch.autograd.grad(evaluation.loss.sum(), images)
    return gradient, evaluation.success


@dataclass
class AttackResult:
    """Per-sample outcome of an attack; distances are measured on ``images``."""

    images: torch.Tensor
    success: torch.Tensor
    steps: torch.Tensor
    clean_prediction: torch.Tensor
    adversarial_prediction: torch.Tensor
    l0: torch.Tensor
    l1: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor

    def records(self) -> list[dict]:
        """One plain dict per sample, without the images."""
        columns = {f.name: getattr(self, f.name).cpu().tolist() for f in fields(self)}
        del columns["images"]
        return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


class Attack:
    """Base class: subclasses implement :meth:`perturb` for any objective.

    Calling the attack as ``attack(model, images, labels)`` returns the
    adversarial images; :meth:`run` returns an :class:`AttackResult`.
    """

    name = ""
    norms: tuple[str, ...] = ("linf", "l2", "l1", "l0")
    strength = "eps"

    def __init__(self, *, seed: int = 0):
        self.seed = int(seed)

    def perturb(self, objective: Objective, images: torch.Tensor):
        """Return ``(adversarial, steps_used)`` for a batch of clean ``images``."""
        raise NotImplementedError

    def generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)

    def parameters(self) -> dict:
        """The settings that define this attack, for manifests and caches."""
        return {"attack": self.name}

    def _attack(self, model, images, labels, targeted):
        check_images(images)
        device = module_device(model)
        labels = torch.as_tensor(labels, device=device, dtype=torch.long)
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        objective = ClassifierObjective(model, labels, targeted=targeted)
        clean = images.to(device)
        with frozen(model):
            adversarial, steps = self.perturb(objective, clean)
        return objective, clean, adversarial.detach(), steps

    def __call__(self, model: nn.Module, images: torch.Tensor, labels, *, targeted=False):
        _, _, adversarial, _ = self._attack(model, images, labels, targeted)
        return adversarial.to(images.device)

    def run(self, model: nn.Module, images: torch.Tensor, labels, *, targeted=False):
        """Attack and measure: success, steps and L0/L1/L2/L∞ per sample."""
        objective, clean, adversarial, steps = self._attack(model, images, labels, targeted)
        with torch.no_grad():
            clean_logits = objective.logits(clean)
            adversarial_logits = objective.logits(adversarial)
        return AttackResult(
            images=adversarial,
            success=objective.success_from_logits(adversarial_logits),
            steps=steps,
            clean_prediction=clean_logits.argmax(dim=1),
            adversarial_prediction=adversarial_logits.argmax(dim=1),
            **distances(clean, adversarial),
        )

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.parameters().items())
        return f"{type(self).__name__}({settings})"


class GradientAttack(Attack):
    """Iterated projected ascent ``x_{t+1} = Π_B(x_t + α · s(g_t))``.

    Parameters
    ----------
    norm : {"linf", "l2", "l1", "l0"}
        The budget's norm; see :mod:`advqa.attacks.budgets` for what ``eps`` means.
    eps : float
        Radius of the budget.
    steps : int
        Number of gradient steps.
    step_size : float, optional
        α. Each attack documents its default.
    random_start : bool
        Start from a uniform draw inside the budget instead of the clean image.
    early_stop : bool
        Freeze a sample as soon as the objective reports success.
    seed : int
        Seeds the random start.
    budget : str or MetricBudget, optional
        A perceptual budget such as ``"advdss>=0.99"`` (:mod:`advqa.attacks.perceptual`),
        kept inside the Lp ball: every iterate, and the result after 8-bit
        quantisation, meets it.
    """

    step_factor = 1.0

    def __init__(
        self,
        *,
        norm: str = "linf",
        eps: float = 8 / 255,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = False,
        early_stop: bool = False,
        seed: int = 0,
        budget: str | MetricBudget | None = None,
    ):
        super().__init__(seed=seed)
        self.budget: Budget = make_budget(norm, eps)
        self.perceptual: MetricBudget | None = parse_budget(budget)
        if self.budget.name not in self.norms:
            raise ValueError(f"{self.name} supports norms {self.norms}, not {norm!r}")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.steps = steps
        self.step_size = self.default_step_size() if step_size is None else float(step_size)
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"step_size must be a finite number > 0, got {step_size!r}")
        self.random_start = bool(random_start)
        self.early_stop = bool(early_stop)

    def default_step_size(self) -> float:
        # An L0 budget bounds how many pixels change, not by how much: its
        # steps are measured against the width of the [0, 1] box instead.
        scale = 1.0 if self.budget.name == "l0" else self.budget.eps
        return self.step_factor * scale / self.steps

    def parameters(self) -> dict:
        # "budget" appears only when set, so unbudgeted cells keep their keys.
        perceptual = {} if self.perceptual is None else {"budget": str(self.perceptual)}
        return {
            "attack": self.name,
            "norm": self.budget.name,
            "eps": self.budget.eps,
            "steps": self.steps,
            "step_size": self.step_size,
            "random_start": self.random_start,
            **perceptual,
        }

    def setup(self, images: torch.Tensor) -> dict:
        """The state of one call, made by the loop before its first step.

        It holds the clean ``images`` and the step size α (``"step_size"``: a float, or
        an (N, 1, 1, 1) tensor for per-image steps); subclasses add what their step
        rule needs from the clean images (Korhonen's activity map, AMI-FGSM's radii).
        :meth:`ascent` and :meth:`project` read it and :meth:`ascent` may update it
        (MIM's velocity). It lives in the loop, never on ``self``, so one attack object
        can serve several calls, interleaved or concurrent.
        """
        return {"images": images, "step_size": self.step_size}

    def ascent(self, gradient: torch.Tensor, state: dict) -> torch.Tensor:
        """The step rule ``s(g)``; the default is the budget's steepest ascent."""
        return self.budget.direction(gradient)

    def project(self, adversarial: torch.Tensor, state: dict) -> torch.Tensor:
        """Π_B: back into the budget around ``state["images"]`` and the [0, 1] box."""
        return self.budget.project(adversarial, state["images"])

    def start(self, images: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return images.clone()
        start = self.budget.random_start(images, self.generator(images.device))
        return start if self.perceptual is None else self.perceptual.project(start, images)

    def perturb(self, objective: Objective, images: torch.Tensor):
        adversarial = self.start(images)
        active = torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
        steps_used = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        state = self.setup(images)
        memory: dict = {}  # the perceptual projection's, for this call only
        for _ in range(self.steps):
            gradient, success = input_gradient(objective, adversarial)
            if self.early_stop and success is not None:
                active &= ~success
                if not active.any():
                    break
            update = adversarial.detach() + state["step_size"] * self.ascent(gradient, state)
            update = self.project(update, state)
            if self.perceptual is not None:
                update = self.perceptual.project(update, images, memory)
            if self.early_stop:
                update = torch.where(active.view(-1, 1, 1, 1), update, adversarial)
            adversarial = update
            steps_used += active
        if self.perceptual is not None:
            adversarial = self.perceptual.finalise(adversarial, images)
        return adversarial.detach(), steps_used
