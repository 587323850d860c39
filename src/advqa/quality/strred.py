"""ST-RRED, spatio-temporal reduced-reference entropic differencing, in PyTorch.

Paper: R. Soundararajan and A. C. Bovik, "Video quality assessment by reduced
reference spatio-temporal entropic differencing", *IEEE Transactions on Circuits and
Systems for Video Technology* 23(4), 684–694 (2013).

:func:`strred` follows the authors' release (LIVE, UT Austin, ``strred``:
``live_video_interface.m``, ``extract_info.m``, ``est_params.m``, ``ind2wtree.m`` on
Simoncelli's matlabPyrTools), batched over clips and differentiable. What the release
computes, step by step:

Input
    The release reads the 8-bit Y plane of each YUV 4:2:0 frame (``readframe.m``) and
    never looks at colour. Here RGB in [0, 1] becomes ITU-R BT.601 *limited-range*
    luma on the 0–255 scale, ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``
    (:func:`advqa.quality.validate.ycbcr_luma`, MATLAB's ``rgb2ycbcr``), rounded to whole
    levels (halves away from zero) with a straight-through gradient. This is the Y a
    ``yuv420p`` file made from the RGB clip holds (FFmpeg's default conversion for
    standard-definition video, the LIVE VQA database's format), and it inverts
    :func:`advqa.data.read_video`'s Y4M reading (BT.601, limited range): a clip read
    by advqa from a Y4M file gets its file's Y plane back, except where the RGB was
    clipped to [0, 1] (out-of-gamut colours). One-channel input is taken as that Y
    plane divided by 255 and only rescaled (and rounded) — the exact release input.
    ``rounding=False`` keeps the unrounded luma.

Frame pairs
    ``for k = 1:2:nframes-1``: disjoint pairs of consecutive frames (1, 2), (3, 4), …;
    with an odd number of frames the last one is not used. At least 2 frames.

Sub-band (``extract_info.m``)
    ``buildSpyr(frame, 4, 'sp5Filters', 'reflect1')`` and ``ind2wtree``'s band 4: the
    90° (vertically oriented) band of the coarsest of 4 scales, i.e.
    ``lo0 = corrDn(frame, lo0filt)`` (5×5), three times
    ``corrDn(lo, lofilt, 'reflect1', [2 2], [1 1])`` (9×9, keep rows and columns 1, 3, 5,
    …), then the 7×7 band filter (``reshape(bfilts(:, 4), 7, 7)``, which in
    ``sp5Filters.m`` is exactly minus the transpose of band 1). ``corrDn`` is a
    correlation and ``'reflect1'`` mirrors through the edge sample: ``F.pad(mode=
    "reflect")`` then an unpadded ``conv2d``. The sub-band is ``ceil(H/8) × ceil(W/8)``.
    ``y1``, ``y2``: the bands of the pair's two frames; ``ydiff = y1 − y2``.

GSM parameters (``est_params.m``, block ``blk = 3``)
    Crop the band to a multiple of 3 rows and columns. ``C_U``: covariance (divided by
    the count) of all overlapping 3×3 neighbourhoods as 9-vectors; made positive
    semi-definite by ``eig``: negative eigenvalues set to 0 and the others rescaled so
    the trace is kept. ``s = xᵀ C_U⁻¹ x / 9`` for each non-overlapping 3×3 block ``x``
    (uncentred), or 0 everywhere when ``max(eig(C_U)) ≤ 0``. With the positive
    eigenvalues ``λ_k`` of ``C_U``, the entropy per block is
    ``h = Σ_k [log2(s λ_k + σ²) + ln(2πe)]`` — the release mixes ``log2`` and the
    natural ``log`` in this sum, reproduced as written.
    ``σ² = 0.1`` (``sigma_nsq``) for ``y1`` and 0.1 (``sigma_nsqt``) for ``ydiff``.

Scaled entropies (``extract_info.m``)
    ``spatial = h(y1) · log2(1 + s(y1))``;
    ``temporal = h(ydiff) · log2(1 + s(y1)) · log2(1 + s(ydiff))``, per block.

Index (``live_video_interface.m``)
    Per pair, ``rreds = mean |spatial_ref − spatial_dis|`` and
    ``rredt = mean |temporal_ref − temporal_dis|`` over the blocks; SRRED and TRRED are
    their means over the pairs and ST-RRED = SRRED · TRRED. 0 for identical clips,
    higher for worse quality, unbounded. ``single_number=True`` gives the release's
    one-number-per-frame variants instead (``srredsn``, ``trredsn``, ``strredsn``:
    ``|mean(spatial_ref − spatial_dis)|`` per pair), the reduced-reference form that
    needs one scalar per frame from the reference.

Agreement: against scikit-video's NumPy port of the release (``skvideo.measure.strred``,
fed the same 8-bit Y planes; ``tests/test_strred.py``) SRRED, TRRED and ST-RRED agree to
3e-4 relative or better on noisy, blurred and JPEG-compressed clips — the rounding of the
float32 the port computes in; with the port run in float64, to 1e-10.

Deviations from the release:

* Colour input converted to limited-range BT.601 luma, see *Input*; the release reads Y
  from the file. Rounding passes the gradient straight through (BPDA), as the other
  advqa metrics that round to 8-bit levels do.
* float64 throughout (the release: MATLAB doubles); the result is returned in the
  input's dtype. Clips are processed as a batch; only the one sub-band the index uses
  is computed (``buildSpyr`` builds all 26); the subsampling ``lofilt`` correlations run
  with stride 2 instead of computing every sample and keeping every other one.
* ``inv(cu)*temp`` is a linear solve. ``C_U`` is symmetrised before its
  eigendecomposition (rounding only).
* The PSD projection ``Q·L₊·Qᵀ`` enters as a detached correction added to ``C_U``:
  the same value, but the gradient is taken as if the projection were the identity —
  which it exactly is whenever no eigenvalue is negative, the normal case. The
  eigenvalues in the entropy are the projected ones, not those of a second ``eig``
  of the rebuilt matrix (equal up to rounding; the second ``eig`` can turn an exact 0
  into ±1e-17 and count it).
* Guards: a covariance that is all zero (a flat band, or a static scene whose frame
  difference is 0) gives ``s = 0``, ``h = 0`` as in the release's ``else`` branch;
  the solve then runs on the identity so no NaN reaches the gradient. A numerically
  singular but non-zero covariance (``λ_min ≤ 1e-12 λ_max``; e.g. pure stripes), for
  which MATLAB's ``inv`` returns Inf or rounding noise, is solved with a ridge of
  ``1e-12 λ_max``. The logarithms need no guard: their arguments are ``1 + s`` and
  ``s λ + 0.1`` with ``s, λ ≥ 0``.
* ``|·|`` has gradient 0 at 0, so at ``distorted == reference`` exactly the gradient
  is 0 (ST-RRED's minimum).

References
----------
.. [1] R. Soundararajan and A. C. Bovik, "Video quality assessment by reduced reference
   spatio-temporal entropic differencing", IEEE TCSVT 23(4), 684–694, 2013. Release:
   https://github.com/utlive/strred (``extract_info.m``, ``est_params.m``,
   ``live_video_interface.m``).
.. [2] R. Soundararajan and A. C. Bovik, "RRED indices: reduced reference entropic
   differencing for image quality assessment", IEEE TIP 21(2), 517–526, 2012.
.. [3] E. P. Simoncelli and W. T. Freeman, "The steerable pyramid: a flexible
   architecture for multi-scale derivative computation", ICIP 1995; matlabPyrTools
   (``buildSpyr.m``, ``sp5Filters.m``, ``corrDn.c``).
.. [4] scikit-video, ``skvideo.measure.strred`` (a NumPy port of the release, float32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advqa.quality.matlab import matlab_round
from advqa.quality.validate import check_clips, ycbcr_luma

# sp5Filters.m, shared with the VIF release's pyramid (same file, same numbers).
from advqa.quality.vif import _BAND_0, _LO0_FILTER, _LO_FILTER_HALF

#: ``buildSpyr(frame, 4, …)`` accepts a frame only if ``maxPyrHt(size, 9) ≥ 4``,
#: i.e. ``floor(min(H, W)/8) ≥ 9``.
MIN_SIZE = 72
LEVELS = 4
BLOCK = 3  # blk: the GSM vectors are 3×3 neighbourhoods
SIGMA_NSQ = 0.1  # sigma_nsq, neural noise variance of the spatial model
SIGMA_NSQT = 0.1  # sigma_nsqt, of the temporal (frame difference) model
#: The natural-log constant the release adds per eigenvalue (``log(2*pi*exp(1))``).
ENTROPY_CONSTANT = math.log(2 * math.pi * math.e)
#: Relative size of the smallest eigenvalue below which the covariance is treated as
#: singular and solved with a ridge of that size (the release has no such guard).
SINGULAR = 1e-12


def check_videos(reference: torch.Tensor, distorted: torch.Tensor, *, data_range: float = 1.0,
                 clamp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a reference and a distorted clip batch for :func:`strred`.

    Parameters
    ----------
    reference, distorted : torch.Tensor
        Float ``(N, T, C, H, W)`` batches (or single ``(T, C, H, W)`` clips, taken as
        N = 1) of the same shape, C ∈ {1, 3}, T ≥ 2, H, W ≥ :data:`MIN_SIZE`, values in
        [0, data_range].
    data_range : float
        The value of white.
    clamp : bool
        Clamp out-of-range values instead of raising (NaN always raises).

    Returns
    -------
    tuple of torch.Tensor
        Both as ``(N, T, C, H, W)``, clamped if asked.

    Raises
    ------
    ValueError
        With what is wrong and what to do about it.
    """
    distorted, reference = check_clips(distorted, reference, data_range=data_range,
                                       clamp=clamp)
    _, frames, _, height, width = reference.shape
    if frames < 2:
        raise ValueError(f"ST-RRED needs at least 2 frames per clip (it compares consecutive "
                         f"frames), got T = {frames}")
    if min(height, width) < MIN_SIZE:
        raise ValueError(f"frames are {height}×{width}, smaller than the {MIN_SIZE}×{MIN_SIZE} "
                         f"the 4-level steerable pyramid of ST-RRED needs; upscale the clips "
                         f"(e.g. torch.nn.functional.interpolate) or use a larger crop")
    return reference, distorted


def clip_luma(clips: torch.Tensor, data_range: float = 1.0, rounding: bool = True) -> torch.Tensor:
    """The release's input: (N, T, C, H, W) clips → (N·T, 1, H, W) 8-bit-scale luma, float64.

    RGB: BT.601 limited-range Y (16–235); one channel: taken as Y/255 and rescaled.
    Rounded to whole levels (straight-through gradient) when ``rounding``.
    """
    frames = clips.reshape(-1, *clips.shape[2:]).double()
    luma = ycbcr_luma(frames, data_range)
    return matlab_round(luma) if rounding else luma


def _filters(dtype: torch.dtype, device: torch.device):
    options = {"dtype": dtype, "device": device}
    lo0 = torch.tensor(_LO0_FILTER, **options)[None, None]
    lo = 2 * torch.tensor(_LO_FILTER_HALF, **options)[None, None]
    band = -torch.tensor(_BAND_0, **options).T[None, None]  # sp5Filters band 4 (90°)
    return lo0, lo, band


def _reflect_correlate(images: torch.Tensor, kernel: torch.Tensor, stride: int = 1):
    """``corrDn(images, kernel, 'reflect1', [stride stride], [1 1])`` of (B, 1, H, W)."""
    half = kernel.shape[-1] // 2
    padded = F.pad(images, (half, half, half, half), mode="reflect")
    return F.conv2d(padded, kernel, stride=stride)


def coarse_band(luma: torch.Tensor) -> torch.Tensor:
    """``ind2wtree(buildSpyr(frame, 4, 'sp5Filters', 'reflect1')){4}`` of (B, 1, H, W) frames.

    The 90° band of the coarsest scale, (B, 1, ceil(H/8), ceil(W/8)).
    """
    lo0, lo, band = _filters(luma.dtype, luma.device)
    low = _reflect_correlate(luma, lo0)
    for _ in range(LEVELS - 1):
        low = _reflect_correlate(low, lo, stride=2)
    return _reflect_correlate(low, band)


def est_params(band: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``[ss, ent] = est_params(y, 3, sigma)`` of (B, 1, h, w) sub-bands.

    Returns the multiplier field ``s`` and the entropy ``h`` per non-overlapping 3×3
    block, each (B, floor(h/3)·floor(w/3)) (blocks in row-major order).
    """
    height = band.shape[-2] // BLOCK * BLOCK
    width = band.shape[-1] // BLOCK * BLOCK
    band = band[..., :height, :width]
    neighbourhoods = F.unfold(band, BLOCK)  # all overlapping 3×3, (B, 9, L)
    centred = neighbourhoods - neighbourhoods.mean(dim=-1, keepdim=True)
    covariance = centred @ centred.transpose(1, 2) / neighbourhoods.shape[-1]
    covariance = (covariance + covariance.transpose(1, 2)) / 2
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    # est_params.m: L₊ = max(L, 0) · sum(L) / sum(max(L, 0)) (denominator 1 if it is 0).
    positive = eigenvalues.clamp_min(0)
    kept = positive.sum(dim=-1, keepdim=True)
    projected = positive * eigenvalues.sum(dim=-1, keepdim=True) / (kept + (kept == 0).to(kept))
    correction = (vectors * (projected - eigenvalues).unsqueeze(-2)) @ vectors.transpose(1, 2)
    covariance = covariance + correction.detach()
    largest = projected.max(dim=-1).values
    nonzero = largest > 0
    identity = torch.eye(BLOCK * BLOCK, dtype=band.dtype, device=band.device)
    singular = projected.min(dim=-1).values <= SINGULAR * largest
    ridge = torch.where(singular & nonzero, SINGULAR * largest, torch.zeros_like(largest))
    system = torch.where(nonzero[:, None, None], covariance + ridge[:, None, None] * identity,
                         identity)
    blocks = F.unfold(band, BLOCK, stride=BLOCK)  # non-overlapping 3×3, (B, 9, nb)
    field = (torch.linalg.solve(system, blocks) * blocks).sum(dim=1) / BLOCK**2
    field = torch.where(nonzero[:, None], field, torch.zeros_like(field))
    terms = torch.log2(field.unsqueeze(1) * projected.unsqueeze(-1) + sigma) + ENTROPY_CONSTANT
    entropy = torch.where((projected > 0).unsqueeze(-1), terms, torch.zeros_like(terms)).sum(1)
    return field, entropy


def scaled_entropies(bands: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[spatial, temporal] = extract_info(frame1, frame2)`` from (P, 2, h, w) band pairs.

    Returns the spatial and temporal scaled entropies per block, each (P, blocks).
    """
    first = bands[:, :1]
    difference = bands[:, :1] - bands[:, 1:]
    field, entropy = est_params(first, SIGMA_NSQ)
    field_diff, entropy_diff = est_params(difference, SIGMA_NSQT)
    weight = torch.log2(1 + field)
    return entropy * weight, entropy_diff * weight * torch.log2(1 + field_diff)


def _features(clips: torch.Tensor, data_range: float, rounding: bool):
    """Spatial and temporal scaled entropies of every frame pair, (N, pairs, blocks) each."""
    batch, frames = clips.shape[:2]
    pairs = frames // 2
    clips = clips[:, : 2 * pairs]
    bands = coarse_band(clip_luma(clips, data_range, rounding))  # (N·2P, 1, h, w)
    bands = bands.reshape(batch * pairs, 2, *bands.shape[-2:])
    spatial, temporal = scaled_entropies(bands)
    return spatial.reshape(batch, pairs, -1), temporal.reshape(batch, pairs, -1)


def strred_components(reference: torch.Tensor, distorted: torch.Tensor, *,
                      data_range: float = 1.0, clamp: bool = False, rounding: bool = True,
                      single_number: bool = False):
    """SRRED, TRRED and ST-RRED of each distorted clip against its reference.

    Parameters
    ----------
    reference, distorted : torch.Tensor
        ``(N, T, C, H, W)`` clip batches, or single ``(T, C, H, W)`` clips (N = 1): C = 3
        for RGB, C = 1 for luma (the Y plane / 255); values in [0, data_range]; T ≥ 2
        (frames are used in disjoint pairs, an odd last frame is dropped);
        H, W ≥ :data:`MIN_SIZE` (72).
    data_range : float
        The value of white.
    clamp : bool
        Clamp out-of-range values instead of raising.
    rounding : bool
        Round the luma to whole 8-bit levels as the release's input is (gradient passed
        straight through). ``False`` scores the unrounded luma.
    single_number : bool
        The release's ``srredsn``/``trredsn``/``strredsn``: per frame pair, the absolute
        *mean* difference of the scaled entropies instead of their mean absolute
        difference.

    Returns
    -------
    tuple of torch.Tensor
        ``(srred, trred, strred)``, each (N,) in the input's dtype, ``strred = srred ·
        trred``; 0 for identical clips, higher is worse. Differentiable with respect to
        both inputs.

    Notes
    -----
    See the module documentation for the algorithm and every deviation from the release.

    References
    ----------
    .. [1] R. Soundararajan and A. C. Bovik, "Video quality assessment by reduced
       reference spatio-temporal entropic differencing", IEEE TCSVT 23(4), 2013.
    """
    reference, distorted = check_videos(reference, distorted, data_range=data_range,
                                        clamp=clamp)
    dtype = distorted.dtype
    spatial_ref, temporal_ref = _features(reference, data_range, rounding)
    spatial_dis, temporal_dis = _features(distorted, data_range, rounding)
    if single_number:
        per_pair_s = (spatial_ref - spatial_dis).mean(dim=-1).abs()
        per_pair_t = (temporal_ref - temporal_dis).mean(dim=-1).abs()
    else:
        per_pair_s = (spatial_ref - spatial_dis).abs().mean(dim=-1)
        per_pair_t = (temporal_ref - temporal_dis).abs().mean(dim=-1)
    srred = per_pair_s.mean(dim=-1)
    trred = per_pair_t.mean(dim=-1)
    return srred.to(dtype), trred.to(dtype), (srred * trred).to(dtype)


def strred(reference: torch.Tensor, distorted: torch.Tensor, *, data_range: float = 1.0,
           clamp: bool = False, rounding: bool = True,
           single_number: bool = False) -> torch.Tensor:
    """ST-RRED (Soundararajan & Bovik 2013) of each distorted clip against its reference.

    Parameters
    ----------
    reference, distorted : torch.Tensor
        ``(N, T, C, H, W)`` clip batches or single ``(T, C, H, W)`` clips; C ∈ {1, 3},
        T ≥ 2, H, W ≥ 72, values in [0, data_range]. See :func:`strred_components`.
    data_range, clamp, rounding, single_number
        As in :func:`strred_components`.

    Returns
    -------
    torch.Tensor
        (N,) ST-RRED = SRRED · TRRED in the input's dtype: 0 for identical clips, higher
        is worse (unbounded). Differentiable with respect to both clips.

    Notes
    -----
    The release ``live_video_interface.m``'s ``strred``, on the coarsest vertical
    steerable-pyramid band of the luma; see the module documentation.

    References
    ----------
    .. [1] R. Soundararajan and A. C. Bovik, "Video quality assessment by reduced
       reference spatio-temporal entropic differencing", IEEE TCSVT 23(4), 2013.
    """
    return strred_components(reference, distorted, data_range=data_range, clamp=clamp,
                             rounding=rounding, single_number=single_number)[2]


class STRRED(nn.Module):
    """:func:`strred` as a module: ``STRRED()(distorted, reference)`` → (N,) ST-RRED."""

    def __init__(self, *, data_range: float = 1.0, clamp: bool = False, rounding: bool = True,
                 single_number: bool = False):
        super().__init__()
        self.options = dict(data_range=data_range, clamp=clamp, rounding=rounding,
                            single_number=single_number)

    def forward(self, distorted: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return strred(reference, distorted, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())
