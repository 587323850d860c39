"""Study directories: AdvDB-style datasets of references, AEs and a manifest.

A long job is a list of keyed work units; finished units are recorded in a
SQLite ledger in the same transaction as their manifest rows, after their
images were written atomically, so a killed run resumes where it stopped.
:class:`StudyDir` owns the directory's layout: every module reads and writes a
study through it.

The building blocks are imported when first used, so the light
:class:`StudyDir` (standard library and pandas) does not drag in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from advqa.study.layout import Applications, StudyDir

if TYPE_CHECKING:
    from advqa.study.build import BuildSummary, build_dataset
    from advqa.study.grid import (
        AttackSpec,
        demo_grid,
        full_grid,
        grid_from_options,
        load_grid,
        table2_grid,
    )
    from advqa.study.store import write_table

# Name -> module defining it, imported on first access (PEP 562).
_LAZY = {
    "BuildSummary": "advqa.study.build",
    "build_dataset": "advqa.study.build",
    "AttackSpec": "advqa.study.grid",
    "demo_grid": "advqa.study.grid",
    "full_grid": "advqa.study.grid",
    "grid_from_options": "advqa.study.grid",
    "load_grid": "advqa.study.grid",
    "table2_grid": "advqa.study.grid",
    "write_table": "advqa.study.store",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "Applications",
    "AttackSpec",
    "BuildSummary",
    "StudyDir",
    "build_dataset",
    "demo_grid",
    "full_grid",
    "grid_from_options",
    "load_grid",
    "table2_grid",
    "write_table",
]
