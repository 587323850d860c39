"""VSI, the Visual Saliency-Induced index, as Lin Zhang's MATLAB release computes it; batched torch.

Zhang, Shen & Li, "VSI: A Visual Saliency-Induced Index for Perceptual Image
Quality Assessment", IEEE Transactions on Image Processing 23(10), 2014; the
saliency model is SDSP (Zhang, Gu & Li, ICIP 2013).

Followed line by line: the authors' release ``VSI.m`` (Lin Zhang, Tongji
University, 2013), called as ``sim = VSI(imread(ref), imread(dist))`` on two
uint8 RGB files, with its local functions ``SDSP``, ``RGB2Lab`` and
``logGabor``. Per image pair:

1. ``double(image)``: RGB on the 0–255 scale.
2. Saliency (``SDSP(image, 1.34, 0.021, 145, 0.001)``) of each image: each
   channel ``imresize(·, [256 256], 'bilinear')`` — MATLAB's imresize, which
   *antialiases* when shrinking (a triangle kernel widened to 2/scale input
   pixels; :func:`advqa.quality.matlab.imresize`); the release's own
   ``RGB2Lab`` (sRGB companding, the sRGB/D65 matrix, then the D50 white
   (0.9642, 1, 0.8251) and ε = 0.008856, κ = 903.3); a log-Gabor band-pass
   (ω₀ = 0.021, σ_F = 1.34, zero outside radius ½ and at DC) applied by FFT to
   L, a and b, whose magnitude is the frequency prior; a Gaussian centre prior
   (σ_D = 145 around (128, 128)); a warm-colour prior ``1 − exp(−(â² + b̂²)/σ_C²)``
   on a and b min–max normalised over the 256×256 image (σ_C = 0.001); their
   product ``imresize(·, [H W], 'bilinear')`` back to the image size and
   ``mat2gray``.
3. The LMN opponent channels ``L = .06R + .63G + .27B``, ``M = .30R + .04G −
   .35B``, ``N = .34R − .60G + .17B``.
4. ``F = max(1, round(min(H, W)/256))``: L, M, N and both saliency maps
   ``conv2(·, fspecial('average', F), 'same')`` (zero padding) and every F-th
   row and column kept (:func:`advqa.quality.matlab.conv2_same_average_subsample`).
5. Gradient magnitude of L with the Scharr-like kernels ``[3 0 −3; 10 0 −10;
   3 0 −3]/16`` and its transpose, ``conv2(·, 'same')``.
6. ``S_VS = (2·VS₁VS₂ + 1.27)/(VS₁² + VS₂² + 1.27)``, ``S_G = (2G₁G₂ + 386)/(G₁² +
   G₂² + 386)``, ``S_M``, ``S_N`` likewise with 130; ``VSI = Σ S_G^0.40 · S_VS ·
   real((S_M·S_N)^0.02) · max(VS₁, VS₂) / Σ max(VS₁, VS₂)``. ``real`` matters:
   where ``S_M·S_N < 0`` MATLAB's power is complex and its real part is
   ``|x|^0.02·cos(0.02π)``.

The score lies in [0, 1], 1 for identical images; higher is better. Images
must be at least 2×2 (a single pixel is a constant image, see below); the
release was written for photos of 256 pixels and more — below that the
saliency is computed on an upsampled image and F = 1.

Input handling
--------------
RGB in [0, data_range] is mapped to 0–255 and used as the ``double`` values
``double(imread(file))`` gives; uint8 images (whole levels) therefore get the
release's numbers. Levels between whole numbers (an attack's iterates) are used
as they are, as the release does on a ``double`` image — nothing is rounded.
Grey input is replicated to three channels (``VSI.m`` indexes three channels).

Differentiability and deviations
--------------------------------
Differentiable w.r.t. both images, the saliency maps included (resizing, FFT
filtering, the priors, ``mat2gray``'s min/max). Square roots and powers are
guarded where their argument is 0 (flat regions have zero gradient
magnitude; ``RGB2Lab``'s cube root and companding are piecewise), so their
gradient there is 0 instead of ∞/NaN; values are unchanged. ``max``/``min``
pass the gradient to the extreme element.

Deviations, all at round-off level (the tests compare with a loop-based
NumPy transcription of ``VSI.m``: required 1e-6 relative, found ~1e-16 on
JPEG-compressed and noisy scikit-image photos with F = 1, 2 and 3):

- The log-Gabor filtering uses a real FFT (``rfft2``/``irfft2``) instead of
  ``real(ifft2(fft2(·) .* LG))``: LG is real and even, so the two agree up to
  round-off.
- Resizing is one dense matrix per axis (:func:`advqa.quality.matlab.resize_matrix`,
  the weights of MATLAB's ``contributions``), so sums run in another order than
  ``imresizemex``'s.
- Float64 inside; the result has the input's dtype.
- A constant-colour image makes the release divide 0 by 0 in the warm-colour
  prior (its a and b channels are constant): the score is NaN here too, as in
  MATLAB, without NaN gradients for the other images of the batch.

Other ports
-----------
No MATLAB value of ``VSI.m`` is published for an image at hand, so parity
rests on the transcription test. Ports differ from the release: piq's
``vsi`` (and pyiqa's, which follows it) is within 0.03 % of this module on
four TID2013 calibration pairs and 0.8 % on the fifth (``I19``); the
"IQA-Optimization" port behind pyiqa's ``results_official.csv`` ``vsi`` row
(not ``VSI.m``'s output) computes, per its source, the saliency at full
size without the 256×256 resize, with a D65 Lab, ``|S_M·S_N|^0.02`` and in
float32, and differs by up to 1.3 %:

======  ======  ======  ======  ======  ======
pair    I03     I04     I06     I08     I19
======  ======  ======  ======  ======  ======
here    0.9244  0.9497  0.9876  0.9539  0.9272
piq     0.9244  0.9497  0.9877  0.9541  0.9348
"opt"   0.9139  0.9620  0.9922  0.9571  0.9262
======  ======  ======  ======  ======  ======

MATLAB's antialiasing in the 256×256 resize is not the cause: without it
these scores move by less than 1e-4. Reading piq 0.8's ``vsi``, it departs
from ``VSI.m`` in several steps at once: the saliency map goes back to the
image size with ``align_corners=True`` (MATLAB's ``imresize`` samples pixel
centres, i.e. ``align_corners=False``); the F×F averaging pads by replicating
the border (``conv2 'same'`` pads with zeros, which darkens the first and last
rows and columns) and ``avg_pool2d`` drops or shifts samples where
``conv2``'s window straddles the edge; the 256×256 resize does not antialias.
Each is small on most images; which of them dominates the 0.8 % on I19 was
not measured.

References
----------
.. [1] L. Zhang, Y. Shen and H. Li, "VSI: A Visual Saliency-Induced Index for
   Perceptual Image Quality Assessment", IEEE TIP 23(10), 4270–4281, 2014.
   Release: ``VSI.m``, https://sse.tongji.edu.cn/linzhang/IQA/VSI/VSI.htm
.. [2] L. Zhang, Z. Gu and H. Li, "SDSP: A novel saliency detection method by
   combining simple priors", ICIP 2013.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from advqa.quality.matlab import (
    conv2_same,
    conv2_same_average_subsample,
    downsample_factor,
    imresize,
    mat2gray,
)
from advqa.quality.validate import check_pair

MIN_SIZE = 2
SALIENCY_SIZE = 256

# VSI.m's fixed constants.
C_VS, C_GM, C_CHROM = 1.27, 386.0, 130.0
ALPHA, LAMBDA = 0.40, 0.020
SIGMA_F, OMEGA_0, SIGMA_D, SIGMA_C = 1.34, 0.0210, 145.0, 0.001

LMN_WEIGHTS = ((0.06, 0.63, 0.27), (0.30, 0.04, -0.35), (0.34, -0.60, 0.17))
SCHARR_X = np.array([[3.0, 0.0, -3.0], [10.0, 0.0, -10.0], [3.0, 0.0, -3.0]]) / 16
SCHARR_Y = np.array([[3.0, 10.0, 3.0], [0.0, 0.0, 0.0], [-3.0, -10.0, -3.0]]) / 16

# RGB2Lab of the release: sRGB primaries (D65) but a D50 reference white.
SRGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
WHITE = (0.9642, 1.0, 0.8251)
LAB_EPSILON, LAB_KAPPA = 0.008856, 903.3


@functools.lru_cache(maxsize=4)
def log_gabor(rows: int = SALIENCY_SIZE, cols: int = SALIENCY_SIZE,
              omega0: float = OMEGA_0, sigma_f: float = SIGMA_F) -> np.ndarray:
    """``logGabor(rows, cols, omega0, sigmaF)`` of the release, in FFT order (DC at [0, 0]).

    Radial frequencies ``(k − ⌊n/2⌋)/(n − n mod 2)``; zero outside radius ½
    and at DC.
    """
    u1 = (np.arange(1, cols + 1) - (cols // 2 + 1)) / (cols - cols % 2)
    u2 = (np.arange(1, rows + 1) - (rows // 2 + 1)) / (rows - rows % 2)
    u1, u2 = np.meshgrid(u1, u2)
    inside = (u1 ** 2 + u2 ** 2) <= 0.25
    u1, u2 = np.fft.ifftshift(u1 * inside), np.fft.ifftshift(u2 * inside)
    radius = np.sqrt(u1 ** 2 + u2 ** 2)
    radius[0, 0] = 1.0
    with np.errstate(divide="ignore"):
        filt = np.exp(-(np.log(radius / omega0)) ** 2 / (2 * sigma_f ** 2))
    filt[0, 0] = 0.0
    return filt


@functools.lru_cache(maxsize=4)
def centre_prior(rows: int = SALIENCY_SIZE, cols: int = SALIENCY_SIZE,
                 sigma_d: float = SIGMA_D) -> np.ndarray:
    """SDSP's ``SDMap``: ``exp(−((i − rows/2)² + (j − cols/2)²)/σ_D²)``, 1-based i, j."""
    i = np.arange(1, rows + 1)[:, None] - rows / 2
    j = np.arange(1, cols + 1)[None, :] - cols / 2
    return np.exp(-(i ** 2 + j ** 2) / sigma_d ** 2)


def _guarded_sqrt(values: torch.Tensor) -> torch.Tensor:
    """sqrt with gradient 0 (not ∞) where the argument is 0."""
    positive = values > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, values, 1.0)), 0.0)


def _positive_power(values: torch.Tensor, exponent: float) -> torch.Tensor:
    """``values ** exponent`` for values > 0 (other entries: 0, with zero gradient)."""
    positive = values > 0
    return torch.where(positive, torch.where(positive, values, 1.0) ** exponent, 0.0)


def _real_power(values: torch.Tensor, exponent: float) -> torch.Tensor:
    """MATLAB's ``real(x .^ p)``: ``x^p`` for x > 0, ``|x|^p·cos(pπ)`` for x < 0, 0 at 0."""
    magnitude = _positive_power(values.abs(), exponent)
    return torch.where(values < 0, magnitude * math.cos(math.pi * exponent), magnitude)


def release_rgb2lab(rgb: torch.Tensor) -> torch.Tensor:
    """The release's ``RGB2Lab`` of (N, 3, H, W) values on 0–255 → (N, 3, H, W) L, a, b.

    Not MATLAB's ``rgb2lab``/``makecform``: sRGB companding, the sRGB (D65)
    matrix, then normalisation by a D50 white (0.9642, 1, 0.8251), so grey is
    not achromatic; ε = 0.008856, κ = 903.3.
    """
    normalised = rgb / 255
    linear = torch.where(normalised <= 0.04045, normalised / 12.92,
                         _positive_power((normalised + 0.055) / 1.055, 2.4))
    red, green, blue = linear[:, 0], linear[:, 1], linear[:, 2]
    f = []
    for row, white in zip(SRGB_TO_XYZ, WHITE, strict=True):
        ratio = (red * row[0] + green * row[1] + blue * row[2]) / white
        f.append(torch.where(ratio > LAB_EPSILON, _positive_power(ratio, 1 / 3),
                             (LAB_KAPPA * ratio + 16) / 116))
    fx, fy, fz = f
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def _min_max_normalise(channel: torch.Tensor):
    """``(A − min(A(:)))/(max(A(:)) − min(A(:)))`` per image of an (N, H, W) batch.

    Returns the normalised channel and an (N,) mask of images where it is
    defined (max > min); elsewhere MATLAB has 0/0 and the channel here is 0.
    """
    low = channel.flatten(1).amin(1)
    spread = channel.flatten(1).amax(1) - low
    defined = spread > 0
    safe = torch.where(defined, spread, torch.ones_like(spread))
    return (channel - low[:, None, None]) / safe[:, None, None], defined


def sdsp(rgb: torch.Tensor, *, with_mask: bool = False):
    """SDSP saliency as ``VSI.m`` calls it, for (N, 3, H, W) RGB on 0–255 → (N, 1, H, W) in [0, 1].

    ``SDSP(image, 1.34, 0.021, 145, 0.001)`` of the release, ``mat2gray`` included.
    ``with_mask=True`` also returns the (N,) mask of images whose warm-colour
    prior is defined (MATLAB: NaN saliency for a constant-colour image).
    """
    height, width = rgb.shape[-2:]
    small = imresize(rgb, (SALIENCY_SIZE, SALIENCY_SIZE), "bilinear")
    lab = release_rgb2lab(small)
    band = torch.from_numpy(log_gabor()[:, : SALIENCY_SIZE // 2 + 1]).to(lab)
    filtered = torch.fft.irfft2(torch.fft.rfft2(lab) * band, s=lab.shape[-2:])
    frequency = _guarded_sqrt((filtered * filtered).sum(1))
    centre = torch.from_numpy(centre_prior()).to(lab)
    a, defined_a = _min_max_normalise(lab[:, 1])
    b, defined_b = _min_max_normalise(lab[:, 2])
    colour = 1 - torch.exp(-(a * a + b * b) / SIGMA_C ** 2)
    saliency = mat2gray(imresize((frequency * centre * colour)[:, None], (height, width),
                                 "bilinear"))
    if with_mask:
        return saliency, defined_a & defined_b
    nan = torch.full_like(saliency, math.nan)
    return torch.where((defined_a & defined_b)[:, None, None, None], saliency, nan)


def _similarity(a: torch.Tensor, b: torch.Tensor, constant: float) -> torch.Tensor:
    return (2 * a * b + constant) / (a * a + b * b + constant)


def _channels(rgb: torch.Tensor):
    red, green, blue = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return [weights[0] * red + weights[1] * green + weights[2] * blue
            for weights in LMN_WEIGHTS]


def _vsi(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """VSI of two (N, 3, H, W) float64 batches on 0–255."""
    factor = downsample_factor(*reference.shape[-2:])
    maps = []
    defined = torch.ones(reference.shape[0], dtype=torch.bool, device=reference.device)
    for image in (reference, distorted):
        light, m, n = _channels(image)
        saliency, has_colour = sdsp(image, with_mask=True)
        defined = defined & has_colour
        stacked = torch.cat([light, m, n, saliency], 1)
        maps.append(conv2_same_average_subsample(stacked, factor))
    (light1, m1, n1, vs1), (light2, m2, n2, vs2) = (torch.unbind(x, 1) for x in maps)
    gradients = []
    for light in (light1, light2):
        ix = conv2_same(light[:, None], SCHARR_X)
        iy = conv2_same(light[:, None], SCHARR_Y)
        gradients.append(_guarded_sqrt(ix * ix + iy * iy)[:, 0])
    s_vs = _similarity(vs1, vs2, C_VS)
    s_g = _similarity(gradients[0], gradients[1], C_GM)
    s_chrom = _similarity(m1, m2, C_CHROM) * _similarity(n1, n2, C_CHROM)
    weight = torch.maximum(vs1, vs2)
    local = s_g ** ALPHA * s_vs * _real_power(s_chrom, LAMBDA) * weight
    total = weight.flatten(1).sum(1)
    # 0/0 where MATLAB has it (constant colour, or no saliency at all): NaN,
    # computed without NaN reaching the other images' gradients.
    defined = defined & (total > 0)
    score = local.flatten(1).sum(1) / torch.where(defined, total, torch.ones_like(total))
    return torch.where(defined, score, torch.full_like(score, math.nan))


def vsi(reference: torch.Tensor, distorted: torch.Tensor, *, data_range: float = 1.0,
        clamp: bool = False) -> torch.Tensor:
    """VSI of each pair of (N, C, H, W) batches, C = 1 or 3, as ``VSI.m``; higher is better.

    Parameters
    ----------
    reference, distorted : torch.Tensor
        Values in [0, data_range], at least 2×2.
    data_range : float
        1.0 for [0, 1] images, 255.0 for [0, 255].
    clamp : bool
        Clamp out-of-range values instead of raising.

    Returns
    -------
    torch.Tensor
        (N,) scores in [0, 1] with the input's dtype, differentiable w.r.t. both
        images. NaN for a constant-colour image (MATLAB's 0/0).
    """
    reference, distorted = check_pair(reference, distorted, data_range=data_range,
                                      min_size=MIN_SIZE, clamp=clamp)
    dtype = distorted.dtype
    scale = 255.0 / data_range
    pair = [(x.to(torch.float64) * scale) for x in (reference, distorted)]
    pair = [x if x.shape[1] == 3 else x.repeat(1, 3, 1, 1) for x in pair]
    return _vsi(*pair).to(dtype)
