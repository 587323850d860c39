"""advqa's metric defaults against the official MATLAB values of IQA-PyTorch's calibration set.

IQA-PyTorch (pyiqa) ships five TID2013 pairs with the values of the authors' original
releases, run in MATLAB on ``rgb2gray`` of the uint8 files (``ResultsCalibra/``:
``ref_dir/``, ``dist_dir/``, ``results_official.csv``; see its
``ResultsCalibra.md`` for how each was run). Those images are not redistributed with
advqa (TID2013's licence), so this is a script, not a test: point it at a checkout::

    git clone --depth 1 https://github.com/chaofengc/IQA-PyTorch
    python benchmarks/official_values.py IQA-PyTorch/ResultsCalibra [--markdown]

Only numbers are read from that checkout (the CSV and the BMP files); no pyiqa code
runs. Rows whose "official" value is not MATLAB output of the original release are
flagged: MAD (pyiqa's own port: "the original MAD matlab script is not available") and
VSI (the IQA-Optimization port: "official matlab code is not available").
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from advqa.quality import get_metric

# advqa name → (row of results_official.csv, whether that row is the original release)
ROWS = {
    "psnr": ("psnr", True), "ssim": ("ssim", True), "ms_ssim": ("ms_ssim", True),
    "cw_ssim": ("cw_ssim", True), "fsim": ("fsim", True), "gmsd": ("gmsd", True),
    "vif": ("vif", True), "vsi": ("vsi", False), "mad": ("mad", False),
    "niqe": ("niqe", True), "brisque": ("brisque", True), "piqe": ("piqe", True),
}


def _load(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(array.transpose(2, 0, 1).copy())[None].double() / 255


def compare(folder: Path, metrics: list[str]) -> list[dict]:
    table = folder / "results_official.csv"
    if not table.is_file():
        raise SystemExit(f"{table} not found: pass IQA-PyTorch's ResultsCalibra folder")
    with table.open() as handle:
        rows = list(csv.reader(handle))
    images = rows[0][1:]
    official = {row[0]: [float(value) for value in row[1:]] for row in rows[1:]}
    results = []
    for name in metrics:
        row, original = ROWS[name]
        metric = get_metric(name)
        for image, expected in zip(images, official[row], strict=True):
            reference, distorted = _load(folder / "ref_dir" / image), _load(
                folder / "dist_dir" / image)
            with torch.no_grad():
                ours = (metric(distorted, reference) if metric.info.full_reference
                        else metric(distorted)).item()
            error = abs(ours - expected) / abs(expected) if expected else float("nan")
            results.append(dict(metric=name, image=image, ours=ours, official=expected,
                                relative=error, original_release=original))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="IQA-PyTorch's ResultsCalibra folder")
    parser.add_argument("--metrics", default=",".join(ROWS),
                        help="comma-separated advqa metric names (default: all with a row)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    arguments = parser.parse_args(argv)
    metrics = [name.strip() for name in arguments.metrics.split(",") if name.strip()]
    unknown = sorted(set(metrics) - set(ROWS))
    if unknown:
        parser.error(f"no official row for {', '.join(unknown)}; known: {', '.join(ROWS)}")
    results = compare(arguments.folder, metrics)
    images = list(dict.fromkeys(result["image"] for result in results))
    if arguments.markdown:
        print("| metric | " + " | ".join(Path(image).stem for image in images)
              + " | max rel. diff | official = original release |")
        print("| --- |" + " ---: |" * (len(images) + 1) + " --- |")
    for name in metrics:
        cells = [result for result in results if result["metric"] == name]
        worst = max(cell["relative"] for cell in cells)
        pairs = [f"{cell['ours']:.5g} / {cell['official']:.5g}" for cell in cells]
        flag = "yes" if cells[0]["original_release"] else "no (a port)"
        if arguments.markdown:
            print(f"| {name} | " + " | ".join(pairs) + f" | {100 * worst:.2f}% | {flag} |")
        else:
            print(f"{name:8s} max {100 * worst:6.2f}%  " + "  ".join(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
