"""The range ``high − low`` of a metric over a calibration set, computed once and cached.

The public benchmark takes min and max of each metric over the NIPS 2017
development set. Ours is computed on any calibration set (by default the
training images of the benchmark) over the images *and* their JPEG copies at
qualities 10, 30, 50, 70 and 90, so that the range spans both pristine and
visibly distorted inputs; a full-reference metric is scored on those copies
against the pristine images (an image against itself would give PSNR = ∞).

The cache is a JSON file keyed by metric name, options and a fingerprint of
the calibration images, written atomically; the benchmark keeps it in
``$ADVQA_CACHE_DIR`` (default ``~/.cache/advqa``), so a range is computed once per
metric and image set across runs. A cache that cannot be written is skipped with a
warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch

from advqa.data import atomic_write_bytes
from advqa.robustness.objective import jpeg_copy

CALIBRATION_QUALITIES = (10, 30, 50, 70, 90)


def default_cache() -> Path:
    """``$ADVQA_CACHE_DIR/metric_ranges.json`` (default directory ``~/.cache/advqa``)."""
    directory = os.environ.get("ADVQA_CACHE_DIR") or Path.home() / ".cache" / "advqa"
    return Path(directory) / "metric_ranges.json"


def fingerprint(images: torch.Tensor) -> str:
    """A short digest of a calibration batch (shape and exact values)."""
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def calibration_scores(metric, images: torch.Tensor, *, batch_size: int = 8,
                       qualities=CALIBRATION_QUALITIES) -> torch.Tensor:
    """Every finite score of ``metric`` on the calibration images and their JPEG copies."""
    values = []
    for start in range(0, len(images), batch_size):
        pristine = images[start:start + batch_size]
        copies = [jpeg_copy(pristine, quality=quality) for quality in qualities]
        with torch.no_grad():
            if metric.info.full_reference:
                values += [metric(copy, pristine) for copy in copies]
            else:
                values += [metric(batch) for batch in [pristine, *copies]]
    values = torch.cat(values).double()
    return values[torch.isfinite(values)]


def metric_range(metric, images: torch.Tensor, *, cache: str | Path | None = None,
                 batch_size: int = 8) -> tuple[float, float]:
    """``(low, high)`` of ``metric`` over the calibration images, cached in ``cache``.

    Raises
    ------
    ValueError
        When fewer than two finite scores exist or they are all equal: no range.
    """
    options = json.dumps(getattr(metric, "options", {}), sort_keys=True, default=str)
    key = f"{metric.info.name}|{options}|{fingerprint(images)}"
    stored = read_cache(cache)
    if key in stored:
        return tuple(stored[key])
    values = calibration_scores(metric, images, batch_size=batch_size)
    if len(values) < 2 or not values.max() > values.min():
        raise ValueError(f"{metric.info.name} has no range on the calibration set: "
                         f"{len(values)} finite scores, all equal or missing")
    low, high = float(values.min()), float(values.max())
    if cache is not None:
        stored = read_cache(cache)  # another worker may have added entries meanwhile
        stored[key] = [low, high]
        try:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(Path(cache), json.dumps(stored, indent=1, sort_keys=True).encode())
        except OSError as error:  # a read-only home must not stop a benchmark
            warnings.warn(f"cannot cache metric ranges in {cache}: {error}", stacklevel=2)
    return low, high


def read_cache(cache: str | Path | None) -> dict:
    if cache is None or not Path(cache).is_file():
        return {}
    try:
        return json.loads(Path(cache).read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged cache is recomputed, never trusted

