"""Studies: build one from a source and a grid, and the default study of ``advqa run``.

``build_study`` loads the classifier and the images and builds the study directory
(``advqa build``); ``default_study`` chains build → score → AEQA applications → WS
detection → report (``advqa run``). Both run their long jobs on the job engine
(``executor``: here by default) and return what they made, so a script gets the same
results as the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


def load_references(source: str, *, labels: str | Path | None = None, limit: int | None = None,
                    num_classes: int | None = None):
    """The images to attack: a named set or a folder (with a labels CSV), the first
    ``limit`` of them; labels outside ``num_classes`` are refused naming their row."""
    from advqa.data import load_folder, load_source

    if limit is not None and not (isinstance(limit, int) and limit >= 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    samples = (load_folder(source, labels=labels, num_classes=num_classes)
               if labels is not None else load_source(source))
    if limit is not None:
        samples = samples[:limit]
    if len(samples) == 0 and not samples.failures:
        raise ValueError(f"no images in {source}")
    return samples


def build_study(out: str | Path, grid, *, source: str = "imagenet",
                labels: str | Path | None = None, limit: int | None = None,
                model: str = "efficientnet-lite0", weights: str | None = "default",
                device: str | None = None, batch_size: int = 8, keep_failed: bool = False,
                seed: int = 0, append: bool = False, executor=None, progress: bool = True,
                search: str | None = None, rounds: int = 8, metric: str = "advdss"):
    """``advqa build``: attack ``source`` with every cell of ``grid`` into the study ``out``.

    Returns the :class:`advqa.study.BuildSummary`; see :func:`advqa.study.build_dataset`
    for the study it writes and what a resumed build requires. ``search="minimal"``
    finds, per image and cell, the smallest fooling strength up to the cell's
    (``rounds`` bisection rounds, :mod:`advqa.study.minimal`); the report ranks those
    per-image AEs by ``metric``.
    """
    from advqa.models import load_classifier
    from advqa.study import build_dataset

    victim = load_classifier(model, weights=weights, device=device)
    samples = load_references(source, labels=labels, limit=limit,
                              num_classes=victim.info.num_classes)
    return build_dataset(samples, victim, grid, out, batch_size=batch_size,
                         keep_failed=keep_failed, seed=seed, append=append,
                         executor=executor, progress=progress,
                         **({} if search is None else {"search": search, "rounds": rounds,
                                                     "metric": metric}))


@dataclass
class DefaultStudy:
    """What :func:`default_study` made: each step's result (None when it did not run)."""

    build: object
    scores: pd.DataFrame | None
    applications: Path | None
    detection: pd.DataFrame | None
    report: Path


def default_study(out: str | Path = "runs/demo", *, full: bool = False, metrics=None,
                  executor=None, progress: bool = True, **build_options) -> DefaultStudy:
    """``advqa run``: the demo grid (or Table 2 + C&W with ``full``) on the embedded
    ImageNet photos, every AE scored with ``metrics`` (default: every offline metric),
    the AEQA applications, the WS detector's view of the AEs and ``report.html``.

    ``build_options`` go to :func:`build_study` (source, model, limit, seed, …).
    """
    from advqa.detect.study import detect_study
    from advqa.quality.scoring import default_metrics, score_study
    from advqa.report import write_report
    from advqa.study import full_grid
    from advqa.study.grid import demo_grid

    grid = full_grid() if full else demo_grid()
    build = build_study(out, grid, executor=executor, progress=progress, **build_options)
    scores = applications = detection = None
    if len(build.manifest):
        scores = score_study(build.output, metrics or default_metrics(), executor=executor,
                             progress=progress)
        if "aeqa" in scores.columns:
            from advqa.evaluate.applications import write_applications

            applications = write_applications(build.output)
        detection = detect_study(build.output)
    return DefaultStudy(build, scores, applications, detection, write_report(build.output))
