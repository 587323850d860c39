"""The papers' tables and figures, rebuilt from advqa's packages, with the papers' numbers.

One module per paper; each ends in :func:`advqa.experiments.comparison.write_reproduction`
(``comparison.csv/.parquet``, ``reproduction.md`` with ``paper``/``ours``/``difference``
columns, ``reproduction.json``). :func:`reproduce` runs one by name.
"""

from __future__ import annotations

from pathlib import Path

#: reproduction name → "module:function" (imported only when run).
REPRODUCTIONS = {
    "advdss": "advqa.experiments.adversarial_quality:reproduce_adversarial_quality",
    "gate": "advqa.experiments.robust_classification:reproduce_robust_classification",
    "stego": "advqa.experiments.steganalysis:reproduce_steganalysis",
    "msu": "advqa.experiments.metric_robustness:reproduce_metric_robustness",
}


#: options only some reproductions take → the ones that take them.
OPTIONS = {"mos": ("advdss",)}


def reproduce(name: str, out: str | Path, *, scale: str = "full", executor=None,
              progress=None, **options) -> list[Path]:
    """Run the reproduction ``name`` (one of :data:`REPRODUCTIONS`) into ``out``;
    ``options`` (e.g. ``mos`` for ``advdss``) go to it, None meaning "not given"."""
    import importlib

    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}; valid: {', '.join(REPRODUCTIONS)}")
    given = {key: value for key, value in options.items() if value is not None}
    for key in given:
        if name not in OPTIONS.get(key, ()):
            raise ValueError(f"{key} is an option of {', '.join(OPTIONS.get(key, ())) or 'no'} "
                             f"reproduction, not of {name}")
    module, function = REPRODUCTIONS[name].split(":")
    run = getattr(importlib.import_module(module), function)
    return run(out, scale=scale, executor=executor, progress=progress, **given)
