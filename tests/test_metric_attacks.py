"""Attacks on quality metrics: Korhonen et al., MAD competition, AMI-FGSM and the engine's own."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from advqa.attacks import ATTACKS, BIM, FGSM, MADC, MIM, Korhonen, get_attack
from advqa.attacks.korhonen import spatial_activity
from advqa.attacks.madc import orthogonal_component, root_mean_square
from advqa.data import load_samples, preprocess
from advqa.quality import get_metric
from advqa.robustness import MetricObjective, jpeg_copy
from advqa.robustness.amifgsm import AMIFGSM

# The range only rescales the loss; the sign and normalised steps tested here
# do not depend on it, so a fixed value spares the calibration pass.
NIQE_RANGE = 20.0
PSNR_RANGE = 10.0


@pytest.fixture(scope="module")
def photos():
    # 128×256 keeps NIQE (needs ≥ 96×192) valid at a quarter of the cost of 256×256.
    return preprocess(load_samples("photos"), size=256)[[0, 2, 6], :, :128, :]


@pytest.fixture(scope="module")
def niqe():
    return get_metric("niqe")


@pytest.fixture(scope="module")
def psnr():
    return get_metric("psnr")


NIQE_ATTACKS = {
    # NIQE is rough at the scale of a grey level: sign steps of 1/255 overshoot
    # (BIM with α = 1/255 raises it), so the engine's attacks take small steps here.
    "fgsm": lambda: FGSM(eps=0.5 / 255),
    "mim": lambda: MIM(eps=2 / 255),
    "korhonen": lambda: Korhonen(),
    "madc": lambda: MADC(),
    "amifgsm": lambda: AMIFGSM(step_size=0.2 / 255),
}

PSNR_ATTACKS = {
    "fgsm": lambda: FGSM(eps=1 / 255),
    "bim": lambda: BIM(eps=2 / 255, step_size=1 / 255),
    "mim": lambda: MIM(eps=2 / 255),
    "korhonen": lambda: Korhonen(),
    "madc": lambda: MADC(),
    "amifgsm": lambda: AMIFGSM(step_size=0.5 / 255),
}


@pytest.mark.parametrize("name", NIQE_ATTACKS)
def test_attacks_lower_niqe(photos, niqe, name):
    objective = MetricObjective(niqe, metric_range=NIQE_RANGE)
    adversarial, _ = NIQE_ATTACKS[name]().perturb(objective, photos)
    before, after = niqe(photos), niqe(adversarial)
    assert (after < before - 0.1).all(), (before, after)
    assert after.mean() < before.mean() - 0.5


@pytest.mark.parametrize("name", PSNR_ATTACKS)
def test_attacks_raise_psnr_of_a_jpeg_copy(photos, psnr, name):
    distorted = jpeg_copy(photos, quality=80)
    objective = MetricObjective(psnr, metric_range=PSNR_RANGE, references=photos)
    adversarial, _ = PSNR_ATTACKS[name]().perturb(objective, distorted)
    before, after = psnr(distorted, photos), psnr(adversarial, photos)
    # MADC holds its tiny RMSE to the JPEG copy and gains least (≈ +0.35 dB).
    assert (after > before + 0.2).all(), (before, after)


def test_registry_has_the_metric_attacks():
    assert ATTACKS["korhonen"] is Korhonen and ATTACKS["madc"] is MADC
    assert isinstance(get_attack("korhonen", eps=4 / 255), Korhonen)
    assert "amifgsm" not in ATTACKS


def test_activity_map_is_the_normalised_sobel_magnitude_of_luma(photos):
    activity = spatial_activity(photos)
    for image, computed in zip(photos.double().numpy(), activity.numpy(), strict=True):
        luma = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
        magnitude = np.hypot(ndimage.sobel(luma, axis=0), ndimage.sobel(luma, axis=1))
        np.testing.assert_allclose(computed[0], magnitude / magnitude.max(), atol=1e-5)
    gray = photos[:1, :1]
    luma = gray[0, 0].double().numpy()
    magnitude = np.hypot(ndimage.sobel(luma, axis=0), ndimage.sobel(luma, axis=1))
    np.testing.assert_allclose(spatial_activity(gray)[0, 0].numpy(), magnitude / magnitude.max(),
                               atol=1e-5)
    assert (spatial_activity(torch.full((1, 3, 8, 8), 0.5)) == 1).all()


def test_korhonen_perturbs_busy_regions_more(photos, psnr):
    distorted = jpeg_copy(photos, quality=80)
    objective = MetricObjective(psnr, metric_range=PSNR_RANGE, references=photos)
    attack = Korhonen()
    adversarial, _ = attack.perturb(objective, distorted)
    change = (adversarial - distorted).abs().mean(dim=1)
    activity = spatial_activity(distorted)[:, 0]
    assert (change <= attack.budget.eps + 1e-6).all()
    for values, weights in zip(change, activity, strict=True):
        low, high = torch.quantile(weights.flatten(), torch.tensor([0.25, 0.75]))
        assert values[weights >= high].mean() > 3 * values[weights <= low].mean()


def test_madc_holds_the_rmse_level_while_lowering_niqe(photos, niqe):
    objective = MetricObjective(niqe, metric_range=NIQE_RANGE)
    attack = MADC()
    _, level = attack.start(objective, photos)
    adversarial, _ = attack.perturb(objective, photos)
    assert (level > 0.5 * attack.eps).all()
    error = (root_mean_square(adversarial - photos) - level).abs()
    assert (error <= attack.precision).all(), error
    assert (niqe(adversarial) < niqe(photos)).all()
    assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_madc_holds_an_explicit_level(photos, psnr):
    distorted = jpeg_copy(photos, quality=80)
    objective = MetricObjective(psnr, metric_range=PSNR_RANGE, references=photos)
    attack = MADC(level=2 / 255, precision=1e-5)
    adversarial, _ = attack.perturb(objective, distorted)
    error = (root_mean_square(adversarial - distorted) - 2 / 255).abs()
    assert (error <= 1e-5).all(), error


def test_projected_gradient_is_orthogonal_to_the_mse_gradient():
    first = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]]).view(2, 1, 2, 2)
    second = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).view(2, 1, 2, 2)
    projected = orthogonal_component(first, second)
    # Hand-computed: g2ᵀg1 = 4, g2ᵀg2 = 2, so pg = g1 − 2·g2; a zero g2 leaves g1.
    expected = torch.tensor([[-1.0, 2.0, 1.0, 4.0], [0.5, -1.0, 2.0, 0.0]]).view(2, 1, 2, 2)
    torch.testing.assert_close(projected, expected)
    assert (projected * second).sum(dim=(1, 2, 3)).abs().max() < 1e-6
    random = torch.randn(3, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    held = torch.randn(3, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    dots = (orthogonal_component(random, held) * held).sum(dim=(1, 2, 3))
    assert dots.abs().max() < 1e-4


def test_amifgsm_uses_exactly_the_inverse_niqe_budget(photos, niqe):
    objective = MetricObjective(niqe, metric_range=NIQE_RANGE)
    radius = 1 / niqe(photos)
    adversarial, _ = AMIFGSM().perturb(objective, photos)
    linf = (adversarial - photos).abs().amax(dim=(1, 2, 3))
    assert (linf <= radius + 1e-6).all(), (linf, radius)
    assert torch.isclose(linf, radius, atol=1e-6).any(), (linf, radius)


def test_amifgsm_radius_can_be_overridden(photos, niqe):
    objective = MetricObjective(niqe, metric_range=NIQE_RANGE)
    radii = torch.tensor([1, 2, 3]) / 255
    adversarial, _ = AMIFGSM(radius=lambda images: radii).perturb(objective, photos)
    linf = (adversarial - photos).abs().amax(dim=(1, 2, 3))
    torch.testing.assert_close(linf, radii, atol=1e-6, rtol=0)


@pytest.mark.parametrize("build", [
    lambda: Korhonen(eps=-1 / 255),
    lambda: Korhonen(norm="l2"),
    lambda: Korhonen(steps=0),
    lambda: MADC(eps=-0.001),
    lambda: MADC(norm="linf"),
    lambda: MADC(level=1e-3, precision=1e-2),
    lambda: MADC(step_size=float("nan")),
    lambda: AMIFGSM(radius=0.1),
    lambda: AMIFGSM(steps=0),
])
def test_bad_settings_are_explained(build):
    with pytest.raises(ValueError, match=r"eps|norm|steps|precision|step_size|radius"):
        build()


def test_bad_images_are_explained(photos, niqe):
    objective = MetricObjective(niqe, metric_range=NIQE_RANGE)
    for attack in (Korhonen(), MADC(), AMIFGSM(radius=lambda images: torch.ones(len(images)))):
        with pytest.raises(ValueError, match="NCHW"):
            attack.perturb(objective, photos[0])
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            attack.perturb(objective, photos * 2)
    with pytest.raises(ValueError, match="channels"):
        spatial_activity(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="one value per image"):
        AMIFGSM(radius=lambda images: torch.ones(2)).perturb(objective, photos)
    with pytest.raises(ValueError, match="> 0"):
        AMIFGSM(radius=lambda images: -torch.ones(3)).perturb(objective, photos)


class Reentrant:
    """An objective that, at its second evaluation, runs ``attack`` on other images: a
    second call that starts and ends in the middle of the first. It records the
    attack's attributes (name → object identity) at every evaluation."""

    def __init__(self, objective, attack, other_objective, other_images):
        self.objective, self.attack = objective, attack
        self.other_objective, self.other_images = other_objective, other_images
        self.module = objective.module
        self.attributes, self.inner = [], None

    def evaluate(self, images):
        self.attributes.append(attributes(self.attack))
        if len(self.attributes) == 2:
            self.inner = self.attack.perturb(self.other_objective, self.other_images)
        return self.objective.evaluate(images)


def attributes(attack) -> dict:
    return {name: id(value) for name, value in vars(attack).items()}


@pytest.mark.parametrize("build", [
    Korhonen,
    lambda: AMIFGSM(steps=4, radius=lambda images: 1 / 255 + images.mean(dim=(1, 2, 3)) / 50),
    lambda: AMIFGSM(steps=4, step_size=0.5 / 255,
                    radius=lambda images: torch.full((len(images),), 2 / 255)),
], ids=["korhonen", "amifgsm", "amifgsm-fixed-step"])
def test_calls_keep_their_state_in_the_loop_not_on_the_attack(photos, psnr, build):
    # Per-call state (Korhonen's activity map, AMI-FGSM's radii and steps) lives in the
    # loop: an attack object can serve interleaved and nested (concurrent) calls.
    first, second = photos[:2], photos[2:]
    first_objective = MetricObjective(psnr, metric_range=PSNR_RANGE, references=first)
    second_objective = MetricObjective(psnr, metric_range=PSNR_RANGE, references=second)
    first_jpeg, second_jpeg = jpeg_copy(first, quality=80), jpeg_copy(second, quality=80)
    attack = build()
    before = attributes(attack)
    alone, _ = attack.perturb(first_objective, first_jpeg)
    other, _ = attack.perturb(second_objective, second_jpeg)
    again, _ = attack.perturb(first_objective, first_jpeg)
    assert torch.equal(alone, again)
    assert attributes(attack) == before
    nested = Reentrant(first_objective, attack, second_objective, second_jpeg)
    outer, _ = attack.perturb(nested, first_jpeg)
    assert torch.equal(outer, alone) and torch.equal(nested.inner[0], other)
    assert all(seen == before for seen in nested.attributes), "per-call state on the attack"
    assert attributes(attack) == before


# --- MI-FGSM: the benchmark's form and Dong et al.'s ------------------------------------------


class Scripted:
    """An objective whose gradient at the t-th evaluation is ``gradients[t]`` exactly:
    the loss is linear, ``<gradients[t], images>`` per sample."""

    module = None

    def __init__(self, gradients):
        self.gradients, self.calls = [torch.tensor(g).view(1, 1, 1, -1) for g in gradients], 0

    def evaluate(self, images):
        from advqa.attacks.objectives import Evaluation

        weights = self.gradients[self.calls]
        self.calls += 1
        return Evaluation((weights * images).sum(dim=(1, 2, 3)), None)


def test_mifgsm_forms_differ_as_the_formulas_say():
    from advqa.robustness.mifgsm import MIFGSM

    # Two steps of α = 0.1 from x0 = (0.5, 0.5) (ε = 1: no clipping), ν = 1, on the
    # gradients g1 = (10, 10) then g2 = (−2, 1).
    #   dong: v1 = g1/mean|g1| = (1, 1)            -> x1 = (0.6, 0.6)
    #         v2 = v1 + g2/mean|g2| = (1 − 4/3, 1 + 2/3) = (−1/3, 5/3)
    #                                             -> x2 = (0.5, 0.7)
    #   msu:  v1 = g1 = (10, 10)                   -> x1 = (0.6, 0.6)
    #         v2 = g2 + v1 = (8, 11)               -> x2 = (0.7, 0.7)
    # The large first gradient dominates the raw momentum; normalised, both steps weigh
    # the same and the second one's sign wins on the first pixel.
    start = torch.full((1, 1, 1, 2), 0.5)
    expected = {"dong": [0.5, 0.7], "msu": [0.7, 0.7]}
    for form, pixels in expected.items():
        attack = MIFGSM(form=form, eps=1.0, steps=2, step_size=0.1, decay=1.0)
        adversarial, _ = attack.perturb(Scripted([[10.0, 10.0], [-2.0, 1.0]]), start)
        torch.testing.assert_close(adversarial.view(-1), torch.tensor(pixels), atol=1e-6,
                                   rtol=0, msg=form)
        assert attack.parameters()["form"] == form
    # Without momentum (ν = 0) the forms are the same attack: sign of the gradient.
    for form in expected:
        attack = MIFGSM(form=form, eps=1.0, steps=2, step_size=0.1, decay=0.0)
        adversarial, _ = attack.perturb(Scripted([[10.0, 10.0], [-2.0, 1.0]]), start)
        torch.testing.assert_close(adversarial.view(-1), torch.tensor([0.5, 0.7]), atol=1e-6,
                                   rtol=0)


def test_mifgsm_dong_form_is_advqas_mim(photos, psnr):
    from advqa.robustness.mifgsm import MIFGSM

    objective = MetricObjective(psnr, metric_range=PSNR_RANGE, references=photos)
    start = jpeg_copy(photos, quality=80)
    ours, _ = MIFGSM(form="dong", eps=2 / 255, steps=3).perturb(objective, start)
    engine, _ = MIM(eps=2 / 255, steps=3).perturb(objective, start)
    assert torch.equal(ours, engine)
    with pytest.raises(ValueError, match="unknown MI-FGSM form"):
        MIFGSM(form="kurakin")
    with pytest.raises(ValueError, match="unknown MI-FGSM form"):
        AMIFGSM(form="")


def test_amifgsm_ball_that_cannot_bind_gives_mifgsms_images(photos, psnr):
    from advqa.robustness.amifgsm import ball_never_binds
    from advqa.robustness.mifgsm import MIFGSM

    objective = MetricObjective(psnr, metric_range=PSNR_RANGE, references=photos)
    start = jpeg_copy(photos, quality=80)
    radii = torch.tensor([0.05, 0.1, 0.2])  # 1/NIQE of natural photos lies around here
    assert ball_never_binds(radii, steps=10, step_size=1 / 255).all()  # 10/255 ≈ 0.039
    assert not ball_never_binds(0.03, steps=10, step_size=1 / 255)
    for form in ("msu", "dong"):
        ami, _ = AMIFGSM(form=form, steps=10, step_size=1 / 255,
                         radius=lambda images: radii).perturb(objective, start)
        mi, _ = MIFGSM(form=form, eps=10 / 255, steps=10, step_size=1 / 255).perturb(
            objective, start)
        # The same images up to float rounding of the two projections (~1e-8).
        torch.testing.assert_close(ami, mi, atol=1e-6, rtol=0, msg=form)
