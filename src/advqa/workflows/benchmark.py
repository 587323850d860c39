"""The IQA-metric robustness benchmark as one call (``advqa benchmark``)."""

from __future__ import annotations

from pathlib import Path

# Lp distances are in the registry for scoring AEs, but they are not quality metrics
# anyone would attack: the default benchmark leaves them out (name them to include them).
DISTANCES = {"l0", "l1", "l2", "linf"}


def default_metrics() -> list[str]:
    """Every differentiable offline quality metric that needs no classifier."""
    from advqa.quality.registry import is_available, list_metrics

    return [info.name for info in list_metrics().values()
            if info.differentiable and not info.needs_model and info.name not in DISTANCES
            and is_available(info.name)]


def image_sets(train_images: str | None, test_images: str | None, *, size: int = 256,
               seed: int = 0):
    """Training and test images: both given, or neither (the embedded photos, split)."""
    from advqa.robustness.benchmark import load_image_set, split_image_set

    if (train_images is None) != (test_images is None):
        raise ValueError("give both --train-images and --test-images, or neither "
                         "(then the embedded photos are split)")
    if train_images is None:
        return split_image_set(load_image_set("photos", size=size), seed=seed)
    return (load_image_set(train_images, size=size), load_image_set(test_images, size=size))


def benchmark_metrics(out: str | Path, settings, *, r_score: str = "paper", metrics=None,
                      attacks=None, train_images: str | None = None,
                      test_images: str | None = None, size: int = 256, executor=None,
                      progress: bool = True, say=print):
    """Attack ``metrics`` (default :func:`default_metrics`) with ``attacks`` (default all
    nine) and write the items, leaderboard and UAP artefacts to ``out``; returns the
    :class:`advqa.robustness.BenchmarkSummary`. ``settings`` is a
    :class:`advqa.robustness.Settings` (validated when made); ``r_score`` the
    leaderboard's robustness-score variant, ``"paper"`` or ``"msu"``."""
    from advqa.robustness.benchmark import ATTACK_NAMES, run_benchmark, step_label

    metrics = metrics or default_metrics()
    attacks = attacks or list(ATTACK_NAMES)
    unknown = [name for name in attacks if name not in ATTACK_NAMES]
    if unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(ATTACK_NAMES)}")
    train, test = image_sets(train_images, test_images, size=size, seed=settings.seed)
    say(f"advqa benchmark: {len(metrics)} metric(s) × {len(attacks)} attack(s); train "
        f"{len(train.names)} images ({train.dataset}), test {len(test.names)} "
        f"({test.dataset}), {size}², engine {getattr(executor, 'name', 'local')}")
    say(f"  step sizes {', '.join(step_label(step) for step in settings.step_sizes)}, "
        f"MI-FGSM form {settings.mifgsm_form}, robustness score {r_score}")
    return run_benchmark(metrics, attacks, train, test, out, settings=settings,
                         r_score=r_score, executor=executor, progress=progress)
