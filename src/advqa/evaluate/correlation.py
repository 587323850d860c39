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

CRITERIA = ("srocc", "krocc", "plcc", "rmse")
MIN_ITEMS = 5  # the logistic mapping has five parameters
CONFIDENCE = 0.95
BOOTSTRAP_EVALUATIONS = 1000  # function evaluations per logistic fit of a resample


def logistic5(x, b1, b2, b3, b4, b5):
    """VQEG 5-parameter logistic: ``b1·(½ − 1/(1+exp(b2·(x−b3)))) + b4·x + b5``."""
    # Clipping keeps exp() finite for wild trial parameters during the fit.
    exponent = np.clip(b2 * (np.asarray(x, dtype=float) - b3), -500.0, 500.0)
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(exponent))) + b4 * x + b5


def _logistic5_jacobian(x, b1, b2, b3, b4, b5):
    """Analytic Jacobian of :func:`logistic5`: fewer evaluations than finite differences."""
    x = np.asarray(x, dtype=float)
    exponent = np.clip(b2 * (x - b3), -500.0, 500.0)
    sigmoid = 1.0 / (1.0 + np.exp(exponent))
    slope = sigmoid * (1.0 - sigmoid)  # d/dz of −1/(1+exp(z))
    return np.column_stack([0.5 - sigmoid, b1 * slope * (x - b3), -b1 * slope * b2, x,
                            np.ones_like(x)])


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
    """95% percentile intervals of every coefficient over `resamples` resamples of items."""
    generator = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(resamples):
        index = generator.integers(0, len(pred), len(pred))
        if _is_constant(pred[index]) or _is_constant(mos[index]):
            continue  # a degenerate resample carries no information about the coefficients
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # A tighter evaluation budget: a resample is a perturbation of a solved fit.
            values, _ = _criteria(pred[index], mos[index],
                                  None if mos_std is None else mos_std[index], starts,
                                  evaluations=BOOTSTRAP_EVALUATIONS)
        for name, value in values.items():
            samples.setdefault(name, []).append(value)
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    return {f"{name}_ci": (float(np.nanpercentile(values, tail)),
                           float(np.nanpercentile(values, 100.0 - tail)))
            for name, values in samples.items()}


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
        (``srocc_ci`` etc., each ``(low, high)``); 0 skips them.
    seed : int, default 0
        Seed of the bootstrap resampling, for reproducible intervals.

    Returns
    -------
    dict
        ``srocc``, ``krocc``, ``plcc``, ``rmse``, ``n``, ``fit`` ("logistic", "linear",
        or None when undefined), ``outlier_ratio`` if `mos_std` is given, ``*_ci`` if
        `bootstrap` > 0. Constant predictions or MOS give NaN coefficients and a warning.

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
                      mos_std: str | None = None, bootstrap: int = 0,
                      seed: int = 0) -> pd.DataFrame:
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
        Bootstrap seed.

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
        columns[metric] = cells
    index = pd.MultiIndex.from_tuples(
        [(value, label) for value, _ in blocks for label in labels],
        names=[group or "group", "criterion"])
    return pd.DataFrame(columns, index=index, dtype=float)

