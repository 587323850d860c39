"""Fool_EV: evolved fooling images (Nguyen, Yosinski & Clune, CVPR 2015), direct encoding.

Nguyen et al. evolve images that a classifier labels with high confidence but that no
person recognises. Their "direct encoding" is a genome of one number per pixel and
channel, initialised with uniform noise; the search is MAP-Elites with one cell per
class: the elite of a cell is the image with the highest confidence for that class
seen so far, each new image is a mutated copy of a randomly chosen elite, and it
replaces the elite of every cell whose confidence it beats.

What :func:`evolve_fooling_images` implements
--------------------------------------------
- **Cells** are the requested ``targets`` (unique class indices), not all classes.
- **Generation 0**: ``population`` images of uniform noise on the 8-bit grid; the elite
  of each cell is the best of them for its class.
- **Each generation** draws ``population`` parents uniformly (with replacement) from the
  elites as they stood at the start of the generation, mutates each, evaluates all
  children in batches of ``batch_size`` (forward passes only, under ``no_grad``) and
  replaces the elite of every cell whose target confidence a child beats strictly
  (cross-cell replacement, as in MAP-Elites). Elitism makes the per-cell best
  confidence non-decreasing.
- **Randomness**: one ``torch.Generator`` seeded with ``seed`` draws the initial noise,
  the parents and one seed per child, from which that child's mutation draws come; so
  the images do not depend on ``batch_size`` (as long as the forward pass gives each
  image the same logits in any batch, as it does on CPU here).
- **Genome shape** ``(C, image_size, image_size)``: ``C`` is the victim's channel count
  (:func:`advqa.detect.features.model_channels`: 3 for the RGB ImageNet models, 1 for
  the grey Fashion-MNIST CNNs) unless ``channels`` says otherwise.
- **Mutation** (the paper's): each of the ``C·H·W`` numbers is chosen with probability
  ``mutation_rate · 0.5 ** (g // halve_every)`` (paper: 0.1, halved every 1000
  generations) and moved by Deb's polynomial mutation with distribution index
  ``strength`` (paper: 15) on the ``[0, 1]`` scale,
  ``δ = (2u)^{1/(η+1)} − 1`` for ``u < ½``, else ``1 − (2(1−u))^{1/(η+1)}``,
  then clipped to ``[0, 1]``.
- **Fitness** is the softmax probability of the target class of the image *as the gate
  sees it*: with ``view="model"`` (default) the genome goes through
  :func:`advqa.detect.features.prepare` (resize to the model's ``resize_size``, centre
  crop ``input_size``), exactly as the gate's feature extraction does; with
  ``view="native"`` it is fed at ``image_size`` unchanged (fast on CPU for small images;
  EfficientNet-Lite0 accepts any size ≥ 32 thanks to global pooling).

Deviations from Nguyen et al.
-----------------------------
- RGB genome for colour victims, not the paper's H, S, V values per pixel for ImageNet
  (for grey victims one grey value per pixel, as the paper's MNIST direct encoding).
- The genome is stored and mutated on the 8-bit grid (uint8; each mutated value is
  rounded to ``k/255``, so moves smaller than half a grey level are lost); in exchange
  the returned images are exactly the evaluated ones and the recorded confidences are
  those of the returned images.
- Cells are only the requested targets, offspring are generated in synchronous batches
  of ``population`` (the paper's MAP-Elites is steady-state, one child at a time), and
  the run length is ``generations`` (the paper ran thousands of generations; its
  direct-encoding images reached high confidence on MNIST but mostly not on ImageNet).
- Only the direct encoding; the CPPN encoding is not implemented.

Many images of the same class: call again with another ``seed`` (the paper collected
its 5000 images from five runs over the 1000 classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

PAPER_MUTATION_RATE = 0.1
PAPER_HALVE_EVERY = 1000
PAPER_STRENGTH = 15.0
VIEWS = ("model", "native")


class EvolvedFooling(NamedTuple):
    """What :func:`evolve_fooling_images` returns (unpacks as ``images, history``).

    images : torch.Tensor
        ``(N, C, image_size, image_size)`` float32 in ``[0, 1]`` on the 8-bit grid, on
        the CPU; image ``i`` is the elite of ``targets[i]``.
    history : numpy.ndarray
        ``(generations + 1, N)`` float64: row ``g`` is each target's best confidence
        after generation ``g`` (row 0: the random initial population).
    """

    images: torch.Tensor
    history: np.ndarray


def polynomial_mutation(values: torch.Tensor, chosen: torch.Tensor, uniform: torch.Tensor,
                        strength: float) -> torch.Tensor:
    """Deb's polynomial mutation of ``values`` in ``[0, 1]`` where ``chosen`` is true.

    ``uniform`` holds one U(0, 1) draw per value; the result is clipped to ``[0, 1]``.
    """
    exponent = 1.0 / (strength + 1.0)
    delta = torch.where(uniform < 0.5, (2 * uniform) ** exponent - 1,
                        1 - (2 * (1 - uniform)) ** exponent)
    return torch.where(chosen, (values + delta).clamp(0, 1), values)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _targets(targets, classes: int | None) -> torch.Tensor:
    array = np.asarray(targets)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"targets must be a non-empty 1-D sequence of class indices, got "
                         f"{targets!r}")
    if array.min() < 0 or (classes is not None and array.max() >= classes):
        raise ValueError(f"targets must lie in [0, {classes}), got min {array.min()} and max "
                         f"{array.max()}")
    if np.unique(array).size != array.size:
        raise ValueError("targets must be unique (one MAP-Elites cell per class); for more "
                         "images of one class, run again with another seed")
    return torch.as_tensor(array, dtype=torch.long)


@torch.no_grad()
def _confidences(model, genomes: torch.Tensor, targets: torch.Tensor, view: str,
                 batch_size: int) -> torch.Tensor:
    """``(len(genomes), len(targets))`` float64 softmax probabilities of the targets."""
    from advqa.detect.features import prepare

    device = next(model.parameters()).device
    rows = []
    for start in range(0, genomes.shape[0], batch_size):
        images = genomes[start:start + batch_size].float() / 255
        if view == "model":
            images = prepare(images, model)
        probabilities = torch.softmax(model(images.to(device)).float(), dim=1)
        if int(targets.max()) >= probabilities.shape[1]:
            raise ValueError(f"targets must lie in [0, {probabilities.shape[1]}), got max "
                             f"{int(targets.max())}")
        rows.append(probabilities[:, targets.to(device)].double().cpu())
    return torch.cat(rows)


def _mutation_draws(seed: int, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """One child's U(0, 1) draws: which numbers mutate, and by how much."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


def _update(elites: torch.Tensor, best: torch.Tensor, children: torch.Tensor,
            scores: torch.Tensor) -> None:
    """Replace, in place, every elite some child beats strictly (first best child wins)."""
    value, index = scores.max(dim=0)
    better = value > best
    elites[better] = children[index[better]]
    best[better] = value[better]


def evolve_fooling_images(model, targets: Sequence[int], *, generations: int = 100,
                          population: int = 64, image_size: int = 64, seed: int = 0,
                          batch_size: int = 32, progress: Callable[[str], None] | None = None,
                          mutation_rate: float = PAPER_MUTATION_RATE,
                          halve_every: int = PAPER_HALVE_EVERY,
                          strength: float = PAPER_STRENGTH,
                          view: str = "model", channels: int | None = None) -> EvolvedFooling:
    """Evolve one fooling image per target class against ``model`` (see the module doc).

    Parameters
    ----------
    model : torch.nn.Module
        The victim: ``[0, 1]`` NCHW in (RGB, or grey for a one-channel model), logits out
        (:func:`advqa.models.load_classifier`). Only forward passes are made.
    targets : sequence of int
        Unique class indices, one MAP-Elites cell each.
    generations : int
        Generations after the initial population (>= 1).
    population : int
        Random images in generation 0 and children per generation (>= 1).
    image_size : int
        Side of the square genome images (>= 8).
    seed : int
        Seeds every random draw (CPU generator): same seed, same images.
    batch_size : int
        Images per forward pass.
    progress : callable, optional
        Called with a one-line message after each generation.
    mutation_rate, halve_every, strength : float, int, float
        Per-number mutation probability, its half-life in generations and the polynomial
        mutation's distribution index (defaults: the paper's 0.1, 1000 and 15).
    view : {"model", "native"}
        Evaluate through the gate's resize/crop to the model's input size, or as is.
    channels : int, optional
        Channels of the genome (1 or 3); default: the model's
        (:func:`advqa.detect.features.model_channels`).

    Returns
    -------
    EvolvedFooling
        ``(images, history)``.
    """
    generations = _check_int("generations", generations, 1)
    population = _check_int("population", population, 1)
    image_size = _check_int("image_size", image_size, 8)
    batch_size = _check_int("batch_size", batch_size, 1)
    halve_every = _check_int("halve_every", halve_every, 1)
    if not 0 < mutation_rate <= 1:
        raise ValueError(f"mutation_rate must be in (0, 1], got {mutation_rate!r}")
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength!r}")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    classes = getattr(getattr(model, "info", None), "num_classes", None)
    target_index = _targets(targets, classes)
    say = progress or (lambda message: None)
    generator = torch.Generator().manual_seed(int(seed))
    if channels is None:
        from advqa.detect.features import model_channels

        channels = model_channels(model)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    shape = (channels, image_size, image_size)

    initial = torch.randint(0, 256, (population, *shape), generator=generator,
                            dtype=torch.uint8)
    scores = _confidences(model, initial, target_index, view, batch_size)
    best, index = scores.max(dim=0)
    elites = initial[index].clone()
    history = [best.clone()]
    for generation in range(1, generations + 1):
        rate = mutation_rate * 0.5 ** ((generation - 1) // halve_every)
        parents = elites[torch.randint(0, len(target_index), (population,),
                                       generator=generator)]
        # one seed per child: the draws do not depend on batch_size
        seeds = torch.randint(0, 2 ** 62, (population,), generator=generator).tolist()
        for start in range(0, population, batch_size):
            chunk = parents[start:start + batch_size].float() / 255
            draws = [_mutation_draws(seed, shape) for seed in seeds[start:start + batch_size]]
            chosen = torch.stack([uniform for uniform, _ in draws]) < rate
            uniform = torch.stack([uniform for _, uniform in draws])
            children = (polynomial_mutation(chunk, chosen, uniform, strength) * 255).round() \
                .to(torch.uint8)
            _update(elites, best, children,
                    _confidences(model, children, target_index, view, batch_size))
        history.append(best.clone())
        say(f"Fool_EV generation {generation}/{generations}: target confidence mean "
            f"{best.mean().item():.4f}, max {best.max().item():.4f}")
    return EvolvedFooling(elites.float() / 255, torch.stack(history).numpy())
