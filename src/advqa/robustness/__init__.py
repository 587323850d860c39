"""Robustness of image-quality metrics to adversarial attacks (the MSU benchmark's protocol).

>>> summary = run_benchmark(["psnr", "niqe"], ["ifgsm", "cumulative-uap"], train, test,
...                         "runs/bench")                       # doctest: +SKIP
>>> robustness_scores(clean, attacked, low, high)["abs_gain"]    # doctest: +SKIP
"""

from advqa.robustness.benchmark import (
    ATTACK_NAMES,
    STEPPED_ATTACKS,
    BenchmarkSummary,
    ImageSet,
    Settings,
    load_image_set,
    parse_step_sizes,
    run_benchmark,
    split_image_set,
)
from advqa.robustness.calibration import metric_range
from advqa.robustness.leaderboard import leaderboard, score_table, write_leaderboard
from advqa.robustness.mifgsm import MIFGSM
from advqa.robustness.objective import MetricObjective, jpeg_copy
from advqa.robustness.scores import robustness_scores
from advqa.robustness.uap import UAP, apply_uap, train_uap

__all__ = [
    "ATTACK_NAMES",
    "MIFGSM",
    "STEPPED_ATTACKS",
    "UAP",
    "BenchmarkSummary",
    "ImageSet",
    "MetricObjective",
    "Settings",
    "apply_uap",
    "jpeg_copy",
    "leaderboard",
    "load_image_set",
    "metric_range",
    "parse_step_sizes",
    "robustness_scores",
    "run_benchmark",
    "score_table",
    "split_image_set",
    "train_uap",
    "write_leaderboard",
]
