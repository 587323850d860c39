"""Shared fixtures: a tiny seeded CNN for fast exact checks, and the real default model."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """A small CIFAR-sized CNN; random but seeded, enough for exact comparisons."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(16 * 16, classes)

    def forward(self, images):
        return self.head(self.features(images - 0.5).flatten(1))


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="session")
def tiny_batch(tiny_model):
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 16, 16, generator=generator)
    with torch.no_grad():
        labels = tiny_model(images).argmax(1)
    return images, labels


@pytest.fixture(scope="session")
def default_model():
    from advqa.models import load_classifier

    return load_classifier("efficientnet-lite0", device="cpu")


@pytest.fixture(scope="session")
def imagenet_batch(default_model):
    """The 20 labelled ImageNet samples, preprocessed for the default model."""
    from advqa.data import load_samples, preprocess, quantize

    samples = load_samples("imagenet")
    info = default_model.info
    images = quantize(preprocess(samples, size=info.input_size, resize=info.resize_size))
    return images, torch.tensor(samples.labels)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Caches (metric ranges) go to a fresh folder, never the user's ~/.cache."""
    os.environ["ADVQA_CACHE_DIR"] = str(tmp_path_factory.mktemp("advqa-cache"))


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium, installed with apt-get (sudo -n when not root) if missing."""
    if not CHROMIUM.exists():
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            result = subprocess.run(sudo + command, capture_output=True, text=True,
                                    env=environment)
            if result.returncode:
                pytest.fail(f"could not install Chromium ({' '.join(command)}): "
                            f"{result.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail("apt-get install chromium succeeded but /usr/bin/chromium is missing")
    return CHROMIUM


#: How every browser test starts Debian's Chromium through Playwright.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


@pytest.fixture(scope="module")
def browser(chromium):
    """One headless Chromium per test module, driven by Playwright's sync API.

    Module scope, not session: an open sync_playwright() registers its event loop as
    running in this thread, and every later module's sync_playwright() would refuse to
    start. Debian's chromium is used (``executable_path``); never `playwright install`.
    """
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        pytest.fail("the Playwright Python client is missing: "
                    "pip install 'playwright>=1.40' (it is in advqa's `test` extra); "
                    "do not run `playwright install`, Debian's chromium is used")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium),
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


PAGE_WIDTH = """
import sys
from playwright.sync_api import sync_playwright
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=sys.argv[1], args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(sys.argv[2])
    print(page.evaluate("document.documentElement.scrollWidth"))
    browser.close()
"""


@pytest.fixture(scope="session")
def page_width(chromium):
    """``page_width(path)``: the document's scroll width of a local HTML page in headless
    Chromium at 1366×768; more than 1366 means the page scrolls sideways. Measured in a
    process of its own: Playwright's sync API refuses a thread with an event loop."""
    import sys

    def measure(path: Path) -> int:
        result = subprocess.run(
            [sys.executable, "-c", PAGE_WIDTH, str(chromium), Path(path).resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=True)
        return int(result.stdout.split()[-1])

    return measure


def network_used(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args!r}")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty weight folders (``ADVQA_WEIGHTS_DIR`` and torch hub's, under ``TORCH_HOME``)
    and every download path booby-trapped; yields the weight folder."""
    import socket
    import urllib.request

    import torch

    from advqa.quality import learned

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("ADVQA_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # TORCH_HOME decides
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", network_used)
    monkeypatch.setattr(torch.hub, "download_url_to_file", network_used)
    monkeypatch.setattr(torch.hub, "urlopen", network_used)
    monkeypatch.setattr(urllib.request, "urlopen", network_used)
    monkeypatch.setattr(socket.socket, "connect", network_used)
    learned._CACHE.clear()
    yield weights
    learned._CACHE.clear()
