"""Agreement between quality metrics and mean opinion scores (MOS).

The criteria follow the VQEG FR-TV Phase I/II reports and the LIVE (Sheikh et al., 2006)
and TID2008/2013 studies: rank correlations (SROCC, KROCC) on the raw scores, and
PLCC, RMSE and the outlier ratio after a monotone 5-parameter logistic mapping of the
metric onto the MOS scale, so that a metric is not penalised for being non-linear.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from tqdm.auto import tqdm

CRITERIA = ("srocc", "krocc", "plcc", "rmse")
MIN_ITEMS = 5  # the logistic mapping has five parameters
CONFIDENCE = 0.95
BOOTSTRAP_EVALUATIONS = 1000  # function evaluations per logistic fit of a resample
LM_TOLERANCE = 1.49012e-8  # curve_fit's (MINPACK's) ftol and xtol
ROWS_PER_BLOCK = 1 << 16  # resamples × items at once: bounds the memory (and malloc churn)
KENDALL_MATRIX_ITEMS = 1000  # above: scipy's O(n log n) Kendall per resample is faster


def logistic5(x, b1, b2, b3, b4, b5):
    """VQEG 5-parameter logistic: ``b1·(½ − 1/(1+exp(b2·(x−b3)))) + b4·x + b5``."""
    # Clipping keeps exp() finite for wild trial parameters during the fit. (maximum and
    # minimum clip exactly as np.clip does, without its overhead: the fit calls this
    # function thousands of times on a few hundred items.)
    exponent = np.minimum(np.maximum(b2 * (np.asarray(x, dtype=float) - b3), -500.0), 500.0)
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(exponent))) + b4 * x + b5


def _logistic5_jacobian(x, b1, b2, b3, b4, b5):
    """Analytic Jacobian of :func:`logistic5`: fewer evaluations than finite differences."""
    x = np.asarray(x, dtype=float).ravel()
    offset = x - b3
    exponent = np.minimum(np.maximum(b2 * offset, -500.0), 500.0)
    sigmoid = 1.0 / (1.0 + np.exp(exponent))
    slope = sigmoid * (1.0 - sigmoid)  # d/dz of −1/(1+exp(z))
    jacobian = np.empty((len(x), 5))
    jacobian[:, 0] = 0.5 - sigmoid
    jacobian[:, 1] = b1 * slope * offset
    jacobian[:, 2] = -b1 * slope * b2
    jacobian[:, 3] = x
    jacobian[:, 4] = 1.0
    return jacobian


@dataclass(frozen=True)
class FittedCurve:
    """A fitted mapping from metric scores onto the MOS scale.

    Attributes
    ----------
    kind : str
        ``"logistic"`` (5-parameter logistic) or ``"linear"`` (``p[0]·x + p[1]``).
    params : tuple of float
        The fitted parameters of `kind`.
    """

    kind: str
    params: tuple[float, ...]

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.kind == "logistic":
            return logistic5(x, *self.params)
        return self.params[0] * x + self.params[1]


def _as_arrays(pred, mos, mos_std=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate lengths, drop items without a prediction or MOS, require enough items.

    A missing ``mos_std`` (an item rated once) drops nothing: only the outlier ratio
    needs it, and it skips those items (:func:`_outlier_ratio`).
    """
    pred = np.asarray(pred, dtype=float).ravel()
    mos = np.asarray(mos, dtype=float).ravel()
    arrays = [pred, mos]
    if mos_std is not None:
        arrays.append(np.asarray(mos_std, dtype=float).ravel())
    lengths = {len(array) for array in arrays}
    if len(lengths) != 1:
        raise ValueError(f"predictions, MOS (and mos_std) differ in length: "
                         f"{[len(array) for array in arrays]}")
    keep = np.isfinite(pred) & np.isfinite(mos)
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(f"dropped {dropped} of {len(pred)} items with a missing (NaN) "
                      f"prediction or MOS", stacklevel=3)
    arrays = [array[keep] for array in arrays]
    if len(arrays[0]) < MIN_ITEMS:
        raise ValueError(f"need at least {MIN_ITEMS} items with both a prediction and a MOS "
                         f"to fit the 5-parameter logistic; got {len(arrays[0])}")
    return arrays[0], arrays[1], (arrays[2] if mos_std is not None else None)


def _starting_points(pred: np.ndarray, mos: np.ndarray) -> list[list[float]]:
    """VQEG-style initial parameters, and variants in case the first one stalls."""
    sign = 1.0 if stats.spearmanr(pred, mos)[0] >= 0 else -1.0
    spread = float(np.std(pred)) or 1.0
    mos_range = float(np.ptp(mos)) or 1.0
    centre, level = float(np.mean(pred)), float(np.mean(mos))
    return [
        [float(np.max(mos)), sign / spread, centre, 0.0, level],
        [mos_range, 4.0 * sign / spread, centre, 0.0, level],
        [mos_range, 0.3 * sign / spread, float(np.median(pred)), 0.0, float(np.median(mos))],
    ]


def _fit_logistic(pred, mos, starts, *, evaluations: int = 10000) -> FittedCurve | None:
    """The least-squares logistic over all starting points, or None if every one fails."""
    best, best_error = None, np.inf
    for start in starts:
        try:
            with warnings.catch_warnings():
                # An undetermined covariance is harmless: only the parameters are used.
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                params, _ = optimize.curve_fit(logistic5, pred, mos, p0=start,
                                               jac=_logistic5_jacobian, maxfev=evaluations)
        except (RuntimeError, ValueError, FloatingPointError):
            continue
        fitted = logistic5(pred, *params)
        error = float(np.sum((mos - fitted) ** 2))
        if np.all(np.isfinite(params)) and np.isfinite(error) and error < best_error:
            best, best_error = FittedCurve("logistic", tuple(float(p) for p in params)), error
    return best


def _fit(pred: np.ndarray, mos: np.ndarray, starts=None, *,
         evaluations: int = 10000) -> FittedCurve:
    curve = _fit_logistic(pred, mos, starts or _starting_points(pred, mos),
                          evaluations=evaluations)
    # A resample (tight budget) goes linear rather than retry: the retries cost most there.
    if curve is None and starts is not None and evaluations > BOOTSTRAP_EVALUATIONS:
        curve = _fit_logistic(pred, mos, _starting_points(pred, mos), evaluations=evaluations)
    if curve is not None:
        return curve
    slope, intercept = np.polyfit(pred, mos, 1)
    return FittedCurve("linear", (float(slope), float(intercept)))


def fitted_curve(pred, mos) -> FittedCurve:
    """Fit the 5-parameter logistic mapping of `pred` onto `mos` (linear if it fails).

    Parameters
    ----------
    pred, mos : array_like
        Metric scores and mean opinion scores of the same items; NaN items are dropped.

    Returns
    -------
    FittedCurve
        Callable on metric scores; ``kind`` and ``params`` describe it.
    """
    pred, mos, _ = _as_arrays(pred, mos)
    return _fit(pred, mos)


def _is_constant(values: np.ndarray) -> bool:
    return bool(np.ptp(values) == 0)


def _criteria(pred, mos, mos_std=None, starts=None, *,
              evaluations: int = 10000) -> tuple[dict, FittedCurve]:
    """Every coefficient on one (already clean, non-constant) sample."""
    curve = _fit(pred, mos, starts, evaluations=evaluations)
    fitted = curve(pred)
    values = {
        "srocc": abs(float(stats.spearmanr(pred, mos)[0])),
        "krocc": abs(float(stats.kendalltau(pred, mos)[0])),
        # A fitted curve that comes out constant has no defined Pearson correlation.
        "plcc": (abs(float(stats.pearsonr(fitted, mos)[0]))
                 if not _is_constant(fitted) else float("nan")),
        "rmse": float(np.sqrt(np.mean((mos - fitted) ** 2))),
    }
    if mos_std is not None:
        values["outlier_ratio"] = _outlier_ratio(mos, fitted, mos_std)
    return values, curve


def _outlier_ratio(mos, fitted, mos_std) -> float:
    """Fraction of the items *with* a std whose error exceeds ``2·std``; NaN if none has."""
    known = np.isfinite(mos_std)
    if not known.any():
        return float("nan")
    return float(np.mean(np.abs(mos - fitted)[known] > 2.0 * mos_std[known]))


def _warn_missing_std(mos_std: np.ndarray | None, n: int, *, stacklevel: int) -> None:
    if mos_std is None:
        return
    known = int(np.isfinite(mos_std).sum())
    if known < n:
        warnings.warn(f"outlier_ratio uses the {known} of {n} items that have a mos_std; "
                      f"{n - known} have none (e.g. rated once) and count in the other "
                      f"criteria only", stacklevel=stacklevel)


def _bootstrap(pred, mos, mos_std, *, resamples: int, seed: int, starts) -> dict:
    """95% percentile intervals of every coefficient over `resamples` resamples of items.

    Each resample draws ``len(pred)`` item indices with replacement, one
    ``generator.integers(0, n, n)`` per resample from ``default_rng(seed)`` (drawn here in
    blocks of resamples, which yields the same numbers). Resamples whose predictions or MOS
    are constant are skipped: they carry no information about the coefficients. Every other
    resample gets the coefficients of :func:`correlations`, computed for all resamples of a
    block at once (:func:`_resample_criteria`). Also returns ``bootstrap_linear``: how many
    resamples were mapped by a straight line because their logistic fit failed.
    """
    n = len(pred)
    generator = np.random.default_rng(seed)
    rows = max(1, min(resamples, ROWS_PER_BLOCK // n))
    samples: dict[str, list[np.ndarray]] = {}
    for first in range(0, resamples, rows):
        index = generator.integers(0, n, (min(rows, resamples - first), n))
        for name, values in _resample_criteria(pred, mos, mos_std, index, starts).items():
            samples.setdefault(name, []).append(values)
    linear = int(np.concatenate(samples.pop("linear")).sum())
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    intervals = {}
    for name, blocks in samples.items():
        values = np.concatenate(blocks)
        if len(values):  # as always: no interval when every resample was degenerate
            intervals[f"{name}_ci"] = (float(np.nanpercentile(values, tail)),
                                       float(np.nanpercentile(values, 100.0 - tail)))
    return {**intervals, "bootstrap_linear": linear} if intervals else {}


def _resample_criteria(pred, mos, mos_std, index: np.ndarray, starts) -> dict:
    """The coefficients of each resample (row of item indices), degenerate rows left out.

    The statistics of :func:`_criteria` on ``pred[row], mos[row]``, for all rows at once:

    * SROCC: Pearson correlation of the average ranks (what :func:`scipy.stats.spearmanr`
      computes); KROCC: tau-b, exactly as :func:`scipy.stats.kendalltau`
      (:func:`_kendall_rows`). Both equal scipy's up to float rounding (~1e-16).
    * PLCC, RMSE, outlier ratio: after the least-squares 5-parameter logistic, started from
      `starts` (the full-sample fit; or, when that fit fell back to a line, the resample's
      own three :func:`_starting_points`, the best converged one winning as in
      :func:`_fit_logistic`). A resample whose fit fails — no start converges within
      ``BOOTSTRAP_EVALUATIONS`` evaluations, or the logistic is undefined on it (all its
      items on one side of the step, or only two distinct scores; a line then fits exactly
      as well) — is mapped by its least-squares line, as a failed fit always was, and
      counted in ``linear``.

    Deviation from the per-resample ``curve_fit`` (MINPACK ``lmder`` in the 5 parameters,
    warm-started, ``maxfev=1000``) used until 2026-11-30: the logistic is fitted by variable
    projection on two parameters (:class:`_SeparableLogistic`), by a Levenberg–Marquardt
    iteration on all rows at once (:func:`_levenberg_marquardt_rows`) with MINPACK's
    stopping tests, tolerance and evaluation budget but not its steps. The statistic is the
    same — the least-squares logistic from the same start, a line where the fit fails — but
    the optimiser is not:

    * Where the resample's least-squares logistic is well determined, both stop at it within
      the tolerance: PLCC and RMSE agree to ~1e-10, the intervals to 1e-8
      (``tests/test_correlation.py`` checks every resample and the intervals against a plain
      ``curve_fit`` loop).
    * Where it is not — a weakly related metric, a small group, saturating scores — the
      5-parameter fit runs off towards a step (β2 → ∞) or towards the logistic's cubic limit
      (β2 → 0 with β1, β4 → ±∞) and ``curve_fit`` often used up its 1000 evaluations
      creeping there, so that resample got a line: a quarter of the resamples of a weak
      metric on 40 items in the tests' example, up to 60% in small groups. The reduced
      problem reaches those limits in a few steps (the cubic limit is its ``u = 0``), so
      almost no resample fails, and intervals that mixed logistic and line fits change
      accordingly (the RMSE's upper end 0.99 → 0.95 in that example). On a synthetic study
      sized like the demo (``benchmarks/RESULTS.md``, 2026-11-30) the endpoints moved by a
      median 1e-3 (PLCC) and 4e-3 (RMSE), less than between two seeds (5e-3, 1e-2), but by
      up to 0.3 in cells of weak metrics and small groups. On such rugged sums of squares
      the two optimisers may also stop at different local minima from the same start,
      either one lower.
    """
    with np.errstate(all="ignore"):  # non-finite numbers are handled where they arise
        return _resample_values(pred, mos, mos_std, index, starts)


def _resample_values(pred, mos, mos_std, index: np.ndarray, starts) -> dict:
    x, y = pred[index], mos[index]
    keep = (np.ptp(x, axis=1) > 0) & (np.ptp(y, axis=1) > 0)
    index, x, y = index[keep], x[keep], y[keep]
    signed = _pearson_rows(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))
    values = {"srocc": np.abs(signed), "krocc": np.abs(_kendall_rows(pred, mos, index))}
    row_starts = (np.asarray(starts, dtype=float)[None] if starts is not None
                  else _starting_points_rows(x, y, signed))
    fitted, logistic = _fit_logistic_rows(x, y, row_starts)
    fitted[~logistic] = _line_rows(x[~logistic], y[~logistic])
    # A fitted curve that comes out constant has no defined Pearson correlation.
    values["plcc"] = np.where(np.ptp(fitted, axis=1) > 0,
                              np.abs(_pearson_rows(fitted, y)), np.nan)
    values["rmse"] = np.sqrt(np.mean((y - fitted) ** 2, axis=1))
    if mos_std is not None:
        std = mos_std[index]
        known = np.isfinite(std)
        outside = known & (np.abs(y - fitted) > 2.0 * np.where(known, std, 0.0))
        values["outlier_ratio"] = np.where(known.any(axis=1), outside.sum(axis=1)
                                           / known.sum(axis=1), np.nan)
    values["linear"] = ~logistic
    return values


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of `a` with the same row of `b` (as scipy's)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0)


def _line_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least-squares line of each row (``np.polyfit(x, y, 1)``), evaluated at `x`."""
    dx = x - x.mean(axis=1, keepdims=True)
    slope = (np.einsum("ij,ij->i", dx, y - y.mean(axis=1, keepdims=True))
             / np.einsum("ij,ij->i", dx, dx))
    return y.mean(axis=1, keepdims=True) + slope[:, None] * dx


def _kendall_rows(pred: np.ndarray, mos: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every resample (row of `index`), as :func:`stats.kendalltau`.

    A resample holds item ``i`` ``w[i]`` times, so its concordant minus discordant pairs are
    ``½·Σᵢⱼ w[i]·w[j]·sign(xᵢ−xⱼ)·sign(yᵢ−yⱼ)`` over the original items (copies of one item
    are tied in both and count in neither), and its pairs untied in x number
    ``½·(m² − Σ_g c_g²)``, ``c_g`` the resample's count of items in tie group ``g`` of x.
    This integer arithmetic is exact in float64. Above ``KENDALL_MATRIX_ITEMS`` items the
    n×n sign matrix costs more than scipy's O(n log n) per resample, which is used instead.
    """
    rows, m = index.shape
    if len(pred) > KENDALL_MATRIX_ITEMS:
        return np.array([stats.kendalltau(pred[row], mos[row])[0] for row in index])
    offsets = np.arange(rows)[:, None]
    weights = np.bincount((index + len(pred) * offsets).ravel(),
                          minlength=rows * len(pred)).reshape(rows, len(pred)).astype(float)
    signs = np.sign(pred[:, None] - pred[None, :]) * np.sign(mos[:, None] - mos[None, :])
    concordance = np.einsum("ij,ij->i", weights @ signs, weights)

    def untied(values):
        _, group = np.unique(values, return_inverse=True)
        groups = int(group.max()) + 1
        counts = np.bincount((group[index] + groups * offsets).ravel(),
                             minlength=rows * groups).reshape(rows, groups).astype(float)
        return float(m) ** 2 - np.einsum("ij,ij->i", counts, counts)

    with np.errstate(invalid="ignore", divide="ignore"):
        tau = concordance / np.sqrt(untied(pred) * untied(mos))
    return np.clip(tau, -1.0, 1.0)


def _starting_points_rows(x: np.ndarray, y: np.ndarray, signed_srocc: np.ndarray):
    """:func:`_starting_points` of every row at once: shape (rows, 3, 5)."""
    sign = np.where(signed_srocc >= 0, 1.0, -1.0)
    spread = np.std(x, axis=1)
    spread = np.where(spread > 0, spread, 1.0)
    mos_range = np.ptp(y, axis=1)
    mos_range = np.where(mos_range > 0, mos_range, 1.0)
    centre, level, zero = x.mean(axis=1), y.mean(axis=1), np.zeros(len(x))
    return np.stack([
        np.stack([y.max(axis=1), sign / spread, centre, zero, level], axis=1),
        np.stack([mos_range, 4.0 * sign / spread, centre, zero, level], axis=1),
        np.stack([mos_range, 0.3 * sign / spread, np.median(x, axis=1), zero,
                  np.median(y, axis=1)], axis=1),
    ], axis=1)


def _fit_logistic_rows(x: np.ndarray, y: np.ndarray, starts: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares logistic of each row of `x` onto the same row of `y`, all at once.

    `starts` holds 5-parameter starting points, shape (1 or rows, k, 5). As in
    :func:`_fit_logistic`, each row is fitted from each of its k starts and the converged
    fit with the smallest residual sum of squares wins. Returns the fitted values (rows × n)
    and whether any start converged (where none did, the values are NaN).
    """
    problem = _SeparableLogistic(x, y)
    starts = np.broadcast_to(starts, (len(x), *starts.shape[1:]))
    best = np.full((len(x), 2), np.nan)
    best_error = np.full(len(x), np.inf)
    for k in range(starts.shape[1]):
        shape = np.stack([starts[:, k, 1] ** 2, starts[:, k, 2]], axis=1)
        shape, error, converged = _levenberg_marquardt_rows(problem, shape)
        better = converged & (error < best_error)
        best[better], best_error[better] = shape[better], error[better]
    fitted = np.isfinite(best_error)
    values = np.full(x.shape, np.nan)
    rows = np.flatnonzero(fitted)
    values[rows] = y[rows] - problem.evaluate(rows, best[rows]).residual
    return values, fitted


# Taylor coefficients in w = z² of φ(w) = (½·tanh(z/2) − z/4)/z³, of φ' and of
# ψ(w) = ½·tanh(z/2)/z; used where |z| < _SERIES_BELOW (relative error < 1e-14 there).
_PHI = (-1 / 48, 1 / 480, -17 / 80640, 31 / 1451520)
_PHI_SLOPE = tuple(k * c for k, c in enumerate(_PHI))[1:]
_PSI = (1 / 4, *_PHI)
_SERIES_BELOW = 0.05


def _series(coefficients, w):
    """The power series with these coefficients at `w` (Horner)."""
    total = coefficients[-1] * w
    total += coefficients[-2]
    for coefficient in reversed(coefficients[:-2]):
        total *= w
        total += coefficient
    return total


def _either(small: np.ndarray, series, direct) -> np.ndarray:
    """``series()`` where `small`, ``direct()`` elsewhere, each computed only if needed."""
    if small.all():
        return series()
    values = direct()
    if small.any():
        np.copyto(values, series(), where=small)
    return values


def _flat_column(z, offset, u, half):
    """A flat row's column ``(g − z/4)/β2³ = (x−β3)³·φ(z²)``; `half` is ``g``."""
    return _either(np.abs(z) < _SERIES_BELOW,
                   lambda: offset * offset * offset * _series(_PHI, z * z),
                   lambda: (half - 0.25 * z) / (np.sqrt(u) * u))


def _flat_derivatives(z, offset, u, half):
    """Its derivatives: ``(x−β3)⁵·φ'(z²)`` in u, ``(g/β2)²`` in β3."""
    small = np.abs(z) < _SERIES_BELOW
    square = offset * offset
    by_u = _either(small, lambda: square * square * offset * _series(_PHI_SLOPE, z * z),
                   lambda: ((-0.5 * half * half * z - 1.5 * (half - 0.25 * z))
                            / (u * u * np.sqrt(u))))
    by_b3 = _either(small, lambda: offset * _series(_PSI, z * z), lambda: half / np.sqrt(u))
    return by_u, by_b3 * by_b3


@dataclass
class _Point:
    """The reduced problem at one shape per row (rows ``at`` of a :class:`_SeparableLogistic`)."""

    at: np.ndarray
    u: np.ndarray  # rows × 1, β2²
    offset: np.ndarray  # x − β3
    z: np.ndarray  # β2·(x − β3)
    flat: np.ndarray  # rows whose |z| are all ≤ 1
    special: np.ndarray  # ½·tanh(z/2) on flat rows, e^−|z| − 1 on the others
    curve: np.ndarray  # the column, ⊥
    norm: np.ndarray  # ‖curve‖²
    amplitude: np.ndarray  # β1 (β1·β2³ on flat rows, whose column is divided by β2³)
    residual: np.ndarray
    error: np.ndarray  # ‖residual‖²


class _SeparableLogistic:
    """The logistic least-squares problem of many rows, reduced to its two shape parameters.

    ``logistic5`` is linear in β1, β4, β5: for a given shape the best of them follow from a
    linear least-squares fit of ``mos`` on ``g = ½ − 1/(1+exp(z)) = ½·tanh(z/2)``,
    ``z = β2·(x−β3)``, on ``x`` and on 1. Minimising the residual of that fit over the shape
    — variable projection (Golub & Pereyra 1973) — has the same minima as the 5-parameter
    problem. The fit on ``x`` and 1 is removed once per row (``_remove_line``), so the
    residual is ``r = y⊥ − β1·g⊥`` with ``β1 = g⊥·y⊥ / g⊥·g⊥`` (⊥: minus the least-squares
    line in x).

    The shape is ``(u, β3)`` with ``u = β2² ≥ 0``: the sign of β2 is β1's (``g`` is odd),
    and the residual is smooth in ``u`` down to ``u = 0``. There the logistic flattens into
    its limit, a cubic in ``x − β3`` (β1 and β4 → ±∞ in the 5-parameter form, which is why a
    5-parameter fit creeps there). Where every ``|z|`` of a row is at most 1 the column is
    ``(g − z/4)/β2³ = (x−β3)³·φ(z²)`` instead of ``g`` (the same fit: the line ``z/4`` has no
    ⊥ part), by its Taylor series where ``|z|`` is small, so that neither cancellation nor
    ``u = 0`` hurts.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        centred = x - x.mean(axis=1, keepdims=True)
        self.x, self.y = x, y
        self.basis = centred / np.linalg.norm(centred, axis=1, keepdims=True)
        self.y_perp = _remove_line(y, self.basis)

    def evaluate(self, at: np.ndarray, shape: np.ndarray) -> _Point:
        """The least-squares fit of rows `at` for their `shape` (rows × 2: u, β3)."""
        u, offset = shape[:, :1], self.x[at] - shape[:, 1:]
        z = np.sqrt(u) * offset
        flat = np.abs(z).max(axis=1) <= 1.0
        special, column = np.empty_like(z), np.empty_like(z)
        with np.errstate(divide="ignore", invalid="ignore"):  # u = 0: the series are used
            for rows in _row_groups(flat):
                if flat[rows][0]:
                    special[rows] = 0.5 * np.tanh(0.5 * z[rows])
                    column[rows] = _flat_column(z[rows], offset[rows], u[rows], special[rows])
                else:
                    tail = special[rows] = np.expm1(-np.abs(z[rows]))
                    column[rows] = np.copysign(-0.5 * tail / (2.0 + tail), z[rows])
        curve = _remove_line(column, self.basis[at])
        norm = np.einsum("ij,ij->i", curve, curve)
        with np.errstate(divide="ignore", invalid="ignore"):
            amplitude = np.einsum("ij,ij->i", curve, self.y_perp[at]) / norm
        residual = self.y_perp[at] - amplitude[:, None] * curve
        return _Point(at, u, offset, z, flat, special, curve, norm, amplitude, residual,
                      np.einsum("ij,ij->i", residual, residual))

    def normal_equations(self, point: _Point, rows: np.ndarray):
        """``JᵀJ`` (rows × 2 × 2) and ``Jᵀr`` of the reduced residual at `point`'s `rows`.

        ``J`` is the exact Jacobian of ``r`` (Golub–Pereyra): with ``dₖ`` the derivative of
        the column ``g⊥`` in the k-th shape parameter, ``Jₖ = −β1·eₖ − βₖ·g⊥``, where
        ``eₖ = dₖ − g⊥·(g⊥·dₖ)/‖g⊥‖²`` and ``βₖ = dₖ·r/‖g⊥‖²``. As ``eₖ ⊥ g⊥`` and
        ``r ⊥ g⊥``: ``JₖᵀJₘ = β1²·eₖ·eₘ + βₖ·βₘ·‖g⊥‖²`` and ``Jₖᵀr = −β1·dₖ·r``. The
        derivatives of ``g`` are ``g'·(x−β3)/(2β2)`` in u and ``−g'·β2`` in β3; of the flat
        rows' column ``(x−β3)⁵·φ'(z²)`` in u and ``(g/β2)²`` in β3.
        """
        u, offset, z = point.u[rows], point.offset[rows], point.z[rows]
        special, flat = point.special[rows], point.flat[rows]
        by_u, by_b3 = np.empty_like(z), np.empty_like(z)
        with np.errstate(divide="ignore", invalid="ignore"):
            for group in _row_groups(flat):
                b2, s = np.sqrt(u[group]), special[group]
                if flat[group][0]:
                    by_u[group], by_b3[group] = _flat_derivatives(z[group], offset[group],
                                                                  u[group], s)
                else:
                    slope = (1.0 + s) / (2.0 + s) ** 2  # dg/dz = e^−|z|/(1 + e^−|z|)²
                    by_u[group] = slope * offset[group] / (2.0 * b2)
                    by_b3[group] = slope * -b2
        basis = self.basis[point.at[rows]]
        curve, norm, residual = point.curve[rows], point.norm[rows], point.residual[rows]
        derivatives = [_remove_line(by_u, basis), _remove_line(by_b3, basis)]
        across = [np.einsum("ij,ij->i", d, residual) / norm for d in derivatives]
        apart = [d - (np.einsum("ij,ij->i", curve, d) / norm)[:, None] * curve
                 for d in derivatives]
        amplitude = point.amplitude[rows]
        normal = np.empty((len(z), 2, 2))
        for k, m in ((0, 0), (0, 1), (1, 1)):
            normal[:, k, m] = normal[:, m, k] = (
                amplitude**2 * np.einsum("ij,ij->i", apart[k], apart[m])
                + norm * across[k] * across[m])
        gradient = -(amplitude * norm)[:, None] * np.stack(across, axis=1)
        return normal, gradient


def _row_groups(flat: np.ndarray):
    """Index the flat rows and the other rows (each only if any; a slice when all are)."""
    if not len(flat):
        return []
    if flat.all() or not flat.any():
        return [slice(None)]
    return [np.flatnonzero(flat), np.flatnonzero(~flat)]


def _remove_line(values: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Each row of `values` minus its least-squares line in x (`basis`: unit centred x)."""
    values = values - values.mean(axis=1, keepdims=True)
    return values - basis * np.einsum("ij,ij->i", basis, values)[:, None]


def _levenberg_marquardt_rows(problem: _SeparableLogistic, start: np.ndarray):
    """Levenberg–Marquardt on the shape ``(u, β3)`` of every row at once, with ``u ≥ 0``.

    Each row has its own damping λ. A step solves ``(J̃ᵀJ̃ + λI)·s = −J̃ᵀr`` with the
    Jacobian's columns scaled to unit norm (as MINPACK scales); a step that would take ``u``
    below 0 goes to ``u = 0`` and moves β3 alone. It is accepted when it achieves at least
    1e-4 of the reduction that the linearisation predicts (MINPACK's rule), and λ follows
    Nielsen's update. A row converges by MINPACK's tests with ``curve_fit``'s tolerance
    ``LM_TOLERANCE``: the actual and the predicted relative reduction of the sum of squares
    both at most the tolerance (their ratio at most 2), or the scaled step at most the
    tolerance times the scaled parameters; or an exact fit. A row has failed when it has
    not converged after ``BOOTSTRAP_EVALUATIONS`` trial steps (one evaluation of the model
    each, as MINPACK counts ``maxfev``) or reaches non-finite numbers.

    Returns the shape parameters (rows × 2), the residual sums of squares, and the mask of
    converged rows.
    """
    rows = len(start)
    shape = np.array(start, dtype=float)
    damping, growth = np.full(rows, 1e-3), np.full(rows, 2.0)
    converged = np.zeros(rows, dtype=bool)
    everything = np.arange(rows)
    with np.errstate(all="ignore"):
        point = problem.evaluate(everything, shape)
        error = point.error
        normal, gradient = problem.normal_equations(point, everything)
        active = everything[np.isfinite(error) & np.isfinite(normal).all(axis=(1, 2))
                            & np.isfinite(gradient).all(axis=1)]
        converged[active[error[active] == 0]] = True
        active = active[error[active] > 0]
        for _ in range(BOOTSTRAP_EVALUATIONS):
            if not len(active):
                break
            scale = np.sqrt(np.stack([normal[active, 0, 0], normal[active, 1, 1]], axis=1))
            scale[scale == 0] = 1.0
            # The scaled 2×2 system [[1+λ, ρ], [ρ, 1+λ]] in closed form (λ > 0: invertible).
            pull = gradient[active] / scale
            rho = np.clip(normal[active, 0, 1] / (scale[:, 0] * scale[:, 1]), -1.0, 1.0)
            diagonal = 1.0 + damping[active]
            determinant = diagonal**2 - rho**2
            step = -np.stack([diagonal * pull[:, 0] - rho * pull[:, 1],
                              diagonal * pull[:, 1] - rho * pull[:, 0]],
                             axis=1) / (determinant[:, None] * scale)
            bound = shape[active, 0] + step[:, 0] < 0.0
            step[bound, 0] = -shape[active[bound], 0]
            step[bound, 1] = -pull[bound, 1] / (diagonal[bound] * scale[bound, 1])
            trial = shape[active] + step
            trial[bound, 0] = 0.0
            point = problem.evaluate(active, trial)
            previous = error[active]
            predicted = -(2.0 * np.einsum("ij,ij->i", step, gradient[active])
                          + np.einsum("ij,ijk,ik->i", step, normal[active], step)) / previous
            actual = np.where(np.isfinite(point.error), 1.0 - point.error / previous, -1.0)
            ratio = np.where(predicted > 0, actual / predicted, 0.0)
            small = (np.abs(actual) <= LM_TOLERANCE) & (predicted <= LM_TOLERANCE) & (
                ratio <= 2.0)
            small |= (np.linalg.norm(step * scale, axis=1)
                      <= LM_TOLERANCE * np.linalg.norm(scale * trial, axis=1))
            accept = (ratio >= 1e-4) & np.isfinite(trial).all(axis=1)
            moved, stuck = active[accept], active[~accept]
            shape[moved], error[moved] = trial[accept], point.error[accept]
            # (Floored: a damping that underflowed to 0 could never grow again.)
            damping[moved] = np.maximum(damping[moved] * np.maximum(
                1.0 / 3.0, 1.0 - (2.0 * ratio[accept] - 1.0) ** 3), 1e-15)
            growth[moved] = 2.0
            damping[stuck] *= growth[stuck]
            growth[stuck] *= 2.0
            done = small | (error[active] == 0)
            converged[active[done]] = True
            # Only the rows that go on need the Jacobian at their new shape.
            refresh = accept & ~done
            normal[active[refresh]], gradient[active[refresh]] = problem.normal_equations(
                point, refresh)
            healthy = ~refresh | (np.isfinite(normal[active]).all(axis=(1, 2))
                                  & np.isfinite(gradient[active]).all(axis=1))
            active = active[~done & healthy]
    return shape, error, converged


def correlations(pred, mos, *, mos_std=None, bootstrap: int = 0, seed: int = 0) -> dict:
    """Agreement of metric scores with MOS: SROCC, KROCC, PLCC, RMSE (and outlier ratio).

    SROCC and KROCC are computed on the raw scores. PLCC, RMSE and the outlier ratio are
    computed after fitting the VQEG 5-parameter logistic
    ``β1·(½ − 1/(1+exp(β2·(x−β3)))) + β4·x + β5`` by least squares (several VQEG-style
    starting points; a straight line if every fit fails). Correlations are reported as
    absolute values, so metrics where lower is better compare directly.

    Parameters
    ----------
    pred : array_like
        Metric scores, one per item.
    mos : array_like
        Mean opinion scores of the same items.
    mos_std : array_like, optional
        Standard deviation of each item's ratings. When given, ``outlier_ratio`` is the
        fraction of items whose fitted prediction error exceeds ``2·mos_std`` (VQEG FR-TV
        Phase I). Phase II uses twice the standard *error* instead: pass
        ``std / sqrt(n_ratings)`` for that variant. NaN (an item rated once) is allowed:
        such items count in every other criterion and are left out of the outlier ratio
        only, with a warning (NaN if no item has a std).
    bootstrap : int, default 0
        Number of resamples of items for 95% percentile confidence intervals
        (``srocc_ci`` etc., each ``(low, high)``); 0 skips them. Each resample's logistic
        starts from the full-sample fit; one whose fit fails is mapped by a straight line,
        as the full sample would be, and counted in ``bootstrap_linear``. All resamples are
        computed together (:func:`_resample_criteria` says how, and how that differs from
        fitting them one by one with ``curve_fit``).
    seed : int, default 0
        Seed of the bootstrap resampling, for reproducible intervals.

    Returns
    -------
    dict
        ``srocc``, ``krocc``, ``plcc``, ``rmse``, ``n``, ``fit`` ("logistic", "linear",
        or None when undefined), ``outlier_ratio`` if `mos_std` is given, ``*_ci`` and
        ``bootstrap_linear`` (resamples mapped by a line) if `bootstrap` > 0. Constant
        predictions or MOS give NaN coefficients and a warning.

    Raises
    ------
    ValueError
        If the inputs differ in length or fewer than 5 items remain after dropping NaNs.
    """
    pred, mos, mos_std = _as_arrays(pred, mos, mos_std)
    _warn_missing_std(mos_std, len(pred), stacklevel=2)
    names = (*CRITERIA, "outlier_ratio") if mos_std is not None else CRITERIA
    if _is_constant(pred) or _is_constant(mos):
        which = "predictions" if _is_constant(pred) else "MOS"
        warnings.warn(f"constant {which} over {len(pred)} items: correlations are undefined",
                      stacklevel=2)
        result = dict.fromkeys(names, float("nan"))
        result.update(n=len(pred), fit=None)
        if bootstrap > 0:
            result.update({f"{name}_ci": (float("nan"), float("nan")) for name in names})
        return result
    values, curve = _criteria(pred, mos, mos_std)
    result = {**values, "n": len(pred), "fit": curve.kind}
    if bootstrap > 0:
        # Starting each resample from the full-sample fit makes 1000 resamples affordable.
        starts = [list(curve.params)] if curve.kind == "logistic" else None
        result.update(_bootstrap(pred, mos, mos_std, resamples=bootstrap, seed=seed,
                                 starts=starts))
    return result


def compare_metrics(pred_a, pred_b, mos, *, alpha: float = 0.05) -> dict:
    """F-test of whether two metrics predict the same MOS equally well.

    As in the LIVE (Sheikh et al., 2006) and TID studies: each metric is mapped onto the
    MOS scale with its own 5-parameter logistic, and the residuals ``mos − fitted`` are
    assumed Gaussian. ``F = var_a / var_b`` (sample variances, ``ddof=1``) is compared with
    the F distribution with ``(n − 1, n − 1)`` degrees of freedom, two-sided. Items where
    either metric or the MOS is NaN are dropped, so both metrics use the same items.

    Parameters
    ----------
    pred_a, pred_b : array_like
        Scores of metrics A and B on the same items.
    mos : array_like
        Mean opinion scores of those items.
    alpha : float, default 0.05
        Significance level for ``better``.

    Returns
    -------
    dict
        ``f``, ``p_value``, ``dof`` (tuple), ``n``, ``var_a``, ``var_b``, ``fit_a``,
        ``fit_b`` and ``better``: "a" or "b" (smaller residual variance) if
        ``p_value < alpha``, else None.
    """
    pred_a = np.asarray(pred_a, dtype=float).ravel()
    pred_b = np.asarray(pred_b, dtype=float).ravel()
    if len(pred_a) != len(pred_b):
        raise ValueError(f"metrics A and B differ in length: {len(pred_a)} vs {len(pred_b)}")
    # Items missing under B count as missing for A too, so both fit the same items.
    joint_a = np.where(np.isfinite(pred_b), pred_a, np.nan)
    pred_a, mos_clean, _ = _as_arrays(joint_a, mos)
    keep = np.isfinite(joint_a) & np.isfinite(np.asarray(mos, dtype=float).ravel())
    pred_b = pred_b[keep]
    curve_a, curve_b = _fit(pred_a, mos_clean), _fit(pred_b, mos_clean)
    var_a = float(np.var(mos_clean - curve_a(pred_a), ddof=1))
    var_b = float(np.var(mos_clean - curve_b(pred_b), ddof=1))
    dof = len(mos_clean) - 1
    f_value = var_a / var_b if var_b > 0 else float("inf")
    tail = min(stats.f.sf(f_value, dof, dof), stats.f.cdf(f_value, dof, dof))
    p_value = float(min(1.0, 2.0 * tail))
    better = None
    if p_value < alpha:
        better = "a" if var_a < var_b else "b"
    return {"f": f_value, "p_value": p_value, "dof": (dof, dof), "n": len(mos_clean),
            "var_a": var_a, "var_b": var_b, "fit_a": curve_a.kind, "fit_b": curve_b.kind,
            "better": better}


def _group_rows(values: dict, criteria: Sequence[str], bootstrap: int) -> list[float]:
    rows = []
    for criterion in criteria:
        rows.append(values.get(criterion, float("nan")))
        if bootstrap > 0:
            rows.extend(values.get(f"{criterion}_ci", (float("nan"), float("nan"))))
    return rows


def _row_labels(criteria: Sequence[str], bootstrap: int) -> list[str]:
    labels = []
    for criterion in criteria:
        labels.append(criterion)
        if bootstrap > 0:
            labels.extend([f"{criterion}_low", f"{criterion}_high"])
    return labels


def _group_values(pred, mos, mos_std, *, label, bootstrap, seed) -> dict:
    """Coefficients of one group, NaN (with a warning) when it is too small."""
    usable = int((np.isfinite(pred) & np.isfinite(mos)).sum())
    if usable < MIN_ITEMS:
        warnings.warn(f"{label}: only {usable} items with a score and a MOS "
                      f"(need {MIN_ITEMS}); reported as NaN", stacklevel=3)
        return {}
    return correlations(pred, mos, mos_std=mos_std, bootstrap=bootstrap, seed=seed)


def correlation_table(frame: pd.DataFrame, metrics: Sequence[str], *, mos: str = "mos",
                      group: str | None = "attack", criteria: Sequence[str] = CRITERIA,
                      mos_std: str | None = None, bootstrap: int = 0, seed: int = 0,
                      progress: bool = False) -> pd.DataFrame:
    """Per-group agreement table shaped like Table 3 of the paper.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per item, with the metric columns and the MOS column.
    metrics : sequence of str
        Metric columns, one table column each.
    mos : str, default "mos"
        Column of mean opinion scores.
    group : str or None, default "attack"
        Column to split by; each value gets its own block, then the pooled "all" block.
        None gives only the pooled block.
    criteria : sequence of str, default ("srocc", "krocc", "plcc", "rmse")
        Rows of each block; "outlier_ratio" needs `mos_std`, "n" counts the items.
    mos_std : str, optional
        Column of rating standard deviations, for the outlier ratio only; NaN (items
        rated once) is allowed and leaves those items out of the outlier ratio, with one
        warning.
    bootstrap : int, default 0
        Resamples for 95% intervals, added as ``<criterion>_low``/``_high`` rows.
    seed : int, default 0
        Bootstrap seed (each metric and group resamples from it afresh).
    progress : bool, default False
        Show a tqdm bar over the (metric, group) cells on stderr, once they take longer
        than a second.

    Returns
    -------
    pandas.DataFrame
        Rows: MultiIndex (group value, criterion); columns: metrics. Groups with fewer
        than 5 usable items are NaN, with a warning.
    """
    blocks = [] if group is None else [
        (str(value), part) for value, part in frame.groupby(group, sort=True, dropna=True)]
    blocks.append(("all", frame))
    labels = _row_labels(criteria, bootstrap)
    if mos_std:
        rated = frame[mos].notna().to_numpy()
        _warn_missing_std(frame[mos_std].to_numpy(float)[rated], int(rated.sum()),
                          stacklevel=2)
    columns = {}
    bar = tqdm(total=len(metrics) * len(blocks), desc="correlations", unit="cell",
               delay=1.0, disable=not progress)
    try:
        for metric in metrics:
            cells = []
            for value, part in blocks:
                stds = part[mos_std].to_numpy(float) if mos_std else None
                with warnings.catch_warnings():
                    # Said once for the whole frame above, not once per metric and group.
                    warnings.filterwarnings("ignore", message="outlier_ratio uses the")
                    values = _group_values(part[metric].to_numpy(float),
                                           part[mos].to_numpy(float), stds,
                                           label=f"{metric}, {group or 'all'}={value}",
                                           bootstrap=bootstrap, seed=seed)
                cells.extend(_group_rows(values, criteria, bootstrap))
                bar.update()
            columns[metric] = cells
    finally:
        bar.close()
    index = pd.MultiIndex.from_tuples(
        [(value, label) for value, _ in blocks for label in labels],
        names=[group or "group", "criterion"])
    return pd.DataFrame(columns, index=index, dtype=float)

