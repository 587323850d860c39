"""Visual information fidelity (VIF) in PyTorch: batched and differentiable.

Paper: H. R. Sheikh and A. C. Bovik, "Image information and visual quality",
*IEEE Transactions on Image Processing* 15(2), 430–444 (2006).

:func:`vif` follows the authors' release ``vifvec.m`` (LIVE, UT Austin,
``vifvec_release``) with its helpers ``vifsub_est_M.m``, ``refparams_vecgsm.m`` and
``ind2wtree.m``, on Simoncelli's matlabPyrTools (``buildSpyr``, ``sp5Filters``,
``corrDn`` with ``'reflect1'`` edges), as the published numbers were produced:
``vifvec(double(rgb2gray(ref)), double(rgb2gray(dist)))`` on files read as uint8.
Its arithmetic, not the paper's prose, is reproduced:

Input
    ``double(rgb2gray(uint8))``: :func:`advqa.quality.matlab.release_grey`, grey
    levels 0–255 rounded to whole levels (halves away from zero) with a
    straight-through gradient. One-channel input is taken as grey, rescaled to
    0–255 and rounded. ``conversion`` selects another grey conversion.

Wavelet decomposition
    ``buildSpyr(im, 4, 'sp5Filters', 'reflect1')``: ``lo0 = corrDn(im, lo0filt)``
    (5×5), then at each of 4 scales six oriented 7×7 band filters on the current
    low-pass and ``corrDn(lo, lofilt, 'reflect1', [2 2], [1 1])`` (9×9, keep rows
    and columns 1, 3, 5, …: ``ceil(n/2)`` samples) to the next. ``corrDn`` is a
    correlation; for these odd, centred filters ``'reflect1'`` (reflection through
    the edge pixel) is whole-sample symmetric padding, ``F.pad(mode="reflect")``,
    followed by a 'valid' correlation.
    ``ind2wtree`` numbers the 26 sub-bands from the coarse end, so the release's
    ``subbands = [4 7 10 13 16 19 22 25]`` are orientation bands 4 (90°) and 1 (0°)
    of scales 4, 3, 2, 1 (coarsest first).

Distortion channel (``vifsub_est_M``), per sub-band
    Sub-band cropped to a multiple of ``M = 3`` rows and columns; window
    ``ones(w)``, ``w = 2^lev + 1`` with ``lev = ceil((sub − 1)/6)`` — 3×3 at the
    coarsest scale, 5, 9 and 17×17 at the finest, the release's order — evaluated
    by ``corrDn(…, 'reflect1', [M M], [2 2], size − 1)``, i.e. once per 3×3 block,
    centred on the block's centre. ``σ²_x = Σx² − n·μ_x²``, ``σ²_y`` and
    ``σ_xy`` likewise (``n = w²``, sums, not means), negatives set to 0;
    ``g = σ_xy/(σ²_x + 10⁻¹⁵)``, ``v = (σ²_y − g·σ_xy)/n``; then, in the
    release's order, ``g = 0, v = σ²_y`` where ``σ²_x < 10⁻¹⁵``; ``g = v = 0``
    where ``σ²_y < 10⁻¹⁵``; ``v = σ²_y, g = 0`` where ``g < 0``; ``v = 10⁻¹⁵``
    where ``v ≤ 10⁻¹⁵``.

Reference GSM model (``refparams_vecgsm``), per sub-band
    Same crop; covariance ``C_U`` (divided by the count, not count − 1) of *all*
    overlapping 3×3 neighbourhoods as 9-vectors; the multiplier field
    ``s = xᵀ C_U⁻¹ x / 9`` on the *non-overlapping* 3×3 blocks; the 9 eigenvalues
    ``λ_k`` of ``C_U``.

Index
    ``g``, ``v``, ``s`` trimmed by ``ceil(((w − 1)/2)/3)`` blocks on every side
    (1, 1, 2, 3 from the coarsest scale), then with ``σ²_n = 0.4``::

        VIF = Σ_bands Σ_blocks Σ_k log2(1 + g² s λ_k / (v + σ²_n))
              / Σ_bands Σ_blocks Σ_k log2(1 + s λ_k / σ²_n)

    over the eight sub-bands, per image. VIF(x, x) = 1; VIF is not symmetric;
    it exceeds 1 for a contrast enhancement without clipping; ordinary
    distortions give values in [0, 1) (0.017–0.99 on TID2013 examples).
    Computed here for the whole batch at once, in float64.

Filter taps are the numbers of matlabPyrTools' ``sp5Filters.m`` (Simoncelli &
Freeman 1995; Karasaridis & Simoncelli 1996), written as the matrices that
``buildSpyr`` applies: ``bfilts(:, b)`` reshaped to 7×7 in MATLAB's column-major
order. In that file the 90° band is exactly minus the transpose of the 0° band.

Deviations from the release, none of which changes a value beyond rounding:

* Only what enters the index is computed: the high-pass ``hi0`` band, the four
  other orientations and the last low-pass residual (``corrDn(lo3, lofilt, …)``)
  of ``buildSpyr`` are never used by ``vifvec`` and are skipped.
* Arithmetic reorganised for speed, identical up to rounding: the pyramid's
  correlations by FFT (float64 ``conv2d`` on CPU is several times slower), the
  two bands and ``lofilt`` of a scale sharing one padding by 4 (the 7×7 bands
  zero-embedded in 9×9) and the subsampling taken from the full correlation;
  window means by separable ``avg_pool2d`` and ``σ_xy = n·(E[xy] − E[x]E[y])``
  instead of ``corrDn`` sums minus ``n·μ_x·μ_y``; ``C_U⁻¹x`` by
  ``torch.linalg.solve`` instead of ``inv(cu)*temp``; eigenvalues by
  ``eigvalsh`` (the symmetric solver MATLAB's ``eig`` uses for a symmetric
  matrix). float64 throughout, whatever the input dtype; the result is returned
  in the input's dtype. Against a NumPy transcription of the release the index
  agrees to ~1e-14 (relative).
* Rounding to grey levels passes the gradient straight through (BPDA), so attacks
  get the gradient of the unrounded index. The thresholds above are
  ``torch.where`` masks: gradients are those of the selected branch.
* VIF is undefined for a flat reference (a constant image: ``C_U`` singular,
  ``inv(cu)`` and the index non-finite in MATLAB); it is NaN here, not an error.
  A reference flat in part only is fine (``vifsub_est_M``'s thresholds).
* Too small an image makes ``buildSpyr`` refuse 4 levels
  (``maxPyrHt(size, 9) < 4``): H, W ≥ 72 (:data:`MIN_SIZE`); a clear
  ``ValueError`` is raised instead.

:func:`vifp` is the pixel-domain variant VIFp, as :func:`piq.vif_p` computes it
(advqa's ``vif`` before the wavelet-domain release was followed).

References
----------
.. [1] H. R. Sheikh and A. C. Bovik, "Image information and visual quality",
   IEEE TIP 15(2), 430–444, 2006. Release: ``vifvec_release`` (``vifvec.m``,
   ``vifsub_est_M.m``, ``refparams_vecgsm.m``, ``ind2wtree.m``),
   http://live.ece.utexas.edu/research/Quality/
.. [2] E. P. Simoncelli and W. T. Freeman, "The steerable pyramid: a flexible
   architecture for multi-scale derivative computation", ICIP 1995;
   matlabPyrTools (``buildSpyr.m``, ``sp5Filters.m``, ``corrDn.c``, ``edges.c``),
   https://github.com/LabForComputationalVision/matlabPyrTools
"""

from __future__ import annotations

import math

import piq
import torch
import torch.nn.functional as F

from advqa.quality.matlab import release_grey
from advqa.quality.validate import check_pair

#: ``buildSpyr`` builds 4 levels only if ``floor(min(H, W)/8) ≥ 9`` (the 9×9
#: ``lofilt``): ``maxPyrHt(size, 9) ≥ 4``.
MIN_SIZE = 72
LEVELS = 4
BLOCK = 3  # M, the GSM vector is an M×M neighbourhood
SIGMA_NSQ = 0.4  # sigma_nsq, the HVS noise variance
TOLERANCE = 1e-15  # tol of vifsub_est_M

# sp5Filters.m: lo0filt (5×5) and lofilt (2 × the listed 9×9).
_LO0_FILTER = (
    (0.00341614, -0.01551246, -0.03848215, -0.01551246, 0.00341614),
    (-0.01551246, 0.05586982, 0.15925570, 0.05586982, -0.01551246),
    (-0.03848215, 0.15925570, 0.40304148, 0.15925570, -0.03848215),
    (-0.01551246, 0.05586982, 0.15925570, 0.05586982, -0.01551246),
    (0.00341614, -0.01551246, -0.03848215, -0.01551246, 0.00341614),
)
_LO_FILTER_HALF = (
    (0.00085404, -0.00244917, -0.00387812, -0.00944432, -0.00962054, -0.00944432,
     -0.00387812, -0.00244917, 0.00085404),
    (-0.00244917, -0.00523281, -0.00661117, 0.00410600, 0.01002988, 0.00410600,
     -0.00661117, -0.00523281, -0.00244917),
    (-0.00387812, -0.00661117, 0.01396746, 0.03277038, 0.03981393, 0.03277038,
     0.01396746, -0.00661117, -0.00387812),
    (-0.00944432, 0.00410600, 0.03277038, 0.06426333, 0.08169618, 0.06426333,
     0.03277038, 0.00410600, -0.00944432),
    (-0.00962054, 0.01002988, 0.03981393, 0.08169618, 0.10096540, 0.08169618,
     0.03981393, 0.01002988, -0.00962054),
    (-0.00944432, 0.00410600, 0.03277038, 0.06426333, 0.08169618, 0.06426333,
     0.03277038, 0.00410600, -0.00944432),
    (-0.00387812, -0.00661117, 0.01396746, 0.03277038, 0.03981393, 0.03277038,
     0.01396746, -0.00661117, -0.00387812),
    (-0.00244917, -0.00523281, -0.00661117, 0.00410600, 0.01002988, 0.00410600,
     -0.00661117, -0.00523281, -0.00244917),
    (0.00085404, -0.00244917, -0.00387812, -0.00944432, -0.00962054, -0.00944432,
     -0.00387812, -0.00244917, 0.00085404),
)
# sp5Filters.m band 1 (0°), reshape(bfilts(:, 1), 7, 7): a horizontal derivative.
# Band 4 (90°) is exactly -band1ᵀ in that file.
_BAND_0 = (
    (0.00277643, -0.00986904, -0.01021852, 0.0, 0.01021852, 0.00986904, -0.00277643),
    (0.00496194, -0.00893064, -0.03075356, 0.0, 0.03075356, 0.00893064, -0.00496194),
    (0.01026699, 0.01189859, -0.08226445, 0.0, 0.08226445, -0.01189859, -0.01026699),
    (0.01455399, 0.02755155, -0.11732297, 0.0, 0.11732297, -0.02755155, -0.01455399),
    (0.01026699, 0.01189859, -0.08226445, 0.0, 0.08226445, -0.01189859, -0.01026699),
    (0.00496194, -0.00893064, -0.03075356, 0.0, 0.03075356, 0.00893064, -0.00496194),
    (0.00277643, -0.00986904, -0.01021852, 0.0, 0.01021852, 0.00986904, -0.00277643),
)


def _correlate(padded: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """'Valid' correlation of (B, 1, H, W) with (K, k, k) kernels, as (B, K, H-k+1, W-k+1).

    By FFT (float64 ``conv2d`` on CPU takes a slow im2col path, ~5× slower): the
    circular convolution with the flipped kernel equals the correlation wherever it
    does not wrap, which is exactly the 'valid' part.
    """
    size = padded.shape[-2:]
    spectrum = torch.fft.rfft2(padded, s=size)
    transfer = torch.fft.rfft2(kernels.flip(-2, -1), s=size)
    full = torch.fft.irfft2(spectrum * transfer, s=size)
    return full[..., kernels.shape[-2] - 1:, kernels.shape[-1] - 1:]


def _reflect1(images: torch.Tensor, half: int) -> torch.Tensor:
    """``'reflect1'`` padding of ``corrDn`` for a centred (2·half+1)-tap filter."""
    return F.pad(images, (half, half, half, half), mode="reflect")


def _pyramid_bands(grey: torch.Tensor):
    """The sub-bands ``vifvec`` uses: (scale, (B, 2, h, w) bands 4 and 1), finest scale first.

    ``corrDn(·, filt, 'reflect1')`` is ``'reflect1'`` padding then a 'valid'
    correlation; at each scale the two 7×7 bands (zero-embedded in 9×9) and the 9×9
    ``lofilt`` share one padding by 4 and one FFT.
    """
    options = {"dtype": grey.dtype, "device": grey.device}
    lo0 = torch.tensor(_LO0_FILTER, **options)[None]
    band0 = F.pad(torch.tensor(_BAND_0, **options), (1, 1, 1, 1))
    kernels = torch.stack([-band0.T, band0, 2 * torch.tensor(_LO_FILTER_HALF, **options)])
    low = _correlate(_reflect1(grey, 2), lo0)
    for scale in range(1, LEVELS + 1):
        last = scale == LEVELS
        outputs = _correlate(_reflect1(low, 4), kernels[:2] if last else kernels)
        yield scale, outputs[:, :2]
        # corrDn(lo, lofilt, 'reflect1', [2 2], [1 1]): rows and columns 1, 3, 5, ...
        low = outputs[:, 2:, ::2, ::2]


def _window(scale: int) -> int:
    """The release's distortion-channel window side, ``2^lev + 1`` with ``lev = ceil((sub-1)/6)``.

    ``lev`` counts from the coarse end: scale 4 (coarsest) → 3, scale 1 → 17.
    """
    return 2 ** (LEVELS + 1 - scale) + 1


def _block_means(values: torch.Tensor, window: int) -> torch.Tensor:
    """Window means centred on each 3×3 block's centre (``corrDn`` with step M, start 2)."""
    padded = _reflect1(values, (window - 1) // 2)[..., 1:, 1:]
    rows = F.avg_pool2d(padded, (window, 1), stride=(BLOCK, 1))
    return F.avg_pool2d(rows, (1, window), stride=(1, BLOCK))


def _distortion_channel(x: torch.Tensor, y: torch.Tensor, window: int):
    """``vifsub_est_M``: gain ``g`` and noise variance ``v`` per block, (B, 1, h/3, w/3)."""
    count = window * window
    means = _block_means(torch.cat([x, y, x * y, x * x, y * y], dim=1), window)
    mean_x, mean_y, mean_xy, mean_xx, mean_yy = means.split(1, dim=1)
    covariance = count * (mean_xy - mean_x * mean_y)
    ss_x = (count * (mean_xx - mean_x**2)).clamp_min(0)
    ss_y = (count * (mean_yy - mean_y**2)).clamp_min(0)
    gain = covariance / (ss_x + TOLERANCE)
    noise = (ss_y - gain * covariance) / count
    flat_x = ss_x < TOLERANCE
    gain = torch.where(flat_x, torch.zeros_like(gain), gain)
    noise = torch.where(flat_x, ss_y, noise)
    flat_y = ss_y < TOLERANCE
    gain = torch.where(flat_y, torch.zeros_like(gain), gain)
    noise = torch.where(flat_y, torch.zeros_like(noise), noise)
    negative = gain < 0
    noise = torch.where(negative, ss_y, noise)
    gain = torch.where(negative, torch.zeros_like(gain), gain)
    noise = torch.where(noise <= TOLERANCE, torch.full_like(noise, TOLERANCE), noise)
    return gain, noise


def _reference_model(x: torch.Tensor):
    """``refparams_vecgsm``: multiplier field ``s`` (B, 1, h/3, w/3) and eigenvalues (B, 9)."""
    vectors = F.unfold(x, BLOCK)  # all overlapping M×M neighbourhoods, (B, 9, L)
    centred = vectors - vectors.mean(dim=-1, keepdim=True)
    covariance = centred @ centred.transpose(1, 2) / vectors.shape[-1]
    covariance = (covariance + covariance.transpose(1, 2)) / 2  # exactly symmetric
    blocks = F.unfold(x, BLOCK, stride=BLOCK)  # non-overlapping blocks, (B, 9, h/3·w/3)
    solved = torch.linalg.solve_ex(covariance, blocks)[0]
    field = (blocks * solved).sum(dim=1) / BLOCK**2
    field = field.reshape(x.shape[0], 1, x.shape[-2] // BLOCK, x.shape[-1] // BLOCK)
    return field, torch.linalg.eigvalsh(covariance)


def vif_grey(reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
    """``vifvec(reference, distorted)`` of (N, 1, H, W) grey images on 0–255, float64.

    No validation, no conversion: :func:`vif` is the metric. H, W ≥ :data:`MIN_SIZE`.
    """
    batch = reference.shape[0]
    both = torch.cat([reference, distorted])
    numerator = reference.new_zeros(batch)
    denominator = reference.new_zeros(batch)
    for scale, bands in _pyramid_bands(both):
        height = bands.shape[-2] // BLOCK * BLOCK
        width = bands.shape[-1] // BLOCK * BLOCK
        bands = bands[..., :height, :width]
        x = bands[:batch].reshape(-1, 1, height, width)  # (N·2, 1, h, w)
        y = bands[batch:].reshape(-1, 1, height, width)
        window = _window(scale)
        gain, noise = _distortion_channel(x, y, window)
        # The reference bands depend on the reference alone (the pyramid works image by
        # image): without a gradient to it, its GSM model needs no graph.
        field, eigenvalues = _reference_model(x if reference.requires_grad else x.detach())
        trim = math.ceil((window - 1) / 2 / BLOCK)
        inner = (..., slice(trim, -trim), slice(trim, -trim))
        gain, noise, field = gain[inner], noise[inner], field[inner]
        weights = eigenvalues[:, :, None, None]  # (N·2, 9, 1, 1) against (N·2, 1, h', w')
        distorted_information = torch.log2(1 + gain**2 * field * weights / (noise + SIGMA_NSQ))
        reference_information = torch.log2(1 + field * weights / SIGMA_NSQ)
        numerator = numerator + distorted_information.reshape(batch, -1).sum(dim=1)
        denominator = denominator + reference_information.reshape(batch, -1).sum(dim=1)
    return numerator / denominator


def vif(reference, distorted, *, data_range=1.0, clamp=False, conversion="rgb2gray"):
    """Visual information fidelity of Sheikh & Bovik (2006), as ``vifvec.m`` runs on a file.

    Parameters
    ----------
    reference, distorted : torch.Tensor
        (N, C, H, W) batches, C ∈ {1, 3}, values in [0, data_range], H, W ≥ 72.
    data_range : float
        The value of white.
    clamp : bool
        Clamp out-of-range values instead of raising.
    conversion : str
        How colour becomes grey (:func:`advqa.quality.matlab.release_grey`);
        ``"rgb2gray"`` is ``double(rgb2gray(imread(file)))``, the release's input.

    Returns
    -------
    torch.Tensor
        (N,) VIF in the input's dtype; 1 for identical images, higher is better
        (above 1 for contrast enhancement).

    Notes
    -----
    The wavelet-domain index of ``vifvec.m`` on a 4-scale, 6-orientation
    steerable pyramid (see the module documentation for every step and the
    deviations). Computed in float64, differentiable with respect to both images.

    References
    ----------
    .. [1] H. R. Sheikh and A. C. Bovik, "Image information and visual quality",
       IEEE TIP 15(2), 2006. Release: ``vifvec.m``.
    """
    reference, distorted = check_pair(reference, distorted, data_range=data_range,
                                      min_size=MIN_SIZE, clamp=clamp)
    dtype = distorted.dtype
    grey_reference = release_grey(reference.double() / data_range, 1.0, conversion)
    grey_distorted = release_grey(distorted.double() / data_range, 1.0, conversion)
    return vif_grey(grey_reference, grey_distorted).to(dtype)


def vifp(reference, distorted, *, data_range=1.0, clamp=False):
    """Pixel-domain VIF (VIFp, Sheikh & Bovik 2006) as :func:`piq.vif_p` computes it.

    Four scales of Gaussian-windowed ('valid') local statistics of the grey image
    (``0.299 R + 0.587 G + 0.114 B`` on 0–255, unrounded), σ²_n = 2; H, W ≥ 41.
    This was advqa's ``vif`` before it followed the wavelet-domain release.

    References
    ----------
    .. [1] H. R. Sheikh and A. C. Bovik, "Image information and visual quality",
       IEEE TIP 15(2), 2006.
    """
    reference, distorted = check_pair(reference, distorted, data_range=data_range,
                                      min_size=41, clamp=clamp)
    return piq.vif_p(distorted / data_range, reference / data_range, data_range=1.0,
                     reduction="none")
