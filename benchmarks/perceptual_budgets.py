"""Perceptual budgets (issue 17): the projection's cost, and ALMA against PGD with a budget.

What is measured
----------------
All on the embedded ImageNet photos (``load_samples("imagenet")``, resized and cropped
to 224×224 and quantised), EfficientNet-Lite0 (``load_classifier``), one thread.

1. **Cost.** PGD L∞ ε = 16/255, 10 steps, on ``--cost-images`` photos: plain, and with
   ``budget="advdss>=0.99"`` and ``"ssim>=0.95"``. The calls run round-robin,
   ``--repeats`` times after one warm-up each; the ratio is the budgeted call's time over
   the plain call's, for the process's CPU time (the work; robust to other jobs on a shared
   machine) and for wall time. It covers everything the budget adds to an attack: the
   projection after each of the 10 Lp steps, the random start's and the final quantised
   check. The metric calls are counted (images scored per image and step).
2. **Success at equal AdvDSS.** ALMA on AdvDSS (``get_attack("alma", metric="advdss")``,
   ``--alma-steps``) once; PGD L∞ ε = 16/255 with ``advdss>=τ`` for each τ, in two
   settings: the defaults (10 steps, α = 2.5ε/10 = 4/255) and 20 steps of α = 1/255.
   Every AE is quantised to 8 bits first, as ``advqa build`` saves it. At τ a method
   succeeds on an image when its saved AE fools the model *and* has AdvDSS ≥ τ; the
   counts are over the images the model classifies correctly. For PGD the count of
   float AEs (before quantisation; they meet the budget too) that fool is given as well.
3. **ALMA against adv-lib's.** With adv-lib importable (a benchmark-only dependency):
   ``adv_lib.attacks.alma(distance="ssim", init_lr_distance=1e-4, levels=256,
   num_steps=100)`` against ``get_attack("alma", metric="ssim", init_distance=1e-4,
   steps=100)``: success rates at equal SSIM, scored by advqa's ``ssim`` (ssim_index.m
   on rgb2gray) and by adv-lib's own SSIM, and seconds per call. adv-lib imports
   ``visdom`` for an optional progress logger that is never used here; visdom's sdist
   does not build on this machine, so an empty module stands in for it when it is
   missing. Nothing of visdom runs.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/perceptual_budgets.py``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import types

import torch

THRESHOLDS = (0.999, 0.9995, 0.9999, 0.99995)
SSIM_THRESHOLDS = (0.999, 0.9995, 0.9999)
PGD = {"norm": "linf", "eps": 16 / 255, "steps": 10, "seed": 0}


def photos(model, count):
    from advqa.data import load_samples, preprocess, quantize

    samples = load_samples("imagenet")
    info = model.info
    images = quantize(preprocess(samples, size=info.input_size, resize=info.resize_size))
    return images[:count], torch.tensor(samples.labels)[:count]


def fooled(model, images, labels):
    from advqa.data import quantize

    with torch.no_grad():
        return model(quantize(images)).argmax(1) != labels


def scores(metric, images, clean):
    from advqa.data import quantize

    with torch.no_grad():
        return metric(quantize(images), clean)


class Counter:
    """Counts the images the budget's metric scores, by wrapping MetricBudget.excess."""

    def __init__(self):
        from advqa.attacks.perceptual import MetricBudget

        self.scored, self.original = 0, MetricBudget.excess
        counter = self

        def excess(budget, images, clean):
            counter.scored += images.shape[0]
            return counter.original(budget, images, clean)

        MetricBudget.excess = excess

    def close(self):
        from advqa.attacks.perceptual import MetricBudget

        MetricBudget.excess = self.original


def cost(model, images, labels, repeats):
    """CPU and wall seconds per call of plain and budgeted PGD, interleaved."""
    from advqa.attacks import get_attack

    attacks = {"plain": get_attack("pgd", **PGD),
               "advdss>=0.99": get_attack("pgd", budget="advdss>=0.99", **PGD),
               "ssim>=0.95": get_attack("pgd", budget="ssim>=0.95", **PGD)}
    times = {name: {"cpu": [], "wall": []} for name in attacks}
    counter, scored = Counter(), {}
    try:
        for name, attack in attacks.items():  # warm-up, and the metric calls counted
            counter.scored = 0
            attack(model, images, labels)
            scored[name] = counter.scored / (images.shape[0] * PGD["steps"])
        for repeat in range(repeats):
            order = list(attacks) if repeat % 2 == 0 else list(reversed(attacks))
            for name in order:
                cpu, wall = time.process_time(), time.perf_counter()
                attacks[name](model, images, labels)
                times[name]["cpu"].append(time.process_time() - cpu)
                times[name]["wall"].append(time.perf_counter() - wall)
    finally:
        counter.close()
    rows = []
    for name in attacks:
        cpu, wall = statistics.median(times[name]["cpu"]), statistics.median(times[name]["wall"])
        rows.append({"attack": f"pgd {name}", "cpu": cpu, "wall": wall,
                     "cpu_ratio": cpu / statistics.median(times["plain"]["cpu"]),
                     "wall_ratio": wall / statistics.median(times["plain"]["wall"]),
                     "scored": scored[name]})
    return rows


PGD_SETTINGS = {"pgd T=10": {}, "pgd T=20 α=1/255": {"steps": 20, "step_size": 1 / 255}}


def equal_advdss(model, images, labels, alma_steps):
    """Success of ALMA and of PGD + advdss>=τ at each τ, on the saved (8-bit) AEs."""
    from advqa.attacks import get_attack
    from advqa.quality import get_metric

    advdss = get_metric("advdss")
    with torch.no_grad():
        correct = model(images).argmax(1) == labels
    start = time.perf_counter()
    alma = get_attack("alma", metric="advdss", steps=alma_steps)(model, images, labels)
    alma_seconds = time.perf_counter() - start
    alma_fooled, alma_values = fooled(model, alma, labels), scores(advdss, alma, images)
    rows, pgd_seconds = [], {name: 0.0 for name in PGD_SETTINGS}
    for threshold in THRESHOLDS:
        row = {"threshold": threshold}
        for name, settings in PGD_SETTINGS.items():
            start = time.perf_counter()
            pgd = get_attack("pgd", budget=f"advdss>={threshold}", **{**PGD, **settings})(
                model, images, labels)
            pgd_seconds[name] += time.perf_counter() - start
            saved = fooled(model, pgd, labels) & (scores(advdss, pgd, images) >= threshold)
            with torch.no_grad():
                floating = model(pgd).argmax(1) != labels
            row[f"{name} saved"] = (saved & correct).sum().item()
            row[f"{name} float"] = (floating & correct).sum().item()
        alma_ok = alma_fooled & (alma_values >= threshold)
        row["alma saved"] = (alma_ok & correct).sum().item()
        row["correct"] = correct.sum().item()
        rows.append(row)
    minimal = alma_values[alma_fooled & correct]
    summary = {"alma_seconds": alma_seconds,
               "pgd_seconds": {k: v / len(THRESHOLDS) for k, v in pgd_seconds.items()},
               "alma_fooled": (alma_fooled & correct).sum().item(),
               "median": minimal.median().item() if len(minimal) else float("nan"),
               "low": minimal.quantile(0.1).item() if len(minimal) else float("nan"),
               "high": minimal.quantile(0.9).item() if len(minimal) else float("nan")}
    return rows, summary


def import_adv_lib():
    try:
        import visdom  # noqa: F401
    except ImportError:
        sys.modules["visdom"] = types.ModuleType("visdom")  # see the module docstring
    try:
        from adv_lib.attacks import alma
        from adv_lib.distances.structural_similarity import compute_ssim
    except ImportError:
        return None
    import adv_lib

    version = getattr(adv_lib, "__version__", None)
    if version is None:
        from importlib.metadata import version as package_version

        version = package_version("adv-lib")
    return alma, compute_ssim, version


def against_adv_lib(model, images, labels, adv_lib):
    """Success at equal SSIM of advqa's ALMA and adv-lib's, both on SSIM."""
    from advqa.attacks import get_attack
    from advqa.quality import get_metric

    alma, compute_ssim, _ = adv_lib
    ssim = get_metric("ssim")
    with torch.no_grad():
        correct = model(images).argmax(1) == labels
    start = time.perf_counter()
    theirs = alma(model, images, labels, distance="ssim", num_steps=100,
                  init_lr_distance=1e-4, levels=256)
    their_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours = get_attack("alma", metric="ssim", steps=100, init_distance=1e-4)(model, images,
                                                                           labels)
    our_seconds = time.perf_counter() - start
    rows = []
    for name, adversarial, seconds in (("advqa", ours, our_seconds),
                                       ("adv-lib", theirs, their_seconds)):
        ok = fooled(model, adversarial, labels) & correct
        ours_ssim = scores(ssim, adversarial, images)
        with torch.no_grad():
            from advqa.data import quantize

            their_ssim = compute_ssim(quantize(adversarial), images)
        row = {"alma": name, "seconds": seconds, "fooled": ok.sum().item(),
               "median_ssim": ours_ssim[ok].median().item() if ok.any() else float("nan"),
               "median_adv_lib_ssim": their_ssim[ok].median().item() if ok.any() else
               float("nan")}
        for threshold in SSIM_THRESHOLDS:
            row[f"advqa ssim≥{threshold}"] = (ok & (ours_ssim >= threshold)).sum().item()
            row[f"adv-lib ssim≥{threshold}"] = (ok & (their_ssim >= threshold)).sum().item()
        rows.append(row)
    return rows, correct.sum().item()


def table(rows, formats) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(formats.get(k, "{}").format(row[k]) for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cost-images", type=int, default=4)
    parser.add_argument("--images", type=int, default=20, help="photos for parts 2 and 3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--alma-steps", type=int, default=300, help="ALMA's steps in part 2")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: cost,"
                        "advdss,adv-lib")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(1)
    from advqa.models import load_classifier

    skip = set(filter(None, arguments.skip.split(",")))
    model = load_classifier("efficientnet-lite0", device="cpu")
    print(f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}, 1 thread")
    if "cost" not in skip:
        images, labels = photos(model, arguments.cost_images)
        rows = cost(model, images, labels, arguments.repeats)
        print(f"\n### Cost of the projection ({arguments.cost_images} photos, "
              f"{arguments.repeats} repeats)\n")
        print(table(rows, {"cpu": "{:.2f}", "wall": "{:.2f}", "cpu_ratio": "{:.3f}",
                           "wall_ratio": "{:.3f}", "scored": "{:.2f}"}))
    images, labels = photos(model, arguments.images)
    if "advdss" not in skip:
        rows, summary = equal_advdss(model, images, labels, arguments.alma_steps)
        print(f"\n### Success at equal AdvDSS ({arguments.images} photos)\n")
        print(table(rows, {"threshold": "{:g}"}))
        seconds = ", ".join(f"{k} {v:.1f} s" for k, v in summary["pgd_seconds"].items())
        print(f"\nALMA ({arguments.alma_steps} steps): {summary['alma_fooled']} fooled; minimal "
              f"AdvDSS median {summary['median']:.5f}, 10–90 % [{summary['low']:.5f}, "
              f"{summary['high']:.5f}]; {summary['alma_seconds']:.1f} s per call. PGD + budget "
              f"per call: {seconds}")
    adv_lib = None if "adv-lib" in skip else import_adv_lib()
    if adv_lib is not None:
        rows, correct = against_adv_lib(model, images, labels, adv_lib)
        print(f"\n### ALMA on SSIM, 100 steps each: advqa vs adv-lib {adv_lib[2]} "
              f"({correct} photos classified correctly)\n")
        print(table(rows, {"seconds": "{:.1f}", "median_ssim": "{:.5f}",
                           "median_adv_lib_ssim": "{:.5f}"}))
    elif "adv-lib" not in skip:
        print("\nadv-lib is not installed: part 3 skipped")
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
