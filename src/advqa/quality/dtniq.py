"""DTNIQ-f, a learned no-reference quality model on a frozen ImageNet classifier.

The DTNIQ-f design of Feng & Cai (the robust-classification paper, §III-A, Fig. 2;
their ref. [43]): the convolutional layers of an ImageNet classifier, frozen, are a
generic feature extractor; a head of two fully connected layers of 2048 units with
ReLU and an output layer of 70 units with softmax is trained on an IQA data set,
each image's MOS binned into 70 classes. The predicted quality of an image is

    q = (1/p) Σ_{i=1..p} Σ_{j=1..70} j · v_j(patch_i)

over p patches, normalised to [0, 1] as ``(q − 1) / 69`` (class j stands for the
normalised MOS ``(j − 1)/69``, the bin centres the trainer uses, so a head that
puts all its mass on the top class scores 1 and on the bottom class 0).

Here (advqa):

- Backbone: any advqa classifier (:func:`advqa.models.load_classifier`),
  EfficientNet-Lite0 by default (the paper used ResNet-152). Its "convolutional
  features" are read with forward hooks, so any classifier works without knowing its
  layers. Two kinds, named in the sidecar:

  * ``"multilevel"`` (the default, and the shipped proxy's): the spatial mean and
    standard deviation of the outputs of the convolutions :func:`feature_layers`
    picks: the first, the last and every 1×1 ungrouped convolution that reduces the
    channel count (the block outputs of EfficientNet/MobileNet, the bottleneck
    reductions of ResNet); 6,240 values for EfficientNet-Lite0. Deviation from the
    paper: its head reads the last pooled layer only. On a first constructed set
    (SSIM labels) the last layer gave a held-out SROCC of 0.62 with this head;
    ridge fits with VIF labels gave 0.71 for the last convolution's statistics
    against 0.84 for the 18 layers (docs/detection-gate.md). Noise, blur and
    compression live in low-level statistics, which the last, class-oriented layer
    has largely discarded.
  * ``"last-linear"``: the input of the last ``nn.Linear`` (the globally pooled
    output of the last convolution; 1280 values for EfficientNet-Lite0, 2048 for
    ResNet-152), the paper's choice.
- Patches: crops of the backbone's input size (224×224) at native resolution, on a
  ``grid × grid`` lattice of evenly spaced positions that reaches every edge (the
  corners for ``grid=2``); positions that coincide on a short side are used once,
  so a 224-pixel side gives one position. An image with a side shorter than the
  patch is first resized (bilinear) so that side is the patch size. ``p`` is the
  number of distinct crops (≤ grid²). The paper does not state its crop scheme;
  this one is deterministic, so the score is a function of the image.
- Differentiable with respect to the images: cropping, the frozen backbone and the
  head are all differentiable (the backbone's weights get no gradient).

Model files (``data/<name>.pt`` + ``data/<name>.json``): the head's state dict,
loaded with ``torch.load(weights_only=True)`` (no pickle of arbitrary objects), and
a JSON sidecar naming the backbone, the patch grid, the MOS range the classes span,
the training settings, the data fingerprint, held-out SROCC/PLCC and the SHA-256 of
the weight file, which the loader checks (a replaced or altered file is refused).

``dtniq-f-proxy`` (shipped, ``data/dtniq-f-proxy.pt`` + ``.json``) is a PROXY, not a
model of human opinion: it was trained by :mod:`advqa.workflows.train_nr` on the
constructed set, whose labels are a full-reference metric (VIF, ``vifvec.m``, of each
distorted photo against its pristine one, clipped to [0, 1]), the opinion-unaware
practice of dipIQ and RankIQA. Its sidecar records the command, the data
fingerprint and the held-out SROCC/PLCC on source photos it never saw (0.929).
``dtniq-f-proxy-fmnist`` (metric ``dtniq_fmnist``) is the same design on the shipped
Fashion-MNIST CNN, trained on SSIM labels of 28×28 grey Fashion-MNIST training images
(held-out SROCC 0.912). Train your own on a MOS table with ``advqa dtniq train``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

CLASSES = 70
HIDDEN = 2048
DEFAULT_MODEL = "dtniq-f-proxy"
DATA = Path(__file__).resolve().parent / "data"


class DtniqModelError(ValueError):
    """A DTNIQ model file that is missing, not a plain state dict, or altered."""


def make_head(features: int, *, dropout: float = 0.0) -> nn.Sequential:
    """Two FC layers of 2048 units with ReLU and a 70-class output (logits)."""
    return nn.Sequential(
        nn.Linear(features, HIDDEN), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(HIDDEN, CLASSES))


def last_linear(network: nn.Module) -> nn.Linear:
    linears = [module for module in network.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError("the backbone has no nn.Linear layer whose input could be read")
    return linears[-1]


def feature_layers(backbone: nn.Module) -> list[str]:
    """Names of the convolutions whose output statistics make the multi-level features:
    the first and last ``nn.Conv2d``, and every 1×1 ungrouped one that reduces channels."""
    convolutions = [(name, module) for name, module in backbone.named_modules()
                    if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError("the backbone has no nn.Conv2d layer to read features from")
    names = [name for index, (name, module) in enumerate(convolutions)
             if index in (0, len(convolutions) - 1)
             or (module.kernel_size == (1, 1) and module.groups == 1
                 and module.out_channels < module.in_channels)]
    return names


def backbone_features(backbone: nn.Module, images: torch.Tensor,
                      layers: list[str] | None = None) -> torch.Tensor:
    """(N, d) features: with ``layers`` (module names), the spatial mean and std of each
    one's output, concatenated in order; without, the input of the last linear layer."""
    captured, handles = [], []
    if layers is None:
        handles.append(last_linear(backbone).register_forward_hook(
            lambda module, inputs, output: captured.append(inputs[0].flatten(1))))
    else:
        modules = dict(backbone.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise ValueError(f"the backbone has no layers {missing[:3]}: the model was "
                             "trained on another backbone")
        for name in layers:
            handles.append(modules[name].register_forward_hook(
                lambda module, inputs, output: captured.append(
                    torch.cat([output.mean((2, 3)), output.std((2, 3))], 1))))
    try:
        backbone(images)
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(captured, 1)


def positions(length: int, size: int, grid: int) -> list[int]:
    """Evenly spaced crop starts along one side, first and last included, distinct."""
    if length <= size or grid == 1:
        return [max(0, (length - size) // 2)] if grid == 1 else [0]
    return sorted({round(i * (length - size) / (grid - 1)) for i in range(grid)})


def patches(image: torch.Tensor, size: int, grid: int) -> torch.Tensor:
    """(C, H, W) → (p, C, size, size): the crops of the patch scheme (module docstring)."""
    height, width = image.shape[-2:]
    if min(height, width) < size:
        scale = size / min(height, width)
        height, width = max(size, round(height * scale)), max(size, round(width * scale))
        image = nn.functional.interpolate(image[None], size=(height, width), mode="bilinear",
                                          align_corners=False)[0]
    return torch.stack([image[:, top:top + size, left:left + size]
                        for top in positions(height, size, grid)
                        for left in positions(width, size, grid)])


def expected_class(logits: torch.Tensor) -> torch.Tensor:
    """Σ_j j·softmax_j for j = 1..70, normalised to [0, 1] as (q − 1)/69."""
    classes = torch.arange(1, CLASSES + 1, dtype=logits.dtype, device=logits.device)
    return ((logits.softmax(-1) * classes).sum(-1) - 1) / (CLASSES - 1)


@dataclass
class DtniqModel:
    """A trained head on its frozen backbone, as :func:`load_dtniq` returns it."""

    name: str
    backbone: nn.Module
    head: nn.Module
    grid: int
    record: dict
    layers: list[str] | None = None

    @property
    def patch_size(self) -> int:
        return int(self.backbone.info.input_size)

    def __call__(self, images: torch.Tensor, *, grid: int | None = None,
                 batch_size: int = 64) -> torch.Tensor:
        grid = self.grid if grid is None else grid
        from advqa.models.classifier import input_channels
        from advqa.quality.validate import match_channels

        images = match_channels(images, input_channels(self.backbone))
        crops = [patches(image, self.patch_size, grid) for image in images]
        stacked = torch.cat(crops)
        # The backbone is in eval mode, so crops of several images share a forward pass.
        features = torch.cat([backbone_features(self.backbone, stacked[start:start + batch_size],
                                                self.layers)
                              for start in range(0, len(stacked), batch_size)])
        per_patch = expected_class(self.head(features.float()))
        return torch.stack([part.mean() for part in per_patch.split([len(c) for c in crops])])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_paths(model: str | Path) -> tuple[Path, Path]:
    """The weight file and sidecar of a shipped name or a ``.pt`` path."""
    path = Path(model)
    if path.suffix != ".pt":
        path = DATA / f"{model}.pt"
    return path, path.with_suffix(".json")


def read_head(path: Path, record: dict) -> nn.Module:
    """The head's state dict, checked against the sidecar's SHA-256, without unpickling."""
    expected = record.get("weights_sha256")
    if expected is None or file_sha256(path) != expected:
        raise DtniqModelError(f"{path} does not match the SHA-256 its sidecar records "
                              "(altered or replaced): refusing to load it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DtniqModelError(f"{path} is not a plain tensor state dict (loaded with "
                              f"weights_only=True): {error}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise DtniqModelError(f"{path} is not a state dict of tensors")
    head = make_head(int(record["features"]))
    try:
        head.load_state_dict({key: value.float() for key, value in state.items()})
    except RuntimeError as error:
        raise DtniqModelError(f"{path} does not fit the DTNIQ-f head: {error}") from error
    for parameter in head.parameters():
        parameter.requires_grad_(False)
    return head.eval()


def load_dtniq(model: str | Path = DEFAULT_MODEL, *, device=None) -> DtniqModel:
    """Load a DTNIQ-f model: a shipped name (``"dtniq-f-proxy"``) or a ``.pt`` path whose
    JSON sidecar sits beside it; the backbone comes from :func:`load_classifier`.

    Raises
    ------
    DtniqModelError
        When the files are missing, the weight file is not a plain state dict of
        tensors, or its SHA-256 differs from the sidecar's.
    """
    path, sidecar = model_paths(model)
    if not path.is_file() or not sidecar.is_file():
        raise DtniqModelError(f"DTNIQ model {model!r}: need {path} and its sidecar {sidecar} "
                              "(train one with `advqa dtniq train`)")
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    head = read_head(path, record)
    return _attach(str(model), head, record, device)


def _attach(name: str, head: nn.Module, record: dict, device) -> DtniqModel:
    from advqa.models import load_classifier

    backbone = load_classifier(record["backbone"], device=device)
    layers = record.get("layers")
    return DtniqModel(name, backbone, head.to(backbone.device), int(record["grid"]), record,
                      list(layers) if layers else None)


@lru_cache(maxsize=4)
def _cached(model: str, device: str) -> DtniqModel:
    return load_dtniq(model, device=device)


FASHION_MNIST_MODEL = "dtniq-f-proxy-fmnist"


def dtniq_fmnist(images: torch.Tensor, *, data_range: float = 1.0, clamp: bool = False,
                 grid: int | None = None) -> torch.Tensor:
    """:func:`dtniq` with the Fashion-MNIST proxy (``dtniq-f-proxy-fmnist``: the
    Fashion-MNIST CNN's features, SSIM labels; 28×28 grey input)."""
    return dtniq(images, data_range=data_range, clamp=clamp, model=FASHION_MNIST_MODEL,
                 grid=grid)


def dtniq(images: torch.Tensor, *, data_range: float = 1.0, clamp: bool = False,
          model: str = DEFAULT_MODEL, grid: int | None = None) -> torch.Tensor:
    """DTNIQ-f predicted quality, (N,) in [0, 1], higher is better; no reference.

    Parameters
    ----------
    images : torch.Tensor
        (N, 3, H, W) RGB or (N, 1, H, W) grey in [0, data_range]; converted to the
        backbone's channels (grey repeated for an RGB backbone, RGB to MATLAB's
        rgb2gray for a grey one such as the Fashion-MNIST CNN).
    data_range : float
        The value of white.
    clamp : bool
        Clamp out-of-range values instead of raising.
    model : str
        A shipped model name (default ``"dtniq-f-proxy"``, a VIF-trained proxy:
        see the module docstring) or the path of a ``.pt`` file with its sidecar.
    grid : int, optional
        Patch lattice side (p ≤ grid² crops); default: the model's (sidecar).

    Differentiable with respect to ``images`` (through the frozen backbone).
    """
    from advqa.quality.validate import check_images

    scaled = check_images(images, data_range=data_range, clamp=clamp) / data_range
    loaded = _cached(str(model), str(images.device))
    return loaded(scaled.float(), grid=grid).to(images.dtype)
