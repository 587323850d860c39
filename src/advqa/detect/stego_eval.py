"""The experiment of Schöttle et al. (EUSIPCO 2018) on Fashion-MNIST.

PGD (L∞, random start) attacks a natural and an adversarially trained CNN on the
test set for a grid of ε; the WS detector (:mod:`advqa.detect.ws`) is calibrated
on benign training images (threshold = largest benign statistic, so no
calibration image is flagged) and judged on the adversarial examples.

Work is split into units ``(model, ε, chunk of test images)``. Each unit's
per-image rows (predictions, attack success, WS statistic) are committed to an
SQLite :class:`~advqa.study.store.Ledger` in one transaction, so a killed run
resumes where it stopped. The rows do not depend on the threshold: the table is
computed from the ledger at the end, so re-calibrating never re-attacks.

Metrics per ``(model, ε)``, over the ``n`` attacked test images (every test image
is attacked, whatever the clean prediction, as in the paper):

``tpr``
    share of adversarial examples flagged (``p̂ > threshold``), Table II.
``flagged_and_misclassified``
    share flagged *and* misclassified by the model.
``ae_accuracy``
    the model's accuracy on the adversarial examples, no detector (Fig. 3).
``pipeline_accuracy``
    detector first, classifier on what passes (Fig. 1, Fig. 4): an adversarial
    example counts as *defended* when it is flagged (rejected) or, not flagged,
    classified correctly; ``mean(flagged | correct)``.
``benign_pipeline_accuracy``
    the same pipeline on the clean test images, where a rejection is an error:
    ``mean(~flagged & correct)``.
``benign_fpr``
    share of clean test images flagged (independent of model and ε).
``auc``
    ROC AUC of the statistic, clean test images vs adversarial examples.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from advqa.detect.ws import roc_from_scores, threshold_from_scores, ws_statistic

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MODELS",
    "StegoEvalConfig",
    "aggregate",
    "attack_unit",
    "run_stego_eval",
]

#: The paper's grid: ε ∈ {0.01, 0.02, …, 0.50}.
DEFAULT_EPS: tuple[float, ...] = tuple(round(0.01 * k, 2) for k in range(1, 51))
DEFAULT_MODELS: tuple[str, ...] = ("fashion-mnist-cnn", "fashion-mnist-cnn-adv")


@dataclass
class StegoEvalConfig:
    """Everything that defines a run; the attack settings are part of every unit key.

    ``subset`` and ``calibration`` take the first N test / training images
    (``None``: all 10,000 / 60,000). ``steps`` and ``step_size`` are PGD's
    (default step ``2.5·ε/steps``); ``target_fpr`` ``None`` is the paper's
    max-of-benign threshold.
    """

    models: Sequence[str] = DEFAULT_MODELS
    eps: Sequence[float] = DEFAULT_EPS
    subset: int | None = None
    calibration: int | None = None
    steps: int = 40
    step_size: float | None = None
    chunk_size: int = 250
    workers: int = 1
    seed: int = 0
    target_fpr: float | None = None
    histogram_eps: Sequence[float] = field(default_factory=lambda: (0.05, 0.1, 0.3))

    def attack_settings(self) -> dict:
        return {"attack": "pgd", "norm": "linf", "steps": self.steps,
                "step_size": self.step_size, "random_start": True, "seed": self.seed}

    def settings_tag(self) -> str:
        text = json.dumps(self.attack_settings(), sort_keys=True)
        return f"{zlib.crc32(text.encode()):08x}"


# --------------------------------------------------------------------------- data

def load_fashion_mnist(split: str, limit: int | None = None,
                       directory: str | Path | None = None):
    """First ``limit`` images of a Fashion-MNIST split as float ``(N, 1, 28, 28)`` and labels."""
    from advqa.data import FASHION_MNIST_DIRECTORY, load_idx

    directory = FASHION_MNIST_DIRECTORY if directory is None else Path(directory)
    if not Path(directory).is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {directory}: run "
            "'apt-get install dataset-fashion-mnist' or pass data_dir")
    images, labels = load_idx(directory, split=split)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"image count must be >= 1, got {limit}")
        images, labels = images[:limit], labels[:limit]
    return images.to(torch.float32) / 255, labels


# --------------------------------------------------------------------------- units

def default_loader(name: str):
    from advqa.models import load_classifier

    return load_classifier(name, device="cpu")


_MODELS: dict[tuple, torch.nn.Module] = {}


def _model(loader: Callable, name: str):
    key = (getattr(loader, "__module__", ""), getattr(loader, "__qualname__", repr(loader)), name)
    if key not in _MODELS:
        _MODELS[key] = loader(name)
    return _MODELS[key]


def model_fingerprint(model: torch.nn.Module) -> str:
    """First 12 hex digits of a SHA-256 over the model's state dict (names and values)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _init_worker(parent: int) -> None:
    """Pool initializer: one torch thread, and exit when the parent process dies."""
    from advqa.workers import exit_with_parent

    torch.set_num_threads(1)
    exit_with_parent(parent)  # else a killed run leaves ~1 GB workers behind


def unit_seed(seed: int, model: str, eps: float, start: int) -> int:
    """A stable per-unit seed for PGD's random start."""
    return zlib.crc32(f"{seed}|{model}|{eps:.6g}|{start}".encode()) & 0x7FFFFFFF


def attack_unit(spec: dict, images: torch.Tensor, labels: torch.Tensor,
                loader: Callable = default_loader) -> list[dict]:
    """Attack one chunk with PGD and measure the WS statistic of each result.

    ``spec`` holds ``model``, ``eps``, ``start`` (index of ``images[0]`` in the test
    set), ``steps``, ``step_size`` and ``seed``. Returns one row per image.
    """
    from advqa.attacks import get_attack

    model = _model(loader, spec["model"])
    attack = get_attack("pgd", norm="linf", eps=spec["eps"], steps=spec["steps"],
                        step_size=spec["step_size"], random_start=True,
                        seed=unit_seed(spec["seed"], spec["model"], spec["eps"], spec["start"]))
    result = attack.run(model, images, labels)
    statistic = ws_statistic(result.images.cpu())
    rows = []
    for offset in range(images.shape[0]):
        index = spec["start"] + offset
        rows.append({
            "id": _row_id(spec, index),
            "model": spec["model"], "eps": float(spec["eps"]), "index": index,
            "label": int(labels[offset]),
            "clean_prediction": int(result.clean_prediction[offset]),
            "adversarial_prediction": int(result.adversarial_prediction[offset]),
            "success": bool(result.success[offset]),
            "linf": float(result.linf[offset]),
            "statistic": float(statistic[offset]),
        })
    return rows


def _row_id(spec: dict, index: int) -> str:
    return f"{spec['model']}|{spec['eps']:.6g}|{index}|{spec.get('tag', '')}"


def _run_unit(args):
    spec, images, labels, loader = args
    return spec, attack_unit(spec, images, labels, loader)


# --------------------------------------------------------------------------- tables

def aggregate(samples: pd.DataFrame, benign_statistic: np.ndarray, threshold: float
              ) -> pd.DataFrame:
    """The results table (one row per model and ε) from per-image ledger rows."""
    benign_flagged = benign_statistic > threshold
    rows = []
    for (model, eps), group in samples.groupby(["model", "eps"], sort=True):
        group = group.sort_values("index")
        flagged = group["statistic"].to_numpy() > threshold
        label = group["label"].to_numpy()
        correct = group["adversarial_prediction"].to_numpy() == label
        clean_correct = group["clean_prediction"].to_numpy() == label
        benign = benign_flagged[group["index"].to_numpy()]
        rows.append({
            "model": model, "eps": float(eps), "n": len(group),
            "tpr": flagged.mean(),
            "flagged_and_misclassified": (flagged & ~correct).mean(),
            "ae_accuracy": correct.mean(),
            "pipeline_accuracy": (flagged | correct).mean(),
            "attack_success_rate": group["success"].to_numpy().astype(bool).mean(),
            "clean_accuracy": clean_correct.mean(),
            "benign_pipeline_accuracy": (~benign & clean_correct).mean(),
            "benign_fpr": benign.mean(),
            "auc": roc_from_scores(benign_statistic[group["index"].to_numpy()],
                                   group["statistic"].to_numpy()).auc,
            "threshold": threshold,
            "mean_statistic": group["statistic"].mean(),
            "max_linf": group["linf"].max(),
        })
    return pd.DataFrame(rows)


def table_ii(results: pd.DataFrame) -> pd.DataFrame:
    """TPR in the shape of the paper's Table II: one row per model, one column per ε."""
    wide = results.pivot(index="model", columns="eps", values="tpr")
    wide.columns = [f"{eps:.3f}" for eps in wide.columns]
    return wide.reset_index()


def _crossing(eps: np.ndarray, values: np.ndarray, level: float = 0.5) -> float | None:
    above = np.nonzero(values >= level)[0]
    return float(eps[above[0]]) if above.size else None


def plot_results(results: pd.DataFrame, samples: pd.DataFrame, benign_statistic: np.ndarray,
                 threshold: float, out: Path, histogram_eps: Sequence[float]) -> list[Path]:
    """Figures 2–4 of the paper plus statistic histograms; returns the PNG paths."""
    from advqa.plotting import legend, new_figure, subplots

    paths = []
    styles = [":", "-.", "--", "-"]

    figure = new_figure(6, 4)
    axis = subplots(figure)[0][0]
    for number, (model, group) in enumerate(results.groupby("model", sort=False)):
        axis.plot(group["eps"], group["tpr"], marker="o", markersize=3, label=model)
        cross = _crossing(group["eps"].to_numpy(), group["tpr"].to_numpy())
        if cross is not None:
            axis.axvline(cross, color="grey", linestyle=styles[number % 4], linewidth=1)
    axis.set(xlabel="ε (L∞, [0, 1] scale)", ylabel="true positive rate",
             title="WS detector: share of PGD examples flagged", ylim=(-0.02, 1.02))
    legend(axis)
    paths.append(_save(figure, out / "fig2_tpr.png"))

    figure = new_figure(11, 4)
    axes = subplots(figure, 1, 2, sharey=True)[0]
    for model, group in results.groupby("model", sort=False):
        axes[0].plot(group["eps"], group["ae_accuracy"], marker="o", markersize=3, label=model)
        axes[1].plot(group["eps"], group["pipeline_accuracy"], marker="o", markersize=3,
                     label=f"{model} + WS detector")
        axes[1].plot(group["eps"], group["ae_accuracy"], linestyle=":", color="grey",
                     linewidth=1, label=f"{model} alone")
    axes[0].set(xlabel="ε", ylabel="accuracy on PGD examples",
                title="Classifier alone (cf. Fig. 3)", ylim=(-0.02, 1.02))
    axes[1].set(xlabel="ε", title="Detector, then classifier (cf. Fig. 4)")
    for axis in axes:
        legend(axis)
    paths.append(_save(figure, out / "fig3_4_accuracy.png"))

    available = np.array(sorted(samples["eps"].unique()))
    chosen = sorted({float(available[np.abs(available - e).argmin()]) for e in histogram_eps})
    models = list(results["model"].unique())
    figure = new_figure(3.6 * len(chosen), 2.8 * len(models))
    axes = subplots(figure, len(models), len(chosen))
    for row, model in enumerate(models):
        for column, eps in enumerate(chosen):
            axis = axes[row][column]
            adversarial = samples[(samples["model"] == model) & (samples["eps"] == eps)]
            benign = benign_statistic[adversarial["index"].to_numpy()]
            values = np.concatenate([benign, adversarial["statistic"].to_numpy()])
            bins = np.linspace(values.min(), values.max(), 40)
            axis.hist(benign, bins=bins, alpha=0.6, label="benign (test)")
            axis.hist(adversarial["statistic"], bins=bins, alpha=0.6, label="PGD")
            axis.axvline(threshold, color="k", linestyle="--", linewidth=1, label="threshold")
            axis.set_title(f"{model}, ε={eps:g}", fontsize="medium")
            axis.set_xlabel("p̂")
    legend(axes[0][0], fontsize="x-small")
    paths.append(_save(figure, out / "histograms.png"))

    figure = new_figure(4.4 * len(models), 4)
    axes = subplots(figure, 1, len(models))
    for column, model in enumerate(models):
        axis = axes[0][column]
        for eps in chosen:
            adversarial = samples[(samples["model"] == model) & (samples["eps"] == eps)]
            curve = roc_from_scores(benign_statistic[adversarial["index"].to_numpy()],
                                    adversarial["statistic"].to_numpy())
            axis.plot(curve.fpr, curve.tpr, label=f"ε={eps:g} (AUC {curve.auc:.3f})")
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axis.set(xlabel="false-positive rate (clean test images)", ylabel="true positive rate",
                 title=f"ROC of the WS statistic: {model}")
        legend(axis, fontsize="x-small")
    paths.append(_save(figure, out / "roc.png"))
    return paths


def _save(figure, path: Path) -> Path:
    from advqa.plotting import save_figure

    return save_figure(figure, path)


# --------------------------------------------------------------------------- driver

def run_stego_eval(out: str | Path, config: StegoEvalConfig | None = None, *,
                   loader: Callable = default_loader, data_dir: str | Path | None = None,
                   progress: bool = True, plots: bool = True) -> pd.DataFrame:
    """Run (or resume) the experiment in ``out`` and write its tables and figures.

    Parameters
    ----------
    out : path
        Run directory: ``ledger.sqlite`` (finished units), ``samples.parquet``
        (per-image rows), ``results.{parquet,csv}`` (one row per model and ε),
        ``table_ii.{parquet,csv}`` (TPR, models × ε), ``calibration.json``,
        ``fig2_tpr.png``, ``fig3_4_accuracy.png``, ``histograms.png``, ``roc.png``.
    config : StegoEvalConfig, optional
        Models, ε grid, subsets, PGD settings, workers, seed.
    loader : callable, optional
        ``name -> model`` (default :func:`advqa.models.load_classifier` on CPU).
        With ``workers > 1`` it must be importable by name (a module-level function),
        because workers are spawned processes.
    data_dir : path, optional
        Folder of Fashion-MNIST IDX files; default the Debian package's.
    progress : bool
        Show a tqdm bar over units.

    Returns
    -------
    pandas.DataFrame
        The results table.

    Notes
    -----
    Units finished in an earlier run (same model weights, ε, chunk and attack
    settings) are not recomputed; unit keys hold a hash of the attack settings
    and a SHA-256 fingerprint of each model's state dict, so retrained weights
    are new work. With ``workers > 1`` units run in a spawned
    :class:`~concurrent.futures.ProcessPoolExecutor`, each worker with one torch
    thread (PGD on small batches does not scale with intra-op threads, and the
    attack holds the GIL between small ops, so processes beat threads); the
    parent alone writes the ledger. Workers exit when the parent dies, even by
    ``kill -9`` (:func:`advqa.workers.exit_with_parent`).
    """
    from advqa.study.store import Ledger, write_table

    config = StegoEvalConfig() if config is None else config
    if config.workers < 1:
        raise ValueError(f"workers must be >= 1, got {config.workers}")
    if config.chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {config.chunk_size}")
    if config.steps < 1:  # checked here, not in every unit: a failing unit stops the run
        raise ValueError(f"steps must be >= 1, got {config.steps}")
    if config.step_size is not None and not (0 < config.step_size < math.inf):
        raise ValueError(f"step_size must be a finite number > 0, got {config.step_size}")
    if not config.models:
        raise ValueError("no models given")
    eps_grid = sorted({round(float(e), 6) for e in config.eps})
    if not eps_grid or any(not (0 < e <= 1) or not math.isfinite(e) for e in eps_grid):
        raise ValueError(f"eps must be a non-empty list of numbers in (0, 1], got {config.eps}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    calibration_images, _ = load_fashion_mnist("train", config.calibration, data_dir)
    test_images, test_labels = load_fashion_mnist("test", config.subset, data_dir)
    calibration_statistic = ws_statistic(calibration_images).numpy()
    threshold = threshold_from_scores(calibration_statistic, config.target_fpr)
    benign_statistic = ws_statistic(test_images).numpy()
    calibration = {
        "threshold": threshold, "target_fpr": config.target_fpr,
        "calibration_images": len(calibration_images),
        "calibration_fpr": float((calibration_statistic > threshold).mean()),
        "test_images": len(test_images),
        "benign_test_fpr": float((benign_statistic > threshold).mean()),
        "config": {**asdict(config), "eps": eps_grid},
    }

    tag = config.settings_tag()
    fingerprints = {model: model_fingerprint(_model(loader, model)) for model in config.models}
    calibration["model_fingerprints"] = fingerprints
    units = []
    for model in config.models:
        model_tag = f"{tag}-{fingerprints[model]}"
        for eps in eps_grid:
            for start in range(0, len(test_images), config.chunk_size):
                stop = min(start + config.chunk_size, len(test_images))
                spec = {"model": model, "eps": eps, "start": start, "stop": stop,
                        "steps": config.steps, "step_size": config.step_size,
                        "seed": config.seed, "tag": model_tag}
                key = f"{model}|eps={eps:.6g}|{start}-{stop}|{model_tag}"
                units.append((key, spec))

    ledger = Ledger(out / "ledger.sqlite")
    try:
        done = ledger.finished()
        pending = [(key, spec) for key, spec in units if key not in done]
        _execute(pending, ledger, test_images, test_labels, loader, config.workers, progress)
        keep = {_row_id(spec, index)
                for _, spec in units for index in range(spec["start"], spec["stop"])}
        rows = [row for row in ledger.rows() if row["id"] in keep]
    finally:
        ledger.close()

    samples = pd.DataFrame(rows).drop_duplicates("id", keep="last")
    samples = samples.sort_values(["model", "eps", "index"]).reset_index(drop=True)
    order = {name: number for number, name in enumerate(config.models)}
    results = aggregate(samples, benign_statistic, threshold)
    results = results.sort_values(["model", "eps"], key=lambda column: column.map(
        order) if column.name == "model" else column).reset_index(drop=True)

    from advqa.data import atomic_write_bytes

    atomic_write_bytes(out / "calibration.json",
                       json.dumps(calibration, indent=2, default=str).encode())
    atomic_write_bytes(out / "samples.parquet", samples.to_parquet(index=False))
    write_table(results, out / "results")
    write_table(table_ii(results), out / "table_ii")
    if plots:
        plot_results(results, samples, benign_statistic, threshold, out, config.histogram_eps)
    return results


def _execute(pending, ledger, images, labels, loader, workers, progress) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc="stego-eval units", unit="unit", disable=not progress)

    def arguments(spec):
        return (spec, images[spec["start"]:spec["stop"]].clone(),
                labels[spec["start"]:spec["stop"]].clone(), loader)

    try:
        if workers == 1:
            for key, spec in pending:
                _, rows = _run_unit(arguments(spec))
                ledger.record(key, spec, rows)
                bar.update()
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                 initializer=_init_worker, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_run_unit, arguments(spec)): key for key, spec in pending}
            try:
                for future in as_completed(futures):
                    spec, rows = future.result()
                    ledger.record(futures[future], spec, rows)
                    bar.update()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()
