"""Peak memory of ``advqa attack`` on a folder of huge images, two source trees side by side.

What is measured
----------------
Maximum resident set size, as ``/usr/bin/time -v`` reports it, of

    python -m advqa attack DIR OUT --attack fgsm --eps 4/255 --batch-size 4

on a folder of ``--count`` PNGs of ``--side`` × ``--side`` pixels (default four of
8000 × 8000: scikit-image's astronaut photo upscaled bicubically, so the files stay
moderate, about 20 MB each, while decoding each takes 192 MB as 8-bit RGB and 768 MB as
float32). Each source tree (``--before``, ``--after``: folders holding the ``advqa``
package, put first on ``PYTHONPATH``) runs the same command once, in turn; the ratio is
before / after. Wall time is printed too, for information only: one run each.

Needs ``/usr/bin/time`` (Debian package ``time``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

_PEAK = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
_WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)")


def make_folder(folder: pathlib.Path, *, count: int, side: int) -> list[pathlib.Path]:
    """``count`` copies of one ``side``² PNG (astronaut, upscaled); existing files are kept."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"astronaut_{index}.png" for index in range(count)]
    if not paths[0].exists():
        photo = Image.fromarray(skimage.data.astronaut())
        photo.resize((side, side), Image.Resampling.BICUBIC).save(paths[0], compress_level=6)
    for path in paths[1:]:
        if not path.exists():
            shutil.copyfile(paths[0], path)
    return paths


def command(folder: pathlib.Path, output: pathlib.Path) -> list[str]:
    return ["/usr/bin/time", "-v", sys.executable, "-m", "advqa", "attack", str(folder),
            str(output), "--attack", "fgsm", "--eps", "4/255", "--batch-size", "4"]


def measure(source: pathlib.Path, folder: pathlib.Path) -> dict:
    """Run the command with ``source`` first on PYTHONPATH; peak RSS in MiB and wall time."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(source), *filter(None, [os.environ.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory() as output:
        finished = subprocess.run(command(folder, pathlib.Path(output) / "out"),
                                  capture_output=True, text=True, env=environment)
    if finished.returncode != 0:
        raise RuntimeError(f"{source}: exit {finished.returncode}\n{finished.stderr[-2000:]}")
    peak = int(_PEAK.search(finished.stderr)[1]) / 1024
    wall = _WALL.search(finished.stderr)[1]
    summary = finished.stdout.strip().splitlines()[-1]
    return {"source": str(source), "peak_mib": peak, "wall": wall, "summary": summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=pathlib.Path, required=True,
                        help="source tree (folder holding advqa/) of the old code")
    parser.add_argument("--after", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parents[1] / "src",
                        help="source tree of the new code (default: this checkout's src)")
    parser.add_argument("--folder", type=pathlib.Path,
                        default=pathlib.Path(tempfile.gettempdir()) / "advqa-folder-memory")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--side", type=int, default=8000)
    arguments = parser.parse_args(argv)
    if not pathlib.Path("/usr/bin/time").exists():
        parser.error("/usr/bin/time is missing: apt-get install time")

    paths = make_folder(arguments.folder, count=arguments.count, side=arguments.side)
    size = sum(path.stat().st_size for path in paths) / 2**20
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"folder: {arguments.folder}: {arguments.count} PNGs of {arguments.side}×"
          f"{arguments.side}, {size:.0f} MiB in all")
    print("command: " + " ".join(command(arguments.folder, pathlib.Path("OUT"))[2:]))
    rows = [measure(arguments.before, arguments.folder), measure(arguments.after, arguments.folder)]
    print()
    print("| code | peak RSS (MiB) | wall time | ratio to after |")
    print("| --- | ---: | ---: | ---: |")
    for name, row in zip(("before", "after"), rows, strict=True):
        ratio = row["peak_mib"] / rows[1]["peak_mib"]
        print(f"| {name} ({row['source']}) | {row['peak_mib']:.0f} | {row['wall']} | "
              f"{ratio:.2f} |")
    print()
    for name, row in zip(("before", "after"), rows, strict=True):
        print(f"{name}: {row['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
