"""The MSU benchmark's video side: clips attacked frame by frame, scored per clip.

The benchmark (Antsiferova et al., AAAI 2024) tests its metrics on video as well as on
images: Derf's ``blue_sky`` (250 frames) and the Vimeo-90k test triplets. Its attacks
run on each frame as on an image, the UAPs are added to every frame, and its scores
("f(.) — attacked IQA/VQA metric") compare a clip's score before and after. Here:

- :func:`load_clip_set` reads clips (Y4M/MP4/MKV files, frame folders, a Vimeo-90k
  triplet tree) into one :class:`~advqa.robustness.benchmark.ImageSet` of frames, clip
  after clip, resized and centre-cropped like the benchmark's images; each clip's row
  range is in ``ImageSet.clips``.
- The job engine's units are (metric, attack[, amplitude][, step], clip chunk)
  (:func:`clip_chunks`); every frame gets a row in the items table, as an image does.
- ``temporal="clip"`` (:class:`~advqa.robustness.benchmark.Settings`) gives each clip
  ONE perturbation shared by all its frames, the temporally consistent attack
  (:func:`attack_clip`): a per-frame attack may flicker, which a viewer sees and a
  frame-by-frame metric does not. The UAPs are one perturbation for every frame in
  both modes.
- :func:`clip_items` pools each clip's frame scores (mean by default; harmonic or
  percentile pooling, :func:`advqa.quality.video.pool_frames`) into one row per
  clip; the five scores and the leaderboard are computed on those rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from advqa.attacks.base import frozen
from advqa.attacks.objectives import Evaluation, Objective
from advqa.robustness.benchmark import (
    ATTACK_NAMES,
    PER_IMAGE_ATTACKS,
    ImageSet,
    per_image_attack,
)

#: Attacks whose perturbation depends on the image itself, so that one perturbation
#: for a whole clip has no meaning in their design: Korhonen et al. weight the gradient
#: by the image's own spatial activity map, MADC holds each image's own MSE.
NO_CLIP_FORM = ("korhonen", "madc")
#: The perturbation a clip-wide attack optimises is an image centred here, so that the
#: engine's [0, 1] box never binds it (ε <= 0.5).
GREY = 0.5
FRAME_MARK = "#f"


def frame_name(clip: str, index: int) -> str:
    """``<clip>#f0003``: a frame's name in the items table."""
    return f"{clip}{FRAME_MARK}{index:04d}"


def clip_of(name: str) -> str:
    """The clip a frame name belongs to (the inverse of :func:`frame_name`)."""
    return name.rsplit(FRAME_MARK, 1)[0]


def clip_paths(source: str | Path, *, split: str = "test") -> list[Path]:
    """The clips of ``source``: a video file; a Vimeo-90k triplet root (its ``split``
    list); a folder of video files; a folder of folders of frames; or one folder of
    frames (a single clip).

    Raises
    ------
    FileNotFoundError, ValueError
        For a missing path, or a folder that holds no video, frame folder or frame.
    """
    from advqa.data import IMAGE_SUFFIXES, VIDEO_SUFFIXES, vimeo_triplets

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"no such video or folder: {source}")
    if source.is_file():
        return [source]
    if (source / "tri_testlist.txt").exists() or (source / "tri_trainlist.txt").exists():
        return vimeo_triplets(source, split)
    entries = sorted(source.iterdir())
    videos = [path for path in entries if path.suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        return videos
    folders = [path for path in entries if path.is_dir()]
    if folders:
        return folders
    if any(path.suffix.lower() in IMAGE_SUFFIXES for path in entries):
        return [source]
    raise ValueError(f"{source} holds no video file (.y4m, .mp4, .mkv, ...), no folder of "
                     "frames and no frame: give a video, a folder of them, a folder of "
                     "frames or a Vimeo-90k triplet root")


def load_clip_set(source: str | Path, *, size: int = 256, max_frames: int | None = None,
                  split: str = "test", dataset: str | None = None):
    """Every readable clip of ``source`` as one frame set, and the clips skipped.

    Frames are resized (shorter side) and centre-cropped to ``size``², as the
    benchmark's images (:func:`advqa.robustness.benchmark.load_image_set`); at most
    ``max_frames`` per clip. Clip names are their paths relative to ``source`` (a Vimeo
    clip: ``00001/0266``). Returns ``(ImageSet, failures)``: a clip that cannot be read
    is skipped and listed (:class:`advqa.data.LoadFailure`), never silently.

    Raises
    ------
    ValueError
        When no clip could be read.
    """
    from advqa.data import load_videos, resize_center_crop

    source = Path(source)
    paths = clip_paths(source, split=split)
    loaded = load_videos(paths, max_frames=max_frames)
    if not len(loaded):
        reasons = "; ".join(f"{f.path}: {f.reason}" for f in loaded.failures[:3])
        raise ValueError(f"{source}: no readable clip ({reasons})")
    names, frames, clips, row = [], [], [], 0
    for path, video in loaded:
        name = clip_name(Path(path), source)
        video = resize_center_crop(video, size)
        names += [frame_name(name, index) for index in range(len(video))]
        frames.append(video)
        clips.append((name, row, row + len(video)))
        row += len(video)
    label = dataset or (source.stem if source.is_file() else source.name)
    return (ImageSet(label, tuple(names), torch.cat(frames), tuple(clips)),
            list(loaded.failures))


def clip_name(path: Path, source: Path) -> str:
    if path == source:
        return source.stem if source.is_file() else source.name
    relative = path.relative_to(source)
    if relative.parts and relative.parts[0] == "sequences":  # Vimeo-90k
        relative = Path(*relative.parts[1:])
    return relative.with_suffix("").as_posix() if path.is_file() else relative.as_posix()


def split_clip_set(frames: ImageSet, *, train_fraction: float = 0.5,
                   seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """A seeded random split *by clip* into training clips (calibration, UAPs) and test
    clips, so that no clip lends frames to both sides."""
    count = len(frames.clips)
    if count < 2:
        raise ValueError(f"{frames.dataset}: need at least 2 clips to split into training "
                         f"and test clips, got {count}; give --train-images")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = min(max(1, round(train_fraction * count)), count - 1)
    return (subset_clips(frames, sorted(order[:cut]), "train"),
            subset_clips(frames, sorted(order[cut:]), "test"))


def subset_clips(frames: ImageSet, chosen: list[int], suffix: str) -> ImageSet:
    names, images, clips, row = [], [], [], 0
    for index in chosen:
        name, first, stop = frames.clips[index]
        names += frames.names[first:stop]
        images.append(frames.images[first:stop])
        clips.append((name, row, row + stop - first))
        row += stop - first
    return ImageSet(f"{frames.dataset}-{suffix}", tuple(names), torch.cat(images), tuple(clips))


def clip_chunks(clips, clips_per_unit: int) -> list[tuple[int, int]]:
    """The ``[first, stop)`` frame rows of each chunk of ``clips_per_unit`` whole clips."""
    chunks = []
    for start in range(0, len(clips), clips_per_unit):
        group = clips[start:start + clips_per_unit]
        chunks.append((group[0][1], group[-1][2]))
    return chunks


def check_video_run(attacks, settings, pooling: str, clips_per_unit: int) -> None:
    """Refuse, before any work, a video run that cannot be done as asked."""
    from advqa.quality.video import POOLINGS

    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    if isinstance(clips_per_unit, bool) or not isinstance(clips_per_unit, int) or \
            clips_per_unit < 1:
        raise ValueError(f"clips_per_unit must be an integer >= 1, got {clips_per_unit!r}")
    if settings.temporal == "clip":
        refused = [name for name in attacks if name in NO_CLIP_FORM]
        if refused:
            raise ValueError(f"{', '.join(refused)} cannot share one perturbation across a "
                             "clip (Korhonen's gradient is weighted by each image's own "
                             "activity map, MADC holds each image's own MSE): leave them "
                             "out of --attacks or use --temporal frame")


def default_attacks(temporal: str) -> list[str]:
    """All nine attacks; with one perturbation per clip, those that have a clip form."""
    return [name for name in ATTACK_NAMES
            if temporal == "frame" or name not in NO_CLIP_FORM]


def check_pooling(pooling: str, prepared: dict) -> None:
    """Refuse harmonic pooling for a lower-is-better metric: the harmonic mean weights
    the *smallest* frame scores, which for a distance are the best frames, so it would
    hide the worst ones (:func:`advqa.quality.video.pool_frames`)."""
    if pooling != "harmonic":
        return
    lower = sorted(name for name, (facts, _) in prepared.items() if not facts.higher_is_better)
    if lower:
        raise ValueError(f"harmonic pooling weights the lowest frame scores; for the lower-is-"
                         f"better metric(s) {', '.join(lower)} those are the best frames: "
                         "use --pooling percentile or mean")


class ClipObjective(Objective):
    """One perturbation for a whole clip, as an objective of the attack engine.

    The engine attacks a single image ``p`` (1, C, H, W) that starts at ``GREY``; the
    clip's attacked frames are ``clamp(frames + (p − GREY), 0, 1)`` and the loss is the
    mean over frames of the metric objective's per-frame loss. The engine's L∞ ball
    around the grey start is the ball of the shared perturbation, and its [0, 1] box
    never binds for ε <= 0.5.
    """

    def __init__(self, inner, frames: torch.Tensor):
        self.inner = inner
        self.module = inner.module
        self.frames = frames

    def apply(self, perturbation: torch.Tensor) -> torch.Tensor:
        return (self.frames + (perturbation - GREY)).clamp(0, 1)

    def evaluate(self, images: torch.Tensor) -> Evaluation:
        loss = self.inner.evaluate(self.apply(images)).loss
        return Evaluation(loss.mean().reshape(1), None)

    def subset(self, index: torch.Tensor) -> ClipObjective:
        return self  # one clip, one sample


def attack_clip(unit, metric, facts, start: torch.Tensor, pristine: torch.Tensor, settings):
    """The frames ``start`` of one clip attacked with one shared perturbation; returns
    ``(attacked frames, radii)`` like :func:`advqa.robustness.benchmark.attack_batch`.

    AMI-FGSM's radius (1/NIQE of the image) becomes the smallest over the clip's frames,
    so that the shared perturbation stays within every frame's own ball.
    """
    from advqa.robustness.objective import MetricObjective

    if unit.attack not in PER_IMAGE_ATTACKS or unit.attack in NO_CLIP_FORM:
        raise ValueError(f"{unit.attack} has no clip-wide form")
    radii = None
    if unit.attack == "amifgsm":
        from advqa.robustness.amifgsm import niqe_radius

        radii = niqe_radius(start).reshape(-1)
    shared = None if radii is None else radii.min().reshape(1)
    inner = MetricObjective(metric, metric_range=facts.span,
                            references=pristine if facts.full_reference else None)
    objective = ClipObjective(inner, start)
    attack = per_image_attack(unit.attack, settings, unit.step,
                              radius=None if shared is None else (lambda images: shared))
    grey = torch.full((1, *start.shape[1:]), GREY, dtype=start.dtype, device=start.device)
    with frozen(metric), torch.enable_grad():
        perturbation, _ = attack.perturb(objective, grey)
    attacked = objective.apply(perturbation.detach())
    return attacked, None if shared is None else [float(shared)] * len(attacked)


def clip_items(items: pd.DataFrame, test: ImageSet, pooling: str, prepared: dict) -> pd.DataFrame:
    """One row per (unit, clip): the frame rows of ``items`` pooled.

    ``clean`` and ``attacked`` are the pooled frame scores (:func:`pool_frames` with the
    metric's direction), ``gain`` their difference in the metric's "better" direction,
    ``psnr``, ``ssim`` and ``mse`` the means over the frames. A clip with a failed frame
    has no score: its row keeps the first error and how many frames failed, since a
    pooled score over the frames that worked would be another clip's score.
    """
    from advqa.quality.video import pool_frames

    columns = list(items.columns)
    if not len(items):
        return items.assign(frames=pd.Series(dtype="int64"))
    keys = ["metric", "attack", "amplitude", "step"]
    frames = items.assign(clip=items["image"].map(clip_of))
    order = {name: position for position, (name, _, _) in enumerate(test.clips)}
    rows = []
    for (metric, attack, amplitude, step, clip), group in frames.groupby(
            [*keys, "clip"], dropna=False, sort=False):
        higher = prepared[metric][0].higher_is_better
        row = {"image": clip, "dataset": group["dataset"].iloc[0], "metric": metric,
               "attack": attack, "amplitude": amplitude, "step": step,
               "frames": len(group), "radius": group["radius"].min()}
        failed = group["error"].notna() | group["clean"].isna() | group["attacked"].isna()
        if failed.any():
            first = group.loc[failed, "error"].dropna()
            row.update(clean=math.nan, attacked=math.nan, gain=math.nan, psnr=math.nan,
                       ssim=math.nan, mse=math.nan,
                       error=f"{int(failed.sum())} of {len(group)} frame(s) failed: "
                             f"{first.iloc[0] if len(first) else 'no score'}")
        else:
            try:
                clean, attacked = (
                    pool_frames(torch.tensor(group[name].to_numpy(float))[None], pooling,
                                higher_is_better=higher).item()
                    for name in ("clean", "attacked"))
            except ValueError as error:  # e.g. a negative score under harmonic pooling
                row.update(clean=math.nan, attacked=math.nan, gain=math.nan, psnr=math.nan,
                           ssim=math.nan, mse=math.nan, error=f"pooling: {error}")
                rows.append(row)
                continue
            direction = 1.0 if higher else -1.0
            row.update(clean=clean, attacked=attacked, gain=direction * (attacked - clean),
                       psnr=group["psnr"].mean(), ssim=group["ssim"].mean(),
                       mse=group["mse"].mean(), error=None)
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table.assign(_order=table["image"].map(order)).sort_values(
        ["metric", "attack", "amplitude", "step", "_order"], kind="stable", na_position="first")
    return table[[*columns, "frames"]].reset_index(drop=True)

