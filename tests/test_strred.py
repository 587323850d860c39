"""ST-RRED (Soundararajan & Bovik 2013) against scikit-video's port of the LIVE release.

Oracle: ``skvideo.measure.strred`` (scikit-video 1.1.11, a NumPy transcription of the
release's ``extract_info.m``/``est_params.m``/``live_video_interface.m``). It is fed what
the release is fed — the 8-bit Y plane of each frame, here ``(T, H, W)`` arrays of whole
levels computed in NumPy from the same RGB clip (BT.601 limited range,
``floor(16 + 65.481 R + 128.553 G + 24.966 B + 0.5)``), independently of
:mod:`advqa.quality.strred`. The tests skip when scikit-video is not installed.

scikit-video 1.1.11 predates NumPy 1.24 and calls ``np.int``; the tests restore that one
alias (``monkeypatch.setattr(np, "int", int, raising=False)``) and nothing else.

Two comparisons:

* stock: the port as shipped, which computes in float32. The index is a mean of
  differences of entropies of similar size, so float32 rounding shows: SRRED, TRRED and
  ST-RRED agree to 3e-4 relative or better on these clips (:data:`RELATIVE_FLOAT32`),
  the single-number variants (a difference of means, more cancellation) to 3.2e-3
  (:data:`RELATIVE_FLOAT32_SN`).
* float64: the same port run in float64, by giving its two modules a NumPy whose
  ``float32`` is ``float64``. Agreement is then 1e-10 or better (:data:`RELATIVE_FLOAT64`).

The port differs from the release in one step that never triggers here (its PSD
projection clips negative eigenvalues without rescaling to keep the trace; ours follows
``est_params.m``); no covariance in these clips has a negative eigenvalue.
"""

from __future__ import annotations

import io
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import data as skdata

from advqa.data import read_video
from advqa.quality.strred import (
    MIN_SIZE,
    STRRED,
    check_videos,
    clip_luma,
    strred,
    strred_components,
)

RELATIVE_FLOAT32 = 1e-3  # SRRED, TRRED, ST-RRED against the stock (float32) port
RELATIVE_FLOAT32_SN = 5e-3  # its one-number-per-frame variants (more cancellation)
RELATIVE_FLOAT64 = 1e-9  # everything, against the port run in float64
FRAMES, SIZE, PAN = 6, 96, 2

# The port builds np.matrix objects (PendingDeprecationWarning on every call).
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------- clips

def _pan_clip() -> np.ndarray:
    """(T, H, W, 3) float64 in [0, 1]: a 2-px-per-frame pan over the astronaut photo."""
    photo = skdata.astronaut().astype(np.float64)
    photo = photo.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3)) / 255  # 2×2 box, 256×256
    return np.stack([photo[40:40 + SIZE, 90 + PAN * t:90 + PAN * t + SIZE]
                     for t in range(FRAMES)])


def _noise(clip: np.ndarray, sigma: float = 0.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clip + rng.normal(0.0, sigma, clip.shape), 0.0, 1.0)


def _blur(clip: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(clip, sigma=(0, 1.0, 1.0, 0), mode="reflect")


def _jpeg(clip: np.ndarray, quality: int = 20) -> np.ndarray:
    frames = []
    for frame in clip:
        buffer = io.BytesIO()
        Image.fromarray(np.round(frame * 255).astype(np.uint8)).save(buffer, "JPEG",
                                                                     quality=quality)
        frames.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())), np.float64) / 255)
    return np.stack(frames)


DISTORTIONS = {"noise": _noise, "blur": _blur, "jpeg": _jpeg}
# "frozen": a reference of one repeated frame (frame differences exactly 0, the release's
# zero-covariance branch) against a noisy copy.
CASES = (*DISTORTIONS, "frozen")


def _pair(kind: str) -> tuple[np.ndarray, np.ndarray]:
    clip = _pan_clip()
    if kind == "frozen":
        clip = np.repeat(clip[:1], FRAMES, axis=0)
        return clip, _noise(clip, 0.02, seed=1)
    return clip, DISTORTIONS[kind](clip)


def _torch(clip: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) NumPy → (1, T, 3, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2)))[None]


def _luma(clip: np.ndarray) -> np.ndarray:
    """The release's input: 8-bit BT.601 limited-range Y planes (T, H, W), whole levels."""
    y = 16 + 65.481 * clip[..., 0] + 128.553 * clip[..., 1] + 24.966 * clip[..., 2]
    return np.floor(y + 0.5)


# -------------------------------------------------------------------------------- oracle

class _Float64NumPy(types.ModuleType):
    """NumPy with ``float32`` meaning ``float64``: runs the port's code in double precision."""

    def __getattr__(self, name):
        return np.float64 if name == "float32" else getattr(np, name)


@pytest.fixture
def oracle(monkeypatch):
    """``oracle(ref_luma, dis_luma, float64=False)`` → (srred, trred, strred, srredsn,
    trredsn, strredsn) from ``skvideo.measure.strred``."""
    try:
        with warnings.catch_warnings():  # the port imports scipy.misc (deprecated)
            warnings.simplefilter("ignore", DeprecationWarning)
            import skvideo.measure  # noqa: F401
    except ImportError as error:  # not installed, or scipy.misc gone (SciPy 2)
        pytest.skip(f"scikit-video, the oracle, does not import ({error}); install the "
                    "'test' extra")
    monkeypatch.setattr(np, "int", int, raising=False)  # removed in NumPy 1.24
    port = sys.modules["skvideo.measure.strred"]
    pyramid = sys.modules["skvideo.utils.stpyr"]

    def run(reference, distorted, float64=False):
        with monkeypatch.context() as patch:
            if float64:
                proxy = _Float64NumPy("numpy_float64")
                patch.setattr(port, "np", proxy)
                patch.setattr(pyramid, "np", proxy)
            table, _, _ = port.strred(reference, distorted)
        srred, trred, srredsn, trredsn = (float(value) for value in table.mean(axis=0))
        return srred, trred, srred * trred, srredsn, trredsn, srredsn * trredsn

    return run


def _ours(reference: np.ndarray, distorted: np.ndarray):
    ref, dis = _torch(reference), _torch(distorted)
    full = strred_components(ref, dis)
    single = strred_components(ref, dis, single_number=True)
    return tuple(float(value) for value in (*full, *single))


NAMES = ("srred", "trred", "strred", "srredsn", "trredsn", "strredsn")


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("float64", [False, True], ids=["float32-port", "float64-port"])
def test_parity_with_scikit_video(oracle, kind, float64):
    reference, distorted = _pair(kind)
    expected = oracle(_luma(reference), _luma(distorted), float64=float64)
    got = _ours(reference, distorted)
    for name, ours, theirs in zip(NAMES, got, expected, strict=True):
        if float64:
            tolerance = RELATIVE_FLOAT64
        else:
            tolerance = RELATIVE_FLOAT32_SN if name.endswith("sn") else RELATIVE_FLOAT32
        assert theirs > 0, name
        assert abs(ours - theirs) <= tolerance * abs(theirs), (name, ours, theirs)


def test_parity_odd_sizes_and_length(oracle):
    """77×101 frames (sub-band 10×13, cropped to 9×12 for the blocks) and 5 frames."""
    photo = skdata.astronaut().astype(np.float64) / 255
    reference = np.stack([photo[100:177, 150 + 3 * t:251 + 3 * t] for t in range(5)])
    distorted = _noise(reference, 0.04, seed=5)
    expected = oracle(_luma(reference), _luma(distorted), float64=True)
    np.testing.assert_allclose(_ours(reference, distorted), expected, rtol=RELATIVE_FLOAT64)


def test_luma_input_is_the_release_input(oracle):
    """One channel is the Y plane / 255: fed the oracle's own array, the same index."""
    reference, distorted = _pair("noise")
    y_ref, y_dis = _luma(reference), _luma(distorted)
    ref = torch.from_numpy(y_ref / 255)[None, :, None]
    dis = torch.from_numpy(y_dis / 255)[None, :, None]
    got = [float(value) for value in strred_components(ref, dis)]
    expected = oracle(y_ref, y_dis, float64=True)[:3]
    np.testing.assert_allclose(got, expected, rtol=RELATIVE_FLOAT64)
    rgb = [float(value) for value in strred_components(_torch(reference), _torch(distorted))]
    np.testing.assert_allclose(got, rgb, rtol=1e-12)


# ---------------------------------------------------------------------------- invariants

def test_identical_clips_score_zero():
    clip = _torch(_pan_clip())
    for value in strred_components(clip, clip.clone()):
        assert float(value) == 0.0


def test_monotone_in_noise():
    clip = _pan_clip()
    scores = [float(strred(reference=_torch(clip), distorted=_torch(_noise(clip, sigma))))
              for sigma in (0.01, 0.03, 0.1)]
    assert 0 < scores[0] < scores[1] < scores[2], scores


def test_batch_single_clip_and_odd_length():
    reference = _torch(_pan_clip())
    noisy, blurred = _torch(_noise(_pan_clip())), _torch(_blur(_pan_clip()))
    batch = strred(torch.cat([reference, reference]), torch.cat([noisy, blurred]))
    assert batch.shape == (2,)
    assert torch.allclose(batch[0], strred(reference[0], noisy[0]), rtol=1e-12)
    assert torch.allclose(batch[1], strred(reference, blurred), rtol=1e-12)
    # The release pairs frames (1, 2), (3, 4), …: a 7th frame is not used.
    extra = torch.cat([reference, reference[:, :1]], dim=1)
    assert torch.allclose(strred(extra, torch.cat([noisy, noisy[:, :1]], dim=1)), batch[0],
                          rtol=1e-12)


def test_dtype_module_and_keywords():
    reference, distorted = _torch(_pan_clip()), _torch(_noise(_pan_clip()))
    expected = strred(reference, distorted)
    assert expected.dtype == torch.float64
    single = strred(reference=reference.float(), distorted=distorted.float())
    assert single.dtype == torch.float32
    assert torch.allclose(single.double(), expected, rtol=1e-4)
    module = STRRED()
    assert torch.equal(module(distorted, reference), expected)
    assert "rounding=True" in repr(module)


def test_frozen_reference_is_finite_with_gradient():
    """A static reference has frame differences of exactly 0 (zero covariance): guarded."""
    reference, distorted = (_torch(clip) for clip in _pair("frozen"))
    distorted = distorted.clone().requires_grad_(True)
    value = strred(reference, distorted)
    value.sum().backward()
    assert torch.isfinite(value).all() and value.item() > 0
    assert torch.isfinite(distorted.grad).all() and distorted.grad.abs().sum() > 0


def test_singular_covariance_is_guarded():
    """Horizontal stripes: 3×3 neighbourhoods of rank 3, a singular covariance (MATLAB's
    ``inv`` warns and returns rounding noise, a plain solve fails): ridge guard."""
    shift = torch.arange(FRAMES, dtype=torch.float64)[:, None, None, None]
    rows = torch.arange(SIZE, dtype=torch.float64)[None, None, :, None]
    stripes = 0.5 + 0.3 * torch.sin(2 * np.pi * (rows + PAN * shift) / 11)
    reference = stripes.expand(FRAMES, 3, SIZE, SIZE)[None]
    distorted = (0.8 * reference + 0.1).requires_grad_(True)
    srred, trred, value = strred_components(reference, distorted)
    value.sum().backward()
    assert torch.isfinite(torch.stack([srred, trred, value])).all() and value.item() > 0
    assert torch.isfinite(distorted.grad).all() and distorted.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ gradient

def test_gradcheck_float64():
    """Exact gradient of the unrounded index (rounding=False) by finite differences."""
    photo = _pan_clip()[:2, :MIN_SIZE, :MIN_SIZE]
    reference = _torch(photo)
    base = _torch(_noise(photo, 0.05, seed=4))
    # Keep the perturbed pixels away from 0 and 1 so the clip stays in range.
    base = base.clamp(0.1, 0.9)

    def on_patch(patch):
        distorted = base.clone()
        distorted[:, :, :, 30:34, 30:34] = patch
        return strred_components(reference, distorted, rounding=False)

    patch = base[:, :, :, 30:34, 30:34].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(on_patch, (patch,), eps=1e-4, atol=1e-6, rtol=1e-5)

    # All of the clip at once, along a random direction (fast mode).
    def on_clip(distorted):
        return strred(reference, distorted, rounding=False)

    whole = base.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(on_clip, (whole,), eps=1e-4, atol=1e-6, rtol=1e-5,
                                    fast_mode=True)


def test_gradient_through_rounding_is_finite_and_nonzero():
    reference = _torch(_pan_clip()).float()
    distorted = _torch(_jpeg(_pan_clip())).float().requires_grad_(True)
    strred(reference, distorted).sum().backward()
    assert torch.isfinite(distorted.grad).all()
    assert distorted.grad.abs().sum() > 0
    # The reference receives a gradient too.
    reference.requires_grad_(True)
    strred(reference, distorted.detach()).sum().backward()
    assert torch.isfinite(reference.grad).all() and reference.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- validation

def _clips(shape=(1, 2, 3, MIN_SIZE, MIN_SIZE)):
    return torch.full(shape, 0.5, dtype=torch.float64)


@pytest.mark.parametrize(("reference", "distorted", "message"), [
    (_clips((2, 3, MIN_SIZE, MIN_SIZE)), _clips((2, 3, MIN_SIZE, MIN_SIZE))[None], None),
    (_clips((3, MIN_SIZE, MIN_SIZE)), _clips((3, MIN_SIZE, MIN_SIZE)), "(N, T, C, H, W)"),
    (_clips((1, 2, 2, MIN_SIZE, MIN_SIZE)), _clips((1, 2, 2, MIN_SIZE, MIN_SIZE)), "C = 1"),
    (_clips(), _clips((1, 3, 3, MIN_SIZE, MIN_SIZE)), "differ"),
    (_clips((1, 1, 3, MIN_SIZE, MIN_SIZE)), _clips((1, 1, 3, MIN_SIZE, MIN_SIZE)),
     "at least 2 frames"),
    (_clips((1, 2, 3, 64, 96)), _clips((1, 2, 3, 64, 96)), "upscale"),
    (_clips((0, 2, 3, MIN_SIZE, MIN_SIZE)), _clips((0, 2, 3, MIN_SIZE, MIN_SIZE)), "empty"),
    (_clips(), _clips().fill_(float("nan")), "NaN"),
    (_clips(), _clips() * 3, "clamp=True"),
    (_clips().to(torch.uint8), _clips().to(torch.uint8), "floating point"),
    (_clips().numpy(), _clips(), "torch.Tensor"),
])
def test_validation_errors(reference, distorted, message):
    if message is None:  # a (T, C, H, W) clip is N = 1: this pair differs in batch only
        check_videos(reference, distorted)
        return
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        strred(reference, distorted)


def test_clamp_and_data_range():
    reference = _torch(_pan_clip())
    distorted = _torch(_noise(_pan_clip()))
    expected = strred(reference, distorted)
    assert torch.allclose(strred(reference * 255, distorted * 255, data_range=255.0), expected,
                          rtol=1e-12)
    assert torch.isfinite(strred(reference, distorted * 1.2, clamp=True)).all()



def test_luma_of_a_y4m_clip_is_its_y_plane(tmp_path):
    """RGB read by advqa from a Y4M file (BT.601, limited range) converts back to the
    file's Y plane exactly, the plane the release reads (chroma kept in gamut)."""
    rng = np.random.default_rng(0)
    frames, size = 3, 16
    y = rng.integers(30, 220, (frames, size, size), dtype=np.uint8)
    chroma = rng.integers(118, 138, (frames, 2, size // 2, size // 2), dtype=np.uint8)
    path = tmp_path / "clip.y4m"
    with path.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{size} H{size} F25:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(frames):
            handle.write(b"FRAME\n" + y[index].tobytes() + chroma[index].tobytes())
    luma = clip_luma(read_video(path)[None]).reshape(frames, size, size)
    np.testing.assert_array_equal(luma.numpy(), y)
