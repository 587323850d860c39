"""Folder in, folder out: attack every image of a sample set and write the AEs as PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from advqa.data import (
    LoadFailure,
    SampleSet,
    atomic_write_bytes,
    encode_png,
    preprocess_batch,
    quantize,
)
from advqa.study.build import attack_quantised, fooled
from advqa.study.store import write_table

__all__ = ["FolderAttackSummary", "attack_folder"]


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
    """

    output: Path
    attacked: int
    fooled: int
    failures: list[LoadFailure]


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
        Folder for ``<name>.png`` (lossless, 8-bit, what was measured),
        ``results.{parquet,csv}`` and ``failures.csv`` (``path, reason``).
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

    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    output = Path(output)
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
    atomic_write_bytes(output / "failures.csv", table.to_csv(index=False).encode())
    return FolderAttackSummary(output, len(records),
                               sum(record["success"] for record in records), failures)


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
        records.append({
            "image": sample.name, "label": sample.label, "clean_prediction": int(clean[index]),
            "adversarial_prediction": int(predicted[index]),
            "success": fooled(int(clean[index]), int(predicted[index]), int(labels[index])),
            "steps": int(steps[index]),
            **{name: float(values[index]) for name, values in measured.items()}})
    return records
