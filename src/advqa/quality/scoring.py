"""Score a study directory: one column per metric for every AE of its manifest.

Scoring is a job of the engine (:mod:`advqa.jobs`): the AEs that still lack a score
are split into units of ``batch_size``; a unit decodes its AEs once and runs every
metric they lack, here or on workers (``executor``). The client reads the files,
checks them against the manifest's SHA-256 and sends their bytes (each reference
once to every worker), so workers need no shared file system; it commits each
unit's rows to the study's ``ledger.sqlite`` (job ``score``: one row per (AE,
metric): value, error and *content key*) in one transaction, so a killed run
resumes without recomputing finished pairs.

The content key ties a score to what it scored: the SHA-256 of the reference and AE
files and, for metrics that need one, the classifier. A rebuilt AE is therefore
rescored, and a score of an older file is never exported. Which pairs are done is
read from the rows, never from unit marks: an AE or metric that failed (recorded
with its error) is retried on the next run. At the end the results are exported
atomically as ``scores.{parquet,csv}`` (id plus one column per metric),
``scored_manifest.{parquet,csv}`` (the manifest with those columns) and
``score_failures.{parquet,csv}``.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import torch

from advqa.jobs import Ledger, LocalExecutor, Unit, run_units, unit_key, worker_cache
from advqa.models.registry import shippable
from advqa.quality.registry import get_metric, is_available, list_metrics
from advqa.study.layout import StudyDir
from advqa.study.store import StudyLock

STUDY_METRICS = ("advdss", "aeqa", "js", "psnr", "ssim", "ms_ssim", "fsim", "gmsd", "vif", "vsi",
                 "mad", "cw_ssim", "niqe", "brisque", "piqe", "l0", "l1", "l2", "linf")


def default_metrics() -> list[str]:
    """The study metrics whose code is available offline here."""
    return [name for name in STUDY_METRICS if is_available(name)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_hashes(study: Path, manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest with ``reference_disk``/``adversarial_disk``: the SHA-256 of the files
    as they are now ("" when missing). Scores are keyed to these, so a file edited after
    scoring is not shown with its old score; it is refused when it is not the file the
    manifest lists. Manifests written before advqa recorded hashes take the files' as
    their own."""
    hashed = {path: sha256((study / path).read_bytes()) if (study / path).is_file() else ""
              for path in {*manifest.reference_path, *manifest.adversarial_path}}
    manifest = manifest.assign(reference_disk=manifest.reference_path.map(hashed),
                               adversarial_disk=manifest.adversarial_path.map(hashed))
    if not {"reference_sha256", "adversarial_sha256"} <= set(manifest.columns):
        manifest = manifest.assign(reference_sha256=manifest.reference_disk,
                                   adversarial_sha256=manifest.adversarial_disk)
    return manifest


def model_fingerprint(model) -> str:
    """Name and weight file of a classifier (``CachedLogits`` unwrapped)."""
    inner = getattr(model, "model", model)
    info = getattr(inner, "info", None)
    if info is None:
        return type(inner).__name__
    return f"{info.name}:{Path(str(info.weights)).name}"


def study_fingerprint(study: Path) -> str:
    settings = StudyDir(study).settings()
    return f"{settings['model']}:{Path(str(settings.get('weights', ''))).name}"


def content_keys(manifest: pd.DataFrame, scorer: str) -> dict[str, str]:
    """id → key of what a metric scores for that AE: both files, and ``scorer`` (the
    classifier's fingerprint for metrics that need one, else empty)."""
    return {i: hashlib.sha256(f"{r}/{a}/{scorer}".encode()).hexdigest()[:24]
            for i, r, a in zip(manifest.id, manifest.reference_disk,
                               manifest.adversarial_disk, strict=True)}


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def score_row(ae: str, metric: str, value: float | None, error: str | None) -> dict:
    """A ledger row: one (AE, metric) score; the client adds its content key."""
    return {"id": f"{metric}|{ae}", "ae": ae, "metric": metric, "value": value,
            "error": error}


# ---------------------------------------------------------------- worker side

def scorer(name: str, model):
    """A metric ready to score, built once per worker (with logits cached when it needs
    the classifier)."""
    from advqa.models.registry import on_worker

    if model is None:
        from advqa.quality.plugins import load_metric

        return load_metric(name)  # a registry name, or a plug-in's module:Class
    return get_metric(name, model=worker_cache(CachedLogits, on_worker(model)))


def decode_png(data: bytes) -> torch.Tensor:
    """A PNG's pixels as float32 (C, H, W) in [0, 1], as :func:`advqa.data.read_image`."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).to(torch.float32) / 255


def score_batch(metric, references, adversarial) -> tuple[list[float | None], str | None]:
    with torch.no_grad():
        values = metric(adversarial, references) if metric.info.full_reference \
            else metric(adversarial)
    values = [finite_or_none(float(v)) for v in values.cpu()]
    error = "non-finite score" if any(v is None for v in values) else None
    return values, error


def score_unit(items: list[tuple[str, str, bytes]], needs: dict[str, list[str]], *,
               references: dict[str, bytes], model) -> list[dict]:
    """One unit, wherever it runs: decode the unit's AEs once and run every metric they
    lack. ``items`` are (AE id, reference path, AE PNG bytes); ``needs`` maps a metric
    to the AE ids it still lacks. An AE that fails to decode fails alone."""
    rows, decoded = [], {}
    for ae, reference, data in items:
        try:
            decoded[ae] = (decode_png(references[reference]), decode_png(data))
        except Exception as failure:  # a corrupt file fails its own scores only
            rows += [score_row(ae, name, None, f"unreadable: {failure}")
                     for name, ids in needs.items() if ae in ids]
    for name, ids in needs.items():
        ids = [ae for ae in ids if ae in decoded]
        if not ids:
            continue
        metric = worker_cache(scorer, name, model if _needs_model(name) else None)
        try:
            values, error = score_batch(metric, torch.stack([decoded[a][0] for a in ids]),
                                        torch.stack([decoded[a][1] for a in ids]))
        except Exception as failure:  # one bad batch must not end a long run
            values, error = [None] * len(ids), f"{type(failure).__name__}: {failure}"
        rows += [score_row(ae, name, value, error) for ae, value in
                 zip(ids, values, strict=True)]
    return rows


def _needs_model(name: str) -> bool:
    info = list_metrics().get(name)
    return info is not None and info.needs_model


class CachedLogits(torch.nn.Module):
    """A classifier that remembers its logits per image content (without gradients).

    ``aeqa`` and ``js`` both need the logits of every AE and of its reference,
    and a study reuses each reference for dozens of AEs: with the cache each
    image goes through the network once per scoring run. Each image's logits are
    computed on that image alone, so logits (and ``js``) are bit-identical however a
    run was batched or resumed. (AdvDSS's batched FFT can still round one float32 ulp
    differently, so ``aeqa`` agrees to 2e-7 relative; tests/test_study_integrity.py.)
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
        with torch.no_grad():
            for index, key in enumerate(keys):
                if key not in self.logits:
                    # One image at a time: a batched forward pass sums in an order that
                    # depends on the batch, so a resumed run would differ in the last bits.
                    self.logits[key] = self.model(images[index:index + 1])[0].clone()
        for key in keys:
            self.logits.move_to_end(key)
        while len(self.logits) > self.capacity:
            self.logits.popitem(last=False)
        return torch.stack([self.logits[key] for key in keys])


def study_model(study: Path, model):
    """The classifier AEQA needs: the given one, else the study's own."""
    if model is not None:
        return model.model if isinstance(model, CachedLogits) else model
    from advqa.models import load_classifier

    settings = StudyDir(study).settings()
    weights = settings.get("weights")
    model = load_classifier(settings["model"], weights=None if weights == "random"
                            else "default")
    if weights not in ("random", None) and Path(str(model.info.weights)).name != \
            Path(str(weights)).name:
        if not Path(str(weights)).is_file():
            raise FileNotFoundError(
                f"{study} was built with the weights {weights}, which are not here; "
                "give the classifier with --model/model=")
        model = load_classifier(settings["model"], weights=weights)
    return model


def scores_table(ledger: Ledger) -> pd.DataFrame:
    rows = ledger.rows()
    return pd.DataFrame(rows, columns=["id", "ae", "metric", "content", "value", "error"])


def export(study: Path, manifest: pd.DataFrame, long: pd.DataFrame,
           current: dict[str, dict[str, str]]) -> pd.DataFrame:
    """Every metric scored on the files the manifest lists, one column each.

    ``current`` maps a metric to its content keys; scores of other content (an AE
    since rebuilt, another classifier) are left out.
    """
    keep = [current.get(m, {}).get(i) == c
            for i, m, c in zip(long.ae, long.metric, long.content, strict=True)]
    long = long[keep] if len(long) else long
    long = long.drop(columns="id").rename(columns={"ae": "id"})
    known = [name for name in STUDY_METRICS if name in set(long.metric)]
    metrics = known + sorted(set(long.metric) - set(known))
    wide = long.pivot(index="id", columns="metric", values="value").reindex(
        index=manifest.id, columns=metrics).reset_index()
    layout = StudyDir(study)
    layout.write_scores(wide)
    # The Lp metrics recompute the manifest's own distance columns: keep one copy.
    base = manifest.drop(columns=[name for name in metrics if name in manifest.columns]
                         + ["reference_disk", "adversarial_disk"])
    layout.write_scored_manifest(base.merge(wide, on="id", how="left"))
    layout.write_score_failures(long.dropna(subset=["error"]).drop(columns="content")
                                .reset_index(drop=True))
    return wide


def current_keys(study: Path, manifest: pd.DataFrame, stored: pd.DataFrame, metrics,
                 model) -> dict[str, dict[str, str]]:
    """Content keys of every metric stored or scored now: the classifier of a model
    metric is this run's, else the study's own."""
    keys = {}
    for name in set(metrics) | set(stored.metric):
        if not _needs_model(name):
            fingerprint = ""
        elif name in metrics:
            fingerprint = model_fingerprint(model)
        else:
            fingerprint = study_fingerprint(study)
        keys[name] = content_keys(manifest, fingerprint)
    return keys


def file_problem(row) -> str | None:
    """Why an AE cannot be scored as listed: a missing or changed file (None if fine)."""
    for path, disk, listed in ((row.reference_path, row.reference_disk, row.reference_sha256),
                               (row.adversarial_path, row.adversarial_disk,
                                row.adversarial_sha256)):
        if not disk:
            return f"unreadable: {path} is missing"
        if disk != listed:
            return (f"unreadable: {path} is not the file the manifest lists (SHA-256 "
                    "differs); rebuild the study rather than edit its images")
    return None


def plan(study: Path, manifest: pd.DataFrame, keys: dict, done: dict, metrics,
         batch_size: int) -> tuple[list[Unit], list[dict]]:
    """Units of ``batch_size`` AEs that lack a score, and rows for AEs whose files cannot
    be read or are not the files the manifest lists (recorded, not sent)."""
    units, unreadable, batch = [], [], []

    def close_batch():
        needs = {name: [ae for ae, *_ in batch if ae not in done[name]] for name in metrics}
        needs = {name: ids for name, ids in needs.items() if ids}
        contents = [(name, ae, keys[name][ae]) for name, ids in needs.items() for ae in ids]
        units.append(Unit(unit_key("score", contents), {"aes": len(batch)},
                          (list(batch), needs)))
        batch.clear()

    for row in manifest.itertuples(index=False):
        if all(row.id in done[name] for name in metrics):
            continue
        reason = file_problem(row)
        if reason:
            warnings.warn(f"cannot score {row.id}: {reason}", stacklevel=3)
            unreadable += [score_row(row.id, name, None, reason) for name in metrics]
            continue
        batch.append((row.id, row.reference_path, (study / row.adversarial_path).read_bytes()))
        if len(batch) == batch_size:
            close_batch()
    if batch:
        close_batch()
    return units, unreadable


def score_study(study: str | Path, metrics=None, *, model=None, batch_size: int = 16,
                executor=None, progress: bool = True) -> pd.DataFrame:
    """Add one score per metric to every AE of a study; returns the wide score table.

    Parameters
    ----------
    study : path
        A study directory written by ``advqa build`` (``manifest.parquet`` inside).
        It is locked (``study.lock``) while scores are written.
    metrics : sequence of str, optional
        Registry names (default: :func:`default_metrics`); no-reference metrics
        score the AE alone.
    model : nn.Module, optional
        Classifier for the metrics that need one (``aeqa``, ``js``); defaults to the
        study's model.
    batch_size : int
        AEs per unit.
    executor : advqa.jobs.Executor, optional
        Where the units run (:func:`advqa.jobs.make_executor`): here by default.
    """
    study = Path(study)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    metrics = default_metrics() if metrics is None else list(metrics)
    layout = StudyDir(study)
    layout.require_built()
    if any(_needs_model(name) for name in metrics):
        model = study_model(study, model)
    for name in metrics:  # a bad name or missing weights fails here, not in every unit
        worker_cache(scorer, name, model if _needs_model(name) else None)
    with StudyLock(study), Ledger(layout.ledger_path, "score") as ledger:
        manifest = with_hashes(study, layout.manifest())
        stored = scores_table(ledger)
        keys = current_keys(study, manifest, stored, metrics, model)
        done = {name: set(stored.ae[(stored.metric == name) & stored.error.isna() & (
            stored.content == stored.ae.map(keys[name]))]) for name in metrics}
        units, unreadable = plan(study, manifest, keys, done, metrics, batch_size)
        if unreadable:
            ledger.record(unit_key("score-unreadable", unreadable), {},
                          with_content(unreadable, keys))
        ledger.forget(unit.key for unit in units)  # the rows say they are pending
        references = {path: (study / path).read_bytes()
                      for path in {item[1] for unit in units for item in unit.args[0]}}
        executor = executor or LocalExecutor()
        report = run_units(ledger, units, score_unit, executor=executor,
                           shared={"references": references, "model": shippable(model,
                                                                                 executor)},
                           on_result=lambda unit, rows: with_content(warned(rows), keys),
                           progress=progress, description="score")
        for failure in report.failures:  # a unit that raised: its scores stay missing
            unit = next(u for u in units if u.key == failure.key)
            rows = [score_row(ae, name, None, failure.error)
                    for name, ids in unit.args[1].items() for ae in ids]
            ledger.record(unit_key("score-failed", failure.key), {}, with_content(rows, keys))
        return export(study, manifest, scores_table(ledger), keys)


def warned(rows: list[dict]) -> list[dict]:
    """Warn here, in the client, about every metric that failed in a unit."""
    failed: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row["error"] and row["error"] != "non-finite score":
            failed.setdefault((row["metric"], row["error"]), []).append(row["ae"])
    for (metric, error), ids in failed.items():
        warnings.warn(f"{metric} failed on {ids}: {error}", stacklevel=2)
    return rows


def with_content(rows: list[dict], keys: dict) -> list[dict]:
    return [{**row, "content": keys[row["metric"]][row["ae"]]} for row in rows]
