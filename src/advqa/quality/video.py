"""Video-quality metrics: every image metric pooled over frames, and the native video metrics.

A video batch is ``(N, T, C, H, W)`` float RGB (or one-channel) in [0, 1]; a single clip
``(T, C, H, W)`` is taken as N = 1. A video metric is an :class:`~torch.nn.Module` called
``metric(distorted, reference=None)`` → ``(N,)`` scores with an ``info``
(:class:`~advqa.quality.registry.MetricInfo`) — the calling convention of the image
metrics.

Names (:func:`get_video_metric`):

* the native video metrics of :func:`list_video_metrics`: ``strred``, ``srred``,
  ``trred`` (Soundararajan & Bovik 2013, :mod:`advqa.quality.strred`) and ``vsfa``,
  ``mdtvsfa`` (:mod:`advqa.quality.vqa_learned`, weights from disk);
* ``IMAGE_METRIC@POOLING`` for any image metric of :func:`advqa.quality.get_metric`
  scored frame by frame and pooled over time by :func:`pool_frames` (:class:`FramePooled`):
  ``ssim@mean``, ``psnr@harmonic``, ``advdss@percentile``, and ``ssim@p5`` for the worst
  5 % of frames.

This registry is separate from the image registry on purpose: image code iterates
:func:`advqa.quality.list_metrics` and must never meet a metric that expects clips.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import replace

import torch
from torch import nn

from advqa.quality.registry import (
    INFINITY,
    Metric,
    MetricInfo,
    UnknownMetricError,
    get_metric,
    list_metrics,
)
from advqa.quality.validate import check_clips

POOLINGS = ("mean", "harmonic", "percentile")
DEFAULT_POOLING = "mean"
DEFAULT_PERCENT = 10.0
FRAME_BATCH = 32
_PERCENT_SPEC = re.compile(r"p(\d+(?:\.\d*)?|\.\d+)")


class UnknownVideoMetricError(UnknownMetricError):
    """A video metric name that is neither native nor ``IMAGE_METRIC@POOLING``."""


# ------------------------------------------------------------------------ temporal pooling
def percentile_count(frames: int, percent: float) -> int:
    """How many frames percentile pooling averages: ``max(1, ceil(percent/100 · T))``.

    The product is rounded to 9 decimals before the ceiling, so that e.g. 30 % of 10
    frames is 3 frames, not 4 (``0.3 · 10 = 3.0000000000000004`` in floating point).
    """
    return max(1, math.ceil(round(percent * frames / 100, 9)))


def _check_percent(percent: float) -> float:
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not (
            0 < percent <= 100):
        raise ValueError(f"percent must be a number in (0, 100], got {percent!r} (the share "
                         "of the worst frames that percentile pooling averages)")
    return float(percent)


def _check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid poolings: {', '.join(POOLINGS)} "
                         "(in a metric name also p<percent>, e.g. 'ssim@p5')")
    return pooling


def _refuse_harmonic(name: str) -> None:
    raise ValueError(f"harmonic pooling is defined only for a higher-is-better metric, and "
                     f"{name} is lower-is-better: the harmonic mean of its scores would "
                     "emphasise the best frames, not the worst. Use pooling 'percentile' "
                     "(the worst frames) or 'mean'.")


def pool_frames(scores: torch.Tensor, pooling: str = DEFAULT_POOLING, *,
                higher_is_better: bool, percent: float = DEFAULT_PERCENT) -> torch.Tensor:
    """Pool per-frame scores ``(N, T)`` into one score per clip ``(N,)``.

    Parameters
    ----------
    scores : torch.Tensor
        ``(N, T)`` frame scores, T ≥ 1 (a 1-D ``(T,)`` tensor is taken as N = 1).
    pooling : {"mean", "harmonic", "percentile"}
        ``"mean"`` (default): the arithmetic mean over frames.
        ``"harmonic"``: ``T / Σ_t 1/q_t``, which the low-quality frames dominate. Only for a
        higher-is-better metric with scores ≥ 0: a frame scoring 0 makes the clip 0, a
        frame scoring +inf (the PSNR of an identical frame) adds 0 to the sum, and all
        frames +inf give +inf.
        ``"percentile"``: the mean of the worst ``k = max(1, ceil(percent/100 · T))``
        frames (the product rounded to 9 decimals before the ceiling, so 30 % of 10 frames
        is 3) — the lowest scores for a higher-is-better metric, the highest otherwise.
    higher_is_better : bool
        The metric's direction (``info.higher_is_better``): decides which frames are the
        worst and whether harmonic pooling is allowed. Keyword-only so that it cannot be
        forgotten.
    percent : float
        Percentile pooling's share of frames, in (0, 100]; default 10.

    Returns
    -------
    torch.Tensor
        ``(N,)`` in the scores' dtype, differentiable with respect to the scores (for
        ``"percentile"`` through the selected frames; for ``"harmonic"`` the gradient of a
        clip with a 0 frame is 0 instead of NaN).

    Raises
    ------
    ValueError
        An unknown pooling, a percent outside (0, 100], scores that are not ``(N, T)``
        with T ≥ 1, harmonic pooling of a lower-is-better metric (use ``"percentile"`` or
        ``"mean"``) or of negative scores.

    Notes
    -----
    The default is the mean: it is how per-frame PSNR and SSIM are conventionally reported
    for a video (and what [1]_ compares other poolings against), it is defined for every
    metric whatever its direction or sign, and one outlier frame moves it least. The
    harmonic mean and percentile pooling model that viewers judge a video by its worst
    moments [1]_, [2]_, [3]_: the harmonic mean weights frame *t* by ``1/q_t``, percentile
    pooling keeps only the worst frames. By the AM–HM inequality ``harmonic ≤ mean`` for
    non-negative scores, and for a higher-is-better metric ``percentile ≤ mean``.

    The default ``percent`` = 10 is a round share of worst frames in the range these
    studies weight most (a few to ten percent); it was not fitted to any database. On a
    30-frame clip it averages the worst 3 frames; on fewer than 10 frames, the single
    worst one.

    References
    ----------
    .. [1] S. Rimac-Drlje, M. Vranješ and D. Žagar, "Influence of temporal pooling method
       on the objective video quality evaluation", IEEE International Symposium on
       Broadband Multimedia Systems and Broadcasting (BMSB), 2009 — arithmetic, harmonic
       and other temporal poolings of per-frame PSNR and SSIM.
    .. [2] A. K. Moorthy and A. C. Bovik, "Visual importance pooling for image quality
       assessment", IEEE Journal of Selected Topics in Signal Processing 3(2), 193–201,
       2009 — percentile (quality-based) pooling of the worst scores.
    .. [3] J. Park, K. Seshadrinathan, S. Lee and A. C. Bovik, "Video quality pooling
       adaptive to perceptual distortion severity", IEEE Transactions on Image Processing
       22(2), 610–620, 2013.
    """
    _check_pooling(pooling)
    percent = _check_percent(percent)
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"scores must be a torch.Tensor of shape (N, T), got "
                         f"{type(scores).__name__}")
    if scores.dim() == 1:
        scores = scores.unsqueeze(0)
    if scores.dim() != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must have shape (N, T) with T ≥ 1 frames, got "
                         f"{tuple(scores.shape)}")
    if pooling == "mean":
        return scores.mean(dim=1)
    if pooling == "percentile":
        count = percentile_count(scores.shape[1], percent)
        worst = scores.topk(count, dim=1, largest=not higher_is_better).values
        return worst.mean(dim=1)
    if not higher_is_better:
        _refuse_harmonic("the metric (higher_is_better=False)")
    if scores.numel() and (scores < 0).any():
        raise ValueError(f"harmonic pooling needs scores ≥ 0, found {scores.min().item():.4g}; "
                         "use pooling 'percentile' or 'mean' for a metric that can be "
                         "negative")
    frames = scores.shape[1]
    positive = scores > 0
    finite = torch.isfinite(scores)
    usable = positive & finite
    # 1/q only where it is finite and non-zero, so no NaN reaches the gradient.
    reciprocal = torch.where(usable, 1 / torch.where(usable, scores, torch.ones_like(scores)),
                             torch.zeros_like(scores))
    total = reciprocal.sum(dim=1)
    pooled = frames / total  # all-inf clip: T / 0 = inf
    has_zero = (~positive).any(dim=1)
    return torch.where(has_zero, torch.zeros_like(pooled), pooled)


# ------------------------------------------------------------------------ input validation
# -------------------------------------------------------------------- frame-pooled metrics
def pooled_name(metric: str, pooling: str, percent: float = DEFAULT_PERCENT) -> str:
    """The video-registry name: ``ssim@mean``; ``ssim@p5`` for a non-default percent."""
    if pooling == "percentile" and float(percent) != DEFAULT_PERCENT:
        return f"{metric}@p{percent:g}"
    return f"{metric}@{pooling}"


def parse_pooled_name(name: str) -> tuple[str, str, float | None]:
    """``"ssim@p5"`` → ``("ssim", "percentile", 5.0)``; ``"ssim@mean"`` → ``("ssim", "mean",
    None)`` (None: the name does not fix a percent).

    Raises
    ------
    UnknownVideoMetricError
        No ``@``, an empty metric name, or a pooling that is not one of :data:`POOLINGS`
        or ``p<percent>``.
    """
    metric, at, spec = name.rpartition("@")
    if not at or not metric:
        raise UnknownVideoMetricError(_unknown_message(name))
    if spec in POOLINGS:
        return metric, spec, None
    match = _PERCENT_SPEC.fullmatch(spec)
    if match:
        return metric, "percentile", _check_percent(float(match.group(1)))
    raise UnknownVideoMetricError(
        f"unknown pooling {spec!r} in {name!r}; valid poolings: {', '.join(POOLINGS)}, or "
        "p<percent> for percentile pooling of the worst percent of frames (e.g. 'ssim@p5')")


class FramePooled(nn.Module):
    """An image metric scored on every frame and pooled over time: a video metric.

    Parameters
    ----------
    metric : str or Metric
        An image-registry name (``"ssim"``, ``"psnr"``, ``"advdss"``, ``"niqe"``,
        ``"pyiqa:<name>"``…) or an image metric already built by
        :func:`advqa.quality.get_metric`. Metrics that need a classifier (``aeqa``,
        ``js``) are refused: they score a classifier's reaction to an image, not a frame
        of video.
    pooling : {"mean", "harmonic", "percentile"}
        See :func:`pool_frames`; ``"harmonic"`` is refused for a lower-is-better metric.
    percent : float
        Percentile pooling's share of the worst frames (default 10).
    frame_batch : int
        Frames scored per image-metric call (default 32): bounds memory, not the result.
    **options
        Passed to :func:`~advqa.quality.get_metric` (e.g. ``data_range``, ``clamp``,
        ``downsample``) when ``metric`` is a name.

    Attributes
    ----------
    info : MetricInfo
        Name ``f"{metric}@{pooling}"`` (``f"{metric}@p{percent:g}"`` for percentile pooling
        with a percent other than 10); direction, range, differentiability and
        full-reference as the image metric's; the description names the pooling.
    image_metric : Metric
        The wrapped image metric.

    Call ``pooled(distorted, reference=None)`` with ``(N, T, C, H, W)`` clips (or one
    ``(T, C, H, W)`` clip) → ``(N,)``: the frames are flattened to ``(N·T, C, H, W)``,
    scored ``frame_batch`` at a time, reshaped to ``(N, T)`` and pooled.
    """

    def __init__(self, metric: str | Metric, pooling: str = DEFAULT_POOLING, *,
                 percent: float = DEFAULT_PERCENT, frame_batch: int = FRAME_BATCH, **options):
        super().__init__()
        _check_pooling(pooling)
        percent = _check_percent(percent)
        if isinstance(frame_batch, bool) or not isinstance(frame_batch, int) or frame_batch < 1:
            raise ValueError(f"frame_batch must be a positive integer, got {frame_batch!r}")
        if isinstance(metric, str):
            known = list_metrics().get(metric)
            if known is not None:
                _refuse_needs_model(known)
                if pooling == "harmonic" and not known.higher_is_better:
                    _refuse_harmonic(metric)
            image_metric = get_metric(metric, **options)
        else:
            if options:
                raise ValueError("options apply when the metric is given by name; pass them to "
                                 "get_metric instead")
            image_metric = metric
        image = image_metric.info
        _refuse_needs_model(image)
        if pooling == "harmonic" and not image.higher_is_better:
            _refuse_harmonic(image.name)
        self.image_metric = image_metric
        self.pooling = pooling
        self.percent = percent
        self.frame_batch = frame_batch
        self._data_range = float(options.get("data_range", 1.0))
        self._clamp = bool(options.get("clamp", False))
        how = {"mean": "mean over frames",
               "harmonic": "harmonic mean over frames",
               "percentile": f"mean of the worst {percent:g} % of frames"}[pooling]
        # Direction, range, differentiability and full_reference: the image metric's.
        self.info = replace(
            image, name=pooled_name(image.name, pooling, percent),
            description=f"{image.description}, per frame, {how}",
            release=(f"{image.release}; per frame, {how}" if image.release
                     else f"per frame, {how}"))

    def frame_scores(self, distorted: torch.Tensor,
                     reference: torch.Tensor | None = None) -> torch.Tensor:
        """The image metric on every frame: ``(N, T)`` scores before pooling."""
        if self.info.full_reference and reference is None:
            raise ValueError(f"{self.info.name} is full-reference: pass reference=")
        if not self.info.full_reference:
            reference = None
        distorted, reference = check_clips(distorted, reference, data_range=self._data_range,
                                           clamp=self._clamp)
        count, frames = distorted.shape[:2]
        flat = distorted.reshape(count * frames, *distorted.shape[2:])
        flat_ref = None if reference is None else reference.reshape(flat.shape)
        chunks = []
        for start in range(0, len(flat), self.frame_batch):
            stop = start + self.frame_batch
            if flat_ref is None:
                chunks.append(self.image_metric(flat[start:stop]))
            else:
                chunks.append(self.image_metric(flat[start:stop], flat_ref[start:stop]))
        return torch.cat([chunk.reshape(-1) for chunk in chunks]).reshape(count, frames)

    def forward(self, distorted: torch.Tensor,
                reference: torch.Tensor | None = None) -> torch.Tensor:
        return pool_frames(self.frame_scores(distorted, reference), self.pooling,
                           higher_is_better=self.info.higher_is_better, percent=self.percent)

    def extra_repr(self) -> str:
        return (f"name={self.info.name!r}, pooling={self.pooling!r}, percent={self.percent:g}, "
                f"frame_batch={self.frame_batch}")


def _refuse_needs_model(info: MetricInfo) -> None:
    if info.needs_model:
        raise ValueError(f"{info.name} needs a classifier and scores its reaction to an image; "
                         "it has no frame-pooled video form. Pool a metric that compares "
                         "pixels (e.g. ssim@mean, advdss@percentile).")


# ------------------------------------------------------------------ native video metrics
class VideoMetric(Metric):
    """A native video metric: ``metric(distorted, reference=None)`` → (N,) from clips.

    The image registry's :class:`~advqa.quality.registry.Metric` (the functional is called
    by keyword, so the clips cannot be swapped), for ``(N, T, C, H, W)`` input.
    """


class NoReferenceVideoMetric(nn.Module):
    """A learned no-reference video metric (``vsfa``, ``mdtvsfa``) in the video metrics'
    calling convention: ``metric(distorted, reference=None)``; ``reference`` is ignored.

    ``model`` is the :class:`~advqa.quality.vqa_learned.VideoQualityMetric`; ``info`` is
    its info.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.info = model.info

    def train(self, mode: bool = True) -> NoReferenceVideoMetric:
        """Kept in evaluation mode, as the wrapped model."""
        return self

    def forward(self, distorted: torch.Tensor,
                reference: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(distorted)

    def extra_repr(self) -> str:
        return f"name={self.info.name!r}"


def srred(reference: torch.Tensor, distorted: torch.Tensor, **options) -> torch.Tensor:
    """SRRED, the spatial factor of ST-RRED (:func:`advqa.quality.strred.strred_components`)."""
    from advqa.quality.strred import strred_components

    return strred_components(reference, distorted, **options)[0]


def trred(reference: torch.Tensor, distorted: torch.Tensor, **options) -> torch.Tensor:
    """TRRED, the temporal factor of ST-RRED (:func:`advqa.quality.strred.strred_components`)."""
    from advqa.quality.strred import strred_components

    return strred_components(reference, distorted, **options)[1]


_STRRED_RELEASE = "LIVE strred (Soundararajan & Bovik 2013) on 8-bit BT.601 luma"
_STRRED = {
    "strred": (MetricInfo("strred", True, False, (0.0, INFINITY), True,
                          "ST-RRED = SRRED · TRRED, spatio-temporal reduced-reference entropic "
                          "differencing", release=_STRRED_RELEASE),
               "advqa.quality.strred:strred"),
    "srred": (MetricInfo("srred", True, False, (0.0, INFINITY), True,
                         "SRRED: spatial entropic differencing of ST-RRED",
                         release=_STRRED_RELEASE),
              "advqa.quality.video:srred"),
    "trred": (MetricInfo("trred", True, False, (0.0, INFINITY), True,
                         "TRRED: temporal (frame-difference) entropic differencing of ST-RRED",
                         release=_STRRED_RELEASE),
              "advqa.quality.video:trred"),
}


def _learned():
    from advqa.quality import vqa_learned

    return vqa_learned


def list_video_metrics() -> dict[str, MetricInfo]:
    """The native video metrics: name → :class:`MetricInfo` (a fresh dict).

    ``strred``, ``srred``, ``trred`` and ``vsfa``, ``mdtvsfa`` (whether or not their
    weights are on disk; see :func:`is_video_metric_available`). Every image metric is a
    video metric too, as ``IMAGE_METRIC@POOLING`` (:func:`get_video_metric`); those are not
    listed.
    """
    native = {name: info for name, (info, _) in _STRRED.items()}
    native.update(_learned().VIDEO_LEARNED)
    return native


def _unknown_message(name: str) -> str:
    return (f"unknown video metric {name!r}; native video metrics: "
            f"{', '.join(list_video_metrics())}; or any image metric pooled over frames as "
            f"IMAGE_METRIC@POOLING with POOLING one of {', '.join(POOLINGS)} or p<percent> "
            "(e.g. 'ssim@mean', 'psnr@harmonic', 'ssim@p5'; image metrics: "
            "advqa.quality.list_metrics())")


def _target(target: str):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def get_video_metric(name: str, **options) -> nn.Module:
    """The video metric called ``name``, with keyword options.

    Parameters
    ----------
    name : str
        A native name (:func:`list_video_metrics`) or ``IMAGE_METRIC@POOLING``:
        ``ssim@mean``, ``psnr@harmonic``, ``advdss@percentile``, ``ssim@p5`` (percentile
        pooling of the worst 5 % of frames).
    **options
        ``strred``/``srred``/``trred``: those of :func:`advqa.quality.strred.strred`
        (``data_range``, ``clamp``, ``rounding``, ``single_number``). ``vsfa``/``mdtvsfa``:
        those of :func:`advqa.quality.vqa_learned.load_vqa_metric` (``weights``,
        ``backbone``, ``device``, ``output``, ``frame_batch``). Pooled names:
        ``percent`` and ``frame_batch`` of :class:`FramePooled` (``percent`` must agree with
        a ``p<percent>`` in the name), the rest to the image metric.

    Returns
    -------
    nn.Module
        ``metric(distorted, reference=None)`` → (N,) for ``(N, T, C, H, W)`` clips, with
        ``.info``.

    Raises
    ------
    UnknownVideoMetricError
        An unknown name (a :class:`~advqa.quality.registry.UnknownMetricError`, i.e. a
        KeyError, as the image registry raises); the message lists the native names and
        explains ``IMAGE_METRIC@POOLING``.
    advqa.models.MissingWeightsError
        ``vsfa``/``mdtvsfa`` (or a learned image metric) without its weight files on disk,
        unchanged from the loader: it names the file and where to put it.
    ValueError
        Harmonic pooling of a lower-is-better metric, an image metric that needs a
        classifier, bad options.
    """
    if name in _STRRED:
        info, target = _STRRED[name]
        return VideoMetric(info, _target(target), **options)
    learned = _learned()
    if name in learned.VIDEO_LEARNED:
        return NoReferenceVideoMetric(learned.load_vqa_metric(name, **options))
    if "@" not in name:
        raise UnknownVideoMetricError(_unknown_message(name))
    metric, pooling, percent = parse_pooled_name(name)
    if percent is not None:
        given = options.pop("percent", percent)
        if float(given) != percent:
            raise ValueError(f"{name!r} fixes percent = {percent:g}, but percent={given!r} was "
                             "passed too")
    elif pooling == "percentile":
        percent = options.pop("percent", DEFAULT_PERCENT)
    else:
        if "percent" in options:
            raise ValueError(f"percent= applies to percentile pooling only, not {pooling!r}")
        percent = DEFAULT_PERCENT
    try:
        return FramePooled(metric, pooling, percent=percent, **options)
    except UnknownMetricError as error:
        raise UnknownVideoMetricError(f"{error}\n{_unknown_message(name)}") from error


def is_video_metric_available(name: str) -> bool:
    """Whether ``get_video_metric(name)`` can run here, without loading anything.

    ``strred``/``srred``/``trred``: always. ``vsfa``/``mdtvsfa``: torchvision imports and
    the head file and a ResNet-50 file are on disk (False, not an error, when they are not).
    ``IMAGE_METRIC@POOLING``: the image metric is available
    (:func:`advqa.quality.registry.is_available`) and can be pooled (no classifier, and
    not harmonic pooling of a lower-is-better metric).

    Raises
    ------
    UnknownVideoMetricError
        For a name that is neither, as :func:`get_video_metric` does.
    """
    if name in _STRRED:
        return True
    learned = _learned()
    if name in learned.VIDEO_LEARNED:
        if importlib.util.find_spec("torchvision") is None:
            return False
        head, *backbones = learned.vqa_weight_files(name)
        return head.find() is not None and any(file.find() is not None for file in backbones)
    metric, pooling, _ = parse_pooled_name(name)
    if metric.startswith("pyiqa:"):
        return importlib.util.find_spec("pyiqa") is not None
    info = list_metrics().get(metric)
    if info is None:
        raise UnknownVideoMetricError(_unknown_message(name))
    if info.needs_model or (pooling == "harmonic" and not info.higher_is_better):
        return False
    from advqa.quality.registry import is_available

    return is_available(metric)


# ------------------------------------------------------------------------ one pair of clips
def default_video_metrics() -> list[str]:
    """What ``advqa score REF.y4m DIST.y4m`` computes by default: every native video
    metric that can run here, then the metrics an image pair gets by default
    (:func:`advqa.quality.scoring.default_metrics`) that need no classifier, mean-pooled
    over frames (``ssim@mean``…)."""
    from advqa.quality.scoring import default_metrics

    native = [name for name in list_video_metrics() if is_video_metric_available(name)]
    registry = list_metrics()
    pooled = [pooled_name(name, DEFAULT_POOLING) for name in default_metrics()
              if not registry[name].needs_model]
    return native + pooled


def score_video_pair(reference, distorted, metrics=None, *, max_frames: int | None = None):
    """Score one distorted clip against its reference with each video metric.

    Parameters
    ----------
    reference, distorted : path or torch.Tensor
        Anything :func:`advqa.data.read_video` reads (Y4M, MP4/MKV, a frame folder), or
        ``(T, C, H, W)`` tensors in [0, 1]; both must have the same frame count and size.
    metrics : sequence of str, optional
        Video metric names (:func:`get_video_metric`); default
        :func:`default_video_metrics`.
    max_frames : int, optional
        Read at most this many frames of each clip.

    Returns
    -------
    advqa.quality.pair.PairScores
        ``scores`` name → value; ``skipped`` name → why a metric could not score these
        clips (too small frames for it, missing weights), so that one metric does not
        stop the others.
    """
    from advqa.data import read_video
    from advqa.models.registry import MissingWeightsError
    from advqa.quality.pair import PairScores

    clips = [read_video(clip, max_frames=max_frames) if not isinstance(clip, torch.Tensor)
             else clip for clip in (reference, distorted)]
    if clips[0].shape != clips[1].shape:
        raise ValueError(f"the clips differ in shape (T, C, H, W): reference "
                         f"{tuple(clips[0].shape)}, distorted {tuple(clips[1].shape)}; "
                         "compare clips of the same length and size (see max_frames)")
    result = PairScores()
    for name in metrics or default_video_metrics():
        try:
            metric = get_video_metric(name)
            with torch.no_grad():
                value = (metric(clips[1][None], clips[0][None]) if metric.info.full_reference
                         else metric(clips[1][None]))
        except (ValueError, MissingWeightsError) as error:  # an unknown name is a KeyError
            result.skipped[name] = str(error).splitlines()[0]
            continue
        result.scores[name] = float(value.item())
    return result


# ------------------------------------------------------------ a video metric on images
class OneFrameClips(nn.Module):
    """A no-reference video metric that scores each image as a one-frame clip.

    This is how the MSU benchmark attacks VQA metrics (VSFA, MDTVSFA…) on its images and
    video frames: each is a clip of one frame. ``metric(images)`` with ``images``
    ``(N, C, H, W)`` returns the video metric of ``images[:, None]``, differentiably, so
    :func:`advqa.quality.plugins.load_metric` and ``advqa benchmark --metrics vsfa`` take
    it like an image metric.
    """

    def __init__(self, metric: nn.Module):
        super().__init__()
        self.metric = metric
        self.info = replace(metric.info, description=f"{metric.info.description}; each "
                            "image scored as a one-frame clip")

    def train(self, mode: bool = True) -> OneFrameClips:
        """Kept in evaluation mode, as the wrapped metric."""
        return self

    def forward(self, distorted: torch.Tensor,
                reference: torch.Tensor | None = None) -> torch.Tensor:
        return self.metric(distorted[:, None])


def image_form(name: str, **options) -> OneFrameClips:
    """The native video metric ``name`` as an image metric (:class:`OneFrameClips`).

    Raises
    ------
    ValueError
        For a full-reference video metric (ST-RRED compares consecutive frames, so a
        one-frame clip has nothing to compare).
    """
    info = list_video_metrics()[name]
    if info.full_reference:
        raise ValueError(f"{name} compares frames over time (it needs at least 2 frames), so "
                         "it has no form for single images; on video use advqa score, or "
                         "attack it through an image metric's frames")
    return OneFrameClips(get_video_metric(name, **options))
