"""The video-metric registry: frame pooling, frame-pooled image metrics, native video metrics.

Clips are generated (nothing downloads): scikit-image's astronaut resized to 96×96 and
panned 2 px per frame over 6 frames; the distortion is seeded Gaussian noise whose
strength grows over the frames, so the frame scores differ. Pooling is checked against
independent references (NumPy, SciPy), frame-pooled metrics against the image metric
applied frame by frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import hmean
from skimage import data as skdata

from advqa.models import MissingWeightsError
from advqa.quality import get_metric, list_metrics
from advqa.quality.registry import UnknownMetricError
from advqa.quality.strred import strred, strred_components
from advqa.quality.video import (
    POOLINGS,
    FramePooled,
    UnknownVideoMetricError,
    get_video_metric,
    is_video_metric_available,
    list_video_metrics,
    parse_pooled_name,
    percentile_count,
    pool_frames,
)

SIZE = 96
FRAMES = 6
SHIFT = 2  # pixels per frame


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips():
    """A (1, 6, 3, 96, 96) pan over the astronaut and a copy with growing noise."""
    photo = torch.from_numpy(skdata.astronaut()).permute(2, 0, 1).float() / 255
    wide = F.interpolate(photo[None], size=(SIZE, SIZE + SHIFT * FRAMES), mode="bilinear",
                         align_corners=False, antialias=True)[0].clamp(0, 1)
    reference = torch.stack([wide[..., SHIFT * t: SHIFT * t + SIZE] for t in range(FRAMES)])
    generator = torch.Generator().manual_seed(0)
    sigma = torch.linspace(0.01, 0.12, FRAMES).reshape(FRAMES, 1, 1, 1)
    noise = torch.randn(reference.shape, generator=generator) * sigma
    distorted = (reference + noise).clamp(0, 1)
    return distorted[None], reference[None]


# ------------------------------------------------------------------------------- pooling
def _percentile_reference(row: np.ndarray, percent: float, higher: bool) -> float:
    count = max(1, math.ceil(round(percent * len(row) / 100, 9)))
    ordered = np.sort(row) if higher else np.sort(row)[::-1]
    return float(np.mean(ordered[:count]))


ROWS = [
    np.array([0.7]),  # T = 1
    np.array([0.5, 0.5, 0.5, 0.9]),  # ties
    np.array([0.3, 0.0, 0.8]),  # a 0 frame
    np.array([20.0, np.inf, 30.0, 25.0]),  # an inf frame (PSNR of an identical frame)
    np.array([np.inf, np.inf]),
]


@pytest.mark.parametrize("row", ROWS + [np.random.default_rng(seed).uniform(0.01, 2, size)
                                        for seed, size in ((1, 7), (2, 30), (3, 13))])
def test_pool_frames_matches_numpy_and_scipy(row):
    scores = torch.tensor(row, dtype=torch.float64)[None]
    assert pool_frames(scores, "mean", higher_is_better=True).item() == pytest.approx(
        np.mean(row), rel=1e-12)
    assert pool_frames(scores, "harmonic", higher_is_better=True).item() == pytest.approx(
        hmean(row), rel=1e-12)
    for percent in (5, 10, 30, 50, 100):
        for higher in (True, False):
            assert pool_frames(scores, "percentile", higher_is_better=higher,
                               percent=percent).item() == pytest.approx(
                _percentile_reference(row, percent, higher), rel=1e-12)


def test_pool_frames_batch_and_invariants():
    generator = np.random.default_rng(4)
    scores = generator.uniform(0.05, 1, (5, 11))
    tensor = torch.tensor(scores)
    mean = pool_frames(tensor, "mean", higher_is_better=True)
    harmonic = pool_frames(tensor, "harmonic", higher_is_better=True)
    worst = pool_frames(tensor, "percentile", higher_is_better=True)
    best_if_lower = pool_frames(tensor, "percentile", higher_is_better=False)
    np.testing.assert_allclose(mean, scores.mean(1), rtol=1e-12)
    np.testing.assert_allclose(harmonic, hmean(scores, axis=1), rtol=1e-12)
    assert (harmonic <= mean).all() and (worst <= mean).all() and (best_if_lower >= mean).all()
    assert tensor.min(1).values.le(worst).all()


def test_percentile_count_rounding():
    assert percentile_count(10, 30) == 3  # not ceil(3.0000000000000004) = 4
    assert percentile_count(6, 10) == 1 and percentile_count(1, 1) == 1
    assert percentile_count(11, 10) == 2 and percentile_count(30, 10) == 3
    assert percentile_count(7, 100) == 7


def test_pool_frames_gradients_are_finite():
    scores = torch.tensor([[0.5, 0.0, 0.7], [0.2, math.inf, 0.4], [0.1, 0.3, 0.9]],
                          dtype=torch.float64, requires_grad=True)
    for pooling in POOLINGS:
        pooled = pool_frames(scores, pooling, higher_is_better=True, percent=50)
        (gradient,) = torch.autograd.grad(pooled[2], scores)
        assert torch.isfinite(gradient).all() and gradient[2].abs().sum() > 0
    harmonic = pool_frames(scores, "harmonic", higher_is_better=True)
    (gradient,) = torch.autograd.grad(harmonic.sum(), scores)
    assert torch.isfinite(gradient).all()


def test_pool_frames_errors():
    scores = torch.rand(2, 4)
    with pytest.raises(ValueError, match=r"percentile.*or 'mean'"):
        pool_frames(scores, "harmonic", higher_is_better=False)
    with pytest.raises(ValueError, match="≥ 0"):
        pool_frames(scores - 1, "harmonic", higher_is_better=True)
    with pytest.raises(ValueError, match=r"unknown pooling 'median'.*mean, harmonic, percentile"):
        pool_frames(scores, "median", higher_is_better=True)
    with pytest.raises(ValueError, match="percent"):
        pool_frames(scores, "percentile", higher_is_better=True, percent=0)
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        pool_frames(torch.rand(2, 0), "mean", higher_is_better=True)


# ------------------------------------------------------------------ frame-pooled metrics
def test_frame_pooled_equals_image_metric_frame_by_frame(clips):
    distorted, reference = clips
    ssim = get_metric("ssim")
    per_frame = torch.stack([ssim(distorted[:, t], reference[:, t]) for t in range(FRAMES)], 1)
    assert per_frame.std() > 0.01  # the noise grows: frame scores differ
    pooled = FramePooled("ssim", "mean", frame_batch=4)  # chunks of 4 and 2 frames
    torch.testing.assert_close(pooled.frame_scores(distorted, reference), per_frame)
    torch.testing.assert_close(pooled(distorted, reference), per_frame.mean(1))
    mean = get_video_metric("ssim@mean")(distorted, reference)
    harmonic = get_video_metric("ssim@harmonic")(distorted, reference)
    worst = get_video_metric("ssim@percentile", percent=50)(distorted, reference)
    torch.testing.assert_close(harmonic, torch.tensor(hmean(per_frame.numpy(), axis=1),
                                                      dtype=harmonic.dtype))
    assert harmonic <= mean and worst <= mean
    assert worst == pytest.approx(per_frame.sort(1).values[:, :3].mean().item(), rel=1e-6)
    # A single (T, C, H, W) clip is N = 1.
    torch.testing.assert_close(pooled(distorted[0], reference[0]), mean)


def test_lower_is_better_percentile_and_identity(clips):
    distorted, reference = clips
    gmsd = get_video_metric("gmsd@p20")  # ceil(0.2 · 6) = 2 worst (highest) frames
    per_frame = gmsd.frame_scores(distorted, reference)
    assert gmsd(distorted, reference).item() == pytest.approx(
        per_frame.sort(1, descending=True).values[:, :2].mean().item(), rel=1e-6)
    assert gmsd(distorted, reference) >= per_frame.mean(1)
    for pooling in POOLINGS:
        assert get_video_metric(f"ssim@{pooling}")(reference, reference).item() == \
            pytest.approx(1.0, abs=1e-6)
    identical = get_metric("psnr")(reference[:, 0], reference[:, 0])  # piq's cap, not inf
    for pooling in POOLINGS:
        torch.testing.assert_close(get_video_metric(f"psnr@{pooling}")(reference, reference),
                                   identical)


def test_names_and_info():
    info = get_video_metric("ssim@mean").info
    image = list_metrics()["ssim"]
    assert info.name == "ssim@mean" and "mean over frames" in info.description
    assert (info.full_reference, info.higher_is_better, info.range, info.differentiable) == (
        image.full_reference, image.higher_is_better, image.range, image.differentiable)
    assert get_video_metric("ssim@p5").info.name == "ssim@p5"
    assert get_video_metric("ssim@p10").info.name == "ssim@percentile"
    assert get_video_metric("ssim@percentile", percent=2.5).info.name == "ssim@p2.5"
    assert parse_pooled_name("ssim@p5") == ("ssim", "percentile", 5.0)
    assert parse_pooled_name(get_video_metric("ssim@p2.5").info.name) == (
        "ssim", "percentile", 2.5)
    assert parse_pooled_name("advdss@percentile") == ("advdss", "percentile", None)
    niqe = get_video_metric("niqe@percentile").info
    assert not niqe.full_reference and not niqe.higher_is_better
    native = list_video_metrics()
    assert set(native) == {"strred", "srred", "trred", "vsfa", "mdtvsfa"}
    strred_info = native["strred"]
    assert (strred_info.full_reference, strred_info.higher_is_better, strred_info.range,
            strred_info.differentiable) == (True, False, (0.0, math.inf), True)
    assert strred_info.release == "LIVE strred (Soundararajan & Bovik 2013) on 8-bit BT.601 luma"
    assert get_video_metric("strred").info is strred_info
    assert not set(native) & set(list_metrics())  # the image registry never sees them
    assert not any("@" in name for name in list_metrics())


def test_gradients_through_the_registry(clips):
    distorted, reference = clips
    for name in ("ssim@mean", "advdss@percentile", "psnr@harmonic", "strred"):
        metric = get_video_metric(name)
        attacked = distorted.clone().requires_grad_(True)
        score = metric(attacked, reference)
        (gradient,) = torch.autograd.grad(score.sum(), attacked)
        assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0, name


def test_strred_through_the_registry(clips):
    distorted, reference = clips
    both = (torch.cat([distorted, reference]), torch.cat([reference, reference]))
    expected = strred_components(both[1], both[0])
    torch.testing.assert_close(get_video_metric("strred")(*both), strred(both[1], both[0]))
    for index, name in enumerate(("srred", "trred", "strred")):
        torch.testing.assert_close(get_video_metric(name)(*both), expected[index])
    assert get_video_metric("strred")(*both)[1] == 0
    torch.testing.assert_close(get_video_metric("strred", rounding=False)(*both),
                               strred(both[1], both[0], rounding=False))
    assert is_video_metric_available("strred") and is_video_metric_available("ssim@mean")


# ----------------------------------------------------------------------------- errors
def test_errors(clips):
    distorted, reference = clips
    with pytest.raises(ValueError, match=r"lower-is-better.*'percentile'.*'mean'"):
        get_video_metric("gmsd@harmonic")
    with pytest.raises(ValueError, match="lower-is-better"):
        FramePooled("niqe", "harmonic")
    assert not is_video_metric_available("gmsd@harmonic")
    with pytest.raises(UnknownVideoMetricError, match=r"unknown pooling 'median'.*p<percent>"):
        get_video_metric("ssim@median")
    with pytest.raises(ValueError, match="unknown pooling"):
        FramePooled("ssim", "median")
    for name in ("ssim", "nosuch@mean", "strred2"):
        with pytest.raises(UnknownVideoMetricError) as caught:
            get_video_metric(name)
        message = str(caught.value)
        assert "strred" in message and "vsfa" in message and "IMAGE_METRIC@POOLING" in message
        assert all(pooling in message for pooling in POOLINGS)
        assert isinstance(caught.value, UnknownMetricError)  # as the image registry raises
    with pytest.raises(UnknownVideoMetricError):
        is_video_metric_available("nosuch@mean")
    for name in ("aeqa@mean", "js@percentile"):
        with pytest.raises(ValueError, match="needs a classifier"):
            get_video_metric(name)
    with pytest.raises(ValueError, match="needs a classifier"):
        FramePooled("aeqa", "mean", model=torch.nn.Identity())
    assert not is_video_metric_available("aeqa@mean")
    with pytest.raises(ValueError, match="fixes percent"):
        get_video_metric("ssim@p5", percent=20)
    ssim = get_video_metric("ssim@mean")
    with pytest.raises(ValueError, match="differ"):
        ssim(distorted, reference[:, :4])
    with pytest.raises(ValueError, match="full-reference"):
        ssim(distorted)
    with pytest.raises(ValueError, match=r"\(N, T, C, H, W\)"):
        ssim(distorted[0, 0], reference[0, 0])
    with pytest.raises(ValueError, match="divide 8-bit"):
        ssim((distorted * 255).to(torch.uint8), reference)
    nan = distorted.clone()
    nan[0, 3, 1, 5, 5] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        ssim(nan, reference)
    with pytest.raises(ValueError, match=r"\[0, 1\].*clamp=True"):
        ssim(distorted * 1.5, reference)
    assert get_video_metric("ssim@mean", clamp=True)(distorted * 1.5, reference).shape == (1,)


def test_vsfa_without_weights(monkeypatch, tmp_path):
    # vqa_learned looks in $ADVQA_WEIGHTS_DIR, then torch hub's checkpoints: both empty here.
    monkeypatch.setenv("ADVQA_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # TORCH_HOME decides
    (tmp_path / "weights").mkdir()
    for name, file in (("vsfa", "VSFA.pt"), ("mdtvsfa", "MDTVSFA.pt")):
        assert is_video_metric_available(name) is False
        with pytest.raises(MissingWeightsError, match=file) as caught:
            get_video_metric(name)
        assert "resnet50" in str(caught.value)
    assert list_video_metrics()["vsfa"].higher_is_better
