"""Video loading in advqa.data: Y4M, PyAV containers, frame folders and Vimeo-90k triplets.

Every clip is made here from an embedded photo (scikit-image's astronaut) with a
camera pan and zoom; nothing is downloaded.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advqa.data import (
    ImageLoadWarning,
    VideoReadError,
    load_videos,
    read_video,
    save_png,
    vimeo_triplets,
)

WIDTH, HEIGHT, FRAMES = 96, 64, 12
KR, KB = 0.299, 0.114  # BT.601


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """A 12-frame pan-and-zoom over the astronaut photo, on the 8-bit grid, (T, 3, H, W)."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).float() / 255.0
    frames = []
    for t in range(FRAMES):
        crop_h = int(360 - 12 * t)  # zoom in
        crop_w = crop_h * WIDTH // HEIGHT
        top, left = 40 + 3 * t, 10 + 8 * t  # pan right and down
        window = photo[:, top : top + crop_h, left : left + crop_w]
        frame = F.interpolate(window[None], size=(HEIGHT, WIDTH), mode="bilinear",
                              antialias=True, align_corners=False)[0]
        frames.append(frame.clamp(0, 1))
    return (torch.stack(frames) * 255).round() / 255


# ---------------------------------------------------------------- a Y4M writer


def _rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    red, green, blue = rgb
    y = KR * red + (1 - KR - KB) * green + KB * blue
    return y, (blue - y) / (2 * (1 - KB)), (red - y) / (2 * (1 - KR))


def _subsample(plane: np.ndarray, sx: int, sy: int, siting: str) -> np.ndarray:
    """4:2:x chroma at the siting the tag implies (exact area/point sampling)."""
    if sy == 2:
        plane = plane[0::2] if siting == "paldv" else (plane[0::2] + plane[1::2]) / 2
    if sx == 2:
        plane = plane[:, 0::2] if siting in ("mpeg2", "paldv", "422") else (
            plane[:, 0::2] + plane[:, 1::2]) / 2
    return plane


def write_y4m(path: pathlib.Path, frames: torch.Tensor, *, colourspace: str = "420jpeg",
              full: bool = False, extra: str = "") -> pathlib.Path:
    depth = 10 if colourspace.endswith("10") else 8
    scale = 1 << (depth - 8)
    sx, sy = {"420": (2, 2), "422": (2, 1), "444": (1, 1), "mon": (None, None)}[colourspace[:3]]
    siting = {"420mpeg2": "mpeg2", "420paldv": "paldv"}.get(colourspace, colourspace[:3])
    range_tag = " XCOLORRANGE=FULL" if full else ""
    header = f"YUV4MPEG2 W{frames.shape[3]} H{frames.shape[2]} F12:1 Ip A1:1 C{colourspace}"
    dtype = np.uint8 if depth == 8 else np.dtype("<u2")
    chunks = [f"{header}{range_tag}{extra}\n".encode()]
    for frame in frames.double().numpy():
        y, cb, cr = _rgb_to_ycbcr(frame)
        luma = y * 255 if full else 16 + 219 * y
        planes = [luma * scale]
        if sx is not None:
            for chroma in (cb, cr):
                values = 128 + (255 if full else 224) * _subsample(chroma, sx, sy, siting)
                planes.append(values * scale)
        chunks.append(b"FRAME\n")
        chunks += [np.clip(np.round(p), 0, 255 * scale).astype(dtype).tobytes() for p in planes]
    path.write_bytes(b"".join(chunks))
    return path


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    return KR * rgb[:, 0] + (1 - KR - KB) * rgb[:, 1] + KB * rgb[:, 2]


# ------------------------------------------------------------------------- Y4M


@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
def test_y4m_420jpeg_matches_source(tmp_path, clip, full):
    path = write_y4m(tmp_path / "clip.y4m", clip, full=full)
    video = read_video(path)
    assert video.shape == (FRAMES, 3, HEIGHT, WIDTH) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1
    # Luma survives 4:2:0 up to quantisation (and clamping of out-of-gamut colours).
    # (measured: 0.0011 mean absolute difference)
    assert (_luma(video) - _luma(clip)).abs().mean() < 0.004
    # Colour loses only what chroma subsampling loses (measured: 0.0065, 38 dB).
    assert (video - clip).abs().mean() < 0.015
    assert _psnr(video, clip) > 34


def test_y4m_444_round_trips_to_quantisation(tmp_path, clip):
    video = read_video(write_y4m(tmp_path / "c.y4m", clip, colourspace="444"))
    assert (video - clip).abs().max() < 0.02


def test_y4m_range_follows_header_or_override(tmp_path, clip):
    limited = write_y4m(tmp_path / "limited.y4m", clip[:2], colourspace="444")
    # Reading limited-range data as full range washes out contrast: clearly wrong.
    assert (read_video(limited, full_range=True) - clip[:2]).abs().mean() > 0.03
    full = write_y4m(tmp_path / "full.y4m", clip[:2], colourspace="444", full=True)
    assert (read_video(full) - clip[:2]).abs().max() < 0.02


@pytest.mark.parametrize("colourspace", ["420jpeg", "420mpeg2", "420paldv", "422", "420"])
def test_chroma_siting_reproduces_a_linear_ramp(tmp_path, colourspace):
    # A grey-level frame whose blue-difference rises linearly along x and y: bilinear
    # upsampling at the right siting reproduces it exactly away from the borders.
    x = torch.linspace(0.3, 0.7, 32)
    yy = torch.linspace(0.4, 0.6, 16)
    blue = (x[None, :] + yy[:, None]) / 2 + 0.1
    frame = torch.stack([torch.full_like(blue, 0.5), torch.full_like(blue, 0.5), blue])[None]
    video = read_video(write_y4m(tmp_path / "ramp.y4m", frame, colourspace=colourspace))
    interior = (video - frame)[..., 2:-2, 2:-2].abs()
    assert interior.max() < 0.012


def test_y4m_10bit_and_mono(tmp_path, clip):
    eight = read_video(write_y4m(tmp_path / "8.y4m", clip[:3]))
    ten = read_video(write_y4m(tmp_path / "10.y4m", clip[:3], colourspace="420p10"))
    assert (ten - eight).abs().max() < 0.01
    mono = read_video(write_y4m(tmp_path / "m.y4m", clip[:3], colourspace="mono"))
    assert mono.shape == (3, 3, HEIGHT, WIDTH)
    assert torch.equal(mono[:, 0], mono[:, 1]) and torch.equal(mono[:, 1], mono[:, 2])
    assert (mono[:, 0] - _luma(clip[:3])).abs().max() < 0.01


def test_y4m_window_and_bt709(tmp_path, clip):
    path = write_y4m(tmp_path / "clip.y4m", clip, extra=" XYSCSS=420JPEG")
    whole = read_video(path)
    part = read_video(path, start=4, max_frames=3)
    assert torch.equal(part, whole[4:7])
    assert read_video(path, start=11).shape[0] == 1
    with pytest.raises(VideoReadError, match="no frame at start=12"):
        read_video(path, start=12)
    bt709 = read_video(path, matrix="bt709")
    assert torch.allclose(_luma(bt709), _luma(whole), atol=0.06)
    assert not torch.allclose(bt709, whole, atol=1e-3)
    with pytest.raises(ValueError, match="matrix"):
        read_video(path, matrix="bt2020")


def test_truncated_y4m_names_the_frame(tmp_path, clip):
    path = write_y4m(tmp_path / "clip.y4m", clip)
    data = path.read_bytes()
    frame_bytes = len(b"FRAME\n") + WIDTH * HEIGHT * 3 // 2
    header = data.index(b"\n") + 1
    path.write_bytes(data[: header + 7 * frame_bytes + 500])  # cut inside frame 7
    with pytest.raises(VideoReadError, match=r"frame 7 is truncated.*starts at byte") as info:
        read_video(path)
    assert str(path) in str(info.value)
    assert read_video(path, max_frames=7).shape[0] == 7  # the frames before it still read


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"YUV4MPEG3 W96 H64\n", "does not start with 'YUV4MPEG2 '"),
        (b"YUV4MPEG2 W96 F25:1\n", "lacks its W .* or H"),
        (b"YUV4MPEG2 W96 H-4\n", "H field must be a positive integer"),
        (b"YUV4MPEG2 W96 H64 C411\n", "unsupported Y4M colour space C411"),
        (b"YUV4MPEG2 W96 H64" + b" X" * 3000, "no newline"),
    ],
)
def test_bad_y4m_header_is_a_clear_error(tmp_path, header, message):
    path = tmp_path / "bad.y4m"
    path.write_bytes(header + b"FRAME\n" + bytes(96 * 64 * 3 // 2))
    with pytest.raises(VideoReadError, match=message):
        read_video(path)


def test_y4m_with_a_wrong_size_in_its_header(tmp_path, clip):
    path = write_y4m(tmp_path / "clip.y4m", clip[:3])
    data = path.read_bytes()
    path.write_bytes(data.replace(b"W96", b"W94", 1))
    with pytest.raises(VideoReadError, match=r"frame 1 at byte \d+ does not start with a 'FRAME'"):
        read_video(path)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such video"):
        read_video(tmp_path / "none.y4m")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_y4m_reader_agrees_with_ffmpeg(tmp_path, clip):
    # Both sides assume BT.601 limited range: the file has no XCOLORRANGE tag, and
    # FFmpeg is told the same explicitly. FFmpeg's swscale upsamples chroma with its
    # own filter, so the comparison allows a small mean difference (0.02) and
    # isolated larger ones at colour edges.
    path = write_y4m(tmp_path / "clip.y4m", clip)
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-color_range", "tv", "-colorspace", "bt470bg",
         "-i", str(path), "-sws_flags", "bilinear+accurate_rnd+full_chroma_int",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True, timeout=60,
    )
    reference = torch.from_numpy(
        np.frombuffer(result.stdout, np.uint8).reshape(FRAMES, HEIGHT, WIDTH, 3).copy()
    ).permute(0, 3, 1, 2).float() / 255
    video = read_video(path)
    assert (_luma(video) - _luma(reference)).abs().mean() < 0.01
    assert (video - reference).abs().mean() < 0.02
    assert _psnr(video, reference) > 30


# ---------------------------------------------------------------- PyAV (MP4)


def _write_mp4(path: pathlib.Path, frames: torch.Tensor, **options: str) -> pathlib.Path:
    """Encode with PyAV (libx264 at CRF 8, or MPEG-4 part 2 at 4 Mbit/s), yuv420p."""
    av = pytest.importorskip("av", reason="PyAV (the `av` package) is not installed")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "8"}
        else:
            stream.bit_rate = 4_000_000
        for frame in frames:
            pixels = (frame.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_mp4_through_pyav(tmp_path, clip):
    path = _write_mp4(tmp_path / "clip.mp4", clip)
    video = read_video(path)
    assert video.shape == (FRAMES, 3, HEIGHT, WIDTH) and video.dtype == torch.float32
    assert _psnr(video, clip) > 30
    assert torch.equal(read_video(path, start=2, max_frames=4), video[2:6])


def test_mkv_through_pyav(tmp_path, clip):
    video = read_video(_write_mp4(tmp_path / "clip.mkv", clip))
    assert video.shape == (FRAMES, 3, HEIGHT, WIDTH) and _psnr(video, clip) > 30


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        # moov atom at the end, cut off: the file does not open
        ("clip.mp4", {}, "FFmpeg cannot open it"),
        # moov atom first: the frame data is cut short
        ("fast.mp4", {"movflags": "faststart"}, "decoding failed|only .* could be decoded"),
        # Matroska: fewer frames than the duration promises
        ("clip.mkv", {}, r"only \d+ frame\(s\) could be decoded, but its duration"),
    ],
)
def test_truncated_video_is_a_clear_error(tmp_path, clip, name, options, message):
    path = _write_mp4(tmp_path / name, clip, **options)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(VideoReadError, match=message) as info:
        read_video(path)
    assert name in str(info.value)


@pytest.mark.parametrize("full", [False, True], ids=["limited", "full"])
def test_y4m_reader_agrees_with_ffmpeg_through_pyav(tmp_path, clip, full):
    # FFmpeg's own Y4M demuxer, reached through PyAV: it reads XCOLORRANGE=FULL and
    # otherwise leaves the range unspecified, which swscale treats as limited; its
    # matrix for untagged YUV is BT.601, as ours. swscale's default conversion
    # rounds less carefully and upsamples chroma its own way (measured: 0.008 mean
    # absolute difference, 38 dB), hence the tolerances.
    av = pytest.importorskip("av", reason="PyAV (the `av` package) is not installed")
    path = write_y4m(tmp_path / "clip.y4m", clip, full=full)
    with av.open(str(path)) as container:
        reference = torch.stack([
            torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float() / 255
            for frame in container.decode(video=0)
        ])
    video = read_video(path)
    assert (_luma(video) - _luma(reference)).abs().mean() < 0.01
    assert (video - reference).abs().mean() < 0.015
    assert _psnr(video, reference) > 34


# --------------------------------------------------- frame folders and Vimeo-90k


def test_frame_folder_in_natural_order(tmp_path, clip):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(clip):
        save_png(frame, folder / f"f{t + 1}.png")  # f10 must come after f9
    (folder / "notes.txt").write_text("not a frame")
    video = read_video(folder)
    assert torch.equal(video, clip)
    assert torch.equal(read_video(folder, start=9, max_frames=5), clip[9:])
    save_png(clip[0][:, :32, :32], folder / "f13.png")
    with pytest.raises(VideoReadError, match=r"frame 12 \(f13.png\) is 32×32"):
        read_video(folder)


def _vimeo_tree(root: pathlib.Path, clip: torch.Tensor) -> pathlib.Path:
    names = ["00001/0001", "00001/0002", "00002/0001"]
    for k, name in enumerate(names):
        folder = root / "sequences" / name
        folder.mkdir(parents=True)
        for i in range(3):
            save_png(clip[3 * k + i], folder / f"im{i + 1}.png")
    (root / "tri_trainlist.txt").write_text("00001/0001\n00002/0001\n")
    (root / "tri_testlist.txt").write_text("00001/0002\n\n")
    return root


def test_vimeo_triplets(tmp_path, clip):
    root = _vimeo_tree(tmp_path / "vimeo_triplet", clip)
    test = vimeo_triplets(root)
    assert test == [root / "sequences" / "00001" / "0002"]
    train = vimeo_triplets(root, split="train")
    assert [p.relative_to(root / "sequences").as_posix() for p in train] == [
        "00001/0001", "00002/0001",
    ]
    assert torch.equal(read_video(train[1]), clip[6:9])
    assert torch.equal(read_video(test[0]), clip[3:6])
    with pytest.raises(ValueError, match="split"):
        vimeo_triplets(root, split="val")


def test_vimeo_wrong_layout_is_a_clear_error(tmp_path, clip):
    root = _vimeo_tree(tmp_path / "vimeo_triplet", clip)
    (root / "sequences" / "00002" / "0001" / "im2.png").unlink()
    with pytest.raises(VideoReadError, match=r"line 2: clip 00002/0001 lacks im2.png"):
        vimeo_triplets(root, split="train")
    with pytest.raises(VideoReadError, match="Vimeo-90k clip lacks im2"):
        read_video(root / "sequences" / "00002" / "0001")
    (root / "tri_testlist.txt").write_text("00001/0002\n00003/0001\nnot-a-clip\n")
    problems = r"2 listed clip.*00003/0001 is missing.*not '<folder>"
    with pytest.raises(VideoReadError, match=problems):
        vimeo_triplets(root)
    (root / "tri_trainlist.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"tri_trainlist\.txt is missing"):
        vimeo_triplets(root, split="train")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        vimeo_triplets(tmp_path / "elsewhere")


# ------------------------------------------------------------------ long runs


def test_load_videos_skips_bad_items_and_goes_on(tmp_path, clip):
    good = write_y4m(tmp_path / "good.y4m", clip[:4])
    truncated = write_y4m(tmp_path / "cut.y4m", clip[:4])
    truncated.write_bytes(truncated.read_bytes()[:-100])
    root = _vimeo_tree(tmp_path / "vimeo", clip)
    broken_clip = root / "sequences" / "00001" / "0001"
    (broken_clip / "im2.png").unlink()
    good_clip = root / "sequences" / "00001" / "0002"
    missing = tmp_path / "absent.y4m"
    with pytest.warns(ImageLoadWarning, match="skipped"):
        loaded = load_videos([good, truncated, broken_clip, good_clip, missing])
    assert loaded.paths == [str(good), str(good_clip)]
    assert [v.shape[0] for v in loaded.videos] == [4, 3]
    assert len(loaded) == 2 and [p for p, _ in loaded] == loaded.paths
    reasons = {pathlib.Path(f.path).name: f.reason for f in loaded.failures}
    assert set(reasons) == {"cut.y4m", "0001", "absent.y4m"}
    assert "frame 3 is truncated" in reasons["cut.y4m"]
    assert "lacks im2" in reasons["0001"]
    assert "no such video" in reasons["absent.y4m"]
