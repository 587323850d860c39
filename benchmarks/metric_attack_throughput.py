"""Attacks on a quality metric: advqa's benchmark runner next to a per-image loop.

What is measured
----------------
Wall time to attack a set of test photos with FGSM and I-FGSM (ε 10/255, 10 steps of
1/255) against one metric and to record each row (clean score, attacked score, PSNR,
SSIM, MSE), two ways, in one run:

- ``loop``: the style of the public MSU benchmark's scripts: one image at a time;
  the clean score is recomputed for every attack; the metric is the public
  implementation (piq for SSIM, as the benchmark calls public code); the attack is
  the script's loop (a perturbation variable ``p``, ``loss = 1 − score/range``,
  ``p −= α·sign(∇p loss)``, ``p`` clipped to ±ε); PSNR/SSIM/MSE are measured with
  scikit-image on numpy arrays per image. One change keeps results comparable: ``p``
  is also clipped so that ``image + p`` stays in [0, 1] (the scripts clip only the
  image they score), which makes the loop's update Kurakin's Clip, as ours is;
- ``advqa``: :func:`advqa.robustness.benchmark.run_unit` on batches of 8, clean scores
  computed once per metric (:func:`prepare_metric`) and shared by both attacks, the
  metric's own (separable-filter) implementation.

Both attack the same JPEG (quality 80) copies of the same photos for a full-reference
metric. Results are compared row by row (attacked scores). One warm-up of each
path, then ``--repeats`` timed runs in alternating order.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import numpy as np
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

EPS, STEP, STEPS = 10 / 255, 1 / 255, 10


def public_metric(name: str):
    """The public implementation the benchmark would call, as ``f(distorted, reference)``."""
    import piq

    from advqa.quality import get_metric
    from advqa.quality.validate import ycbcr_luma

    if name == "ssim":
        return lambda distorted, reference: piq.ssim(
            ycbcr_luma(distorted), ycbcr_luma(reference), data_range=255.0, reduction="none")
    if name == "psnr":
        return lambda distorted, reference: piq.psnr(distorted, reference, reduction="none")
    metric = get_metric(name)  # no public differentiable port: ours on both sides
    if metric.info.full_reference:
        return lambda distorted, reference: metric(distorted, reference)
    return lambda distorted, reference: metric(distorted)


def loop_attack(metric, start, pristine, metric_range, sign, iterations, alpha):
    """The script's attack on one image (``sign`` = +1 raises the metric)."""
    perturbation = torch.zeros_like(start, requires_grad=True)
    for _ in range(iterations):
        candidate = start + perturbation
        candidate.data.clamp_(0.0, 1.0)
        loss = 1 - sign * metric(candidate, pristine).sum() / metric_range
        loss.backward()
        perturbation.data -= alpha * torch.sign(perturbation.grad)
        perturbation.data.clamp_(-EPS, EPS)
        perturbation.data = (start + perturbation.data).clamp(0, 1) - start
        perturbation.grad.zero_()
    return (start + perturbation).detach().clamp(0, 1)


def visibility_numpy(attacked, start) -> tuple[float, float, float]:
    a = attacked[0].permute(1, 2, 0).numpy().astype(np.float64)
    b = start[0].permute(1, 2, 0).numpy().astype(np.float64)
    return (peak_signal_noise_ratio(b, a, data_range=1.0),
            structural_similarity(b, a, channel_axis=2, data_range=1.0),
            mean_squared_error(b, a))


def run_loop(name, test, starts, metric_range, higher_is_better) -> dict:
    metric = public_metric(name)
    sign = 1.0 if higher_is_better else -1.0
    results = {}
    for attack, (iterations, alpha) in {"fgsm": (1, EPS), "ifgsm": (STEPS, STEP)}.items():
        for index in range(len(test)):
            pristine, start = test[index:index + 1], starts[index:index + 1]
            with torch.no_grad():
                clean = float(metric(start, pristine))
            attacked = loop_attack(metric, start, pristine, metric_range, sign, iterations,
                                   alpha)
            with torch.no_grad():
                value = float(metric(attacked, pristine))
            visibility_numpy(attacked, start)
            results[attack, index] = (clean, value)
    return results


def run_advqa(name, train, test) -> dict:
    from advqa.robustness import benchmark

    settings = benchmark.Settings()
    facts, clean = benchmark.prepare_metric(name, train, test, settings)
    results = {}
    for attack in ("fgsm", "ifgsm"):
        rows = benchmark.run_unit(benchmark.Unit(name, attack), test, facts, clean, settings)
        for index, row in enumerate(rows):
            results[attack, index] = (row["clean"], row["attacked"])
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metric", default="ssim", help="metric attacked (default ssim)")
    parser.add_argument("--images", type=int, default=8, help="test photos (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs each (default 3)")
    arguments = parser.parse_args(argv)

    from advqa.robustness import benchmark
    from advqa.robustness.objective import jpeg_copy

    photos = benchmark.load_image_set("photos", size=256)
    images = torch.cat([photos.images, photos.images.flip(3)])[:arguments.images + 3]
    train = benchmark.ImageSet("train", tuple(f"t{i}" for i in range(3)), images[:3])
    test = benchmark.ImageSet("test", tuple(f"i{i}" for i in range(arguments.images)),
                              images[3:])
    facts, _ = benchmark.prepare_metric(arguments.metric, train, test, benchmark.Settings())
    starts = jpeg_copy(test.images) if facts.full_reference else test.images

    def loop():
        return run_loop(arguments.metric, test.images, starts, facts.span,
                        facts.higher_is_better)

    def ours():
        benchmark.cached_metric.cache_clear()  # count building the metric, as the loop does
        return run_advqa(arguments.metric, train, test)

    contenders = {"loop": loop, "advqa": ours}
    outputs = {name: function() for name, function in contenders.items()}  # warm-up
    times = {name: [] for name in contenders}
    for repeat in range(arguments.repeats):
        order = list(contenders) if repeat % 2 == 0 else list(reversed(contenders))
        for name in order:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    differences = [abs(outputs["loop"][key][1] - outputs["advqa"][key][1])
                   for key in outputs["loop"]]
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, metric {arguments.metric}, "
          f"{arguments.images} images 256², attacks fgsm + ifgsm, {arguments.repeats} repeats")
    for name, values in times.items():
        print(f"{name:6s} median {medians[name]:.2f} s  (min {min(values):.2f}, "
              f"max {max(values):.2f})")
    print(f"speed-up loop/advqa: {medians['loop'] / medians['advqa']:.2f}x")
    print(f"attacked scores: max |difference| {max(differences):.3g}, "
          f"mean {statistics.mean(differences):.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
