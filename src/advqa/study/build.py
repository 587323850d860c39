"""``advqa build``: generate AEs over a grid, as in section 3.1 of the AdvDSS/AEQA paper.

References are resized and centre-cropped to the classifier's input, quantised
to 8 bits and saved; the *saved* reference is what gets attacked. Each AE is
quantised to 8 bits before its prediction and distances are measured, so the
manifest describes exactly the PNG on disk. AEs that do not fool the model are
filtered, as in the paper, unless ``keep_failed`` is set; references the model
already misclassifies give no successful AEs.

Work unit = (grid cell, fixed chunk of references). Chunks never change
between runs, so a resumed build computes every unit exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

import advqa
from advqa.attacks import distances
from advqa.data import SampleSet, atomic_write_bytes, preprocess, quantize, save_png
from advqa.study.grid import AttackSpec
from advqa.study.store import Ledger, write_table

MANIFEST_COLUMNS = [
    "id", "reference_path", "adversarial_path", "image", "attack", "norm", "strength_name",
    "strength", "parameters", "label", "clean_prediction", "adversarial_prediction",
    "clean_class", "adversarial_class", "clean_correct", "success", "l0", "l1", "l2", "linf",
    "steps",
]


@dataclass
class BuildSummary:
    """What a build produced; ``manifest`` holds the rows that were kept."""

    output: Path
    manifest: pd.DataFrame
    attempts: pd.DataFrame
    attempted: int
    skipped_units: int
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def success_table(self) -> pd.DataFrame:
        """Per grid cell: AEs tried, references correct, fooled, median distances of those kept."""
        keys = ["attack", "norm", "strength"]
        attempts = self.attempts.assign(correct=self.attempts.clean_correct.fillna(True))
        tried = attempts.groupby(keys).agg(
            tried=("id", "size"), correct=("correct", "sum"), fooled=("success", "sum"))
        kept = self.manifest.groupby(keys).agg(
            median_l2=("l2", "median"), median_linf=("linf", "median"))
        table = tried.join(kept).reset_index()
        # The success rate counts only references the model classified correctly.
        table["success_rate"] = table.fooled / table.correct.clip(lower=1)
        columns = ["tried", "correct", "fooled", "success_rate", "median_l2", "median_linf"]
        return table[[*keys, *columns]]


def unit_key(spec: AttackSpec, names: list[str], model_name: str, seed: int) -> str:
    payload = json.dumps([spec.attack, spec.parameters(), names, model_name, seed], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def attack_seed(seed: int, key: str) -> int:
    return (seed * 1_000_003 + int(key[:8], 16)) % (2**31)


def remove_stale_temporaries(output: Path) -> list[Path]:
    """Delete temporary files a killed run left behind; finished files are untouched."""
    stale = [path for path in output.rglob(".*.tmp") if path.is_file()]
    for path in stale:
        path.unlink()
    return stale


def save_references(samples: SampleSet, references: torch.Tensor, output: Path) -> list[str]:
    paths = []
    for sample, image in zip(samples, references, strict=True):
        relative = f"images/ref/{sample.name}.png"
        if not (output / relative).exists():
            save_png(image, output / relative)
        paths.append(relative)
    return paths


def class_name(model, index: int) -> str:
    names = getattr(getattr(model, "info", None), "class_names", ())
    return names[index] if 0 <= index < len(names) else ""


def attack_quantised(attack, model, references, labels):
    """Attack, quantise to 8 bits, then predict and measure what will be saved."""
    result = attack.run(model, references, labels)
    adversarial = quantize(result.images)
    with torch.no_grad():
        prediction = model(adversarial).argmax(dim=1)
    return adversarial, prediction, distances(references, adversarial), result.steps


@dataclass
class References:
    """The attacked references: quantised images and what is known about each."""

    samples: SampleSet
    images: torch.Tensor
    paths: list[str]
    true_labels: list[int | None]
    clean_predictions: torch.Tensor
    labels: torch.Tensor  # attacked label: the true one, else the clean prediction


def prepare_references(samples: SampleSet, model, output: Path, batch_size: int) -> References:
    info = model.info
    images = quantize(preprocess(samples, size=info.input_size, resize=info.resize_size))
    images = images.to(model.device)
    with torch.no_grad():
        clean = torch.cat([model(part).argmax(1) for part in images.split(batch_size)])
    true_labels = [sample.label for sample in samples]
    labels = torch.tensor([int(clean[i]) if label is None else label
                           for i, label in enumerate(true_labels)], device=model.device)
    paths = save_references(samples, images.cpu(), output)
    return References(samples, images, paths, true_labels, clean, labels)


def fooled(clean: int, predicted: int, label: int) -> bool:
    """An AE succeeds when it flips a *correct* prediction; a reference the model
    already gets wrong yields no adversarial example, whatever the attack did."""
    return clean == label and predicted != label


def unit_rows(references: References, model, spec, chunk, outcome, parameters) -> list[dict]:
    _, prediction, measured, steps = outcome
    rows = []
    for position, index in enumerate(chunk.tolist()):
        name = references.samples[index].name
        identifier = f"{name}__{spec.label()}"
        clean, predicted = int(references.clean_predictions[index]), int(prediction[position])
        true_label = references.true_labels[index]
        rows.append({
            "id": identifier,
            "reference_path": references.paths[index],
            "adversarial_path": f"images/adv/{identifier}.png",
            "image": name,
            "attack": spec.attack,
            "norm": spec.norm,
            "strength_name": spec.strength_name,
            "strength": spec.strength,
            "parameters": json.dumps(parameters, sort_keys=True),
            "label": true_label,
            "clean_prediction": clean,
            "adversarial_prediction": predicted,
            "clean_class": class_name(model, clean),
            "adversarial_class": class_name(model, predicted),
            "clean_correct": None if true_label is None else clean == true_label,
            "success": fooled(clean, predicted, int(references.labels[index])),
            **{key: float(measured[key][position]) for key in ("l0", "l1", "l2", "linf")},
            "steps": int(steps[position]),
        })
    return rows


def manifest_frame(rows: list[dict], keep_failed: bool) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if not keep_failed:
        table = table[table["success"].astype(bool)]
    table = table.astype({"label": "Int64", "clean_correct": "boolean", "l0": "int64"})
    return table.reset_index(drop=True)


def write_study_file(output: Path, model, grid, seed, batch_size, sources) -> None:
    settings = {
        "advqa": advqa.__version__, "python": sys.version.split()[0], "torch": torch.__version__,
        "platform": platform.platform(), "model": model.info.name, "weights": model.info.weights,
        "seed": seed, "batch_size": batch_size, "sources": sources,
        "grid": [spec.describe() for spec in grid],
    }
    study = output / "study.json"
    if study.exists():
        previous = json.loads(study.read_text())
        if previous.get("model") != model.info.name or previous.get("seed") != seed:
            raise ValueError(
                f"{output} holds a study of model {previous.get('model')!r} with seed "
                f"{previous.get('seed')}; resume with the same model and seed or use a new --out")
    atomic_write_bytes(study, json.dumps(settings, indent=2).encode())


def build_dataset(
    samples: SampleSet,
    model,
    grid: list[AttackSpec],
    output: str | Path,
    *,
    batch_size: int = 8,
    keep_failed: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> BuildSummary:
    """Attack every sample with every grid cell and write an AdvDB-style study directory.

    Parameters
    ----------
    samples : SampleSet
        References; those without a label are attacked w.r.t. the clean prediction.
    model : advqa.models.Classifier
        Source model; its ``info`` gives the input and resize sizes.
    grid : list of AttackSpec
        Grid cells, e.g. :func:`advqa.study.table2_grid`.
    output : path
        Study directory: ``images/ref``, ``images/adv``, ``manifest.{parquet,csv}``,
        ``failures.csv``, ``study.json``, ``ledger.sqlite``.
    batch_size : int
        References per work unit.
    keep_failed : bool
        Keep AEs that did not fool the model, flagged ``success=False``.
    seed : int
        Seeds every random start; each unit derives its own seed from it.
    """
    started = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if len(samples) == 0:
        raise ValueError("no readable images to attack")
    write_study_file(output, model, grid, seed, batch_size, sorted({s.source for s in samples}))
    remove_stale_temporaries(output)
    references = prepare_references(samples, model, output, batch_size)
    ledger = Ledger(output / "ledger.sqlite")
    finished = ledger.finished()
    # The ledger is read once; rows of new units join this copy, keyed by id like the
    # ledger's own table, so the manifest is rewritten without re-reading it each unit.
    recorded = {row["id"]: row for row in ledger.rows()}
    failures = [{"path": f.path, "unit": "", "reason": f.reason} for f in samples.failures]
    units = [(spec, chunk) for spec in grid
             for chunk in torch.arange(len(samples)).split(batch_size)]
    skipped = 0
    bar = tqdm(total=len(units), desc="build", unit="unit", disable=not progress)
    for spec, chunk in units:
        bar.update(1)
        names = [samples[i].name for i in chunk.tolist()]
        key = unit_key(spec, names, model.info.name, seed)
        if key in finished:
            skipped += 1
            continue
        attack = spec.build(seed=attack_seed(seed, key))
        try:
            outcome = attack_quantised(attack, model, references.images[chunk],
                                       references.labels[chunk])
        except Exception as error:  # one bad unit must not end a long run
            warnings.warn(f"{spec.label()} on {names} failed: {error}", stacklevel=2)
            failures += [{"path": name, "unit": spec.label(), "reason": str(error)}
                         for name in names]
            continue
        rows = unit_rows(references, model, spec, chunk, outcome, attack.parameters())
        for row, image in zip(rows, outcome[0].cpu(), strict=True):
            if row["success"] or keep_failed:
                save_png(image, output / row["adversarial_path"])
        ledger.record(key, spec.describe(), rows)
        recorded.update((row["id"], row) for row in rows)
        write_table(manifest_frame(list(recorded.values()), keep_failed), output / "manifest")
    bar.close()
    attempts = manifest_frame(list(recorded.values()), keep_failed=True)
    manifest = manifest_frame(list(recorded.values()), keep_failed)
    write_table(manifest, output / "manifest")
    ledger.close()
    atomic_write_bytes(output / "failures.csv",
                       pd.DataFrame(failures, columns=["path", "unit", "reason"])
                       .to_csv(index=False).encode())
    return BuildSummary(output, manifest, attempts, len(units), skipped, failures,
                        time.perf_counter() - started)
