"""The report in headless Chromium at 1366×768 and 1920×1080: no sideways scroll, no console
error, every section present, the AE viewer and table sorting work. Screenshots are kept
under ``tests/artifacts/report/`` for a person to look at.

Debian's ``chromium`` is driven through Playwright's Python client (``executable_path``), as
in ``tests/test_annotate_browser.py``, so no browser is downloaded. The study is
``tests/test_report.py``'s (built once per session), with a Table 7 and opinion scores
added so that every section of the report is there.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from advqa.report import SECTION_IDS, write_report
from advqa.study import StudyDir
from tests.test_report import LBFGS, report_study  # noqa: F401  (the shared study fixture)

ARTIFACTS = Path(__file__).parent / "artifacts" / "report"
SIZES = [(1366, 768), (1920, 1080)]
TIMEOUT = 15_000  # ms, per wait



@pytest.fixture(scope="module")
def full_report(report_study, tmp_path_factory):  # noqa: F811
    """The study's report with every optional section: Table 7 and opinion scores added."""
    study = StudyDir(tmp_path_factory.mktemp("browser") / "study")
    shutil.copytree(report_study, study.path)
    study.applications.write_lbfgs(LBFGS)
    manifest = study.manifest()
    study.write_mos(pd.DataFrame({"id": manifest.id, "mos": [1 + i % 5 for i in
                                                             range(len(manifest))],
                                  "mos_std": 0.5, "n_ratings": 10}))
    return write_report(study)


def open_page(browser, report: Path, size: tuple[int, int]):
    """A page at ``size`` with the report loaded and its viewer drawn; and the list that
    collects console errors, warnings and uncaught exceptions."""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"{message.type}: {message.text}")
            if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.goto(report.resolve().as_uri())
    page.wait_for_selector("#viewer-diff[data-gain='10']", state="attached", timeout=TIMEOUT)
    return page, problems


def page_fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_report_reads_well_in_chromium(browser, full_report, size):
    page, problems = open_page(browser, full_report, size)
    try:
        assert page.evaluate("Array.from(document.querySelectorAll('section'), s => s.id)") \
            == list(SECTION_IDS)
        assert page_fits(page), page.evaluate("document.documentElement.scrollWidth")
        # The first screen holds the answer: the heading, the summary and the 50 % table.
        height = size[1]
        for selector in ("#visibility h2", "#visibility .answer", "#ranking-50 tbody tr"):
            box = page.locator(selector).first.bounding_box()
            assert box is not None and box["y"] + box["height"] <= height, selector
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = f"report-{size[0]}x{size[1]}"
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        page.screenshot(path=str(ARTIFACTS / f"{name}-full.png"), full_page=True)
        # Opened, the settings (the widest table: every grid setting) still fit.
        page.click("#settings-details summary")
        assert page.evaluate("document.getElementById('settings-details').open")
        assert page_fits(page)
        # At 4× zoom the viewer scrolls inside its own box.
        page.select_option("#viewer-zoom", "4")
        assert page_fits(page)
        assert problems == [], problems
    finally:
        page.close()


def test_the_viewer_flickers_amplifies_and_zooms(browser, full_report):
    page, problems = open_page(browser, full_report, SIZES[0])
    try:
        ae = page.locator("#viewer-ae")
        reference_src = page.get_attribute("#viewer-reference", "src")
        ae_src = ae.get_attribute("src")
        assert ae_src != reference_src and ae.get_attribute("data-showing") == "ae"
        page.click("#viewer-flicker")
        page.wait_for_selector("#viewer-ae[data-showing='reference']", timeout=TIMEOUT)
        assert ae.get_attribute("src") == reference_src
        page.wait_for_selector("#viewer-ae[data-showing='ae']", timeout=TIMEOUT)  # by itself
        assert ae.get_attribute("src") == ae_src
        page.click("#viewer-flicker")
        assert page.get_attribute("#viewer-flicker", "aria-pressed") == "false"
        assert ae.get_attribute("data-showing") == "ae"
        page.wait_for_timeout(1200)  # stopped: no more swaps
        assert ae.get_attribute("data-showing") == "ae"

        spread = """() => {
          const canvas = document.getElementById('viewer-diff');
          const data = canvas.getContext('2d').getImageData(0, 0, canvas.width,
                                                            canvas.height).data;
          let total = 0;
          for (let i = 0; i < data.length; i += 4) total += Math.abs(data[i] - 128);
          return [canvas.toDataURL(), total / (data.length / 4)];
        }"""
        times10, deviation10 = page.evaluate(spread)
        page.click(".viewer-gain[data-gain='50']")
        page.wait_for_selector("#viewer-diff[data-gain='50']", state="attached",
                               timeout=TIMEOUT)
        times50, deviation50 = page.evaluate(spread)
        assert times50 != times10 and deviation50 > deviation10 > 0

        width = page.evaluate("document.getElementById('viewer-ae').naturalWidth")
        assert page.evaluate("document.getElementById('viewer-ae').clientWidth") == width
        page.select_option("#viewer-zoom", "2")
        assert page.evaluate("document.getElementById('viewer-ae').clientWidth") == 2 * width
        assert page.evaluate("document.getElementById('viewer-diff').clientWidth") == 2 * width

        info = page.text_content("#viewer-info")
        page.select_option("#viewer-select", index=1)
        page.wait_for_function("text => document.getElementById('viewer-info').textContent "
                               "!== text", arg=info, timeout=TIMEOUT)
        assert ae.get_attribute("src") != ae_src
        page.screenshot(path=str(ARTIFACTS / "report-viewer-x50-zoom2.png"))
        assert problems == [], problems
    finally:
        page.close()


def cells(page, table: str, header: str) -> list[float]:
    """The ``data-v`` values of one column of a table, in the order shown."""
    return page.evaluate("""([table, header]) => {
      const element = document.getElementById(table);
      const column = Array.from(element.tHead.rows[0].cells)
        .findIndex(cell => cell.textContent === header);
      return Array.from(element.tBodies[0].rows, row => row.cells[column].dataset.v);
    }""", [table, header])


def test_clicking_a_header_sorts_the_table(browser, full_report):
    page, problems = open_page(browser, full_report, SIZES[0])
    try:
        header = page.locator("#ranking-50 thead th", has_text="PSNR")
        before = cells(page, "ranking-50", "PSNR")
        header.click()
        assert header.get_attribute("aria-sort") == "ascending"
        ascending = cells(page, "ranking-50", "PSNR")
        numbers = [float(v) for v in ascending if v]
        assert numbers == sorted(numbers) and ascending[len(numbers):] == [""] * (
            len(ascending) - len(numbers))  # missing values last
        header.click()
        assert header.get_attribute("aria-sort") == "descending"
        descending = [float(v) for v in cells(page, "ranking-50", "PSNR") if v]
        assert descending == sorted(numbers, reverse=True)
        assert sorted(before, key=str) == sorted(ascending, key=str)  # same rows
        # Strengths sort by value, not by their text ("2/255" after "1/255", before "0.1"…).
        page.locator("#cells thead th", has_text=re.compile("^strength$")).click()
        values = [float(v) for v in cells(page, "cells", "strength")]
        assert values == sorted(values) and not any(math.isnan(v) for v in values)
        assert problems == [], problems
    finally:
        page.close()


def test_console_errors_would_be_caught(browser, full_report, tmp_path):
    """The listener is not vacuous: an error and an exception injected into the page are."""
    broken = tmp_path / "broken.html"
    broken.write_text(full_report.read_text(encoding="utf-8").replace(
        "</body>", "<script>console.error('injected-error'); undefinedCall()</script></body>"),
        encoding="utf-8")
    page, problems = open_page(browser, broken, SIZES[0])
    page.close()
    assert any("injected-error" in line for line in problems), problems
    assert any("undefinedCall" in line for line in problems), problems
