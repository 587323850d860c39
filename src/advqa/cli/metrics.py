"""``advqa metrics``: every quality metric and what it is."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "metrics", help="list quality metrics",
        description="List the quality metrics: full-reference or not, which direction is "
        "better, natural range, differentiable or not, and the original release each "
        "default reproduces (docs/metrics.md gives the checks).")
    parser.add_argument("--video", action="store_true",
                        help="list the video metrics instead (ST-RRED, VSFA, MDTVSFA); any "
                        "image metric also scores video pooled over frames, e.g. ssim@mean")
    parser.set_defaults(handler=run)


def run(arguments) -> int:
    from advqa.quality import list_metrics
    from advqa.quality.video import POOLINGS, list_video_metrics

    metrics = list_video_metrics() if arguments.video else list_metrics()
    print(f"{'name':<9} {'kind':<4} {'better':<7} {'range':<13} {'grad':<5} description")
    for info in metrics.values():
        kind = "FR" if info.full_reference else "NR"
        better = "higher" if info.higher_is_better else "lower"
        low, high = info.range
        span = f"[{low:g}, {high:g}]"
        gradient = "yes" if info.differentiable else "no"
        model = " (needs --model)" if info.needs_model else ""
        print(f"{info.name:<9} {kind:<4} {better:<7} {span:<13} {gradient:<5} "
              f"{info.description}{model}")
        if info.release:
            print(f"{'':<9} follows {info.release}")
    if arguments.video:
        print(f"\nand every image metric (`advqa metrics`) pooled over frames: NAME@POOLING "
              f"with POOLING in {', '.join(POOLINGS)} or p<percent>, e.g. ssim@mean")
    return 0
