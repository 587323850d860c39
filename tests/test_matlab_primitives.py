"""advqa.quality.matlab: each primitive against MATLAB's documented behaviour or a transcription."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from advqa.quality import classical
from advqa.quality.matlab import (
    conv2_average_subsample,
    imfilter_average_subsample,
    matlab_round,
    release_grey,
    rgb2gray,
    symmetric_pad,
)
from tests.test_classical_parity import conv2_same, imfilter_box_symmetric


def test_matlab_round_takes_halves_away_from_zero_and_passes_the_gradient():
    values = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 2.49], requires_grad=True)
    rounded = matlab_round(values)
    assert rounded.tolist() == [1.0, 2.0, 3.0, -1.0, -3.0, 2.0]  # torch.round: 0, 2, 2, …
    rounded.sum().backward()
    assert values.grad.tolist() == [1.0] * 6


def test_rgb2gray_of_uint8_rounds_like_matlab():
    photo = data.astronaut()[:64, :64]
    expected = np.floor(photo.astype(np.float64) @ np.array(
        [0.298936021293775, 0.587043074451121, 0.114020904255103]) + 0.5)
    tensor = torch.from_numpy(photo.transpose(2, 0, 1).copy())[None].double() / 255
    assert np.array_equal(rgb2gray(tensor)[0, 0].numpy(), expected)
    unrounded = rgb2gray(tensor, rounding=False)[0, 0].numpy()
    assert 0 < np.abs(unrounded - expected).max() <= 0.5
    with pytest.raises(ValueError, match="conversion must be one of"):
        release_grey(tensor, conversion="gray")


@pytest.mark.parametrize("shape", [(7, 9), (8, 10), (13, 5)])
def test_symmetric_pad_is_numpy_symmetric(shape):
    image = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    padded = symmetric_pad(torch.from_numpy(image)[None, None], 2, 3, 4, 1)[0, 0].numpy()
    assert np.array_equal(padded, np.pad(image, ((2, 3), (4, 1)), mode="symmetric"))


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("shape", [(17, 23), (16, 24), (9, 10)])
def test_imfilter_average_subsample_is_ssim_m_downsampling(shape, factor):
    image = np.random.default_rng(factor).uniform(0, 255, shape)
    ours = imfilter_average_subsample(torch.from_numpy(image)[None, None], factor)[0, 0]
    expected = imfilter_box_symmetric(image, factor)[::factor, ::factor]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(17, 23), (16, 24)])
def test_conv2_average_subsample_is_gmsd_m_downsampling(shape):
    image = np.random.default_rng(0).uniform(0, 255, shape)
    ours = conv2_average_subsample(torch.from_numpy(image)[None, None])[0, 0]
    expected = conv2_same(image, np.ones((2, 2)) / 4)[::2, ::2]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("metric", ["ssim", "ms_ssim", "gmsd"])
def test_rounded_grey_metrics_keep_a_useful_gradient(metric):
    photo = torch.from_numpy(data.coffee()[:192, :192].transpose(2, 0, 1).copy())[None]
    reference = photo.double() / 255
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(0))
    distorted = (reference + 0.03 * noise.double()).clamp(0, 1).requires_grad_(True)
    value = getattr(classical, metric)(reference, distorted)
    gradient, = torch.autograd.grad(value.sum(), distorted)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    # One step along the gradient towards the reference improves the rounded index.
    sign = 1 if metric != "gmsd" else -1
    stepped = (distorted + sign * 2 / 255 * gradient.sign()).clamp(0, 1).detach()
    after = getattr(classical, metric)(reference, stepped)
    assert (after - value).item() * sign > 0


def test_downsample_factor_rounds_halves_up_as_matlab():
    from advqa.quality.matlab import downsample_factor

    assert [downsample_factor(side, side + 10) for side in (100, 383, 384, 640, 1152)] == [
        1, 1, 2, 3, 5]  # Python's round would give 2 for 640 and 4 for 1152


def test_fsim_downsamples_as_featuresim_m_and_equals_piq_where_piq_does_the_same():
    import piq

    from advqa.quality.matlab import conv2_same_average_subsample

    photo = torch.from_numpy(data.astronaut().transpose(2, 0, 1).copy())[None].double() / 255
    noise = torch.randn(photo.shape, generator=torch.Generator().manual_seed(1)).double()
    distorted = (photo + 0.05 * noise).clamp(0, 1)
    # 384×512 (F = 2, even sides): conv2 'same' + (1:2:end) is a plain 2×2 mean, as piq's.
    even = classical.fsim(photo[..., :384, :], distorted[..., :384, :])
    expected = piq.fsim(distorted[..., :384, :], photo[..., :384, :], data_range=1.0,
                        reduction="none")
    torch.testing.assert_close(even, expected, rtol=1e-12, atol=0)
    # 511×512 (F = 2, odd rows): FeatureSIM.m keeps a last row averaged with zeros.
    odd = classical.fsim(photo[..., :511, :], distorted[..., :511, :])
    by_hand = piq.fsim(conv2_same_average_subsample(distorted[..., :511, :], 2),
                       conv2_same_average_subsample(photo[..., :511, :], 2),
                       data_range=1.0, reduction="none")
    torch.testing.assert_close(odd, by_hand, rtol=1e-12, atol=0)
    assert not torch.allclose(odd, piq.fsim(distorted[..., :511, :], photo[..., :511, :],
                                            data_range=1.0, reduction="none"), rtol=1e-7)
