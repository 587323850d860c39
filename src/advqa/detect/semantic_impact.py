"""How far a classifier's answer moves when the image is distorted: Table I and Fig. 3.

Feng & Cai measure the impact of image quality on a classifier by the Wu-Palmer
similarity between the WordNet synsets of its top-1 class on a reference image and on
each distorted version (:func:`advqa.detect.semantic.wup_similarity`), and set it
against the distorted image's quality:

* **Table I**: median, mean and standard deviation of the quality (on [0, 1]) and of the
  similarity, per data set and model (:func:`impact_table`);
* **Fig. 3**: per distortion type, a kernel density estimate of (quality, similarity)
  (:func:`kde_grid`).

The paper's data (TID2013, CSIQ, LIVE with their human MOS, and ResNet-152) are not
on this machine. Here the references are any image set (the embedded photos by
default), the distortions those of :mod:`advqa.detect.distortions` at their five levels,
and the quality a no-reference metric mapped to [0, 1] by the gate's
:class:`advqa.detect.features.QualityScale` — predicted quality, as in the paper's left
panel of Fig. 3, never human MOS.

Similarity of a class with itself follows NLTK (and so the paper): it is 1 for most
classes but below 1 for 107 of the 1000 ImageNet classes (e.g. every dog breed), whose
WordNet synset has a shorter and a longer path to the root; see
:mod:`advqa.detect.semantic`. The table also reports the share of unchanged top-1
predictions, which does not depend on that convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from advqa.detect.distortions import DISTORTIONS, distort
from advqa.detect.features import QualityScale, prepare
from advqa.detect.semantic import N_CLASSES, wup_similarity

COLUMNS = ("image", "distortion", "level", "reference_class", "distorted_class",
           "similarity", "quality_raw", "quality")
LEVELS = (1, 2, 3, 4, 5)


def prediction_similarity(reference_classes, distorted_classes) -> np.ndarray:
    """Wu-Palmer similarity of each pair of ImageNet class indices (0–999)."""
    reference_classes = np.asarray(reference_classes, dtype=int)
    distorted_classes = np.asarray(distorted_classes, dtype=int)
    if reference_classes.shape != distorted_classes.shape:
        raise ValueError(f"{reference_classes.shape[0]} reference classes but "
                         f"{distorted_classes.shape[0]} distorted ones")
    return np.array([wup_similarity(int(a), int(b))
                     for a, b in zip(reference_classes, distorted_classes, strict=True)],
                    dtype=float)


def _top1(model, images: torch.Tensor, batch_size: int) -> np.ndarray:
    classes = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = prepare(images[start:start + batch_size], model)
            classes.append(model(batch).argmax(dim=1).cpu().numpy())
    return np.concatenate(classes)


def _quality(metric, scale: QualityScale, images: torch.Tensor,
             batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    raw = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            raw.append(metric(images[start:start + batch_size]).double().cpu().numpy())
    raw = np.concatenate(raw)
    return raw, scale.normalise(raw)


def semantic_impact(model, references: torch.Tensor, *, names=None,
                    distortions=DISTORTIONS, levels=LEVELS, quality: str = "dtniq",
                    scale: QualityScale | None = None, batch_size: int = 16,
                    seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """One row per (reference, distortion, level): the two top-1 classes, their
    Wu-Palmer similarity and the distorted image's quality.

    Parameters
    ----------
    model : torch.nn.Module
        An ImageNet-1k classifier (1000 outputs) taking NCHW float RGB in [0, 1].
    references : torch.Tensor
        (N, 3, H, W) in [0, 1].
    names : sequence of str, optional
        One name per reference (default ``"0"``, ``"1"``, …).
    distortions, levels
        Types of :mod:`advqa.detect.distortions` and their levels (1–5).
    quality : str
        A no-reference metric of the registry; mapped to [0, 1] by ``scale``
        (default :meth:`QualityScale.default`).
    seed : int
        Seed of the noise distortion.

    Returns
    -------
    pandas.DataFrame
        Columns ``image, distortion, level, reference_class, distorted_class,
        similarity, quality_raw, quality``.
    """
    from tqdm.auto import tqdm

    from advqa.quality import get_metric

    if references.ndim != 4 or references.shape[1] != 3:
        raise ValueError(f"references must be (N, 3, H, W), got {tuple(references.shape)}")
    names = [str(index) for index in range(len(references))] if names is None else list(names)
    if len(names) != len(references):
        raise ValueError(f"{len(names)} names for {len(references)} references")
    for kind in distortions:
        if kind not in DISTORTIONS:
            raise ValueError(f"unknown distortion {kind!r}; valid: {', '.join(DISTORTIONS)}")
    metric = get_metric(quality)
    if metric.info.full_reference:
        raise ValueError(f"{quality} is full-reference; pass a no-reference metric")
    scale = QualityScale.default(quality) if scale is None else scale
    reference_classes = _top1(model, references, batch_size)
    if reference_classes.max(initial=0) >= N_CLASSES:
        raise ValueError("the model must be an ImageNet-1k classifier (classes 0–999)")
    cells = [(kind, level) for kind in distortions for level in levels]
    frames = [pd.DataFrame(cell_rows(model, metric, scale, references, reference_classes,
                                     names, kind, level, seed=seed, batch_size=batch_size))
              for kind, level in tqdm(cells, desc="distortions", disable=not progress)]
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def cell_rows(model, metric, scale: QualityScale, references: torch.Tensor,
              reference_classes: np.ndarray, names, kind: str, level: int, *,
              seed: int = 0, batch_size: int = 16) -> list[dict]:
    """The rows of one (distortion, level): one per reference image."""
    distorted = distort(references, kind, level, seed=seed)
    classes = _top1(model, distorted, batch_size)
    raw, normalised = _quality(metric, scale, distorted, batch_size)
    similarity = prediction_similarity(reference_classes, classes)
    return [{"image": name, "distortion": kind, "level": int(level),
             "reference_class": int(reference), "distorted_class": int(predicted),
             "similarity": float(value), "quality_raw": float(score),
             "quality": float(unit)}
            for name, reference, predicted, value, score, unit in zip(
                names, reference_classes, classes, similarity, raw, normalised, strict=True)]


def impact_unit(spec: dict, *, references: torch.Tensor, reference_classes, names,
                model: str, quality: str, batch_size: int, device=None) -> list[dict]:
    """One job-engine unit: ``spec`` names the distortion, level and seed."""
    from advqa.jobs import worker_cache
    from advqa.models import load_classifier
    from advqa.quality import get_metric

    classifier = worker_cache(load_classifier, model, device=device)
    metric = worker_cache(get_metric, quality)
    scale = QualityScale.from_json(spec["scale"])
    rows = cell_rows(classifier, metric, scale, references, np.asarray(reference_classes),
                     names, spec["distortion"], spec["level"], seed=spec["seed"],
                     batch_size=batch_size)
    # The ledger keys rows by id: one per (image, distortion, level).
    return [{"id": f"{row['image']}|{row['distortion']}|{row['level']}", **row}
            for row in rows]


def impact_table(rows: pd.DataFrame, *, by=("dataset", "model")) -> pd.DataFrame:
    """Table I's shape: median, mean and std of quality and similarity per group.

    ``rows`` has ``quality`` and ``similarity`` columns (e.g. from
    :func:`semantic_impact`) and the grouping columns named in ``by`` that it has;
    the standard deviation is the sample one (N − 1). ``unchanged`` is the share of
    distorted images whose top-1 class is the reference's.
    """
    keys = [key for key in by if key in rows.columns]
    groups = rows.groupby(keys, sort=False) if keys else [((), rows)]
    records = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = dict(zip(keys, key, strict=True))
        unchanged = float((part["reference_class"] == part["distorted_class"]).mean()) \
            if {"reference_class", "distorted_class"} <= set(part.columns) else np.nan
        for measure in ("quality", "similarity"):
            values = part[measure].to_numpy(dtype=float)
            records.append({**label, "measure": measure, "n": len(values),
                            "median": float(np.median(values)), "mean": float(values.mean()),
                            "std": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                            "unchanged": unchanged if measure == "similarity" else np.nan})
    return pd.DataFrame.from_records(records)


def _density(quality: np.ndarray, similarity: np.ndarray, grid: np.ndarray):
    """A 2-D Gaussian KDE on the grid, or None when the points are degenerate."""
    from scipy.stats import gaussian_kde

    points = np.vstack([quality, similarity])
    if points.shape[1] < 3 or np.linalg.matrix_rank(np.cov(points)) < 2:
        return None
    xx, yy = np.meshgrid(grid, grid)
    return gaussian_kde(points)(np.vstack([xx.ravel(), yy.ravel()])).reshape(xx.shape)


def kde_grid(rows: pd.DataFrame, path: str | Path, *, columns: int = 4,
             title: str | None = None) -> Path:
    """Fig. 3's grid: per distortion type, the density of (quality, similarity).

    A panel whose points are degenerate (e.g. every similarity equal) shows them as
    points instead of a density, and says so in its title.
    """
    from advqa.plotting import new_figure, save_figure, subplots

    kinds = list(dict.fromkeys(rows["distortion"]))
    if not kinds:
        raise ValueError("no rows to plot")
    columns = max(1, min(columns, len(kinds)))
    lines = -(-len(kinds) // columns)
    figure = new_figure(3.2 * columns, 3.0 * lines)
    axes = np.atleast_1d(subplots(figure, lines, columns)).ravel()
    grid = np.linspace(0.0, 1.0, 101)
    for ax, kind in zip(axes, kinds, strict=False):
        part = rows[rows["distortion"] == kind]
        quality = part["quality"].to_numpy(float)
        similarity = part["similarity"].to_numpy(float)
        density = _density(quality, similarity, grid)
        if density is None:
            ax.scatter(quality, similarity, s=10)
            ax.set_title(f"{kind} (n={len(part)}, points)")
        else:
            ax.contourf(grid, grid, density, levels=8, cmap="Blues")
            ax.scatter(quality, similarity, s=4, color="k", alpha=0.4)
            ax.set_title(f"{kind} (n={len(part)})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("quality (predicted, [0, 1])")
        ax.set_ylabel("Wu-Palmer similarity")
    for ax in axes[len(kinds):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)
