"""The attack engine: budgets, determinism, parity with torchattacks, real attacks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torchattacks
from hypothesis import given, settings
from hypothesis import strategies as st

from advqa.attacks import (
    ClassifierObjective,
    Evaluation,
    Objective,
    UnknownAttackError,
    distances,
    get_attack,
    make_budget,
)
from advqa.attacks.budgets import L0, project_l1_ball

GRADIENT_ATTACKS = ["fgsm", "bim", "pgd", "mim"]
NORMS = ["linf", "l2", "l1", "l0"]
EPS_RANGE = {"linf": (1e-3, 0.5), "l2": (1e-2, 5.0), "l1": (0.1, 50.0), "l0": (1e-3, 0.6)}


def within_budget(norm, eps, images, adversarial):
    measured = distances(images, adversarial)
    if norm == "l0":
        pixels = images.shape[-1] * images.shape[-2]
        return bool((measured["l0"] <= min(pixels, math.ceil(eps * pixels))).all())
    return bool((measured[norm] <= eps * (1 + 1e-5) + 1e-6).all())


@pytest.mark.parametrize(("name", "norm"), list(itertools.product(GRADIENT_ATTACKS, NORMS)))
@settings(max_examples=8, deadline=None)
@given(fraction=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_every_attack_stays_in_box_and_budget(tiny_model, tiny_batch, name, norm, fraction, seed):
    low, high = EPS_RANGE[norm]
    eps = low * (high / low) ** fraction
    images, labels = tiny_batch
    options = {"random_start": True} if name == "pgd" else {}
    attack = get_attack(name, norm=norm, eps=eps, seed=seed, **options)
    adversarial = attack(tiny_model, images, labels)
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert within_budget(norm, eps, images, adversarial)


@pytest.mark.parametrize("name", ["deepfool", "cw"])
def test_minimal_attacks_stay_in_box(tiny_model, tiny_batch, name):
    images, labels = tiny_batch
    options = {"steps": 20, "binary_search_steps": 2} if name == "cw" else {}
    result = get_attack(name, **options).run(tiny_model, images, labels)
    assert result.images.min() >= 0 and result.images.max() <= 1
    # A sample counted as fooled really is misclassified, and an unfooled C&W sample is unchanged.
    assert torch.equal(result.success, result.adversarial_prediction != labels)
    if name == "cw":
        assert torch.equal(result.images[~result.success], images[~result.success])


def test_pgd_is_seeded_and_deterministic(tiny_model, tiny_batch):
    images, labels = tiny_batch
    make = lambda seed: get_attack("pgd", eps=0.05, random_start=True, seed=seed)  # noqa: E731
    first = make(3)(tiny_model, images, labels)
    assert torch.equal(first, make(3)(tiny_model, images, labels))
    assert not torch.equal(first, make(4)(tiny_model, images, labels))


def test_model_parameters_get_no_gradients(tiny_batch):
    from tests.conftest import TinyNet

    model = TinyNet().eval()  # parameters require grad, as a user's model would
    images, labels = tiny_batch
    for name in ["pgd", "mim", "deepfool", "cw"]:
        options = {"steps": 2, "binary_search_steps": 1} if name == "cw" else {}
        get_attack(name, **options)(model, images, labels)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


TORCHATTACKS_PAIRS = [
    ("fgsm", {"eps": 4 / 255}, lambda m: torchattacks.FGSM(m, eps=4 / 255)),
    ("bim", {"eps": 4 / 255, "steps": 5, "step_size": 1 / 255},
     lambda m: torchattacks.BIM(m, eps=4 / 255, alpha=1 / 255, steps=5)),
    ("pgd", {"eps": 4 / 255, "steps": 5, "step_size": 1 / 255, "random_start": False},
     lambda m: torchattacks.PGD(m, eps=4 / 255, alpha=1 / 255, steps=5, random_start=False)),
    ("mim", {"eps": 4 / 255, "steps": 5, "step_size": 1 / 255},
     lambda m: torchattacks.MIFGSM(m, eps=4 / 255, alpha=1 / 255, steps=5, decay=1.0)),
    ("pgd", {"norm": "l2", "eps": 0.5, "steps": 5, "step_size": 0.1, "random_start": False},
     lambda m: torchattacks.PGDL2(m, eps=0.5, alpha=0.1, steps=5, random_start=False)),
]


@pytest.mark.parametrize(("name", "options", "reference"), TORCHATTACKS_PAIRS,
                         ids=[f"{p[0]}-{p[1].get('norm', 'linf')}" for p in TORCHATTACKS_PAIRS])
def test_matches_torchattacks_on_tiny_model(tiny_model, tiny_batch, name, options, reference):
    images, labels = tiny_batch
    ours = get_attack(name, **options)(tiny_model, images, labels)
    theirs = reference(tiny_model)(images, labels)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "options", "reference"), TORCHATTACKS_PAIRS[:4],
                         ids=[p[0] for p in TORCHATTACKS_PAIRS[:4]])
def test_matches_torchattacks_on_default_model(default_model, imagenet_batch, name, options,
                                               reference):
    images, labels = imagenet_batch[0][:4], imagenet_batch[1][:4]
    ours = get_attack(name, **options)(default_model, images, labels)
    theirs = reference(default_model)(images, labels)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def fooled(model, adversarial, labels):
    with torch.no_grad():
        return model(adversarial).argmax(1) != labels


def compare_minimal_attacks(model, images, labels, ours, theirs):
    """Success rates, and the median L2 ratio on the samples both attacks fooled."""
    our_fooled, their_fooled = fooled(model, ours, labels), fooled(model, theirs, labels)
    both = our_fooled & their_fooled
    assert both.sum() >= len(labels) // 2
    our_l2, their_l2 = distances(images, ours)["l2"][both], distances(images, theirs)["l2"][both]
    ratio = our_l2.median() / their_l2.median()
    return our_fooled.float().mean().item(), their_fooled.float().mean().item(), ratio.item()


@pytest.fixture(scope="module")
def comparison_batch(tiny_model):
    generator = torch.Generator().manual_seed(7)
    images = torch.rand(24, 3, 16, 16, generator=generator)
    with torch.no_grad():
        return images, tiny_model(images).argmax(1)


def test_deepfool_agrees_with_torchattacks(tiny_model, comparison_batch):
    images, labels = comparison_batch
    ours = get_attack("deepfool", overshoot=0.02, steps=50, candidates=10)(
        tiny_model, images, labels)
    theirs = torchattacks.DeepFool(tiny_model, steps=50, overshoot=0.02)(images, labels)
    our_rate, their_rate, ratio = compare_minimal_attacks(tiny_model, images, labels, ours, theirs)
    assert our_rate >= their_rate
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_cw_agrees_with_torchattacks(tiny_model, comparison_batch):
    images, labels = comparison_batch
    ours = get_attack("cw", c=1.0, steps=100, binary_search_steps=4, learning_rate=0.01)(
        tiny_model, images, labels)
    # torchattacks has no search over c; at c = 100 it fools every sample of this batch.
    theirs = torchattacks.CW(tiny_model, c=100.0, kappa=0, steps=100, lr=0.01)(images, labels)
    our_rate, their_rate, ratio = compare_minimal_attacks(tiny_model, images, labels, ours, theirs)
    # The search finds the smallest c that works: the same success, no more distortion.
    assert our_rate >= their_rate
    assert ratio <= 1.0


def test_pgd_fools_default_model_on_most_photos(default_model, imagenet_batch):
    images, labels = imagenet_batch
    attack = get_attack("pgd", norm="linf", eps=4 / 255, steps=10, step_size=1 / 255,
                        random_start=False)
    result = attack.run(default_model, images, labels)
    assert result.success.sum().item() >= 17
    assert (result.linf <= 4 / 255 + 1e-6).all()


class Brightness(Objective):
    """Not a classifier: the mean intensity of each image."""

    def evaluate(self, images):
        return Evaluation(images.mean(dim=(1, 2, 3)), None)


def test_engine_is_generic_over_objectives():
    images = torch.full((2, 3, 8, 8), 0.5)
    attack = get_attack("pgd", eps=0.1, steps=5, random_start=False)
    adversarial, steps = attack.perturb(Brightness(), images)
    torch.testing.assert_close(adversarial, torch.full_like(images, 0.6))
    assert steps.tolist() == [5, 5]


def test_targeted_attack_reaches_target(tiny_model, tiny_batch):
    images, labels = tiny_batch
    targets = (labels + 1) % 10
    result = get_attack("pgd", norm="l2", eps=20.0, steps=30, random_start=False).run(
        tiny_model, images, targets, targeted=True)
    assert result.success.all()
    assert torch.equal(result.adversarial_prediction, targets)


def test_early_stop_freezes_fooled_samples(tiny_model, tiny_batch):
    images, labels = tiny_batch
    objective = ClassifierObjective(tiny_model, labels)
    attack = get_attack("bim", norm="l2", eps=20.0, steps=30, early_stop=True)
    adversarial, steps = attack.perturb(objective, images)
    assert (steps < 30).all()
    with torch.no_grad():
        assert (tiny_model(adversarial).argmax(1) != labels).all()


def test_l1_projection_is_the_euclidean_projection():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(5, 1, 4, 4, generator=generator) * 3
    projected = project_l1_ball(points, 2.0)
    assert torch.allclose(projected.flatten(1).abs().sum(1), torch.full((5,), 2.0), atol=1e-5)
    # Variational inequality: <z − p, y − p> ≤ 0 for every y in the ball.
    for _ in range(200):
        candidate = torch.randn(5, 16, generator=generator)
        candidate = candidate / candidate.abs().sum(1, keepdim=True) * 2.0
        inner = ((points - projected).flatten(1) * (candidate - projected.flatten(1))).sum(1)
        assert (inner <= 1e-5).all()


def test_l0_projection_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 2, 2, 3, generator=generator)  # 2 channels, 2×3 = 6 pixels
    targets = images + torch.randn(3, 2, 2, 3, generator=generator)
    budget = L0(2 / 6)
    projected = budget.project(targets, images)
    for n in range(3):
        best = math.inf
        for keep in itertools.combinations(range(6), 2):
            mask = torch.zeros(6, dtype=torch.bool)
            mask[list(keep)] = True
            candidate = torch.where(mask.view(2, 3), targets[n].clamp(0, 1), images[n])
            best = min(best, (candidate - targets[n]).square().sum().item())
        assert (projected[n] - targets[n]).square().sum().item() == pytest.approx(best, rel=1e-6)


def test_bad_names_and_values_are_explained(tiny_model, tiny_batch):
    images, labels = tiny_batch
    with pytest.raises(UnknownAttackError, match="valid names: fgsm, bim, pgd"):
        get_attack("pdg")
    with pytest.raises(ValueError, match="valid parameters"):
        get_attack("fgsm", steps=3)
    for eps in [0, -0.1, float("nan"), float("inf")]:
        with pytest.raises(ValueError, match="eps"):
            get_attack("pgd", eps=eps)
    with pytest.raises(ValueError, match="unknown norm"):
        make_budget("l3", 0.1)
    with pytest.raises(ValueError, match="supports norms"):
        get_attack("deepfool", norm="l1")
    attack = get_attack("fgsm")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(tiny_model, images * 2, labels)
    with pytest.raises(ValueError, match="NaN"):
        attack(tiny_model, images.clone().fill_(float("nan")), labels)
    with pytest.raises(ValueError, match="labels must have shape"):
        attack(tiny_model, images, labels[:2])
