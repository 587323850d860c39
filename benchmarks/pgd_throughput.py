"""PGD throughput: advqa's attack engine next to a hand-written loop, torchattacks and ART.

What is measured
----------------
Images per second of one untargeted L∞ PGD attack (eps 4/255, step 1/255, 10 steps,
no random start) on a batch of seeded random 224×224 images in [0, 1] with random
labels, against a randomly initialised (seeded) torchvision ResNet-18 in eval mode.
Every contender attacks the *same* module, advqa's ``load_classifier`` wrapper
(normalisation inside, parameters frozen), so the timings differ only by the
attack code around the forward and backward passes:

- ``advqa``: ``get_attack("pgd", ...)(model, images, labels)``;
- ``hand``: the minimal loop a careful user writes (``autograd.grad`` on the input);
- ``torchattacks``: ``torchattacks.PGD``;
- ``art``: ``ProjectedGradientDescent`` on a ``PyTorchClassifier``, numpy in and out
  (random_eps off, no momentum, no random init: the same attack).

Each contender runs once to warm up (its outputs are compared), then ``--repeats``
times, round-robin, in an order that changes every repeat (a Williams square, so no
contender always runs first or always follows the same one) and slow drift of the
machine is shared out. Throughput is ``batch / wall time`` of one full attack call. The CPU
time other processes took during each timed call is read from /proc/stat and reported:
on a shared machine a run above a few percent is not to be trusted.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F

EPS, STEP = 4 / 255, 1 / 255


def hand_pgd(model, images, labels, eps, alpha, steps):
    """The reference: plain PGD with input gradients only (the parameters are frozen)."""
    x = images.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), labels)
        (gradient,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = x + alpha * gradient.sign()
            x = torch.clamp(images + torch.clamp(x - images, -eps, eps), 0, 1)
    return x.detach()


def contenders(model, images, labels, steps, batch):
    """name -> zero-argument callable returning the adversarial batch as a float32 tensor."""
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    from advqa.attacks import get_attack

    ours = get_attack("pgd", norm="linf", eps=EPS, steps=steps, step_size=STEP, random_start=False)
    theirs = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=steps, random_start=False)
    classifier = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(),
                                   input_shape=(3, 224, 224), nb_classes=1000,
                                   clip_values=(0.0, 1.0))
    art_pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=EPS, eps_step=STEP,
                                       max_iter=steps, targeted=False, num_random_init=0,
                                       batch_size=batch, random_eps=False, decay=None,
                                       verbose=False)
    images_np, labels_np = images.numpy(), labels.numpy()
    return {
        "hand": lambda: hand_pgd(model, images, labels, EPS, STEP, steps),
        "advqa": lambda: ours(model, images, labels),
        "torchattacks": lambda: theirs(images, labels),
        "art": lambda: torch.from_numpy(art_pgd.generate(images_np, labels_np)),
    }


def round_robin(names: list[str], repeat: int) -> list[str]:
    """Every contender once, in a Williams-square order: over len(names) repeats each
    runs in every position and directly after every other one exactly once."""
    n, base = len(names), [0]
    for k in range(1, n):
        base.append((k + 1) // 2 if k % 2 else n - k // 2)
    return [names[(index + repeat) % n] for index in base]


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (0 where /proc is missing)."""
    try:
        with open("/proc/stat") as handle:
            ticks = [int(value) for value in handle.readline().split()[1:]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def timed(function):
    """Wall seconds of one call, its output, and the share of the CPUs other processes used."""
    gc.collect()
    busy, own, start = busy_seconds(), time.process_time(), time.perf_counter()
    output = function()
    wall = time.perf_counter() - start
    others = busy_seconds() - busy - (time.process_time() - own)
    return wall, output, max(0.0, others) / (wall * (os.cpu_count() or 1))


def proc_field(path: str, key: str) -> str | None:
    """The value after ``key`` in a /proc text file, or None."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict:
    cpu = proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown"
    ram = proc_field("/proc/meminfo", "MemTotal")
    ram = f"{int(ram.split()[0]) / 2**20:.1f} GiB" if ram else "unknown"
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu, "cores": os.cpu_count(), "ram": ram, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--batch", type=int, default=8, help="images per attack call (default 8)")
    add("--steps", type=int, default=10, help="PGD iterations (default 10)")
    add("--repeats", type=int, default=3, help="timed runs per contender (default 3)")
    add("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    add("--seed", type=int, default=0, help="seed of the weights, images and labels (default 0)")
    add("--markdown", action="store_true", help="also print a block to paste into RESULTS.md")
    args = parser.parse_args(argv)
    if min(args.batch, args.steps, args.repeats) < 1:
        parser.error("--batch, --steps and --repeats must be at least 1")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from advqa.models import load_classifier

    torch.manual_seed(args.seed)
    model = load_classifier("torchvision:resnet18", weights=None, device="cpu")
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.rand(args.batch, 3, 224, 224, generator=generator)
    labels = torch.randint(0, 1000, (args.batch,), generator=generator)
    runs = contenders(model, images, labels, args.steps, args.batch)
    names = list(runs)

    outputs, seconds, disturbed = {}, {name: [] for name in names}, []
    try:
        for name in names:
            current = name
            outputs[name] = timed(runs[name])[1]
        for repeat in range(args.repeats):
            for name in round_robin(names, repeat):
                current = name
                wall, _, foreign = timed(runs[name])
                seconds[name].append(wall)
                disturbed.append(foreign)
    except Exception:
        traceback.print_exc()
        print(f"error: contender {current!r} raised", file=sys.stderr)
        return 1

    info = machine()
    print(f"PGD L∞ eps=4/255 step=1/255 steps={args.steps} batch={args.batch} resnet18 224×224,"
          f" {args.repeats} repeats, {info['threads']} threads; {info['cpu']},"
          f" torch {info['torch']}")
    rate = {name: [args.batch / s for s in seconds[name]] for name in names}
    median = {name: statistics.median(rate[name]) for name in names}
    rows = [("contender", "median img/s", "min img/s", "max img/s", "vs hand")]
    for name in names:
        rows.append((name, f"{median[name]:.3f}", f"{min(rate[name]):.3f}",
                     f"{max(rate[name]):.3f}", f"{median[name] / median['hand']:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))

    print(f"\nother processes used up to {max(disturbed):.0%} of the CPUs during a timed run"
          + (" — WARNING: the machine was not quiet, timings are unreliable"
             if max(disturbed) > 0.05 else ""))
    print("max |difference| of the adversarial batches (clean → adversarial L∞ of hand: "
          f"{(outputs['hand'] - images).abs().max().item() * 255:.3f}/255)")
    mismatch = False
    for name in ("advqa", "torchattacks", "art"):
        difference = (outputs[name] - outputs["hand"]).abs().max().item()
        verdict = ("identical" if difference == 0
                   else "within 1e-6" if difference <= 1e-6 else "DIFFERS")
        mismatch |= name != "art" and difference > 1e-6
        print(f"  {name} vs hand: {difference:.3g} ({verdict})")

    if args.markdown:
        print(f"\nDate: {info['date']}  \nMachine: {info['cpu']}, {info['cores']} cores, "
              f"{info['ram']} RAM, torch {info['torch']} ({info['threads']} threads)  \n"
              f"Command: `python benchmarks/pgd_throughput.py {' '.join(argv)}`  \n"
              f"Other processes' share of the CPUs during timed runs: ≤ {max(disturbed):.0%}\n")
        print("| contender | median img/s | min img/s | max img/s | ratio to hand loop |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for row in rows[1:]:
            print("| " + " | ".join(row) + " |")
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
