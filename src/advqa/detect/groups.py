"""The four image groups of Feng & Cai (Sec. V-A), generated with advqa.

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

Every generated image is rounded to the 8-bit grid, as files would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from advqa.detect.distortions import DISTORTIONS, distort
from advqa.detect.features import Features, QualityScale, extract, prepare


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
    clean: Group
    adversarial: Group
    distorted: Group
    fooling: Group
    summary: dict


def build_groups(model, samples, scale: QualityScale, *, squeezer=None, ws=None,
                 uap: dict | None = None, fooling_count: int = 10, fooling_steps: int = 30,
                 distortions=DISTORTIONS, seed: int = 0, progress=None) -> Groups:
    """Generate the four groups from ``samples`` (a SampleSet) and extract their features."""
    say = progress or (lambda message: None)
    images = _grid(prepare([sample.image for sample in samples], model))
    labels = [sample.label for sample in samples]
    predictions = predict(model, images)
    if any(label is None for label in labels):
        say("source has no labels: the victim's predictions are used as labels")
        true = predictions.clone()
    else:
        true = torch.as_tensor(labels)
    keep = (predictions == true).nonzero().flatten()
    if keep.numel() < 2:
        raise ValueError(f"only {keep.numel()} image(s) are classified correctly; need >= 2")
    clean, clean_labels = images[keep], true[keep].numpy()
    names = [samples[i].name for i in keep.tolist()]
    count = clean.shape[0]
    say(f"clean group: {count} of {len(samples)} images classified correctly")

    def features(batch):
        return extract(model, batch, scale, squeezer=squeezer, ws=ws)

    clean_group = Group("clean", features(clean), clean_labels, np.arange(count),
                        [""] * count, np.zeros(count, dtype=int))

    perturbation, uap_summary = universal_perturbation(model, clean, seed=seed, progress=say,
                                                       **(uap or {}))
    adversarial = _grid(clean + perturbation)
    adversarial_group = Group("adversarial", features(adversarial), clean_labels,
                              np.arange(count), [""] * count, np.zeros(count, dtype=int))
    say(f"adversarial group: victim accuracy {adversarial_group.correct().mean():.2f}")

    parts, parents, kinds, levels = [], [], [], []
    for kind in distortions:
        for level in range(1, 6):
            parts.append(features(distort(clean, kind, level, seed=seed)))
            parents.append(np.arange(count))
            kinds += [kind] * count
            levels.append(np.full(count, level))
    if not parts:
        parts, parents, levels = [extract(model, clean[:0], scale, squeezer=squeezer,
                                          ws=ws)], [np.zeros(0, dtype=int)], [np.zeros(0)]
    distorted_group = Group("distorted", Features.concatenate(parts),
                            np.tile(clean_labels, len(kinds) // count), np.concatenate(parents),
                            kinds, np.concatenate(levels).astype(int))
    say(f"distorted group: {len(distorted_group)} images")

    fooled, targets = fooling_images(model, clean.mean(dim=0), fooling_count,
                                     steps=fooling_steps, seed=seed)
    fooling_features = features(fooled)
    fooling_group = Group("fooling", fooling_features, np.full(fooling_count, -1),
                          np.full(fooling_count, -1), [""] * fooling_count,
                          np.zeros(fooling_count, dtype=int))
    hit = float(np.mean(fooling_features.predictions == targets.numpy())) if fooling_count else 0
    say(f"fooling group: {fooling_count} images, {hit:.2f} reach their target class")
    summary = {"source_images": len(samples), "clean_images": count, "clean_names": names,
               "uap": uap_summary, "uap_linf": perturbation.abs().max().item(),
               "uap_l2": perturbation.norm().item(), "fooling_target_hit_rate": hit,
               "fooling_steps": fooling_steps, "seed": seed, "quality": scale.to_json()}
    return Groups(clean_group, adversarial_group, distorted_group, fooling_group, summary)
