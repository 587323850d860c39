"""``advqa annotate export``: MOS from collected ratings, with BT.500 screening."""

from __future__ import annotations

from pathlib import Path

from advqa.cli.common import CommandError


def add_commands(annotate_subparsers) -> None:
    """Add ``export`` to the ``advqa annotate`` subcommands."""
    parser = annotate_subparsers.add_parser(
        "export", help="write the MOS of collected ratings (BT.500 screening)",
        description="Write OUT (columns item_id, mos, std, ci95, n) from a rating database. "
        "Raters are first screened by ITU-R BT.500's beta2 kurtosis procedure, then at most "
        "one outlier individual score per item (farther than 2 std from the item mean) is "
        "removed. OUT_screening.csv lists every rater's P, Q, N and why they were kept or "
        "rejected; OUT_removed_scores.csv lists the removed scores. With --manifest, the "
        "MOS is also stored in that study (mos.parquet, columns mos, mos_std, n_ratings, "
        "mos_source) for `advqa evaluate correlations`, as source annotate:<db name>: an "
        "earlier export of this database is replaced, MOS from other sources are kept, "
        "and items another source already scored are refused unless --replace-source.")
    parser.add_argument("--db", required=True,
                        help="rating database (SQLite file or PostgreSQL URL)")
    parser.add_argument("--out", required=True, type=Path, help="MOS CSV to write")
    parser.add_argument("--study", type=Path, default=None,
                        help="the study whose MOS to fill (its manifest.parquet)")
    parser.add_argument("--manifest", type=Path,
                        help="a study's manifest.parquet whose MOS to fill (as --study)")
    parser.add_argument("--no-screening", dest="screen", action="store_false",
                        help="keep every rater (skip BT.500 screening)")
    parser.add_argument("--keep-outliers", dest="remove_outliers", action="store_false",
                        help="keep outlier individual scores")
    parser.add_argument("--replace-source", action="store_true",
                        help="with --manifest: replace the study MOS of items that another "
                        "source (e.g. an imported sheet) already scored")
    parser.set_defaults(handler=run_export)


def run_export(arguments) -> int:
    from advqa.annotate.export import UnknownItemsError, export_mos
    from advqa.evaluate.mos import MosSourceError

    try:
        result = export_mos(arguments.db, arguments.out, manifest=manifest_of(arguments),
                            screen=arguments.screen,
                            remove_outliers=arguments.remove_outliers,
                            replace_source=arguments.replace_source)
    except (UnknownItemsError, MosSourceError) as error:
        raise CommandError(str(error)) from error
    print_export(result, remove_outliers=arguments.remove_outliers)
    return 0


def manifest_of(arguments) -> Path | None:
    if arguments.study is None:
        return arguments.manifest
    from advqa.study.layout import StudyDir

    manifest = StudyDir(arguments.study).manifest_path
    if arguments.manifest is not None and arguments.manifest != manifest:
        raise CommandError(f"two studies given: --study {arguments.study} and --manifest "
                           f"{arguments.manifest}")
    return manifest


def print_export(result, *, remove_outliers: bool) -> None:
    report, table = result.report, result.table
    print(f"{report.n_ratings} ratings by {report.n_raters} raters of {len(table)} items")
    if report.screening is None:
        print("screening: skipped (--no-screening)")
    elif not report.rejected:
        print("screening (ITU-R BT.500): no rater rejected")
    else:
        print(f"screening (ITU-R BT.500): {len(report.rejected)} rater(s) rejected")
        for row in report.screening.rejected_table.itertuples():
            print(f"  {row.rater}: {row.reason}")
    if not remove_outliers:
        print("outlier scores: kept (--keep-outliers)")
    else:
        print(f"outlier scores: {len(report.removed)} removed (at most one per item)")
    for label, path in result.paths.items():
        if label != "study_mos":
            print(f"wrote {path}")
    if result.study is not None:
        print(result.study.summary())
