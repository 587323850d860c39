"""The rating page end to end: raters in headless Chromium go through a whole session.

Debian's ``chromium`` is driven through Playwright's Python client (``executable_path``),
so no browser is downloaded. What is checked is what a rater sees at 1366×768, 1920×1080
and on a HiDPI screen (devicePixelRatio 2): the reference and the test image fully in
view at every trial, their pixels on screen equal to the PNGs served, no page scrolling;
then the keyboard, the training anchors (not exported), the flicker view, progress with
the time left, the break reminder, the per-rater order, resuming, and the export.
Screenshots go to ``tests/artifacts/annotate/``.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from advqa.study.build import MANIFEST_COLUMNS

ARTIFACTS = Path(__file__).parent / "artifacts" / "annotate"
# Three references of different (width, height) and their AEs' L∞ strengths (/255):
# 7 items, of which "lake" at 24/255 is the most visible.
SETS = {"lake": ((224, 224), (2, 8, 24)), "city": ((256, 192), (4, 16)),
        "tower": ((192, 256), (3, 12))}
TIMEOUT = 15_000  # ms, per wait
# Item-id endings that mean something in a URL (fragment, query, escape).
ODD = ("#1", "?x=2&y", "\\3")
# Training scores: the strongest anchor gets 5, which no study item gets (score_for).
TRAINING_SCORES = {"identical": 1, "strongest": 5, "practice": 3}
SHOWN = ("#reference img", ".item img.test")
VIEWPORTS = [(1366, 768, 1), (1920, 1080, 1), (1366, 768, 2)]



def css_string(text: str) -> str:
    """``text`` quoted for a CSS attribute selector."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scene(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth photo-like test image: colour gradients and flat discs (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    side = max(width, height)
    y, x = np.mgrid[0:height, 0:width] / side
    image = np.stack([0.55 + 0.35 * np.sin(5 * x + seed), 0.5 + 0.3 * np.cos(4 * y + 2 * seed),
                      0.45 + 0.3 * np.sin(3 * (x + y) + seed)], -1)
    for _ in range(6):
        (cx, cy), radius = rng.uniform(0, 1, 2), rng.uniform(0.06, 0.2)
        image[(x - cx * width / side) ** 2 + (y - cy * height / side) ** 2 < radius ** 2] = \
            rng.uniform(0.1, 0.95, 3)
    return (image * 255).round().clip(0, 255).astype(np.uint8)


def make_study(root: Path, *, odd: bool = False, sets: dict = SETS,
               ) -> tuple[Path, dict[str, str]]:
    """Write a fake study of smooth images and ±ε noise AEs; return it and each AE's
    reference name. With ``odd``, ids (and file names) end in URL syntax."""
    (root / "images/ref").mkdir(parents=True, exist_ok=True)
    (root / "images/adv").mkdir(parents=True, exist_ok=True)
    rows, owner = [], {}
    for seed, (name, ((width, height), strengths)) in enumerate(sets.items()):
        reference = scene(width, height, seed)
        Image.fromarray(reference).save(root / f"images/ref/{name}.png")
        rng = np.random.default_rng(100 + seed)
        for index, strength in enumerate(strengths):
            identifier = f"{name}-ae{index}" + (ODD[index] if odd else "")
            noise = strength * rng.choice([-1, 1], reference.shape)
            adversarial = (reference.astype(int) + noise).clip(0, 255).astype(np.uint8)
            Image.fromarray(adversarial).save(root / f"images/adv/{identifier}.png")
            owner[identifier] = name
            rows.append({
                "id": identifier, "reference_path": f"images/ref/{name}.png",
                "adversarial_path": f"images/adv/{identifier}.png", "image": name,
                "attack": "pgd", "norm": "linf", "strength_name": "eps",
                "strength": strength / 255, "parameters": "{}", "label": 1,
                "clean_prediction": 1, "adversarial_prediction": 2, "clean_class": "a",
                "adversarial_class": "b", "clean_correct": True, "success": True,
                "l0": 1.0, "l1": 1.0, "l2": 1.0, "linf": strength / 255, "steps": 1})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest.to_parquet(root / "manifest.parquet", index=False)
    return root, owner


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One study for the tests that do not change its files."""
    return make_study(tmp_path_factory.mktemp("annotate") / "study")


@contextlib.contextmanager
def serving(study: Path, database: Path, **options):
    """The app (``create_app`` options) on a free loopback port, uvicorn in a thread."""
    import uvicorn

    from advqa.annotate.app import create_app

    app = create_app(study, database, **options)
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

    with RatingStore(database) as store:
        return store.invite(n)


def stored(database: Path, table: str = "ratings") -> pd.DataFrame:
    """``ratings``, ``training_ratings`` or ``rating_context`` of the database."""
    from advqa.annotate.store import RatingStore

    with RatingStore(database) as store:
        return getattr(store, table)()


def order(study: Path, rater: str) -> list[str]:
    from advqa.annotate.app import Study

    return Study(study).order(rater)


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


def score_for(item: str) -> int:
    """The score a test rater gives an item: 1–4, never the training's 5."""
    return 1 + sum(map(ord, item)) % 4


def open_link(page, url: str, token: str) -> None:
    """Open the invitation link and pass the instructions, if they are shown."""
    page.goto(f"{url}/?token={token}")
    page.wait_for_function(
        "() => ['intro', 'rating', 'finished'].includes(document.body.dataset.phase)",
        timeout=TIMEOUT)
    if page.evaluate("document.body.dataset.phase") == "intro":
        page.keyboard.press("Enter")


def wait_trial(page) -> tuple[str, str]:
    """Wait until a trial can be scored; ``("training", anchor)`` or ``("item", id)``."""
    page.wait_for_function(
        "() => { const s = [...document.querySelectorAll('#reference img, .item img.test')];"
        " return s.length === 2 && s.every(i => i.complete && i.naturalWidth > 0)"
        " && !document.querySelector('button.score').disabled; }", timeout=TIMEOUT)
    item = page.eval_on_selector(".item", "e => [e.dataset.anchor, e.dataset.itemId]")
    return ("training", item[0]) if item[0] else ("item", item[1])


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def check_native(page, url: str, selector: str) -> np.ndarray:
    """The element screenshot (device pixels) of ``selector`` equals the PNG it shows;
    its CSS size is its pixel size / devicePixelRatio. Returns the PNG's pixels."""
    source = page.eval_on_selector(selector, "i => i.getAttribute('src')")
    assert source.startswith("/images/"), source  # the app's own routes, no file path
    served = decoded(page.request.get(url + source).body())
    box = page.eval_on_selector(selector, "i => { const r = i.getBoundingClientRect();"
                                " return [r.width, r.height, i.naturalWidth, i.naturalHeight,"
                                " window.devicePixelRatio]; }")
    width, height, natural_width, natural_height, ratio = box
    assert (natural_width, natural_height) == (served.shape[1], served.shape[0]), box
    assert (width * ratio, height * ratio) == (natural_width, natural_height), box
    shown = decoded(page.locator(selector).screenshot(scale="device"))
    assert shown.shape == served.shape, (selector, shown.shape, served.shape)
    assert np.abs(shown - served).max() <= 1, (selector, source)
    return served


def check_trial(page, url: str) -> None:
    """What a trial must look like: both images fully in view at native device pixels,
    no sideways scrolling, not scrolled down."""
    view = page.evaluate("[innerWidth, innerHeight, scrollX, scrollY,"
                         " document.documentElement.scrollWidth]")
    inner_width, inner_height, scroll_x, scroll_y, scroll_width = view
    assert scroll_width <= inner_width, view
    assert scroll_x == 0 and scroll_y == 0, view
    for selector in SHOWN:
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["y"] >= 0, (selector, box, view)
        assert box["x"] + box["width"] <= inner_width, (selector, box, view)
        assert box["y"] + box["height"] <= inner_height, (selector, box, view)
        check_native(page, url, selector)
    reference, test = (page.locator(selector).bounding_box() for selector in SHOWN)
    assert reference["x"] + reference["width"] <= test["x"], "the reference is not left"


def session(page, url: str, *, check=check_trial, shoot: str | None = None,
            on_item=None) -> list[tuple[str, str]]:
    """Rate every trial with the keys 1–5 until the end screen; the trials in order.

    ``check(page, url)`` runs at every trial; ``on_item(page, done)`` after each study
    item is scored. With ``shoot``, the first training and study trials are saved as
    ``training-<shoot>.png`` and ``rating-<shoot>.png``.
    """
    seen: list[tuple[str, str]] = []
    while True:
        page.wait_for_function(
            "() => ['training', 'rating', 'between', 'finished']"
            ".includes(document.body.dataset.phase)", timeout=TIMEOUT)
        phase = page.evaluate("document.body.dataset.phase")
        if phase == "finished":
            return seen
        if phase == "between":
            page.keyboard.press("Enter")
            continue
        kind, key = wait_trial(page)
        check(page, url)
        if shoot and kind not in {k for k, _ in seen}:
            page.screenshot(path=str(ARTIFACTS / f"{kind.replace('item', 'rating')}-"
                                                 f"{shoot}.png"))
        seen.append((kind, key))
        before = page.inner_text("#progress")
        page.keyboard.press(str(TRAINING_SCORES[key] if kind == "training" else score_for(key)))
        if kind == "item":
            page.wait_for_function("b => document.querySelector('#progress').textContent !== b",
                                   arg=before, timeout=TIMEOUT)
            if on_item is not None:
                on_item(page, sum(k == "item" for k, _ in seen))
        else:
            wait_next_anchor(page, key)


def wait_next_anchor(page, anchor: str) -> None:
    """Wait until the training trial ``anchor`` is scored and gone."""
    page.wait_for_function("a => document.querySelector('.item').dataset.anchor !== a"
                           " || document.body.dataset.phase !== 'training'", arg=anchor,
                           timeout=TIMEOUT)


def pause_clock(page, seconds: float) -> None:
    """Move the page's clock (``page.clock.install()``) on by ``seconds`` and stop it."""
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + seconds)  # in seconds


def progress(page) -> tuple[int, int]:
    done, total = page.inner_text("#progress").replace(" ", "").split("/")
    return int(done), int(total)


@pytest.fixture(scope="module", autouse=True)
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize(("width", "height", "ratio"), VIEWPORTS,
                         ids=[f"{w}x{h}@{r}x" for w, h, r in VIEWPORTS])
def test_a_whole_session_at_native_device_pixels(study, browser, tmp_path, width, height,
                                                  ratio):
    """Training anchors, then every item, rated from the keyboard: at every trial both
    images are fully in view, pixel for pixel the PNGs; progress shows the time left;
    training scores are never exported."""
    study, owner = study
    database = tmp_path / "ratings.sqlite"
    (token,) = invite(database)
    name = f"{width}x{height}" + ("" if ratio == 1 else f"@{ratio}x")
    estimates: list[tuple[tuple[int, int], str]] = []
    with serving(study, database) as url:
        context = browser.new_context(viewport={"width": width, "height": height},
                                      device_scale_factor=ratio)
        page = context.new_page()
        errors = watch(page)
        page.goto(f"{url}/?token={token}")
        page.wait_for_selector("#interlude-go", state="visible", timeout=TIMEOUT)
        assert page.url == f"{url}/" and page.evaluate("document.cookie") == ""
        assert progress(page) == (0, len(owner))
        if ratio == 1:
            page.screenshot(path=str(ARTIFACTS / f"intro-{name}.png"))
        page.keyboard.press("Enter")
        seen = session(page, url, shoot=name, on_item=lambda page, done: estimates.append(
            (progress(page), page.inner_text("#eta"))))
        page.wait_for_selector("#finished", state="visible", timeout=TIMEOUT)
        assert progress(page) == (len(owner), len(owner))
        if ratio == 1:
            page.screenshot(path=str(ARTIFACTS / f"finished-{name}.png"))
        assert errors == [], errors
        context.close()

    # The anchors first (the identical pair, the most visible AE, a middle one), then the
    # study's items in this rater's order: the same for rater-001 at every viewport.
    assert seen[:3] == [("training", "identical"), ("training", "strongest"),
                        ("training", "practice")]
    assert [key for kind, key in seen[3:]] == order(study, "rater-001")
    assert len(seen) == 3 + len(owner) >= 6 + 3
    # Progress is done / total with an estimate of the time left after 3 ratings.
    assert [done for (done, _), _ in estimates] == list(range(1, len(owner) + 1))
    for (done, total), eta in estimates:
        assert total == len(owner)
        if 3 <= done < total:
            assert re.fullmatch(r"(about \d+ min|less than a minute) left", eta), eta
        elif done < 3:
            assert eta == "", eta
    # Training scores are kept apart from the data and never exported.
    training = stored(database, "training_ratings")
    assert dict(zip(training.anchor, training.score, strict=True)) == TRAINING_SCORES
    assert training.set_index("anchor").at["strongest", "item_id"] == "lake-ae2"
    ratings = stored(database)
    assert dict(zip(ratings.item_id, ratings.score, strict=True)) == {
        item: score_for(item) for item in owner}
    from advqa.annotate.export import export_mos

    mos = export_mos(database, tmp_path / "mos.csv", screen=False).table
    assert dict(zip(mos.item_id, mos.mos, strict=True)) == {
        item: score_for(item) for item in owner}
    assert (mos.n == 1).all() and 5 not in set(mos.mos)


def test_flicker_back_resume_and_per_rater_order(study, browser, tmp_path):
    """Flicker swaps the test image for the reference in place; ← re-rates; a reload
    continues in the same order; another rater gets another order."""
    study, owner = study
    database = tmp_path / "ratings.sqlite"
    first, second = invite(database, 2)
    with serving(study, database) as url:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page = context.new_page()
        errors = watch(page)
        page.clock.install()
        open_link(page, url, first)
        for _ in range(3):  # the training
            kind, anchor = wait_trial(page)
            page.keyboard.press(str(TRAINING_SCORES[anchor]))
            wait_next_anchor(page, anchor)
        page.wait_for_selector("#interlude-go", state="visible", timeout=TIMEOUT)
        page.screenshot(path=str(ARTIFACTS / "between-1366x768.png"))
        page.keyboard.press("Enter")
        expected = order(study, "rater-001")
        kind, item = wait_trial(page)
        assert (kind, item) == ("item", expected[0])

        # Flicker, with the page's clock paused: on, the reference is shown in place of
        # the test image; one period later the test image again; off, the test image.
        pause_clock(page, 1)
        page.keyboard.press("f")
        assert page.get_attribute("#flicker", "aria-pressed") == "true"
        assert page.get_attribute(".item", "data-showing") == "reference"
        assert page.is_hidden(".item img.test")
        reference = check_native(page, url, "#reference img")
        in_place = check_native(page, url, ".item img.flicker-reference")
        assert np.array_equal(reference, in_place)
        boxes = [page.locator(s).bounding_box() for s in (".item img.flicker-reference",
                                                           ".item .frame")]
        assert boxes[0]["x"] == boxes[1]["x"] and boxes[0]["y"] == boxes[1]["y"]
        page.screenshot(path=str(ARTIFACTS / "flicker-1366x768.png"))
        page.clock.run_for(400)
        assert page.get_attribute(".item", "data-showing") == "test"
        assert not np.array_equal(check_native(page, url, ".item img.test"), reference)
        page.clock.run_for(400)
        assert page.get_attribute(".item", "data-showing") == "reference"
        page.keyboard.press("f")
        assert page.get_attribute(".item", "data-showing") == "test"
        assert page.is_hidden(".item img.flicker-reference")
        page.clock.resume()
        page.keyboard.press(str(score_for(item)))
        kind, second_item = wait_trial(page)
        assert second_item == expected[1] and progress(page)[0] == 1
        page.keyboard.press(str(score_for(second_item)))
        wait_trial(page)
        assert progress(page)[0] == 2

        # ← goes back to the previous item, its score marked; a new key replaces it.
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("i => document.querySelector('.item').dataset.itemId === i",
                               arg=second_item, timeout=TIMEOUT)
        wait_trial(page)
        assert page.get_attribute("button.score.chosen", "data-score") == str(
            score_for(second_item))
        page.keyboard.press("5")
        kind, third = wait_trial(page)
        assert third == expected[2] and progress(page)[0] == 2  # re-rated, not counted

        # A reload continues at the first unrated item, without the instructions.
        page.reload()
        page.wait_for_function("() => document.body.dataset.phase === 'rating'",
                               timeout=TIMEOUT)
        assert wait_trial(page) == ("item", expected[2])
        assert progress(page) == (2, len(owner))
        check_trial(page, url)
        assert errors == [], errors
        context.close()

        ratings = stored(database).set_index("item_id")
        assert ratings.score.to_dict() == {item: score_for(item), second_item: 5}
        context_rows = stored(database, "rating_context").set_index("item_id")
        assert context_rows.flicker.to_dict() == {item: True, second_item: False}
        assert (context_rows.response_ms >= 0).all()

        # The second rater: another order, all of it, shown as Study.order says.
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page = context.new_page()
        errors = watch(page)
        open_link(page, url, second)
        assert page.evaluate("document.querySelectorAll('button.score.chosen').length") == 0
        seen = session(page, url, check=lambda page, url: None)
        assert errors == [], errors
        context.close()
    other = [key for kind, key in seen if kind == "item"]
    assert other == order(study, "rater-002") and sorted(other) == sorted(owner)
    assert other != expected and order(study, "rater-001") == expected


def test_break_reminder(study, browser, tmp_path):
    """With a break every 0.01 min (0.6 s), the reminder comes at the next trial once
    that time has passed (the page's clock is moved on, not waited for), stops scoring
    until Continue, and the timer starts again after it."""
    study, owner = study
    database = tmp_path / "ratings.sqlite"
    (token,) = invite(database)
    with serving(study, database, break_minutes=0.01, training=False) as url:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page = context.new_page()
        errors = watch(page)
        page.clock.install()
        open_link(page, url, token)
        _, item = wait_trial(page)
        pause_clock(page, 1)  # 1 s later, and paused
        page.keyboard.press(str(score_for(item)))
        page.wait_for_selector("#break", state="visible", timeout=TIMEOUT)
        assert "second" in page.inner_text("#break-minutes")
        page.screenshot(path=str(ARTIFACTS / "break-1366x768.png"))
        page.keyboard.press("3")  # no score while the reminder is up
        assert page.is_visible("#break") and len(stored(database)) == 1
        page.keyboard.press("Enter")
        page.wait_for_selector("#break", state="hidden", timeout=TIMEOUT)
        _, following = wait_trial(page)
        assert following != item and progress(page) == (1, len(owner))
        page.keyboard.press(str(score_for(following)))  # at once: no reminder
        wait_trial(page)
        assert page.is_hidden("#break") and progress(page)[0] == 2
        assert errors == [], errors
        context.close()
    assert len(stored(database)) == 2 and stored(database, "training_ratings").empty


def test_two_raters_do_not_see_each_other(study, browser, tmp_path):
    """A second rater starts from zero after the first has scored (no pre-filled scores),
    and the page of an unknown token shows a message and nothing to rate."""
    study, owner = study
    database = tmp_path / "ratings.sqlite"
    first, second = invite(database, 2)
    with serving(study, database, training=False) as url:
        context = browser.new_context()
        page = context.new_page()
        errors = watch(page)
        open_link(page, url, first)
        _, item = wait_trial(page)
        page.keyboard.press("4")
        wait_trial(page)
        assert progress(page) == (1, len(owner))

        other = context.new_page()
        other_errors = watch(other)
        open_link(other, url, second)
        wait_trial(other)
        assert progress(other) == (0, len(owner))
        assert other.evaluate("document.querySelectorAll('button.score.chosen').length") == 0
        stranger = context.new_page()
        stranger.goto(f"{url}/?token=not-a-token")
        stranger.wait_for_selector("#message", state="visible", timeout=TIMEOUT)
        assert "unknown token" in stranger.inner_text("#message").lower()
        assert stranger.locator(".item img").count() == 0
        assert not stranger.is_visible("#study") and not stranger.is_visible("#finished")
        assert errors == [] and other_errors == [], (errors, other_errors)
        context.close()
    ratings = stored(database)
    assert ratings.rater.tolist() == ["rater-001"] and ratings.item_id.tolist() == [item]


def test_odd_ids_load_and_a_broken_image_cannot_be_rated(browser, tmp_path):
    study, owner = make_study(tmp_path / "study", odd=True)
    database = tmp_path / "ratings.sqlite"
    first, second = invite(database, 2)
    with serving(study, database, training=False) as url:
        # Ids ending in '#1', '?x=2&y' and '\\3': every image is the right one, scored.
        context = browser.new_context()
        page = context.new_page()
        errors = watch(page)
        open_link(page, url, first)

        def right_images(page, url):
            _, item = wait_trial(page)
            owned = owner[item]
            assert np.array_equal(check_native(page, url, ".item img.test"),
                                  decoded((study / f"images/adv/{item}.png").read_bytes()))
            assert np.array_equal(check_native(page, url, "#reference img"),
                                  decoded((study / f"images/ref/{owned}.png").read_bytes()))

        seen = session(page, url, check=right_images)
        assert errors == [], errors
        assert dict(zip(stored(database).item_id, stored(database).score, strict=True)) == {
            item: score_for(item) for item in owner}
        assert sorted(key for _, key in seen) == sorted(owner)
        context.close()

        # The second rater's first AE goes missing after start-up.
        broken = order(study, "rater-002")[0]
        (study / f"images/adv/{broken}.png").unlink()
        context = browser.new_context()
        page = context.new_page()
        open_link(page, url, second)
        page.wait_for_selector(".item[data-failed=true]", timeout=TIMEOUT)
        assert page.get_attribute(".item", "data-item-id") == broken
        message = page.inner_text("#message")
        assert "test image" in message and "could not be loaded" in message
        assert all(page.locator("button.score").nth(i).is_disabled() for i in range(5))
        page.keyboard.press("2")
        page.wait_for_timeout(200)
        assert page.get_attribute(".item", "data-item-id") == broken
        context.close()
    assert set(stored(database).rater) == {"rater-001"}  # nothing stored for the second


def test_images_too_wide_side_by_side_are_stacked_not_scaled(browser, tmp_path):
    """Two 900 px wide images do not fit side by side at 1366×768: the test image goes
    under the reference, both still whole, in view and unscaled; no warning."""
    study, _ = make_study(tmp_path / "study", sets={"wide": ((900, 200), (20,))})
    database = tmp_path / "ratings.sqlite"
    (token,) = invite(database)
    with serving(study, database, training=False) as url:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page = context.new_page()
        errors = watch(page)
        open_link(page, url, token)
        wait_trial(page)
        assert page.get_attribute("#stage", "class") == "stacked"
        assert page.is_hidden("#fit-warning")
        reference, test = (page.locator(selector).bounding_box() for selector in SHOWN)
        assert reference["y"] + reference["height"] <= test["y"]
        for selector in SHOWN:
            box = page.locator(selector).bounding_box()
            assert box["y"] + box["height"] <= 768 and box["x"] + box["width"] <= 1366
            check_native(page, url, selector)
        page.screenshot(path=str(ARTIFACTS / "stacked-1366x768.png"))
        assert errors == [], errors
        context.close()
