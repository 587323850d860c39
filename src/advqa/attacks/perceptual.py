"""Perceptual budgets: bound an attack by any full-reference quality metric, ``"advdss>=0.99"``.

A budget is a string ``METRIC OP THRESHOLD``: a registered, full-reference,
differentiable metric that runs here (``lpips`` only with its weights on disk), ``>=``
for a higher-is-better metric or ``<=`` for a lower-is-better one, and a threshold
inside the metric's range. Every projected-gradient attack takes one
(``get_attack("pgd", eps=16/255, budget="advdss>=0.99")``): the Lp ball stays the
outer bound and :meth:`MetricBudget.project` enforces the metric after each Lp
projection.

The projection: a retraction along the perturbation
----------------------------------------------------
For a candidate ``x'`` (already in the Lp ball and [0, 1]) around the clean ``x``,
the projection returns ``x + t·(x' − x)`` with ``t ∈ [0, 1]`` the largest step found
whose image meets the budget. ``t`` is searched per image with a bracket ``[lo, hi]``
whose lower end always meets the budget (``t = 0`` is the clean image) and whose
upper end does not. The guesses model the visibility ``v(t) = best − m`` (for a
higher-is-better metric) as ``c·t^p`` through the last point measured, solved for
``v`` a little inside the budget: ``p = 2`` to start (a smooth similarity index loses
``1 − m ∝ ‖δ‖²`` near the clean image), then refitted through the last two points (a
secant in log–log); an attack passes a ``memory`` dict that carries each image's last
``p`` to its next projection, where the first guess then usually lands. Guesses stay
off the bracket's ends; after three of them, or for a metric without a finite best
value (PSNR), it bisects. A search stops when the image spends at least
``1 − TOLERANCE`` of the budget's allowance ``|threshold − best|``, when the bracket
is narrower than ``RESOLUTION``, or after ``MAX_EVALUATIONS`` metric calls; the image
then takes ``lo``. Candidates that already meet the budget cost one call; PGD-10
under ``advdss>=0.99`` scores about 2.5 images per image and step in all.

Why this and not gradient steps on the metric: (1) the result always meets the
budget, by construction (``lo`` is only ever a point that passed), whatever the
metric's shape — a fixed number of gradient steps guarantees nothing and needs a
step size per metric; (2) it needs forward passes of the metric only, no backward
pass; (3) the segment from ``x`` to ``x'`` stays inside the Lp ball, the L0 support
and the [0, 1] box (they are convex or star-shaped around ``x``), so the outer bound
holds without another projection; (4) it works on the quantised image, where the
metric's gradient is zero almost everywhere. The price: it is not the nearest
feasible point (it keeps the direction of the perturbation and shortens it), and a
metric that is not monotone along the segment may leave part of the budget unspent.

Quantisation: checked, not assumed
----------------------------------
:meth:`MetricBudget.finalise` runs the same search once at the end of an attack
with a stricter test — the image *and* its 8-bit quantisation
(:func:`advqa.data.quantize`, what ``save_png`` stores) must both meet the budget —
so ``metric(quantize(ae), x)`` and ``metric(ae, x)`` both satisfy it. Every test
keeps a margin ``SLACK`` (relative 1e-6) against float noise between batches.
A reference off the 8-bit grid whose own quantisation breaks the budget cannot be
helped: it is returned unchanged, with a warning. Near the quantisation floor (on the
224×224 photos, AdvDSS ≥ 0.9999) the final check keeps the budget, not the success:
float iterates that fool shrink until their rounding meets the budget, and most
rounded perturbations then change too few pixels to fool; an attack that searches on
the 8-bit grid itself (``alma``, ``quantise=True``) does better there.

References
----------
.. [1] Rony et al., "Augmented Lagrangian Adversarial Attacks", ICCV 2021 (metric
   distances for attacks; the Lagrangian attack is :mod:`advqa.attacks.lagrangian`).
.. [2] Laidlaw, Singla & Feizi, "Perceptual Adversarial Robustness: Defense Against
   Unseen Threat Models", ICLR 2021 (attacks bounded by LPIPS).
"""

from __future__ import annotations

import math
import re
import threading
import warnings

import torch

from advqa.data.io import quantize
from advqa.norms import per_sample
from advqa.quality.registry import get_metric, is_available, list_metrics

#: Share of the allowance |threshold − best| a projected image may leave unspent.
TOLERANCE = 0.05
#: The same for the final check with quantisation, whose metric is a staircase in t.
QUANTISED_TOLERANCE = 0.1
#: Bracket width in t at which a search stops.
RESOLUTION = 1 / 256
#: Metric calls per projection, the check of the candidate itself included.
MAX_EVALUATIONS = 8
#: Interpolation steps before the search falls back to bisection.
INTERPOLATIONS = 3
#: Relative margin every test keeps from the threshold, against float noise.
SLACK = 1e-6

_PATTERN = re.compile(r"^\s*(?P<metric>[A-Za-z_][\w\-]*)\s*(?P<op>>=|<=)\s*(?P<threshold>\S+)\s*$")


class BudgetError(ValueError):
    """A perceptual budget that cannot be enforced as written; the message says why."""


def budget_metrics() -> list[str]:
    """The registered metrics a budget can use: full-reference, differentiable, no classifier."""
    return [name for name, info in list_metrics().items()
            if info.full_reference and info.differentiable and not info.needs_model]


class MetricBudget:
    """``metric(ae, clean) >= threshold`` (or ``<=`` for a lower-is-better metric).

    Parameters
    ----------
    metric : str
        A registered full-reference, differentiable metric (:func:`budget_metrics`).
    operator : {">=", "<="}
        ``>=`` for a higher-is-better metric, ``<=`` for a lower-is-better one.
    threshold : float
        Inside the metric's range (``MetricInfo.range``).

    Raises
    ------
    BudgetError
        For an unknown, no-reference, classifier-based, non-differentiable or
        unavailable metric, a comparison against the metric's direction, or a
        threshold outside its range. A threshold at either end of the range, or in
        the worse half of a finite range, only warns.
    """

    def __init__(self, metric: str, operator: str, threshold: float):
        self.info = check_metric(metric)
        self.operator = operator
        self.threshold = check_threshold(self.info, operator, threshold)
        low, high = self.info.range
        self.best = high if self.info.higher_is_better else low
        self.slack = SLACK * max(1.0, abs(self.threshold))
        self._metrics: dict[torch.device, torch.nn.Module] = {}
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str) -> MetricBudget:
        """``"advdss>=0.99"`` → a budget; spaces around the operator are allowed."""
        if not isinstance(text, str):
            raise BudgetError(f"a budget is a string such as 'advdss>=0.99', got {text!r}")
        match = _PATTERN.match(text)
        if match is None:
            raise BudgetError(f"cannot read budget {text!r}: write METRIC>=THRESHOLD for a "
                              "higher-is-better metric or METRIC<=THRESHOLD for a lower-is-"
                              "better one, e.g. 'advdss>=0.99' or 'lpips<=0.05'")
        try:
            threshold = float(match["threshold"])
        except ValueError:
            raise BudgetError(f"budget {text!r}: the threshold {match['threshold']!r} is not "
                              "a number") from None
        return cls(match["metric"], match["op"], threshold)

    def __str__(self) -> str:
        return f"{self.info.name}{self.operator}{self.threshold!r}"

    def __repr__(self) -> str:
        return f"MetricBudget({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, MetricBudget) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __reduce__(self):
        # Pickled as its string: the metric modules and the lock are rebuilt on arrival.
        return (MetricBudget.parse, (str(self),))

    def metric(self, device: torch.device) -> torch.nn.Module:
        """The metric module on ``device``, built once (weights load here, not at parse)."""
        with self._lock:
            if device not in self._metrics:
                module = get_metric(self.info.name).to(device)
                for parameter in module.parameters():
                    parameter.requires_grad_(False)
                self._metrics[device] = module.eval()
            return self._metrics[device]

    def score(self, images: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """The metric of each image against its clean image, (N,); differentiable."""
        return self.metric(images.device)(images, clean)

    def excess(self, images: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """How far each image is past the threshold (≤ 0: within budget), (N,)."""
        with torch.no_grad():
            values = self.score(images, clean).to(torch.float64)
        return (self.threshold - values) if self.info.higher_is_better else \
            (values - self.threshold)

    def satisfied(self, images: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """Whether each image meets the budget, as it is and after 8-bit quantisation."""
        return self._passes(self._excess_quantised(images, clean))

    def project(self, candidates: torch.Tensor, clean: torch.Tensor,
                memory: dict | None = None) -> torch.Tensor:
        """Shorten each perturbation ``candidates − clean`` until the image meets the budget.

        ``memory``, a dict the caller keeps for one attack call, carries each image's last
        fitted power from one projection to the next, so the first guess of the next one
        starts from it instead of 2.
        """
        return self._retract(candidates, clean, self.excess, TOLERANCE, memory)

    def finalise(self, candidates: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """:meth:`project` with the image and its 8-bit quantisation both checked."""
        result = self._retract(candidates, clean, self._excess_quantised, QUANTISED_TOLERANCE)
        unchanged = (result == clean).flatten(1).all(dim=1)
        if unchanged.any():
            index = unchanged.nonzero().squeeze(1)
            broken = ~self._passes(self.excess(quantize(clean[index]), clean[index]))
            if broken.any():
                warnings.warn(f"{int(broken.sum())} reference(s) are off the 8-bit grid and "
                              f"their own quantisation breaks the budget {self}: returned "
                              "unchanged; quantise references before attacking them",
                              stacklevel=3)
        return result

    def _excess_quantised(self, images, clean):
        both = self.excess(torch.cat([images, quantize(images)]), torch.cat([clean, clean]))
        return torch.maximum(*both.chunk(2))

    def _passes(self, excess: torch.Tensor) -> torch.Tensor:
        return excess <= -self.slack  # NaN fails

    def _retract(self, candidates, clean, excess_of, tolerance, memory=None) -> torch.Tensor:
        candidates = candidates.detach()
        excess = excess_of(candidates, clean)
        todo = (~self._passes(excess)).nonzero().squeeze(1)
        if not len(todo):
            return candidates
        powers = None if memory is None else memory.setdefault(
            "power", torch.full_like(excess, 2.0))
        t, fitted = self._search(candidates[todo] - clean[todo], clean[todo], excess[todo],
                                 excess_of, tolerance,
                                 None if powers is None else powers[todo])
        if powers is not None:
            powers[todo] = torch.where(torch.isfinite(fitted), fitted, powers[todo])
        result = candidates.clone()
        result[todo] = along(clean[todo], candidates[todo] - clean[todo], t)
        return result

    def _search(self, delta, clean, excess_one, excess_of, tolerance, start_power=None):
        """Per image, the largest t found in [0, 1) whose point passes (see the module doc),
        and the power of the last fit (NaN where none was made)."""
        count, device = delta.shape[0], delta.device
        low = torch.zeros(count, dtype=torch.float64, device=device)
        high = torch.ones_like(low)
        # The excess of the clean image, assumed from the metric's best value: it shapes the
        # guesses only; whether a point passes is always measured.
        clean_excess = self.threshold - self.best if self.info.higher_is_better else \
            self.best - self.threshold
        margin = tolerance * abs(clean_excess) if math.isfinite(clean_excess) else 0.0
        wanted = -(self.slack + margin / 2) - clean_excess  # the visibility aimed at
        last_t, last_v = high.clone(), excess_one - clean_excess
        # The power of v(t) = c·t^p: from the caller's memory, else 2; refitted below.
        power = torch.full_like(low, 2.0) if start_power is None else start_power.clone()
        fitted = torch.full_like(low, math.nan)
        active = torch.ones(count, dtype=torch.bool, device=device)
        for evaluation in range(1, MAX_EVALUATIONS):
            index = active.nonzero().squeeze(1)
            if not len(index):
                break
            lo, hi = low[index], high[index]
            # v(t) = c·t^p through the last point, solved for v = wanted.
            guess = last_t[index] * (wanted / last_v[index]) ** (1 / power[index])
            guard = 0.02 * (hi - lo)  # never at the bracket's ends
            guess = torch.minimum(torch.maximum(guess, lo + guard), hi - guard)
            usable = torch.isfinite(guess) & (evaluation <= INTERPOLATIONS)
            t = torch.where(usable, guess, (lo + hi) / 2)
            excess = excess_of(along(clean[index], delta[index], t), clean[index])
            passed = self._passes(excess)
            low[index] = torch.where(passed, t, lo)
            high[index] = torch.where(passed, hi, t)
            previous_t, previous_v = last_t[index], last_v[index]
            last_t[index], last_v[index] = t, excess - clean_excess
            # Refit p through the last two points (a secant in log–log).
            fit = torch.log(last_v[index] / previous_v) / torch.log(t / previous_t)
            fit = torch.where(torch.isfinite(fit), fit.clamp(0.5, 4.0), math.nan)
            fitted[index] = torch.where(torch.isfinite(fit), fit, fitted[index])
            power[index] = torch.where(torch.isfinite(fit), fit, power[index])
            spent = passed & (excess >= -(self.slack + margin)) & (margin > 0)
            active[index] = ~(spent | ((high[index] - low[index]) <= RESOLUTION))
        return low, fitted


def along(clean: torch.Tensor, delta: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``clean + t·delta`` per image, clipped to [0, 1] against rounding at the box's faces."""
    return (clean + per_sample(t.to(delta.dtype), delta) * delta).clamp(0, 1)


def check_metric(name: str):
    """The :class:`MetricInfo` of a metric a budget can use, or a :class:`BudgetError`."""
    metrics = list_metrics()
    usable = ", ".join(budget_metrics())
    if name not in metrics:
        raise BudgetError(f"unknown metric {name!r} in budget; usable metrics: {usable}")
    info = metrics[name]
    if not info.full_reference:
        raise BudgetError(f"{name} is a no-reference metric: a budget compares the AE with "
                          f"its clean image, so it needs a full-reference one ({usable})")
    if info.needs_model:
        raise BudgetError(f"{name} needs a classifier's outputs: a budget bounds the image "
                          f"change alone; use one of {usable}")
    if not info.differentiable:
        raise BudgetError(f"{name} is not differentiable, so no gradient attack can be "
                          f"steered by it; use one of {usable}")
    if not is_available(name):
        raise BudgetError(f"{name} cannot run on this machine (missing weights or package; "
                          "`advqa metrics` lists what is missing)")
    return info


def check_threshold(info, operator: str, threshold) -> float:
    """The threshold as a float, refused against the metric's direction or range."""
    name, (low, high) = info.name, info.range
    wanted = ">=" if info.higher_is_better else "<="
    if operator not in (">=", "<="):
        raise BudgetError(f"a budget's operator is >= or <=, not {operator!r}")
    if operator != wanted:
        direction = "higher" if info.higher_is_better else "lower"
        raise BudgetError(f"{name} is {direction}-is-better, so its budget is {name}{wanted}"
                          f"{threshold}, not {name}{operator}{threshold}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or \
            not math.isfinite(threshold):
        raise BudgetError(f"the threshold of a {name} budget must be a finite number, "
                          f"got {threshold!r}")
    if not low <= threshold <= high:
        raise BudgetError(f"threshold {threshold:g} is outside {name}'s range "
                          f"[{low:g}, {high:g}]")
    best, worst = (high, low) if info.higher_is_better else (low, high)
    if threshold == best:
        warnings.warn(f"{name}{operator}{threshold:g}: only an image identical to the clean one "
                      "meets this budget; the attack can change nothing", stacklevel=4)
    elif threshold == worst:
        warnings.warn(f"{name}{operator}{threshold:g}: every image meets this budget; it "
                      "constrains nothing", stacklevel=4)
    elif math.isfinite(high) and abs(threshold - best) > (high - low) / 2:
        warnings.warn(f"{name}{operator}{threshold:g} lies in the worse half of {name}'s range "
                      f"[{low:g}, {high:g}]: it allows heavily distorted images", stacklevel=4)
    return float(threshold)


def parse_budget(value) -> MetricBudget | None:
    """``None``, a :class:`MetricBudget` or its string form → ``None`` or a budget."""
    if value is None or isinstance(value, MetricBudget):
        return value
    return MetricBudget.parse(value)
