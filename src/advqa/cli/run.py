"""``advqa run``: the default study on the embedded data."""

from __future__ import annotations

from advqa.cli.build import add_build_options, build, print_summary
from advqa.cli.common import name_list
from advqa.cli.score import print_score_summary


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="the default study: sample ImageNet photos × EfficientNet-Lite0",
        description="Build the default study into runs/demo: the 20 labelled ImageNet "
        "sample photos attacked on EfficientNet-Lite0 over a reduced grid (about 5 minutes "
        "on 2 CPU cores), or the paper's full Table 2 grid with --full; then score every AE "
        "with AdvDSS, AEQA, the offline IQA baselines and the Lp norms; then the AEQA "
        "applications, the steganalysis detector's view of the AEs and report.html.")
    add_build_options(parser, default_out="runs/demo")
    parser.add_argument("--full", action="store_true",
                        help="the paper's Table 2 grid plus C&W instead of the reduced grid")
    parser.add_argument("--metrics", type=name_list, default=None,
                        help="metrics to score the AEs with (default: all offline ones)")
    parser.set_defaults(handler=run)


def run(arguments) -> int:
    from advqa.quality.scoring import default_metrics, score_study
    from advqa.study import full_grid
    from advqa.study.grid import demo_grid

    grid = full_grid() if arguments.full else demo_grid()
    print(f"advqa run: {len(grid)} grid cells on {arguments.source} with {arguments.model}")
    summary = build(arguments, grid)
    print_summary(summary)
    if len(summary.manifest):
        scores = score_study(summary.output, arguments.metrics or default_metrics(),
                             progress=not arguments.no_progress)
        print_score_summary(summary.output, scores)
        if "aeqa" in scores.columns:
            from advqa.evaluate.applications import write_applications

            print(f"AEQA applications: {write_applications(summary.output)}")
        from advqa.detect.study import detect_study

        detection = detect_study(summary.output)
        print(f"WS detector: median detection rate {detection.detection_rate.median():.2f}, "
              f"median AUC {detection.auc.median():.2f} over {len(detection)} grid cells")
    from advqa.report import write_report

    print(f"report: {write_report(summary.output)}")
    return 0
