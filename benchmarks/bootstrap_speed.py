"""Bootstrap speed of the metric-vs-MOS correlations: the per-resample loop vs the vectorised one.

Issue 13 §3: ``advqa evaluate correlations runs/demo --bootstrap 1000`` took 18m39s on
302 items × 19 metrics. This script times, in one run and on one thread (OMP, OpenBLAS
and MKL limited to 1 thread through the environment before numpy is imported; no torch
computation is involved):

1. ``correlation_table`` on a synthetic study sized like the demo: 302 items in six
   attack groups of 67, 65, 63, 56, 39 and 12 items plus the pooled block, 19 metrics
   (saturating, partly tied, some weakly related to the MOS, like the demo's), MOS and
   rating std; every criterion incl. the outlier ratio.

   * ``before``: the code as it was (commit 1430817): ``_bootstrap_before`` below, a
     verbatim copy of the per-resample loop, with verbatim copies of ``logistic5`` and its
     Jacobian patched into the module (the full-sample fits used them too). It runs on
     ``--before-resamples`` resamples (default 50; 1000 would take about half an hour) and
     its per-resample cost is scaled to 1000: ``t(0) + 1000·(t(N) − t(0))/N``.
   * ``after``: the current module, on 1000 resamples.

   Both also run without bootstrap (``t(0)``: the full-sample fits alone), and the
   interval endpoints of ``before`` and ``after`` at N resamples, same seed, are compared
   with the seed-to-seed differences (seed 0 vs 1, ``after``) as the Monte Carlo yardstick.

2. The real command ``advqa evaluate correlations STUDY --bootstrap 1000`` (with its
   scatter plot), each a fresh process, when ``--study`` (default ``runs/demo``) exists and
   is scored. ``runs/demo`` has no opinion scores, so the study is copied to a temporary
   folder and given synthetic ones (``advqa evaluate import``) derived from its PSNR and
   SSIM plus rater noise; ``runs/demo`` itself is not touched. ``before`` runs the same
   command in a child process with the old functions patched in, on N resamples, scaled
   as above.

    .venv/bin/python benchmarks/bootstrap_speed.py [--before-resamples 50] [--study runs/demo]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy  # noqa: E402

from advqa.evaluate import correlation  # noqa: E402
from advqa.evaluate.correlation import (  # noqa: E402
    BOOTSTRAP_EVALUATIONS,
    CONFIDENCE,
    _criteria,
    _is_constant,
)

RESAMPLES = 1000
GROUPS = {"pgd": 67, "mim": 65, "bim": 63, "fgsm": 56, "deepfool": 39, "cw": 12}
# (name, noise around the latent quality, sign, number of distinct values or None)
METRICS = [("advdss", 0.15, 1, None), ("aeqa", 2.0, 1, None), ("js", 1.2, -1, None),
           ("psnr", 0.1, 1, 298), ("ssim", 0.2, 1, None), ("ms_ssim", 0.2, 1, 300),
           ("fsim", 0.25, 1, None), ("gmsd", 0.2, -1, None), ("vif", 0.15, 1, None),
           ("vsi", 0.2, 1, None), ("mad", 0.4, -1, 165), ("cw_ssim", 0.3, 1, 210),
           ("niqe", 1.0, -1, None), ("brisque", 1.0, -1, None), ("piqe", 1.3, -1, None),
           ("l0", 0.8, -1, 199), ("l1", 0.2, -1, 298), ("l2", 0.1, -1, 298),
           ("linf", 0.6, -1, 71)]
CRITERIA = ("srocc", "krocc", "plcc", "rmse", "outlier_ratio")


# --- before: verbatim copies of the code at commit 1430817 ---------------------------------

def _logistic5_before(x, b1, b2, b3, b4, b5):
    """VQEG 5-parameter logistic: ``b1·(½ − 1/(1+exp(b2·(x−b3)))) + b4·x + b5``."""
    # Clipping keeps exp() finite for wild trial parameters during the fit.
    exponent = np.clip(b2 * (np.asarray(x, dtype=float) - b3), -500.0, 500.0)
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(exponent))) + b4 * x + b5


def _logistic5_jacobian_before(x, b1, b2, b3, b4, b5):
    """Analytic Jacobian of :func:`logistic5`: fewer evaluations than finite differences."""
    x = np.asarray(x, dtype=float)
    exponent = np.clip(b2 * (x - b3), -500.0, 500.0)
    sigmoid = 1.0 / (1.0 + np.exp(exponent))
    slope = sigmoid * (1.0 - sigmoid)  # d/dz of −1/(1+exp(z))
    return np.column_stack([0.5 - sigmoid, b1 * slope * (x - b3), -b1 * slope * b2, x,
                            np.ones_like(x)])


def _bootstrap_before(pred, mos, mos_std, *, resamples: int, seed: int, starts) -> dict:
    """95% percentile intervals of every coefficient over `resamples` resamples of items."""
    generator = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(resamples):
        index = generator.integers(0, len(pred), len(pred))
        if _is_constant(pred[index]) or _is_constant(mos[index]):
            continue  # a degenerate resample carries no information about the coefficients
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # A tighter evaluation budget: a resample is a perturbation of a solved fit.
            values, _ = _criteria(pred[index], mos[index],
                                  None if mos_std is None else mos_std[index], starts,
                                  evaluations=BOOTSTRAP_EVALUATIONS)
        for name, value in values.items():
            samples.setdefault(name, []).append(value)
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    return {f"{name}_ci": (float(np.nanpercentile(values, tail)),
                           float(np.nanpercentile(values, 100.0 - tail)))
            for name, values in samples.items()}


BEFORE = {"_bootstrap": _bootstrap_before, "logistic5": _logistic5_before,
          "_logistic5_jacobian": _logistic5_jacobian_before}


@contextlib.contextmanager
def before_code():
    """The module with the per-resample bootstrap and the old logistic callbacks patched in."""
    current = {name: getattr(correlation, name) for name in BEFORE}
    for name, function in BEFORE.items():
        setattr(correlation, name, function)
    try:
        yield
    finally:
        for name, function in current.items():
            setattr(correlation, name, function)


# --- measurements ----------------------------------------------------------------------------

def synthetic_study(seed: int = 0) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    count = sum(GROUPS.values())
    latent = generator.normal(0, 1, count)
    frame = pd.DataFrame({"attack": np.repeat(list(GROUPS), list(GROUPS.values()))})
    frame["mos"] = 1 + 4 / (1 + np.exp(-1.8 * latent)) + generator.normal(0, 0.35, count)
    frame["mos_std"] = generator.uniform(0.5, 1.1, count)
    for name, noise, sign, distinct in METRICS:
        raw = np.tanh(0.8 * (latent + generator.normal(0, noise, count)))  # saturates
        if distinct:  # ties, as in the real metrics with few distinct values
            levels = np.quantile(raw, np.linspace(0, 1, distinct))
            raw = levels[np.abs(raw[:, None] - levels[None]).argmin(axis=1)]
        frame[name] = sign * raw
    return frame


def timed_table(frame: pd.DataFrame, resamples: int, seed: int = 0):
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 12-item group's warnings, every resample
        table = correlation.correlation_table(
            frame, [name for name, *_ in METRICS], mos_std="mos_std", criteria=CRITERIA,
            bootstrap=resamples, seed=seed)
    return time.perf_counter() - started, table


def scaled(at_zero: float, at_n: float, n: int) -> float:
    """The time at RESAMPLES resamples from the times at 0 and n (linear in resamples)."""
    return at_zero + RESAMPLES * (at_n - at_zero) / n


def interval_differences(one: pd.DataFrame, other: pd.DataFrame) -> dict[str, np.ndarray]:
    criterion = one.index.get_level_values("criterion")
    return {name: np.abs(one[np.isin(criterion, [f"{name}_low", f"{name}_high"])].to_numpy()
                         - other[np.isin(criterion, [f"{name}_low", f"{name}_high"])]
                         .to_numpy()).ravel()
            for name in CRITERIA}


def synthetic_benchmark(n_before: int) -> None:
    frame = synthetic_study()
    print(f"\n## Synthetic study: {len(frame)} items, {len(METRICS)} metrics, "
          f"{len(GROUPS)} groups + pooled\n")
    after_zero, _ = timed_table(frame, 0)
    after_full, _ = timed_table(frame, RESAMPLES)
    _, after_n = timed_table(frame, n_before)
    _, after_n_other_seed = timed_table(frame, n_before, seed=1)
    with before_code():
        before_zero, _ = timed_table(frame, 0)
        before_n, before_table = timed_table(frame, n_before)
    before_full = scaled(before_zero, before_n, n_before)
    print("| code | no bootstrap | bootstrap part, per resample | table at 1000 resamples |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| before | {before_zero:.1f} s | {(before_n - before_zero) / n_before:.3f} s "
          f"(measured on {n_before}) | {before_full:.0f} s (scaled) |")
    print(f"| after | {after_zero:.1f} s | {(after_full - after_zero) / RESAMPLES:.4f} s | "
          f"{after_full:.1f} s |")
    print(f"\nratio before/after: bootstrap part "
          f"{(before_n - before_zero) / n_before / ((after_full - after_zero) / RESAMPLES):.0f}×,"
          f" whole table at {RESAMPLES} resamples {before_full / after_full:.0f}×, "
          f"full-sample fits alone {before_zero / after_zero:.2f}×")
    print(f"\ninterval endpoints at {n_before} resamples, seed 0 (19 metrics × 7 blocks × 2 "
          f"ends each):\n")
    print("| criterion | before vs after: median | p90 | max | after seed 0 vs seed 1: "
          "median | p90 | max |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    code = interval_differences(before_table, after_n)
    chance = interval_differences(after_n, after_n_other_seed)
    for name in CRITERIA:
        print(f"| {name} | " + " | ".join(
            f"{np.nanpercentile(values, q):.2g}" for values in (code[name], chance[name])
            for q in (50, 90, 100)) + " |")


def synthetic_opinion_scores(study: Path, into: Path) -> Path:
    """A copy of `study` with MOS from its PSNR and SSIM plus rater noise, imported."""
    copy = into / study.name
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns(
        "mos.*", "correlations.*", "scatter.*", "study.lock"))
    scored = pd.read_parquet(copy / "scored_manifest.parquet")
    generator = np.random.default_rng(2026)
    latent = ((scored["psnr"] - 35) / 12 + 1.5 * (scored["ssim"] - 0.7)
              + generator.normal(0, 0.45, len(scored)))
    mos = 1 + 4 / (1 + np.exp(-1.6 * latent)) + generator.normal(0, 0.2, len(scored))
    sheet = into / "synthetic_mos.csv"
    pd.DataFrame({"id": scored["id"], "mos": np.clip(mos, 1, 5).round(3),
                  "mos_std": generator.uniform(0.5, 1.1, len(scored)).round(3),
                  "n_ratings": generator.integers(12, 25, len(scored))}).to_csv(sheet,
                                                                               index=False)
    subprocess.run([sys.executable, "-m", "advqa", "evaluate", "import", str(copy), str(sheet),
                    "--map", "id=id,mos=mos,mos_std=mos_std,n_ratings=n_ratings"],
                   check=True, capture_output=True)
    return copy


def timed_command(study: Path, resamples: int, *, before: bool) -> float:
    command = ["evaluate", "correlations", str(study), "--bootstrap", str(resamples),
               "--no-progress"]
    if before:
        runner = [sys.executable, __file__, "--before-command", "--", *command]
    else:
        runner = [sys.executable, "-m", "advqa", *command]
    started = time.perf_counter()
    subprocess.run(runner, check=True, capture_output=True)
    return time.perf_counter() - started


def command_benchmark(study: Path, n_before: int) -> None:
    scored = study / "scored_manifest.parquet"
    if not scored.is_file():
        print(f"\n(no {scored}: the real command is not timed; `make demo` builds it)")
        return
    with tempfile.TemporaryDirectory(prefix="advqa-bootstrap-") as scratch:
        copy = synthetic_opinion_scores(study, Path(scratch))
        items = len(pd.read_parquet(copy / "scored_manifest.parquet"))
        print(f"\n## `advqa evaluate correlations` on a copy of {study} ({items} AEs, "
              f"synthetic MOS), fresh process each, scatter plot included\n")
        after_zero = timed_command(copy, 0, before=False)
        after_full = timed_command(copy, RESAMPLES, before=False)
        before_zero = timed_command(copy, 0, before=True)
        before_n = timed_command(copy, n_before, before=True)
    before_full = scaled(before_zero, before_n, n_before)
    print("| code | --bootstrap 0 | --bootstrap 1000 |")
    print("| --- | ---: | ---: |")
    print(f"| before | {before_zero:.1f} s | {before_full:.0f} s (scaled from "
          f"{before_n:.1f} s at {n_before}) |")
    print(f"| after | {after_zero:.1f} s | {after_full:.1f} s |")
    own = (before_full - before_zero) / (after_full - after_zero)
    print(f"\nratio before/after at {RESAMPLES} resamples: {before_full / after_full:.0f}×; "
          f"the bootstrap's own share: {own:.0f}×")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-resamples", type=int, default=50,
                        help="resamples the old per-resample loop runs on (scaled to 1000)")
    parser.add_argument("--study", type=Path, default=Path("runs/demo"),
                        help="scored study for the real command (default runs/demo)")
    parser.add_argument("--skip-command", action="store_true", help="synthetic table only")
    parser.add_argument("--before-command", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.before_command:  # child process: the CLI with the old code patched in
        from advqa.cli.main import main as advqa

        with before_code():
            return advqa(arguments.rest)
    print(f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  ")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}; 1 thread (OMP/OpenBLAS/MKL)")
    synthetic_benchmark(arguments.before_resamples)
    if not arguments.skip_command:
        command_benchmark(arguments.study, arguments.before_resamples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
