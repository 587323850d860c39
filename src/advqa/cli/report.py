"""``advqa report``: one self-contained HTML page summarising a study."""

from __future__ import annotations

from pathlib import Path

from advqa.cli.common import CommandError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write a study's self-contained report.html",
        description="Write STUDY/report.html: dataset summary, sample AEs, mean scores, "
        "correlations with MOS, AEQA curves, attack comparison, settings. It reads what "
        "the study directory holds (run `advqa score` first for scores) and computes no "
        "scores. The file is self-contained: inline images and style, no scripts or links.")
    parser.add_argument("study", type=Path, help="study directory")
    parser.add_argument("--samples", type=int, default=3,
                        help="reference images in the grid of sample AEs (default: 3)")
    parser.set_defaults(handler=run)


def run(arguments) -> int:
    from advqa.report import write_report

    if not arguments.study.is_dir():
        raise CommandError(f"not a directory: {arguments.study}")
    if arguments.samples < 0:
        raise CommandError("--samples must be 0 or more")
    path = write_report(arguments.study, samples=arguments.samples)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")
    return 0
