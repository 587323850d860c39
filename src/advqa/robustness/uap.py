"""Universal adversarial perturbations (UAPs) against an image-quality metric.

A UAP is one image-sized pattern ``δ`` with ``‖δ‖∞ ≤ eps`` that, added to *any*
image, pushes a metric toward "better". Three trainers follow the public MSU
Metrics Robustness Benchmark (Antsiferova et al., AAAI 2024), which adapted
them from classifier attacks:

``cumulative``
    Cumulative-UAP after Moosavi-Dezfooli et al. (CVPR 2017): each batch adds
    the average of the per-image one-step (FGSM-like, sign-of-gradient)
    perturbations, and the running sum is clipped to ``±eps``.
``optimized``
    Optimized-UAP after Zhang et al. (CVPR 2020): ``δ`` is a parameter trained
    with Adam on the negated metric objective, clamped to ``±eps`` after every
    step. Defaults are the benchmark's: ``δ`` starts at ``1e-4``, Adam with
    ``lr=1e-3``, 5 epochs, batches of 8.
``generative``
    Generative-UAP after Poursaeed et al. (CVPR 2018): a small U-Net
    (:class:`UNetGenerator`) maps a fixed uniform-noise image to
    ``eps · tanh(·)`` and is trained with Adam on the negated metric objective.

The objective is :class:`~advqa.robustness.objective.MetricObjective`
(``direction · metric / range``, higher is better for the attacker). A
full-reference metric is attacked the benchmark's way: the UAP is added to a
JPEG copy of each training image (quality ``jpeg_quality``) and the result is
scored against the pristine image.

During training the UAP is tiled to the image size and the sum is clipped to
[0, 1] with a straight-through clip (the forward pass sees the clipped image,
the gradient passes as if unclipped), as the benchmark's scripts do with
``res.data.clamp_``. Where a metric's gradient is undefined (NaN or infinite,
e.g. the square root in GMSD at a zero gradient magnitude) it is taken as zero.
Training is batched, seeded by a local :class:`torch.Generator` (batch order,
initial noise, network weights) and never touches the global RNG: the same
seed and images give a bit-identical UAP on the same machine and thread count.

:func:`apply_uap` adds a trained UAP to images at an *amplitude*, as the
benchmark's evaluation does (amplitudes 0.2, 0.4 and 0.8). :class:`UAP` holds
the perturbation and how it was made; :meth:`UAP.save` writes a float32
``.npy`` and then its JSON sidecar, each atomically, and :meth:`UAP.load` reads
them back without unpickling anything. The sidecar is the pair's commit mark: a
kill during :meth:`UAP.save` leaves the complete pair, nothing, or an array
without sidecar, which :func:`recover_uap` reports and removes on resume.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from advqa.attacks.base import check_images, frozen
from advqa.data import atomic_write_bytes
from advqa.robustness.calibration import fingerprint
from advqa.robustness.objective import MetricObjective, jpeg_copy

UAP_KINDS = ("cumulative", "optimized", "generative")
# The benchmark's directory names, accepted as aliases.
KIND_ALIASES = {"cumulative-uap": "cumulative", "uap": "optimized", "optimized-uap": "optimized",
                "generative-uap": "generative"}
SIDECAR_FORMAT = "advqa-uap/1"


class UAPFormatError(ValueError):
    """A saved UAP whose files are unreadable, inconsistent or incomplete."""


# --------------------------------------------------------------------------- applying


def tile_perturbation(perturbation: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tile a ``(C, h, w)`` pattern periodically to ``(C, height, width)``, cropped top-left.

    The same as ``np.tile`` followed by ``[:, :height, :width]``; differentiable.
    """
    _, h, w = perturbation.shape
    reps_h, reps_w = math.ceil(height / h), math.ceil(width / w)
    return perturbation.repeat(1, reps_h, reps_w)[:, :height, :width]


def _as_perturbation(perturbation) -> torch.Tensor:
    if isinstance(perturbation, UAP):
        perturbation = perturbation.perturbation
    if not isinstance(perturbation, torch.Tensor):
        raise ValueError("perturbation must be a tensor or a UAP, "
                         f"got {type(perturbation).__name__}")
    if perturbation.dim() == 4 and perturbation.shape[0] == 1:
        perturbation = perturbation[0]
    if perturbation.dim() != 3 or not perturbation.is_floating_point():
        raise ValueError(f"perturbation must be a float (C, H, W) tensor, "
                         f"got {perturbation.dtype} {tuple(perturbation.shape)}")
    if not torch.isfinite(perturbation).all():
        raise ValueError("perturbation contains NaN or infinite values")
    return perturbation


def apply_uap(images: torch.Tensor, perturbation, amplitude: float) -> torch.Tensor:
    """``clip(images + amplitude · tile(perturbation), 0, 1)`` for an NCHW batch in [0, 1].

    The perturbation (a ``(C, h, w)`` tensor or a :class:`UAP`) is tiled
    periodically to the image size and cropped top-left, like ``np.tile``.

    Unlike the benchmark's evaluation script (``run_uap``), which adds
    ``amplitude · uap`` and does **not** clip, the result here is clipped to
    [0, 1]: an attacked image must still be a valid image, one that can be
    stored as a picture and scored by metrics that assume the [0, 1] range.
    Scores can therefore differ slightly from the benchmark's where the sum
    leaves the box.

    Raises
    ------
    ValueError
        For images that are not a float NCHW batch in [0, 1], a negative or
        non-finite amplitude, or a perturbation whose channels differ.
    """
    check_images(images)
    perturbation = _as_perturbation(perturbation)
    amplitude = float(amplitude)
    if not (math.isfinite(amplitude) and amplitude >= 0):
        raise ValueError(f"amplitude must be a finite number >= 0, got {amplitude!r}")
    if perturbation.shape[0] != images.shape[1]:
        raise ValueError(f"perturbation has {perturbation.shape[0]} channels, "
                         f"images have {images.shape[1]}")
    tiled = tile_perturbation(perturbation.to(images.device, images.dtype), *images.shape[-2:])
    return (images + amplitude * tiled).clamp(0, 1)


def _add_clipped(inputs: torch.Tensor, tiled: torch.Tensor) -> torch.Tensor:
    """``inputs + tiled`` clipped to [0, 1] forward, unclipped backward (straight-through)."""
    attacked = inputs + tiled
    # Undefined metric gradients (GMSD's √ at 0) are zeroed by MetricObjective.evaluate.
    return attacked + (attacked.clamp(0, 1) - attacked).detach()


# --------------------------------------------------------------------------- the result


@dataclass
class UAP:
    """A trained universal perturbation and how it was made.

    Attributes
    ----------
    perturbation : torch.Tensor
        ``(C, size, size)`` float32, within ``±settings["eps"]``.
    kind : str
        One of :data:`UAP_KINDS`.
    metric : str
        Name of the attacked metric.
    seed : int
    settings : dict
        Every training setting (eps, epochs, batch_size, lr, size, metric_range…).
    training_fingerprint : str
        Digest of the pristine training images
        (:func:`advqa.robustness.calibration.fingerprint`).
    version : str
        advqa version that trained it.
    """

    perturbation: torch.Tensor
    kind: str
    metric: str
    seed: int
    settings: dict = field(default_factory=dict)
    training_fingerprint: str = ""
    version: str = ""

    def apply(self, images: torch.Tensor, amplitude: float) -> torch.Tensor:
        """:func:`apply_uap` with this perturbation."""
        return apply_uap(images, self.perturbation, amplitude)

    @staticmethod
    def paths(path: str | Path) -> tuple[Path, Path]:
        """The ``.npy`` file and its ``.json`` sidecar for ``path`` (``.npy`` added if missing)."""
        path = Path(path)
        if path.suffix != ".npy":
            path = path.with_name(path.name + ".npy")
        return path, path.with_suffix(".json")

    def save(self, path: str | Path) -> Path:
        """Write the perturbation (float32 ``.npy``) and its JSON sidecar, each atomically.

        An old sidecar is removed first and the new one is written last; it
        records the SHA-256 of the ``.npy`` bytes, so a reader never pairs a
        sidecar with another perturbation. Whenever the process dies, the files
        are the complete new pair, the complete old pair, or an array without
        sidecar (incomplete: :meth:`load` refuses it, :func:`recover_uap`
        removes it). Returns the ``.npy`` path.
        """
        array_path, sidecar_path = self.paths(path)
        array = np.ascontiguousarray(self.perturbation.detach().cpu().numpy().astype(np.float32))
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        sidecar = {
            "format": SIDECAR_FORMAT,
            "kind": self.kind,
            "metric": self.metric,
            "seed": self.seed,
            "settings": self.settings,
            "training_fingerprint": self.training_fingerprint,
            "advqa_version": self.version,
            "shape": list(array.shape),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        # Without its sidecar an old array is visibly incomplete while the new one is written.
        sidecar_path.unlink(missing_ok=True)
        atomic_write_bytes(array_path, data)
        atomic_write_bytes(sidecar_path, (json.dumps(sidecar, indent=1, sort_keys=True)
                                          + "\n").encode())
        return array_path

    @classmethod
    def load(cls, path: str | Path) -> UAP:
        """Read a UAP written by :meth:`save` (no pickle involved).

        Raises
        ------
        FileNotFoundError
            When the ``.npy`` or its sidecar is missing.
        UAPFormatError
            When the sidecar is not valid JSON, lacks a field, or does not
            match the ``.npy`` (checksum or shape).
        """
        array_path, sidecar_path = cls.paths(path)
        if not array_path.is_file():
            raise FileNotFoundError(f"no UAP perturbation at {array_path}")
        if not sidecar_path.is_file():
            raise FileNotFoundError(f"UAP {array_path} has no sidecar {sidecar_path.name}: "
                                    "its kind, metric and settings are unknown")
        data = array_path.read_bytes()
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UAPFormatError(f"UAP sidecar {sidecar_path} is not valid JSON: {error}") from None
        required = ("format", "kind", "metric", "seed", "settings", "shape", "sha256")
        if not isinstance(sidecar, dict) or any(key not in sidecar for key in required):
            raise UAPFormatError(f"UAP sidecar {sidecar_path} lacks fields; needs {required}")
        if sidecar["format"] != SIDECAR_FORMAT:
            raise UAPFormatError(f"UAP sidecar {sidecar_path} has format {sidecar['format']!r}, "
                                 f"expected {SIDECAR_FORMAT!r}")
        if hashlib.sha256(data).hexdigest() != sidecar["sha256"]:
            raise UAPFormatError(f"{array_path} does not match its sidecar (checksum differs)")
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as error:
            raise UAPFormatError(f"{array_path} is not a readable .npy array: {error}") from None
        if list(array.shape) != list(sidecar["shape"]) or array.dtype != np.float32:
            raise UAPFormatError(f"{array_path} holds {array.dtype} {array.shape}, sidecar says "
                                 f"float32 {tuple(sidecar['shape'])}")
        return cls(perturbation=torch.from_numpy(array.copy()), kind=sidecar["kind"],
                   metric=sidecar["metric"], seed=int(sidecar["seed"]),
                   settings=dict(sidecar["settings"]),
                   training_fingerprint=sidecar.get("training_fingerprint", ""),
                   version=sidecar.get("advqa_version", ""))


def recover_uap(path: str | Path, *, kind: str | None = None,
                training_fingerprint: str | None = None) -> UAP | None:
    """The UAP saved at ``path`` if it is complete and the one expected; else None.

    For resuming a run. Returns None when neither file exists. A pair that is
    incomplete or inconsistent — an array without sidecar (a kill during
    :meth:`UAP.save`), a sidecar without array, a checksum mismatch, an
    unreadable sidecar — or a complete UAP of another ``kind`` or made from
    other training images (``training_fingerprint``) is reported with a
    warning, removed (both files, and temporaries a killed write left) and
    None is returned, so that the caller trains it again. It is never returned.
    """
    array_path, sidecar_path = UAP.paths(path)
    for stray in _temporaries(array_path) + _temporaries(sidecar_path):
        stray.unlink(missing_ok=True)
    if not array_path.exists() and not sidecar_path.exists():
        return None
    try:
        uap = UAP.load(array_path)
    except (FileNotFoundError, UAPFormatError) as error:
        problem = f"incomplete or damaged ({error})"
    else:
        expected = {"kind": KIND_ALIASES.get(kind, kind),
                    "training_fingerprint": training_fingerprint}
        wrong = [f"{name} {getattr(uap, name)!r}, expected {value!r}"
                 for name, value in expected.items()
                 if value is not None and getattr(uap, name) != value]
        if not wrong:
            return uap
        problem = f"not the one this run needs ({'; '.join(wrong)})"
    warnings.warn(f"UAP artefact {array_path} is {problem}: removed, it will be trained again",
                  stacklevel=2)
    array_path.unlink(missing_ok=True)
    sidecar_path.unlink(missing_ok=True)
    return None


def _temporaries(path: Path) -> list[Path]:
    """Files a killed :func:`advqa.data.atomic_write_bytes` of ``path`` left (its naming)."""
    return list(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []


# --------------------------------------------------------------------------- the generator


class UNetGenerator(nn.Module):
    """A small U-Net for Generative-UAP: ``depth`` stride-2 levels, ``width`` channels at the top.

    Encoder: 4×4 stride-2 convolutions doubling the channels; decoder: 4×4
    stride-2 transposed convolutions with skip connections; instance norm and
    leaky ReLU in between; ``tanh`` output in (−1, 1). The benchmark's
    generator has eight levels and 64 base channels; this one is kept small
    enough to train on a CPU in seconds. The input's sides must be multiples
    of ``2 ** depth``.
    """

    def __init__(self, channels: int = 3, *, width: int = 16, depth: int = 3):
        super().__init__()
        if not (isinstance(depth, int) and depth >= 1 and isinstance(width, int) and width >= 1):
            raise ValueError(f"depth and width must be positive integers, got {depth!r}, {width!r}")
        self.depth = depth
        widths = [width * 2 ** level for level in range(depth)]
        self.down = nn.ModuleList()
        previous = channels
        for level, out in enumerate(widths):
            norm = nn.InstanceNorm2d(out, affine=True) if level else nn.Identity()
            self.down.append(nn.Sequential(nn.Conv2d(previous, out, 4, 2, 1), norm))
            previous = out
        self.up = nn.ModuleList()
        for level in reversed(range(depth)):
            skip = widths[level - 1] if level else 0
            out = widths[level - 1] if level else channels
            in_channels = previous if level == depth - 1 else previous * 2
            norm = nn.InstanceNorm2d(out, affine=True) if level else nn.Identity()
            self.up.append(nn.Sequential(nn.ConvTranspose2d(in_channels, out, 4, 2, 1), norm))
            previous = skip
        self.activation = nn.LeakyReLU(0.2)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Uniform ``±1/√fan_in`` weights and biases (PyTorch's default) from ``generator``."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                    fan_in = module.weight[0].numel() if isinstance(module, nn.Conv2d) else (
                        module.weight.shape[0] * module.weight[0, 0].numel())
                    bound = 1 / math.sqrt(fan_in)
                    for tensor in (module.weight, module.bias):
                        tensor.copy_(torch.rand(tensor.shape, generator=generator,
                                                device=tensor.device) * 2 * bound - bound)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        side = 2 ** self.depth
        if noise.shape[-1] % side or noise.shape[-2] % side:
            raise ValueError(f"generator input sides must be multiples of {side}, "
                             f"got {tuple(noise.shape[-2:])}")
        skips = []
        hidden = noise
        for index, block in enumerate(self.down):
            hidden = block(self.activation(hidden) if index else hidden)
            skips.append(hidden)
        skips.pop()
        for index, block in enumerate(self.up):
            if index:
                hidden = torch.cat([hidden, skips.pop()], dim=1)
            hidden = block(torch.relu(hidden))
        return torch.tanh(hidden)


# --------------------------------------------------------------------------- training


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


class _Trainer:
    """What every trainer shares: inputs, objective, batches, progress and the result."""

    def __init__(self, kind, metric, images, *, metric_range, jpeg_quality, size, eps, epochs,
                 batch_size, lr, seed, progress):
        from advqa import __version__
        from advqa.quality import get_metric

        if isinstance(metric, str):
            metric = get_metric(metric)
        check_images(images, where="training images")
        if isinstance(metric_range, tuple | list):
            low, high = metric_range
            metric_range = float(high) - float(low)
        self.kind = kind
        self.metric = metric
        self.size = _positive_int("size", size)
        self.eps = _positive_float("eps", eps)
        self.epochs = _positive_int("epochs", epochs)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.lr = _positive_float("lr", lr)
        self.seed = int(seed)
        self.progress = bool(progress)
        self.version = __version__
        self.fingerprint = fingerprint(images)
        self.full_reference = metric.info.full_reference
        references = None
        self.inputs = images.detach()
        if self.full_reference:
            references = self.inputs
            self.inputs = jpeg_copy(self.inputs, quality=jpeg_quality)
        self.jpeg_quality = int(jpeg_quality) if self.full_reference else None
        self.objective = MetricObjective(metric, metric_range=float(metric_range),
                                         references=references)
        self.device = images.device
        self.generator = torch.Generator(device="cpu").manual_seed(self.seed)
        self.height, self.width = images.shape[-2:]
        self.channels = images.shape[1]

    def batches(self):
        """``(inputs, objective)`` per batch; a fresh seeded shuffle each epoch; a progress bar."""
        count = len(self.inputs)
        per_epoch = math.ceil(count / self.batch_size)
        bar = tqdm(total=self.epochs * per_epoch, desc=f"{self.kind}-uap", unit="batch",
                   disable=not self.progress)
        try:
            for _ in range(self.epochs):
                order = torch.randperm(count, generator=self.generator).to(self.device)
                for start in range(0, count, self.batch_size):
                    index = order[start:start + self.batch_size]
                    yield self.inputs[index], self.objective.subset(index)
                    bar.update()
        finally:
            bar.close()

    def gain(self, inputs, objective, perturbation) -> torch.Tensor:
        """Per-sample objective of ``inputs`` plus the tiled ``perturbation`` (C,s,s or B,C,s,s)."""
        if perturbation.dim() == 3:
            tiled = tile_perturbation(perturbation, self.height, self.width)
        else:
            reps = (1, 1, math.ceil(self.height / self.size), math.ceil(self.width / self.size))
            tiled = perturbation.repeat(*reps)[..., :self.height, :self.width]
        return objective.evaluate(_add_clipped(inputs, tiled)).loss

    def result(self, perturbation, **extra) -> UAP:
        settings = {"size": self.size, "eps": self.eps, "epochs": self.epochs,
                    "batch_size": self.batch_size, "lr": self.lr,
                    "metric_range": self.objective.metric_range,
                    "jpeg_quality": self.jpeg_quality, "training_images": len(self.inputs),
                    **extra}
        return UAP(perturbation=perturbation.detach().float().contiguous(), kind=self.kind,
                   metric=self.metric.info.name, seed=self.seed, settings=settings,
                   training_fingerprint=self.fingerprint, version=self.version)


def train_cumulative_uap(metric, images: torch.Tensor, *, metric_range, jpeg_quality: int = 80,
                         size: int = 256, eps: float = 0.1, epochs: int = 5, batch_size: int = 8,
                         lr: float = 0.02, seed: int = 0, progress: bool = True) -> UAP:
    """Cumulative-UAP: ``δ ← clip(δ + lr · mean_i sign(∇_δ J(x_i + δ)), ±eps)`` per batch.

    Each image of a batch contributes its own one-step (FGSM-like) perturbation
    ``sign(∇)``, computed for the whole batch in one backward pass; their mean
    is accumulated into ``δ``. The benchmark's script accumulates the raw
    gradient of the batch-mean loss instead, whose scale depends on the metric;
    the sign makes the step (``lr``, default ``eps / 5``) metric-independent.
    ``δ`` starts at ``1e-4`` as in the benchmark.

    Parameters
    ----------
    metric : advqa.quality.Metric or str
    images : torch.Tensor
        Pristine NCHW training images in [0, 1].
    metric_range : float or (low, high)
        Spread of the metric (:func:`advqa.robustness.calibration.metric_range`).
    jpeg_quality : int
        Quality of the JPEG copies attacked for a full-reference metric.
    size : int
        Side of the square UAP; tiled to the image size.
    eps, epochs, batch_size, lr, seed, progress
        L∞ bound, passes over the images, batch size, step size, seed of the
        batch order, and whether to show a tqdm bar.
    """
    trainer = _Trainer("cumulative", metric, images, metric_range=metric_range,
                       jpeg_quality=jpeg_quality, size=size, eps=eps, epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    uap = torch.full((trainer.channels, trainer.size, trainer.size), 1e-4, device=trainer.device)
    with frozen(trainer.metric):
        for inputs, objective in trainer.batches():
            copies = uap.expand(len(inputs), *uap.shape).clone().requires_grad_(True)
            loss = trainer.gain(inputs, objective, copies)
            (gradient,) = torch.autograd.grad(loss.sum(), copies)
            uap = (uap + trainer.lr * gradient.sign().mean(0)).clamp(-trainer.eps, trainer.eps)
    return trainer.result(uap)


def train_optimized_uap(metric, images: torch.Tensor, *, metric_range, jpeg_quality: int = 80,
                        size: int = 256, eps: float = 0.1, epochs: int = 5, batch_size: int = 8,
                        lr: float = 1e-3, seed: int = 0, progress: bool = True) -> UAP:
    """Optimized-UAP: Adam on ``δ`` minimising ``−mean J(x + δ)``, clamped to ``±eps`` each step.

    The benchmark's defaults: ``δ`` starts at ``1e-4``, ``lr=1e-3``, 5 epochs,
    batches of 8. Its loss ``1 − metric/range`` has the same gradient as
    ``−J`` for metrics where higher is better; ``J`` also flips the sign for
    the others. Parameters as :func:`train_cumulative_uap`.
    """
    trainer = _Trainer("optimized", metric, images, metric_range=metric_range,
                       jpeg_quality=jpeg_quality, size=size, eps=eps, epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    uap = torch.full((trainer.channels, trainer.size, trainer.size), 1e-4, device=trainer.device,
                     requires_grad=True)
    optimizer = torch.optim.Adam([uap], lr=trainer.lr)
    with frozen(trainer.metric):
        for inputs, objective in trainer.batches():
            loss = -trainer.gain(inputs, objective, uap).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                uap.clamp_(-trainer.eps, trainer.eps)
    return trainer.result(uap)


def train_generative_uap(metric, images: torch.Tensor, *, metric_range, jpeg_quality: int = 80,
                         size: int = 256, eps: float = 0.1, epochs: int = 5, batch_size: int = 8,
                         lr: float = 1e-3, width: int = 16, depth: int = 3, seed: int = 0,
                         progress: bool = True) -> UAP:
    """Generative-UAP: train a :class:`UNetGenerator` so that ``eps · tanh(G(z))`` raises ``J``.

    ``z`` is one fixed uniform-noise image of the UAP's shape, drawn from the
    seed, as are the generator's initial weights. Adam minimises
    ``−mean J(x + eps · tanh(G(z)))``; the final UAP is ``G``'s output after
    training. The benchmark trains a 64-channel, eight-level U-Net for one
    epoch at ``lr=1e-3`` with ``eps = 10/255``; this generator is much smaller
    (``width`` channels at the top, ``depth`` levels) and trains for 5 epochs
    by default, at the same ``lr``; ``eps`` is the same 0.1 as for the other
    UAPs so that amplitudes compare across kinds.
    ``size`` must be a multiple of ``2 ** depth``. Other parameters as
    :func:`train_cumulative_uap`.
    """
    trainer = _Trainer("generative", metric, images, metric_range=metric_range,
                       jpeg_quality=jpeg_quality, size=size, eps=eps, epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    network = UNetGenerator(trainer.channels, width=width, depth=depth)
    if trainer.size % 2 ** network.depth:
        raise ValueError(f"size must be a multiple of {2 ** network.depth} for a depth-"
                         f"{network.depth} generator, got {trainer.size}")
    network.reset_parameters(trainer.generator)
    network.to(trainer.device).train()
    noise = torch.rand((1, trainer.channels, trainer.size, trainer.size),
                       generator=trainer.generator).to(trainer.device)
    optimizer = torch.optim.Adam(network.parameters(), lr=trainer.lr)
    with frozen(trainer.metric):
        for inputs, objective in trainer.batches():
            uap = trainer.eps * network(noise)[0]
            loss = -trainer.gain(inputs, objective, uap).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        uap = (trainer.eps * network.eval()(noise)[0]).clamp(-trainer.eps, trainer.eps)
    return trainer.result(uap, width=width, depth=depth)


TRAINERS = {"cumulative": train_cumulative_uap, "optimized": train_optimized_uap,
            "generative": train_generative_uap}


def train_uap(kind: str, metric, train_images: torch.Tensor, *, metric_range,
              jpeg_quality: int = 80, seed: int = 0, progress: bool = True, **settings) -> UAP:
    """Train a UAP of ``kind`` (:data:`UAP_KINDS`, or the benchmark's directory names).

    ``settings`` go to the trainer (``size``, ``eps``, ``epochs``,
    ``batch_size``, ``lr``; ``width`` and ``depth`` for the generative kind).

    Raises
    ------
    ValueError
        For an unknown kind (the message lists the valid ones) or setting.
    """
    name = KIND_ALIASES.get(kind, kind)
    if name not in TRAINERS:
        raise ValueError(f"unknown UAP kind {kind!r}; valid kinds: {', '.join(UAP_KINDS)} "
                         f"(aliases: {', '.join(KIND_ALIASES)})")
    trainer = TRAINERS[name]
    allowed = set(trainer.__kwdefaults__) - {"metric_range", "jpeg_quality", "seed", "progress"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for a {name} UAP; "
                         f"valid: {', '.join(sorted(allowed))}")
    return trainer(metric, train_images, metric_range=metric_range, jpeg_quality=jpeg_quality,
                   seed=seed, progress=progress, **settings)
