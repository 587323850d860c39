"""VIF (Sheikh & Bovik 2006, ``vifvec.m``) against a MATLAB-literal NumPy transcription.

``_matlab_vifvec`` below transcribes, statement by statement and sharing no code with
:mod:`advqa.quality.vif`, the release ``vifvec.m`` with ``vifsub_est_M.m``,
``refparams_vecgsm.m`` and ``ind2wtree.m``, and the matlabPyrTools it calls:
``buildSpyr.m``/``buildSpyrLevs.m`` (including the unused high-pass and residual
bands), ``maxPyrHt.m``, ``sp5Filters.m`` (its ``bfilts`` listing transposed and
reshaped column-major, as MATLAB does) and ``corrDn`` with ``edges.c``'s ``reflect1``
written as an index mirror through the edge sample, one filter tap at a time, with
MATLAB's 1-based ``step``/``start``/``stop``. It is fed what the release is fed:
``double(rgb2gray(uint8 RGB))``, rounded in NumPy.

Official MATLAB values of ``vifvec.m`` (IQA-PyTorch's calibration table,
``ResultsCalibra/results_official.csv``, on five TID2013 pairs) are not shipped with
any installed package, so they are not checked here; the module reproduces all five
to the four digits published.
"""

from __future__ import annotations

import io
import math

import numpy as np
import piq
import pytest
import torch
from PIL import Image, ImageFilter
from skimage import data as skdata

from advqa.quality.vif import MIN_SIZE, vif, vif_grey, vifp

RELATIVE = 1e-6  # required agreement with the transcription


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small images: one intra-op thread is as fast, and far steadier on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# MATLAB-literal reference (NumPy, float64)
# --------------------------------------------------------------------------------------------

# sp5Filters.m, as listed there (Simoncelli, 6/96).
SP5_HI0 = [
    [-0.00033429, -0.00113093, -0.00171484, -0.00133542, -0.00080639, -0.00133542,
     -0.00171484, -0.00113093, -0.00033429],
    [-0.00113093, -0.00350017, -0.00243812, 0.00631653, 0.01261227, 0.00631653,
     -0.00243812, -0.00350017, -0.00113093],
    [-0.00171484, -0.00243812, -0.00290081, -0.00673482, -0.00981051, -0.00673482,
     -0.00290081, -0.00243812, -0.00171484],
    [-0.00133542, 0.00631653, -0.00673482, -0.07027679, -0.11435863, -0.07027679,
     -0.00673482, 0.00631653, -0.00133542],
    [-0.00080639, 0.01261227, -0.00981051, -0.11435863, 0.81380200, -0.11435863,
     -0.00981051, 0.01261227, -0.00080639],
    [-0.00133542, 0.00631653, -0.00673482, -0.07027679, -0.11435863, -0.07027679,
     -0.00673482, 0.00631653, -0.00133542],
    [-0.00171484, -0.00243812, -0.00290081, -0.00673482, -0.00981051, -0.00673482,
     -0.00290081, -0.00243812, -0.00171484],
    [-0.00113093, -0.00350017, -0.00243812, 0.00631653, 0.01261227, 0.00631653,
     -0.00243812, -0.00350017, -0.00113093],
    [-0.00033429, -0.00113093, -0.00171484, -0.00133542, -0.00080639, -0.00133542,
     -0.00171484, -0.00113093, -0.00033429]]
SP5_LO0 = [
    [0.00341614, -0.01551246, -0.03848215, -0.01551246, 0.00341614],
    [-0.01551246, 0.05586982, 0.15925570, 0.05586982, -0.01551246],
    [-0.03848215, 0.15925570, 0.40304148, 0.15925570, -0.03848215],
    [-0.01551246, 0.05586982, 0.15925570, 0.05586982, -0.01551246],
    [0.00341614, -0.01551246, -0.03848215, -0.01551246, 0.00341614]]
SP5_LO_HALF = [
    [0.00085404, -0.00244917, -0.00387812, -0.00944432, -0.00962054, -0.00944432,
     -0.00387812, -0.00244917, 0.00085404],
    [-0.00244917, -0.00523281, -0.00661117, 0.00410600, 0.01002988, 0.00410600,
     -0.00661117, -0.00523281, -0.00244917],
    [-0.00387812, -0.00661117, 0.01396746, 0.03277038, 0.03981393, 0.03277038,
     0.01396746, -0.00661117, -0.00387812],
    [-0.00944432, 0.00410600, 0.03277038, 0.06426333, 0.08169618, 0.06426333,
     0.03277038, 0.00410600, -0.00944432],
    [-0.00962054, 0.01002988, 0.03981393, 0.08169618, 0.10096540, 0.08169618,
     0.03981393, 0.01002988, -0.00962054],
    [-0.00944432, 0.00410600, 0.03277038, 0.06426333, 0.08169618, 0.06426333,
     0.03277038, 0.00410600, -0.00944432],
    [-0.00387812, -0.00661117, 0.01396746, 0.03277038, 0.03981393, 0.03277038,
     0.01396746, -0.00661117, -0.00387812],
    [-0.00244917, -0.00523281, -0.00661117, 0.00410600, 0.01002988, 0.00410600,
     -0.00661117, -0.00523281, -0.00244917],
    [0.00085404, -0.00244917, -0.00387812, -0.00944432, -0.00962054, -0.00944432,
     -0.00387812, -0.00244917, 0.00085404]]
# bfilts = [row1; row2; ...; row6]' : one row of 49 taps per orientation.
SP5_BFILTS_ROWS = [
    [0.00277643, 0.00496194, 0.01026699, 0.01455399, 0.01026699, 0.00496194, 0.00277643,
     -0.00986904, -0.00893064, 0.01189859, 0.02755155, 0.01189859, -0.00893064, -0.00986904,
     -0.01021852, -0.03075356, -0.08226445, -0.11732297, -0.08226445, -0.03075356, -0.01021852,
     0.00000000, 0.00000000, 0.00000000, 0.00000000, 0.00000000, 0.00000000, 0.00000000,
     0.01021852, 0.03075356, 0.08226445, 0.11732297, 0.08226445, 0.03075356, 0.01021852,
     0.00986904, 0.00893064, -0.01189859, -0.02755155, -0.01189859, 0.00893064, 0.00986904,
     -0.00277643, -0.00496194, -0.01026699, -0.01455399, -0.01026699, -0.00496194, -0.00277643],
    [-0.00343249, -0.00640815, -0.00073141, 0.01124321, 0.00182078, 0.00285723, 0.01166982,
     -0.00358461, -0.01977507, -0.04084211, -0.00228219, 0.03930573, 0.01161195, 0.00128000,
     0.01047717, 0.01486305, -0.04819057, -0.12227230, -0.05394139, 0.00853965, -0.00459034,
     0.00790407, 0.04435647, 0.09454202, -0.00000000, -0.09454202, -0.04435647, -0.00790407,
     0.00459034, -0.00853965, 0.05394139, 0.12227230, 0.04819057, -0.01486305, -0.01047717,
     -0.00128000, -0.01161195, -0.03930573, 0.00228219, 0.04084211, 0.01977507, 0.00358461,
     -0.01166982, -0.00285723, -0.00182078, -0.01124321, 0.00073141, 0.00640815, 0.00343249],
    [0.00343249, 0.00358461, -0.01047717, -0.00790407, -0.00459034, 0.00128000, 0.01166982,
     0.00640815, 0.01977507, -0.01486305, -0.04435647, 0.00853965, 0.01161195, 0.00285723,
     0.00073141, 0.04084211, 0.04819057, -0.09454202, -0.05394139, 0.03930573, 0.00182078,
     -0.01124321, 0.00228219, 0.12227230, -0.00000000, -0.12227230, -0.00228219, 0.01124321,
     -0.00182078, -0.03930573, 0.05394139, 0.09454202, -0.04819057, -0.04084211, -0.00073141,
     -0.00285723, -0.01161195, -0.00853965, 0.04435647, 0.01486305, -0.01977507, -0.00640815,
     -0.01166982, -0.00128000, 0.00459034, 0.00790407, 0.01047717, -0.00358461, -0.00343249],
    [-0.00277643, 0.00986904, 0.01021852, -0.00000000, -0.01021852, -0.00986904, 0.00277643,
     -0.00496194, 0.00893064, 0.03075356, -0.00000000, -0.03075356, -0.00893064, 0.00496194,
     -0.01026699, -0.01189859, 0.08226445, -0.00000000, -0.08226445, 0.01189859, 0.01026699,
     -0.01455399, -0.02755155, 0.11732297, -0.00000000, -0.11732297, 0.02755155, 0.01455399,
     -0.01026699, -0.01189859, 0.08226445, -0.00000000, -0.08226445, 0.01189859, 0.01026699,
     -0.00496194, 0.00893064, 0.03075356, -0.00000000, -0.03075356, -0.00893064, 0.00496194,
     -0.00277643, 0.00986904, 0.01021852, -0.00000000, -0.01021852, -0.00986904, 0.00277643],
    [-0.01166982, -0.00128000, 0.00459034, 0.00790407, 0.01047717, -0.00358461, -0.00343249,
     -0.00285723, -0.01161195, -0.00853965, 0.04435647, 0.01486305, -0.01977507, -0.00640815,
     -0.00182078, -0.03930573, 0.05394139, 0.09454202, -0.04819057, -0.04084211, -0.00073141,
     -0.01124321, 0.00228219, 0.12227230, -0.00000000, -0.12227230, -0.00228219, 0.01124321,
     0.00073141, 0.04084211, 0.04819057, -0.09454202, -0.05394139, 0.03930573, 0.00182078,
     0.00640815, 0.01977507, -0.01486305, -0.04435647, 0.00853965, 0.01161195, 0.00285723,
     0.00343249, 0.00358461, -0.01047717, -0.00790407, -0.00459034, 0.00128000, 0.01166982],
    [-0.01166982, -0.00285723, -0.00182078, -0.01124321, 0.00073141, 0.00640815, 0.00343249,
     -0.00128000, -0.01161195, -0.03930573, 0.00228219, 0.04084211, 0.01977507, 0.00358461,
     0.00459034, -0.00853965, 0.05394139, 0.12227230, 0.04819057, -0.01486305, -0.01047717,
     0.00790407, 0.04435647, 0.09454202, -0.00000000, -0.09454202, -0.04435647, -0.00790407,
     0.01047717, 0.01486305, -0.04819057, -0.12227230, -0.05394139, 0.00853965, -0.00459034,
     -0.00358461, -0.01977507, -0.04084211, -0.00228219, 0.03930573, 0.01161195, 0.00128000,
     -0.00343249, -0.00640815, -0.00073141, 0.01124321, 0.00182078, 0.00285723, 0.01166982]]

RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def _sp5_filters():
    """``[lo0filt, hi0filt, lofilt, bfilts] = sp5Filters()``; bfilts is 49×6."""
    lo0filt = np.array(SP5_LO0)
    hi0filt = np.array(SP5_HI0)
    lofilt = 2 * np.array(SP5_LO_HALF)
    bfilts = np.array(SP5_BFILTS_ROWS).T
    return lo0filt, hi0filt, lofilt, bfilts


def _reflect1(index, length):
    """``edges.c`` reflect1: mirror through the edge sample (…, 2, 1, [0, 1, …, n-1], n-2, …)."""
    index = np.where(index < 0, -index, index)
    return np.where(index > length - 1, 2 * (length - 1) - index, index)


def _corrdn(im, filt, step=(1, 1), start=(1, 1), stop=None):
    """``corrDn(im, filt, 'reflect1', step, start, stop)``, MATLAB's 1-based arguments.

    Correlation (no flip), the filter's centre at ``floor(size/2)`` (0-based), one
    tap at a time.
    """
    if stop is None:
        stop = im.shape
    assert filt.shape[0] <= im.shape[0] and filt.shape[1] <= im.shape[1]
    rows = np.arange(start[0] - 1, stop[0], step[0])
    cols = np.arange(start[1] - 1, stop[1], step[1])
    centre_r, centre_c = filt.shape[0] // 2, filt.shape[1] // 2
    res = np.zeros((rows.size, cols.size))
    for a in range(filt.shape[0]):
        r = _reflect1(rows + a - centre_r, im.shape[0])
        for b in range(filt.shape[1]):
            c = _reflect1(cols + b - centre_c, im.shape[1])
            res += filt[a, b] * im[np.ix_(r, c)]
    return res


def _max_pyr_ht(imsz, filtsz):
    """``maxPyrHt.m`` for a 2-D image and a square filter."""
    if imsz[0] < filtsz or imsz[1] < filtsz:
        return 0
    return 1 + _max_pyr_ht((imsz[0] // 2, imsz[1] // 2), filtsz)


def _build_spyr_levs(lo0, ht, lofilt, bfilts):
    """``buildSpyrLevs.m``: list of sub-bands, finest first, residual last."""
    if ht <= 0:
        return [lo0]
    bfiltsz = round(math.sqrt(bfilts.shape[0]))
    bands = []
    for b in range(bfilts.shape[1]):
        filt = bfilts[:, b].reshape(bfiltsz, bfiltsz, order="F")  # reshape(bfilts(:,b),…)
        bands.append(_corrdn(lo0, filt))
    lo = _corrdn(lo0, lofilt, (2, 2), (1, 1))
    return bands + _build_spyr_levs(lo, ht - 1, lofilt, bfilts)


def _build_spyr(im, ht):
    """``buildSpyr(im, ht, 'sp5Filters', 'reflect1')`` as a list [hi0, bands…, residual]."""
    lo0filt, hi0filt, lofilt, bfilts = _sp5_filters()
    if ht > _max_pyr_ht(im.shape, lofilt.shape[0]):
        raise ValueError("Cannot build pyramid higher than that")
    hi0 = _corrdn(im, hi0filt)
    lo0 = _corrdn(im, lo0filt)
    return [hi0, *_build_spyr_levs(lo0, ht, lofilt, bfilts)]


def _ind2wtree(pyr):
    """``ind2wtree.m``: ``wtree{numsubs-i+1}`` = i-th sub-band; a dict keyed 1-based."""
    numsubs = len(pyr)
    return {numsubs - i: band for i, band in enumerate(pyr)}


def _vifsub_est_m(org, dist, subbands, m):
    tol = 1e-15
    g_all, vv_all = [], []
    for sub in subbands:
        y = org[sub]
        yn = dist[sub]
        lev = math.ceil((sub - 1) / 6)
        winsize = 2**lev + 1
        win = np.ones((winsize, winsize))
        newsize = (y.shape[0] // m * m, y.shape[1] // m * m)
        y = y[:newsize[0], :newsize[1]]
        yn = yn[:newsize[0], :newsize[1]]
        winstep = (m, m)
        winstart = (m // 2 + 1, m // 2 + 1)
        winstop = (y.shape[0] - math.ceil(m / 2) + 1, y.shape[1] - math.ceil(m / 2) + 1)
        mean_x = _corrdn(y, win / win.sum(), winstep, winstart, winstop)
        mean_y = _corrdn(yn, win / win.sum(), winstep, winstart, winstop)
        cov_xy = _corrdn(y * yn, win, winstep, winstart, winstop) - win.sum() * mean_x * mean_y
        ss_x = _corrdn(y**2, win, winstep, winstart, winstop) - win.sum() * mean_x**2
        ss_y = _corrdn(yn**2, win, winstep, winstart, winstop) - win.sum() * mean_y**2
        ss_x[ss_x < 0] = 0
        ss_y[ss_y < 0] = 0
        g = cov_xy / (ss_x + tol)
        vv = (ss_y - g * cov_xy) / win.sum()
        g[ss_x < tol] = 0
        vv[ss_x < tol] = ss_y[ss_x < tol]
        ss_x[ss_x < tol] = 0
        g[ss_y < tol] = 0
        vv[ss_y < tol] = 0
        vv[g < 0] = ss_y[g < 0]
        g[g < 0] = 0
        vv[vv <= tol] = tol
        g_all.append(g)
        vv_all.append(vv)
    return g_all, vv_all


def _refparams_vecgsm(org, subbands, m):
    ssarr, l_arr = {}, {}
    for sub in subbands:
        y = org[sub]
        sizey = (y.shape[0] // m * m, y.shape[1] // m * m)
        y = y[:sizey[0], :sizey[1]]
        temp = []
        for j in range(1, m + 1):
            for k in range(1, m + 1):
                block = y[k - 1:y.shape[0] - (m - k), j - 1:y.shape[1] - (m - j)]
                temp.append(block.reshape(-1, order="F"))
        temp = np.array(temp)
        mcu = temp.mean(axis=1, keepdims=True)
        cu = (temp - mcu) @ (temp - mcu).T / temp.shape[1]
        temp = []
        for j in range(1, m + 1):
            for k in range(1, m + 1):
                temp.append(y[k - 1::m, j - 1::m].reshape(-1, order="F"))
        temp = np.array(temp)
        ss = np.linalg.inv(cu) @ temp
        ss = (ss * temp).sum(axis=0) / (m * m)
        ss = ss.reshape(sizey[0] // m, sizey[1] // m, order="F")
        l_arr[sub] = np.linalg.eig(cu)[0].real
        ssarr[sub] = ss
    return ssarr, l_arr


def _matlab_vifvec(imorg, imdist):
    """``vifvec(imorg, imdist)`` of two 0–255 double grey images."""
    m = 3
    subbands = [4, 7, 10, 13, 16, 19, 22, 25]
    sigma_nsq = 0.4
    org = _ind2wtree(_build_spyr(imorg, 4))
    dist = _ind2wtree(_build_spyr(imdist, 4))
    g_all, vv_all = _vifsub_est_m(org, dist, subbands, m)
    ssarr, larr = _refparams_vecgsm(org, subbands, m)
    num, den = [], []
    for i, sub in enumerate(subbands):
        g, vv, ss, lam = g_all[i], vv_all[i], ssarr[sub], larr[sub]
        lev = math.ceil((sub - 1) / 6)
        winsize = 2**lev + 1
        offset = (winsize - 1) / 2
        offset = math.ceil(offset / m)
        g = g[offset:g.shape[0] - offset, offset:g.shape[1] - offset]
        vv = vv[offset:vv.shape[0] - offset, offset:vv.shape[1] - offset]
        ss = ss[offset:ss.shape[0] - offset, offset:ss.shape[1] - offset]
        temp1 = temp2 = 0.0
        for j in range(len(lam)):
            temp1 += np.sum(np.log2(1 + g * g * ss * lam[j] / (vv + sigma_nsq)))
            temp2 += np.sum(np.log2(1 + ss * lam[j] / sigma_nsq))
        num.append(temp1)
        den.append(temp2)
    return sum(num) / sum(den)


def _matlab_rgb2gray_uint8(rgb):
    """``double(rgb2gray(uint8 RGB))``: weighted sum rounded half away from zero."""
    weighted = rgb.astype(np.float64) @ np.array(RGB2GRAY)
    return np.floor(weighted + 0.5)


# --------------------------------------------------------------------------------------------
# Real photographs and real distortions
# --------------------------------------------------------------------------------------------

def _jpeg(rgb, quality):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _blur(rgb, radius):
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


def _tensor(rgb):
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].double() / 255


CASES = {
    # name: (photo crop, distortion); sizes chosen to exercise odd halvings and crops
    # to multiples of 3 (250 → 125 → 63 → 32; 203 → 102 → 51 → 26).
    "astronaut-jpeg15": (lambda: skdata.astronaut()[:256, 128:384], lambda x: _jpeg(x, 15)),
    "coffee-blur2": (lambda: skdata.coffee()[100:350, 150:353], lambda x: _blur(x, 2)),
    "chelsea-jpeg30": (lambda: skdata.chelsea()[20:223, 100:350], lambda x: _jpeg(x, 30)),
}


@pytest.fixture(scope="module")
def pairs():
    result = {}
    for name, (photo, distortion) in CASES.items():
        reference = np.ascontiguousarray(photo())
        result[name] = (reference, distortion(reference))
    return result


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CASES))
def test_parity_with_matlab_transcription(pairs, name):
    reference, distorted = pairs[name]
    expected = _matlab_vifvec(_matlab_rgb2gray_uint8(reference),
                              _matlab_rgb2gray_uint8(distorted))
    ours = vif(_tensor(reference), _tensor(distorted)).item()
    assert 0.05 < expected < 1
    assert ours == pytest.approx(expected, rel=RELATIVE, abs=0)


def test_batch_and_float32_match_one_by_one(pairs):
    reference, distorted = pairs["astronaut-jpeg15"]
    stronger = _jpeg(reference, 5)
    ref = _tensor(reference).repeat(2, 1, 1, 1)
    dist = torch.cat([_tensor(distorted), _tensor(stronger)])
    batch = vif(ref, dist)
    single = torch.stack([vif(ref[i:i + 1], dist[i:i + 1])[0] for i in range(2)])
    torch.testing.assert_close(batch, single, rtol=1e-12, atol=0)
    # uint8 levels given as float32 in [0, 1] or as 0-255 values give the same grey levels.
    single32 = vif(ref.float(), dist.float())
    assert single32.dtype == torch.float32
    torch.testing.assert_close(single32, batch.float(), rtol=1e-6, atol=0)
    torch.testing.assert_close(vif(ref * 255, dist * 255, data_range=255.0), batch,
                               rtol=1e-12, atol=0)


def test_grey_input_is_taken_as_grey(pairs):
    reference, distorted = pairs["chelsea-jpeg30"]
    grey_ref = _matlab_rgb2gray_uint8(reference)
    grey_dist = _matlab_rgb2gray_uint8(distorted)
    as_grey = vif(torch.from_numpy(grey_ref)[None, None] / 255,
                  torch.from_numpy(grey_dist)[None, None] / 255)
    from_rgb = vif(_tensor(reference), _tensor(distorted))
    torch.testing.assert_close(as_grey, from_rgb, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------

def test_identical_images_give_one_and_order_matters(pairs):
    reference, distorted = pairs["coffee-blur2"]
    ref, dist = _tensor(reference), _tensor(distorted)
    assert vif(ref, ref).item() == pytest.approx(1.0, abs=1e-10)
    assert vif(dist, dist).item() == pytest.approx(1.0, abs=1e-10)
    forward, backward = vif(ref, dist).item(), vif(dist, ref).item()
    assert forward < 1
    assert abs(forward - backward) > 1e-3  # VIF is not symmetric


def test_stronger_distortion_scores_lower():
    photo = np.ascontiguousarray(skdata.astronaut()[64:320, 128:384])
    ref = _tensor(photo)
    jpeg = [vif(ref, _tensor(_jpeg(photo, q))).item() for q in (70, 30, 10)]
    blur = [vif(ref, _tensor(_blur(photo, r))).item() for r in (0.5, 1.5, 3)]
    assert 1 > jpeg[0] > jpeg[1] > jpeg[2] > 0
    assert 1 > blur[0] > blur[1] > blur[2] > 0


def test_gradient_is_finite_and_nonzero(pairs):
    reference, distorted = pairs["astronaut-jpeg15"]
    dist = _tensor(distorted).float().requires_grad_()
    vif(_tensor(reference).float(), dist).sum().backward()
    assert torch.isfinite(dist.grad).all()
    assert dist.grad.abs().sum() > 0
    # identical images: still finite
    same = _tensor(reference).requires_grad_()
    vif(_tensor(reference), same).sum().backward()
    assert torch.isfinite(same.grad).all()


def test_gradcheck_on_grey_levels():
    generator = torch.Generator().manual_seed(0)
    photo = skdata.camera()[200:272, 200:272].astype(np.float64)
    reference = torch.from_numpy(photo)[None, None]
    noise = 6 * torch.randn(reference.shape, generator=generator, dtype=torch.float64)
    distorted = (0.8 * reference + 20 + noise).requires_grad_()

    def index(x):
        return vif_grey(reference, x)

    assert torch.autograd.gradcheck(index, (distorted,), eps=1e-4, atol=1e-7, rtol=1e-3,
                                    fast_mode=True)


# --------------------------------------------------------------------------------------------
# Input validation, vifp
# --------------------------------------------------------------------------------------------

def test_minimum_size():
    assert MIN_SIZE == 72
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(1, 3, 72, 80, generator=generator, dtype=torch.float64)
    assert torch.isfinite(vif(images, images.flip(-1)))
    small = images[..., :71, :]
    with pytest.raises(ValueError, match="72"):
        vif(small, small)
    with pytest.raises(ValueError, match="differ"):
        vif(images, small)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_vifp_is_piq_vif_p(pairs, data_range):
    reference, distorted = pairs["chelsea-jpeg30"]
    ref = (_tensor(reference) * data_range).float()
    dist = (_tensor(distorted) * data_range).float()
    expected = piq.vif_p(dist / data_range, ref / data_range, data_range=1.0,
                         reduction="none")
    torch.testing.assert_close(vifp(ref, dist, data_range=data_range), expected,
                               rtol=0, atol=0)
    assert 0 < expected.item() < 1
