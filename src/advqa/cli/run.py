"""``advqa run``: the default study on the embedded data."""

from __future__ import annotations

from advqa.cli.build import add_build_options, build_options, print_summary
from advqa.cli.common import make_engine, name_list
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
    from advqa.workflows import default_study

    print(f"advqa run: {'Table 2 + C&W' if arguments.full else 'demo'} grid on "
          f"{arguments.source} with {arguments.model}")
    with make_engine(arguments) as executor:
        result = default_study(arguments.out, full=arguments.full, metrics=arguments.metrics,
                               executor=executor, **build_options(arguments))
    print_summary(result.build)
    if result.scores is not None:
        print_score_summary(result.build.output, result.scores)
    if result.applications is not None:
        print(f"AEQA applications: {result.applications}")
    if result.detection is not None:
        detection = result.detection
        print(f"WS detector: median detection rate {detection.detection_rate.median():.2f}, "
              f"median AUC {detection.auc.median():.2f} over {len(detection)} grid cells")
    print(f"report: {result.report}")
    return 0
