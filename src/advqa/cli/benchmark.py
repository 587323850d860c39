"""``advqa benchmark``: how easily attacks fool image-quality metrics, as a leaderboard."""

from __future__ import annotations

import argparse
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
        "and scored against the original. An attack whose mean gain is negative (it made the "
        "metric judge the images worse) is marked failed and left out of the ranks.")
    add_inputs(parser)
    add_video_inputs(parser)
    add_attack_settings(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_engine_options(parser)
    parser.set_defaults(handler=run)


def add_inputs(parser) -> None:
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


def add_video_inputs(parser) -> None:
    video = parser.add_argument_group(
        "video (the benchmark's Derf and Vimeo-90k side)",
        "With --source, clips are attacked frame by frame and ranked per clip: OUT/items "
        "has a row per frame, OUT/clips a row per clip, and the leaderboard ranks clips.")
    video.add_argument("--source", default=None,
                       help="a video (.y4m, .mp4, .mkv…), a folder of videos or of frame "
                       "folders, or a Vimeo-90k triplet root (its test list is attacked, its "
                       "train list trains; otherwise the clips are split by clip)")
    video.add_argument("--max-frames", type=int, default=None,
                       help="at most this many frames per clip (default all)")
    video.add_argument("--pooling", choices=("mean", "harmonic", "percentile"),
                       default="mean", help="how a clip's frame scores make its score "
                       "(default mean; harmonic and percentile weight the worst frames)")
    video.add_argument("--temporal", choices=("frame", "clip"), default="frame",
                       help="frame: every frame attacked on its own, as the MSU benchmark "
                       "(default); clip: one perturbation shared by a clip's frames")
    video.add_argument("--clips-per-unit", type=int, default=1,
                       help="whole clips per work unit (default 1)")


def add_attack_settings(parser) -> None:
    parser.add_argument("--eps", type=number, default=10 / 255,
                        help="L∞ budget of the per-image attacks (default 10/255)")
    parser.add_argument("--steps", type=int, default=10, help="iterations (default 10)")
    parser.add_argument("--step-sizes", "--step-size", dest="step_sizes", type=step_grid,
                        default=(1 / 255,), metavar="STEPS",
                        help="step size of the iterative attacks (I-, MI-, AMI-FGSM, Korhonen), "
                        "or a comma-separated grid such as 0.25/255,0.5/255,1/255: each attack "
                        "runs at every step and is ranked at its strongest (default 1/255)")
    parser.add_argument("--momentum", type=number, default=1.0,
                        help="MI-/AMI-FGSM momentum (default 1.0)")
    parser.add_argument("--mifgsm-form", choices=("dong", "msu"), default="dong",
                        help="MI-/AMI-FGSM momentum term: dong = L1-normalised gradient, "
                        "Dong et al. 2018 (default); msu = raw gradient, as the benchmark's "
                        "text and code")
    parser.add_argument("--r-score", choices=("paper", "msu"), default="paper",
                        help="robustness-score numerator: paper = max(1 − s′, s), the "
                        "benchmark's text; msu = max(1 − s, s), its code (default paper)")
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


def step_grid(text: str) -> tuple[float, ...]:
    """``--step-sizes``: ``0.25/255,0.5/255,1/255`` or plain numbers, each finite and > 0."""
    from advqa.robustness.benchmark import parse_step_sizes

    try:
        return parse_step_sizes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def make_settings(arguments):
    from advqa.robustness.benchmark import Settings

    try:  # before anything is loaded: a setting that fails every unit is refused up front
        return Settings(
            eps=arguments.eps, steps=arguments.steps, step_sizes=tuple(arguments.step_sizes),
            momentum=arguments.momentum, mifgsm_form=arguments.mifgsm_form,
            amplitudes=tuple(arguments.amplitudes), uap_eps=arguments.uap_eps,
            jpeg_quality=arguments.jpeg_quality, batch_size=arguments.batch_size,
            seed=arguments.seed, temporal=arguments.temporal,
            uap={} if arguments.uap_epochs is None else {"epochs": arguments.uap_epochs})
    except ValueError as error:
        raise CommandError(f"bad setting: {error}") from error


def run(arguments) -> int:
    from advqa.workflows.benchmark import benchmark_metrics

    settings = make_settings(arguments)
    with make_engine(arguments) as executor:
        summary = benchmark_metrics(
            arguments.out, settings, r_score=arguments.r_score, metrics=arguments.metrics,
            attacks=arguments.attacks, train_images=arguments.train_images,
            test_images=arguments.test_images, size=arguments.size, executor=executor,
            progress=not arguments.no_progress, **video_options(arguments))
    print_summary(summary)
    if summary.all_failed:
        print("advqa benchmark: every unit failed: no attacked image was scored (errors "
              "above and in the items table)", file=sys.stderr)
        return 1
    return 1 if summary.failures or summary.failed_units else 0


def video_options(arguments) -> dict:
    """The video options of :func:`advqa.workflows.benchmark.benchmark_metrics`."""
    if arguments.source is None:
        given = [flag for flag, value, default in (
            ("--max-frames", arguments.max_frames, None), ("--pooling", arguments.pooling, "mean"),
            ("--temporal", arguments.temporal, "frame"),
            ("--clips-per-unit", arguments.clips_per_unit, 1)) if value != default]
        if given:
            raise CommandError(f"{', '.join(given)} apply to video: give --source")
        return {}
    if arguments.max_frames is not None and arguments.max_frames < 1:
        raise CommandError(f"--max-frames must be >= 1, got {arguments.max_frames}")
    return {"source": arguments.source, "max_frames": arguments.max_frames,
            "pooling": arguments.pooling, "clips_per_unit": arguments.clips_per_unit}


def print_summary(summary) -> None:
    items = summary.items
    failed = items.error.notna().sum() if len(items) else 0
    print(f"{len(items)} rows ({failed} failed) in {summary.paths['items']}")
    for path in summary.paths.values():
        print(f"wrote {path}")
    for failure in summary.failures + summary.failed_units:
        print(f"FAILED {failure}")
