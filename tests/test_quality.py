"""AdvDSS, AEQA and the metric registry, checked against independent computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d
from scipy.spatial.distance import jensenshannon
from skimage.metrics import structural_similarity

from advqa.attacks import get_attack
from advqa.quality import (
    UnknownMetricError,
    advdss,
    aeqa,
    aeqa_scores,
    get_metric,
    js_divergence,
    list_metrics,
)
from advqa.quality.advdss import csf_response


def numpy_advdss(reference, distorted, exponents=(1.0, 0.48, 0.48), gamma=True, csf=True,
                 ppd=64.0):
    """The specification, written out plainly with full complex FFTs and 2-D windows."""

    def front_end(image):
        luma = 16 + 65.481 * image[0] + 128.553 * image[1] + 24.966 * image[2]
        if gamma:
            luma = 255 * (luma / 255) ** (1 / 2.2)
        if not csf:
            return luma
        rows, columns = luma.shape
        fu, fv = np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(columns), indexing="ij")
        f = np.sqrt(fu**2 + fv**2) * ppd
        f_theta = f / (0.15 * np.cos(4 * np.arctan2(fv, fu)) + 0.85)
        h = 2.6 * (0.0192 + 0.114 * f_theta) * np.exp(-((0.114 * f_theta) ** 1.1))
        h[f_theta < 7.8909] = 0.9809
        return luma - np.real(np.fft.ifft2(h * np.fft.fft2(luma)))

    a, b = front_end(reference), front_end(distorted)
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    mean = lambda image: correlate2d(image, window, mode="valid")  # noqa: E731
    mu_a, mu_b = mean(a), mean(b)
    var_a = np.maximum(mean(a * a) - mu_a**2, 0)
    var_b = np.maximum(mean(b * b) - mu_b**2, 0)
    cov = mean(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    c3 = c2 / 2
    sd = np.sqrt(var_a * var_b)
    l_term = np.maximum((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1), 0)
    c_term = (2 * sd + c2) / (var_a + var_b + c2)
    s_term = np.maximum((cov + c3) / (sd + c3), 0)
    return (l_term ** exponents[0] * c_term ** exponents[1] * s_term ** exponents[2]).mean()


@pytest.fixture(scope="module")
def pair():
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(2, 3, 24, 20, generator=generator, dtype=torch.float64)
    distorted = (reference + 0.1 * torch.randn(reference.shape, generator=generator,
                                               dtype=torch.float64)).clamp(0, 1)
    return reference, distorted


@pytest.mark.parametrize(("gamma", "csf"), [(True, True), (False, True), (True, False),
                                            (False, False)])
def test_advdss_matches_the_written_out_specification(pair, gamma, csf):
    reference, distorted = pair
    ours = advdss(reference=reference, distorted=distorted, gamma_correction=gamma, csf=csf)
    for n in range(2):
        expected = numpy_advdss(reference[n].numpy(), distorted[n].numpy(), gamma=gamma, csf=csf)
        assert ours[n].item() == pytest.approx(expected, rel=1e-9)


def test_csf_values_at_known_frequencies():
    response = csf_response(64, 64, 64.0, dtype=torch.float64)
    assert response[0, 0].item() == 0.9809  # DC: below the peak frequency
    # fu = 0, fv = 16/64 cycles/pixel → f = 16 c/deg along an axis (θ = π/2, cos 4θ = 1).
    f = 16.0
    expected = 2.6 * (0.0192 + 0.114 * f) * math.exp(-((0.114 * f) ** 1.1))
    assert response[0, 16].item() == pytest.approx(expected, rel=1e-12)


def test_identical_images_score_one():
    generator = torch.Generator().manual_seed(1)
    for channels in (1, 3):
        images = torch.rand(3, channels, 32, 40, generator=generator)
        torch.testing.assert_close(advdss(reference=images, distorted=images), torch.ones(3))


def test_without_front_end_and_unit_exponents_it_is_ssim_on_luma():
    from advqa.data import load_samples, preprocess

    reference = preprocess(load_samples("photos")[:2], size=96)
    distorted = 0.8 * reference + 0.1  # positive covariance everywhere: no clamping applies
    ours = advdss(reference=reference, distorted=distorted, exponents=(1, 1, 1),
                  gamma_correction=False,
                  csf=False)
    luma = lambda x: (16 + 65.481 * x[0] + 128.553 * x[1] + 24.966 * x[2]).double().numpy()  # noqa: E731
    for n in range(2):
        expected = structural_similarity(
            luma(reference[n]), luma(distorted[n]), data_range=255, gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False)
        assert ours[n].item() == pytest.approx(expected, abs=1e-5)


def test_advdss_falls_as_pgd_eps_grows(default_model, imagenet_batch):
    images, labels = imagenet_batch[0][:6], imagenet_batch[1][:6]
    scores = []
    for eps in (1 / 255, 4 / 255, 16 / 255):
        attack = get_attack("pgd", eps=eps, steps=5, random_start=False)
        scores.append(advdss(reference=images, distorted=attack(default_model, images, labels)))
    assert (scores[0] > scores[1]).all() and (scores[1] > scores[2]).all()
    assert (scores[0] < 1).all()


def test_advdss_gradient_is_correct():
    generator = torch.Generator().manual_seed(2)
    reference = torch.rand(1, 1, 14, 13, generator=generator, dtype=torch.float64)
    distorted = (reference + 0.05 * torch.randn(reference.shape, generator=generator,
                                                dtype=torch.float64)).clamp(0.01, 0.99)
    distorted.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: advdss(reference=reference, distorted=d),
                                    (distorted,))


def test_js_divergence_matches_scipy():
    generator = torch.Generator().manual_seed(3)
    first, second = torch.randn(4, 10, generator=generator, dtype=torch.float64).unbind(0)[:2]
    logits_a = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    logits_b = torch.randn(5, 7, generator=generator, dtype=torch.float64) * 3
    ours = js_divergence(logits_a, logits_b)
    for n in range(5):
        p, q = logits_a[n].softmax(0).numpy(), logits_b[n].softmax(0).numpy()
        assert ours[n].item() == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-9)
    assert first.shape == second.shape


def test_js_divergence_extremes():
    logits = torch.tensor([[200.0, -200.0], [1.0, 2.0]])
    flipped = torch.tensor([[-200.0, 200.0], [1.0, 2.0]])
    torch.testing.assert_close(js_divergence(logits, flipped), torch.tensor([1.0, 0.0]))


def test_aeqa_hand_computed():
    js, quality = torch.tensor([0.25, 0.0, 1.0]), torch.tensor([0.81, 0.9, 0.5])
    alpha = 1 / (1 + 0.8 * 0.25**0.1)
    expected_first = 0.25**alpha * 0.81 ** (1 - alpha)
    alpha_last = 1 / 1.8
    expected = torch.tensor([expected_first, 0.0, 0.5 ** (1 - alpha_last)])
    torch.testing.assert_close(aeqa(js, quality), expected)


def test_aeqa_scores_on_a_model(default_model, imagenet_batch):
    images, labels = imagenet_batch[0][:4], imagenet_batch[1][:4]
    adversarial = get_attack("pgd", eps=4 / 255, steps=5, random_start=False)(
        default_model, images, labels)
    scores = aeqa_scores(default_model, images, adversarial)
    clean = aeqa_scores(default_model, images, images)
    assert (scores["js"] > 0.1).all()
    torch.testing.assert_close(clean["aeqa"], torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(scores["aeqa"], aeqa(scores["js"], scores["advdss"]))
    metric = get_metric("aeqa", model=default_model)
    torch.testing.assert_close(metric(adversarial, images), scores["aeqa"])


def test_advdss_takes_its_images_by_name():
    """The functions take (reference, distorted), metric modules (distorted, reference):
    advdss takes both by name, so neither habit can swap them."""
    image = torch.rand(1, 3, 32, 32)
    with pytest.raises(TypeError):
        advdss(image, image)
    other = (image + 0.05 * torch.randn_like(image)).clamp(0, 1)
    torch.testing.assert_close(advdss(reference=image, distorted=other),
                               get_metric("advdss")(other, image))
    large = torch.rand(1, 3, 96, 96)
    blurred = torch.nn.functional.avg_pool2d(large, 3, stride=1, padding=1)
    vif = get_metric("vif")  # not symmetric: the order matters
    torch.testing.assert_close(vif(distorted=blurred, reference=large), vif(blurred, large))
    assert not torch.allclose(vif(blurred, large), vif(large, blurred))


def test_bad_input_is_explained():
    image = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\(1, 3, 32, 32\).*\(1, 3, 32, 30\)"):
        advdss(reference=image, distorted=image[..., :30])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        advdss(reference=image, distorted=image * 2)
    torch.testing.assert_close(advdss(reference=image, distorted=image * 2, clamp=True),
                               advdss(reference=image, distorted=(image * 2).clamp(0, 1)))
    with pytest.raises(ValueError, match="NaN"):
        advdss(reference=image, distorted=image.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="smaller than the 11×11"):
        advdss(reference=image[..., :8, :8], distorted=image[..., :8, :8])
    with pytest.raises(ValueError, match="C = 1 or 3"):
        advdss(reference=image[:, :2], distorted=image[:, :2])


OFFLINE_FULL_REFERENCE = ["psnr", "ssim", "ms_ssim", "fsim", "gmsd", "vif", "vsi", "l0", "l1",
                          "l2", "linf", "advdss"]


def test_every_metric_names_the_release_its_default_follows(capsys):
    assert all(info.release for info in list_metrics().values())
    assert list_metrics()["ssim"].release.startswith("ssim_index.m")
    from advqa.cli.main import main

    assert main(["metrics"]) == 0
    assert "follows vifvec.m (Sheikh & Bovik 2006) on rgb2gray" in capsys.readouterr().out


def test_registry_describes_every_metric():
    info = list_metrics()
    assert set(OFFLINE_FULL_REFERENCE) | {"niqe", "brisque", "piqe", "mad", "cw_ssim",
                                          "aeqa"} <= set(info)
    assert all(name == entry.name for name, entry in info.items())
    assert info["gmsd"].full_reference and not info["gmsd"].higher_is_better
    assert not info["niqe"].full_reference and not info["l0"].differentiable
    with pytest.raises(UnknownMetricError, match="valid names: psnr"):
        get_metric("ssmi")
    with pytest.raises(ValueError, match="needs a classifier"):
        get_metric("aeqa")
    with pytest.raises(ValueError, match="full-reference"):
        get_metric("ssim")(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("name", OFFLINE_FULL_REFERENCE)
def test_identical_images_get_the_best_score(name):
    images = torch.rand(2, 3, 192, 192, generator=torch.Generator().manual_seed(4))
    noisy = (images + 0.05 * torch.randn(images.shape,
                                         generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    metric = get_metric(name)
    perfect, degraded = metric(images, images), metric(noisy, images)
    best = 0.0 if not metric.info.higher_is_better else (80.0 if name == "psnr" else 1.0)
    torch.testing.assert_close(perfect, torch.full((2,), best), atol=1e-4, rtol=0)
    better = degraded < perfect if metric.info.higher_is_better else degraded > perfect
    assert better.all()


def _offline_metrics():
    from advqa.quality.registry import is_available

    return [name for name in list_metrics() if is_available(name)]


@pytest.mark.parametrize("name", _offline_metrics())
def test_empty_batch_is_a_clear_error(name):
    options = {}
    if list_metrics()[name].needs_model:
        options["model"] = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    metric = get_metric(name, **options)
    empty = torch.rand(0, 3, 8, 8)
    with pytest.raises(ValueError, match=r"empty batch: .* \(0, 3, 8, 8\)"):
        metric(empty, empty) if metric.info.full_reference else metric(empty)


@pytest.mark.parametrize("name", list(list_metrics()))
def test_get_metric_info_is_the_registry_entry(name):
    # The registry is the only source of MetricInfo: what a metric says about itself is
    # what list_metrics() says about it.
    from advqa.quality.registry import is_available

    if not is_available(name):
        pytest.skip(f"{name}'s weight files are not on this machine; test_learned checks "
                    "its info on stand-in weights")
    info = list_metrics()[name]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    metric = get_metric(name, **({"model": model} if info.needs_model else {}))
    assert metric.info == info


def test_metric_facts_are_stated_only_in_the_registry():
    # No module keeps its own copy of a registry metric's facts (the old METRIC_INFO
    # dicts disagreed with the registry on NIQE's range). pyiqa's adapter builds one
    # MetricInfo, for pyiqa metrics, which the registry does not hold.
    import advqa

    source = Path(advqa.__file__).parent
    # The video registry (quality/video.py) is the second registry, for video metrics
    # only; vqa_learned.py states its two weight-backed video metrics once each.
    allowed = {"quality/registry.py": math.inf, "quality/learned.py": 1,
               "quality/video.py": math.inf, "quality/vqa_learned.py": 2}
    stray = []
    for path in sorted(source.rglob("*.py")):
        name, text = path.relative_to(source).as_posix(), path.read_text(encoding="utf-8")
        if "METRIC_INFO" in text or text.count("MetricInfo(") > allowed.get(name, 0):
            stray.append(name)
    assert not stray, f"metric facts outside quality/registry.py: {stray}"
