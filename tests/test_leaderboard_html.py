"""The benchmark's leaderboard page: labelled points in the gain-against-visibility plot,
failed attacks marked everywhere, no table wider than about a page, each in a box that
scrolls on its own. The scores come from a synthetic per-item table (8 metrics, 9
attack settings, some failed), so no attack runs here."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advqa.robustness.leaderboard import (
    FAILED,
    ITEM_COLUMNS,
    MEAN_AMPLITUDE,
    gain_scatter_figure,
    write_leaderboard,
)

ARTIFACTS = Path(__file__).parent / "artifacts" / "report"
METRICS = ["psnr", "ssim", "gmsd", "niqe", "brisque", "piqe", "lpips", "dists"]
# (attack, UAP amplitude, step): UAPs at two amplitudes, iterative attacks at two steps.
ATTACKS = [("fgsm", None, None), ("ifgsm", None, 0.25 / 255), ("ifgsm", None, 1 / 255),
           ("mifgsm", None, 1 / 255), ("korhonen", None, 1 / 255),
           ("cumulative-uap", 0.2, None), ("cumulative-uap", 0.4, None),
           ("generative-uap", 0.4, None)]


def items() -> pd.DataFrame:
    """Every seventh (metric, attack) cell moves the metric down: a failed attack."""
    rng = np.random.default_rng(0)
    rows = []
    for m, metric in enumerate(METRICS):
        for a, (attack, amplitude, step) in enumerate(ATTACKS):
            shift = abs(rng.normal(0.1, 0.05)) + 0.01
            if (m + a) % 7 == 0:
                shift = -shift
            for image in range(6):
                clean = rng.uniform(0.2, 0.7)
                rows.append({"image": f"i{image}", "dataset": "toy", "attack": attack,
                             "amplitude": math.nan if amplitude is None else amplitude,
                             "step": math.nan if step is None else step, "metric": metric,
                             "clean": clean, "attacked": clean + shift + rng.normal(0, 0.01),
                             "gain": 0.0, "psnr": 30 + 8 * rng.uniform() - 10 * (amplitude or 0),
                             "ssim": 0.9, "mse": 1e-3, "radius": math.nan, "error": None})
    return pd.DataFrame(rows, columns=list(ITEM_COLUMNS))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("leaderboard")
    ranges = {metric: (0.0, 1.0, True) for metric in METRICS}
    paths = write_leaderboard(items(), ranges, out, bootstrap=20,
                              settings={"step_sizes": [0.25 / 255, 1 / 255], "eps": 8 / 255,
                                        "steps": 10, "amplitudes": [0.2, 0.4]})
    return paths, pd.read_parquet(paths["scores_parquet"]), pd.read_parquet(
        paths["leaderboard_parquet"])


@pytest.fixture(scope="module")
def page(run):
    return run[0]["html"].read_text(encoding="utf-8")


def test_every_point_of_the_gain_plot_is_labelled_and_failed_ones_marked(run):
    _, scores, _ = run
    figure = gain_scatter_figure(scores)
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_visible()}
    assert sorted(panels) == sorted(METRICS)
    points = scores[scores["amplitude"] != MEAN_AMPLITUDE]
    for metric, rows in points.groupby("metric"):
        labels = [text.get_text() for text in panels[metric].texts]
        assert len(labels) == len(rows)
        for row in rows.itertuples():
            setting = row.amplitude if isinstance(row.amplitude, str) else row.step
            expected = f"{row.attack}" + (f" {setting}" if isinstance(setting, str) else "")
            expected += " ✗" if row.status == FAILED else ""
            assert expected in labels, (metric, expected, labels)
        crosses = [line for line in panels[metric].lines if line.get_marker() == "x"]
        assert len(crosses) == int((rows.status == FAILED).sum())
        assert all(line.get_color() == "#c00000" for line in crosses)


def test_failed_attacks_are_marked_in_every_table(run, page):
    _, scores, board = run
    failed_rows = int((scores.status == FAILED).sum())
    assert failed_rows > 0
    assert len(re.findall(r'<tr class="failed">', page)) == failed_rows
    entered = scores[scores.ranked & (scores.status == FAILED)]
    assert page.count('<td class="failed"><b>failed</b> (gain -') == len(entered)
    for row in board.itertuples():
        if row.failed_attacks:
            assert f"<b>{row.failed_attacks} failed</b>: " in page


def test_every_table_scrolls_in_its_own_box(page):
    tables = page.count("<table")
    assert tables == 4
    assert len(re.findall(r'<div class="wide"><table', page)) == tables


def test_no_table_is_much_wider_than_the_page(run, browser):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    try:
        problems = []
        page.on("console", lambda message: problems.append(message.text)
                if message.type in ("error", "warning") else None)
        page.goto(run[0]["html"].resolve().as_uri())
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        widths = page.evaluate(
            "Array.from(document.querySelectorAll('table'), t => t.scrollWidth)")
        assert max(widths) <= 1400, widths  # was 2,900 px for the score table
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "leaderboard-1366.png"), full_page=True)
        assert problems == []
    finally:
        page.close()
