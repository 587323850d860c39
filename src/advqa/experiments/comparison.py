"""Paper value beside ours: the cells of a reproduction and the files that hold them.

Every reproduction (:mod:`advqa.experiments`) ends in :func:`write_reproduction`:

* ``comparison.csv`` and ``comparison.parquet``: one row per cell (``table``,
  ``dataset``, ``row``, ``paper``, ``ours``, ``difference``, ``unit``, ``note``);
* ``reproduction.md``: per (table, dataset) a Markdown table whose columns are headed
  ``paper``, ``ours`` and ``difference`` (ours − paper, in the cell's unit), then the
  figures and the notes that say how and why the setting differs from the paper's;
* ``reproduction.json``: the settings, package versions, data fingerprints, the files
  written and the run time.

A cell with no paper value (the paper did not report it) or no value of ours (the run
could not measure it) shows "–" and no difference: nothing is filled in.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Cell:
    """One number of a paper's table beside ours.

    ``unit`` is ``"%"`` for rates (both values in percent) or ``""`` for plain numbers;
    ``note`` says what a reader must know to compare the two (e.g. "paper: ImageNet").
    """

    table: str
    dataset: str
    row: str
    paper: float | None
    ours: float | None
    unit: str = ""
    note: str = ""

    @property
    def difference(self) -> float | None:
        if self.paper is None or self.ours is None or not math.isfinite(self.ours):
            return None
        return self.ours - self.paper


def percent(value) -> float | None:
    """A share in [0, 1] (as the tables store it) in percent; None stays None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return 100.0 * float(value)


def _format(value: float | None, unit: str, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    digits = 2 if unit == "%" else 3
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    if unit == "%":
        text += " pp" if signed else "%"
    return text


def markdown(cells: list[Cell]) -> str:
    """Markdown tables, one per (table, dataset), in the order the cells came."""
    blocks: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        blocks.setdefault((cell.table, cell.dataset), []).append(cell)
    parts = []
    for (table, dataset), members in blocks.items():
        lines = [f"### {table} — {dataset}", "", "| | paper | ours | difference | note |",
                 "|---|---:|---:|---:|---|"]
        for cell in members:
            lines.append(f"| {cell.row} | {_format(cell.paper, cell.unit)} | "
                         f"{_format(cell.ours, cell.unit)} | "
                         f"{_format(cell.difference, cell.unit, signed=True)} | {cell.note} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _versions() -> dict:
    import numpy
    import torch

    import advqa

    return {"advqa": advqa.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def write_reproduction(out: str | Path, *, name: str, title: str, command: str,
                       cells: list[Cell], settings: dict, fingerprints: dict,
                       figures: list[Path], notes: list[str], seconds: float) -> list[Path]:
    """Write the comparison tables, ``reproduction.md`` and ``reproduction.json`` into
    ``out``; returns the paths written."""
    import pandas as pd

    from advqa.data import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{**asdict(cell), "difference": cell.difference} for cell in cells],
                         columns=["table", "dataset", "row", "paper", "ours", "difference",
                                  "unit", "note"])
    written = [out / "comparison.csv", out / "comparison.parquet", out / "reproduction.md",
               out / "reproduction.json"]
    atomic_write_bytes(written[0], frame.to_csv(index=False, float_format="%.6g").encode())
    frame.to_parquet(written[1], index=False)
    date = datetime.now(UTC).isoformat(timespec="seconds")
    figure_lines = [f"![{path.stem}]({path.relative_to(out).as_posix()})" for path in figures]
    text = "\n".join([
        f"# Reproduction: {title}", "",
        f"Run {date}, {seconds / 60:.1f} min. Command:", "", "```", command, "```", "",
        "Differences are ours − paper (percentage points for rates).", "",
        markdown(cells), "", "## Figures", "", *figure_lines, "",
        "## How this run differs from the paper, and why", "",
        *[f"* {note}" for note in notes], ""])
    atomic_write_bytes(written[2], text.encode())
    record = {"name": name, "title": title, "command": command, "date": date,
              "seconds": round(seconds, 1), "settings": settings, "versions": _versions(),
              "data": fingerprints, "cells": len(cells),
              "files": [path.relative_to(out).as_posix() for path in [*written[:3], *figures]]}
    atomic_write_bytes(written[3], (json.dumps(record, indent=2, default=str) + "\n").encode())
    return written
