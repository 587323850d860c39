"""Input features of the fit-for-task detector (Feng & Cai, Sec. IV).

Six numbers per image: the victim's five largest softmax probabilities, sorted in
decreasing order, and a no-reference quality score mapped to ``[0, 1]`` with
1 = best quality (the paper's "predicted MOS" scale).

Quality normalisation
---------------------
A fixed, documented affine map stored in the gate:
``q = clip((v − lo) / (hi − lo), 0, 1)`` for metrics where higher is better and
``q = clip((hi − v) / (hi − lo), 0, 1)`` for metrics where lower is better
(BRISQUE, NIQE, PIQE). ``lo``/``hi`` default to the metric's practical range as
the registry states it (``metric.info.range``; the registry is the only place metric
facts live): BRISQUE ``[0, 100]``, NIQE ``[0, 20]`` (natural photos score 2–8 and
heavy distortion ~10–20), PIQE ``[0, 100]``, and ``dtniq`` (the default: the paper's
DTNIQ-f design, :mod:`advqa.quality.dtniq`) ``[0, 1]`` already, so its map is the
identity. :meth:`QualityScale.fitted` instead takes the 1st/99th percentiles of
training scores.

Inputs
------
The features are computed on the classifier's input (:func:`prepare`): resized and
cropped to its ``input_size`` and given its channel count (RGB for the ImageNet
models, one grey channel for the Fashion-MNIST CNNs, 28×28). The quality metric
therefore scores 28×28 grey images for Fashion-MNIST: NIQE refuses them (it needs two
96×96 blocks), BRISQUE and PIQE score them (PIQE pads to 32×32, i.e. four 16×16
blocks), but their ``[lo, hi]`` ranges were set for natural photos (see
``docs/detection-gate.md`` for what the clean Fashion-MNIST images score).
:func:`check_quality_input` refuses a metric that cannot score the inputs before any
generation.

An image the metric cannot score (a non-finite raw score: BRISQUE on a flat or nearly
flat image, whose MSCN coefficients have no variance, e.g. a 28×28 garment under the
strongest Gaussian blur) gets the worst normalised quality, 0, while ``quality_raw``
keeps the NaN: the gate fails closed on what its metric cannot judge (PIQE gives flat
images its worst score, 100, by itself), and its features stay finite for the SVM.
:func:`count_unscored` counts such images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from advqa.data.transforms import resize_center_crop
from advqa.models.classifier import input_channels as model_channels
from advqa.quality.validate import match_channels

FEATURE_NAMES = ("p1", "p2", "p3", "p4", "p5", "quality")


@dataclass(frozen=True)
class QualityScale:
    """The affine map from a metric's raw score to ``[0, 1]`` (1 = best)."""

    metric: str
    lo: float
    hi: float
    higher_is_better: bool

    def __post_init__(self):
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.hi > self.lo):
            raise ValueError(f"quality scale needs finite lo < hi, got {self.lo}, {self.hi}")

    @classmethod
    def default(cls, metric: str) -> QualityScale:
        info = _metric(metric).info
        if info.full_reference:
            raise ValueError(f"{metric} is full-reference; the gate needs a no-reference metric")
        lo, hi = info.range
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{metric} has an unbounded range {info.range}; use QualityScale"
                             ".fitted() on training scores")
        return cls(info.name, float(lo), float(hi), bool(info.higher_is_better))

    @classmethod
    def fitted(cls, metric: str, raw_scores, *, percentiles=(1.0, 99.0)) -> QualityScale:
        info = _metric(metric).info
        lo, hi = np.percentile(np.asarray(raw_scores, dtype=float), percentiles)
        if hi <= lo:
            hi = lo + 1.0
        return cls(info.name, float(lo), float(hi), bool(info.higher_is_better))

    def normalise(self, raw) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        unit = (raw - self.lo) / (self.hi - self.lo)
        return np.clip(unit if self.higher_is_better else 1.0 - unit, 0.0, 1.0)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> QualityScale:
        return cls(str(data["metric"]), float(data["lo"]), float(data["hi"]),
                   bool(data["higher_is_better"]))


_METRICS: dict[str, object] = {}


def _metric(name: str):
    from advqa.quality import get_metric

    if name not in _METRICS:
        _METRICS[name] = get_metric(name)
    return _METRICS[name]


def prepare(images, model) -> torch.Tensor:
    """A classifier-ready batch: resize/crop each image to the model's input size and
    give it the model's channel count (:func:`match_channels`, :func:`model_channels`).

    ``images`` is an ``(N, C, H, W)`` tensor or a list of ``(C, H, W)`` tensors of
    any sizes, in ``[0, 1]``, C = 1 or 3 (a grey image fed to an RGB model is repeated
    to three channels, a colour one fed to a grey model such as ``fashion-mnist-cnn``
    is converted to grey). Models without ``info`` (tests) get them unchanged.
    """
    info = getattr(model, "info", None)
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        images = images.unsqueeze(0)
    if info is None:
        return images if isinstance(images, torch.Tensor) else torch.stack(list(images))
    size, resize, channels = info.input_size, info.resize_size, model_channels(model)
    if isinstance(images, torch.Tensor) and images.shape[-2:] == (size, size):
        return match_channels(images.float(), channels)
    return torch.stack([match_channels(resize_center_crop(image.float(), size,
                                                          resize=resize)[None], channels)[0]
                        for image in images])


def check_quality_input(scale: QualityScale, batch: torch.Tensor) -> None:
    """Fail fast, with a clear message, when ``scale``'s metric cannot score ``batch``
    (classifier-ready images, :func:`prepare`): before hours of generation, not in the
    middle of it. The metric runs on at most two of the images and must return one
    score each (non-finite scores are allowed: see the module doc). NIQE needs two
    96×96 blocks: it refuses the 28×28 Fashion-MNIST inputs
    (BRISQUE, PIQE and learned metrics score them; how meaningful a natural-scene
    metric is at 28 px is another matter, see ``docs/detection-gate.md``).

    Raises
    ------
    ValueError
        Naming the metric, the input shape and the metric's own reason.
    """
    shape = "×".join(str(side) for side in batch.shape[1:])
    height, width = batch.shape[-2:]
    if scale.metric == "niqe" and (height // 96) * (width // 96) < 2:
        raise ValueError(f"NIQE needs images of at least 96×192 (two 96×96 blocks), got "
                         f"{height}×{width} (the victim's input); choose another --quality")
    try:
        scores = _metric(scale.metric)(batch[:2].float().cpu()).detach().double().reshape(-1)
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"quality metric {scale.metric!r} cannot score the victim's {shape} "
                         f"inputs: {error}; choose another --quality") from error
    if scores.numel() != min(2, batch.shape[0]):
        raise ValueError(f"quality metric {scale.metric!r} gives {scores.numel()} scores for "
                         f"{min(2, batch.shape[0])} of the victim's {shape} inputs; the gate "
                         "needs one score per image")


def count_unscored(features: Features) -> int:
    """Images whose quality the metric could not score (non-finite ``quality_raw``; their
    normalised quality is 0, see the module doc)."""
    return int(np.sum(~np.isfinite(features.quality_raw)))


@dataclass
class Features:
    """Everything the gate reads from one batch (arrays of length N)."""

    features: np.ndarray        # (N, 6): top-5 probabilities, normalised quality
    predictions: np.ndarray     # (N,) victim's top-1 class
    quality_raw: np.ndarray     # (N,) raw metric score
    squeeze: np.ndarray | None = None   # (N,) feature-squeezing score
    ws: np.ndarray | None = None        # (N,) WS statistic

    @property
    def quality(self) -> np.ndarray:
        return self.features[:, 5]

    def __len__(self) -> int:
        return len(self.predictions)

    def subset(self, index) -> Features:
        def pick(array):
            return None if array is None else array[index]

        return Features(self.features[index], self.predictions[index],
                        self.quality_raw[index], pick(self.squeeze), pick(self.ws))

    @staticmethod
    def concatenate(parts: list[Features]) -> Features:
        def join(name):
            values = [getattr(part, name) for part in parts]
            return None if any(v is None for v in values) else np.concatenate(values)
        return Features(join("features"), join("predictions"), join("quality_raw"),
                        join("squeeze"), join("ws"))


@torch.no_grad()
def extract(model, images, scale: QualityScale, *, squeezer=None, ws=None,
            batch_size: int = 16) -> Features:
    """Compute :class:`Features` of ``images`` (see :func:`prepare`) for ``model``."""
    batch = prepare(images, model)
    if batch.shape[0] == 0:
        empty = np.zeros(0)
        return Features(np.zeros((0, 6)), empty.astype(np.int64), empty,
                        None if squeezer is None else empty, None if ws is None else empty)
    device = next(model.parameters()).device
    metric = _metric(scale.metric)
    height, width = batch.shape[-2:]
    if scale.metric == "niqe" and (height // 96) * (width // 96) < 2:
        raise ValueError(f"NIQE needs images of at least 96×192 (two 96×96 blocks), "
                         f"got {height}×{width} (the victim's input); choose another "
                         "--quality")
    probabilities, quality, squeeze = [], [], []
    for start in range(0, batch.shape[0], batch_size):
        chunk = batch[start:start + batch_size].to(device)
        probs = torch.softmax(model(chunk).float(), dim=1)
        probabilities.append(probs.cpu())
        quality.append(metric(chunk.cpu()).detach().double().reshape(-1))
        if squeezer is not None:
            squeeze.append(squeezer.score(model, chunk, probabilities=probs))
    probs = torch.cat(probabilities)
    top = probs.topk(min(5, probs.shape[1]), dim=1)
    top5 = np.zeros((probs.shape[0], 5))
    top5[:, :top.values.shape[1]] = top.values.double().numpy()
    raw = torch.cat(quality).numpy()
    normalised = scale.normalise(raw)
    normalised[~np.isfinite(raw)] = 0.0  # unscorable: the worst quality (module doc)
    features = np.column_stack([top5, normalised])
    ws_scores = None if ws is None else ws.score(batch).double().cpu().numpy()
    return Features(features, probs.argmax(dim=1).numpy().astype(np.int64), raw,
                    np.concatenate(squeeze) if squeezer is not None else None, ws_scores)
