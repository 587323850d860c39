"""Score a study directory: one column per metric for every AE of its manifest.

Scores live in the study's ``ledger.sqlite`` (table ``scores``: id, metric,
content, value, error), written one (batch, metric) per transaction, so a killed
run resumes without recomputing finished (AE, metric) pairs. ``content`` keys a
score to what it scored: the SHA-256 of the reference and AE files and, for
metrics that need one, the classifier. A rebuilt AE is therefore rescored, and a
score of an older file is never exported. Each batch's images are read once for
all metrics and checked against the manifest's SHA-256. At the end the results
are exported atomically as ``scores.{parquet,csv}`` (id plus one column per
metric) and ``scored_manifest.{parquet,csv}`` (the manifest with those columns).
An AE or batch on which a metric fails is recorded with the error, the run goes
on, and the failure is retried on the next run.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import warnings
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from advqa.data import read_image
from advqa.quality.registry import get_metric, is_available, list_metrics
from advqa.study.layout import StudyDir
from advqa.study.store import StudyLock

STUDY_METRICS = ("advdss", "aeqa", "js", "psnr", "ssim", "ms_ssim", "fsim", "gmsd", "vif", "vsi",
                 "mad", "cw_ssim", "niqe", "brisque", "piqe", "l0", "l1", "l2", "linf")


def default_metrics() -> list[str]:
    """The study metrics whose code is available offline here."""
    return [name for name in STUDY_METRICS if is_available(name)]


class ScoreStore:
    """The ``scores`` table of a study ledger; see the module docstring."""

    def __init__(self, path: Path):
        self.connection = sqlite3.connect(path)
        with self.connection:
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS scores (id TEXT NOT NULL, metric TEXT NOT NULL, "
                "value REAL, error TEXT, PRIMARY KEY (id, metric))")
            columns = {row[1] for row in self.connection.execute("PRAGMA table_info(scores)")}
            if "content" not in columns:  # ledgers of advqa before content keys
                self.connection.execute("ALTER TABLE scores ADD COLUMN content TEXT")

    def done(self, metric: str, contents: dict[str, str]) -> set[str]:
        """Ids scored without error on the content they have now."""
        query = "SELECT id, content FROM scores WHERE metric = ? AND error IS NULL"
        return {i for i, content in self.connection.execute(query, (metric,))
                if contents.get(i) == content}

    def record(self, metric: str, ids: list[str], contents: list[str],
               values: list[float | None], error: str | None = None) -> None:
        with self.connection:
            self.connection.executemany(
                "INSERT OR REPLACE INTO scores (id, metric, content, value, error) "
                "VALUES (?, ?, ?, ?, ?)",
                [(i, metric, c, v, error) for i, c, v in zip(ids, contents, values, strict=True)])

    def table(self) -> pd.DataFrame:
        rows = self.connection.execute(
            "SELECT id, metric, content, value, error FROM scores").fetchall()
        return pd.DataFrame(rows, columns=["id", "metric", "content", "value", "error"])

    def close(self) -> None:
        self.connection.close()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_hashes(study: Path, manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest with ``reference_disk``/``adversarial_disk``: the SHA-256 of the files
    as they are now ("" when missing). Scores are keyed to these, so a file edited after
    scoring is not shown with its old score; :func:`read_pair` then refuses it if it is not
    the file the manifest lists. Manifests written before advqa recorded hashes take the
    files' as their own."""
    hashed = {path: sha256_file(study / path) if (study / path).is_file() else ""
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


def read_pair(study: Path, row) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference and AE of a manifest row, each checked against the manifest's SHA-256."""
    images = []
    for path, expected in ((row.reference_path, row.reference_sha256),
                           (row.adversarial_path, row.adversarial_sha256)):
        if sha256_file(study / path) != expected:
            raise ValueError(f"{path} is not the file the manifest lists (SHA-256 differs); "
                             "rebuild the study rather than edit its images")
        images.append(read_image(study / path))
    return images[0], images[1]


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def score_batch(metric, references, adversarial) -> tuple[list[float | None], str | None]:
    with torch.no_grad():
        values = metric(adversarial, references) if metric.info.full_reference \
            else metric(adversarial)
    values = [finite_or_none(float(v)) for v in values.cpu()]
    error = "non-finite score" if any(v is None for v in values) else None
    return values, error


def score_rows(study: Path, rows: pd.DataFrame, scorers: dict, contents: dict,
               done: dict, store: ScoreStore) -> None:
    """Score one batch with every metric that still lacks it; images are read once.

    An AE whose files cannot be read, or differ from the manifest, is recorded as a
    failure for every metric, and the rest of the batch is scored.
    """
    pairs, readable = [], []
    for position, row in enumerate(rows.itertuples(index=False)):
        try:
            pairs.append(read_pair(study, row))
            readable.append(position)
        except Exception as failure:  # an unreadable AE fails itself, not the run
            warnings.warn(f"cannot score {row.id}: {failure}", stacklevel=3)
            for name in scorers:
                store.record(name, [row.id], [contents[name][row.id]], [None],
                             f"unreadable: {failure}")
    rows = rows.iloc[readable]
    if not len(rows):
        return
    references = torch.stack([pair[0] for pair in pairs])
    adversarial = torch.stack([pair[1] for pair in pairs])
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
        store.record(name, ids, [contents[name][i] for i in ids], values, error)


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
    """The classifier AEQA needs: the given one, else the study's own; logits cached."""
    if model is None:
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
    return model if isinstance(model, CachedLogits) else CachedLogits(model)


def export(study: Path, manifest: pd.DataFrame, store: ScoreStore,
           current: dict[str, dict[str, str]]) -> pd.DataFrame:
    """Every metric scored on the files the manifest lists, one column each.

    ``current`` maps a metric to its content keys; scores of other content (an AE
    since rebuilt, another classifier) are left out.
    """
    long = store.table()
    keep = [current.get(m, {}).get(i) == c
            for i, m, c in zip(long.id, long.metric, long.content, strict=True)]
    long = long[keep] if len(long) else long
    known = [name for name in STUDY_METRICS if name in set(long.metric)]
    metrics = known + sorted(set(long.metric) - set(known))
    wide = long.pivot(index="id", columns="metric", values="value").reindex(
        index=manifest.id, columns=metrics).reset_index()
    StudyDir(study).write_scores(wide)
    # The Lp metrics recompute the manifest's own distance columns: keep one copy.
    base = manifest.drop(columns=[name for name in metrics if name in manifest.columns]
                         + ["reference_disk", "adversarial_disk"])
    StudyDir(study).write_scored_manifest(base.merge(wide, on="id", how="left"))
    StudyDir(study).write_score_failures(long.dropna(subset=["error"]).drop(columns="content"))
    return wide


def current_keys(study: Path, manifest: pd.DataFrame, store: ScoreStore,
                 scorers: dict) -> dict[str, dict[str, str]]:
    """Content keys of every metric in the store or in this run: the classifier of a
    model metric is this run's, else the study's own."""
    needs_model = {info.name for info in list_metrics() if info.needs_model}
    keys = {}
    for name in set(scorers) | set(store.table().metric):
        if name not in needs_model:
            scorer = ""
        elif name in scorers:
            scorer = model_fingerprint(scorers[name].options["model"])
        else:
            scorer = study_fingerprint(study)
        keys[name] = content_keys(manifest, scorer)
    return keys


def score_study(study: str | Path, metrics=None, *, model=None,
                batch_size: int = 16, progress: bool = True) -> pd.DataFrame:
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
        Classifier for ``aeqa``; defaults to the study's model.
    batch_size : int
        AEs per batch (and per transaction).
    """
    study = Path(study)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    metrics = default_metrics() if metrics is None else list(metrics)
    StudyDir(study).require_built()
    scorers = {}
    for name in metrics:
        options = {}
        if name in ("aeqa", "js"):
            model = study_model(study, model)  # loaded once, shared by both
            options["model"] = model
        scorers[name] = get_metric(name, **options)
    with StudyLock(study):
        manifest = with_hashes(study, StudyDir(study).manifest())
        store = ScoreStore(StudyDir(study).ledger_path)
        try:
            keys = current_keys(study, manifest, store, scorers)
            done = {name: store.done(name, keys[name]) for name in scorers}
            pending = manifest[[any(i not in done[name] for name in scorers)
                                for i in manifest.id]]
            batches = range(0, len(pending), batch_size)
            for start in tqdm(batches, desc="score", unit="batch", disable=not progress):
                score_rows(study, pending.iloc[start:start + batch_size], scorers, keys, done,
                           store)
            wide = export(study, manifest, store, keys)
        finally:
            store.close()
    return wide
