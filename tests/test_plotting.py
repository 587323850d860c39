"""The house plotting style: figures without global side effects, saved atomically."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import advqa
from advqa import plotting

ROOT = Path(__file__).resolve().parents[1]


def draw_every_figure(folder: Path) -> list[Path]:
    """Every figure advqa draws, once, from small synthetic tables."""
    from advqa.detect.stego_eval import plot_results
    from advqa.evaluate.applications import aeqa_curves
    from advqa.evaluate.plots import scatter_plots
    from advqa.report.html import aeqa_plot, mos_scatter
    from advqa.robustness.leaderboard import SCORES, gain_scatter, score_bars

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"psnr": rng.uniform(20, 45, 30), "ssim": rng.uniform(0.6, 1, 30),
                          "attack": rng.choice(["pgd", "fgsm"], 30)})
    frame["mos"] = 1 + 4 / (1 + np.exp(-(frame.psnr - 32) / 4))
    paths = [scatter_plots(frame, ["psnr", "ssim"], folder / "scatter.png"),
             scatter_plots(frame, ["psnr"], folder / "scatter.svg")]
    scored = pd.DataFrame([{"attack": attack, "norm": norm, "strength": strength,
                            "aeqa": rng.uniform()}
                           for attack in ("pgd", "fgsm") for norm in ("linf", "l2")
                           for strength in (0.01, 0.02, 0.04)])
    paths.append(aeqa_curves(scored, folder / "aeqa_curves.png"))
    results = pd.DataFrame([{"model": "cnn", "eps": eps, "tpr": eps * 4,
                             "ae_accuracy": 1 - eps * 4, "pipeline_accuracy": 0.9}
                            for eps in (0.0, 0.1, 0.2)])
    samples = pd.DataFrame([{"model": "cnn", "eps": eps, "index": index,
                             "statistic": rng.normal(eps * 10)}
                            for eps in (0.0, 0.1, 0.2) for index in range(20)])
    paths += plot_results(results, samples, rng.normal(size=20), 1.0, folder, [0.1])
    board = pd.DataFrame({"metric": ["psnr", "niqe"], **{s: rng.normal(size=2) for s in SCORES}})
    gains = pd.DataFrame({"metric": ["psnr", "niqe"], "amplitude": ["0.02", "0.02"],
                          "mean_psnr": [30.0, 35.0], "abs_gain": [0.2, 0.5]})
    curves = scored.rename(columns={"aeqa": "mean_aeqa"})
    peaks = curves.iloc[[0]].rename(columns={"strength": "best_strength",
                                             "mean_aeqa": "peak_mean_aeqa"})
    for name, png in {"score_bars": score_bars(board), "gain_scatter": gain_scatter(gains),
                      "report_aeqa": aeqa_plot(curves, peaks),
                      "report_mos": mos_scatter(frame, ["psnr", "ssim"])}.items():
        paths.append(folder / f"{name}.png")
        paths[-1].write_bytes(png)
    return paths


CHECK_GLOBAL_STATE = """
import sys
from pathlib import Path
import matplotlib
matplotlib.use("svg")  # the caller's own choice of backend
import matplotlib.pyplot as plt
plt.figure()  # and one open figure of theirs
sys.path.insert(0, {root!r})
from tests.test_plotting import draw_every_figure
paths = draw_every_figure(Path({folder!r}))
print(matplotlib.get_backend(), plt.get_fignums(), len(paths))
"""


def test_plotting_leaves_the_backend_and_pyplot_alone(tmp_path):
    # A fresh interpreter: the caller chose a backend and has a pyplot figure open;
    # drawing every advqa figure changes neither.
    script = CHECK_GLOBAL_STATE.format(root=str(ROOT), folder=str(tmp_path))
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env={**os.environ, "MPLBACKEND": ""}, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split()[:2] == ["svg", "[1]"], finished.stdout
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 10 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (tmp_path / "scatter.svg").read_text().lstrip().startswith("<?xml")
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_no_library_module_selects_a_backend_or_imports_pyplot():
    source = Path(advqa.__file__).parent
    forbidden = re.compile(r"matplotlib\.use\s*\(|import\s+matplotlib\.pyplot"
                           r"|from\s+matplotlib\.pyplot\s+import|from\s+matplotlib\s+import.*\bpyplot")
    offenders = [path.relative_to(source).as_posix() for path in sorted(source.rglob("*.py"))
                 if forbidden.search(path.read_text(encoding="utf-8"))]
    assert not offenders, f"global matplotlib state touched in {offenders}"


def _line_figure():
    figure = plotting.new_figure(3, 2)
    ax = plotting.subplots(figure)[0][0]
    ax.plot([0, 1, 2], [0, 1, 4], label="square")
    plotting.legend(ax)
    return figure


def test_figures_are_saved_atomically_and_reproducibly(tmp_path):
    figure = _line_figure()
    png = plotting.save_figure(figure, tmp_path / "deep" / "line.png")
    svg = plotting.save_figure(figure, tmp_path / "line.SVG")
    assert png.read_bytes() == plotting.figure_png(figure) == plotting.figure_png(_line_figure())
    assert b"matplotlib" not in png.read_bytes()  # no version in the metadata
    assert "<dc:date>" not in svg.read_text()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "line.SVG", "line.png"]


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = plotting.save_figure(_line_figure(), tmp_path / "line.png")
    before = path.read_bytes()
    broken = plotting.new_figure(3, 2)

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(broken, "savefig", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        plotting.save_figure(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["line.png"]


def test_house_style():
    figure = plotting.new_figure(4, 3)
    assert figure.get_dpi() == plotting.DPI and figure.get_layout_engine() is not None
    axes = plotting.subplots(figure, 2, 3, sharey=True)
    assert axes.shape == (2, 3)
    assert all(line.get_visible() for ax in axes.ravel() for line in ax.get_xgridlines())
    assert plotting.legend(axes[0][0]) is None  # nothing labelled: no empty legend box
    with pytest.raises(ValueError, match="positive"):
        plotting.new_figure(0, 3)
    with pytest.raises(ValueError, match="'png' or 'svg'"):
        plotting.figure_bytes(figure, "pdf")
