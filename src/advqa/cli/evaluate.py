"""``advqa evaluate``: import opinion scores and measure how well metrics agree with them."""

from __future__ import annotations

import argparse
from pathlib import Path

from advqa.cli.common import (
    CommandError,
    add_progress_option,
    add_study_argument,
    name_list,
    number,
    number_list,
    study_of,
)
from advqa.study.layout import StudyDir

MAPPING_HELP = ("comma-separated FIELD=COLUMN pairs, fields among id, mos, mos_std, "
                "n_ratings, image, attack, norm, strength; e.g. id=Image,mos=MOS,mos_std=Std")


def mapping(text: str) -> dict[str, str]:
    """Parse ``id=Image name,mos=MOS`` into ``{"id": "Image name", "mos": "MOS"}``."""
    pairs = {}
    for part in text.split(","):
        if not part.strip():
            continue
        field, separator, column = part.partition("=")
        if not separator or not field.strip() or not column.strip():
            raise argparse.ArgumentTypeError(f"not FIELD=COLUMN: {part.strip()!r}")
        pairs[field.strip()] = column.strip()
    return pairs


def scale(text: str) -> tuple[float, float]:
    """Parse ``1,5`` into ``(1.0, 5.0)``."""
    from advqa.evaluate.mos import check_scale

    try:
        return check_scale(number_list(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="import opinion scores (MOS) and correlate metrics with them",
        description="`import` stores a spreadsheet's MOS in the study (mos.{parquet,csv}); "
        "`correlations` prints SROCC/KROCC/PLCC/RMSE per attack and writes "
        "correlations.{parquet,csv} and scatter.png.")
    parser.set_defaults(handler=run, parser=parser)
    commands = parser.add_subparsers(title="evaluate commands", dest="evaluate_command",
                                     metavar="COMMAND")
    add_import(commands)
    add_correlations(commands)
    add_aeqa(commands)


def add_aeqa(commands) -> None:
    parser = commands.add_parser(
        "aeqa", help="AEQA applications: attack comparison, best settings, curves",
        description="Write aeqa_applications/: attacks compared at one budget (the paper's "
        "Table 6), the strength with peak mean AEQA per attack and the AEQA curves "
        "(Figure 7). With --lbfgs, also maximise AEQA with L-BFGS on the sample photos and "
        "compare with PGD at equal success (Table 7).")
    add_study_argument(parser, help="scored study directory")
    parser.add_argument("--norm", default=None, help="budget norm; default: the shared one")
    parser.add_argument("--strength", type=number, default=None, help="budget, e.g. 0.03")
    parser.add_argument("--lbfgs", type=int, default=0, metavar="N",
                        help="also run the L-BFGS AEQA attack on the first N references")


def add_import(commands) -> None:
    parser = commands.add_parser(
        "import", help="store opinion scores from a CSV/XLSX sheet",
        description="Map a spreadsheet's rows onto the study's AEs and store id, mos, "
        "mos_std, n_ratings in mos.parquet, with mos_source import:<sheet file name>. An "
        "earlier import of the same file is replaced; MOS from other sources (e.g. "
        "`advqa annotate export`) are kept, and items they already scored are refused "
        "unless --replace-source. MOS far outside --scale get a warning.")
    add_study_argument(parser)
    parser.add_argument("sheet", type=Path, help="CSV or XLSX file of opinion scores")
    parser.add_argument("--map", dest="mapping", type=mapping, default=None, help=MAPPING_HELP)
    parser.add_argument("--sheet", dest="worksheet", default=None,
                        help="worksheet name of an XLSX file; default the first")
    parser.add_argument("--scale", type=scale, default=(1.0, 5.0), metavar="LOW,HIGH",
                        help="the sheet's opinion-score scale; MOS more than 10%% of its "
                        "width outside it get a warning (default: 1,5)")
    parser.add_argument("--source", default=None,
                        help="mos_source name of these scores; default import:<sheet name>")
    parser.add_argument("--replace-source", action="store_true",
                        help="replace the MOS of items that another source already scored")


def add_correlations(commands) -> None:
    parser = commands.add_parser("correlations", help="metric-vs-MOS agreement per attack",
                                 description="SROCC and KROCC on raw scores, PLCC and RMSE "
                                 "after the 5-parameter logistic fit, per group and pooled.")
    add_study_argument(parser, help="scored study directory")
    parser.add_argument("--metrics", type=name_list, default=None,
                        help="comma-separated metric columns; default: every scored metric")
    parser.add_argument("--group", default="attack",
                        help="manifest column to split by, or 'none'; default: %(default)s")
    parser.add_argument("--bootstrap", type=int, default=0,
                        help="resamples for 95%% confidence intervals (e.g. 1000); default 0")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--no-plot", action="store_true", help="skip scatter.png")
    add_progress_option(parser)
    parser.add_argument("--mos-source", type=name_list, default=None, metavar="NAME[,NAME]",
                        help="MOS source(s) to use (see mos.csv's mos_source); required when "
                        "the study has several, which are pooled only when listed")


def run(arguments) -> int:
    if arguments.evaluate_command == "import":
        return run_import(arguments)
    if arguments.evaluate_command == "correlations":
        return run_correlations(arguments)
    if arguments.evaluate_command == "aeqa":
        return run_aeqa(arguments)
    arguments.parser.print_help()
    return 2


def run_import(arguments) -> int:
    from advqa.evaluate.mos import MosImportError, MosSourceError, import_mos

    try:
        update = import_mos(study_of(arguments), arguments.sheet, mapping=arguments.mapping,
                            sheet=arguments.worksheet, scale=arguments.scale,
                            source=arguments.source, replace_source=arguments.replace_source)
    except (MosImportError, MosSourceError) as error:
        raise CommandError(str(error)) from error
    print(f"imported MOS of {len(update.rows)} AEs")
    print(update.summary())
    return 0


def run_correlations(arguments) -> int:
    from advqa.evaluate.mos import MissingMosError, MosSourceError
    from advqa.evaluate.study import study_correlations

    try:
        result = study_correlations(
            study_of(arguments), metrics=arguments.metrics, mos_source=arguments.mos_source,
            group=None if arguments.group.lower() == "none" else arguments.group,
            bootstrap=arguments.bootstrap, seed=arguments.seed, plot=not arguments.no_plot,
            progress=not arguments.no_progress)
    except (FileNotFoundError, MissingMosError, MosSourceError) as error:
        raise CommandError(str(error)) from error
    used = ", ".join(f"{name} ({count} AEs)" for name, count in result.sources.items())
    print(f"agreement with MOS ({result.rated} rated AEs; MOS source: {used})")
    if result.with_std < result.rated:
        print(f"outlier_ratio: only the {result.with_std} AEs with a rating std count "
              f"({result.rated - result.with_std} have none, e.g. rated once); the other "
              f"criteria use all {result.rated}" if result.with_std else
              "outlier_ratio: left out, no AE has a rating std (mos_std)")
    print(result.table.to_string(float_format=lambda value: f"{value:.4f}"))
    print("\n" + "\n".join(f"wrote {path}" for path in result.paths))
    return 0


def run_aeqa(arguments) -> int:
    from advqa.evaluate.applications import lbfgs_table, write_applications

    study = study_of(arguments)
    output = write_applications(study, norm=arguments.norm,
                                strength=arguments.strength)
    applications = StudyDir(study).applications
    comparison = applications.attack_comparison(required=True)
    print(comparison.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(applications.best_settings(required=True).to_string(index=False))
    if arguments.lbfgs:
        table = lbfgs_table(study, arguments.lbfgs)
        applications.write_lbfgs(table)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {output}")
    return 0
