"""The least visible AE per image: bisection on an attack's strength (GitHub issue 17 §2).

For each image, :func:`minimal_strength` finds the smallest strength (ε, overshoot or κ,
whichever the attack sweeps) in ``[lower, upper]`` whose 8-bit AE fools the model: the
per-image form of the AEQA paper's "best setting" (Figure 7), where a grid reports one
strength for every image.

The bisection is in log space (strengths are scales: the step from 1/255 to 2/255 matters
as much as the one from 8/255 to 16/255), so ``upper`` and ``lower`` must be > 0. After
``rounds`` halvings the bracket of every found image is ``(lo, hi]`` with
``hi / lo = (upper / lower) ** (1 / 2 ** rounds)``: the *bisection step*, e.g. about 1.022
for ``upper / lower = 256`` and 8 rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from advqa.data import quantize
from advqa.study.grid import AttackSpec

#: The lower end a build uses: ``upper / LOWER_RATIO`` (8 halvings of log(256) → step ≈ 2.2 %).
LOWER_RATIO = 256.0


@dataclass
class MinimalResult:
    """Per image: the smallest fooling strength found and its AE.

    ``strength`` is NaN where ``found`` is False (even ``upper`` did not fool, or the
    clean image is already misclassified, so nothing can be fooled); ``adversarial`` is
    then the AE at ``upper`` (8-bit), or the clean image when it was not attacked, and
    ``prediction`` its class. ``calls`` counts the
    attack runs each image took part in (0 for a misclassified reference).
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

    @property
    def step(self) -> float:
        """The final bracket ratio ``hi / lo`` of every found image."""
        return (self.upper / self.lower) ** (1 / 2 ** self.rounds)


def with_strength(spec: AttackSpec, value: float) -> AttackSpec:
    """The cell ``spec`` with its strength replaced by ``value``."""
    return AttackSpec(spec.attack, spec.norm, float(value), dict(spec.settings))


def attack_at(model, images, labels, spec: AttackSpec, value: float, seed: int,
              quantise: bool):
    """Run the cell at strength ``value``; return the (quantised) AEs, predictions, steps."""
    result = with_strength(spec, value).build(seed=seed).run(model, images, labels)
    adversarial = quantize(result.images) if quantise else result.images
    with torch.no_grad():
        prediction = model(adversarial).argmax(dim=1)
    return adversarial, prediction, result.steps


def minimal_strength(model, images: torch.Tensor, labels: torch.Tensor, spec: AttackSpec, *,
                     lower: float, upper: float, rounds: int = 8, seed: int = 0,
                     quantise: bool = True) -> MinimalResult:
    """Per image, the smallest strength in ``[lower, upper]`` at which ``spec`` fools ``model``.

    The attack is first run at ``upper`` on every image the model classifies correctly
    (``labels``); an image it does not fool there is ``found = False`` with a NaN
    strength, never a made-up value. Each found image then keeps a bracket ``(lo, hi]``
    and each of ``rounds`` rounds runs the attack at ``mid = sqrt(lo · hi)``: ``hi = mid``
    when the 8-bit AE at ``mid`` fools (it becomes the image's AE), else ``lo = mid``.
    No attack takes a per-image strength, so each round groups the images by their
    ``mid`` and runs the attack once per distinct value (at most ``min(N, 2^round)``
    runs); every image takes part in exactly ``1 + rounds`` runs.

    Invariant: ``hi`` fools (it was attacked and the AE fooled), ``lo`` does not. For
    ``lo`` this is checked at every value but the first: ``lower`` itself is *assumed*
    not to fool and never attacked (so as not to spend a call); if it does fool, the
    result is ``lower · step``, one step above ``lower`` -- a strength at the lower end
    means "at most this", and a smaller ``lower`` tells more.

    Monotonicity assumption: if strength ``s`` fools, every ``s' > s`` does. The search
    then returns ``hi`` with ``hi / s* <= step`` (:attr:`MinimalResult.step`) for the true
    smallest fooling strength ``s*``. Success is not monotone for every attack (random
    starts, a step size that scales with ε, 8-bit rounding, DeepFool's overshoot that
    scales its own path); then the search still returns a strength that *does* fool
    (``hi`` always was seen fooling, and its AE is the one returned), but a smaller
    fooling strength may exist outside the bracket the bisection followed: the result is
    a local minimum, an upper bound on the per-image minimum.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits.
    images : torch.Tensor
        (N, C, H, W) in [0, 1]; a build passes 8-bit references.
    labels : torch.Tensor
        The attacked labels; a reference whose clean prediction differs is not attacked.
    spec : AttackSpec
        The cell; its own strength is ignored (``upper`` and ``lower`` bound the search).
        The search is on the attack's strength (ε, overshoot, κ): a cell with a
        perceptual budget keeps its budget and the search bisects its ε.
    lower, upper : float
        ``0 < lower < upper``.
    rounds : int
        Bisection rounds, >= 0.
    seed : int
        Seed of every attack run (the same for every strength).
    quantise : bool
        Judge and return the 8-bit AE, as a build stores it (default).
    """
    if not (math.isfinite(lower) and math.isfinite(upper) and 0 < lower < upper):
        raise ValueError(f"minimal search needs 0 < lower < upper, got lower={lower!r}, "
                         f"upper={upper!r} (a strength of 0 has no log-space bisection)")
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
    lo = torch.full((count,), float(lower), dtype=torch.float64, device=device)
    hi = torch.full((count,), float(upper), dtype=torch.float64, device=device)

    def attack(index: torch.Tensor, value: float) -> torch.Tensor:
        """Run at ``value`` on ``images[index]``; keep the AEs that fool; return who fooled."""
        result, predicted, used = attack_at(model, images[index], labels[index], spec, value,
                                            seed, quantise)
        calls[index] += 1
        fooled = predicted != labels[index]
        kept = index[fooled]
        adversarial[kept], prediction[kept], steps[kept] = (
            result[fooled], predicted[fooled], used[fooled])
        return fooled

    chosen = correct.nonzero().flatten()
    if len(chosen):
        result, predicted, used = attack_at(model, images[chosen], labels[chosen], spec, upper,
                                            seed, quantise)
        calls[chosen] += 1
        adversarial[chosen], prediction[chosen], steps[chosen] = result, predicted, used
        found[chosen] = predicted != labels[chosen]
    searching = found.nonzero().flatten()
    for _ in range(rounds):
        if not len(searching):
            break
        middle = (lo[searching].log() + hi[searching].log()).div(2).exp()
        for value in middle.unique().tolist():
            group = searching[middle == value]
            fooled = attack(group, value)
            hi[group[fooled]] = value
            lo[group[~fooled]] = value
    strength = torch.where(found, hi, torch.full_like(hi, float("nan")))
    return MinimalResult(strength.cpu(), found.cpu(), adversarial, prediction, steps,
                         calls.cpu(), float(lower), float(upper), rounds)
