"""CW-SSIM and PIQE: defining properties, literal NumPy ports of the MATLAB code, gradients.

No published MATLAB scores exist for images available offline (MATLAB's own examples use
lighthouse.png, which is not on this machine), so parity is checked against independent,
loop-by-loop NumPy ports of the reference MATLAB code (``buildSCFpyr`` with its lookup
tables + ``cwssim_index.m``; ``piqe.m``) written here for that purpose.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage, signal
from skimage import data, filters
from skimage.metrics import structural_similarity

from advqa.quality.cw_ssim import CWSSIM, cw_ssim
from advqa.quality.piqe import PIQE, piqe, piqe_result
from advqa.quality.validate import GRAY_WEIGHTS


def _tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, 3) uint8/float image → (1, C, H, W) float64 in [0, 1]."""
    array = np.asarray(image, dtype=np.float64)
    if np.asarray(image).dtype == np.uint8:
        array = array / 255
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None]


def _grey255(images: torch.Tensor) -> np.ndarray:
    """``double(rgb2gray(·))`` of the uint8 image: whole grey levels (halves up, all ≥ 0)."""
    array = images[0].permute(1, 2, 0).numpy() * 255
    grey = array @ np.array(GRAY_WEIGHTS) if array.shape[-1] == 3 else array[..., 0]
    return np.floor(grey + 0.5)


def _as_file(images: torch.Tensor) -> torch.Tensor:
    """The batch as uint8 files hold it: whole levels of 1/255."""
    return torch.floor(images * 255 + 0.5) / 255


SMOOTH = "rgb2gray-double"  # unrounded grey: finite differences see the index itself


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return _tensor(data.astronaut())


# ------------------------------------------------------------ MATLAB-literal CW-SSIM port
def _point_op(image, lut, origin, increment):
    """matlabPyrTools pointOp: linear interpolation, end segments extrapolated."""
    position = (image - origin) / increment
    index = np.clip(np.trunc(position).astype(int), 0, len(lut) - 2)
    return lut[index] + (lut[index + 1] - lut[index]) * (position - index)


def _rcos_fn(width, position):
    size = 256
    x = np.pi * np.arange(-size - 1, 2) / (2 * size)
    y = np.cos(x) ** 2
    y[0], y[-1] = y[1], y[-2]
    return position + (2 * width / np.pi) * (x + np.pi / 4), y


def _build_scf_pyr_levels(lodft, log_rad, xrcos, yrcos, angle, height, nbands):
    if height <= 0:
        return []
    xrcos = xrcos - 1
    lutsize = 1024
    xcosn = np.pi * np.arange(-(2 * lutsize + 1), lutsize + 2) / lutsize
    order = nbands - 1
    const = 2 ** (2 * order) * math.factorial(order) ** 2 / (nbands * math.factorial(2 * order))
    alfa = np.mod(np.pi + xcosn, 2 * np.pi) - np.pi
    ycosn = 2 * np.sqrt(const) * np.cos(xcosn) ** order * (np.abs(alfa) < np.pi / 2)
    himask = _point_op(log_rad, yrcos, xrcos[0], xrcos[1] - xrcos[0])
    bands = []
    for b in range(nbands):
        anglemask = _point_op(angle, ycosn, xcosn[0] + np.pi * b / nbands, xcosn[1] - xcosn[0])
        banddft = (-1j) ** (nbands - 1) * lodft * anglemask * himask
        bands.append(np.fft.ifft2(np.fft.ifftshift(banddft)))
    dims = np.array(lodft.shape)
    ctr = np.ceil((dims + 0.5) / 2).astype(int)
    lodims = np.ceil((dims - 0.5) / 2).astype(int)
    loctr = np.ceil((lodims + 0.5) / 2).astype(int)
    lostart = ctr - loctr + 1
    loend = lostart + lodims - 1
    crop = (slice(lostart[0] - 1, loend[0]), slice(lostart[1] - 1, loend[1]))
    log_rad, angle, lodft = log_rad[crop], angle[crop], lodft[crop]
    yircos = np.abs(np.sqrt(1 - yrcos**2))
    lodft = _point_op(log_rad, yircos, xrcos[0], xrcos[1] - xrcos[0]) * lodft
    return [bands, *_build_scf_pyr_levels(lodft, log_rad, xrcos, yrcos, angle, height - 1,
                                          nbands)]


def _build_scf_pyr(image, height, order):
    """buildSCFpyr(im, ht, order): list of per-level lists of complex oriented bands."""
    dims = np.array(image.shape)
    ctr = np.ceil((dims + 0.5) / 2).astype(int)
    xramp, yramp = np.meshgrid((np.arange(1, dims[1] + 1) - ctr[1]) / (dims[1] / 2),
                               (np.arange(1, dims[0] + 1) - ctr[0]) / (dims[0] / 2))
    angle = np.arctan2(yramp, xramp)
    log_rad = np.sqrt(xramp**2 + yramp**2)
    log_rad[ctr[0] - 1, ctr[1] - 1] = log_rad[ctr[0] - 1, ctr[1] - 2]
    log_rad = np.log2(log_rad)
    xrcos, yrcos = _rcos_fn(1, -0.5)
    yrcos = np.sqrt(yrcos)
    yircos = np.sqrt(1 - yrcos**2)
    lo0mask = _point_op(log_rad, yircos, xrcos[0], xrcos[1] - xrcos[0])
    lodft = np.fft.fftshift(np.fft.fft2(image)) * lo0mask
    return _build_scf_pyr_levels(lodft, log_rad, xrcos, yrcos, angle, height, order + 1)


def _fspecial_gaussian(shape, sigma):
    m, n = (np.array(shape) - 1) / 2
    y, x = np.ogrid[-m:m + 1, -n:n + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def cwssim_index_reference(img1, img2, level, orientations, guardb=0, k=0.0):
    """Literal port of cwssim_index.m (grey float images)."""
    pyr1 = _build_scf_pyr(img1, level, orientations - 1)
    pyr2 = _build_scf_pyr(img2, level, orientations - 1)
    window = np.ones((7, 7)) / 49
    gb = guardb // 2 ** (level - 1)
    s = np.array(pyr1[level - 1][0].shape)
    w = _fspecial_gaussian(s - 7 + 1, s[0] / 4)
    scores = []
    for i in range(orientations):
        band1, band2 = pyr1[level - 1][i], pyr2[level - 1][i]
        if gb:
            band1, band2 = band1[gb:-gb, gb:-gb], band2[gb:-gb, gb:-gb]
        corr = band1 * np.conj(band2)
        varr = np.abs(band1) ** 2 + np.abs(band2) ** 2
        corr_band = signal.correlate2d(corr, window, mode="valid")
        varr_band = signal.correlate2d(varr, window, mode="valid")
        cssim_map = (2 * np.abs(corr_band) + k) / (varr_band + k)
        scores.append((cssim_map * w).sum())
    return float(np.mean(scores))


# -------------------------------------------------------------------------------- CW-SSIM
def test_cw_ssim_of_identical_images_is_one(astronaut):
    crops = torch.cat([astronaut[..., :256, :256], astronaut[..., 200:456, 150:406]])
    assert torch.allclose(cw_ssim(crops, crops), torch.ones(2, dtype=crops.dtype), atol=1e-9)
    scaled = cw_ssim(crops * 255, crops * 255, data_range=255.0)
    assert torch.allclose(scaled, torch.ones(2, dtype=crops.dtype), atol=1e-9)
    assert torch.allclose(cw_ssim(crops.float(), crops.float()), torch.ones(2), atol=1e-5)


def test_cw_ssim_decreases_with_noise(astronaut):
    reference = astronaut[..., 100:356, 100:356]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(reference.shape, generator=generator, dtype=reference.dtype)
    levels = [0.02, 0.05, 0.1, 0.2]
    distorted = torch.cat([(reference + s * noise).clamp(0, 1) for s in levels])
    scores = cw_ssim(reference.expand_as(distorted), distorted)
    assert scores.shape == (4,)
    assert torch.all(scores < 1)
    assert torch.all(scores[1:] < scores[:-1]), scores


def test_cw_ssim_tolerates_a_small_translation_that_ssim_punishes(astronaut):
    reference = astronaut[..., 100:356, 100:356]
    shifted = astronaut[..., 100:356, 102:358]  # the same scene moved by 2 pixels
    generator = torch.Generator().manual_seed(1)
    noisy = (reference + 0.08 * torch.randn(reference.shape, generator=generator,
                                            dtype=reference.dtype)).clamp(0, 1)
    assert ((noisy - reference) ** 2).mean() < ((shifted - reference) ** 2).mean()

    def ssim(a, b):
        return structural_similarity(_grey255(a), _grey255(b), data_range=255,
                                     gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)

    # The release's help-example setting (6 scales, 16 orientations) is the one with the
    # published shift tolerance; the coarsest of four scales is less tolerant.
    cw_shift, cw_noise = cw_ssim(reference.repeat(2, 1, 1, 1), torch.cat([shifted, noisy]),
                                 levels=6, orientations=16)
    # The point of CW-SSIM: a 2-pixel translation costs it a hundredth of what it costs SSIM,
    # and it ranks the translation above noise of smaller mean squared error.
    assert 1 - cw_shift < 0.01 * (1 - ssim(reference, shifted))
    assert cw_shift > cw_noise


@pytest.mark.parametrize(("size", "levels", "orientations", "guard"), [
    ((256, 256), 6, 16, 0),   # the reference settings
    ((96, 128), 4, 8, 0),
    ((101, 131), 3, 5, 0),    # odd sizes: the pyramid's crops differ
    ((128, 128), 3, 16, 8),   # a guard band of 8 pixels = 2 sub-band pixels
])
def test_cw_ssim_matches_literal_port_of_the_matlab_code(astronaut, size, levels,
                                                         orientations, guard):
    rows, cols = size
    reference = astronaut[..., 60:60 + rows, 90:90 + cols]
    generator = torch.Generator().manual_seed(2)
    distorted = _as_file((reference + 0.05 * torch.randn(reference.shape, generator=generator,
                                                         dtype=reference.dtype)).clamp(0, 1))
    # The literal port is fed exactly what the release is fed: rgb2gray of uint8 files.
    ours = cw_ssim(reference, distorted, levels=levels, orientations=orientations,
                   guard_band=guard).item()
    if guard:  # cwssim_index.m sizes its weights from the uncut band, so it only runs with 0;
        # compare the cut bands against a port that weights them the same way as we do.
        theirs = _cwssim_cut_reference(_grey255(reference), _grey255(distorted), levels,
                                       orientations, guard)
    else:
        theirs = cwssim_index_reference(_grey255(reference), _grey255(distorted), levels,
                                        orientations)
    assert ours == pytest.approx(theirs, abs=1e-5)  # lookup-table interpolation: < 1e-6
    assert ours < 1


def _cwssim_cut_reference(img1, img2, level, orientations, guardb):
    pyr1 = _build_scf_pyr(img1, level, orientations - 1)
    pyr2 = _build_scf_pyr(img2, level, orientations - 1)
    gb = guardb // 2 ** (level - 1)
    sigma = pyr1[level - 1][0].shape[0] / 4
    scores = []
    for band1, band2 in zip(pyr1[level - 1], pyr2[level - 1], strict=True):
        band1, band2 = band1[gb:-gb, gb:-gb], band2[gb:-gb, gb:-gb]
        corr = signal.correlate2d(band1 * np.conj(band2), np.ones((7, 7)) / 49, mode="valid")
        varr = signal.correlate2d(np.abs(band1) ** 2 + np.abs(band2) ** 2,
                                  np.ones((7, 7)) / 49, mode="valid")
        scores.append((2 * np.abs(corr) / varr * _fspecial_gaussian(corr.shape, sigma)).sum())
    return float(np.mean(scores))


def test_cw_ssim_gradient_matches_finite_differences(astronaut):
    reference = astronaut[..., 200:456, 200:456]
    generator = torch.Generator().manual_seed(3)
    distorted = (reference + 0.05 * torch.randn(reference.shape, generator=generator,
                                                dtype=reference.dtype)).clamp(0.01, 0.99)
    distorted.requires_grad_(True)
    cw_ssim(reference, distorted, conversion=SMOOTH).sum().backward()
    gradient = distorted.grad
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    step = 1e-4
    for seed in (4,):
        direction = torch.randn(distorted.shape, generator=torch.Generator().manual_seed(seed),
                                dtype=distorted.dtype) * 0.01
        with torch.no_grad():
            plus = cw_ssim(reference, distorted + step * direction, conversion=SMOOTH)
            minus = cw_ssim(reference, distorted - step * direction, conversion=SMOOTH)
        numeric = ((plus - minus) / (2 * step)).item()
        assert (gradient * direction).sum().item() == pytest.approx(numeric, rel=1e-5, abs=1e-12)


def test_cw_ssim_gradcheck_on_a_small_image():
    generator = torch.Generator().manual_seed(6)
    reference = torch.rand(1, 1, 16, 16, generator=generator, dtype=torch.float64) * 0.8 + 0.1
    distorted = (reference + 0.05 * torch.rand(reference.shape, generator=generator,
                                               dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: cw_ssim(reference, x, levels=2, orientations=4, conversion=SMOOTH),
        (distorted,),
        fast_mode=True)


def test_cw_ssim_module_and_errors(astronaut):
    reference = astronaut[..., :256, :256]
    distorted = astronaut[..., 1:257, :256]
    module = CWSSIM(levels=5)
    assert module(distorted, reference).item() == pytest.approx(
        cw_ssim(reference, distorted, levels=5).item(), abs=1e-12)
    small_reference, small_distorted = reference[..., :224, :224], distorted[..., :224, :224]
    with pytest.raises(ValueError, match=r"levels=6 needs images of at least 256×256.*levels=5"):
        cw_ssim(small_reference, small_distorted, levels=6)
    # By default: four scales and eight orientations (the benchmark setting) when the size
    # allows, else as many scales as it allows.
    assert cw_ssim(reference, distorted).item() == pytest.approx(
        cw_ssim(reference, distorted, levels=4, orientations=8).item(), abs=1e-12)
    assert cw_ssim(reference[..., :40, :40], distorted[..., :40, :40]).item() == pytest.approx(
        cw_ssim(reference[..., :40, :40], distorted[..., :40, :40], levels=3).item(),
        abs=1e-12)
    assert cw_ssim(reference[..., :8, :8], distorted[..., :8, :8]).shape == (1,)
    with pytest.raises(ValueError, match="at least 8×8"):
        cw_ssim(reference[..., :7, :7], distorted[..., :7, :7])
    with pytest.raises(ValueError, match="orientations"):
        cw_ssim(reference, distorted, orientations=17)
    with pytest.raises(ValueError, match="differ"):
        cw_ssim(reference, distorted[..., :255])
    with pytest.raises(ValueError, match="clamp=True"):
        cw_ssim(reference, distorted + 0.5)


# ---------------------------------------------------------------- MATLAB-literal PIQE port
def piqe_reference(image: np.ndarray) -> float:
    """Loop-by-loop port of MATLAB's piqe.m; (H, W) or (H, W, 3) floats in [0, 1]."""
    image = np.asarray(image, dtype=np.float64)
    rows, cols = image.shape[:2]
    pad = ((0, -rows % 16), (0, -cols % 16)) + (((0, 0),) if image.ndim == 3 else ())
    image = np.pad(image, pad, mode="edge")  # padarray(..., 'replicate', 'post')
    if image.ndim == 3:
        image = image @ np.array(GRAY_WEIGHTS)  # rgb2gray
    image = np.floor(255 * image + 0.5)  # round(255 * im2double(I))
    x = np.arange(-3, 4)
    kernel = np.exp(-(x**2) / (2 * (7 / 6) ** 2))
    kernel = np.outer(kernel, kernel) / np.outer(kernel, kernel).sum()
    mu = ndimage.correlate(image, kernel, mode="nearest")
    sigma = np.sqrt(np.abs(ndimage.correlate(image * image, kernel, mode="nearest") - mu * mu))
    imnorm = (image - mu) / (sigma + 1)
    total, active = 0.0, 0
    for i in range(0, imnorm.shape[0], 16):
        for j in range(0, imnorm.shape[1], 16):
            block = imnorm[i:i + 16, j:j + 16]
            variance = np.var(block, ddof=1)
            if not variance > 0.1:
                continue
            active += 1
            impaired = any(np.std(edge[s:s + 6], ddof=1) < 0.1
                           for edge in (block[0, :], block[:, 15], block[15, :], block[:, 0])
                           for s in range(11))
            block_sigma = np.sqrt(variance)
            centre = np.concatenate([block[:, 7], block[:, 8]])
            surround = np.delete(np.delete(block, 7, axis=1), 8, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.std(centre, ddof=1) / np.std(surround, ddof=1)
                ratio = 0.0 if np.isnan(ratio) else ratio
                beta = abs(block_sigma - ratio) / max(block_sigma, ratio)
            noisy = block_sigma > 2 * beta
            total += impaired * (1 - variance) + noisy * variance
    return (total + 1) / (1 + active) * 100


@pytest.fixture(scope="module")
def piqe_images():
    rng = np.random.default_rng(0)
    astronaut = data.astronaut()[40:243, 100:397] / 255  # 203×297: padded on both axes
    coffee = data.coffee()[:208, 100:356] / 255
    return {
        "astronaut": astronaut,
        "astronaut noisy": np.clip(astronaut + rng.normal(0, 0.05, astronaut.shape), 0, 1),
        "astronaut blurred": filters.gaussian(astronaut, sigma=2, channel_axis=-1),
        "coffee": coffee,
        "camera (grey)": data.camera()[100:260, 50:290] / 255,
    }


def test_piqe_matches_literal_port_of_piqe_m(piqe_images):
    for name, image in piqe_images.items():
        ours = piqe(_tensor(image)).item()
        assert ours == pytest.approx(piqe_reference(image), abs=1e-8), name


def test_piqe_is_worse_for_noise_and_blur_on_a_photo(astronaut):
    generator = torch.Generator().manual_seed(7)
    noisy = (astronaut + 0.1 * torch.randn(astronaut.shape, generator=generator,
                                           dtype=astronaut.dtype)).clamp(0, 1)
    blurred = _tensor(filters.gaussian(data.astronaut() / 255, sigma=2, channel_axis=-1))
    scores = piqe(torch.cat([astronaut, noisy, blurred]))
    assert scores.shape == (3,)
    assert 0 <= scores[0] < 40  # "excellent"/"good" on MATLAB's scale
    assert scores[1] > scores[0] + 10
    assert scores[2] > scores[0] + 30


def test_piqe_batch_scale_and_grey_conventions(piqe_images):
    images = torch.cat([_tensor(piqe_images["astronaut"])[..., :203, :256],
                        _tensor(piqe_images["coffee"])[..., :203, :256]])
    batch = piqe(images)
    single = torch.cat([piqe(images[:1]), piqe(images[1:])])
    assert torch.equal(batch, single)
    assert torch.allclose(piqe(images * 255, data_range=255.0), batch, atol=1e-9)
    assert piqe(images.float()).dtype == torch.float32
    assert PIQE()(images).tolist() == batch.tolist()
    flat = torch.full((1, 3, 40, 40), 0.5)
    assert piqe(flat).item() == pytest.approx(100.0)  # piqe.m: a uniform image scores 100
    with pytest.raises(ValueError, match="clamp=True"):
        piqe(images + 0.1)


def test_piqe_masks(piqe_images):
    image = _tensor(piqe_images["astronaut noisy"])
    result = piqe_result(image)
    assert result.activity_mask.shape == (1, 203, 297)
    assert result.activity_mask.dtype == torch.bool
    assert result.activity_mask.any() and result.noise_mask.any()
    for mask in (result.artifacts_mask, result.noise_mask):
        assert not (mask & ~result.activity_mask).any()
    # block-constant: every 16×16 block is all in or all out
    active = result.activity_mask[0, :192, :288].reshape(12, 16, 18, 16)
    assert torch.equal(active.all(dim=(1, 3)), active.any(dim=(1, 3)))


def test_piqe_gradient_flows_through_block_scores(piqe_images):
    image = _tensor(piqe_images["astronaut noisy"]).clamp(0.01, 0.99).requires_grad_(True)
    piqe(image, quantize=False).sum().backward()
    gradient = image.grad
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    # A step too small to move any block across a threshold: the score is smooth there.
    step = 1e-7
    direction = torch.randn(image.shape, generator=torch.Generator().manual_seed(8),
                            dtype=image.dtype)
    with torch.no_grad():
        plus = piqe(image + step * direction, quantize=False)
        minus = piqe(image - step * direction, quantize=False)
    numeric = ((plus - minus) / (2 * step)).item()
    assert (gradient * direction).sum().item() == pytest.approx(numeric, rel=1e-4)
    # With MATLAB's integer rounding the gradient passes straight through it.
    image.grad = None
    piqe(image).sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
