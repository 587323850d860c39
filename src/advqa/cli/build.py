"""``advqa build``: an AdvDB-style dataset of references, AEs and a manifest."""

from __future__ import annotations

from pathlib import Path

from advqa.cli.common import (
    add_engine_options,
    add_model_options,
    add_progress_option,
    exit_code,
    make_engine,
    name_list,
    number_list,
    positive_int,
)

GRIDS = ("demo", "table2", "full")


def add_build_options(parser, *, default_out: str | None) -> None:
    parser.add_argument("--source", default="imagenet",
                        help="named sample set (imagenet, photos, mnist, fashion-mnist, cifar10), "
                        "an image folder, a NIPS 2017 dev-set folder or an IDX folder")
    parser.add_argument("--labels", type=Path, default=None, help="labels CSV for a folder source")
    parser.add_argument("--study", "--out", dest="out", type=Path, default=default_out,
                        required=default_out is None,
                        help="study directory to write (resumed if it exists)"
                        + (f"; default: {default_out}" if default_out else ""))
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="use only the first N images")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="references per work unit")
    parser.add_argument("--keep-failed", action="store_true",
                        help="keep AEs that do not fool the model, flagged success=False")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--append", action="store_true",
                        help="let a resumed study gain grid cells or sources it was not built "
                        "with (study.json then lists every grid); without it a different "
                        "grid is refused")
    add_progress_option(parser)
    add_model_options(parser)
    add_engine_options(parser)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build", help="generate AEs over attacks × norms × strengths (AdvDB-style)",
        description="Attack every source image with every cell of a grid, filter AEs that "
        "do not fool the model, and write PNGs plus manifest.{parquet,csv}. Re-running "
        "resumes: finished work is skipped.")
    add_build_options(parser, default_out=None)
    grid = parser.add_argument_group("grid (default: the paper's Table 2)")
    grid.add_argument("--grid", choices=GRIDS, default="table2",
                      help="named grid: demo (reduced), table2 (paper), full (table2 + C&W)")
    grid.add_argument("--config", type=Path, default=None, help="grid file, TOML or JSON")
    grid.add_argument("--attacks", type=name_list, default=None, help="e.g. pgd,fgsm")
    grid.add_argument("--norms", type=name_list, default=["linf"], help="e.g. linf,l2")
    grid.add_argument("--strengths", type=number_list, default=None,
                      help="eps / overshoot / kappa values, e.g. 1/255,4/255")
    grid.add_argument("--steps", type=positive_int, default=10,
                      help="iterations of iterative attacks (with --attacks)")
    grid.add_argument("--budget", default=None,
                      help="perceptual budget for every projected-gradient cell, e.g. "
                      "\"advdss>=0.99\" (other cells are left out)")
    add_search_options(parser)
    parser.set_defaults(handler=run)


def add_search_options(parser) -> None:
    minimal = parser.add_argument_group("least visible AE per image")
    minimal.add_argument("--search", choices=("minimal",), default=None,
                         help="minimal: per image and cell, bisect for the smallest "
                         "strength that fools (eps/overshoot in [strength/256, strength], "
                         "kappa in [0, kappa]) or, in a --budget cell, the tightest budget; "
                         "rows get search=minimal, searched, searched_value, "
                         "bisection_calls")
    minimal.add_argument("--rounds", type=int, default=8,
                         help="bisection rounds of --search minimal (default 8)")
    minimal.add_argument("--metric", default="advdss",
                         help="full-reference metric the report ranks the per-image minimal "
                         "AEs by (default advdss; score the study with it)")


def build_options(arguments) -> dict:
    """The options of :func:`advqa.workflows.build_study` the parser collected."""
    return {"source": arguments.source, "labels": arguments.labels, "limit": arguments.limit,
            "model": arguments.model, "device": arguments.device,
            "weights": None if arguments.weights.lower() == "none" else arguments.weights,
            "batch_size": arguments.batch_size, "keep_failed": arguments.keep_failed,
            "seed": arguments.seed, "append": arguments.append,
            "progress": not arguments.no_progress}


def search_options(arguments) -> dict:
    """``search``, ``rounds`` and ``metric`` of :func:`advqa.workflows.build_study`, when
    ``--search`` is given."""
    if arguments.search is None:
        return {}
    if arguments.rounds < 0:
        raise ValueError(f"--rounds must be >= 0, got {arguments.rounds}")
    return {"search": arguments.search, "rounds": arguments.rounds,
            "metric": arguments.metric}


def print_summary(summary) -> None:
    from advqa.study.layout import StudyDir

    study = StudyDir(summary.output)
    for note in summary.notes:
        print(note)
    print(f"\n{len(summary.manifest)} AEs kept in {study.manifest_path} "
          f"({summary.skipped_units}/{summary.attempted} units resumed, "
          f"{summary.seconds:.0f} s)")
    if len(summary.attempts):
        print(summary.success_table().to_string(index=False,
                                                float_format=lambda v: f"{v:.4g}"))
    if summary.failures:
        print(f"{len(summary.failures)} failures listed in {study.failures_path}")


def run(arguments) -> int:
    from advqa.study.grid import choose_grid
    from advqa.workflows import build_study

    grid = choose_grid(config=arguments.config, attacks=arguments.attacks,
                       norms=arguments.norms, strengths=arguments.strengths,
                       steps=arguments.steps, named=arguments.grid, budget=arguments.budget)
    with make_engine(arguments) as executor:
        summary = build_study(arguments.out, grid, executor=executor,
                              **build_options(arguments), **search_options(arguments))
    print_summary(summary)
    return exit_code(len(summary.attempts), len(summary.failures))
