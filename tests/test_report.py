"""The HTML report: self-contained, every section renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from advqa.data import load_samples, read_image
from advqa.detect import detect_study, ws_statistic
from advqa.report import SECTION_IDS, write_report
from advqa.study import build_dataset, grid_from_options

ARTIFACTS = Path(__file__).parent / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
# Chromium logs every console message (console.log/error, uncaught exceptions) to stderr as
# "...:INFO:CONSOLE:<line>] "<message>", source: ...", without its level. The report has no
# script, so any console line at all is an error.
CONSOLE = re.compile(r"CONSOLE[^\]]*\]\s*(.*)|(Uncaught .*)")


def run_chromium(chromium, page: Path, profile: Path, *extra: str):
    result = subprocess.run([str(chromium), *FLAGS, f"--user-data-dir={profile}", *extra,
                             page.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    console = [m.group(1) or m.group(2) for m in CONSOLE.finditer(result.stderr)]
    return result.stdout, console


@pytest.fixture(scope="module")
def study(tmp_path_factory, default_model):
    from advqa.evaluate.applications import write_applications
    from advqa.quality.scoring import score_study

    output = tmp_path_factory.mktemp("report_study")
    grid = [*grid_from_options(["fgsm"], ["linf"], [2 / 255, 8 / 255]),
            *grid_from_options(["pgd"], ["linf"], [2 / 255, 8 / 255], steps=3)]
    build_dataset(load_samples("imagenet")[:2], default_model, grid, output, progress=False)
    score_study(output, ["advdss", "aeqa", "psnr", "linf"], model=default_model,
                progress=False)
    write_applications(output)
    detect_study(output)
    return output


@pytest.fixture(scope="module")
def report(study):
    return write_report(study, samples=2)


def test_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert report.name == "report.html"
    assert "http://" not in text and "https://" not in text
    assert 'src="http' not in text and "<script" not in text and "<link" not in text
    sources = re.findall(r'<img[^>]*\bsrc="([^"]*)"', text)
    assert len(sources) >= 3
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    for name in SECTION_IDS:
        assert f'<section id="{name}"><h2>' in text
    assert "AdvDSS" in text and "AEQA" in text
    assert "No mean opinion scores in this study" in text


def test_report_renders_in_chromium(report, chromium, tmp_path):
    dom, console = run_chromium(chromium, report, tmp_path / "profile", "--dump-dom")
    for name in SECTION_IDS:
        assert f'id="{name}"' in dom, name
    assert console == [], console
    screenshot = tmp_path / "report.png"
    _, console = run_chromium(chromium, report, tmp_path / "profile2",
                              f"--screenshot={screenshot}", "--window-size=1280,4000")
    assert console == [], console
    assert screenshot.stat().st_size > 10_000
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / "report.png")


def test_console_errors_are_detected(report, chromium, tmp_path):
    broken = tmp_path / "broken.html"
    text = report.read_text(encoding="utf-8")
    broken.write_text(text.replace(
        "</body>", "<script>console.error('injected-error'); undefinedCall()</script></body>"),
        encoding="utf-8")
    _, console = run_chromium(chromium, broken, tmp_path / "profile", "--dump-dom")
    assert any("injected-error" in line for line in console), console
    assert any("Uncaught ReferenceError" in line for line in console), console


def test_cli_writes_report_and_optional_sections(study, tmp_path, capsys):
    import pandas as pd

    from advqa.cli import report as report_cli

    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    (copy / "summary.parquet").unlink(missing_ok=True)
    manifest = pd.read_parquet(copy / "scored_manifest.parquet")
    pd.DataFrame({"id": manifest.id, "mos": 3.0, "mos_std": 0.5, "n_ratings": 10}).to_parquet(
        copy / "mos.parquet")
    applications = copy / "aeqa_applications"
    applications.mkdir(exist_ok=True)  # the fixture wrote it; replaced below
    pd.DataFrame({"attack": ["fgsm"], "norm": ["linf"], "best_strength": [8 / 255],
                  "peak_mean_aeqa": [0.5]}).to_parquet(applications / "best_settings.parquet")
    pd.DataFrame({"attack": ["fgsm<x>"], "norm": ["linf"], "strength": [8 / 255],
                  "mean_aeqa": [0.5], "success_rate": [1.0]}).to_parquet(
        applications / "attack_comparison.parquet")

    import argparse

    parser = argparse.ArgumentParser()
    report_cli.register(parser.add_subparsers())
    arguments = parser.parse_args(["report", str(copy), "--samples", "1"])
    assert arguments.handler(arguments) == 0
    assert "report.html" in capsys.readouterr().out
    text = (copy / "report.html").read_text(encoding="utf-8")
    assert "No mean opinion scores" not in text and "Scatter plots" in text
    assert "best_strength" in text and "fgsm&lt;x&gt;" in text
    assert "derived from manifest.parquet" in text


def test_detection_summary_recomputes_from_the_images(study):
    import pandas as pd
    import torch
    from sklearn.metrics import roc_auc_score

    manifest = pd.read_parquet(study / "manifest.parquet")
    summary = pd.read_parquet(study / "detection_summary.parquet")
    references = sorted(set(manifest.reference_path))
    benign = ws_statistic(torch.stack([read_image(study / p) for p in references])).tolist()
    threshold = max(benign)
    assert summary.threshold.unique().tolist() == pytest.approx([threshold])
    for row in summary.itertuples():
        cell = manifest[(manifest.attack == row.attack) & (manifest.strength == row.strength)]
        values = ws_statistic(torch.stack([read_image(study / p)
                                           for p in cell.adversarial_path])).tolist()
        assert row.aes == len(values)
        assert row.detection_rate == pytest.approx(sum(v > threshold for v in values) / len(values))
        expected_auc = roc_auc_score([0] * len(benign) + [1] * len(values), benign + values)
        assert row.auc == pytest.approx(expected_auc)


def test_report_shows_the_detection_table(report):
    text = report.read_text()
    section = text[text.index('id="detection"'):]
    assert "detection_rate" in section and "auc" in section


def aeqa_section(text: str) -> str:
    return text[text.index('id="aeqa-curves"'):text.index('id="attack-comparison"')]


def test_report_draws_the_applications_tables_it_is_given(study, tmp_path):
    """The curves and peaks are evaluate's tables, drawn as they are, not recomputed
    from the scores: a sentinel peak written into them is what the report shows."""
    import pandas as pd

    from advqa.report import render_report
    from advqa.study import StudyDir

    copy = StudyDir(tmp_path / "study")
    shutil.copytree(study, copy.path)
    applications = copy.applications
    applications.curves_figure_path.unlink()  # drawn from the table, not this PNG
    best = applications.best_settings(required=True).assign(peak_mean_aeqa=0.123456)
    applications.write_best_settings(best)
    curves = applications.curves(required=True)
    assert len(curves) == len(pd.read_parquet(copy.scored_manifest_path)
                              .groupby(["attack", "norm", "strength"]))
    section = aeqa_section(render_report(copy))
    assert "<img" in section and "0.1235" in section
    assert "No AEQA applications" not in section


def test_report_without_applications_names_the_command(study, tmp_path):
    from advqa.report import render_report
    from advqa.study import StudyDir

    copy = StudyDir(tmp_path / "study")
    shutil.copytree(study, copy.path)
    shutil.rmtree(copy.applications.path)
    text = render_report(copy)
    section = aeqa_section(text)
    assert "<img" not in section  # nothing recomputed from scored_manifest
    assert f"advqa evaluate aeqa {copy.path}" in section
    comparison = text[text.index('id="attack-comparison"'):text.index('id="detection"')]
    assert f"advqa evaluate aeqa {copy.path}" in comparison


def test_report_never_scrolls_sideways_at_1366(report, page_width):
    assert page_width(report) <= 1366  # wide tables scroll in their own box
