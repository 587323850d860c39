"""``advqa detect``: detectors of adversarial and unfit inputs.

``advqa detect stego-eval`` runs the experiment of Schöttle et al. (EUSIPCO 2018)
on Fashion-MNIST: PGD against a natural and an adversarially trained CNN, judged
by the weighted-stego residual detector. Other modules add subcommands to the
same group: :func:`register` passes the group's subparsers to
``advqa.cli.gate.add_commands`` when that module exists.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from advqa.cli.common import (
    CommandError,
    add_device_option,
    add_engine_options,
    add_study_argument,
    make_engine,
    name_list,
    number,
    positive_int,
    study_of,
)


def eps_grid(text: str) -> list[float]:
    """``0.01,0.02,0.1`` (a list) or ``0.01:0.5:0.01`` (start:stop:step, stop included)."""
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"a range is start:stop:step, got {text!r}")
        start, stop, step = (number(part) for part in parts)
        if step <= 0 or stop < start:
            raise argparse.ArgumentTypeError(f"empty or endless range {text!r}")
        count = math.floor((stop - start) / step + 1e-9) + 1
        return [round(start + k * step, 10) for k in range(count)]
    values = [number(part) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("no eps given")
    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect", help="detect adversarial or unfit inputs",
        description="Detectors of adversarial and unfit inputs, and their evaluations.")
    detect_subparsers = parser.add_subparsers(title="detect commands", metavar="DETECTOR")
    parser.set_defaults(handler=lambda arguments: _usage(parser))
    add_stego_eval(detect_subparsers)
    add_study(detect_subparsers)
    add_semantic_impact(detect_subparsers)
    try:
        from advqa.cli import gate
    except ImportError:
        return
    gate.add_commands(detect_subparsers)


def add_semantic_impact(subparsers) -> None:
    from advqa.detect.distortions import DISTORTIONS

    parser = subparsers.add_parser(
        "semantic-impact", help="Wu-Palmer similarity of the victim's answers vs quality "
        "(Table I, Fig. 3 of Feng & Cai)",
        description="Distort every image of SOURCE (blur, noise, JPEG, JPEG2000 at levels "
        "1-5), classify reference and distorted images, and write OUT/rows.{parquet,csv} "
        "(Wu-Palmer similarity of the two top-1 classes on WordNet 3.0, and the distorted "
        "image's quality on [0, 1]), OUT/table_i.{parquet,csv} (median, mean, std) and "
        "OUT/fig3.png (density of similarity vs quality per distortion). Resumable.")
    parser.add_argument("--source", default="imagenet",
                        help="sample-set name or image folder (default imagenet)")
    parser.add_argument("--model", default="efficientnet-lite0",
                        help="ImageNet-1k classifier (default efficientnet-lite0)")
    add_device_option(parser)
    parser.add_argument("--quality", default="dtniq",
                        help="no-reference metric for the quality axis (default dtniq, the "
                        "DTNIQ-f proxy; brisque, niqe, piqe also work)")
    parser.add_argument("--distortions", type=name_list, default=list(DISTORTIONS),
                        help=f"comma-separated (default {','.join(DISTORTIONS)})")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="use only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.add_argument("--out", type=Path, default=Path("runs/semantic-impact"),
                        help="output folder (default runs/semantic-impact)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_engine_options(parser)
    parser.set_defaults(handler=run_semantic_impact)


def run_semantic_impact(arguments) -> int:
    from advqa.workflows.semantic import semantic_impact_run

    try:
        result = semantic_impact_run(
            arguments.out, source=arguments.source, model=arguments.model,
            quality=arguments.quality, distortions=arguments.distortions,
            limit=arguments.limit, seed=arguments.seed, executor=make_engine(arguments),
            progress=not arguments.no_progress, device=arguments.device)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        raise CommandError(str(error)) from error
    print(result.table.to_string(index=False))
    print(f"wrote {result.out / 'rows.csv'}, {result.out / 'table_i.csv'}, {result.figure}")
    return 0


def add_study(subparsers) -> None:
    parser = subparsers.add_parser(
        "study", help="the WS detector's view of a study's AEs (the report's detection section)",
        description="Compute the weighted-stego statistic of every reference and AE of STUDY, "
        "calibrate the threshold on the references (largest statistic) and write "
        "STUDY/detection.{parquet,csv} (per AE) and STUDY/detection_summary.{parquet,csv} "
        "(per attack, norm and strength: detection rate and ROC AUC). `advqa report` shows it.")
    add_study_argument(parser)
    parser.set_defaults(handler=run_study)


def run_study(arguments) -> int:
    from advqa.detect.study import detect_study

    study = study_of(arguments)
    if not study.is_dir():
        raise CommandError(f"not a directory: {study}")
    try:
        summary = detect_study(study)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    print(summary.to_string(index=False))
    from advqa.study.layout import StudyDir

    print(f"wrote {StudyDir(study).detection_summary_path.with_suffix('.csv')}")
    return 0


def _usage(parser) -> int:
    parser.print_help()
    return 2


def add_stego_eval(subparsers) -> None:
    parser = subparsers.add_parser(
        "stego-eval", help="WS steganalysis detector vs PGD on Fashion-MNIST (Schöttle et al.)",
        description="Attack Fashion-MNIST test images with L∞ PGD for each eps and model, "
        "flag them with the weighted-stego residual detector calibrated on training images "
        "(threshold = largest benign statistic), and write OUT/results.{parquet,csv}, "
        "OUT/table_ii.{parquet,csv} and figures. Finished (model, eps, chunk) units are "
        "kept in OUT/ledger.sqlite: re-run the same command to resume.")
    add_experiment_options(parser)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder of Fashion-MNIST IDX files (default: the Debian package's)")
    parser.add_argument("--out", type=Path, default=Path("runs/stego"),
                        help="run directory (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_options(parser)
    parser.set_defaults(handler=run_stego_eval)


def add_experiment_options(parser) -> None:
    parser.add_argument("--models", type=name_list,
                        default=["fashion-mnist-cnn", "fashion-mnist-cnn-adv"],
                        help="comma-separated classifier names (default: %(default)s)")
    parser.add_argument("--eps", type=eps_grid, default=None,
                        help="list '0.01,0.1,0.3' or range '0.01:0.5:0.01' (stop included); "
                        "default: the paper's 0.01:0.5:0.01")
    parser.add_argument("--subset", type=int, default=None,
                        help="attack only the first N of the 10,000 test images")
    parser.add_argument("--calibration", type=int, default=None,
                        help="calibrate on the first N of the 60,000 training images")
    parser.add_argument("--target-fpr", type=float, default=None,
                        help="threshold at this benign FPR instead of the benign maximum")
    parser.add_argument("--steps", type=int, default=40, help="PGD steps (default: 40)")
    parser.add_argument("--step-size", type=number, default=None,
                        help="PGD step (default: 2.5*eps/steps)")
    parser.add_argument("--chunk-size", type=int, default=250,
                        help="test images per work unit (default: 250)")
    parser.add_argument("--seed", type=int, default=0, help="PGD random-start seed")


def run_stego_eval(arguments) -> int:
    from advqa.detect.stego_eval import DEFAULT_EPS, StegoEvalConfig, run_stego_eval

    for option in ("subset", "calibration", "steps", "chunk_size"):
        value = getattr(arguments, option)
        if value is not None and value < 1:
            raise CommandError(f"--{option.replace('_', '-')} must be 1 or more")
    if not arguments.models:
        raise CommandError("--models is empty")
    eps = DEFAULT_EPS if arguments.eps is None else arguments.eps
    if any(not (0 < value <= 1) for value in eps):
        raise CommandError("every --eps must lie in (0, 1]")
    if arguments.target_fpr is not None and not (0 <= arguments.target_fpr < 1):
        raise CommandError("--target-fpr must lie in [0, 1)")
    config = StegoEvalConfig(
        models=arguments.models, eps=eps, subset=arguments.subset,
        calibration=arguments.calibration, steps=arguments.steps,
        step_size=arguments.step_size, chunk_size=arguments.chunk_size,
        seed=arguments.seed, target_fpr=arguments.target_fpr)
    with make_engine(arguments) as executor:
        results = run_stego_eval(arguments.out, config, data_dir=arguments.data_dir,
                                 executor=executor, progress=not arguments.no_progress)
    columns = ["model", "eps", "n", "tpr", "ae_accuracy", "pipeline_accuracy", "benign_fpr"]
    print(results[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {arguments.out}/results.parquet, results.csv, table_ii.csv and figures")
    return 0
