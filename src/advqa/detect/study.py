"""How visible a study's AEs are to the steganalysis (WS) detector: the report's detection section.

For every reference and AE of a study directory the WS statistic
(:func:`advqa.detect.ws.ws_statistic`) is computed once. The detector's threshold
is the largest statistic over the study's references, the paper's calibration
(no false positive on benign images); per grid cell (attack, norm, strength) we
report the share of AEs flagged and the ROC AUC of the statistic separating AEs
from references. The references are both the calibration and the benign test
set here, so the false-positive rate is 0 by construction and the detection
rates are optimistic for a detector calibrated elsewhere; the AUC does not
depend on the threshold.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from advqa.data import read_image
from advqa.study.layout import StudyDir

CELL = ["attack", "norm", "strength"]


def statistics_of(study: StudyDir, paths, batch_size: int) -> list[float]:
    from advqa.detect.ws import ws_statistic

    values = []
    for start in range(0, len(paths), batch_size):
        images = torch.stack([read_image(study.resolve(path))
                              for path in paths[start:start + batch_size]])
        values += ws_statistic(images).tolist()
    return values


def detect_study(study: str | Path, *, batch_size: int = 32) -> pd.DataFrame:
    """Write ``detection.{parquet,csv}`` (per AE) and ``detection_summary.{parquet,csv}``
    (per grid cell) into the study; return the summary.

    Parameters
    ----------
    study : path
        A study directory written by ``advqa build``.
    batch_size : int
        Images per batch.
    """
    study = StudyDir(study)
    manifest = study.manifest()
    if manifest.empty:
        raise ValueError(f"{study.manifest_path} has no AEs to test")
    references = sorted(set(manifest.reference_path))
    benign = dict(zip(references, statistics_of(study, references, batch_size), strict=True))
    adversarial = statistics_of(study, list(manifest.adversarial_path), batch_size)
    threshold = max(benign.values())
    per_ae = manifest[["id", *CELL, "reference_path"]].assign(
        ws=adversarial, reference_ws=manifest.reference_path.map(benign).to_numpy())
    per_ae["flagged"] = per_ae.ws > threshold
    summary = summarise(per_ae, list(benign.values()), threshold)
    study.write_detection(per_ae, summary)
    return summary


def summarise(per_ae: pd.DataFrame, benign: list[float], threshold: float) -> pd.DataFrame:
    rows = []
    for cell, group in per_ae.groupby(CELL, sort=True):
        labels = [0] * len(benign) + [1] * len(group)
        auc = roc_auc_score(labels, benign + list(group.ws))
        rows.append({**dict(zip(CELL, cell, strict=True)), "aes": len(group),
                     "detection_rate": float(group.flagged.mean()), "auc": float(auc),
                     "median_ws": float(group.ws.median())})
    summary = pd.DataFrame(rows)
    summary["threshold"] = threshold
    summary["references"] = len(benign)
    return summary
