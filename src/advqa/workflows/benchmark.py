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


def clip_sets(source: str, train_images: str | None, *, size: int, max_frames: int | None,
              seed: int, out: Path, say=print):
    """Training and test frames of a video benchmark: a Vimeo-90k root's train and test
    lists, else the clips of ``source`` split by clip (or ``train_images`` to train on).
    Clips that cannot be read are skipped, listed in ``out/skipped_clips.csv`` and said."""
    from advqa.robustness.benchmark import load_image_set
    from advqa.robustness.video import clip_paths, load_clip_set, split_clip_set
    from advqa.study.store import write_table

    test, failures = load_clip_set(source, size=size, max_frames=max_frames)
    vimeo = (Path(source) / "tri_trainlist.txt").exists() and Path(source).is_dir()
    if train_images is not None:
        train = load_image_set(train_images, size=size)
    elif vimeo and clip_paths(source, split="train"):
        train, skipped = load_clip_set(source, size=size, max_frames=max_frames, split="train")
        failures += skipped
    else:
        train, test = split_clip_set(test, seed=seed)
    if failures:
        import pandas as pd

        out.mkdir(parents=True, exist_ok=True)
        write_table(pd.DataFrame([{"path": f.path, "reason": f.reason} for f in failures]),
                    out / "skipped_clips")
        say(f"skipped {len(failures)} unreadable clip(s), listed in "
            f"{out / 'skipped_clips.csv'}")
    return train, test


def benchmark_metrics(out: str | Path, settings, *, r_score: str = "paper", metrics=None,
                      attacks=None, train_images: str | None = None,
                      test_images: str | None = None, size: int = 256, executor=None,
                      progress: bool = True, say=print, source: str | None = None,
                      max_frames: int | None = None, pooling: str = "mean",
                      clips_per_unit: int = 1):
    """Attack ``metrics`` (default :func:`default_metrics`) with ``attacks`` (default all
    nine) and write the items, leaderboard and UAP artefacts to ``out``; returns the
    :class:`advqa.robustness.BenchmarkSummary`. ``settings`` is a
    :class:`advqa.robustness.Settings` (validated when made); ``r_score`` the
    leaderboard's robustness-score variant, ``"paper"`` or ``"msu"``.

    ``source`` (a video, a folder of videos or of frame folders, a Vimeo-90k triplet
    root) makes it a video benchmark (:mod:`advqa.robustness.video`): frames attacked
    frame by frame (or with one perturbation per clip, ``settings.temporal="clip"``),
    ``clips_per_unit`` clips per unit, at most ``max_frames`` frames per clip, frame
    scores pooled per clip by ``pooling`` for the scores and the leaderboard."""
    from advqa.robustness.benchmark import ATTACK_NAMES, run_benchmark, step_label
    from advqa.robustness.video import default_attacks

    if source is not None and test_images is not None:
        raise ValueError("give --source (video) or --test-images, not both")
    metrics = metrics or default_metrics()
    attacks = attacks or default_attacks(settings.temporal)
    unknown = [name for name in attacks if name not in ATTACK_NAMES]
    if unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(ATTACK_NAMES)}")
    if source is None:
        train, test = image_sets(train_images, test_images, size=size, seed=settings.seed)
        video = {}
    else:
        train, test = clip_sets(source, train_images, size=size, max_frames=max_frames,
                                seed=settings.seed, out=Path(out), say=say)
        video = {"pooling": pooling, "clips_per_unit": clips_per_unit}
    clips = f", {len(test.clips)} clips" if test.clips else ""
    say(f"advqa benchmark: {len(metrics)} metric(s) × {len(attacks)} attack(s); train "
        f"{len(train.names)} images ({train.dataset}), test {len(test.names)} "
        f"({test.dataset}{clips}), {size}², engine {getattr(executor, 'name', 'local')}")
    say(f"  step sizes {', '.join(step_label(step) for step in settings.step_sizes)}, "
        f"MI-FGSM form {settings.mifgsm_form}, robustness score {r_score}"
        + (f", {settings.temporal} perturbations, {pooling} pooling" if video else ""))
    return run_benchmark(metrics, attacks, train, test, out, settings=settings,
                         r_score=r_score, executor=executor, progress=progress, **video)
