"""Score a study directory: one column per metric for every AE of its manifest.

Scores live in the study's ``ledger.sqlite`` (table ``scores``: id, metric,
value, error), written one (batch, metric) per transaction, so a killed run
resumes without recomputing finished (AE, metric) pairs. Each batch's images
are read once for all metrics. At the end the results are exported atomically
as ``scores.{parquet,csv}`` (id plus one column per metric) and
``scored_manifest.{parquet,csv}`` (the manifest with those columns). A batch on
which a metric fails is recorded with the error and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import warnings
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from advqa.data import read_image
from advqa.quality.registry import get_metric, is_available
from advqa.study.store import write_table

STUDY_METRICS = ("advdss", "aeqa", "js", "psnr", "ssim", "ms_ssim", "fsim", "gmsd", "vif", "vsi",
                 "mad", "cw_ssim", "niqe", "brisque", "piqe", "l0", "l1", "l2", "linf")


def default_metrics() -> list[str]:
    """The study metrics whose code is available offline here."""
    return [name for name in STUDY_METRICS if is_available(name)]


class ScoreStore:
    """The ``scores`` table of a study ledger."""

    def __init__(self, path: Path):
        self.connection = sqlite3.connect(path)
        with self.connection:
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS scores (id TEXT NOT NULL, metric TEXT NOT NULL, "
                "value REAL, error TEXT, PRIMARY KEY (id, metric))")

    def done(self, metric: str) -> set[str]:
        query = "SELECT id FROM scores WHERE metric = ?"
        return {row[0] for row in self.connection.execute(query, (metric,))}

    def record(self, metric: str, ids: list[str], values: list[float | None],
               error: str | None = None) -> None:
        with self.connection:
            self.connection.executemany(
                "INSERT OR REPLACE INTO scores (id, metric, value, error) VALUES (?, ?, ?, ?)",
                [(i, metric, v, error) for i, v in zip(ids, values, strict=True)])

    def table(self) -> pd.DataFrame:
        rows = self.connection.execute("SELECT id, metric, value, error FROM scores").fetchall()
        return pd.DataFrame(rows, columns=["id", "metric", "value", "error"])

    def close(self) -> None:
        self.connection.close()


def load_pairs(study: Path, rows: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    references = torch.stack([read_image(study / path) for path in rows.reference_path])
    adversarial = torch.stack([read_image(study / path) for path in rows.adversarial_path])
    return references, adversarial


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def score_batch(metric, references, adversarial) -> tuple[list[float | None], str | None]:
    with torch.no_grad():
        values = metric(adversarial, references) if metric.info.full_reference \
            else metric(adversarial)
    values = [finite_or_none(float(v)) for v in values.cpu()]
    error = "non-finite score" if any(v is None for v in values) else None
    return values, error


def score_rows(study: Path, rows: pd.DataFrame, scorers: dict, done: dict,
               store: ScoreStore) -> None:
    """Score one batch with every metric that still lacks it; images are read once."""
    try:
        references, adversarial = load_pairs(study, rows)
    except Exception as failure:  # an unreadable image fails its batch, not the run
        warnings.warn(f"cannot read images of {list(rows.id)}: {failure}", stacklevel=3)
        for name in scorers:
            store.record(name, list(rows.id), [None] * len(rows), f"unreadable: {failure}")
        return
    for name, metric in scorers.items():
        missing = ~rows.id.isin(done[name]).to_numpy()
        if not missing.any():
            continue
        ids = list(rows.id[missing])
        mask = torch.from_numpy(missing)
        try:
            values, error = score_batch(metric, references[mask], adversarial[mask])
        except Exception as failure:  # one bad batch must not end a long run
            warnings.warn(f"{name} failed on {ids}: {failure}", stacklevel=3)
            values, error = [None] * len(ids), f"{type(failure).__name__}: {failure}"
        store.record(name, ids, values, error)


class CachedLogits(torch.nn.Module):
    """A classifier that remembers its logits per image content (without gradients).

    ``aeqa`` and ``js`` both need the logits of every AE and of its reference,
    and a study reuses each reference for dozens of AEs: with the cache each
    image goes through the network once per scoring run.
    """

    def __init__(self, model: torch.nn.Module, *, capacity: int = 4096):
        super().__init__()
        self.model = model
        self.capacity = capacity
        self.logits: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and images.requires_grad:
            return self.model(images)
        keys = [hashlib.blake2b(image.cpu().numpy().tobytes(), digest_size=16).digest()
                for image in images]
        missing = [index for index, key in enumerate(keys) if key not in self.logits]
        if missing:
            with torch.no_grad():
                fresh = self.model(images[missing])
            for index, row in zip(missing, fresh, strict=True):
                self.logits[keys[index]] = row.clone()  # not a view pinning the batch
        for key in keys:
            self.logits.move_to_end(key)
        while len(self.logits) > self.capacity:
            self.logits.popitem(last=False)
        return torch.stack([self.logits[key] for key in keys])


def study_model(study: Path, model):
    """The classifier AEQA needs: the given one, else the study's own; logits cached."""
    if model is None:
        from advqa.models import load_classifier

        model = load_classifier(json.loads((study / "study.json").read_text())["model"])
    return model if isinstance(model, CachedLogits) else CachedLogits(model)


def export(study: Path, manifest: pd.DataFrame, store: ScoreStore) -> pd.DataFrame:
    """Every metric scored so far, in this run or earlier ones, one column each."""
    long = store.table()
    known = [name for name in STUDY_METRICS if name in set(long.metric)]
    metrics = known + sorted(set(long.metric) - set(known))
    wide = long.pivot(index="id", columns="metric", values="value").reindex(
        index=manifest.id, columns=metrics).reset_index()
    write_table(wide, study / "scores")
    # The Lp metrics recompute the manifest's own distance columns: keep one copy.
    base = manifest.drop(columns=[name for name in metrics if name in manifest.columns])
    write_table(base.merge(wide, on="id", how="left"), study / "scored_manifest")
    return wide


def score_study(study: str | Path, metrics=None, *, model=None,
                batch_size: int = 16, progress: bool = True) -> pd.DataFrame:
    """Add one score per metric to every AE of a study; returns the wide score table.

    Parameters
    ----------
    study : path
        A study directory written by ``advqa build`` (``manifest.parquet`` inside).
    metrics : sequence of str, optional
        Registry names (default: :func:`default_metrics`); no-reference metrics
        score the AE alone.
    model : nn.Module, optional
        Classifier for ``aeqa``; defaults to the study's model.
    batch_size : int
        AEs per batch (and per transaction).
    """
    study = Path(study)
    metrics = default_metrics() if metrics is None else list(metrics)
    manifest_path = study / "manifest.parquet"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no manifest.parquet in {study}; run `advqa build` first")
    manifest = pd.read_parquet(manifest_path)
    scorers = {}
    for name in metrics:
        options = {}
        if name in ("aeqa", "js"):
            model = study_model(study, model)  # loaded once, shared by both
            options["model"] = model
        scorers[name] = get_metric(name, **options)
    store = ScoreStore(study / "ledger.sqlite")
    try:
        done = {name: store.done(name) for name in scorers}
        pending = manifest[[any(i not in done[name] for name in scorers) for i in manifest.id]]
        batches = range(0, len(pending), batch_size)
        for start in tqdm(batches, desc="score", unit="batch", disable=not progress):
            score_rows(study, pending.iloc[start:start + batch_size], scorers, done, store)
        wide = export(study, manifest, store)
        errors = store.table().dropna(subset=["error"])
        write_table(errors, study / "score_failures")
    finally:
        store.close()
    return wide
