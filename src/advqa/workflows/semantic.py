"""``advqa detect semantic-impact``: Table I and Fig. 3 of the robust-classification paper.

Plan → keyed units → executor → table, through :mod:`advqa.jobs`: one unit per
(distortion, level), keyed by everything that changes its rows; the ledger refuses a
resume with other settings. Outputs in ``out``: ``rows.{parquet,csv}`` (one row per
reference × distortion × level), ``table_i.{parquet,csv}`` and ``fig3.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from advqa.detect.distortions import DISTORTIONS
from advqa.detect.semantic_impact import COLUMNS, LEVELS


@dataclass
class SemanticImpact:
    rows: pd.DataFrame
    table: pd.DataFrame
    figure: Path
    out: Path


def semantic_impact_run(out: str | Path, *, source: str = "imagenet",
                        model: str = "efficientnet-lite0", quality: str = "dtniq",
                        distortions=DISTORTIONS, levels=LEVELS, limit: int | None = None,
                        seed: int = 0, batch_size: int = 16, executor=None,
                        progress: bool = True, device=None) -> SemanticImpact:
    """Distort every image of ``source``, classify and score it; write Table I and Fig. 3.

    ``quality`` is a no-reference metric mapped to [0, 1] by the gate's default
    :class:`advqa.detect.features.QualityScale`. Re-running with the same ``out``
    resumes; other settings are refused.
    """
    from advqa.detect.features import QualityScale, prepare
    from advqa.detect.semantic_impact import _top1, impact_table, impact_unit, kde_grid
    from advqa.jobs import Ledger, LocalExecutor, Unit, run_units, unit_key
    from advqa.models import load_classifier
    from advqa.study.store import write_table
    from advqa.workflows.study import load_references

    for kind in distortions:
        if kind not in DISTORTIONS:
            raise ValueError(f"unknown distortion {kind!r}; valid: {', '.join(DISTORTIONS)}")
    if not levels or any(level not in LEVELS for level in levels):
        raise ValueError(f"levels must be among {LEVELS}, got {list(levels)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples = load_references(source, limit=limit)
    classifier = load_classifier(model, device=device)
    # A grey file is given three equal channels: the classifier takes RGB.
    references = prepare([image.expand(3, -1, -1) if image.shape[0] == 1 else image
                          for image in (sample.load() for sample in samples)], classifier)
    names = [sample.name for sample in samples]
    reference_classes = _top1(classifier, references, batch_size)
    scale = QualityScale.default(quality)
    settings = {"source": source, "model": model, "quality": quality, "seed": seed,
                "limit": limit, "images": names, "scale": scale.to_json()}
    units = []
    for kind in distortions:
        for level in levels:
            key = unit_key("semantic-impact", kind, level, seed)
            spec = {"distortion": kind, "level": int(level), "seed": seed,
                    "scale": scale.to_json()}
            units.append(Unit(key, spec, (spec,)))
    with Ledger(out / "ledger.sqlite", "semantic-impact") as ledger:
        ledger.check_settings(settings)
        report = run_units(ledger, units, impact_unit, executor=executor or LocalExecutor(),
                           shared={"references": references,
                                   "reference_classes": reference_classes.tolist(),
                                   "names": names, "model": model, "quality": quality,
                                   "batch_size": batch_size, "device": device},
                           progress=progress, description="semantic-impact units")
        rows = pd.DataFrame(ledger.rows())
    if report.failures:
        raise RuntimeError(f"{len(report.failures)} of {report.total} units failed (e.g. "
                           f"{report.failures[0].error}); the others are saved: re-run to "
                           "retry them")
    wanted = {(kind, int(level)) for kind in distortions for level in levels}
    rows = rows[[(kind, level) in wanted for kind, level in zip(
        rows["distortion"], rows["level"], strict=True)]]
    rows = rows.sort_values(["distortion", "level", "image"]).reset_index(drop=True)
    rows = rows[list(COLUMNS)]
    rows.insert(0, "model", model)
    rows.insert(0, "dataset", source)
    write_table(rows, out / "rows")
    table = impact_table(rows)
    write_table(table, out / "table_i")
    figure = kde_grid(rows, out / "fig3.png",
                      title=f"{model} on {source}: Wu-Palmer similarity vs {quality} quality")
    return SemanticImpact(rows, table, figure, out)
