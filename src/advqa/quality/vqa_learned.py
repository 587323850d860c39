"""Learned no-reference video-quality metrics VSFA and MDTVSFA, from local weight files only.

Both models share one feature extractor and differ in the head that turns per-frame
features into a clip score:

* **Features** (both releases, ``CNNfeatures.py``): every frame, RGB in [0, 1] normalised
  with the ImageNet mean and standard deviation, goes through torchvision's ResNet-50
  (ImageNet weights) up to ``layer4`` (``res5c``, 2048 channels); its map is pooled over all
  positions into the mean and the *sample* standard deviation (``torch.std``, unbiased,
  divisor n − 1) → 4096 numbers per frame, means first. Frames are used at their own
  resolution: the releases neither resize nor crop.
* **VSFA** (Li, Jiang & Jiang, "Quality Assessment of In-the-Wild Videos", ACM MM 2019;
  ``lidq92/VSFA``, ``VSFA.py``): Linear 4096 → 128 (``ann.fc0``), GRU 128 → 32 (``rnn``,
  zero initial state), Linear 32 → 1 (``q``) per frame, then subjectively-inspired temporal
  pooling (τ = 12, β = 0.5) and the mean over frames. ``ann.fc`` and a dropout layer are
  defined by the release but unused (one ANN layer); ``ann.fc`` is kept so that the
  official file loads unchanged.
* **MDTVSFA** (Li, Jiang & Jiang, "Unified Quality Assessment of In-the-Wild Videos with
  Mixed Datasets Training", IJCV 2021; ``lidq92/MDTVSFA``, ``VQAmodel.py``): the same three
  layers under other names (``dimemsion_reduction`` [sic], ``feature_aggregation``,
  ``regression``), the same pooling, then a sigmoid → the *relative* quality in (0, 1). The
  release adds a shared nonlinear mapping ``nlm`` (Linear 1 → 1, sigmoid, Linear 1 → 1 whose
  parameters stay 1 and 0, i.e. a 4-parameter logistic with fixed outer scale) → the
  *mapped* quality in (0, 1), and per-dataset linear maps ``lm.K``, ``lm.C``, ``lm.L``,
  ``lm.N`` (KoNViD-1k, CVD2014, LIVE-Qualcomm, LIVE-VQC) → *aligned* scores on each
  dataset's MOS scale.

The temporal pooling, for per-frame qualities q₁…q_T: a memory term
lₜ = min(q_{t−τ+1}, …, q_t) (the frames seen so far in the window), a current term
mₜ = Σ_{k=t}^{t+τ−1} q_k e^{−q_k} / Σ e^{−q_k} (softmin-weighted over the coming frames of
the window, truncated at the end of the clip), q′ₜ = β mₜ + (1 − β) lₜ, and the clip score
is the mean of q′.

Weights (``torch.load(..., weights_only=True)``, never downloaded; looked for by file name
in ``$ADVQA_WEIGHTS_DIR`` and then torch hub's ``checkpoints`` folder, the places
:mod:`advqa.quality.learned` searches; a missing file raises
:class:`~advqa.models.MissingWeightsError` naming it, its URL and where to put it):

* ``VSFA.pt``: https://github.com/lidq92/VSFA/raw/master/models/VSFA.pt (the release's
  model, 9th split of KoNViD-1k).
* ``MDTVSFA.pt``: https://github.com/lidq92/MDTVSFA/raw/main/models/MDTVSFA.pt (9th splits of
  KoNViD-1k, CVD2014 and LIVE-Qualcomm mixed).
* ResNet-50: the releases call ``models.resnet50(pretrained=True)`` under torchvision 0.3,
  which downloaded ``resnet50-19c8e357.pth``; torchvision now publishes its ImageNet V1
  ResNet-50 as ``resnet50-0676ba61.pth`` (``ResNet50_Weights.IMAGENET1K_V1``, the file
  ``resnet50(weights="IMAGENET1K_V1")`` saves in torch hub's checkpoints). Either file is
  accepted; when both are present the 2019 file is used. (Not the V2 weights,
  ``resnet50-11ad3fa6.pth``, a different model the releases never saw.) File names ending in
  a hex digest are checked against the file's SHA-256, as for the image metrics.

Scores (higher is better for both):

* ``vsfa``: the release trains on MOS / max MOS of KoNViD-1k (MOS 1–5, max 4.64), so the
  output is about MOS / 4.64, nominally in (0, 1] (a linear output, not clipped).
* ``mdtvsfa``: by default the relative quality in (0, 1); ``output="mapped"`` gives what the
  release's ``test_demo.py`` prints (the mapped quality, in (0, 1)); ``output="K"`` (or
  ``"C"``, ``"L"``, ``"N"``) the aligned score on that dataset's MOS scale.

Deviations from the releases, each deliberate:

* Input frames are float RGB in [0, 1] as given; the releases decode 8-bit video and
  divide by 255 (``ToTensor``). For 8-bit-valued frames the input is the same.
* The pooling's softmin is computed with a softmax over each window instead of the
  release's ``q·e^{−q}`` / ``e^{−q}`` averages padded with q = 10000. The value is the
  same (to float rounding) and gradients the same, but it does not overflow when a
  frame quality falls below about −88 (where the release gives inf / NaN).
* A clip must have ``ceil(H/32)·ceil(W/32) ≥ 2`` res5c positions: the release's unbiased
  standard deviation of a single position is NaN, so such frames are refused with an
  error instead of scoring NaN.
* All clips of a batch have the same number of frames (the releases pad to ``max_len`` and
  pass lengths; one tensor here). Frames go through ResNet-50 in chunks of
  ``frame_batch`` (the releases' ``frame_batch_size``); in evaluation mode this does not
  change the result. The module stays in evaluation mode (``train()`` is a no-op), so
  batch normalisation always uses the stored statistics as in the releases.
* The whole pipeline runs with autograd when it is on, so scores are differentiable with
  respect to the video (the releases extract features under ``torch.no_grad()``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from advqa.models.registry import (
    MissingWeightsError,
    load_state_dict,
    resolve_device,
    weight_directories,
)
from advqa.quality.learned import (
    WeightFile,
    local_weight_file,
    missing_weights_message,
    refuse_network,
)
from advqa.quality.registry import MetricInfo

VQA_METRICS = ("vsfa", "mdtvsfa")
TAU = 12  # window of the temporal pooling, in frames (both releases)
BETA = 0.5  # weight of the current term against the memory term
FEATURE_SIZE = 4096  # 2048 res5c channels × (mean, std)
REDUCED_SIZE = 128
HIDDEN_SIZE = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MDTVSFA_DATASETS = {"K": "KoNViD-1k", "C": "CVD2014", "L": "LIVE-Qualcomm", "N": "LIVE-VQC"}
MDTVSFA_OUTPUTS = ("relative", "mapped", *MDTVSFA_DATASETS)

HEAD_FILES = {
    "vsfa": WeightFile("VSFA.pt", "https://github.com/lidq92/VSFA/raw/master/models/VSFA.pt",
                       "VSFA head trained on KoNViD-1k, lidq92/VSFA models/VSFA.pt"),
    "mdtvsfa": WeightFile(
        "MDTVSFA.pt", "https://github.com/lidq92/MDTVSFA/raw/main/models/MDTVSFA.pt",
        "MDTVSFA head trained on KoNViD-1k, CVD2014 and LIVE-Qualcomm, lidq92/MDTVSFA "
        "models/MDTVSFA.pt"),
}
# torchvision's ImageNet V1 ResNet-50 as it publishes it today, and the 2019 file name.
RESNET50_V1 = WeightFile("resnet50-0676ba61.pth",
                         "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                         "torchvision ResNet-50 ImageNet V1 backbone (IMAGENET1K_V1)")
RESNET50_2019 = WeightFile("resnet50-19c8e357.pth",
                           "https://download.pytorch.org/models/resnet50-19c8e357.pth",
                           "torchvision 0.3 ResNet-50 ImageNet backbone, as VSFA used it")
BACKBONE_FILES = (RESNET50_2019, RESNET50_V1)  # order of preference

_RELEASES = {
    "vsfa": ("Li, Jiang & Jiang, ACM MM 2019, lidq92/VSFA models/VSFA.pt on torchvision "
             "ResNet-50 (ImageNet V1) res5c mean+std features of full-resolution RGB frames"),
    "mdtvsfa": ("Li, Jiang & Jiang, IJCV 2021, lidq92/MDTVSFA models/MDTVSFA.pt on torchvision "
                "ResNet-50 (ImageNet V1) res5c mean+std features of full-resolution RGB "
                "frames"),
}


def _info(name: str, output: str = "relative") -> MetricInfo:
    if name == "vsfa":
        return MetricInfo(
            name="vsfa", full_reference=False, higher_is_better=True, range=(0.0, 1.0),
            differentiable=True, release=_RELEASES["vsfa"],
            description=("VSFA no-reference video quality (ResNet-50 content features, GRU, "
                         "subjectively-inspired temporal pooling); about MOS/4.64 of "
                         "KoNViD-1k"))
    if output == "relative":
        what, scale = "relative quality", (0.0, 1.0)
    elif output == "mapped":
        what, scale = "mapped quality (the release demo's output)", (0.0, 1.0)
    else:
        # Replaced by the file's own span in load_vqa_metric.
        what = f"aligned score on the {MDTVSFA_DATASETS[output]} MOS scale"
        scale = (-math.inf, math.inf)
    label = "mdtvsfa" if output == "relative" else f"mdtvsfa:{output}"
    return MetricInfo(
        name=label, full_reference=False, higher_is_better=True, range=scale,
        differentiable=True, release=_RELEASES["mdtvsfa"],
        description=(f"MDTVSFA no-reference video quality trained on mixed datasets; {what}"))


VIDEO_LEARNED: dict[str, MetricInfo] = {name: _info(name) for name in VQA_METRICS}
"""Registry rows for ``vsfa`` and ``mdtvsfa`` (default outputs): description, release,
higher_is_better, range. Video metrics: they score (N, T, C, H, W) clips."""


def vqa_weight_files(name: str) -> tuple[WeightFile, ...]:
    """The head file of ``vsfa`` / ``mdtvsfa`` and the backbone files (either one suffices)."""
    _check_name(name)
    return (HEAD_FILES[name], *BACKBONE_FILES)


def _check_name(name: str) -> None:
    if name not in VQA_METRICS:
        raise ValueError(f"unknown video quality metric {name!r}; valid names: "
                         f"{', '.join(VQA_METRICS)}")


# --------------------------------------------------------------------- finding the files
def _places() -> str:
    return " or ".join(str(directory) for directory in weight_directories())


def _explicit(label: str, path: str | Path, official: tuple[WeightFile, ...]) -> Path:
    """A path given by the caller: the file itself, else a file of that name in a weight
    directory, else a :class:`MissingWeightsError` saying where it was looked for."""
    try:
        return local_weight_file(label, path)
    except MissingWeightsError:
        path = Path(path).expanduser()
        sources = "; ".join(f"{file.name!r} from {file.url}" for file in official)
        # The image adapters' message, plus where the official file comes from.
        raise MissingWeightsError(
            f"{label}: weight file {str(path)!r} is not on this machine (looked at {path} and "
            f"for {path.name!r} in {_places()}); advqa never downloads at run time. The "
            f"official file: {sources}. On a machine with internet, download it and put it "
            f"at {path}, or in one of those folders (or point ADVQA_WEIGHTS_DIR at its "
            "folder).") from None


def _head_path(name: str, weights: str | Path | None) -> Path:
    file = HEAD_FILES[name]
    if weights is not None:
        return _explicit(name, weights, (file,))
    found = file.find()
    if found is None:
        raise MissingWeightsError(missing_weights_message(name, (file,)))
    return found


def _backbone_path(name: str, backbone: str | Path | None) -> Path:
    if backbone is not None:
        return _explicit(f"{name} backbone", backbone, BACKBONE_FILES)
    for file in BACKBONE_FILES:
        found = file.find()
        if found is not None:
            return found
    return _raise_missing_backbone(name)


def _raise_missing_backbone(name: str):
    raise MissingWeightsError(
        missing_weights_message(name, (RESNET50_V1,))
        + f"\nThe 2019 file {RESNET50_2019.name!r} ({RESNET50_2019.url}), which VSFA and "
          "MDTVSFA were trained with, is accepted too (and preferred when both are there).")


# ------------------------------------------------------------------ reading the weights
def _check_state(path: Path, expected: Mapping[str, torch.Size], what: str, *,
                 ignore: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` restricted to ``expected``; a ValueError naming missing,
    unexpected and wrongly shaped entries. Keys ending in one of ``ignore`` may be absent
    or extra."""
    state = load_state_dict(path)  # torch.load(map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"weight file {path} does not hold {what}: it holds a "
                         f"{type(state).__name__}, not a state dict")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"weight file {path} does not hold {what}: entries "
                         f"{not_tensors[:8]} are not tensors")
    skip = {key for key in [*state, *expected] if key.endswith(ignore)} if ignore else set()
    missing = sorted(set(expected) - set(state) - skip)
    unexpected = sorted(set(state) - set(expected) - skip)
    shapes = sorted(f"{key}: {tuple(state[key].shape)} instead of {tuple(expected[key])}"
                    for key in set(state) & set(expected)
                    if tuple(state[key].shape) != tuple(expected[key]))
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"wrong shapes {shapes}")
    if problems:
        raise ValueError(f"weight file {path} does not hold {what} (the official key names "
                         f"and shapes): " + "; ".join(problems))
    return {key: value for key, value in state.items() if key in expected}


def _check_digest(path: Path) -> None:
    from advqa.models.torchvision_zoo import check_hash_prefix

    check_hash_prefix(path)


# ---------------------------------------------------------------------------- modules
class ResNet50Features(nn.Module):
    """torchvision's ResNet-50 up to ``layer4`` (res5c) with mean and std pooling.

    Built with its parameters on the meta device (no wasted random initialisation):
    :func:`load_vqa_metric` materialises them from the weight file. Submodule names are
    torchvision's, so its state dict (without ``fc``) loads as it is.
    ``forward`` takes (F, 3, H, W) RGB in [0, 1] and returns (F, 4096): the per-channel
    means, then the per-channel sample standard deviations (divisor n − 1).
    """

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        # Built on the meta device: no time spent on a random initialisation that the
        # weight file replaces (see load_vqa_metric).
        with torch.device("meta"):
            net = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (net.layer1, net.layer2,
                                                              net.layer3, net.layer4)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1),
                             persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.flatten(2)
        return torch.cat([x.mean(dim=2), x.std(dim=2, unbiased=True)], dim=1)


def temporal_pooling(q: torch.Tensor, tau: int = TAU, beta: float = BETA) -> torch.Tensor:
    """Subjectively-inspired temporal pooling of (N, T) frame qualities → (N,) clip scores.

    Memory term: the minimum over the last ``tau`` frames (the current one included);
    current term: the softmin-weighted mean of the current and next ``tau − 1`` frames
    (fewer at the end of the clip); their ``beta``-weighted sum, averaged over time.
    """
    inf = q.new_full((q.shape[0], tau - 1), math.inf)
    past = torch.cat([inf, q], dim=1).unfold(1, tau, 1)  # (N, T, tau): frames t−tau+1 … t
    memory = past.amin(dim=2)
    future = torch.cat([q, inf], dim=1).unfold(1, tau, 1)  # frames t … t+tau−1
    weights = torch.softmax(-future, dim=2)  # zero where padded (+inf)
    current = (weights * torch.where(torch.isinf(future), 0.0, future)).sum(dim=2)
    return (beta * current + (1 - beta) * memory).mean(dim=1)


class _ANN(nn.Module):
    """VSFA's ``ann``: ``fc0`` only (one layer); ``dropout`` and ``fc`` exist, unused."""

    def __init__(self):
        super().__init__()
        self.fc0 = nn.Linear(FEATURE_SIZE, REDUCED_SIZE)
        self.dropout = nn.Dropout(p=0.5)
        self.fc = nn.Linear(REDUCED_SIZE, REDUCED_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc0(x)


class VSFAHead(nn.Module):
    """(N, T, 4096) features → (N,) VSFA scores; parameter names as in ``VSFA.pt``."""

    def __init__(self):
        super().__init__()
        self.ann = _ANN()
        self.rnn = nn.GRU(REDUCED_SIZE, HIDDEN_SIZE, batch_first=True)
        self.q = nn.Linear(HIDDEN_SIZE, 1)

    def frame_quality(self, features: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.ann(features))  # zero initial state
        return self.q(hidden).squeeze(2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return temporal_pooling(self.frame_quality(features))


class MDTVSFAHead(nn.Module):
    """(N, T, 4096) features → (N,) MDTVSFA scores; parameter names as in ``MDTVSFA.pt``.

    ``output``: ``"relative"`` (default), ``"mapped"`` or a dataset key of ``lm``.
    """

    def __init__(self, output: str = "relative"):
        super().__init__()
        if output not in MDTVSFA_OUTPUTS:
            raise ValueError(f"unknown MDTVSFA output {output!r}; valid: "
                             f"{', '.join(MDTVSFA_OUTPUTS)}")
        self.output = output
        self.dimemsion_reduction = nn.Linear(FEATURE_SIZE, REDUCED_SIZE)  # sic, as released
        self.feature_aggregation = nn.GRU(REDUCED_SIZE, HIDDEN_SIZE, batch_first=True)
        self.regression = nn.Linear(HIDDEN_SIZE, 1)
        self.nlm = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid(), nn.Linear(1, 1))
        self.lm = nn.ModuleDict({key: nn.Linear(1, 1) for key in MDTVSFA_DATASETS})

    def frame_quality(self, features: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.feature_aggregation(self.dimemsion_reduction(features))
        return self.regression(hidden).squeeze(2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        relative = torch.sigmoid(temporal_pooling(self.frame_quality(features)))
        if self.output == "relative":
            return relative
        mapped = self.nlm(relative.unsqueeze(1))
        if self.output == "mapped":
            return mapped.squeeze(1)
        return self.lm[self.output](mapped).squeeze(1)

    def extra_repr(self) -> str:
        return f"output={self.output!r}"


class VideoQualityMetric(nn.Module):
    """A learned no-reference video metric: ``metric(videos)`` → (N,) scores.

    ``videos``: (N, T, C, H, W) or (T, C, H, W) float RGB (C = 3; C = 1 is repeated) in
    [0, 1], on the metric's device. ``info`` describes the scores, ``files`` the weight files
    loaded, ``frame_batch`` how many frames go through ResNet-50 at once. Parameters are
    frozen; gradients flow to the input.
    """

    def __init__(self, info: MetricInfo, backbone: ResNet50Features, head: nn.Module, *,
                 files: tuple[Path, ...] = (), frame_batch: int = 32):
        super().__init__()
        self.info = info
        self.backbone = backbone
        self.head = head
        self.files = files
        self.frame_batch = frame_batch
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VideoQualityMetric:
        """Kept in evaluation mode: the releases score with stored BN statistics."""
        return self

    def check(self, videos: torch.Tensor) -> torch.Tensor:
        """Validated (N, T, 3, H, W) videos; ValueError on a wrong shape, dtype or value."""
        name = self.info.name
        if not isinstance(videos, torch.Tensor):
            raise ValueError(f"{name}: videos must be a tensor, got {type(videos).__name__}")
        if videos.dim() == 4:
            videos = videos.unsqueeze(0)
        if videos.dim() != 5 or videos.shape[2] not in (1, 3):
            raise ValueError(f"{name}: videos must be an (N, T, C, H, W) or (T, C, H, W) "
                             f"tensor with C = 3 (RGB) or 1, got shape {tuple(videos.shape)}")
        if videos.shape[0] == 0:
            raise ValueError(f"{name}: empty batch, videos have shape {tuple(videos.shape)} "
                             "(N = 0)")
        if videos.shape[1] < 1:
            raise ValueError(f"{name}: videos need at least 1 frame, got T = 0 (shape "
                             f"{tuple(videos.shape)})")
        if not videos.is_floating_point():
            raise ValueError(f"{name}: videos must be floating point in [0, 1], got "
                             f"{videos.dtype}")
        height, width = videos.shape[-2:]
        if math.ceil(height / 32) * math.ceil(width / 32) < 2:
            raise ValueError(f"{name}: frames are {height}×{width}, too small: ResNet-50's "
                             "res5c map (ceil(H/32) × ceil(W/32)) needs at least 2 positions "
                             "for the standard-deviation pooling, e.g. 64×32 or larger")
        if torch.isnan(videos).any():
            raise ValueError(f"{name}: videos contain NaN")
        low, high = videos.min().item(), videos.max().item()
        if low < 0 or high > 1:
            raise ValueError(f"{name}: videos must lie in [0, 1], found [{low:.4g}, {high:.4g}]")
        if videos.shape[2] == 1:
            videos = videos.expand(-1, -1, 3, -1, -1)
        return videos

    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """(N, T, 4096) content features of validated videos."""
        count, frames = videos.shape[:2]
        flat = videos.reshape(count * frames, *videos.shape[2:])
        chunks = [self.backbone(flat[start:start + self.frame_batch])
                  for start in range(0, len(flat), self.frame_batch)]
        return torch.cat(chunks).reshape(count, frames, -1)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        videos = self.check(videos)
        return self.head(self.features(videos)).reshape(len(videos))

    def extra_repr(self) -> str:
        return f"name={self.info.name!r}, files={[str(f) for f in self.files]!r}"


# ----------------------------------------------------------------------------- loading
def _load_backbone(path: Path) -> ResNet50Features:
    _check_digest(path)
    module = ResNet50Features()
    expected = {key: value.shape for key, value in module.state_dict().items()}
    # The file's classifier (fc) is not used; num_batches_tracked is absent from the 2019
    # file and unused in evaluation.
    state = _check_state(path, expected, "torchvision's ResNet-50 weights",
                         ignore=("num_batches_tracked", "fc.weight", "fc.bias"))
    module.to_empty(device="cpu")
    for buffer_name, buffer in module.named_buffers():
        if buffer_name.endswith("num_batches_tracked"):
            buffer.zero_()
    module.mean.copy_(torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
    module.std.copy_(torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))
    result = module.load_state_dict(state, strict=False)
    left = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if left or result.unexpected_keys:  # cannot happen after _check_state
        raise ValueError(f"weight file {path}: could not load {left or result.unexpected_keys}")
    return module


def _load_head(name: str, path: Path, output: str) -> nn.Module:
    head = VSFAHead() if name == "vsfa" else MDTVSFAHead(output)
    expected = {key: value.shape for key, value in head.state_dict().items()}
    release = "lidq92/VSFA models/VSFA.pt" if name == "vsfa" else "lidq92/MDTVSFA MDTVSFA.pt"
    head.load_state_dict(_check_state(path, expected, f"the {name} head ({release})"))
    return head


def load_vqa_metric(name: str, *, weights: str | Path | None = None,
                    backbone: str | Path | None = None,
                    device: str | torch.device | None = None, output: str = "relative",
                    frame_batch: int = 32) -> VideoQualityMetric:
    """Build ``vsfa`` or ``mdtvsfa`` from local weight files.

    Parameters
    ----------
    name : str
        ``"vsfa"`` or ``"mdtvsfa"``.
    weights : str or Path, optional
        The head's file (``VSFA.pt`` / ``MDTVSFA.pt``): a path, or a file name found in
        ``$ADVQA_WEIGHTS_DIR`` or torch hub's checkpoints. By default the official file name
        is looked for there.
    backbone : str or Path, optional
        torchvision's ImageNet ResNet-50 state dict, likewise; by default
        ``resnet50-19c8e357.pth`` then ``resnet50-0676ba61.pth``.
    device : str or torch.device, optional
        Defaults to CUDA when present, else CPU.
    output : str
        MDTVSFA only: ``"relative"`` (default), ``"mapped"`` (the release demo's output) or
        ``"K"``/``"C"``/``"L"``/``"N"`` (aligned to that dataset's MOS scale).
    frame_batch : int
        Frames per ResNet-50 call.

    Returns
    -------
    VideoQualityMetric
        ``metric(videos)`` with videos (N, T, 3, H, W) or (T, 3, H, W) in [0, 1] → (N,)
        scores, higher is better; differentiable with respect to the videos.

    Raises
    ------
    MissingWeightsError
        A weight file is not on disk; the message names it, its URL and where to put it.
    ValueError
        A file that is not the expected state dict (missing / unexpected keys and wrong
        shapes named), an unknown name or output.
    """
    _check_name(name)
    if name == "vsfa" and output != "relative":
        raise ValueError("output= applies to mdtvsfa only (VSFA has a single output)")
    if output not in MDTVSFA_OUTPUTS:
        raise ValueError(f"unknown MDTVSFA output {output!r}; valid: "
                         f"{', '.join(MDTVSFA_OUTPUTS)}")
    if frame_batch < 1:
        raise ValueError(f"frame_batch must be at least 1, got {frame_batch}")
    paths, errors = [], []
    for resolve, given in ((_head_path, weights), (_backbone_path, backbone)):
        try:
            paths.append(resolve(name, given))
        except MissingWeightsError as error:
            errors.append(str(error))
    if errors:  # every missing file at once
        raise MissingWeightsError("\n".join(errors))
    head_path, backbone_path = paths
    # Nothing here should reach the network; make sure of it.
    with refuse_network(name):
        head = _load_head(name, head_path, output)
        features = _load_backbone(backbone_path)
    info = _info(name, output)
    if name == "mdtvsfa" and output in MDTVSFA_DATASETS:
        # mapped ∈ (0, 1), so the aligned score spans the file's [b, w + b].
        weight, bias = head.lm[output].weight.item(), head.lm[output].bias.item()
        info = replace(info, range=(min(bias, weight + bias), max(bias, weight + bias)))
    metric = VideoQualityMetric(info, features, head, files=(head_path, backbone_path),
                                frame_batch=frame_batch)
    return metric.to(resolve_device(device))
