"""``advqa reproduce NAME``: a paper's tables with its numbers beside ours."""

from __future__ import annotations

import sys
from pathlib import Path

from advqa.cli.common import CommandError, add_engine_options, add_progress_option, make_engine


def register(subparsers) -> None:
    from advqa.experiments import REPRODUCTIONS

    parser = subparsers.add_parser(
        "reproduce", help="rebuild a paper's tables and figures beside its published numbers",
        description="Run a paper's experiments with advqa (resumable on the job engine) and "
        "write OUT/reproduction.md (per cell: paper, ours, difference), "
        "OUT/comparison.csv/.parquet, the figures as PNG and OUT/reproduction.json "
        "(settings, versions, data fingerprints). gate: Feng & Cai's Tables I-V and "
        "Figures 3-4 on the ImageNet photos and the Fashion-MNIST test split; advdss: the "
        "AdvDSS/AEQA paper's Tables 2-7 and Figure 7 on every embedded photo (Tables 3-5 "
        "with --mos); stego: "
        "Schöttle et al.'s Table II and Figures 2-4 on the 10,000 Fashion-MNIST test images; "
        "msu: the MSU metric-robustness benchmark's leaderboard (Antsiferova et al.) on the "
        "embedded photos, each iterative attack at its strongest step of a grid.")
    parser.add_argument("name", choices=sorted(REPRODUCTIONS), help="which paper")
    parser.add_argument("--scale", choices=("smoke", "full"), default="full",
                        help="smoke: a few images, to check the pipeline; full: the largest "
                        "scale the offline data allows (default: full)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: runs/repro-NAME)")
    parser.add_argument("--mos", type=Path, default=None,
                        help="advdss only: opinion scores of the study's AEs (CSV/XLSX, as "
                        "`advqa evaluate import` reads; ids are those of OUT/study) for "
                        "Tables 3-5; without it those tables are not measured and only "
                        "their score side is written")
    add_progress_option(parser)
    add_engine_options(parser)
    parser.set_defaults(handler=run_reproduce)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_reproduce(arguments) -> int:
    from advqa.experiments import reproduce

    out = arguments.out or Path("runs") / f"repro-{arguments.name}"
    try:
        written = reproduce(arguments.name, out, scale=arguments.scale,
                            executor=make_engine(arguments),
                            progress=None if arguments.no_progress else _say, mos=arguments.mos)
    except ValueError as error:
        raise CommandError(str(error)) from error
    for path in written:
        print(f"wrote {path}")
    return 0
