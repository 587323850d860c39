"""The least visible AE per image: bisection on an attack's strength (GitHub issue 17 §2).

For each image, :func:`minimal_strength` finds the smallest strength in ``[lower, upper]``
whose 8-bit AE fools the model: the per-image form of the AEQA paper's "best setting"
(Figure 7), where a grid reports one strength for every image.

What is bisected depends on the cell (:func:`search_axis`):

- ``eps`` (FGSM, BIM, PGD, MIM, Korhonen) and ``overshoot`` (DeepFool) in **log space**
  between ``strength / 256`` and the cell's strength: strengths are scales (the step from
  1/255 to 2/255 matters as much as the one from 8/255 to 16/255), so both ends are > 0.
  After ``rounds`` halvings the bracket of every found image is ``(lo, hi]`` with
  ``hi / lo = (upper / lower) ** (1 / 2 ** rounds)``: the *bisection step*, about 1.022
  for ``upper / lower = 256`` and 8 rounds.
- ``kappa`` (C&W's confidence margin) **linearly** in ``[0, κ]``: κ = 0 is C&W's own
  minimal setting, so the lower end is tried rather than assumed not to fool, and a
  κ = 0 cell is searched by its one run (its 8-bit AE fools at κ = 0 or not at all).
  The bracket is then ``hi - lo = κ / 2 ** rounds``.
- a **perceptual budget** (a cell with ``budget="advdss>=0.99"``): the threshold is
  searched, not ε (the Lp ball stays the outer bound). The searched quantity is the
  budget's *slack*, its distance from the metric's perfect score (``1 - 0.99`` for
  AdvDSS, the threshold itself for LPIPS), bisected in log space between ``slack / 256``
  and the cell's slack: the result is the tightest budget whose AE still fools, i.e.
  the least visible AE the attack finds as that metric sees it.

L-BFGS sweeps its step count, which has no useful bisection; its cells are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from advqa.attacks.perceptual import parse_budget
from advqa.data import quantize
from advqa.study.grid import AttackSpec

#: The lower end of a log-space search: ``upper / LOWER_RATIO`` (8 halvings of log(256)
#: → step ≈ 2.2 %).
LOWER_RATIO = 256.0
#: The quantities a minimal search bisects (:attr:`SearchAxis.name`).
AXES = ("eps", "overshoot", "kappa", "budget")


@dataclass(frozen=True)
class SearchAxis:
    """What a minimal search bisects for one cell, between which ends, on which scale.

    ``value`` below is the bisected quantity: the strength itself for ``eps``,
    ``overshoot`` and ``kappa``; for ``budget`` the slack ``|best - threshold|``.
    """

    spec: AttackSpec
    name: str  # one of AXES
    lower: float
    upper: float
    scale: str  # "log" or "linear"

    def __post_init__(self):
        if self.scale == "log" and not (math.isfinite(self.lower) and math.isfinite(self.upper)
                                        and 0 < self.lower < self.upper):
            raise ValueError(f"a log-space minimal search needs 0 < lower < upper, got "
                             f"lower={self.lower!r}, upper={self.upper!r} (a strength of 0 "
                             "has no log-space bisection)")
        if self.scale == "linear" and not (math.isfinite(self.lower) and math.isfinite(
                self.upper) and 0 <= self.lower <= self.upper):
            raise ValueError(f"a linear minimal search needs 0 <= lower <= upper, got "
                             f"lower={self.lower!r}, upper={self.upper!r}")
        if self.scale not in ("log", "linear"):
            raise ValueError(f"scale is 'log' or 'linear', not {self.scale!r}")

    def cell(self, value: float) -> AttackSpec:
        """The cell run at ``value``: its strength, or its budget's threshold, replaced."""
        if self.name != "budget":
            return with_strength(self.spec, value)
        budget = parse_budget(self.spec.settings["budget"])
        threshold = self.recorded(value)
        return AttackSpec(self.spec.attack, self.spec.norm, self.spec.strength,
                          {**self.spec.settings,
                           "budget": f"{budget.info.name}{budget.operator}{threshold!r}"})

    def recorded(self, value: float) -> float:
        """What a row records for ``value``: the strength, or the budget's threshold."""
        if self.name != "budget":
            return float(value)
        budget = parse_budget(self.spec.settings["budget"])
        sign = -1.0 if budget.info.higher_is_better else 1.0
        return float(budget.best + sign * value)

    def middle(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        if self.scale == "log":
            return (lo.log() + hi.log()).div(2).exp()
        return (lo + hi) / 2

    def step(self, rounds: int) -> float:
        """The final bracket of every found image: ``hi / lo`` (log) or ``hi - lo``."""
        if self.scale == "log":
            return (self.upper / self.lower) ** (1 / 2 ** rounds)
        return (self.upper - self.lower) / 2 ** rounds

    def describe(self) -> dict:
        """The search's parameters for a row: what was bisected, where, and the cell."""
        described = {"searched": self.name, "scale": self.scale, "upper": self.upper,
                     "lower": self.lower, "cell_strength": self.spec.strength}
        if "budget" in self.spec.settings:
            described["cell_budget"] = str(parse_budget(self.spec.settings["budget"]))
        return described


def search_axis(spec: AttackSpec, *, lower_ratio: float = LOWER_RATIO) -> SearchAxis:
    """The axis a build's minimal search bisects for ``spec`` (see the module docstring).

    Raises
    ------
    ValueError
        For an L-BFGS cell (its strength is a step count), an ε or overshoot cell at
        strength 0, a negative κ, or a budget that has no finite perfect score (PSNR) or
        no slack (a threshold at the perfect score admits only the clean image).
    """
    where = f"cell {spec.label()}"
    if spec.settings.get("budget") is not None:
        budget = parse_budget(spec.settings["budget"])
        if not math.isfinite(budget.best):
            raise ValueError(f"{where}: {budget.info.name}'s perfect score is infinite, so a "
                             "minimal search has no end to bisect its budget towards; use a "
                             "metric with a finite best value (advdss, ssim, lpips, ...)")
        slack = abs(budget.best - budget.threshold)
        if slack == 0:
            raise ValueError(f"{where}: budget {budget} admits only the clean image; nothing "
                             "to search")
        return SearchAxis(spec, "budget", slack / lower_ratio, slack, "log")
    name = spec.strength_name
    if name == "kappa":
        if spec.strength < 0:
            raise ValueError(f"{where}: κ must be >= 0 for a minimal search")
        return SearchAxis(spec, "kappa", 0.0, float(spec.strength), "linear")
    if name in ("eps", "overshoot"):
        if spec.strength <= 0:
            raise ValueError(f"{where}: a minimal search bisects {name} in log space, so the "
                             "cell's strength (its upper end) must be > 0")
        return SearchAxis(spec, name, spec.strength / lower_ratio, spec.strength, "log")
    raise ValueError(f"{where}: a minimal search bisects ε, overshoot, κ or a perceptual "
                     f"budget; {spec.attack}'s strength is its {name}, which has no useful "
                     "bisection. Leave its cells out of the searched grid")


@dataclass
class MinimalResult:
    """Per image: the smallest fooling value found and its AE.

    ``strength`` is the value found on the axis (the strength, or the budget's slack for
    a budget axis; :meth:`SearchAxis.recorded` turns a slack into a threshold). It is NaN
    where ``found`` is False (even ``upper`` did not fool, or the clean image is already
    misclassified, so nothing can be fooled); ``adversarial`` is then the AE at ``upper``
    (8-bit), or the clean image when it was not attacked, and ``prediction`` its class.
    ``calls`` counts the attack runs each image took part in (0 for a misclassified
    reference).
    """

    strength: torch.Tensor  # float64 (N,)
    found: torch.Tensor  # bool (N,)
    adversarial: torch.Tensor  # (N, C, H, W), 8-bit levels / 255
    prediction: torch.Tensor  # long (N,)
    steps: torch.Tensor  # long (N,): the attack's steps for the returned AE
    calls: torch.Tensor  # long (N,)
    lower: float
    upper: float
    rounds: int
    scale: str = "log"

    @property
    def step(self) -> float:
        """The final bracket of every found image: ``hi / lo`` (log) or ``hi - lo``."""
        if self.scale == "log":
            return (self.upper / self.lower) ** (1 / 2 ** self.rounds)
        return (self.upper - self.lower) / 2 ** self.rounds


def with_strength(spec: AttackSpec, value: float) -> AttackSpec:
    """The cell ``spec`` with its strength replaced by ``value``."""
    return AttackSpec(spec.attack, spec.norm, float(value), dict(spec.settings))


def attack_at(model, images, labels, spec: AttackSpec, seed: int, quantise: bool):
    """Run the cell ``spec``; return the (quantised) AEs, predictions, steps."""
    result = spec.build(seed=seed).run(model, images, labels)
    adversarial = quantize(result.images) if quantise else result.images
    with torch.no_grad():
        prediction = model(adversarial).argmax(dim=1)
    return adversarial, prediction, result.steps


def minimal_strength(model, images: torch.Tensor, labels: torch.Tensor,
                     cell: AttackSpec | SearchAxis, *, lower: float | None = None,
                     upper: float | None = None, rounds: int = 8, seed: int = 0,
                     quantise: bool = True) -> MinimalResult:
    """Per image, the smallest value in ``[lower, upper]`` at which ``cell`` fools ``model``.

    The attack is first run at ``upper`` on every image the model classifies correctly
    (``labels``); an image it does not fool there is ``found = False`` with a NaN
    strength, never a made-up value. Each found image then keeps a bracket ``(lo, hi]``
    and each of ``rounds`` rounds runs the attack at the bracket's middle (geometric on a
    log axis, arithmetic on a linear one): ``hi = mid`` when the 8-bit AE at ``mid``
    fools (it becomes the image's AE), else ``lo = mid``. No attack takes a per-image
    strength, so each round groups the images by their ``mid`` and runs the attack once
    per distinct value (at most ``min(N, 2^round)`` runs).

    The lower end: on a log axis it is *assumed* not to fool and never attacked (so as
    not to spend a call); if it does fool, the result is one step above it -- a value at
    the lower end means "at most this", and a smaller ``lower`` tells more. On a linear
    axis (κ, whose lower end 0 is C&W's own setting) it is attacked once after the upper
    end, and an image it fools is found there. Each image takes part in ``1 + rounds``
    runs (log) or at most ``2 + rounds`` (linear).

    Monotonicity assumption: if value ``s`` fools, every ``s' > s`` does. The search
    then returns ``hi`` within one bisection step (:attr:`MinimalResult.step`) of the
    true smallest fooling value ``s*``. Success is not monotone for every attack (random
    starts, a step size that scales with ε, 8-bit rounding, DeepFool's overshoot that
    scales its own path); then the search still returns a value that *does* fool (``hi``
    always was seen fooling, and its AE is the one returned), but a smaller fooling value
    may exist outside the bracket the bisection followed: the result is a local minimum,
    an upper bound on the per-image minimum.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits.
    images : torch.Tensor
        (N, C, H, W) in [0, 1]; a build passes 8-bit references.
    labels : torch.Tensor
        The attacked labels; a reference whose clean prediction differs is not attacked.
    cell : AttackSpec or SearchAxis
        A :class:`SearchAxis` (:func:`search_axis` makes a build's), or a cell whose
        strength is bisected in log space between ``lower`` and ``upper`` (the cell's
        own strength is then ignored).
    lower, upper : float
        With an ``AttackSpec``: ``0 < lower < upper``. Not given with a ``SearchAxis``.
    rounds : int
        Bisection rounds, >= 0.
    seed : int
        Seed of every attack run (the same for every value).
    quantise : bool
        Judge and return the 8-bit AE, as a build stores it (default).
    """
    if isinstance(cell, SearchAxis):
        if lower is not None or upper is not None:
            raise ValueError("a SearchAxis carries its own lower and upper ends")
        axis = cell
    else:
        if lower is None or upper is None:
            raise ValueError("minimal search of a cell needs lower and upper")
        axis = SearchAxis(cell, cell.strength_name, float(lower), float(upper), "log")
    if not (isinstance(rounds, int) and rounds >= 0):
        raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
    device = images.device
    labels = torch.as_tensor(labels, device=device, dtype=torch.long)
    count = images.shape[0]
    with torch.no_grad():
        clean = model(images).argmax(dim=1)
    correct = clean == labels
    calls = torch.zeros(count, dtype=torch.long, device=device)
    adversarial = images.clone()
    prediction = clean.clone()
    steps = torch.zeros(count, dtype=torch.long, device=device)
    found = torch.zeros(count, dtype=torch.bool, device=device)
    lo = torch.full((count,), axis.lower, dtype=torch.float64, device=device)
    hi = torch.full((count,), axis.upper, dtype=torch.float64, device=device)

    def attack(index: torch.Tensor, value: float, *, keep_all: bool = False) -> torch.Tensor:
        """Run at ``value`` on ``images[index]``; keep the AEs that fool (every AE with
        ``keep_all``); return who fooled."""
        result, predicted, used = attack_at(model, images[index], labels[index],
                                            axis.cell(value), seed, quantise)
        calls[index] += 1
        fooled = predicted != labels[index]
        kept = slice(None) if keep_all else fooled
        adversarial[index[kept]], prediction[index[kept]], steps[index[kept]] = (
            result[kept], predicted[kept], used[kept])
        return fooled

    chosen = correct.nonzero().flatten()
    if len(chosen):
        found[chosen] = attack(chosen, axis.upper, keep_all=True)
    searching = found.nonzero().flatten()
    if axis.scale == "linear" and len(searching) and axis.lower < axis.upper:
        fooled = attack(searching, axis.lower)
        hi[searching[fooled]] = axis.lower
        searching = searching[~fooled]
    if axis.lower == axis.upper:
        searching = searching[:0]  # a one-point axis (a κ = 0 cell): nothing to bisect
    for _ in range(rounds):
        if not len(searching):
            break
        middle = axis.middle(lo[searching], hi[searching])
        for value in middle.unique().tolist():
            group = searching[middle == value]
            fooled = attack(group, value)
            hi[group[fooled]] = value
            lo[group[~fooled]] = value
    strength = torch.where(found, hi, torch.full_like(hi, float("nan")))
    return MinimalResult(strength.cpu(), found.cpu(), adversarial, prediction, steps,
                         calls.cpu(), axis.lower, axis.upper, rounds, axis.scale)
