"""The image groups of Feng & Cai (Sec. V-A), generated with advqa.

clean
    Images the victim classifies correctly (top-1). Sources without labels use the
    victim's own predictions as labels, so every image counts as "correct".
distorted
    Each clean image under Gaussian blur, white noise, JPEG and JPEG2000 at five
    levels (:mod:`advqa.detect.distortions`).
adversarial ("recognizable")
    Clean images plus one universal perturbation against the victim, computed by
    the DeepFool-based algorithm of Moosavi-Dezfooli et al., "Universal adversarial
    perturbations", CVPR 2017 (Algorithm 1): iterate over the images in a seeded
    random order; whenever ``x + v`` is still classified like ``x``, add DeepFool's
    minimal perturbation of ``x + v`` to ``v`` and project ``v`` onto the ξ-ball
    (L∞ or L2); stop after ``epochs`` passes or once the fooling rate reaches
    ``1 − δ``. Image ``i`` of this group is the pair of clean image ``i``.
fooling ("unrecognizable", Fool_GD)
    Gradient ascent from the mean image of the clean set toward seeded random
    target classes: signed-gradient descent on the targeted cross-entropy
    (Nguyen et al., CVPR 2015, without their regulariser).
fooling_ev ("unrecognizable", Fool_EV)
    Evolved fooling images (Nguyen, Yosinski & Clune, CVPR 2015): MAP-Elites with one
    cell per target class, ``fooling_ev_count`` distinct target classes drawn at random
    (seeded), one image per target (:mod:`advqa.detect.fooling_ev`). The paper took
    5000 images from Nguyen et al.'s runs, which used the CPPN encoding and thousands
    of generations on ImageNet; here the *direct* encoding (one gene per pixel and
    channel, on the 8-bit grid) is evolved against the victim itself for
    ``fooling_ev_generations`` generations (default 20: seconds on a CPU, not days)
    of ``fooling_ev_population`` children, at ``fooling_ev_size``² pixels (or the
    victim's input size when smaller: 28² for Fashion-MNIST, Nguyen et al.'s MNIST
    genome size, one gene per pixel) seen through the gate's resize/crop. Its images
    therefore reach far lower target confidence than the paper's.
    ``fooling_ev_count = 0`` leaves the group out.

Every generated image is rounded to the 8-bit grid, as files would be.

Victims and image shapes
------------------------
Every group is built at the victim's input: its ``input_size`` and its channel count
(:func:`advqa.detect.features.model_channels`), so a grey victim such as
``fashion-mnist-cnn`` (1×28×28) gets grey clean, UAP (a ``(1, 28, 28)`` perturbation),
distorted, Fool_GD (ascent from the grey mean image) and Fool_EV (one-channel genomes)
images; colour sources are turned grey for it by MATLAB's ``rgb2gray`` weights, grey
sources are repeated to RGB for colour victims. The distortion list and the quality
metric are checked against that shape before any unit runs
(:func:`advqa.detect.distortions.check_distortions`: JPEG2000 refuses 28×28 images;
:func:`advqa.detect.features.check_quality_input`: NIQE refuses them).

Deviations from the paper at this scale
---------------------------------------
- The paper applied the published UAP of [21] (fitted by Moosavi-Dezfooli et al. on
  10,000 ImageNet *training* images) to its validation images; here the UAP is fitted
  against the victim on the clean images themselves, all of them by default or a seeded
  random subset of ``uap["subset"]`` of them (``--uap-images``); the adversarial group
  always perturbs every clean image. The summary reports the fooling rate on the images
  it was fitted on, and the adversarial group's accuracy gives it on all of them.
- Fool_EV genomes are at most the victim's input size (see ``fooling_ev_size``).

Generation runs on the job engine (:mod:`advqa.jobs`): the UAP, the clean features,
each (distortion, level), the Fool_GD and the Fool_EV images are units, then the
adversarial features (which need the UAP); each finished unit's features are committed to a
ledger, so a killed ``fit-gate``/``gate-eval`` resumes, and units may run in local
processes or on a Dask cluster. Features travel as JSON numbers, which round-trip
float64 exactly, so the groups do not depend on where their units ran.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from advqa.detect.distortions import DISTORTIONS, check_distortions, distort
from advqa.detect.features import (
    Features,
    QualityScale,
    check_quality_input,
    count_unscored,
    extract,
)
from advqa.jobs import Ledger, LocalExecutor, Unit, run_units, unit_key, worker_cache


def _grid(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round() / 255


@torch.no_grad()
def predict(model, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.cat([model(images[i:i + batch_size].to(device)).argmax(1).cpu()
                      for i in range(0, images.shape[0], batch_size)])


def project(perturbation: torch.Tensor, radius: float, norm: str) -> torch.Tensor:
    """Project onto the ``norm`` ball of ``radius`` (L∞: clip; L2: rescale)."""
    if norm == "linf":
        return perturbation.clamp(-radius, radius)
    if norm == "l2":
        length = perturbation.norm().item()
        return perturbation * min(1.0, radius / length) if length > 0 else perturbation
    raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")


def uap_subset(count: int, subset: int | None, seed: int) -> torch.Tensor:
    """Indices of the images a UAP is fitted on: all ``count`` (``subset`` None or
    >= count) or ``subset`` of them drawn with ``seed``, in increasing order."""
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int)
                               or subset < 1):
        raise ValueError(f"the UAP subset must be an integer >= 1, got {subset!r}")
    if subset is None or subset >= count:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(int(seed) + 7919)
    return torch.randperm(count, generator=generator)[:subset].sort().values


def universal_perturbation(model, images: torch.Tensor, *, radius: float = 10 / 255,
                           norm: str = "linf", epochs: int = 3, delta: float = 0.2,
                           seed: int = 0, deepfool: dict | None = None,
                           subset: int | None = None, progress=None,
                           bar: bool = False) -> tuple[torch.Tensor, dict]:
    """A universal perturbation ``v`` (shape ``(C, H, W)``, that of the images) and a
    summary dict.

    ``deepfool`` holds keyword arguments of advqa's DeepFool (default: L2,
    overshoot 0.02, 10 steps, 5 candidate classes). ``subset`` fits it on that many
    of the images (:func:`uap_subset`; None: all). ``progress`` gets one message per
    pass; ``bar`` shows a progress bar over each pass's images (stderr).
    """
    from tqdm.auto import tqdm

    from advqa.attacks import get_attack

    settings = {"norm": "l2", "overshoot": 0.02, "steps": 10, "candidates": 5, **(deepfool or {})}
    attack = get_attack("deepfool", **settings)
    images = images[uap_subset(images.shape[0], subset, seed)]
    clean_predictions = predict(model, images, batch_size=256)
    perturbation = torch.zeros_like(images[0])
    generator = torch.Generator().manual_seed(seed)
    fooling_rate, passes = 0.0, 0
    for _ in range(epochs):
        passes += 1
        order = torch.randperm(images.shape[0], generator=generator).tolist()
        for index in tqdm(order, desc=f"UAP pass {passes}/{epochs}", unit="image",
                          disable=not bar, leave=False, mininterval=5):
            perturbed = (images[index:index + 1] + perturbation).clamp(0, 1)
            label = clean_predictions[index:index + 1]
            if predict(model, perturbed)[0] != label[0]:
                continue
            adversarial = attack(model, perturbed, label)
            if predict(model, adversarial)[0] == label[0]:
                continue  # DeepFool did not cross the boundary within its steps
            perturbation = project(perturbation + (adversarial - perturbed)[0], radius, norm)
        fooled = predict(model, (images + perturbation).clamp(0, 1),
                         batch_size=256) != clean_predictions
        fooling_rate = fooled.float().mean().item()
        if progress:
            progress(f"UAP pass {passes}: fooling rate {fooling_rate:.2f}")
        if fooling_rate >= 1 - delta:
            break
    summary = {"norm": norm, "radius": radius, "epochs_run": passes, "delta": delta,
               "seed": seed, "fooling_rate_on_training_images": fooling_rate,
               "training_images": int(images.shape[0]), "deepfool": settings}
    if subset is not None:
        summary["subset"] = subset
    return perturbation, summary


def fooling_images(model, mean_image: torch.Tensor, count: int, *, steps: int = 30,
                   step_size: float = 2 / 255, seed: int = 0, num_classes: int | None = None,
                   batch_size: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient ascent from ``mean_image`` toward random targets: (images, targets)."""
    device = next(model.parameters()).device
    classes = num_classes or getattr(getattr(model, "info", None), "num_classes", 1000)
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, classes, (count,), generator=generator)
    outputs = []
    for start in range(0, count, batch_size):
        target = targets[start:start + batch_size].to(device)
        images = mean_image.to(device).expand(target.shape[0], -1, -1, -1).clone()
        for _ in range(steps):
            images.requires_grad_(True)
            loss = F.cross_entropy(model(images), target)
            (gradient,) = torch.autograd.grad(loss, images)
            images = (images.detach() - step_size * gradient.sign()).clamp(0, 1)
        outputs.append(_grid(images.detach()).cpu())
    return torch.cat(outputs) if outputs else mean_image[None][:0], targets


def fooling_ev_targets(count: int, classes: int, seed: int) -> torch.Tensor:
    """``count`` distinct target classes out of ``classes``, drawn with ``seed``."""
    if not 0 <= count <= classes:
        raise ValueError(f"Fool_EV needs 0 <= count <= {classes} distinct target classes "
                         f"(one MAP-Elites cell each), got {count}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(classes, generator=generator)[:count]


def evolved_fooling_images(model, count: int, *, generations: int = 20, population: int = 32,
                           image_size: int = 64, seed: int = 0,
                           num_classes: int | None = None):
    """Fool_EV: one evolved image for each of ``count`` seeded random distinct targets.

    Returns ``(images, targets, history)``; ``history`` is
    :func:`~advqa.detect.fooling_ev.evolve_fooling_images`' per-generation best target
    confidence (``(generations + 1, count)``). The images are evaluated during the
    evolution exactly as the gate sees them (``view="model"``); they have the victim's
    channel count, and their side is ``image_size`` or the victim's ``input_size`` when
    that is smaller (a 64² genome seen by a 28² victim would be averaged 2.3× down by
    the resize, so most mutations would be blurred away; 28² is also the genome size of
    Nguyen et al.'s MNIST direct encoding).
    """
    from advqa.detect.fooling_ev import evolve_fooling_images

    info = getattr(model, "info", None)
    classes = num_classes or getattr(info, "num_classes", 1000)
    targets = fooling_ev_targets(count, classes, seed)
    if info is not None:
        image_size = min(image_size, int(info.input_size))
    images, history = evolve_fooling_images(
        model, targets.tolist(), generations=generations, population=population,
        image_size=image_size, seed=seed, view="model")
    return images, targets, history


@dataclass
class Group:
    """Features of one image group plus what is known about each image."""

    name: str
    features: Features
    labels: np.ndarray                # true class (-1 for fooling images)
    parents: np.ndarray               # index of the clean image it derives from (-1: none)
    kinds: list[str] = field(default_factory=list)   # distortion type, "" otherwise
    levels: np.ndarray | None = None  # distortion level 1..5, 0 otherwise

    def __len__(self) -> int:
        return len(self.labels)

    def correct(self) -> np.ndarray:
        return self.features.predictions == self.labels


@dataclass
class Groups:
    """The generated groups; ``fooling`` is Fool_GD, ``fooling_ev`` Fool_EV (``None``
    for groups built before it existed, empty when disabled)."""

    clean: Group
    adversarial: Group
    distorted: Group
    fooling: Group
    summary: dict
    fooling_ev: Group | None = None

    def fooling_groups(self) -> list[Group]:
        """The non-empty unrecognizable groups, paper order: Fool_EV, Fool_GD."""
        return [group for group in (self.fooling_ev, self.fooling)
                if group is not None and len(group)]


@dataclass(frozen=True)
class GroupSettings:
    """Everything that changes the generated groups (part of every unit's key).

    ``model``/``weights``/``device`` name the victim (:func:`advqa.models.load_classifier`;
    ``weights`` None = random), ``quality`` is the :class:`QualityScale` as JSON,
    ``squeeze``/``ws`` whether those detectors' scores are extracted, ``uap`` the
    options of :func:`universal_perturbation`; ``fooling_count``/``fooling_steps`` the
    Fool_GD images and ``fooling_ev_*`` the Fool_EV ones (:func:`evolved_fooling_images`;
    count 0: no Fool_EV group); ``distortions`` the distortion types of the distorted
    group (empty: no distorted group).

    :meth:`describe` leaves the ``fooling_ev_*`` fields out: they change only the
    Fool_EV unit, whose key adds :meth:`describe_ev`, so adding, removing or resizing
    the group reuses every other finished unit (and ledgers written before Fool_EV
    existed). It leaves ``distortions`` out too: a distorted unit's key names its
    distortion and level, so adding or removing a distortion type reuses the UAP and
    every other unit (ledgers written while ``distortions`` was part of every key are
    recomputed once).
    """

    model: str
    weights: str | None
    quality: dict
    squeeze: bool = True
    ws: bool = False
    uap: dict = field(default_factory=dict)
    fooling_count: int = 10
    fooling_steps: int = 30
    distortions: tuple[str, ...] = DISTORTIONS
    seed: int = 0
    device: str | None = None
    fooling_ev_count: int = 0
    fooling_ev_generations: int = 20
    fooling_ev_population: int = 32
    fooling_ev_size: int = 64

    def describe(self) -> dict:
        described = {**asdict(self), "device": None}
        return {key: value for key, value in described.items()
                if not key.startswith("fooling_ev_") and key != "distortions"}

    def describe_ev(self) -> dict:
        """The Fool_EV settings (part of that unit's key only)."""
        return {key: value for key, value in asdict(self).items()
                if key.startswith("fooling_ev_")}


def _tools(settings: GroupSettings):
    """The victim, quality scale and detectors a worker needs, built once per process."""
    from advqa.detect.squeeze import FeatureSqueezing
    from advqa.models import load_classifier

    model = worker_cache(load_classifier, settings.model, weights=settings.weights,
                         device=settings.device)
    squeezer = FeatureSqueezing() if settings.squeeze else None
    ws = None
    if settings.ws:
        from advqa.detect.gate import _ws_detector

        ws = worker_cache(_ws_detector)
    return model, QualityScale.from_json(settings.quality), squeezer, ws


def features_row(part: str, features: Features, **extra) -> dict:
    """A part's features as a ledger row (JSON numbers: float64 round-trips exactly)."""
    def listed(array):
        return None if array is None else array.tolist()

    return {"id": part, "features": features.features.tolist(),
            "predictions": features.predictions.tolist(), "quality_raw": listed(
                features.quality_raw), "squeeze": listed(features.squeeze),
            "ws": listed(features.ws), **extra}


def row_features(row: dict) -> Features:
    def array(name, dtype=np.float64):
        return None if row[name] is None else np.asarray(row[name], dtype=dtype)

    return Features(np.asarray(row["features"], dtype=np.float64).reshape(-1, 6),
                    array("predictions", np.int64), array("quality_raw"), array("squeeze"),
                    array("ws"))


def group_part(part: str, perturbation: list | None, *, clean: torch.Tensor,
               settings: GroupSettings) -> list[dict]:
    """One unit: the UAP, or the features of one part of a group."""
    model, scale, squeezer, ws = _tools(settings)

    def features(images):
        return extract(model, images, scale, squeezer=squeezer, ws=ws)

    if part == "uap":
        vector, summary = universal_perturbation(model, clean, seed=settings.seed,
                                                 progress=_stderr, bar=True, **settings.uap)
        return [{"id": part, "perturbation": vector.tolist(), "summary": summary}]
    if part == "clean":
        return [features_row(part, features(clean))]
    if part == "adversarial":
        return [features_row(part, features(_grid(clean + torch.tensor(perturbation))))]
    if part == "fooling":
        fooled, targets = fooling_images(model, clean.mean(dim=0), settings.fooling_count,
                                         steps=settings.fooling_steps, seed=settings.seed)
        return [features_row(part, features(fooled), targets=targets.tolist(),
                             shape=list(fooled.shape[1:]))]
    if part == "fooling_ev":
        evolved, targets, history = evolved_fooling_images(
            model, settings.fooling_ev_count, generations=settings.fooling_ev_generations,
            population=settings.fooling_ev_population, image_size=settings.fooling_ev_size,
            seed=settings.seed)
        return [features_row(part, features(evolved), targets=targets.tolist(),
                             confidence=history[-1].tolist(),
                             history_mean=history.mean(axis=1).tolist(),
                             shape=list(evolved.shape[1:]))]
    _, kind, level = part.split("|")
    return [features_row(part, features(distort(clean, kind, int(level), seed=settings.seed)))]


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def clean_images(model, samples) -> tuple[torch.Tensor, np.ndarray, list[str], list, dict]:
    """The clean group's images: the samples the victim classifies correctly, decoded
    one at a time; samples whose pixels fail to decode are skipped and listed.

    The images have the victim's input size and channel count
    (:func:`advqa.detect.features.match_channels`)."""
    from advqa.data import preprocess_batch
    from advqa.detect.features import match_channels, model_channels

    info = getattr(model, "info", None)
    size = info.input_size if info is not None else samples[0].size[0]
    resize = info.resize_size if info is not None else size
    channels = model_channels(model)
    grey = channels == 1 and all(sample.channels == 1 for sample in samples)
    prepared = preprocess_batch(samples, size=size, resize=resize, rgb=not grey)
    images = _grid(match_channels(prepared.images, channels))
    labels = [sample.label for sample in prepared.samples]
    predictions = predict(model, images, batch_size=256)
    notes = {"source_images": len(samples), "unreadable": [f.path for f in prepared.failures]}
    true = predictions.clone() if any(label is None for label in labels) \
        else torch.as_tensor(labels)
    notes["unlabelled"] = any(label is None for label in labels)
    keep = (predictions == true).nonzero().flatten()
    if keep.numel() < 2:
        raise ValueError(f"only {keep.numel()} image(s) are classified correctly; need >= 2")
    names = [prepared.samples[i].name for i in keep.tolist()]
    return images[keep], true[keep].numpy(), names, prepared.failures, notes


def build_groups(model, samples, settings: GroupSettings, ledger_path: str | Path, *,
                 executor=None, progress=None) -> Groups:
    """Generate the groups from ``samples`` (a SampleSet) and extract their features.

    ``model`` is the victim ``settings`` names (used here for the clean predictions);
    units run on ``executor`` (here by default) and are committed to the ledger at
    ``ledger_path``, so a re-run resumes.
    """
    say = progress or (lambda message: None)
    if settings.fooling_ev_count:
        fooling_ev_targets(settings.fooling_ev_count, getattr(
            getattr(model, "info", None), "num_classes", 1000), settings.seed)  # fail fast
    check_distortions(settings.distortions, None)  # names, before decoding anything
    clean, clean_labels, names, _, notes = clean_images(model, samples)
    if notes["unlabelled"]:
        say("source has no labels: the victim's predictions are used as labels")
    count = clean.shape[0]
    say(f"clean group: {count} of {len(samples)} images classified correctly "
        f"({'×'.join(map(str, clean.shape[1:]))})")
    # fail fast: a distortion or metric these images cannot take, before any unit
    try:
        check_distortions(settings.distortions, clean.shape[1:])
    except ValueError as error:
        others = ",".join(kind for kind in settings.distortions if kind != "jpeg2000")
        raise ValueError(f"{error}: e.g. gate-eval --distortions "
                         f"{others or 'blur,noise,jpeg'}") from error
    check_quality_input(QualityScale.from_json(settings.quality), clean)
    identity = (settings.describe(), hashlib.sha256(clean.numpy().tobytes()).hexdigest())
    parts = ["uap", "clean", *[f"distorted|{kind}|{level}" for kind in settings.distortions
                               for level in range(1, 6)]]
    if settings.fooling_count:
        parts.append("fooling")
    executor = executor or LocalExecutor()
    shared = {"clean": clean, "settings": settings}
    with Ledger(ledger_path, "gate-groups") as ledger:
        units = [Unit(unit_key("gate-part", part, *identity), {"part": part}, (part, None))
                 for part in parts]
        if settings.fooling_ev_count:
            units.append(Unit(unit_key("gate-part", "fooling_ev", settings.describe_ev(),
                                       *identity), {"part": "fooling_ev"},
                              ("fooling_ev", None)))
        _finish(run_units(ledger, units, group_part, executor=executor, shared=shared,
                          description="groups"))
        rows = {row["id"]: row for row in ledger.rows()}
        uap = rows["uap"]
        adversarial = Unit(unit_key("gate-part", "adversarial", *identity),
                           {"part": "adversarial"}, ("adversarial", uap["perturbation"]))
        _finish(run_units(ledger, [adversarial], group_part, executor=executor,
                          shared=shared, description="adversarial group"))
        rows = {row["id"]: row for row in ledger.rows()}
    return assemble(rows, settings, clean_labels, names, notes, say)


def _finish(report) -> None:
    if report.failures:
        raise RuntimeError(f"{len(report.failures)} unit(s) failed (e.g. "
                           f"{report.failures[0].spec}: {report.failures[0].error}); the "
                           "finished ones are saved: re-run to retry")


def assemble(rows: dict, settings: GroupSettings, clean_labels, names, notes, say) -> Groups:
    """The groups from the committed rows."""
    count = len(clean_labels)
    uap = rows["uap"]
    perturbation = torch.tensor(uap["perturbation"])
    say(f"UAP: fooling rate {uap['summary']['fooling_rate_on_training_images']:.2f} on the "
        f"clean images after {uap['summary']['epochs_run']} pass(es)")
    zeros = np.zeros(count, dtype=int)
    clean_group = Group("clean", row_features(rows["clean"]), clean_labels, np.arange(count),
                        [""] * count, zeros)
    adversarial_group = Group("adversarial", row_features(rows["adversarial"]), clean_labels,
                              np.arange(count), [""] * count, zeros)
    uap_fooling = float(1 - adversarial_group.correct().mean())
    say(f"adversarial group: victim accuracy {1 - uap_fooling:.2f} (UAP fooling rate "
        f"{uap_fooling:.2f} on all {count} clean images)")
    distorted = [(kind, level) for kind in settings.distortions for level in range(1, 6)]
    if distorted:
        parts = [row_features(rows[f"distorted|{kind}|{level}"]) for kind, level in distorted]
        features = Features.concatenate(parts)
    else:
        empty = np.zeros(0)
        features = Features(np.zeros((0, 6)), empty.astype(np.int64), empty,
                            empty if settings.squeeze else None, empty if settings.ws else None)
    distorted_group = Group(
        "distorted", features, np.tile(clean_labels, len(distorted)),
        np.tile(np.arange(count), len(distorted)),
        [kind for kind, _ in distorted for _ in range(count)],
        np.repeat([level for _, level in distorted], count).astype(int))
    say(f"distorted group: {len(distorted_group)} images")
    fooling_count = settings.fooling_count
    if fooling_count:
        fooling_features = row_features(rows["fooling"])
        hit = float(np.mean(fooling_features.predictions == np.asarray(rows["fooling"][
            "targets"])))
    else:
        fooling_features, hit = features.subset(slice(0, 0)), 0.0
    fooling_group = Group("fooling", fooling_features, np.full(fooling_count, -1),
                          np.full(fooling_count, -1), [""] * fooling_count,
                          np.zeros(fooling_count, dtype=int))
    say(f"fooling group: {fooling_count} images, {hit:.2f} reach their target class")
    summary = {"source_images": notes["source_images"], "unreadable": notes["unreadable"],
               "clean_images": count, "clean_names": names,
               "image_shape": list(perturbation.shape), "uap": uap["summary"],
               "uap_linf": perturbation.abs().max().item(),
               "uap_l2": perturbation.norm().item(), "uap_fooling_rate": uap_fooling,
               "distortions": list(settings.distortions), "fooling_target_hit_rate": hit,
               "fooling_shape": rows["fooling"].get("shape") if fooling_count else None,
               "fooling_steps": settings.fooling_steps, "seed": settings.seed,
               "quality": settings.quality}
    fooling_ev_group = _fooling_ev_group(rows, settings, features, summary, say)
    unscored = {group.name: count_unscored(group.features) for group in (
        clean_group, adversarial_group, distorted_group, fooling_group, fooling_ev_group)}
    summary["quality_unscored"] = unscored
    if any(unscored.values()):
        say(f"{sum(unscored.values())} image(s) the quality metric could not score (worst "
            "quality 0 given): " + ", ".join(f"{name} {n}" for name, n in unscored.items()
                                              if n))
    return Groups(clean_group, adversarial_group, distorted_group, fooling_group, summary,
                  fooling_ev_group)


def _fooling_ev_group(rows: dict, settings: GroupSettings, empty_from: Features,
                      summary: dict, say) -> Group:
    """The Fool_EV group (empty when disabled); adds its facts to ``summary``."""
    count = settings.fooling_ev_count
    if not count:
        features = empty_from.subset(slice(0, 0))
    else:
        row = rows["fooling_ev"]
        features = row_features(row)
        hit = float(np.mean(features.predictions == np.asarray(row["targets"])))
        confidence = np.asarray(row["confidence"])
        summary["fooling_ev"] = {
            **settings.describe_ev(), "targets": row["targets"], "target_hit_rate": hit,
            "target_confidence_mean": float(confidence.mean()),
            "target_confidence_max": float(confidence.max()),
            "initial_target_confidence_mean": row["history_mean"][0],
            "image_shape": row.get("shape")}
        say(f"Fool_EV group: {count} images after {settings.fooling_ev_generations} "
            f"generation(s), target confidence mean {confidence.mean():.4f} (from "
            f"{row['history_mean'][0]:.4f}), {hit:.2f} reach their target class")
    return Group("fooling_ev", features, np.full(count, -1), np.full(count, -1),
                 [""] * count, np.zeros(count, dtype=int))
