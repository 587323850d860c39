"""The MSU benchmark's video side (issue 18 §3): clips attacked frame by frame or with one
perturbation per clip, units per clip chunk, per-clip rows and leaderboard."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from advqa.cli.main import main
from advqa.data import save_png
from advqa.robustness.benchmark import ImageSet, Settings, run_benchmark
from advqa.robustness.video import (
    attack_clip,
    clip_of,
    load_clip_set,
    split_clip_set,
)

SIZE = 64
FRAMES = 4
FAST = Settings(steps=2, amplitudes=(0.4,), uap={"epochs": 1}, batch_size=4)


def pan(photo: str, frames: int = FRAMES, shift: int = 6) -> torch.Tensor:
    """A short camera pan over a scikit-image photo, 8-bit, (T, 3, 72, 96)."""
    from skimage import data

    image = torch.from_numpy(getattr(data, photo)()).permute(2, 0, 1).float() / 255
    out = []
    for t in range(frames):
        window = image[:, 20 + shift * t: 260 + shift * t, 30 + 2 * shift * t:
                       350 + 2 * shift * t]
        out.append(F.interpolate(window[None], size=(72, 96), mode="bilinear",
                                 antialias=True, align_corners=False)[0].clamp(0, 1))
    return (torch.stack(out) * 255).round() / 255


def write_y4m(path: Path, frames: torch.Tensor) -> Path:
    """4:4:4 full-range Y4M (BT.601), the simplest file our reader and FFmpeg share."""
    import numpy as np

    header = (f"YUV4MPEG2 W{frames.shape[3]} H{frames.shape[2]} F12:1 Ip A1:1 C444 "
              "XCOLORRANGE=FULL\n").encode()
    chunks = [header]
    for frame in frames.double().numpy():
        red, green, blue = frame
        y = 0.299 * red + 0.587 * green + 0.114 * blue
        cb, cr = (blue - y) / 1.772, (red - y) / 1.402
        planes = [y * 255, 128 + 255 * cb, 128 + 255 * cr]
        chunks.append(b"FRAME\n")
        chunks += [np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes]
    path.write_bytes(b"".join(chunks))
    return path


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for photo in ("astronaut", "coffee", "chelsea", "rocket"):
        write_y4m(folder / f"{photo}.y4m", pan(photo))
    return folder


@pytest.fixture(scope="module")
def clip_sets(clip_folder):
    frames, failures = load_clip_set(clip_folder, size=SIZE)
    assert not failures
    return split_clip_set(frames, seed=0)


@pytest.fixture(scope="module")
def frame_run(clip_sets, tmp_path_factory):
    train, test = clip_sets
    return run_benchmark(["psnr", "gmsd"], ["ifgsm", "cumulative-uap"], train, test,
                         tmp_path_factory.mktemp("video-bench"), settings=FAST,
                         progress=False)


def test_clip_set_holds_whole_clips_in_order(clip_folder, clip_sets):
    frames, _ = load_clip_set(clip_folder, size=SIZE)
    assert [name for name, _, _ in frames.clips] == ["astronaut", "chelsea", "coffee", "rocket"]
    assert frames.images.shape == (4 * FRAMES, 3, SIZE, SIZE)
    assert frames.names[:2] == ("astronaut#f0000", "astronaut#f0001")
    train, test = clip_sets
    seen = [{clip_of(name) for name in part.names} for part in (train, test)]
    assert not seen[0] & seen[1]  # split by clip: no clip lends frames to both sides
    assert len(train.clips) + len(test.clips) == 4
    for name, first, stop in test.clips:
        assert {clip_of(n) for n in test.names[first:stop]} == {name}


def test_one_row_per_frame_and_unit_and_one_per_clip(frame_run, clip_sets):
    _, test = clip_sets
    items, clips = frame_run.items, frame_run.clips
    assert len(items) == 2 * 2 * len(test.names)  # 2 metrics × (ifgsm + 1 amplitude)
    assert items.error.isna().all()
    assert len(clips) == 2 * 2 * len(test.clips)
    assert (clips.frames == FRAMES).all()
    # Each clip row is the mean of its frames (pooling "mean"), recomputed here.
    frames = items.assign(clip=items.image.map(clip_of))
    expected = frames.groupby(["metric", "attack", "amplitude", "clip"], dropna=False)[
        ["clean", "attacked", "psnr"]].mean().reset_index()
    merged = clips.merge(expected, left_on=["metric", "attack", "amplitude", "image"],
                         right_on=["metric", "attack", "amplitude", "clip"],
                         suffixes=("", "_frames"))
    assert len(merged) == len(clips)
    for column in ("clean", "attacked", "psnr"):
        assert (merged[column] - merged[f"{column}_frames"]).abs().max() < 1e-9
    direction = clips.metric.map({"psnr": 1.0, "gmsd": -1.0})
    assert ((clips.gain - direction * (clips.attacked - clips.clean)).abs() < 1e-12).all()
    on_disk = pd.read_parquet(frame_run.out / "clips.parquet")
    assert len(on_disk) == len(clips)
    board = pd.read_csv(frame_run.out / "scores.csv")
    assert set(board.metric) == {"psnr", "gmsd"}
    page = (frame_run.out / "leaderboard.html").read_text()
    assert "each item is a clip" in page and "pooled by mean" in page


def test_units_are_metric_attack_and_clip_chunk_and_a_rerun_does_nothing(frame_run,
                                                                        clip_sets):
    _, test = clip_sets
    with sqlite3.connect(frame_run.out / "benchmark.sqlite") as connection:
        keys = [row[0] for row in connection.execute(
            "select key from job_units where job = 'benchmark'")]
    assert len(keys) == 2 * 2 * len(test.clips)
    assert all("#frames" in key for key in keys)
    again = run_benchmark(["psnr", "gmsd"], ["ifgsm", "cumulative-uap"], *clip_sets,
                          frame_run.out, settings=FAST, progress=False)
    pd.testing.assert_frame_equal(again.clips, frame_run.clips)


def test_frame_by_frame_is_the_image_benchmark_on_the_frames(frame_run, clip_sets, tmp_path):
    """Frame mode attacks each frame as the image benchmark attacks an image: the same
    frames as a plain image set give the same per-frame rows."""
    train, test = clip_sets
    plain = run_benchmark(["psnr", "gmsd"], ["ifgsm"],
                          ImageSet("frames", train.names, train.images),
                          ImageSet(test.dataset, test.names, test.images), tmp_path,
                          settings=FAST, progress=False)
    ours = frame_run.items[frame_run.items.attack == "ifgsm"]
    key = ["metric", "image"]
    left = ours.sort_values(key).reset_index(drop=True)
    right = plain.items.sort_values(key).reset_index(drop=True)
    for column in ("clean", "attacked", "gain", "psnr"):
        assert (left[column] - right[column]).abs().max() < 1e-5


def test_clip_mode_shares_one_perturbation(clip_sets):
    """temporal="clip": attacked − start is the same on every frame of the clip (where
    no pixel was clipped at 0 or 1), bounded by ε, and the metric moves its better way."""
    from advqa.robustness.benchmark import MetricFacts, Unit, cached_metric

    _, test = clip_sets
    _, first, stop = test.clips[0]
    frames = test.images[first:stop]
    settings = Settings(steps=4, temporal="clip")
    metric = cached_metric("psnr")
    facts = MetricFacts("psnr", 10.0, 60.0, True, True)
    start = frames.mul(255).add(torch.randn_like(frames)).round().clamp(0, 255).div(255)
    attacked, _ = attack_clip(Unit("psnr", "ifgsm", step=1 / 255), metric, facts, start,
                              frames, settings)
    change = attacked - start
    inside = (attacked > 0) & (attacked < 1)
    reference = change[0]
    for t in range(1, len(change)):
        both = inside[0] & inside[t]
        assert torch.allclose(change[t][both], reference[both], atol=1e-6)
    assert change.abs().max() <= settings.eps + 1e-6
    with torch.no_grad():
        assert metric(attacked, frames).mean() > metric(start, frames).mean()


def test_clip_mode_end_to_end_and_refusals(clip_sets, tmp_path):
    train, test = clip_sets
    summary = run_benchmark(["psnr"], ["fgsm", "optimized-uap"], train, test, tmp_path,
                            settings=Settings(steps=2, amplitudes=(0.4,), uap={"epochs": 1},
                                              temporal="clip"), progress=False)
    assert summary.items.error.isna().all() and len(summary.clips) == 2 * len(test.clips)
    with pytest.raises(ValueError, match="korhonen"):
        run_benchmark(["psnr"], ["korhonen"], train, test, tmp_path / "k",
                      settings=Settings(temporal="clip"), progress=False)
    with pytest.raises(ValueError, match="needs video clips"):
        run_benchmark(["psnr"], ["fgsm"], ImageSet("i", train.names, train.images),
                      ImageSet("j", test.names, test.images), tmp_path / "i",
                      settings=Settings(temporal="clip"), progress=False)
    with pytest.raises(ValueError, match="harmonic"):
        run_benchmark(["gmsd"], ["fgsm"], train, test, tmp_path / "h", settings=FAST,
                      pooling="harmonic", progress=False)


def test_vimeo_tree_trains_on_its_train_list(tmp_path):
    from advqa.workflows.benchmark import clip_sets

    root = tmp_path / "vimeo"
    names = ["00001/0001", "00001/0002", "00002/0001"]
    for k, name in enumerate(names):
        folder = root / "sequences" / name
        folder.mkdir(parents=True)
        for i, frame in enumerate(pan(("astronaut", "coffee", "chelsea")[k], frames=3)):
            save_png(frame, folder / f"im{i + 1}.png")
    (root / "tri_trainlist.txt").write_text("00001/0001\n00002/0001\n")
    (root / "tri_testlist.txt").write_text("00001/0002\n")
    train, test = clip_sets(str(root), None, size=SIZE, max_frames=None, seed=0,
                            out=tmp_path / "out", say=lambda *_: None)
    assert [name for name, _, _ in test.clips] == ["00001/0002"]
    assert [name for name, _, _ in train.clips] == ["00001/0001", "00002/0001"]
    assert test.images.shape == (3, 3, SIZE, SIZE)


def test_cli_video_benchmark_skips_a_bad_clip_and_goes_on(clip_folder, tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    for path in sorted(clip_folder.glob("*.y4m"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    good = (folder / "astronaut.y4m").read_bytes()
    (folder / "broken.y4m").write_bytes(good[: len(good) // 2])  # truncated mid-frame
    out = tmp_path / "out"
    code = main(["benchmark", "--source", str(folder), "--metrics", "psnr", "--attacks",
                 "fgsm", "--size", str(SIZE), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    skipped = pd.read_csv(out / "skipped_clips.csv")
    assert skipped.path.str.endswith("broken.y4m").all() and len(skipped) == 1
    assert "broken" in skipped.reason.iloc[0] or "truncat" in skipped.reason.iloc[0].lower()
    clips = pd.read_parquet(out / "clips.parquet")
    assert "broken" not in set(clips.image) and len(clips) >= 1
    assert main(["benchmark", "--temporal", "clip", "--out", str(tmp_path / "x")]) == 2
    assert "--source" in capsys.readouterr().err


def test_advqa_score_takes_two_videos(clip_folder, tmp_path, capsys):
    """`advqa score REF.y4m DIST.y4m` scores the pair with video metrics: identical clips
    give ST-RRED 0 and SSIM 1 per frame; a noisy copy scores worse; clips of different
    length are refused."""
    from advqa.data import read_video

    reference = clip_folder / "coffee.y4m"
    frames = read_video(reference)
    noisy = (frames + 0.05 * torch.randn(frames.shape, generator=torch.Generator()
                                         .manual_seed(0))).clamp(0, 1)
    distorted = write_y4m(tmp_path / "noisy.y4m", noisy)
    metrics = "strred,ssim@mean,psnr@harmonic"
    assert main(["score", str(reference), str(reference), "--metrics", metrics]) == 0
    same = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert float(same["strred"]) == 0 and float(same["ssim@mean"]) == pytest.approx(1)
    assert main(["score", str(reference), str(distorted), "--metrics", metrics]) == 0
    worse = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert float(worse["strred"]) > 0 and float(worse["ssim@mean"]) < 0.99
    assert float(worse["psnr@harmonic"]) < float(same["psnr@harmonic"])
    short = write_y4m(tmp_path / "short.y4m", frames[:2])
    assert main(["score", str(reference), str(short), "--metrics", "strred"]) == 2
    assert "same length" in capsys.readouterr().err
