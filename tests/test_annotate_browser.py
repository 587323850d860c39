"""The rating app end to end: a rater in headless Chromium scores a study of two sets.

Debian's ``chromium`` is driven through Playwright's Python client (``executable_path``),
so no browser is downloaded. What is checked is what a rater sees — the reference and its
AEs only, at native pixel size — what gets stored, resuming after a reload, and the export.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from advqa.data import save_png
from advqa.study.build import MANIFEST_COLUMNS

ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
# Two references of different (width, height), with 3 and 2 AEs of the same size.
SETS = {"tall": ((80, 120), 3), "wide": ((96, 64), 2)}
TIMEOUT = 15_000  # ms, per wait
# Item-id endings that mean something in a URL (fragment, query, escape).
ODD = ("#1", "?x=2&y", "\\3")


@pytest.fixture(scope="session")
def browser(chromium):
    if importlib.util.find_spec("playwright") is None:
        pytest.fail("the Playwright Python client is missing: "
                    "pip install 'playwright>=1.40' (it is in advqa's `test` extra); "
                    "do not run `playwright install`, Debian's chromium is used")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        yield browser
        browser.close()


def css_string(text: str) -> str:
    """``text`` quoted for a CSS attribute selector."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_study(root: Path, *, odd: bool = False) -> tuple[Path, dict[str, str]]:
    """Write a fake study; return it and each AE's reference name.

    With ``odd``, item ids (and file names) end in characters that mean something in a URL.
    """
    generator = torch.Generator().manual_seed(0)
    rows, owner = [], {}
    for name, ((width, height), count) in SETS.items():
        reference = f"images/ref/{name}.png"
        (root / "images/ref").mkdir(parents=True, exist_ok=True)
        (root / "images/adv").mkdir(parents=True, exist_ok=True)
        save_png(torch.rand(3, height, width, generator=generator), root / reference)
        for index in range(count):
            identifier = f"{name}-ae{index}" + (ODD[index] if odd else "")
            adversarial = f"images/adv/{identifier}.png"
            save_png(torch.rand(3, height, width, generator=generator), root / adversarial)
            owner[identifier] = name
            rows.append({
                "id": identifier, "reference_path": reference, "adversarial_path": adversarial,
                "image": name, "attack": "fgsm", "norm": "linf", "strength_name": "eps",
                "strength": 2 / 255 * (index + 1), "parameters": "{}", "label": 1,
                "clean_prediction": 1, "adversarial_prediction": 2, "clean_class": "a",
                "adversarial_class": "b", "clean_correct": True, "success": True,
                "l0": 1.0, "l1": 1.0, "l2": 1.0, "linf": 1.0, "steps": 1})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest.to_parquet(root / "manifest.parquet", index=False)
    return root, owner


@pytest.fixture
def server(tmp_path):
    """The app on a free loopback port (uvicorn in a thread); yields (url, study, db, owner)."""
    study, owner = make_study(tmp_path / "study")
    database = tmp_path / "ratings.sqlite"
    with serving(study, database) as url:
        yield url, study, database, owner


@contextlib.contextmanager
def serving(study: Path, database: Path):
    import uvicorn

    from advqa.annotate.app import create_app

    app = create_app(study, database)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(10)
        listener.close()


def invite(database: Path, n: int = 1) -> list[str]:
    from advqa.annotate.store import RatingStore

    store = RatingStore(database)
    try:
        return store.invite(n)
    finally:
        store.close()


def stored(database: Path) -> pd.DataFrame:
    from advqa.annotate.store import RatingStore

    store = RatingStore(database)
    try:
        return store.ratings()
    finally:
        store.close()


def watch(page) -> list[str]:
    """Collect console errors, uncaught exceptions and failed requests of a page."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text} ({m.location.get('url')})")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url} {r.failure}"))
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    return errors


def shown_set(page, study: Path, owner: dict[str, str]) -> tuple[str, list[str]]:
    """The set on screen: its reference's name and its AE ids; checks what is shown."""
    page.wait_for_selector(".item[data-item-id] img", timeout=TIMEOUT)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#reference img, .item img')]"
        ".every(i => i.complete && i.naturalWidth > 0)", timeout=TIMEOUT)
    items = page.eval_on_selector_all(".item[data-item-id]",
                                      "els => els.map(e => e.dataset.itemId)")
    assert items and len(set(items)) == len(items), items
    assert all(item in owner for item in items), items
    references = {owner[item] for item in items}
    assert len(references) == 1, f"AEs of several references on one screen: {items}"
    (name,) = references
    assert sorted(items) == sorted(i for i, r in owner.items() if r == name), items
    assert len(items) <= 5
    width, height = SETS[name][0]
    sizes = page.eval_on_selector_all(
        "#reference img, .item img",
        "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight, i.clientWidth,"
        " i.clientHeight, i.getBoundingClientRect().width, i.getBoundingClientRect().height,"
        " i.getAttribute('src')])")
    assert len(sizes) == len(items) + 1, sizes
    for natural_w, natural_h, client_w, client_h, box_w, box_h, _ in sizes:
        # Native size: the PNG's pixels, and shown with exactly that many CSS pixels.
        assert (natural_w, natural_h) == (width, height), sizes
        assert (client_w, client_h) == (natural_w, natural_h), sizes
        assert (box_w, box_h) == (natural_w, natural_h), sizes
    # Images come from the app's own image routes (no file paths, no other host).
    sources = [s[-1] for s in sizes]
    assert all(s.startswith("/images/") for s in sources), sources
    # The reference is on the left of every AE.
    boxes = page.eval_on_selector_all(
        "#reference img, .item img", "imgs => imgs.map(i => i.getBoundingClientRect().left)")
    assert all(boxes[0] < left for left in boxes[1:]), boxes
    # Pixel for pixel what is on screen is the PNG: the reference shown is this set's
    # reference, and each AE is the AE of its item id, unscaled and unfiltered.
    expected = {"#reference img": study / f"images/ref/{name}.png"} | {
        f".item[data-item-id={css_string(item)}] img": study / f"images/adv/{item}.png"
        for item in items}
    screen = np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB"))
    for selector, path in expected.items():
        box = page.eval_on_selector(
            selector, "i => { const r = i.getBoundingClientRect();"
            " return [r.left + window.scrollX, r.top + window.scrollY]; }")
        left, top = (round(v) for v in box)
        png = np.asarray(Image.open(path).convert("RGB"))
        shown = screen[top:top + png.shape[0], left:left + png.shape[1]]
        assert np.array_equal(shown, png), (selector, path.name, box)
    return name, items


def score_for(item: str) -> int:
    return 1 + sum(map(ord, item)) % 5


def rate(page, items: list[str]) -> None:
    for item in items:
        page.check(f'input[name={css_string("score-" + item)}][value="{score_for(item)}"]')


def progress(page) -> tuple[int, int]:
    text = page.inner_text("#progress")
    done, total = (int(part) for part in text.replace(" ", "").split("/")[:2])
    return done, total


def wait_progress(page, done: int, total: int) -> None:
    page.wait_for_function(
        "([d, t]) => { const p = document.querySelector('#progress');"
        " return p && p.textContent.replace(/\\s/g, '').startsWith(d + '/' + t); }",
        arg=[done, total], timeout=TIMEOUT)


def test_rater_scores_two_sets_resumes_and_exports(server, browser, tmp_path):
    url, study, database, owner = server
    (token,) = invite(database)
    total = len(owner)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = watch(page)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{url}/?token={token}")

    first, items = shown_set(page, study, owner)
    # The link's token went into an HttpOnly cookie: the page's URL, its scripts and
    # every later request are free of it.
    assert page.url == f"{url}/" and page.evaluate("document.cookie") == ""
    assert requested[0] == f"{url}/?token={token}"
    assert not [u for u in requested[1:] if "token" in u or token in u], requested
    wait_progress(page, 0, total)
    assert not page.is_visible("#finished")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "annotate.png"), full_page=True)
    rate(page, items)
    page.click("#submit")
    wait_progress(page, len(items), total)

    second, items2 = shown_set(page, study, owner)
    assert second != first
    ratings = stored(database)
    assert len(ratings) == len(items)
    assert dict(zip(ratings.item_id, ratings.score, strict=True)) == {
        i: score_for(i) for i in items}

    # Stop and come back: a reload resumes at the second set, progress intact.
    page.reload()
    again, items3 = shown_set(page, study, owner)
    assert again == second and sorted(items3) == sorted(items2)
    wait_progress(page, len(items), total)
    assert not page.is_visible("#finished")
    rate(page, items3)
    page.click("#submit")
    page.wait_for_selector("#finished", state="visible", timeout=TIMEOUT)
    wait_progress(page, total, total)
    assert page.locator(".item[data-item-id]:visible").count() == 0
    page.screenshot(path=str(ARTIFACTS / "annotate-finished.png"), full_page=True)

    # A finished rater who comes back sees the end screen, not the sets again.
    page.goto(f"{url}/?token={token}")
    page.wait_for_selector("#finished", state="visible", timeout=TIMEOUT)
    assert errors == [], errors
    context.close()

    ratings = stored(database)
    assert len(ratings) == total and ratings.item_id.is_unique
    assert ratings.rater.nunique() == 1
    assert dict(zip(ratings.item_id, ratings.score, strict=True)) == {
        i: score_for(i) for i in owner}

    from advqa.annotate.export import export_mos

    out = tmp_path / "mos.csv"
    export_mos(database, out, manifest=study / "manifest.parquet")
    mos = pd.read_csv(out)
    assert list(mos.columns[:5]) == ["item_id", "mos", "std", "ci95", "n"]
    assert sorted(mos.item_id) == sorted(owner)
    for row in mos.itertuples():
        assert row.mos == score_for(row.item_id), row
        assert row.n == 1, row
    filled = pd.read_parquet(study / "mos.parquet").set_index("id")
    assert {i: filled.at[i, "mos"] for i in owner} == {i: score_for(i) for i in owner}
    assert (filled.loc[list(owner), "n_ratings"] == 1).all()


def test_two_raters_do_not_see_each_other(server, browser):
    """A second rater starts from zero after the first has scored (no pre-filled scores),
    and the page of an unknown token shows a message and no set."""
    url, study, database, owner = server
    first, second = invite(database, 2)
    context = browser.new_context()
    page = context.new_page()
    errors = watch(page)
    page.goto(f"{url}/?token={first}")
    _, items = shown_set(page, study, owner)
    rate(page, items)
    page.click("#submit")
    wait_progress(page, len(items), len(owner))

    other = context.new_page()
    other_errors = watch(other)
    other.goto(f"{url}/?token={second}")
    shown_set(other, study, owner)
    wait_progress(other, 0, len(owner))
    checked = other.eval_on_selector_all("input[type=radio]:checked", "els => els.length")
    assert checked == 0, "the second rater sees pre-filled scores"
    # A link with an unknown token shows a message and no set.
    stranger = context.new_page()
    stranger.goto(f"{url}/?token=not-a-token")
    stranger.wait_for_selector("#message", state="visible", timeout=TIMEOUT)
    assert "unknown token" in stranger.inner_text("#message").lower()
    assert stranger.locator(".item").count() == 0
    assert not stranger.is_visible("#study") and not stranger.is_visible("#finished")
    assert errors == [] and other_errors == [], (errors, other_errors)
    context.close()
    ratings = stored(database)
    assert ratings.rater.nunique() == 1 and len(ratings) == len(items)


def test_odd_ids_load_and_a_broken_image_cannot_be_rated(browser, tmp_path):
    from advqa.annotate.app import Study

    study, owner = make_study(tmp_path / "study", odd=True)
    database = tmp_path / "ratings.sqlite"
    first, second = invite(database, 2)
    with serving(study, database) as url:
        # Ids ending in '#1', '?x=2&y' and '\\3': every image is the right one, scored.
        context = browser.new_context()
        page = context.new_page()
        errors = watch(page)
        page.goto(f"{url}/?token={first}")
        _, items = shown_set(page, study, owner)
        rate(page, items)
        page.click("#submit")
        wait_progress(page, len(items), len(owner))
        _, items = shown_set(page, study, owner)
        rate(page, items)
        page.click("#submit")
        page.wait_for_selector("#finished", state="visible", timeout=TIMEOUT)
        assert errors == [], errors
        ratings = stored(database)
        assert dict(zip(ratings.item_id, ratings.score, strict=True)) == {
            item: score_for(item) for item in owner}
        context.close()

        # An AE of the second rater's first set goes missing after start-up.
        shown = Study(study).sets(second)[0]
        broken = shown[0]
        (study / f"images/adv/{broken}.png").unlink()
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/?token={second}")
        page.wait_for_selector(".item[data-failed=true]", timeout=TIMEOUT)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.item:not([data-failed]) img,"
            " #reference img')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=TIMEOUT)
        message = page.inner_text("#message")
        assert "Image" in message and "could not be loaded" in message
        radios = page.locator(f'input[name={css_string("score-" + broken)}]')
        assert radios.count() == 5
        assert all(radios.nth(index).is_disabled() for index in range(5))
        for item in shown[1:]:
            radio = f'input[name={css_string("score-" + item)}][value="2"]'
            page.check(radio)
            assert page.is_checked(radio)
        assert page.is_disabled("#submit"), "a set with a missing image can be submitted"
        assert page.locator(f'input[name={css_string("score-" + broken)}]:checked').count() == 0
        context.close()
    assert set(stored(database).rater) == {"rater-001"}  # nothing stored for the second
