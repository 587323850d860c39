"""Folder in, folder out: attack every image of a sample set and write the AEs as PNGs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from advqa.attacks import scale_note
from advqa.data import (
    LoadFailure,
    SampleSet,
    atomic_write_bytes,
    encode_png,
    preprocess_batch,
    quantize,
)
from advqa.study.build import attack_quantised, check_labels, fooled
from advqa.study.store import write_table

__all__ = ["FolderAttackSummary", "attack_folder"]

#: Sub-folder of an ``attack_folder`` output holding the references the AEs were made from.
REFERENCES = "references"
FAILURES = "failures.csv"


@dataclass(frozen=True)
class FolderAttackSummary:
    """What :func:`attack_folder` did.

    Attributes
    ----------
    output : Path
        The output folder.
    attacked : int
        Images attacked (rows of ``results``).
    fooled : int
        Attacked images whose correct prediction the AE flipped.
    failures : list of LoadFailure
        Files skipped, when loading (``samples.failures``) or decoding.
    budget : str
        What the attack's ε amounts to on the model's input (empty for attacks
        without an ε), e.g. the per-component equivalent of an L2 budget.
    """

    output: Path
    attacked: int
    fooled: int
    failures: list[LoadFailure]
    budget: str = ""

    @property
    def failures_path(self) -> Path:
        """The CSV listing the skipped files (``path, reason``), written on every run."""
        return self.output / FAILURES


def attack_folder(attack, model, samples: SampleSet, output: str | Path, *,
                  batch_size: int = 8, progress: bool = True) -> FolderAttackSummary:
    """Attack every sample, batch by batch, and write the AEs and a results table.

    Parameters
    ----------
    attack : advqa.attacks.Attack
    model : advqa.models classifier
        Its ``info.input_size`` and ``info.resize_size`` decide the preprocessing.
    samples : SampleSet
        Usually file-backed samples from :func:`advqa.data.load_folder`.
    output : str or Path
        Folder for ``<name>.png`` (the AE: lossless, 8-bit, what was measured),
        ``references/<name>.png`` (the resized, centre-cropped, quantised input the AE
        was made from, so that ``advqa score references/<name>.png <name>.png`` compares
        like with like), ``results.{parquet,csv}`` (with both paths) and
        ``failures.csv`` (``path, reason``).
    batch_size : int, optional
        Images decoded, preprocessed and attacked together.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    FolderAttackSummary

    Warns
    -----
    ImageLoadWarning
        For each file whose pixels fail to decode; it is skipped, listed in
        ``failures.csv``, and the run goes on.

    Notes
    -----
    Images are decoded one batch at a time (:func:`advqa.data.preprocess_batch`),
    so memory holds one batch of model inputs and one decoded image, whatever
    the folder's size. Unlabelled images are attacked against the model's clean
    prediction.
    """
    from tqdm.auto import tqdm

    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    output = Path(output)
    if any(sample.path is not None and sample.path.resolve().parent == output.resolve()
           for sample in samples):
        raise ValueError(f"{output} holds the input images: AEs named after them would "
                         "overwrite them; write to another folder")
    check_labels(samples, model)
    budget = budget_note(attack, model)
    records, failures = [], list(samples.failures)
    starts = range(0, len(samples), batch_size)
    for start in tqdm(starts, desc=attack.name, unit="batch", disable=not progress):
        batch = preprocess_batch(samples[start:start + batch_size],
                                 size=model.info.input_size, resize=model.info.resize_size)
        failures.extend(batch.failures)
        if batch.samples:
            records.extend(_attack_batch(attack, model, batch, output))
    write_table(pd.DataFrame(records), output / "results")
    table = pd.DataFrame([{"path": f.path, "reason": f.reason} for f in failures],
                         columns=["path", "reason"])
    atomic_write_bytes(output / FAILURES, table.to_csv(index=False).encode())
    return FolderAttackSummary(output, len(records),
                               sum(record["success"] for record in records), failures, budget)


def budget_note(attack, model) -> str:
    """What the attack's ε means on the model's input; warns when it is a whole-image change."""
    parameters = attack.parameters()
    if "eps" not in parameters or "norm" not in parameters:
        return ""
    size = model.info.input_size
    text, suspect = scale_note(parameters["norm"], parameters["eps"], (3, size, size))
    if suspect:
        warnings.warn(text, stacklevel=3)
    return text


def _attack_batch(attack, model, batch, output: Path) -> list[dict]:
    images = quantize(batch.images).to(model.device)
    with torch.no_grad():
        clean = model(images).argmax(1)
    labels = torch.tensor([p if s.label is None else s.label
                           for s, p in zip(batch.samples, clean.tolist(), strict=True)],
                          device=model.device)
    adversarial, predicted, measured, steps = attack_quantised(attack, model, images, labels)
    records = []
    for index, sample in enumerate(batch.samples):
        atomic_write_bytes(output / f"{sample.name}.png", encode_png(adversarial[index].cpu()))
        atomic_write_bytes(output / REFERENCES / f"{sample.name}.png",
                           encode_png(images[index].cpu()))
        records.append({
            "image": sample.name, "reference_path": f"{REFERENCES}/{sample.name}.png",
            "adversarial_path": f"{sample.name}.png",
            "label": sample.label, "clean_prediction": int(clean[index]),
            "adversarial_prediction": int(predicted[index]),
            "success": fooled(int(clean[index]), int(predicted[index]), int(labels[index])),
            "steps": int(steps[index]),
            **{name: float(values[index]) for name, values in measured.items()}})
    return records
