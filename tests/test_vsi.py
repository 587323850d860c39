"""VSI (advqa.quality.vsi) against a plain NumPy transcription of the authors' ``VSI.m``.

No MATLAB value of ``VSI.m`` on an image we have offline is published, so the
parity check is :class:`Ref` below: ``VSI.m`` with its local ``SDSP``,
``RGB2Lab`` and ``logGabor``, and MATLAB's ``imresize`` (``contributions()``
of imresize.m, one output sample at a time, antialiased when shrinking),
``conv2(..., 'same')``, ``fspecial('average', F)`` and ``mat2gray``, written
with loops and NumPy's complex FFT, independent of the torch code. It is fed
uint8 RGB photos (scikit-image) and their JPEG (Pillow, quality 20) or noisy
versions, as ``VSI(imread(ref), imread(dist))`` would be.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from advqa.quality.matlab import (
    conv2_same,
    conv2_same_average_subsample,
    imresize,
    imresize_matrix,
    resize_matrix,
)
from advqa.quality.matlab import downsample_factor as downsampling_factor
from advqa.quality.vsi import sdsp, vsi

PARITY = 1e-6


# --------------------------------------------------------------------------- reference

class Ref:
    """Loop-based NumPy transcription of VSI.m (Lin Zhang, 2013) and the MATLAB it calls."""

    @staticmethod
    def triangle(x):
        if -1 <= x < 0:
            return x + 1
        if 0 <= x <= 1:
            return 1 - x
        return 0.0

    @staticmethod
    def cubic(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x ** 3 - 2.5 * x ** 2 + 1
        if x <= 2:
            return -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2
        return 0.0

    @classmethod
    def contributions(cls, in_length, out_length, method):
        """imresize.m's contributions(): (indices, weights) of every output sample."""
        kernel, width = (cls.triangle, 2.0) if method == "bilinear" else (cls.cubic, 4.0)
        scale = out_length / in_length
        if scale < 1:  # antialiasing, imresize's default

            def h(x):
                return scale * kernel(scale * x)

            width = width / scale
        else:
            h = kernel
        rows = []
        for x in range(1, out_length + 1):
            u = x / scale + 0.5 * (1 - 1 / scale)
            left = math.floor(u - width / 2)
            taps = [left + p for p in range(math.ceil(width) + 2)]
            weights = [h(u - t) for t in taps]
            total = sum(weights)
            mirrored = []
            for t in taps:  # aux = [1:n, n:-1:1]
                t = (t - 1) % (2 * in_length)
                mirrored.append(t if t < in_length else 2 * in_length - 1 - t)
            rows.append((mirrored, [w / total for w in weights]))
        return rows

    @classmethod
    def resize_dim(cls, image, dim, out_length, method):
        moved = np.moveaxis(image, dim, 0)
        out = np.zeros((out_length, *moved.shape[1:]))
        for x, (taps, weights) in enumerate(cls.contributions(moved.shape[0], out_length,
                                                               method)):
            for t, w in zip(taps, weights, strict=True):
                out[x] += w * moved[t]
        return np.moveaxis(out, 0, dim)

    @classmethod
    def imresize(cls, image, rows, cols, method="bilinear"):
        """imresize(image, [rows cols], method) of a 2-D double array."""
        scale = [rows / image.shape[0], cols / image.shape[1]]
        out = image
        for dim in sorted(range(2), key=lambda d: scale[d]):  # most-shrunk axis first
            out = cls.resize_dim(out, dim, (rows, cols)[dim], method)
        return out

    @staticmethod
    def conv2_same(a, k):
        """conv2(a, k, 'same'): the full convolution, then its central part."""
        m, n = a.shape
        kr, kc = k.shape
        full = np.zeros((m + kr - 1, n + kc - 1))
        for i in range(kr):
            for j in range(kc):
                full[i:i + m, j:j + n] += k[i, j] * a
        top, left = kr // 2, kc // 2
        return full[top:top + m, left:left + n]

    @staticmethod
    def rgb2lab(image):
        """RGB2Lab of the release."""
        out = []
        linear = []
        for c in range(3):
            v = image[:, :, c] / 255
            small = v <= 0.04045
            linear.append(v / 12.92 * small + ((v + 0.055) / 1.055) ** 2.4 * (1 - small))
        r, g, b = linear
        x = r * 0.4124564 + g * 0.3575761 + b * 0.1804375
        y = r * 0.2126729 + g * 0.7151522 + b * 0.0721750
        z = r * 0.0193339 + g * 0.1191920 + b * 0.9503041
        f = []
        for value, white in ((x, 0.9642), (y, 1.0), (z, 0.8251)):
            ratio = value / white
            above = ratio > 0.008856
            f.append(np.power(ratio, 1.0 / 3.0) * above
                     + (903.3 * ratio + 16.0) / 116.0 * (1 - above))
        fx, fy, fz = f
        out = np.zeros(image.shape)
        out[:, :, 0] = 116.0 * fy - 16.0
        out[:, :, 1] = 500.0 * (fx - fy)
        out[:, :, 2] = 200.0 * (fy - fz)
        return out

    @staticmethod
    def log_gabor(rows, cols, omega0, sigma_f):
        u1, u2 = np.meshgrid((np.arange(1, cols + 1) - (cols // 2 + 1)) / (cols - cols % 2),
                             (np.arange(1, rows + 1) - (rows // 2 + 1)) / (rows - rows % 2))
        mask = np.ones((rows, cols))
        for i in range(rows):
            for j in range(cols):
                if u1[i, j] ** 2 + u2[i, j] ** 2 > 0.25:
                    mask[i, j] = 0
        u1 = np.fft.ifftshift(u1 * mask)
        u2 = np.fft.ifftshift(u2 * mask)
        radius = np.sqrt(u1 ** 2 + u2 ** 2)
        radius[0, 0] = 1
        with np.errstate(divide="ignore"):
            lg = np.exp(-(np.log(radius / omega0)) ** 2 / (2 * sigma_f ** 2))
        lg[0, 0] = 0
        return lg

    @staticmethod
    def mat2gray(a):
        low, high = a.min(), a.max()
        if high == low:
            return np.clip(a, 0, 1)
        delta = 1 / (high - low)
        return np.clip(delta * a + (-low * delta), 0, 1)

    @classmethod
    def sdsp(cls, image, sigma_f=1.34, omega0=0.0210, sigma_d=145.0, sigma_c=0.001):
        ori_rows, ori_cols = image.shape[:2]
        image = image.astype(np.float64)
        small = np.stack([cls.imresize(image[:, :, c], 256, 256) for c in range(3)], -1)
        lab = cls.rgb2lab(small)
        rows, cols = 256, 256
        lg = cls.log_gabor(rows, cols, omega0, sigma_f)
        results = [np.real(np.fft.ifft2(np.fft.fft2(lab[:, :, c]) * lg)) for c in range(3)]
        sf = np.sqrt(results[0] ** 2 + results[1] ** 2 + results[2] ** 2)
        yy, xx = np.meshgrid(np.arange(1, rows + 1), np.arange(1, cols + 1), indexing="ij")
        sd = np.exp(-((yy - rows / 2) ** 2 + (xx - cols / 2) ** 2) / sigma_d ** 2)
        a, b = lab[:, :, 1], lab[:, :, 2]
        na = (a - a.min()) / (a.max() - a.min())
        nb = (b - b.min()) / (b.max() - b.min())
        sc = 1 - np.exp(-(na ** 2 + nb ** 2) / (sigma_c ** 2))
        vs = cls.imresize(sf * sd * sc, ori_rows, ori_cols)
        return cls.mat2gray(vs)

    @classmethod
    def vsi(cls, image1, image2):
        s1, s2 = cls.sdsp(image1), cls.sdsp(image2)
        rows, cols = image1.shape[:2]
        i1, i2 = image1.astype(np.float64), image2.astype(np.float64)

        def lmn(im):
            r, g, b = im[:, :, 0], im[:, :, 1], im[:, :, 2]
            return (0.06 * r + 0.63 * g + 0.27 * b, 0.30 * r + 0.04 * g - 0.35 * b,
                    0.34 * r - 0.60 * g + 0.17 * b)

        (l1, m1, n1), (l2, m2, n2) = lmn(i1), lmn(i2)
        f = max(1, math.floor(min(rows, cols) / 256 + 0.5))  # MATLAB round
        ave = np.ones((f, f)) / (f * f)

        def down(x):
            return cls.conv2_same(x, ave)[0:rows:f, 0:cols:f]

        m1, m2, n1, n2, l1, l2, s1, s2 = (down(x) for x in (m1, m2, n1, n2, l1, l2, s1, s2))
        dx = np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]]) / 16
        dy = np.array([[3, 10, 3], [0, 0, 0], [-3, -10, -3]]) / 16
        g1 = np.sqrt(cls.conv2_same(l1, dx) ** 2 + cls.conv2_same(l1, dy) ** 2)
        g2 = np.sqrt(cls.conv2_same(l2, dx) ** 2 + cls.conv2_same(l2, dy) ** 2)
        vs_sim = (2 * s1 * s2 + 1.27) / (s1 ** 2 + s2 ** 2 + 1.27)
        g_sim = (2 * g1 * g2 + 386) / (g1 ** 2 + g2 ** 2 + 386)
        weight = np.maximum(s1, s2)
        i_sim = (2 * m1 * m2 + 130) / (m1 ** 2 + m2 ** 2 + 130)
        q_sim = (2 * n1 * n2 + 130) / (n1 ** 2 + n2 ** 2 + 130)
        chroma = np.real(np.power((i_sim * q_sim).astype(complex), 0.020))
        local = g_sim ** 0.40 * vs_sim * chroma * weight
        return local.sum() / weight.sum()


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _jpeg(rgb, quality=20):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _noisy(rgb, sigma=12.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rgb + rng.normal(0, sigma, rgb.shape)), 0, 255).astype(np.uint8)


def _tensor(rgb):
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].double() / 255


PAIRS = {
    # name: (photo crop, distortion); F = round(min(H, W)/256) is given for each.
    "astronaut-jpeg": (lambda: skdata.astronaut(), _jpeg),                  # 512×512, F = 2
    "coffee-jpeg": (lambda: skdata.coffee()[:, 40:560], _jpeg),            # 400×520, F = 2
    "chelsea-noise": (lambda: skdata.chelsea(), _noisy),                   # 300×451, F = 1
    "retina-jpeg": (lambda: skdata.retina()[300:940, 250:973], _jpeg),     # 640×723, F = 3
}


# --------------------------------------------------------------------------- MATLAB primitives

def test_imresize_bilinear_hand_computed():
    # Shrinking 1:4 to 2 samples: a triangle 4 pixels wide (antialiasing), the
    # first tap mirrored onto pixel 1: [.5 .375 .125 0] and [0 .125 .375 .5].
    row = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]], dtype=torch.float64)
    torch.testing.assert_close(imresize(row, (1, 2)),
                               torch.tensor([[[[1.625, 3.375]]]], dtype=torch.float64))
    # Plain two-tap interpolation would give [1.5, 3.5]; without antialiasing
    # MATLAB's formula gives it too.
    torch.testing.assert_close(imresize(row, (1, 2), antialiasing=False),
                               torch.tensor([[[[1.5, 3.5]]]], dtype=torch.float64))
    # Enlarging [1 2] to 4 samples: centres at 0.75, 1.25, 1.75, 2.25.
    pair = torch.tensor([[[[1.0], [2.0]]]], dtype=torch.float64)
    torch.testing.assert_close(imresize(pair, (4, 1))[0, 0, :, 0],
                               torch.tensor([1.0, 1.25, 1.75, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("length", [7, 8, 37, 384])
def test_resize_matrix_bicubic_half_is_imresize_matrix(length):
    np.testing.assert_array_equal(resize_matrix(length, math.ceil(length / 2), 0.5, "bicubic"),
                                  imresize_matrix(length))


@pytest.mark.parametrize(("shape", "size"), [((37, 50), (256, 256)), ((300, 451), (256, 256)),
                                             ((256, 256), (300, 451)), ((9, 13), (4, 30))])
@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_imresize_matches_contributions(shape, size, method):
    image = np.random.default_rng(1).random(shape) * 255
    ours = imresize(torch.from_numpy(image)[None, None], size, method)[0, 0].numpy()
    np.testing.assert_allclose(ours, Ref.imresize(image, *size, method), rtol=0, atol=1e-10)
    flat = imresize(torch.full((1, 1, *shape), 3.5, dtype=torch.float64), size, method)
    torch.testing.assert_close(flat, torch.full_like(flat, 3.5))


def test_conv2_same_is_matlabs():
    # The conv example of MATLAB's documentation: conv(u, v, 'same').
    u = torch.tensor([-1.0, 2, 3, -2, 0, 1, 2], dtype=torch.float64).view(1, 1, 1, -1)
    v = np.array([[2.0, 4, -1, 1]])
    torch.testing.assert_close(conv2_same(u, v)[0, 0, 0],
                               torch.tensor([15.0, 5, -9, 7, 6, 7, -1], dtype=torch.float64))
    rng = np.random.default_rng(2)
    image = rng.random((23, 30))
    for kernel in (rng.random((3, 3)), rng.random((2, 5)), rng.random((4, 4))):
        ours = conv2_same(torch.from_numpy(image)[None, None], kernel)[0, 0].numpy()
        np.testing.assert_allclose(ours, Ref.conv2_same(image, kernel), atol=1e-12)
    for factor in (1, 2, 3, 4):
        ave = np.ones((factor, factor)) / factor ** 2
        expected = Ref.conv2_same(image, ave)[::factor, ::factor]
        ours = conv2_same_average_subsample(torch.from_numpy(image)[None, None], factor)
        np.testing.assert_allclose(ours[0, 0].numpy(), expected, atol=1e-12)


def test_downsampling_factor_rounds_halves_up():
    assert downsampling_factor(384, 512) == 2      # 1.5 → 2 (Python's round gives 2 too)
    assert downsampling_factor(640, 723) == 3      # 2.5 → 3 (Python's round gives 2)
    assert downsampling_factor(300, 451) == 1
    assert downsampling_factor(100, 100) == 1      # round(0.39) = 0 → max(1, 0)


# --------------------------------------------------------------------------- parity with VSI.m

@pytest.mark.parametrize("name", list(PAIRS))
def test_vsi_matches_transcription(name):
    photo, distort = PAIRS[name]
    reference = np.ascontiguousarray(photo())
    distorted = distort(reference)
    expected = Ref.vsi(reference, distorted)
    ours = vsi(_tensor(reference), _tensor(distorted)).item()
    assert ours == pytest.approx(expected, rel=PARITY)
    assert 0.8 < expected < 1.0


def test_saliency_matches_sdsp():
    rgb = skdata.coffee()[:200, :330]
    ours = sdsp(_tensor(rgb) * 255)[0, 0].numpy()
    np.testing.assert_allclose(ours, Ref.sdsp(rgb), rtol=0, atol=1e-10)
    assert ours.min() == 0 and ours.max() == 1


# --------------------------------------------------------------------------- behaviour

@pytest.fixture(scope="module")
def pair():
    reference = skdata.astronaut()[100:300, 150:390]
    return _tensor(reference), _tensor(_jpeg(reference))


def test_identical_images_score_one_and_order_does_not_matter(pair):
    reference, distorted = pair
    assert vsi(reference, reference).item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(vsi(reference, distorted), vsi(distorted, reference))
    assert 0 < vsi(reference, distorted).item() < 1


def test_batch_dtype_data_range_and_grey(pair):
    reference, distorted = pair
    batch_ref = torch.cat([reference, distorted, reference])
    batch_dist = torch.cat([distorted, reference, reference])
    together = vsi(batch_ref, batch_dist)
    alone = torch.cat([vsi(r[None], d[None]) for r, d in zip(batch_ref, batch_dist, strict=True)])
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vsi(reference * 255, distorted * 255, data_range=255.0),
                               vsi(reference, distorted), rtol=1e-12, atol=1e-12)
    assert vsi(reference.float(), distorted.float()).dtype == torch.float32
    grey_ref, grey_dist = reference.mean(1, keepdim=True), distorted.mean(1, keepdim=True)
    torch.testing.assert_close(vsi(grey_ref, grey_dist),
                               vsi(grey_ref.repeat(1, 3, 1, 1), grey_dist.repeat(1, 3, 1, 1)))


def test_gradient_is_finite_and_matches_finite_differences():
    rng = np.random.default_rng(3)
    reference = torch.from_numpy(0.2 + 0.6 * rng.random((1, 3, 20, 24)))
    distorted = (reference + torch.from_numpy(0.05 * rng.standard_normal((1, 3, 20, 24))))
    distorted = distorted.clamp(0.05, 0.95).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: vsi(reference, x), (distorted,), eps=1e-6,
                                    atol=1e-6, rtol=1e-3, fast_mode=True)


def test_flat_regions_have_finite_gradients(pair):
    reference, distorted = pair
    distorted = distorted.clone()
    distorted[..., 20:80, 30:120] = 0.5  # zero gradient magnitude, one colour
    distorted.requires_grad_()
    vsi(reference, distorted).sum().backward()
    assert torch.isfinite(distorted.grad).all() and distorted.grad.abs().sum() > 0


def test_constant_image_is_nan_without_spoiling_the_batch(pair):
    reference, distorted = pair
    references = torch.cat([torch.full_like(reference, 0.4), reference])
    distorted = torch.cat([distorted, distorted]).requires_grad_()
    scores = vsi(references, distorted)
    assert torch.isnan(scores[0]) and torch.isfinite(scores[1])
    (grad,) = torch.autograd.grad(scores[1], distorted)
    assert torch.isfinite(grad).all() and grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0


def test_errors():
    image = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="shape"):
        vsi(image, image[..., :16])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vsi(image, image * 2)
    assert torch.isfinite(vsi(image, image * 2, clamp=True)).all()
