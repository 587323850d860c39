"""``advqa report``: one self-contained HTML page summarising a study."""

from __future__ import annotations

from advqa.cli.common import CommandError, add_study_argument, study_of


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write a study's self-contained report.html",
        description="Write STUDY/report.html. It opens with the attacks ranked by how visible "
        "their AEs are at equal success (50 %% and 90 %%), then every score against strength, "
        "an AE viewer (native size, flicker, amplified difference, zoom), the grid cells, "
        "and the tables of `advqa evaluate` and `advqa detect study` where the study has "
        "them; settings last, collapsed. It reads what the study directory holds (run "
        "`advqa score` first for scores) and computes no scores. The file is "
        "self-contained: inline images, style and scripts, nothing fetched.")
    add_study_argument(parser)
    parser.add_argument("--max-images", type=int, default=40,
                        help="at most this many images (AEs and references) in the AE "
                        "viewer (default: 40)")
    parser.set_defaults(handler=run)


def run(arguments) -> int:
    from advqa.report import write_report

    study = study_of(arguments)
    if not study.is_dir():
        raise CommandError(f"not a directory: {study}")
    if arguments.max_images < 0:
        raise CommandError("--max-images must be 0 or more")
    path = write_report(study, max_images=arguments.max_images)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")
    return 0
