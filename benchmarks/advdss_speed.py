"""AdvDSS speed and memory next to scikit-image SSIM, piq SSIM and (if installed) pyiqa SSIM.

What is measured
----------------
16 seeded RGB 299×299 (reference, distorted) pairs in [0, 1], torch and SciPy on
``--threads`` threads (default 2):

- forward throughput (pairs per second) of ``advqa.quality.advdss``, of
  scikit-image's ``structural_similarity`` in a per-image loop (Gaussian weights,
  σ = 1.5, no sample covariance: the MATLAB-matching settings) on the RGB pairs
  (``channel_axis``) and on their luma, of ``piq.ssim`` (no downsampling) and of
  pyiqa's ``ssim`` when pyiqa is installed;
- forward + backward (gradient w.r.t. the distorted batch) of AdvDSS and of
  ``piq.ssim``;
- peak resident memory of AdvDSS forward on a batch of 64 pairs, measured in a
  fresh subprocess as the rise of ``ru_maxrss`` above the inputs.

Goals: AdvDSS forward at least as fast as scikit-image SSIM; AdvDSS
forward+backward at least 2× piq's; 64 pairs in under 2 GB.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch


def pairs(count: int, size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    reference = torch.rand(count, 3, size, size, generator=generator)
    noise = torch.randn(reference.shape, generator=generator)
    return reference, (reference + 0.03 * noise).clamp(0, 1)


def median_seconds(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_contenders(reference, distorted):
    import piq
    from skimage.metrics import structural_similarity

    from advqa.quality import advdss
    from advqa.quality.validate import ycbcr_luma

    settings = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    rgb_reference = reference.permute(0, 2, 3, 1).double().numpy()
    rgb_distorted = distorted.permute(0, 2, 3, 1).double().numpy()
    luma_reference = ycbcr_luma(reference)[:, 0].double().numpy()
    luma_distorted = ycbcr_luma(distorted)[:, 0].double().numpy()
    contenders = {
        "advqa advdss": lambda: advdss(reference=reference, distorted=distorted),
        "skimage ssim (RGB)": lambda: [
            structural_similarity(a, b, channel_axis=2, data_range=1.0, **settings)
            for a, b in zip(rgb_reference, rgb_distorted, strict=True)],
        "skimage ssim (luma)": lambda: [
            structural_similarity(a, b, data_range=255.0, **settings)
            for a, b in zip(luma_reference, luma_distorted, strict=True)],
        "piq ssim (RGB)": lambda: piq.ssim(distorted, reference, data_range=1.0,
                                           downsample=False, reduction="none"),
    }
    try:
        import pyiqa

        metric = pyiqa.create_metric("ssim", device="cpu", as_loss=False)
        contenders["pyiqa ssim"] = lambda: metric(distorted, reference)
    except Exception as error:  # optional, non-commercial licence
        print(f"pyiqa ssim skipped: {error}", file=sys.stderr)
    return contenders


def backward_contenders(reference, distorted):
    import piq

    from advqa.quality import advdss

    def through(function):
        def run():
            leaf = distorted.clone().requires_grad_(True)
            function(leaf).sum().backward()
        return run

    return {
        "advqa advdss": through(lambda d: advdss(reference=reference, distorted=d)),
        "piq ssim (RGB)": through(lambda d: piq.ssim(d, reference, data_range=1.0,
                                                     downsample=False, reduction="none")),
    }


def resident_peak_mib() -> float:
    """The process's resident high-water mark (VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_probe(count: int, size: int, threads: int) -> None:
    """Child process: print the peak RSS rise (MiB) of one AdvDSS forward pass, and the peak."""
    torch.set_num_threads(threads)
    from advqa.quality import advdss

    reference, distorted = pairs(count, size)
    advdss(reference=reference[:1], distorted=distorted[:1])  # load code paths first
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current resident size
    before = resident_peak_mib()
    with torch.no_grad():
        advdss(reference=reference, distorted=distorted)
    after = resident_peak_mib()
    print(after - before, after)


def measure_memory(count: int, size: int, threads: int) -> tuple[float, float]:
    finished = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(count), "--size", str(size),
         "--threads", str(threads)], capture_output=True, text=True, check=True)
    rise, peak = (float(v) for v in finished.stdout.split())
    return rise, peak


def table(title: str, timings: dict[str, float], count: int, baseline: str) -> list[str]:
    lines = [f"{title}", "", "| contender | seconds | pairs/s | ratio to " + baseline + " |",
             "| --- | ---: | ---: | ---: |"]
    for name, seconds in timings.items():
        ratio = timings[baseline] / seconds
        lines.append(f"| {name} | {seconds:.4f} | {count / seconds:.1f} | {ratio:.2f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-pairs", type=int, default=64)
    parser.add_argument("--memory-probe", type=int, default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.memory_probe is not None:
        memory_probe(arguments.memory_probe, arguments.size, arguments.threads)
        return 0
    torch.set_num_threads(arguments.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(arguments.threads))
    reference, distorted = pairs(arguments.pairs, arguments.size)
    forward = {name: median_seconds(run, arguments.repeats)
               for name, run in forward_contenders(reference, distorted).items()}
    backward = {name: median_seconds(run, arguments.repeats)
                for name, run in backward_contenders(reference, distorted).items()}
    rise, peak = measure_memory(arguments.memory_pairs, arguments.size, arguments.threads)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Date: {now}; {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, torch {torch.__version__}, {arguments.threads} threads, "
             f"numpy {np.__version__}", ""]
    lines += table(f"Forward, {arguments.pairs} RGB pairs at {arguments.size}²", forward,
                   arguments.pairs, "skimage ssim (RGB)")
    lines += ["", *table("Forward + backward", backward, arguments.pairs, "piq ssim (RGB)")]
    lines += ["", f"AdvDSS forward on {arguments.memory_pairs} pairs at {arguments.size}²: "
              f"peak RSS rise {rise:.0f} MiB (process peak {peak:.0f} MiB)"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
