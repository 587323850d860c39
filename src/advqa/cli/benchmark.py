"""``advqa benchmark``: how easily attacks fool image-quality metrics, as a leaderboard."""

from __future__ import annotations

import sys
from pathlib import Path

from advqa.cli.common import (
    CommandError,
    add_engine_options,
    make_engine,
    name_list,
    number,
    number_list,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="attack image-quality metrics and rank them by robustness",
        description="Attack each metric with each attack on the test images (UAPs are "
        "trained on the training images), score the results (absolute and relative gain, "
        "robustness, Wasserstein and energy scores) and write OUT/items.{parquet,csv}, "
        "OUT/leaderboard.{csv,html} and the UAP artefacts under OUT/uaps/. Rerunning with the "
        "same OUT resumes. Full-reference metrics are attacked from a JPEG copy of each image "
        "and scored against the original.")
    parser.add_argument("--metrics", type=name_list, default=None,
                        help="comma-separated metrics: registry names, pyiqa:<name>, plug-in "
                        "entry points or module:Class (default: every differentiable offline "
                        "quality metric that needs no classifier; Lp distances excluded)")
    parser.add_argument("--attacks", type=name_list, default=None,
                        help="comma-separated attacks (default: all nine)")
    parser.add_argument("--train-images", default=None,
                        help="sample-set name, image folder or NIPS 2017 folder for calibration "
                        "and UAP training (default: half of the embedded photos)")
    parser.add_argument("--test-images", default=None,
                        help="images to attack (default: the other half of the embedded photos)")
    parser.add_argument("--size", type=int, default=256,
                        help="images are resized and centre-cropped to SIZE² (default 256)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--eps", type=number, default=10 / 255,
                        help="L∞ budget of the per-image attacks (default 10/255)")
    parser.add_argument("--steps", type=int, default=10, help="iterations (default 10)")
    parser.add_argument("--step-size", type=number, default=1 / 255,
                        help="step of the iterative attacks (default 1/255)")
    parser.add_argument("--momentum", type=number, default=1.0,
                        help="MI-/AMI-FGSM momentum (default 1.0)")
    parser.add_argument("--amplitudes", type=number_list, default=[0.2, 0.4, 0.8],
                        help="UAP amplitudes (default 0.2,0.4,0.8)")
    parser.add_argument("--uap-eps", type=number, default=0.1,
                        help="L∞ bound of a UAP before scaling (default 0.1)")
    parser.add_argument("--uap-epochs", type=int, default=None,
                        help="UAP training epochs (default: each method's own)")
    parser.add_argument("--jpeg-quality", type=int, default=80,
                        help="JPEG quality of the start for full-reference metrics (default 80)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seeds splits, starts and UAPs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_engine_options(parser)
    parser.set_defaults(handler=run)


# Lp distances are in the registry for scoring AEs, but they are not quality metrics
# anyone would attack: the default benchmark leaves them out (name them to include them).
DISTANCES = {"l0", "l1", "l2", "linf"}


def default_metrics() -> list[str]:
    from advqa.quality.registry import is_available, list_metrics

    return [info.name for info in list_metrics().values()
            if info.differentiable and not info.needs_model and info.name not in DISTANCES
            and is_available(info.name)]


def image_sets(arguments):
    from advqa.robustness.benchmark import load_image_set, split_image_set

    if (arguments.train_images is None) != (arguments.test_images is None):
        raise CommandError("give both --train-images and --test-images, or neither "
                           "(then the embedded photos are split)")
    try:
        if arguments.train_images is None:
            return split_image_set(load_image_set("photos", size=arguments.size),
                                   seed=arguments.seed)
        return (load_image_set(arguments.train_images, size=arguments.size),
                load_image_set(arguments.test_images, size=arguments.size))
    except ValueError as error:
        raise CommandError(str(error)) from error


def run(arguments) -> int:
    from advqa.robustness.benchmark import ATTACK_NAMES, Settings, run_benchmark

    metrics = arguments.metrics or default_metrics()
    attacks = arguments.attacks or list(ATTACK_NAMES)
    unknown = [name for name in attacks if name not in ATTACK_NAMES]
    if unknown:
        raise CommandError(f"unknown attack(s) {', '.join(unknown)}; valid: "
                           f"{', '.join(ATTACK_NAMES)}")
    try:  # before anything is loaded: a setting that fails every unit is refused up front
        settings = Settings(
            eps=arguments.eps, steps=arguments.steps, step_size=arguments.step_size,
            momentum=arguments.momentum, amplitudes=tuple(arguments.amplitudes),
            uap_eps=arguments.uap_eps, jpeg_quality=arguments.jpeg_quality,
            batch_size=arguments.batch_size, seed=arguments.seed,
            uap={} if arguments.uap_epochs is None else {"epochs": arguments.uap_epochs})
    except ValueError as error:
        raise CommandError(f"bad setting: {error}") from error
    train, test = image_sets(arguments)
    print(f"advqa benchmark: {len(metrics)} metric(s) × {len(attacks)} attack(s); "
          f"train {len(train.names)} images ({train.dataset}), test {len(test.names)} "
          f"({test.dataset}), {arguments.size}², engine {arguments.engine}")
    executor = make_engine(arguments)
    try:
        summary = run_benchmark(metrics, attacks, train, test, arguments.out,
                                settings=settings, executor=executor,
                                progress=not arguments.no_progress)
    except ValueError as error:
        raise CommandError(str(error)) from error
    finally:
        executor.close()
    print_summary(summary)
    if summary.all_failed:
        print("advqa benchmark: every unit failed: no attacked image was scored (errors above "
              f"and in {summary.out / 'items.csv'})", file=sys.stderr)
        return 1
    return 1 if summary.failures or summary.failed_units else 0


def print_summary(summary) -> None:
    items = summary.items
    failed = items.error.notna().sum() if len(items) else 0
    print(f"{len(items)} rows ({failed} failed) in {summary.out / 'items.parquet'}")
    for path in summary.paths.values():
        print(f"wrote {path}")
    for failure in summary.failures + summary.failed_units:
        print(f"FAILED {failure}")
