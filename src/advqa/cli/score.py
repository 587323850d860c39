"""``advqa score``: score a study's AEs, or one reference/distorted pair."""

from __future__ import annotations

from pathlib import Path

from advqa.cli.common import (
    CommandError,
    add_device_option,
    add_engine_options,
    add_progress_option,
    make_engine,
    name_list,
    positive_int,
)
from advqa.study.layout import StudyDir


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score", help="score a study's AEs (or one image pair) with quality metrics",
        description="With --study (or --manifest), add one score per metric to every AE "
        "and write scores.{parquet,csv} and scored_manifest.{parquet,csv}; re-running "
        "resumes. With REFERENCE and DISTORTED, print the scores of that pair; two videos "
        "(.y4m, .mp4, .mkv…) are scored with the video metrics (strred, vsfa, any image "
        "metric pooled over frames as ssim@mean; default: every one that runs here).")
    parser.add_argument("reference", nargs="?", type=Path, help="reference image")
    parser.add_argument("distorted", nargs="?", type=Path, help="distorted image")
    parser.add_argument("--study", type=Path, default=None, help="study directory")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="a study's manifest.parquet (its directory is the study)")
    parser.add_argument("--metrics", type=name_list, default=None,
                        help="comma-separated metric names (see `advqa metrics`); "
                        "default: every study metric available offline")
    parser.add_argument("--model", default=None,
                        help="classifier for aeqa and js (default: the study's model; "
                        "for an image pair, without it aeqa and js are skipped)")
    add_device_option(parser)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    add_progress_option(parser)
    add_engine_options(parser)
    parser.set_defaults(handler=run)


def print_pair_scores(arguments) -> int:
    from advqa.data import VIDEO_SUFFIXES
    from advqa.models import load_classifier
    from advqa.quality import score_pair

    if {arguments.reference.suffix.lower(), arguments.distorted.suffix.lower()} & \
            VIDEO_SUFFIXES:
        from advqa.quality.video import score_video_pair

        result = score_video_pair(arguments.reference, arguments.distorted, arguments.metrics)
        return print_pair_result(result)
    model = (load_classifier(arguments.model, device=arguments.device) if arguments.model
             else None)
    result = score_pair(arguments.reference, arguments.distorted, arguments.metrics,
                        model=model)
    return print_pair_result(result)


def print_pair_result(result) -> int:
    width = max((len(name) for name in result.scores), default=0)
    for name, value in result.scores.items():
        print(f"{name:<{max(width, 9)}} {value:.6g}")
    for name, reason in result.skipped.items():
        print(f"note: {name} skipped: {reason}")
    return 0


def run(arguments) -> int:
    study = arguments.study or (StudyDir.of_manifest(arguments.manifest).path
                                if arguments.manifest else None)
    if study is None:
        if arguments.reference is None or arguments.distorted is None:
            raise CommandError("give --study DIR, --manifest FILE, or REFERENCE DISTORTED")
        return print_pair_scores(arguments)
    from advqa.models import load_classifier
    from advqa.quality.scoring import score_study

    model = (load_classifier(arguments.model, device=arguments.device) if arguments.model
             else None)
    with make_engine(arguments) as executor:
        scores = score_study(study, arguments.metrics, model=model, executor=executor,
                             batch_size=arguments.batch_size,
                             progress=not arguments.no_progress)
    print_score_summary(study, scores, arguments.metrics)
    return 0


def print_score_summary(study: Path, scores, metrics=None) -> None:
    """Mean scores per attack and norm: of ``metrics`` when they were named, else of every
    metric the study has scores for."""
    layout = StudyDir(study)
    manifest = layout.scored_manifest(required=True)
    columns = [c for c in scores.columns if c != "id" and (metrics is None or c in metrics)]
    keys = ["attack", "norm"]
    if "search" in manifest and (manifest["search"] == "minimal").any():
        # Grid and --search minimal AEs answer different questions: summarised apart.
        manifest = manifest.assign(search=manifest["search"].fillna("grid"))
        keys = ["search", *keys]
    table = manifest.groupby(keys)[columns].mean()
    print(f"\nmean scores per attack and norm ({len(manifest)} AEs; "
          f"{layout.scored_manifest_path})")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
