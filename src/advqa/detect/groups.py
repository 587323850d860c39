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
    of ``fooling_ev_population`` children, at ``fooling_ev_size``² pixels seen through
    the gate's resize/crop. Its images therefore reach far lower target confidence
    than the paper's. ``fooling_ev_count = 0`` leaves the group out.

Every generated image is rounded to the 8-bit grid, as files would be.

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

from advqa.detect.distortions import DISTORTIONS, distort
from advqa.detect.features import Features, QualityScale, extract
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


def universal_perturbation(model, images: torch.Tensor, *, radius: float = 10 / 255,
                           norm: str = "linf", epochs: int = 3, delta: float = 0.2,
                           seed: int = 0, deepfool: dict | None = None,
                           progress=None) -> tuple[torch.Tensor, dict]:
    """A universal perturbation ``v`` (shape ``(3, H, W)``) and a summary dict.

    ``deepfool`` holds keyword arguments of advqa's DeepFool (default: L2,
    overshoot 0.02, 10 steps, 5 candidate classes).
    """
    from advqa.attacks import get_attack

    settings = {"norm": "l2", "overshoot": 0.02, "steps": 10, "candidates": 5, **(deepfool or {})}
    attack = get_attack("deepfool", **settings)
    clean_predictions = predict(model, images)
    perturbation = torch.zeros_like(images[0])
    generator = torch.Generator().manual_seed(seed)
    fooling_rate, passes = 0.0, 0
    for _ in range(epochs):
        passes += 1
        for index in torch.randperm(images.shape[0], generator=generator).tolist():
            perturbed = (images[index:index + 1] + perturbation).clamp(0, 1)
            label = clean_predictions[index:index + 1]
            if predict(model, perturbed)[0] != label[0]:
                continue
            adversarial = attack(model, perturbed, label)
            if predict(model, adversarial)[0] == label[0]:
                continue  # DeepFool did not cross the boundary within its steps
            perturbation = project(perturbation + (adversarial - perturbed)[0], radius, norm)
        fooled = predict(model, (images + perturbation).clamp(0, 1)) != clean_predictions
        fooling_rate = fooled.float().mean().item()
        if progress:
            progress(f"UAP pass {passes}: fooling rate {fooling_rate:.2f}")
        if fooling_rate >= 1 - delta:
            break
    summary = {"norm": norm, "radius": radius, "epochs_run": passes, "delta": delta,
               "seed": seed, "fooling_rate_on_training_images": fooling_rate,
               "deepfool": settings}
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
    evolution exactly as the gate sees them (``view="model"``).
    """
    from advqa.detect.fooling_ev import evolve_fooling_images

    classes = num_classes or getattr(getattr(model, "info", None), "num_classes", 1000)
    targets = fooling_ev_targets(count, classes, seed)
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
    count 0: no Fool_EV group).

    :meth:`describe` leaves the ``fooling_ev_*`` fields out: they change only the
    Fool_EV unit, whose key adds :meth:`describe_ev`, so adding, removing or resizing
    the group reuses every other finished unit (and ledgers written before Fool_EV
    existed).
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
        described = {**asdict(self), "distortions": list(self.distortions), "device": None}
        return {key: value for key, value in described.items()
                if not key.startswith("fooling_ev_")}

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
                                                 **settings.uap)
        return [{"id": part, "perturbation": vector.tolist(), "summary": summary}]
    if part == "clean":
        return [features_row(part, features(clean))]
    if part == "adversarial":
        return [features_row(part, features(_grid(clean + torch.tensor(perturbation))))]
    if part == "fooling":
        fooled, targets = fooling_images(model, clean.mean(dim=0), settings.fooling_count,
                                         steps=settings.fooling_steps, seed=settings.seed)
        return [features_row(part, features(fooled), targets=targets.tolist())]
    if part == "fooling_ev":
        evolved, targets, history = evolved_fooling_images(
            model, settings.fooling_ev_count, generations=settings.fooling_ev_generations,
            population=settings.fooling_ev_population, image_size=settings.fooling_ev_size,
            seed=settings.seed)
        return [features_row(part, features(evolved), targets=targets.tolist(),
                             confidence=history[-1].tolist(),
                             history_mean=history.mean(axis=1).tolist())]
    _, kind, level = part.split("|")
    return [features_row(part, features(distort(clean, kind, int(level), seed=settings.seed)))]


def clean_images(model, samples) -> tuple[torch.Tensor, np.ndarray, list[str], list, dict]:
    """The clean group's images: the samples the victim classifies correctly, decoded
    one at a time; samples whose pixels fail to decode are skipped and listed."""
    from advqa.data import preprocess_batch

    info = getattr(model, "info", None)
    size = info.input_size if info is not None else samples[0].size[0]
    resize = info.resize_size if info is not None else size
    prepared = preprocess_batch(samples, size=size, resize=resize)
    images = _grid(prepared.images)
    labels = [sample.label for sample in prepared.samples]
    predictions = predict(model, images)
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
    clean, clean_labels, names, _, notes = clean_images(model, samples)
    if notes["unlabelled"]:
        say("source has no labels: the victim's predictions are used as labels")
    count = clean.shape[0]
    say(f"clean group: {count} of {len(samples)} images classified correctly")
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
    say(f"adversarial group: victim accuracy {adversarial_group.correct().mean():.2f}")
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
               "clean_images": count, "clean_names": names, "uap": uap["summary"],
               "uap_linf": perturbation.abs().max().item(),
               "uap_l2": perturbation.norm().item(), "fooling_target_hit_rate": hit,
               "fooling_steps": settings.fooling_steps, "seed": settings.seed,
               "quality": settings.quality}
    fooling_ev_group = _fooling_ev_group(rows, settings, features, summary, say)
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
            "initial_target_confidence_mean": row["history_mean"][0]}
        say(f"Fool_EV group: {count} images after {settings.fooling_ev_generations} "
            f"generation(s), target confidence mean {confidence.mean():.4f} (from "
            f"{row['history_mean'][0]:.4f}), {hit:.2f} reach their target class")
    return Group("fooling_ev", features, np.full(count, -1), np.full(count, -1),
                 [""] * count, np.zeros(count, dtype=int))
