"""The experiment of Schöttle et al. (EUSIPCO 2018) on Fashion-MNIST.

PGD (L∞, random start) attacks a natural and an adversarially trained CNN on the
test set for a grid of ε; the WS detector (:mod:`advqa.detect.ws`) is calibrated
on benign training images (threshold = largest benign statistic, so no
calibration image is flagged) and judged on the adversarial examples.

Work is split into units ``(model, ε, chunk of test images)`` run by the job
engine (:mod:`advqa.jobs`: here, in local processes or on a Dask cluster). Each
unit's per-image rows (predictions, attack success, WS statistic) are committed to
the run's :class:`~advqa.jobs.Ledger` in one transaction, so a killed run resumes
where it stopped. The rows do not depend on the threshold: the table is
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from advqa.detect.ws import roc_from_scores, threshold_from_scores, ws_statistic
from advqa.jobs import Ledger, LocalExecutor, Unit, run_units, unit_key, unit_seed, worker_cache

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MODELS",
    "StegoEvalConfig",
    "aggregate",
    "attack_unit",
    "run_stego_eval",
    "stego_unit",
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
    max-of-benign threshold. Where the units run is not part of the settings: see
    ``run_stego_eval(executor=...)``.
    """

    models: Sequence[str] = DEFAULT_MODELS
    eps: Sequence[float] = DEFAULT_EPS
    subset: int | None = None
    calibration: int | None = None
    steps: int = 40
    step_size: float | None = None
    chunk_size: int = 250
    seed: int = 0
    target_fpr: float | None = None
    histogram_eps: Sequence[float] = field(default_factory=lambda: (0.05, 0.1, 0.3))

    def attack_settings(self) -> dict:
        return {"attack": "pgd", "norm": "linf", "steps": self.steps,
                "step_size": self.step_size, "random_start": True, "seed": self.seed}

    def settings_tag(self) -> str:
        return unit_key(self.attack_settings(), length=8)


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


def model_fingerprint(model: torch.nn.Module) -> str:
    """First 12 hex digits of a SHA-256 over the model's state dict (names and values)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def attack_unit(spec: dict, images: torch.Tensor, labels: torch.Tensor,
                loader: Callable = default_loader) -> list[dict]:
    """Attack one chunk with PGD and measure the WS statistic of each result.

    ``spec`` holds ``model``, ``eps``, ``start`` (index of ``images[0]`` in the test
    set), ``steps``, ``step_size`` and ``seed`` (the unit's own, :func:`advqa.jobs.unit_seed`
    of the run's seed and the unit's key). Returns one row per image.
    """
    from advqa.attacks import get_attack

    model = worker_cache(loader, spec["model"])
    attack = get_attack("pgd", norm="linf", eps=spec["eps"], steps=spec["steps"],
                        step_size=spec["step_size"], random_start=True, seed=spec["seed"])
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


def stego_unit(spec: dict, *, images: torch.Tensor, labels: torch.Tensor,
               loader: Callable) -> list[dict]:
    """The job engine's unit: :func:`attack_unit` on the unit's chunk of the test set
    (the whole set is sent to each worker once)."""
    chunk = slice(spec["start"], spec["stop"])
    return attack_unit(spec, images[chunk], labels[chunk], loader)


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
                   executor=None, progress: bool = True, plots: bool = True) -> pd.DataFrame:
    """Run (or resume) the experiment in ``out`` and write its tables and figures.

    Parameters
    ----------
    out : path
        Run directory: ``ledger.sqlite`` (finished units), ``samples.parquet``
        (per-image rows), ``results.{parquet,csv}`` (one row per model and ε),
        ``table_ii.{parquet,csv}`` (TPR, models × ε), ``calibration.json``,
        ``fig2_tpr.png``, ``fig3_4_accuracy.png``, ``histograms.png``, ``roc.png``.
    config : StegoEvalConfig, optional
        Models, ε grid, subsets, PGD settings, seed.
    loader : callable, optional
        ``name -> model`` (default :func:`advqa.models.load_classifier` on CPU). For
        the ``process`` and ``dask`` executors it must be importable by name (a
        module-level function): workers are other processes.
    data_dir : path, optional
        Folder of Fashion-MNIST IDX files; default the Debian package's.
    executor : advqa.jobs.Executor, optional
        Where units run (:func:`advqa.jobs.make_executor`); in this process by default.
    progress : bool
        Show a tqdm bar over units.

    Returns
    -------
    pandas.DataFrame
        The results table.

    Raises
    ------
    RuntimeError
        When units failed (after the finished ones were committed): the table would
        be incomplete. Re-running retries them.

    Notes
    -----
    Units finished in an earlier run (same model weights, ε, chunk and attack
    settings) are not recomputed; unit keys hold a hash of the attack settings
    and a SHA-256 fingerprint of each model's state dict, so retrained weights
    are new work. Each unit's PGD seed derives from ``config.seed`` and its key, so
    the rows do not depend on the executor or the number of workers.
    """
    config = StegoEvalConfig() if config is None else config
    check_config(config)
    eps_grid = sorted({round(float(e), 6) for e in config.eps})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    calibration_images, _ = load_fashion_mnist("train", config.calibration, data_dir)
    test_images, test_labels = load_fashion_mnist("test", config.subset, data_dir)
    calibration_statistic = ws_statistic(calibration_images).numpy()
    threshold = threshold_from_scores(calibration_statistic, config.target_fpr)
    benign_statistic = ws_statistic(test_images).numpy()
    fingerprints = {model: model_fingerprint(worker_cache(loader, model))
                    for model in config.models}
    calibration = {
        "threshold": threshold, "target_fpr": config.target_fpr,
        "calibration_images": len(calibration_images),
        "calibration_fpr": float((calibration_statistic > threshold).mean()),
        "test_images": len(test_images),
        "benign_test_fpr": float((benign_statistic > threshold).mean()),
        "config": {**asdict(config), "eps": eps_grid}, "model_fingerprints": fingerprints,
    }
    units = plan(config, eps_grid, len(test_images), fingerprints)
    with Ledger(out / "ledger.sqlite", "stego-eval") as ledger:
        report = run_units(ledger, units, stego_unit, executor=executor or LocalExecutor(),
                           shared={"images": test_images, "labels": test_labels,
                                   "loader": loader},
                           progress=progress, description="stego-eval units")
        keep = {_row_id(unit.spec, index)
                for unit in units for index in range(unit.spec["start"], unit.spec["stop"])}
        rows = [row for row in ledger.rows() if row["id"] in keep]
    if report.failures:
        raise RuntimeError(f"{len(report.failures)} of {report.total} units failed (e.g. "
                           f"{report.failures[0].error}); the others are saved: re-run to "
                           "retry them")
    results, samples = tables(rows, config, benign_statistic, threshold)
    write_outputs(out, calibration, samples, results)
    if plots:
        plot_results(results, samples, benign_statistic, threshold, out, config.histogram_eps)
    return results


def check_config(config: StegoEvalConfig) -> None:
    """Refuse settings that would fail every unit, before any work."""
    if config.chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {config.chunk_size}")
    if config.steps < 1:
        raise ValueError(f"steps must be >= 1, got {config.steps}")
    if config.step_size is not None and not (0 < config.step_size < math.inf):
        raise ValueError(f"step_size must be a finite number > 0, got {config.step_size}")
    if not config.models:
        raise ValueError("no models given")
    eps = [round(float(e), 6) for e in config.eps]
    if not eps or any(not (0 < e <= 1) or not math.isfinite(e) for e in eps):
        raise ValueError(f"eps must be a non-empty list of numbers in (0, 1], got {config.eps}")


def plan(config: StegoEvalConfig, eps_grid: list[float], count: int,
         fingerprints: dict[str, str]) -> list[Unit]:
    """One unit per (model, ε, chunk of ``chunk_size`` test images)."""
    tag = config.settings_tag()
    units = []
    for model in config.models:
        model_tag = f"{tag}-{fingerprints[model]}"
        for eps in eps_grid:
            for start in range(0, count, config.chunk_size):
                stop = min(start + config.chunk_size, count)
                key = unit_key("stego-eval", model, f"{eps:.6g}", start, stop, model_tag)
                spec = {"model": model, "eps": eps, "start": start, "stop": stop,
                        "steps": config.steps, "step_size": config.step_size,
                        "seed": unit_seed(config.seed, key), "tag": model_tag}
                units.append(Unit(key, spec, (spec,)))
    return units


def tables(rows: list[dict], config: StegoEvalConfig, benign_statistic: np.ndarray,
           threshold: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The results table (models in the order given) and the per-image samples."""
    samples = pd.DataFrame(rows).drop_duplicates("id", keep="last")
    samples = samples.sort_values(["model", "eps", "index"]).reset_index(drop=True)
    order = {name: number for number, name in enumerate(config.models)}
    results = aggregate(samples, benign_statistic, threshold)
    results = results.sort_values(["model", "eps"], key=lambda column: column.map(
        order) if column.name == "model" else column).reset_index(drop=True)
    return results, samples


def write_outputs(out: Path, calibration: dict, samples: pd.DataFrame,
                  results: pd.DataFrame) -> None:
    from advqa.data import atomic_write_bytes
    from advqa.study.store import write_table

    atomic_write_bytes(out / "calibration.json",
                       json.dumps(calibration, indent=2, default=str).encode())
    atomic_write_bytes(out / "samples.parquet", samples.to_parquet(index=False))
    write_table(results, out / "results")
    write_table(table_ii(results), out / "table_ii")
