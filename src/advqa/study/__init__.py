"""Study directories: AdvDB-style datasets of references, AEs and a manifest.

A long job is a list of keyed work units; finished units are recorded in a
SQLite ledger in the same transaction as their manifest rows, after their
images were written atomically, so a killed run resumes where it stopped.
"""

from advqa.study.build import BuildSummary, build_dataset
from advqa.study.grid import (
    AttackSpec,
    demo_grid,
    full_grid,
    grid_from_options,
    load_grid,
    table2_grid,
)
from advqa.study.store import Ledger, write_table

__all__ = [
    "AttackSpec",
    "BuildSummary",
    "Ledger",
    "build_dataset",
    "demo_grid",
    "full_grid",
    "grid_from_options",
    "load_grid",
    "table2_grid",
    "write_table",
]
