"""Subjective study: collect opinion scores for AEs in the browser, screen raters, export MOS.

RatingStore
    Raters (private link tokens) and their 1–5 scores, in SQLite or PostgreSQL.
create_app
    The FastAPI rating service over a study directory (``advqa annotate serve``).
bt500_screen, remove_outlier_scores
    ITU-R BT.500 β2 rater screening; the paper's per-item outlier-score removal.
mos_table, export_mos
    MOS, std, 95% interval and n per item; written to CSV and the study's MOS columns.

The service contract and the organiser's workflow are in ``docs/annotate.md``.
"""

from advqa.annotate.export import export_mos, mos_table
from advqa.annotate.screening import bt500_screen, remove_outlier_scores
from advqa.annotate.store import RatingStore, UnknownTokenError

__all__ = ["RatingStore", "UnknownTokenError", "bt500_screen", "create_app", "export_mos",
           "mos_table", "remove_outlier_scores"]


def __getattr__(name):
    # The web app imports FastAPI; load it only when asked for.
    if name == "create_app":
        from advqa.annotate.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
