"""The papers' tables and figures, rebuilt from advqa's packages, with the papers' numbers.

One module per paper; each ends in :func:`advqa.experiments.comparison.write_reproduction`
(``comparison.csv/.parquet``, ``reproduction.md`` with ``paper``/``ours``/``difference``
columns, ``reproduction.json``). :func:`reproduce` runs one by name.
"""

from __future__ import annotations

from pathlib import Path

#: reproduction name → "module:function" (imported only when run).
REPRODUCTIONS = {
    "gate": "advqa.experiments.robust_classification:reproduce_robust_classification",
    "stego": "advqa.experiments.steganalysis:reproduce_steganalysis",
}


def reproduce(name: str, out: str | Path, *, scale: str = "full", executor=None,
              progress=None) -> list[Path]:
    """Run the reproduction ``name`` (one of :data:`REPRODUCTIONS`) into ``out``."""
    import importlib

    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; valid: {', '.join(REPRODUCTIONS)}")
    module, function = REPRODUCTIONS[name].split(":")
    run = getattr(importlib.import_module(module), function)
    return run(out, scale=scale, executor=executor, progress=progress)
