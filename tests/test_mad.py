"""MAD (Larson & Chandler 2010) against an independent, MATLAB-literal numpy reference.

No MATLAB output of ``MAD_index.m`` on an image available offline has been published
(pyiqa's calibration table marks its MAD row as its own port: "the original MAD
matlab script is not available"). The parity tests therefore compare
:func:`advqa.quality.mad.mad` with ``_matlab_mad`` below: a plain numpy/scipy
transcription of ``MAD_index.m`` (2011), ``ical_std.c`` and ``ical_stat.c``,
statement by statement — meshgrid/fftshift grids, explicit block loops writing the
4×4 top-left pixels, two-pass moments, MATLAB's ``find``-based threshold branches,
``filter2`` as a zero-padded sliding sum — sharing no code with the module.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from skimage import data as skdata

from advqa.quality.mad import BETA1, BETA2, MAD, MIN_SIZE, _blend, mad, mad_components

# ---------------------------------------------------------------------------
# MATLAB-literal reference (double precision, loops over blocks)
# ---------------------------------------------------------------------------


def _colon(start, stop):
    """MATLAB's ``start:stop`` (step 1)."""
    count = math.floor(stop - start + 1e-9) + 1
    return start + np.arange(max(count, 0), dtype=float)


def _matlab_make_csf(x, y, nfreq):
    xplane, yplane = np.meshgrid(_colon(-x / 2 + 0.5, x / 2 - 0.5),
                                 _colon(-y / 2 + 0.5, y / 2 - 0.5))
    plane = (xplane + 1j * yplane) / y * 2 * nfreq
    radfreq = np.abs(plane)
    w = 0.7
    s = (1 - w) / 2 * np.cos(4 * np.angle(plane)) + (1 + w) / 2
    radfreq = radfreq / s
    csf = 2.6 * (0.0192 + 0.114 * radfreq) * np.exp(-((0.114 * radfreq) ** 1.1))
    csf[radfreq < 7.8909] = 0.9809
    return csf


def _matlab_ical_std(x, y):
    """[std_2 std_1 m1_1] = ical_std(x, y): loops as in the C file (rows, cols swapped)."""
    rows, cols = x.shape
    out_std, out_mod, out_mean, tmp = (np.zeros_like(x) for _ in range(4))
    for i in range(0, cols - 15, 4):
        for j in range(0, rows - 15, 4):
            bx, by = x[j:j + 16, i:i + 16], y[j:j + 16, i:i + 16]
            mean = bx.sum() / 256.0
            mean2 = by.sum() / 256.0
            stdev = math.sqrt(((bx - mean) ** 2).sum() / 255.0)
            out_mean[j:j + 4, i:i + 4] = mean2
            out_std[j:j + 4, i:i + 4] = stdev
    for i in range(0, cols - 15, 4):
        for j in range(0, rows - 15, 4):
            by = y[j:j + 8, i:i + 8]
            mean = by.sum() / 64.0
            stdev = math.sqrt(((by - mean) ** 2).sum() / 63.0)
            tmp[j:j + 4, i:i + 4] = stdev
            out_mod[j:j + 4, i:i + 4] = stdev
    for i in range(0, cols - 15, 4):
        for j in range(0, rows - 15, 4):
            low = tmp[j, i]
            for ib in range(i, i + 8, 5):
                for jb in range(j, j + 8, 5):
                    if ib < cols - 15 and jb < rows - 15 and low > tmp[jb, ib]:
                        low = tmp[jb, ib]
            out_mod[j:j + 4, i:i + 4] = low
    return out_std, out_mod, out_mean


def _matlab_ical_stat(x):
    """[std skw krt] = ical_stat(x)."""
    rows, cols = x.shape
    out_std, out_skw, out_krt = (np.zeros_like(x) for _ in range(3))
    for i in range(0, cols - 15, 4):
        for j in range(0, rows - 15, 4):
            block = x[j:j + 16, i:i + 16]
            mean = block.sum() / 256.0
            stdev = ((block - mean) ** 2).sum()
            skw = ((block - mean) ** 3).sum()
            krt = ((block - mean) ** 4).sum()
            stmp = math.sqrt(stdev / 256.0)
            stdev = math.sqrt(stdev / 255.0)
            if stmp != 0:
                skw = (skw / 256.0) / stmp**3
                krt = (krt / 256.0) / stmp**4
            else:
                skw = krt = 0.0
            out_std[j:j + 4, i:i + 4] = stdev
            out_skw[j:j + 4, i:i + 4] = skw
            out_krt[j:j + 4, i:i + 4] = krt
    return out_std, out_skw, out_krt


def _matlab_filter2_box(x, size):
    """filter2(ones(size)/size^2, x, 'same'): zero padding, window p−(size/2−1) … p+size/2."""
    rows, cols = x.shape
    before, after = (size - 1) // 2, size // 2
    padded = np.pad(x, ((before, after), (before, after)))
    total = np.zeros_like(x)
    for a in range(size):
        for b in range(size):
            total += padded[a:a + rows, b:b + cols]
    return total / size**2


def _matlab_hi_index(ref_img, dst_img):
    k, G, C_slope, Ci_thrsh, Cd_thrsh, ms_scale = 0.02874, 0.5, 1, -5, -5, 1
    ref = k * ref_img ** (2.2 / 3)
    dst = k * dst_img ** (2.2 / 3)
    M, N = ref.shape
    csf = _matlab_make_csf(M, N, 32).T
    fft, sh, ish = np.fft, np.fft.fftshift, np.fft.ifftshift
    ref = np.real(fft.ifft2(ish(sh(fft.fft2(ref)) * csf)))
    dst = np.real(fft.ifft2(ish(sh(fft.fft2(dst)) * csf)))
    std_2, std_1, m1_1 = _matlab_ical_std(dst - ref, ref)
    BSIZE = 16
    with np.errstate(divide="ignore", invalid="ignore"):
        Ci_ref = np.log(std_1 / m1_1)
        Ci_dst = np.log(std_2 / m1_1)
    Ci_dst[m1_1 < G] = -np.inf
    msk = np.zeros(Ci_dst.shape)
    with np.errstate(invalid="ignore"):
        idx1 = (Ci_ref > Ci_thrsh) & (Ci_dst > (C_slope * (Ci_ref - Ci_thrsh) + Cd_thrsh))
        idx2 = (Ci_ref <= Ci_thrsh) & (Ci_dst > Cd_thrsh)
    msk[idx1] = (Ci_dst[idx1] - (C_slope * (Ci_ref[idx1] - Ci_thrsh) + Cd_thrsh)) / ms_scale
    msk[idx2] = (Ci_dst[idx2] - Cd_thrsh) / ms_scale
    lmse = _matlab_filter2_box((ref_img - dst_img) ** 2, BSIZE)
    mp = msk * lmse
    mp2 = mp[BSIZE:M - BSIZE - 1, BSIZE:N - BSIZE - 1]
    return np.linalg.norm(mp2.ravel(), 2) / math.sqrt(mp2.size) * 200


def _matlab_gaborconvolve(im):
    nscale, norient, minWaveLength, mult, sigmaOnf = 5, 4, 3, 3, 0.55
    wavelength = [minWaveLength * mult**p for p in range(5)]
    dThetaOnSigma = 1.5
    rows, cols = im.shape
    imagefft = np.fft.fft2(im)
    x = np.ones((rows, 1)) @ (_colon(-cols / 2, cols / 2 - 1)[None, :] / (cols / 2))
    y = (_colon(-rows / 2, rows / 2 - 1)[:, None] @ np.ones((1, cols))) / (rows / 2)
    radius = np.sqrt(x**2 + y**2)
    r0, c0 = int(np.floor(rows / 2 + 1 + 0.5)) - 1, int(np.floor(cols / 2 + 1 + 0.5)) - 1
    radius[r0, c0] = 1
    radius = np.log(radius)
    theta = np.arctan2(-y, x)
    sintheta, costheta = np.sin(theta), np.cos(theta)
    thetaSigma = np.pi / norient / dThetaOnSigma
    logGabors = []
    for s in range(nscale):
        fo = 1.0 / wavelength[s]
        rfo = fo / 0.5
        tmp = -(2 * np.log(sigmaOnf) ** 2)
        tmp2 = np.log(rfo)
        lg = np.exp((radius - tmp2) ** 2 / tmp)
        lg[r0, c0] = 0
        logGabors.append(lg)
    EO = [[None] * norient for _ in range(nscale)]
    for o in range(norient):
        angl = o * np.pi / norient
        ds = sintheta * np.cos(angl) - costheta * np.sin(angl)
        dc = costheta * np.cos(angl) + sintheta * np.sin(angl)
        dtheta = np.abs(np.arctan2(ds, dc))
        spread = np.exp((-dtheta**2) / (2 * thetaSigma**2))
        for s in range(nscale):
            filt = np.fft.fftshift(logGabors[s] * spread)
            EO[s][o] = np.fft.ifft2(imagefft * filt)
    return EO


def _matlab_lo_index(ref, dst):
    gabRef, gabDst = _matlab_gaborconvolve(ref), _matlab_gaborconvolve(dst)
    M, N = ref.shape
    s = np.array([0.5, 0.75, 1, 5, 6])
    s = s / s.sum()
    mp = np.zeros((M, N))
    BSIZE = 16
    for gb_i in range(5):
        for gb_j in range(4):
            std_r, skw_r, krt_r = _matlab_ical_stat(np.abs(gabRef[gb_i][gb_j]))
            std_d, skw_d, krt_d = _matlab_ical_stat(np.abs(gabDst[gb_i][gb_j]))
            mp = mp + s[gb_i] * (np.abs(std_r - std_d) + 2 * np.abs(skw_r - skw_d)
                                 + np.abs(krt_r - krt_d))
    mp2 = mp[BSIZE:M - BSIZE - 1, BSIZE:N - BSIZE - 1]
    return np.linalg.norm(mp2.ravel(), 2) / math.sqrt(mp2.size)


def _matlab_mad(ref, dst):
    """index.MAD, index.HI, index.LO for grey images (double, 0–255)."""
    hi = _matlab_hi_index(ref, dst)
    lo = _matlab_lo_index(ref, dst)
    thresh1, thresh2 = 2.55, 3.35
    b1 = math.exp(-thresh1 / thresh2)
    b2 = 1 / (math.log(10) * thresh2)
    sig = 1 / (1 + b1 * hi**b2)
    return lo ** (1 - sig) * hi**sig, hi, lo


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small images: one intra-op thread is as fast, and far steadier on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------
# Images (scikit-image's bundled photographs; nothing is downloaded)
# ---------------------------------------------------------------------------

# MATLAB's rgb2gray weights, derived as rgb2gray.m does (first row of the inverse NTSC
# transform), independently of advqa.quality.validate.GRAY_WEIGHTS.
_RGB2GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621],
                                    [1.0, -0.272, -0.647],
                                    [1.0, -1.106, 1.703]]))[0]


def _photo(name, top, left, height, width):
    """A crop of a bundled photo as (H, W) or (H, W, 3) float64 on 0–255."""
    image = getattr(skdata, name)().astype(np.float64)
    return image[top:top + height, left:left + width]


def _tensor(image, data_range=1.0):
    """(H, W[, 3]) 0–255 numpy → (1, C, H, W) float64 tensor on [0, data_range]."""
    array = image[None, None] if image.ndim == 2 else image.transpose(2, 0, 1)[None]
    return torch.from_numpy(np.ascontiguousarray(array)) * (data_range / 255.0)


def _grey(image):
    """What ``double(rgb2gray(imread(file)))`` gives for a uint8 file: whole grey levels.

    MATLAB's uint8 conversion rounds halves away from zero (all values are ≥ 0 here).
    """
    return np.floor((image if image.ndim == 2 else image @ _RGB2GRAY) + 0.5)


def _as_file(image):
    """The image as a uint8 file holds it (rounded, clipped), on 0–255 in float64."""
    return np.clip(np.floor(image + 0.5), 0, 255)


def _noisy(image, sigma, seed=0):
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(image + noise, 0.0, 255.0)


def _blurred(image, sigma):
    from scipy.ndimage import gaussian_filter

    spatial = (sigma, sigma) + (0,) * (image.ndim - 2)
    return gaussian_filter(image, spatial, mode="reflect")


# ---------------------------------------------------------------------------
# Parity with the MATLAB-literal reference
# ---------------------------------------------------------------------------

PARITY_CASES = {
    # name: (photo crop, distortion); sizes cover M < N, M > N (the CSF's column-count
    # normalisation), odd sizes (grids off centre), and (size − 16) % 4 == 0 (ical_std's
    # last-block rule).
    "camera-96x128-noise": (("camera", 100, 150, 96, 128), lambda x: _noisy(x, 10.0)),
    "astronaut-128x96-blur": (("astronaut", 60, 180, 128, 96), lambda x: _blurred(x, 1.5)),
    "chelsea-77x101-quantised": (("chelsea", 0, 0, 77, 101),
                                 lambda x: np.round(x / 24.0) * 24.0),
    "coffee-34x35-noise": (("coffee", 150, 250, 34, 35), lambda x: _noisy(x, 20.0, seed=3)),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_parity_with_matlab_transcription(case):
    crop, distort = PARITY_CASES[case]
    reference = _photo(*crop)
    distorted = _as_file(distort(reference))
    # Fed exactly what the release is fed: uint8 files through rgb2gray.
    expected_mad, expected_hi, expected_lo = _matlab_mad(_grey(reference), _grey(distorted))
    assert expected_mad > 0

    got = mad_components(_tensor(reference), _tensor(distorted))
    assert got.mad.dtype == torch.float64
    # float64 agrees to rounding (the one deviation in play, the 1e-6 floor under black
    # pixels, moves d_detect by ~1e-8 relative); the bar is 0.5 %.
    np.testing.assert_allclose(got.d_detect.item(), expected_hi, rtol=1e-6)
    np.testing.assert_allclose(got.d_appear.item(), expected_lo, rtol=1e-6)
    np.testing.assert_allclose(got.mad.item(), expected_mad, rtol=1e-6)

    single = mad(_tensor(reference).float(), _tensor(distorted).float())
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.item(), expected_mad, rtol=1e-4)


def test_dark_regions_are_invisible_to_detection_as_in_matlab():
    # Blocks whose filtered mean luminance is below G = 0.5 (grey ≈ 49) carry no
    # visibility, so a dark photo with visible noise scores d_detect = 0 and MAD = 0.
    reference = _as_file(_photo("camera", 0, 0, 48, 64) * 0.15)
    distorted = _as_file(_noisy(reference, 3.0))
    expected_mad, expected_hi, expected_lo = _matlab_mad(reference, distorted)
    got = mad_components(_tensor(reference), _tensor(distorted))
    assert expected_hi == 0 and expected_mad == 0 and expected_lo > 0
    assert got.d_detect.item() == 0 and got.mad.item() == 0 and got.alpha.item() == 1
    np.testing.assert_allclose(got.d_appear.item(), expected_lo, rtol=1e-6)


# ---------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------


def test_identical_images_score_zero_with_finite_gradient():
    image = _photo("astronaut", 40, 200, 48, 64)
    assert _matlab_mad(_grey(image), _grey(image))[0] == 0  # the original gives 0 too
    reference = _tensor(image)
    distorted = reference.clone().requires_grad_(True)
    got = mad_components(reference, distorted)
    assert got.mad.item() == 0 and got.d_detect.item() == 0 and got.d_appear.item() == 0
    assert got.alpha.item() == 1
    got.mad.sum().backward()
    assert torch.isfinite(distorted.grad).all()


def test_more_noise_scores_higher():
    reference = _photo("astronaut", 20, 20, 96, 128)
    sigmas = [5.0, 10.0, 20.0, 40.0, 80.0]
    distorted = torch.cat([_tensor(_noisy(reference, s, seed=1)) for s in sigmas]).float()
    scores = mad(_tensor(reference).float().expand_as(distorted), distorted)
    assert scores.shape == (len(sigmas),)
    assert (scores > 0).all()
    assert (scores[1:] > scores[:-1]).all(), scores


def test_batch_equals_one_by_one():
    crops = [("camera", 10, 20, 64, 80), ("coffee", 100, 200, 64, 80),
             ("chelsea", 50, 60, 64, 80)]
    references = torch.cat([_tensor(_grey(_photo(*c))) for c in crops])
    distorted = torch.cat([_tensor(_noisy(_grey(_photo(*c)), 4.0 * (i + 1), seed=i))
                           for i, c in enumerate(crops)])
    batched = mad(references, distorted)
    singles = torch.cat([mad(references[i:i + 1], distorted[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, rtol=1e-12, atol=0)
    assert len(set(batched.tolist())) == 3


def test_module_argument_order_and_data_range():
    reference = _photo("coffee", 80, 120, 48, 64)
    distorted = _blurred(reference, 2.0)
    expected = mad(_tensor(reference), _tensor(distorted))
    module = MAD(data_range=255.0)
    got = module(_tensor(distorted, 255.0), _tensor(reference, 255.0))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    swapped = mad(_tensor(distorted), _tensor(reference))
    assert not torch.allclose(swapped, expected, rtol=1e-3)  # the order matters


def _without_nyquist(image):
    """Drop the Nyquist row and column of the spectrum (even sizes)."""
    spectrum = np.fft.fft2(image)
    spectrum[image.shape[0] // 2, :] = 0
    spectrum[:, image.shape[1] // 2] = 0
    return np.real(np.fft.ifft2(spectrum))


@pytest.mark.parametrize("shape", [(64, 64), (64, 96)])
def test_transposition(shape):
    # Exact invariance: the block grid, the crop and the filter bank map onto themselves
    # under transposition (0° ↔ 90° and 45° ↔ 135°+180°, a filter and its point mirror
    # giving equal magnitudes on real images) except on the Nyquist row and column,
    # which the images are cleared of. The CSF divides both axes by the column count,
    # so d_detect is transposition-invariant for square images only (as in MATLAB).
    reference = 40.0 + 0.6 * _grey(_photo("astronaut", 200, 300, *shape))
    distorted = _noisy(reference, 6.0, seed=2)
    reference, distorted = _without_nyquist(reference), _without_nyquist(distorted)
    assert reference.min() >= 0 and max(reference.max(), distorted.max()) <= 255
    distorted = np.clip(distorted, 0, 255)
    assert np.abs(_without_nyquist(distorted) - distorted).max() < 1e-9  # nothing clipped

    # Unrounded grey levels: rounding is not transposition-invariant near halves.
    straight = mad_components(_tensor(reference), _tensor(distorted),
                              conversion="rgb2gray-double")
    transposed = mad_components(_tensor(reference.T.copy()), _tensor(distorted.T.copy()),
                                conversion="rgb2gray-double")
    assert straight.d_appear.item() > 0 and straight.d_detect.item() > 0
    np.testing.assert_allclose(transposed.d_appear.item(), straight.d_appear.item(),
                               rtol=1e-10)
    if shape[0] == shape[1]:
        np.testing.assert_allclose(transposed.d_detect.item(), straight.d_detect.item(),
                                   rtol=1e-10)
        np.testing.assert_allclose(transposed.mad.item(), straight.mad.item(), rtol=1e-10)
    else:
        ratio = transposed.d_detect.item() / straight.d_detect.item()
        assert abs(ratio - 1) > 1e-3


def test_blend_constants_and_zero_indices():
    assert abs(BETA1 - 0.467) < 5e-4 and abs(BETA2 - 0.130) < 5e-4
    detect = torch.tensor([0.0, 0.0, 7.0, 2500.0], dtype=torch.float64, requires_grad=True)
    appear = torch.tensor([0.0, 1.5, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    value, alpha = _blend(detect, appear)
    alpha_last = 1 / (1 + BETA1 * 2500.0**BETA2)
    expected_last = 2.0 ** (1 - alpha_last) * 2500.0**alpha_last
    torch.testing.assert_close(value.detach(), torch.tensor([0, 0, 0, expected_last],
                                                            dtype=torch.float64))
    assert alpha[0].item() == 1 and alpha[1].item() == 1
    value.sum().backward()
    assert torch.isfinite(detect.grad).all() and torch.isfinite(appear.grad).all()


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------


SMOOTH = "rgb2gray-double"


def test_default_is_mad_of_rounded_grey_with_a_straight_through_gradient():
    reference = _photo("coffee", 150, 250, 36, 40)
    distorted = _as_file(_noisy(reference, 12.0, seed=1))
    colour = _tensor(distorted).requires_grad_(True)
    value = mad(_tensor(reference), colour)
    value.backward()
    # The release's input: whole grey levels of the uint8 files.
    grey = _tensor(_grey(distorted)).requires_grad_(True)
    expected = mad(_tensor(_grey(reference)), grey)
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    for channel, weight in enumerate(_RGB2GRAY):
        np.testing.assert_allclose(colour.grad[0, channel].numpy(),
                                   weight * grey.grad[0, 0].numpy(), rtol=1e-9, atol=1e-15)


def test_gradcheck_double():
    reference = _tensor(_photo("coffee", 150, 250, 36, 40)).clamp(0.05, 0.95)
    distorted = (reference + 0.04 * torch.randn(reference.shape, dtype=torch.float64,
                                                generator=torch.Generator().manual_seed(0)))
    distorted = distorted.clamp(0.01, 0.99).requires_grad_(True)
    # The unrounded index: the default's rounding passes this same gradient straight
    # through, and finite differences of a rounded image are 0.
    parts = mad_components(reference, distorted, conversion=SMOOTH)
    assert parts.d_detect.item() > 0 and parts.d_appear.item() > 0  # both paths active
    assert torch.autograd.gradcheck(lambda d: mad(reference, d, conversion=SMOOTH),
                                    (distorted,), eps=1e-6,
                                    atol=1e-6, rtol=1e-3, fast_mode=True)


def test_gradient_matches_finite_differences_and_survives_black_and_white():
    reference = _tensor(_photo("chelsea", 0, 0, 40, 48))
    distorted = _tensor(_noisy(_photo("chelsea", 0, 0, 40, 48), 15.0, seed=4))
    distorted[..., 20, 5:15] = 0.0  # black and white pixels in the distorted image
    distorted[..., 22, 5:15] = 1.0
    variable = distorted.clone().requires_grad_(True)
    mad(reference, variable, conversion=SMOOTH).sum().backward()
    grad = variable.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    step = 1e-6
    for channel, row, col in [(0, 18, 20), (1, 25, 30), (2, 30, 12)]:
        bumped_up, bumped_down = distorted.clone(), distorted.clone()
        bumped_up[0, channel, row, col] += step
        bumped_down[0, channel, row, col] -= step
        numeric = (mad(reference, bumped_up, conversion=SMOOTH)
                   - mad(reference, bumped_down, conversion=SMOOTH)).item() / (2 * step)
        analytic = grad[0, channel, row, col].item()
        assert abs(analytic) > 1e-6
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-7)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes():
    a, b = torch.rand(1, 3, 40, 48), torch.rand(1, 3, 48, 40)
    with pytest.raises(ValueError, match=r"\(1, 3, 40, 48\).*\(1, 3, 48, 40\)"):
        mad(a, b)


def test_too_small():
    assert MIN_SIZE == 34
    mad(torch.rand(1, 1, 34, 34), torch.rand(1, 1, 34, 34))
    with pytest.raises(ValueError, match="34×34"):
        mad(torch.rand(1, 1, 33, 64), torch.rand(1, 1, 33, 64))


def test_nan_and_range():
    good = torch.rand(1, 1, 40, 40)
    bad = good.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        mad(good, bad)
    with pytest.raises(ValueError, match="NaN"):
        mad(bad, good, clamp=True)
    over = good * 1.5
    with pytest.raises(ValueError, match="clamp=True"):
        mad(good, over)
    clamped = mad(good, over, clamp=True)
    torch.testing.assert_close(clamped, mad(good, over.clamp(0, 1)))


def test_speed_budget():
    # One 96×128 RGB pair forward and backward; generous bound for a shared 2-core box.
    reference = _tensor(_photo("astronaut", 0, 0, 96, 128)).float()
    distorted = _tensor(_noisy(_photo("astronaut", 0, 0, 96, 128), 8.0)).float()
    distorted.requires_grad_(True)
    start = time.perf_counter()
    mad(reference, distorted).sum().backward()
    assert time.perf_counter() - start < 10.0
