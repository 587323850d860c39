"""How the job engine's executors compare: the same jobs on local, process and Dask.

Two jobs, each run from scratch once per engine, in one run of this script:

* ``score``: every offline metric on every AE of the demo study (``runs/demo``, built
  by ``make demo``; pass ``--study``). Each engine scores a fresh copy of the study
  without its scores.
* ``stego-eval``: the WS detector experiment on the first ``--images`` Fashion-MNIST
  test images (default 1,000), both shipped models, a few ε, PGD with 40 steps.

Engines: ``local`` (this process, torch's own thread count), ``process --workers 2``
and ``dask --workers 2`` (a LocalCluster on 127.0.0.1), one torch thread per worker.
Prints units/s and the ratio to local, and checks that every engine produced the
same table (exactly for stego-eval's rows; scores to the tolerance of a thread-count
change, reported as the largest relative difference).

    .venv/bin/python benchmarks/jobs_scaling.py [--study runs/demo] [--images 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from advqa.jobs import make_executor

ENGINES = (("local", None), ("process", 2), ("dask", 2))


def fresh_study(study: Path, into: Path) -> Path:
    """A copy of the study without its scores (the build's ledger rows stay)."""
    copy = into / study.name
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns(
        "scores.*", "scored_manifest.*", "score_failures.*", "report.html"))
    with sqlite3.connect(copy / "ledger.sqlite") as connection:
        for table in ("job_rows", "job_units", "job_meta"):
            connection.execute(f"DELETE FROM {table} WHERE job = 'score'")
    return copy


def time_score(study: Path, engine: str, workers, scratch: Path):
    from advqa.quality.scoring import score_study

    copy = fresh_study(study, scratch / f"score-{engine}")
    with make_executor(engine, workers=workers) as executor:
        started = time.perf_counter()
        scores = score_study(copy, executor=executor, progress=False)
        seconds = time.perf_counter() - started
    units = -(-len(scores) // 16)  # score_study's default batch_size
    return units, seconds, scores.set_index("id").sort_index()


def time_stego(images: int, engine: str, workers, scratch: Path):
    from advqa.detect.stego_eval import StegoEvalConfig, run_stego_eval

    config = StegoEvalConfig(eps=(0.05, 0.1, 0.2, 0.3), subset=images, calibration=10_000)
    out = scratch / f"stego-{engine}"
    with make_executor(engine, workers=workers) as executor:
        started = time.perf_counter()
        run_stego_eval(out, config, executor=executor, progress=False, plots=False)
        seconds = time.perf_counter() - started
    units = len(config.models) * len(config.eps) * -(-images // config.chunk_size)
    return units, seconds, pd.read_parquet(out / "samples.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=Path("runs/demo"))
    parser.add_argument("--images", type=int, default=1000)
    arguments = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads in this process")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for job, run in (("score", lambda e, w: time_score(arguments.study, e, w, scratch)),
                         ("stego-eval", lambda e, w: time_stego(arguments.images, e, w,
                                                                scratch))):
            results = {}
            for engine, workers in ENGINES:
                results[engine] = run(engine, workers)
            units, local_seconds, local_table = results["local"]
            print(f"\n{job}: {units} units")
            print("| engine | workers | seconds | units/s | ratio to local | same table |")
            print("| --- | ---: | ---: | ---: | ---: | --- |")
            for engine, workers in ENGINES:
                count, seconds, table = results[engine]
                print(f"| {engine} | {workers or 1} | {seconds:.1f} | {count / seconds:.3f} | "
                      f"{local_seconds / seconds:.2f} | {agreement(local_table, table)} |")


def agreement(expected: pd.DataFrame, actual: pd.DataFrame) -> str:
    if expected.shape != actual.shape or list(expected.columns) != list(actual.columns):
        return "NO: other shape"
    if expected.equals(actual):
        return "identical"
    numeric = expected.select_dtypes("number").columns
    a = expected[numeric].to_numpy(float)
    b = actual[numeric].to_numpy(float)
    relative = np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), 1e-12))
    return f"max rel. diff {relative:.1e}"


if __name__ == "__main__":
    main()
