"""Classical full-reference metrics, each reproducing its original release by default.

Each function takes ``(reference, distorted)`` batches in [0, data_range],
validates them with :mod:`advqa.quality.validate`, and returns (N,) scores. The
grey-level releases are fed what they are fed when run on files,
``double(rgb2gray(imread(file)))`` (:func:`advqa.quality.matlab.release_grey`);
docs/metrics.md lists each release and how closely it is reproduced.

- ``psnr``: MSE over all channels, as MATLAB's ``psnr`` on RGB (piq).
- ``ssim``: ``ssim_index.m`` (Wang et al. 2004): 11×11 Gaussian σ = 1.5,
  K = (0.01, 0.03), no downsampling; ``downsample=True`` gives the 2009 ``ssim.m``.
- ``ms_ssim``: ``msssim.m`` (Wang, Simoncelli & Bovik 2003), five scales.
- ``fsim``: ``FeatureSIM.m`` (Zhang et al. 2011), FSIMc on RGB (piq).
- ``gmsd``: ``GMSD.m`` (Xue et al. 2014); lower is better.

VIF and VIFp live in :mod:`advqa.quality.vif`, VSI in :mod:`advqa.quality.vsi`.
"""

from __future__ import annotations

import piq
import torch
import torch.nn.functional as F

from advqa.quality.advdss import gaussian_window
from advqa.quality.filters import separable_valid
from advqa.quality.matlab import (
    conv2_average_subsample,
    conv2_same_average_subsample,
    downsample_factor,
    imfilter_average_subsample,
    release_grey,
)
from advqa.quality.validate import check_pair

# msssim.m filters five scales with an 11×11 window: the smallest side must
# survive four halvings.
MS_SSIM_MIN_SIZE = 11 * 2**4


def _pair(reference, distorted, data_range, clamp, min_size=1):
    reference, distorted = check_pair(reference, distorted, data_range=data_range,
                                      min_size=min_size, clamp=clamp)
    return reference / data_range, distorted / data_range


def psnr(reference, distorted, *, data_range=1.0, clamp=False):
    """Peak signal-to-noise ratio in dB; higher is better."""
    reference, distorted = _pair(reference, distorted, data_range, clamp)
    return piq.psnr(distorted, reference, data_range=1.0, reduction="none")


def ssim(reference, distorted, *, data_range=1.0, clamp=False, downsample=False,
         conversion="rgb2gray", k1=0.01, k2=0.03):
    """SSIM of Wang, Bovik, Sheikh & Simoncelli (2004) as ``ssim_index.m`` runs on a file.

    Release call reproduced: ``mssim = ssim_index(double(rgb2gray(imread(ref))),
    double(rgb2gray(imread(dist))))`` (defaults K = [0.01 0.03], L = 255).

    Parameters
    ----------
    reference, distorted : torch.Tensor
        (N, C, H, W) in [0, data_range], C in {1, 3}, H, W ≥ 11.
    data_range : float
        The value of white.
    clamp : bool
        Clamp out-of-range values instead of raising.
    downsample : bool, default False
        ``False``: ``ssim_index.m`` (2003–2004), which never downsamples — the
        version behind the published SSIM values. ``True``: the 2009 ``ssim.m``,
        which first averages and subsamples by ``f = max(1, round(min(H, W)/256))``
        (:func:`advqa.quality.matlab.imfilter_average_subsample`).
    conversion : {"rgb2gray", "rgb2gray-double", "luma"}
        How colour becomes grey (:func:`advqa.quality.matlab.release_grey`);
        ``"rgb2gray"`` is ``double(rgb2gray(imread(file)))``, the releases' input.
        ``conversion="luma", downsample=True`` was advqa's default before 0.3.
    k1, k2 : float
        Stabilising constants, ``C_i = (k_i·255)²``.

    Returns
    -------
    torch.Tensor
        (N,) mean SSIM.

    Notes
    -----
    11×11 Gaussian window with σ = 1.5 and 'valid' filtering (``filter2(…,
    'valid')``), exactly as the release. The grey image is rounded to whole levels
    with a straight-through gradient, so attacks still get the gradient of the
    unrounded index. The five local moments are filtered in one separable SciPy
    pass on CPU (forward + backward several times faster than ``conv2d``).

    References
    ----------
    .. [1] Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality
       assessment: from error visibility to structural similarity", IEEE TIP 13(4),
       2004. Release: ``ssim_index.m`` (2003), ``ssim.m`` (2009),
       https://ece.uwaterloo.ca/~z70wang/research/ssim/
    """
    reference, distorted = _pair(reference, distorted, data_range, clamp, min_size=11)
    grey_reference = release_grey(reference, 1.0, conversion) / 255
    grey_distorted = release_grey(distorted, 1.0, conversion) / 255
    if downsample:
        factor = downsample_factor(*grey_distorted.shape[-2:])
        grey_reference = imfilter_average_subsample(grey_reference, factor)
        grey_distorted = imfilter_average_subsample(grey_distorted, factor)
    return ssim_index(grey_reference, grey_distorted, k1=k1, k2=k2)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, k1: float, k2: float):
    """Mean SSIM and mean contrast-structure over 'valid' 11×11 Gaussian windows."""
    window = gaussian_window(device=x.device, dtype=x.dtype)
    moments = separable_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mean_x, mean_y = moments[:, 0], moments[:, 1]
    variance_x = moments[:, 2] - mean_x**2
    variance_y = moments[:, 3] - mean_y**2
    covariance = moments[:, 4] - mean_x * mean_y
    constant1, constant2 = k1**2, k2**2
    luminance = (2 * mean_x * mean_y + constant1) / (mean_x**2 + mean_y**2 + constant1)
    contrast_structure = (2 * covariance + constant2) / (variance_x + variance_y + constant2)
    return ((luminance * contrast_structure).mean(dim=(-1, -2)),
            contrast_structure.mean(dim=(-1, -2)))


def ssim_index(x: torch.Tensor, y: torch.Tensor, *, k1: float = 0.01,
               k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM map of one-channel [0, 1] batches over 'valid' 11×11 Gaussian windows."""
    return _ssim_terms(x, y, k1, k2)[0]


# msssim.m's scale weights (Wang, Simoncelli & Bovik 2003, Table 1).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(reference, distorted, *, data_range=1.0, clamp=False, conversion="rgb2gray",
            k1=0.01, k2=0.03):
    """Multi-scale SSIM (Wang, Simoncelli & Bovik, 2003) as ``msssim.m`` runs on a file.

    Release call reproduced: ``msssim(double(rgb2gray(imread(ref))),
    double(rgb2gray(imread(dist))))`` with its defaults.

    Five scales with ``msssim.m``'s weights, method ``'product'``:
    ``Π_{j<5} cs_j^{w_j} · ssim_5^{w_5}``; between scales ``imfilter(x,
    ones(2)/4, 'symmetric', 'same')`` then ``x(1:2:end, 1:2:end)``. Input as
    :func:`ssim` (``conversion``); H, W ≥ 176 (11 × 2⁴).

    Deviation: a negative mean contrast-structure term (anti-correlated images
    only) makes MATLAB's power complex; it is clamped at 0 here (as piq), so the
    index is 0 instead of a complex number.

    References
    ----------
    .. [1] Z. Wang, E. P. Simoncelli and A. C. Bovik, "Multiscale structural
       similarity for image quality assessment", Asilomar 2003. Release:
       ``msssim.m`` with ``ssim_index_new.m``.
    """
    reference, distorted = _pair(reference, distorted, data_range, clamp,
                                 min_size=MS_SSIM_MIN_SIZE)
    x = release_grey(reference, 1.0, conversion) / 255
    y = release_grey(distorted, 1.0, conversion) / 255
    result = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    for scale, weight in enumerate(MS_SSIM_WEIGHTS):
        mean_ssim, mean_cs = _ssim_terms(x, y, k1, k2)
        last = scale == len(MS_SSIM_WEIGHTS) - 1
        result = result * (mean_ssim if last else mean_cs).clamp_min(0) ** weight
        if not last:
            x, y = imfilter_average_subsample(x, 2), imfilter_average_subsample(y, 2)
    return result


def fsim(reference, distorted, *, data_range=1.0, clamp=False):
    """FSIMc (Zhang, Zhang, Mou & Zhang, 2011) as ``FeatureSIM.m``; FSIM on one channel.

    Release call reproduced: ``[FSIM, FSIMc] = FeatureSIM(imread(ref), imread(dist))``
    (FSIMc for RGB input, FSIM for grey).

    The release works on the RGB file as ``double`` 0–255 (no grey rounding) and
    first averages and subsamples by ``F = max(1, round(min(H, W)/256))`` with
    ``conv2(·, fspecial('average', F), 'same')`` and ``(1:F:end, 1:F:end)``.
    piq's ``fsim`` pools with ``avg_pool2d`` instead, which drops an odd last
    row and, for F ≥ 3, averages other pixels; so the images are downsampled here
    as the release does (the step is linear, so doing it on RGB before the YIQ
    conversion is the same) and piq, which then sees images whose own factor is
    1, computes the rest.

    References
    ----------
    .. [1] L. Zhang, L. Zhang, X. Mou and D. Zhang, "FSIM: a feature similarity index
       for image quality assessment", IEEE TIP 20(8), 2011. Release: ``FeatureSIM.m``.
    """
    reference, distorted = _pair(reference, distorted, data_range, clamp, min_size=7)
    factor = downsample_factor(*reference.shape[-2:])
    reference = conv2_same_average_subsample(reference, factor)
    distorted = conv2_same_average_subsample(distorted, factor)
    if downsample_factor(*reference.shape[-2:]) != 1:  # cannot happen; piq would pool again
        raise AssertionError("FSIM: piq would downsample a second time")
    chromatic = reference.shape[1] == 3
    return piq.fsim(distorted, reference, data_range=1.0, chromatic=chromatic,
                    reduction="none")


# GMSD.m's constant for grey levels on 0–255.
GMSD_T = 170.0


def gmsd(reference, distorted, *, data_range=1.0, clamp=False, conversion="rgb2gray"):
    """Gradient magnitude similarity deviation (Xue, Zhang, Mou & Bovik, 2014); lower is better.

    Release call reproduced: ``GMSD(double(rgb2gray(imread(ref))),
    double(rgb2gray(imread(dist))))``: 2×2 average with
    ``conv2(…, 'same')`` and subsampling by 2, Prewitt gradients ``[1 0 −1]/3``
    (``conv2 'same'``, zero padding), ``GMS = (2 m_r m_d + T)/(m_r² + m_d² + T)``
    with ``T = 170``, and the score ``std2(GMS)`` (sample standard deviation,
    N − 1). ``conversion`` as :func:`ssim`.

    Deviation: the gradient magnitude's square root is evaluated at
    ``max(g², 1e-12)`` so its gradient stays finite on flat regions (value change
    below 1e-6 grey levels).

    References
    ----------
    .. [1] W. Xue, L. Zhang, X. Mou and A. C. Bovik, "Gradient magnitude similarity
       deviation: a highly efficient perceptual image quality index", IEEE TIP
       23(2), 2014. Release: ``GMSD.m``.
    """
    reference, distorted = _pair(reference, distorted, data_range, clamp, min_size=7)
    both = torch.cat([release_grey(reference, 1.0, conversion),
                      release_grey(distorted, 1.0, conversion)], dim=1)
    both = conv2_average_subsample(both)
    prewitt = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=both.dtype, device=both.device) / 3
    kernels = torch.stack([prewitt, prewitt.T]).unsqueeze(1)
    flat = both.reshape(-1, 1, *both.shape[-2:])
    gradients = F.conv2d(flat, kernels, padding=1)
    magnitude = torch.sqrt((gradients**2).sum(dim=1).clamp_min(1e-12))
    magnitude = magnitude.reshape(both.shape)
    m_r, m_d = magnitude[:, 0], magnitude[:, 1]
    similarity = (2 * m_r * m_d + GMSD_T) / (m_r**2 + m_d**2 + GMSD_T)
    return similarity.flatten(1).std(dim=1, unbiased=True)
