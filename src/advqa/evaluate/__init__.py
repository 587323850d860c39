"""Agreement of quality metrics with mean opinion scores (MOS).

``correlations`` (SROCC, KROCC, PLCC, RMSE, outlier ratio, bootstrap intervals),
``compare_metrics`` (F-test on fitted residuals), ``correlation_table`` (per-attack table)
and, in submodules, ``plots.scatter_plots`` and the MOS import of ``mos``.
"""

from advqa.evaluate.correlation import (
    CRITERIA,
    FittedCurve,
    compare_metrics,
    correlation_table,
    correlations,
    fitted_curve,
    logistic5,
)
from advqa.evaluate.mos import (
    MissingMosError,
    MosImportError,
    import_mos,
    load_mos,
    require_mos,
    with_mos,
)

__all__ = [
    "CRITERIA",
    "FittedCurve",
    "MissingMosError",
    "MosImportError",
    "compare_metrics",
    "correlation_table",
    "correlations",
    "fitted_curve",
    "import_mos",
    "load_mos",
    "logistic5",
    "require_mos",
    "with_mos",
]
