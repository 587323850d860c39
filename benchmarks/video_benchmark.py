"""A full run of the MSU benchmark's video side on generated clips (issue 18).

Nothing downloads: each clip is a camera pan and zoom over one of the embedded photos
(advqa's ``photos`` set), written half as Y4M (4:2:0, limited range, as Derf's
collection ships) and half as H.264 MP4 through PyAV, and read back by
``advqa benchmark --source``. Two runs on the same clips, each timed:

1. ``--temporal frame`` (the benchmark's protocol): every default metric × all nine
   attacks, frame by frame;
2. ``--temporal clip``: one perturbation per clip, the seven attacks that have a clip
   form.

Usage::

    python benchmarks/video_benchmark.py [--out runs/video-bench] [--clips 6] [--frames 4]
        [--size 192] [--threads 2]

It prints the wall time of each run, the clip and frame counts, and the leaderboard's
top and bottom metrics for both runs side by side (the per-clip ranks are comparable:
same metrics, same clips).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def pan_and_zoom(photo: torch.Tensor, frames: int, height: int = 216,
                 width: int = 288) -> torch.Tensor:
    """``frames`` views of ``photo`` (3, H, W): the window shrinks 3 % and moves right and
    down each frame; 8-bit levels."""
    _, full_height, full_width = photo.shape
    views = []
    for t in range(frames):
        scale = 0.9 * (0.97 ** t)
        crop_h = int(full_height * scale)
        crop_w = min(full_width, crop_h * width // height)
        top = min(full_height - crop_h, int(0.02 * full_height * t))
        left = min(full_width - crop_w, int(0.03 * full_width * t))
        window = photo[:, top:top + crop_h, left:left + crop_w]
        views.append(F.interpolate(window[None], size=(height, width), mode="bilinear",
                                   antialias=True, align_corners=False)[0].clamp(0, 1))
    return (torch.stack(views) * 255).round() / 255


def write_y4m(path: Path, frames: torch.Tensor) -> None:
    """4:2:0 (C420jpeg: chroma averaged over 2×2), BT.601 limited range."""
    import numpy as np

    height, width = frames.shape[2:]
    chunks = [f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode()]
    for frame in frames.double().numpy():
        red, green, blue = frame
        y = 0.299 * red + 0.587 * green + 0.114 * blue
        cb, cr = (blue - y) / 1.772, (red - y) / 1.402

        def half(plane):
            return (plane[0::2, 0::2] + plane[1::2, 0::2] + plane[0::2, 1::2]
                    + plane[1::2, 1::2]) / 4

        planes = [16 + 219 * y, 128 + 224 * half(cb), 128 + 224 * half(cr)]
        chunks.append(b"FRAME\n")
        chunks += [np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes]
    path.write_bytes(b"".join(chunks))


def write_mp4(path: Path, frames: torch.Tensor) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames.shape[2:]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            array = (frame.permute(1, 2, 0) * 255).round().byte().numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


def make_clips(folder: Path, count: int, frames: int) -> None:
    from advqa.data import load_samples

    folder.mkdir(parents=True, exist_ok=True)
    photos = load_samples("photos")
    for index in range(count):
        sample = photos[index % len(photos)]
        clip = pan_and_zoom(sample.image, frames)
        name = f"{index:02d}-{sample.name}"
        if index % 2:
            write_mp4(folder / f"{name}.mp4", clip)
        else:
            write_y4m(folder / f"{name}.y4m", clip)


def run(out: Path, source: Path, temporal: str, size: int, frames: int):
    from advqa.robustness.benchmark import Settings
    from advqa.workflows.benchmark import benchmark_metrics

    started = time.perf_counter()
    summary = benchmark_metrics(out, Settings(temporal=temporal), source=str(source),
                                size=size, max_frames=frames, progress=False)
    return summary, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/video-bench"))
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    import pandas as pd

    source = arguments.out / "clips"
    make_clips(source, arguments.clips, arguments.frames)
    boards = {}
    for temporal in ("frame", "clip"):
        summary, seconds = run(arguments.out / temporal, source, temporal, arguments.size,
                               arguments.frames)
        clips = summary.clips
        print(f"--temporal {temporal}: {seconds / 60:.1f} min, {len(summary.items)} frame rows, "
              f"{len(clips)} clip rows, {clips.image.nunique()} test clips, "
              f"{int(clips.error.notna().sum())} clip rows with an error; failures: "
              f"{summary.failures + summary.failed_units or 'none'}")
        board = pd.read_csv(arguments.out / temporal / "leaderboard.csv")
        boards[temporal] = board.set_index("metric")
    columns = [column for column in ("mean_rank", "abs_gain", "robustness_score") if column in
               boards["frame"].columns]
    table = boards["frame"][columns].add_suffix(" (frame)").join(
        boards["clip"][columns].add_suffix(" (clip)"))
    print(table.sort_values(table.columns[0]).to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
