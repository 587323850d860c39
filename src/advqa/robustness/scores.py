"""Robustness scores of a quality metric from its values on clean and attacked images.

The five scores and their conventions follow the comparison methodology of the
MSU Metrics Robustness Benchmark (Antsiferova et al., "Comparing the robustness
of modern no-reference image- and video-quality metrics to adversarial
attacks", AAAI 2024). Every value is min–max scaled by the metric's
calibration range first, ``s = (v − low)/(high − low)``, so that scores of
metrics with different scales are comparable:

- absolute gain, ``mean(s′ − s)``;
- relative gain, ``mean((s′ − s)/(s + 1))``;
- robustness score, ``mean(log10(max(β1 − s′, s − β2)/|s′ − s|))`` with
  ``β1 = 1`` and ``β2 = 0`` (the values are scaled), and ``1e-6`` added to the
  denominator so that an unmoved metric gives a large finite score. That is the
  benchmark's text (variant ``"paper"``, the default). The benchmark's code
  (``robustness_benchmark/score_methods.py``) puts the clean value in both terms
  of the numerator, ``max(β1 − s, s − β2)`` (variant ``"msu"``): the room the
  metric had to move, from where it started, in either direction. The two agree
  when ``s′ = s`` and differ most for a large move: the paper's numerator
  shrinks as ``s′`` approaches 1, the code's does not depend on ``s′`` and is
  symmetric under ``s → 1 − s``, so it does not depend on the metric's
  orientation either;
- Wasserstein score, ``W1(s, s′) · sign(mean(s′) − mean(s))``;
- energy score, ``E(s, s′) · sign(mean(s′) − mean(s))``.

For the two distance scores the benchmark's text writes the sign as "before −
after" but states that large positive values mean an upward shift of the
predictions; we follow the stated meaning: an upward shift is positive.

Means come with a t-interval; the distance scores, which are not means of
per-pair terms, with a seeded percentile bootstrap over pairs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

# Added to |s′ − s| in the robustness score: an unmoved metric then scores
# log10(max(1 − s′, s)/1e-6) ≈ 6 instead of +∞, which keeps averages finite.
ROBUSTNESS_EPSILON = 1e-6
# The numerator of the robustness score, per variant (s clean, s′ attacked, both scaled).
ROBUSTNESS_VARIANTS = {"paper": "max(1 − s′, s)", "msu": "max(1 − s, s)"}
# Bootstrap replicates evaluated at once: bounds memory to about
# CHUNK × 2n × 8 bytes per array whatever the number of replicates.
BOOTSTRAP_CHUNK = 100


def robustness_scores(clean, attacked, low: float, high: float, *, confidence: float = 0.95,
                      higher_is_better: bool = True, bootstrap: int = 1000,
                      seed: int = 0, r_score: str = "paper") -> dict[str, float]:
    """The benchmark's robustness scores of a metric, with confidence intervals.

    Parameters
    ----------
    clean, attacked : array_like or torch.Tensor
        1-D values of the metric on the clean images and on their attacked
        versions; element ``i`` of both is one pair.
    low, high : float
        Calibration range of the metric (``high > low``, both finite).
    confidence : float, default 0.95
        Coverage of every interval, in (0, 1).
    higher_is_better : bool, default True
        Direction of the metric. When False (NIQE, BRISQUE, GMSD…) the values
        are flipped while scaling, ``s = (high − v)/(high − low)``, so that in
        every score an increase means "judged better", which is what the
        attacks aim at. Pass True for values the caller has already oriented.
    bootstrap : int, default 1000
        Bootstrap replicates for the Wasserstein and energy intervals; 0 skips
        them (NaN bounds).
    seed : int, default 0
        Seed of the bootstrap's resampling of pairs: the same seed gives the
        same interval.
    r_score : {"paper", "msu"}, default "paper"
        Numerator of the robustness score (:data:`ROBUSTNESS_VARIANTS`): the
        benchmark's text, ``max(1 − s′, s)``, or its code, ``max(1 − s, s)``.

    Returns
    -------
    dict
        ``n`` (pairs used), ``n_dropped`` (pairs with a non-finite value),
        ``abs_gain``, ``rel_gain``, ``robustness_score``, ``wasserstein_score``,
        ``energy_score``, and for each of them ``<name>_low`` and
        ``<name>_high``. The interval of a mean is NaN when ``n < 2``.

    Raises
    ------
    ValueError
        When the bounds are not finite or ``high <= low``, when the arrays are
        not 1-D of equal length, when no pair has two finite values, or for an
        unknown ``r_score``.

    Notes
    -----
    A value outside the calibration range scales outside [0, 1]; when a clean
    value lies below ``low`` and its attacked value above ``high``,
    ``max(1 − s′, s)`` is negative and that pair's robustness term is NaN,
    exactly as the formula gives it (the ``"msu"`` numerator is at least 0.5
    for any ``s``).
    """
    check_confidence(confidence)
    check_r_score(r_score)
    clean, attacked, dropped = finite_pairs(clean, attacked)
    before = scale(clean, low, high, higher_is_better=higher_is_better)
    after = scale(attacked, low, high, higher_is_better=higher_is_better)
    scores: dict[str, float] = {"n": len(before), "n_dropped": dropped}
    for name, terms in per_pair_terms(before, after, r_score=r_score).items():
        scores[name], scores[f"{name}_low"], scores[f"{name}_high"] = mean_interval(
            terms, confidence)
    intervals = bootstrap_intervals(before, after, confidence=confidence, replicates=bootstrap,
                                    seed=seed)
    for name, value in signed_distances(before, after).items():
        scores[name] = value
        scores[f"{name}_low"], scores[f"{name}_high"] = intervals[name]
    return scores


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its two-sided t-interval.

    Parameters
    ----------
    values : array_like
        1-D sample.
    confidence : float, default 0.95
        Coverage, in (0, 1).

    Returns
    -------
    tuple of float
        ``(mean, low, high)``; the bounds are NaN for fewer than two values,
        and all three for none. Equal to ``scipy.stats.t.interval(confidence,
        n − 1, loc=mean, scale=sem)``, except that a sample without spread
        gives the point ``(mean, mean)`` instead of NaN.
    """
    check_confidence(confidence)
    values = np.asarray(values, dtype=float).ravel()
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    error = values.std(ddof=1) / math.sqrt(len(values))
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * error)
    return mean, mean - half, mean + half


def scale(values: np.ndarray, low: float, high: float, *,
          higher_is_better: bool = True) -> np.ndarray:
    """Min–max scale ``values`` by the calibration range, oriented so that higher is better."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(f"calibration range must be finite with high > low, "
                         f"got low={low!r}, high={high!r}")
    if higher_is_better:
        return (values - low) / (high - low)
    return (high - values) / (high - low)


def finite_pairs(clean, attacked) -> tuple[np.ndarray, np.ndarray, int]:
    """The pairs whose two values are finite, and how many pairs were dropped."""
    clean, attacked = as_array(clean), as_array(attacked)
    if clean.ndim != 1 or clean.shape != attacked.shape:
        raise ValueError(f"clean and attacked must be 1-D of equal length, "
                         f"got shapes {clean.shape} and {attacked.shape}")
    keep = np.isfinite(clean) & np.isfinite(attacked)
    if not keep.any():
        raise ValueError(f"no pair with finite clean and attacked values "
                         f"(all {len(clean)} pairs dropped)")
    return clean[keep], attacked[keep], int((~keep).sum())


def as_array(values) -> np.ndarray:
    # torch tensors may carry gradients or live on a GPU; numpy cannot read those directly.
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=float)


def per_pair_terms(before: np.ndarray, after: np.ndarray, *,
                   r_score: str = "paper") -> dict[str, np.ndarray]:
    """The per-pair terms whose means are the gain and robustness scores."""
    check_r_score(r_score)
    change = after - before
    # paper: max(β1 − s′, s − β2); msu (the benchmark's code): max(β1 − s, s − β2).
    room = np.maximum(1 - (after if r_score == "paper" else before), before)
    with np.errstate(divide="ignore", invalid="ignore"):
        robustness = np.log10(room / (np.abs(change) + ROBUSTNESS_EPSILON))
        relative = change / (before + 1)
    return {"abs_gain": change, "rel_gain": relative, "robustness_score": robustness}


def signed_distances(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """Wasserstein and energy distances of the two samples, positive for an upward shift."""
    sign = float(np.sign(after.mean() - before.mean()))
    return {"wasserstein_score": sign * float(stats.wasserstein_distance(before, after)),
            "energy_score": sign * float(stats.energy_distance(before, after))}


def bootstrap_intervals(before: np.ndarray, after: np.ndarray, *, confidence: float,
                        replicates: int, seed: int) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the signed distances, resampling pairs."""
    if replicates < 1:
        return {"wasserstein_score": (math.nan, math.nan),
                "energy_score": (math.nan, math.nan)}
    generator = np.random.default_rng(seed)
    indices = generator.integers(0, len(before), size=(replicates, len(before)))
    wasserstein, energy = [], []
    for start in range(0, replicates, BOOTSTRAP_CHUNK):
        rows = indices[start:start + BOOTSTRAP_CHUNK]
        chunk_wasserstein, chunk_energy = batched_signed_distances(before[rows], after[rows])
        wasserstein.append(chunk_wasserstein)
        energy.append(chunk_energy)
    tails = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]
    return {name: tuple(float(bound) for bound in np.percentile(np.concatenate(values), tails))
            for name, values in (("wasserstein_score", wasserstein), ("energy_score", energy))}


def batched_signed_distances(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Signed Wasserstein and energy distances of each row pair of two ``(rows, n)`` arrays.

    Same values as :func:`signed_distances` row by row (both samples have n
    values of weight 1/n), vectorised because a thousand scipy calls per
    score-table row are the slow part of the bootstrap. Both distances
    integrate a function of the CDF difference over the pooled sorted values;
    at tied values the interval length is zero, so the order of ties does not
    matter.
    """
    count = before.shape[1]
    pooled = np.concatenate([before, after], axis=1)
    order = np.argsort(pooled, axis=1, kind="stable")
    values = np.take_along_axis(pooled, order, axis=1)
    from_before = (order < count).astype(float)
    difference = (np.cumsum(from_before, axis=1) - np.cumsum(1 - from_before, axis=1)) / count
    widths = np.diff(values, axis=1)
    difference = difference[:, :-1]
    sign = np.sign(after.mean(axis=1) - before.mean(axis=1))
    wasserstein = (np.abs(difference) * widths).sum(axis=1)
    energy = np.sqrt(2 * (difference**2 * widths).sum(axis=1))
    return sign * wasserstein, sign * energy


def check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")


def check_r_score(r_score: str) -> None:
    if r_score not in ROBUSTNESS_VARIANTS:
        raise ValueError(f"unknown robustness-score variant {r_score!r}; valid: "
                         f"{', '.join(ROBUSTNESS_VARIANTS)}")
