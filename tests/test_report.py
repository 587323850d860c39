"""The HTML report: it opens with the attacks ranked by visibility at equal success, its
numbers are the study's, it is self-contained and small whatever the study's size.

One small real study is built once per session (:func:`report_study`: 4 ImageNet photos,
L∞ PGD at 1, 2, 4/255, L2 FGSM at 0.1, 0.4, 1.5, DeepFool overshoot 1 and 36 on L2 and
0.25 on L∞, C&W κ = 0; scored with AdvDSS, AEQA, PSNR and SSIM; Table 6 / Figure 7 and the
detector run on it); ``tests/test_report_browser.py`` renders the same study in Chromium.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from advqa.data import load_samples, read_image
from advqa.detect import detect_study, ws_statistic
from advqa.report import SECTION_IDS, render_report, write_report
from advqa.report.markup import strength_text
from advqa.study import StudyDir, build_dataset, grid_from_options

RATES = (0.5, 0.9)
SHOWN = ("advdss", "aeqa", "psnr", "ssim")
LIMIT = 5 * 1024 * 1024


@pytest.fixture(scope="session")
def report_study(tmp_path_factory, default_model):
    """The built, scored study (shared with the browser test); read-only: copy it to change
    it."""
    from advqa.evaluate.applications import write_applications
    from advqa.quality.scoring import score_study

    torch.set_num_threads(1)
    # Built once per session even though two modules use it (each module's import of the
    # fixture is a fixture of its own to pytest): the folder is the cache.
    output = tmp_path_factory.getbasetemp() / "report_study"
    finished = output / "built-for-the-report-tests"
    if finished.is_file():
        return output
    shutil.rmtree(output, ignore_errors=True)
    grid = [*grid_from_options(["pgd"], ["linf"], [1 / 255, 2 / 255, 4 / 255], steps=3),
            *grid_from_options(["fgsm"], ["l2"], [0.1, 0.4, 1.5]),
            *grid_from_options(["deepfool"], ["l2"], [1.0, 36.0]),
            *grid_from_options(["deepfool"], ["linf"], [0.25]),
            *grid_from_options(["cw"], ["l2"], [0.0], steps=10, binary_search_steps=1)]
    build_dataset(load_samples("imagenet")[:4], default_model, grid, output, progress=False)
    score_study(output, list(SHOWN), model=default_model, progress=False)
    write_applications(output)
    detect_study(output)
    finished.touch()
    return output


@pytest.fixture
def fast_figures(monkeypatch):
    """The curves as a 1-pixel PNG: for tests of tables and sections (drawing the real
    figures takes most of a report's seconds)."""
    import io

    from PIL import Image

    from advqa.report import html

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    monkeypatch.setattr(html, "curves_png", lambda *_args, **_options: buffer.getvalue())


@pytest.fixture(scope="module")
def report(report_study):
    return write_report(report_study)


@pytest.fixture(scope="module")
def page(report):
    return report.read_text(encoding="utf-8")


# --- a small HTML reader ------------------------------------------------------------------------


class Tables(HTMLParser):
    """Every ``<table id=…>``: its header texts and rows of (text, data-v) cells, with each
    row's class; and the section ids in order."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.sections: list[str] = []
        self.current = None
        self.cell = None
        self.feed(text)

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        if tag == "section":
            self.sections.append(attributes.get("id"))
        elif tag == "table" and attributes.get("id"):
            self.current = {"headers": [], "rows": [], "classes": []}
            self.tables[attributes["id"]] = self.current
        elif self.current is not None and tag == "tr":
            self.row = []
        elif self.current is not None and tag in ("td", "th"):
            self.cell = {"text": "", "v": attributes.get("data-v"), "tag": tag}
            if tag == "td" and not self.row:
                self.current["classes"].append(self.row_class)
        if tag == "tr":
            self.row_class = attributes.get("class") or ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["text"] += data

    def handle_endtag(self, tag):
        if self.current is None:
            return
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr":
            if self.row and self.row[0]["tag"] == "th":
                self.current["headers"] = [cell["text"].strip() for cell in self.row]
            elif self.row:
                self.current["rows"].append(self.row)
        elif tag == "table":
            self.current = None


def column(table: dict, header: str) -> list[dict]:
    index = table["headers"].index(header)
    return [row[index] for row in table["rows"]]


def value(cell: dict) -> float:
    return math.nan if cell["v"] in (None, "") else float(cell["v"])


# --- the first section: visibility at equal success --------------------------------------------


def expected_ranking(study: Path, rate: float) -> list[dict]:
    """The ranking recomputed here from the scored manifest and the success table."""
    scored = pd.read_parquet(study / "scored_manifest.parquet")
    success = pd.read_parquet(study / "summary.parquet")
    rows = []
    for (attack, norm), curve in success.groupby(["attack", "norm"]):
        curve = curve.sort_values("strength").reset_index(drop=True)
        reached = [i for i, r in enumerate(curve.success_rate) if r >= rate]
        row = {"attack": attack, "norm": norm, "reached": bool(reached)}
        if reached:
            i = reached[0]
            s, r = curve.strength, curve.success_rate
            row["strength"] = s[0] if i == 0 else (
                s[i - 1] + (rate - r[i - 1]) / (r[i] - r[i - 1]) * (s[i] - s[i - 1]))
            row["scored_strength"] = s[i]
            aes = scored[(scored.attack == attack) & (scored.norm == norm)
                         & np.isclose(scored.strength, s[i]) & scored.success]
            row["aes"] = len(aes)
            row.update({m: aes[m].mean() for m in SHOWN})
        rows.append(row)
    return rows


def test_the_report_opens_with_the_visibility_ranking(page):
    parsed = Tables(page)
    assert parsed.sections[0] == "visibility"
    first = page[page.index('<section id="visibility">'):page.index('<section id="curves">')]
    assert "least visible" in first and "most visible" in first
    for rate in RATES:
        table = parsed.tables[f"ranking-{round(rate * 100)}"]
        assert table["headers"][:3] == ["#", "attack", "norm"]
        assert {"AdvDSS", "AEQA", "PSNR", "SSIM"} <= set(table["headers"])


@pytest.mark.parametrize("rate", RATES)
def test_ranking_rows_are_sorted_by_advdss_and_recomputed(page, report_study, rate):
    table = Tables(page).tables[f"ranking-{round(rate * 100)}"]
    expected = {(row["attack"], row["norm"]): row for row in expected_ranking(report_study, rate)}
    shown = [(cells[1]["text"], cells[2]["text"]) for cells in table["rows"]]
    labels = {"L\u221e": "linf", "L2": "l2"}
    keys = [(attack, labels[norm]) for attack, norm in shown]
    assert sorted(keys) == sorted(expected)  # every attack and norm, none dropped
    reached = [key for key in keys if expected[key]["reached"]]
    # Reached rows first, by AdvDSS descending; then the others, marked.
    assert keys[:len(reached)] == reached
    advdss = [value(cell) for cell in column(table, "AdvDSS")][:len(reached)]
    assert advdss == sorted(advdss, reverse=True)
    for key, cells, row_class in zip(keys, table["rows"], table["classes"], strict=True):
        row = expected[key]
        texts = {header: cell for header, cell in zip(table["headers"], cells, strict=True)}
        if not row["reached"]:
            assert "not reached" in texts[f"reaches {rate:.0%} at"]["text"]
            assert row_class == "unreached" and texts["#"]["text"] == "–"
            continue
        assert value(texts[f"reaches {rate:.0%} at"]) == pytest.approx(row["strength"])
        assert value(texts["scored at"]) == pytest.approx(row["scored_strength"])
        assert value(texts["AEs"]) == row["aes"]
        for metric, header in zip(SHOWN, ("AdvDSS", "AEQA", "PSNR", "SSIM"), strict=True):
            assert value(texts[header]) == pytest.approx(row[metric], rel=1e-9), (key, metric)


def test_fgsm_reaches_half_success_between_strengths_it_tried(page, report_study):
    """0 % at 0.1 and 75 % at 0.4: 50 % is reached at 0.1 + (0.5 / 0.75) · 0.3 = 0.3."""
    success = pd.read_parquet(report_study / "summary.parquet")
    fgsm = success[success.attack == "fgsm"].sort_values("strength")
    assert fgsm.success_rate.tolist()[:2] == [0.0, 0.75]  # the fixture's premise
    table = Tables(page).tables["ranking-50"]
    row = next(cells for cells in table["rows"] if cells[1]["text"] == "fgsm")
    assert row[3]["text"] == "\u03b5 \u2248 0.3" and row[4]["text"] == "\u03b5 = 0.4"


def test_deepfool_linf_never_reaches_the_rate_and_is_listed(page):
    for rate in RATES:
        table = Tables(page).tables[f"ranking-{round(rate * 100)}"]
        row = next(cells for cells in table["rows"]
                   if cells[1]["text"] == "deepfool" and cells[2]["text"] == "L\u221e")
        assert row[3]["text"] == "not reached (max 0 %)"
    assert "Not reached by deepfool L\u221e" in page


def test_each_score_says_what_higher_means_from_the_registry(page):
    import html

    from advqa.quality.registry import list_metrics

    first = page[:page.index('<section id="curves">')]
    items = re.search(r'<ul class="meaning">(.*?)</ul>', first, re.S).group(1).split("<li>")[1:]
    registry = list_metrics()
    assert [re.match(r"<b>([^<]+)</b>", item).group(1) for item in items] == [
        "AdvDSS", "AEQA", "PSNR", "SSIM"]
    for item, name in zip(items, SHOWN, strict=True):
        assert html.escape(registry[name].description) in item and "higher" in item, name
    assert "less visible" in items[0] and "classifier" in items[1]  # AEQA is not visibility


def test_strengths_read_as_fractions_of_255_where_they_are(page):
    assert strength_text(0.00784313725, "eps", "linf") == "2/255"
    assert strength_text(2 / 255 + 5e-7, "eps", "linf") == "2/255"
    assert strength_text(0.0078, "eps", "linf") == "0.0078"  # 1.99/255: not k/255
    assert strength_text(0.4, "eps", "linf") == "0.4"  # = 102/255, but given as 0.4
    assert strength_text(2 / 255, "eps", "l2") == "0.007843"  # an L2 ε is no pixel budget
    assert strength_text(0.0, "kappa", "l2") == "0" and strength_text(36, "overshoot") == "36"
    cells = Tables(page).tables["cells"]
    pgd = [row[3]["text"] for row in cells["rows"] if row[0]["text"] == "pgd"]
    assert pgd == ["1/255", "2/255", "4/255"]
    fgsm = [row[3]["text"] for row in cells["rows"] if row[0]["text"] == "fgsm"]
    assert fgsm == ["0.1", "0.4", "1.5"]
    assert "\u03b5 \u2264 1/255" in page  # PGD reaches 50 % at its first strength


def test_curves_cover_every_score_with_kappa_and_overshoot_apart(page):
    curves = page[page.index('<section id="curves">'):page.index('<section id="viewer">')]
    captions = re.findall(r"<figcaption><b>([^<]*)</b>", curves)
    assert any(c.startswith("\u03b5, L\u221e norm") for c in captions)
    assert any(c.startswith("\u03b5, L2 norm") for c in captions)
    assert any(c.startswith("\u03ba (cw") and "linear axis" in c for c in captions)
    # Overshoot 0.25 to 36 spans a decade: log; κ = 0 alone: linear, so it is seen.
    assert any(c.startswith("overshoot (deepfool") and "log axis" in c for c in captions)
    assert curves.count('<img class="plot" src="data:image/png;base64,') == len(captions)


def test_every_table_is_captioned_and_scrolls_in_its_own_box(page):
    captioned = re.findall(r'<figure><figcaption>(.+?)</figcaption><div class="wide"><table',
                           page)
    assert len(captioned) == page.count("<table") > 5
    before_settings = page[:page.index('<section id="settings">')]
    assert all("Budget" in caption for caption in re.findall(
        r'<figure><figcaption>(.+?)</figcaption><div class="wide"><table', before_settings))


# --- sections present iff their files are --------------------------------------------------


LBFGS = pd.DataFrame({"method": ["lbfgs-aeqa", "pgd-linf"], "eps": [math.nan, 2 / 255],
                      "success_rate": [0.5, 0.75], "mean_advdss": [0.99, 0.98],
                      "mean_l2": [1.0, 2.0], "mean_linf": [0.01, 2 / 255],
                      "images": [4, 4], "successes": [2, math.nan]})


def test_table7_and_detection_appear_iff_their_files_exist(report_study, page, tmp_path,
                                                           fast_figures):
    parsed = Tables(page)
    assert "lbfgs" not in parsed.sections and "detection" in parsed.sections
    assert f"advqa evaluate aeqa {report_study} --lbfgs N" in page
    copy = StudyDir(tmp_path / "study")
    shutil.copytree(report_study, copy.path)
    copy.applications.write_lbfgs(LBFGS)
    for path in (copy.detection_path, copy.detection_summary_path):
        path.unlink()
    text = render_report(copy)
    parsed = Tables(text)
    assert "lbfgs" in parsed.sections and "detection" not in parsed.sections
    assert f"advqa detect study {copy.path}" in text
    table7 = parsed.tables["table7"]
    assert [row[1]["text"] for row in table7["rows"]] == ["–", "2/255"]
    assert parsed.sections == [s for s in SECTION_IDS if s in parsed.sections]


def test_without_applications_their_sections_go_and_the_command_is_named(report_study,
                                                                         tmp_path,
                                                                         fast_figures):
    copy = StudyDir(tmp_path / "study")
    shutil.copytree(report_study, copy.path)
    shutil.rmtree(copy.applications.path)
    text = render_report(copy)
    sections = Tables(text).sections
    assert "attack-comparison" not in sections and "aeqa-curves" not in sections
    assert f"advqa evaluate aeqa {copy.path}</code>" in text
    assert "\u2605" not in text[text.index('<section id="curves">'):]  # no peaks drawn


def test_applications_tables_are_shown_as_written(report_study, tmp_path, fast_figures):
    """Figure 7's peaks are evaluate's table, not recomputed: a sentinel shows."""
    copy = StudyDir(tmp_path / "study")
    shutil.copytree(report_study, copy.path)
    best = copy.applications.best_settings(required=True).assign(peak_mean_aeqa=0.123456)
    copy.applications.write_best_settings(best)
    text = render_report(copy)
    figure7 = Tables(text).tables["best-settings"]
    assert {row[-1]["text"] for row in figure7["rows"]} == {"0.1235"}
    table6 = Tables(text).tables["table6"]
    comparison = copy.applications.attack_comparison(required=True)
    assert sorted(row[0]["text"] for row in table6["rows"]) == sorted(comparison.attack)


def test_settings_are_collapsed_and_last_and_never_a_json_dump(page, report_study):
    parsed = Tables(page)
    assert parsed.sections[-1] == "settings"
    settings = page[page.index('<section id="settings">'):]
    assert re.search(r'<details id="settings-details">', settings)
    assert not re.search(r"<details[^>]*\bopen\b", settings)
    assert "<pre" not in page
    document = json.loads((report_study / "study.json").read_text())
    assert json.dumps(document, indent=2)[:40] not in page
    assert len(parsed.tables["grid"]["rows"]) == len(document["grid"])


def test_report_is_self_contained(page, report):
    assert report.name == "report.html"
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"\b(src|href)=\"(?!data:|#)", page)
    sources = re.findall(r'<img[^>]*\bsrc="([^"]+)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    data = json.loads(re.search(r'<script type="application/json" id="viewer-data">(.*?)'
                                r"</script>", page, re.S).group(1))
    assert all(uri.startswith("data:image/png;base64,") for uri in data["images"].values())


def test_the_viewer_embeds_one_ae_per_attack_at_its_half_success_strength(page, report_study):
    data = json.loads(re.search(r'id="viewer-data">(.*?)</script>', page, re.S).group(1))
    labels = [item["label"] for item in data["items"]]
    # PGD, FGSM, DeepFool L2 and C&W reach 50 % (then FGSM 90 % at a larger ε); DeepFool
    # L∞ kept no AE. All on the one photo that has an AE in every one of those cells.
    assert len(labels) == 5 and len({item["reference"] for item in data["items"]}) == 1
    assert any(label.startswith("fgsm L2, \u03b5 = 1.5") for label in labels)
    assert any(label.startswith("fgsm L2, \u03b5 = 0.4") for label in labels)
    assert any(label.startswith("pgd L\u221e, \u03b5 = 1/255") for label in labels)
    assert any(label.startswith("cw L2, \u03ba = 0") for label in labels)
    # The embedded files are the study's PNGs, byte for byte.
    import base64

    manifest = pd.read_parquet(report_study / "manifest.parquet")
    on_disk = {(report_study / p).read_bytes() for p in manifest.adversarial_path}
    embedded = [base64.b64decode(data["images"][item["ae"]].split(",", 1)[1])
                for item in data["items"]]
    assert all(png in on_disk for png in embedded)


# --- size ---------------------------------------------------------------------------------------


def synthetic_study(root: Path, report_study: Path, rows: int, distinct: int) -> StudyDir:
    """A study of ``rows`` AEs over the real study's grid cells: its scored rows replicated,
    their images ``distinct`` fresh 224² noise PNGs (incompressible: the worst case for the
    report's size), shared round-robin."""
    from advqa.data import save_png

    study = StudyDir(root)
    shutil.copytree(report_study, study.path)
    scored = pd.read_parquet(study.scored_manifest_path)
    copies = scored.iloc[np.arange(rows) % len(scored)].reset_index(drop=True)
    copies["id"] = [f"ae{index:05d}" for index in range(rows)]
    copies["image"] = [f"photo{index % 50:02d}" for index in range(rows)]
    generator = torch.Generator().manual_seed(0)
    paths = []
    for index in range(distinct):
        path = f"images/adv/noise{index:04d}.png"
        save_png(torch.rand(3, 224, 224, generator=generator), study.resolve(path))
        paths.append(path)
    copies["adversarial_path"] = [paths[index % distinct] for index in range(rows)]
    copies["reference_path"] = [paths[(index + 1) % distinct] for index in range(rows)]
    study.write_scored_manifest(copies)
    study.write_manifest(copies[[c for c in scored.columns if c not in SHOWN]])
    return study


def test_a_300_ae_study_stays_under_5_mb(report_study, tmp_path):
    study = synthetic_study(tmp_path / "s300", report_study, 300, 30)
    size = write_report(study).stat().st_size
    assert size < LIMIT, size


def test_a_20000_ae_study_still_opens(report_study, tmp_path):
    study = synthetic_study(tmp_path / "s20k", report_study, 20_000, 30)
    start = time.perf_counter()
    path = write_report(study)
    elapsed = time.perf_counter() - start
    text = path.read_text(encoding="utf-8")
    assert path.stat().st_size < LIMIT and elapsed < 60, (path.stat().st_size, elapsed)
    data = json.loads(re.search(r'id="viewer-data">(.*?)</script>', text, re.S).group(1))
    assert len(data["images"]) <= 40
    assert "20000 AEs" in text


# --- the command line and the detector's table ----------------------------------------------


def test_cli_writes_the_report(report_study, tmp_path, fast_figures, capsys):
    from advqa.cli import report as report_cli

    copy = tmp_path / "study"
    shutil.copytree(report_study, copy)
    (copy / "summary.parquet").unlink()
    parser = argparse.ArgumentParser()
    report_cli.register(parser.add_subparsers())
    arguments = parser.parse_args(["report", str(copy), "--max-images", "2"])
    assert arguments.handler(arguments) == 0
    assert "report.html" in capsys.readouterr().out
    text = (copy / "report.html").read_text(encoding="utf-8")
    assert "derived from manifest.parquet" in text
    data = json.loads(re.search(r'id="viewer-data">(.*?)</script>', text, re.S).group(1))
    assert len(data["images"]) <= 2


def test_the_viewer_keeps_to_its_byte_budget(report_study, tmp_path):
    from advqa.report.viewer import viewer_html
    from advqa.report.visibility import cell_table, equal_success, strength_names

    study = synthetic_study(tmp_path / "noise", report_study, 40, 40)
    scored = study.scored_manifest(required=True)
    success = study.success_table(required=True)
    names = strength_names(scored, set(zip(success.attack, success.norm, strict=True)))
    ranking = equal_success(cell_table(success, scored, names))
    html = viewer_html(study, ranking, scored, budget=1_000_000)
    data = json.loads(re.search(r'id="viewer-data">(.*?)</script>', html, re.S).group(1))
    assert 0 < sum(len(uri) for uri in data["images"].values()) <= 1_000_000
    assert "left out to keep the report small" in html


def test_detection_summary_recomputes_from_the_images(report_study, page):
    from sklearn.metrics import roc_auc_score

    study = report_study
    manifest = pd.read_parquet(study / "manifest.parquet")
    summary = pd.read_parquet(study / "detection_summary.parquet")
    references = sorted(set(manifest.reference_path))
    benign = ws_statistic(torch.stack([read_image(study / p) for p in references])).tolist()
    threshold = max(benign)
    assert summary.threshold.unique().tolist() == pytest.approx([threshold])
    for row in summary.itertuples():
        cell = manifest[(manifest.attack == row.attack) & (manifest.norm == row.norm)
                        & (manifest.strength == row.strength)]
        values = ws_statistic(torch.stack([read_image(study / p)
                                           for p in cell.adversarial_path])).tolist()
        assert row.aes == len(values)
        assert row.detection_rate == pytest.approx(sum(v > threshold for v in values) / len(values))
        expected_auc = roc_auc_score([0] * len(benign) + [1] * len(values), benign + values)
        assert row.auc == pytest.approx(expected_auc)
    assert len(Tables(page).tables["detection-table"]["rows"]) == len(summary)
