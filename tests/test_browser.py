"""The page at / in a real browser: Debian's chromium, driven by Playwright, against `lenet serve`."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
from PIL import Image

from lenet import load, predict
from lenet.data import CLASSES

CHROMIUM = Path(os.environ.get("LENET_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not CHROMIUM.exists():
        reason = f"no {CHROMIUM} (scripts/get-browser.sh installs Debian's chromium as root)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server)
    page.wait_for_selector("#samples img")
    yield page
    page.close()
    assert errors == [], errors


def test_upload_a_test_image_and_see_its_class(page, small_run, fmnist, tmp_path):
    model = load(small_run)
    images, labels = fmnist.test_images[:50], fmnist.test_labels[:50]
    right = [i for i, p in enumerate(predict(model, images)) if p.label == CLASSES[int(labels[i])]]
    index = right[0]  # one the model gets right, so the page must name its true class
    path = tmp_path / "upload.png"
    Image.fromarray(images[index, 0].numpy()).save(path)
    page.set_input_files("#file", str(path))
    page.wait_for_function("document.getElementById('label').textContent !== 'none yet'")
    assert page.text_content("#label") == CLASSES[int(labels[index])]
    assert page.locator("#bars .bar").count() == 10
    seen = page.evaluate("Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)")
    assert torch.equal(torch.tensor(seen[::4], dtype=torch.uint8).reshape(28, 28), images[index, 0])


def test_draw_a_stroke_and_see_a_prediction(page):
    box = page.locator("#draw").bounding_box()
    with page.expect_response(lambda r: "/predict" in r.url) as answer:
        page.mouse.move(box["x"] + 60, box["y"] + 50)
        page.mouse.down()
        for step in range(1, 21):
            page.mouse.move(box["x"] + 60 + 8 * step, box["y"] + 50 + 9 * step)
        page.mouse.up()
    assert answer.value.status == 200
    page.wait_for_function("document.getElementById('label').textContent !== 'none yet'")
    assert page.text_content("#label") in CLASSES
    assert page.text_content("#status") == ""
    lit = page.evaluate("Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)")
    assert max(lit[::4]) > 200  # the stroke, inverted to light on dark, is what the model saw


def test_click_a_sample(page):
    sample = page.locator("#samples img").first
    with page.expect_response(lambda r: "/predict" in r.url) as answer:
        sample.click()
    assert answer.value.status == 200
    page.wait_for_function("document.getElementById('label').textContent !== 'none yet'")


# --- offline: nothing but the server is ever asked for anything --------------------------------


@pytest.fixture
def offline(browser, live_server):
    """A browser context in which any request to a host other than the server's is refused and noted."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    elsewhere: list[str] = []
    server = urlsplit(live_server).netloc

    def route(r):
        if urlsplit(r.request.url).netloc == server or r.request.url.startswith(("data:", "blob:")):
            return r.continue_()
        elsewhere.append(r.request.url)
        return r.abort()

    context.route("**/*", route)
    yield context, elsewhere
    context.close()


@pytest.mark.parametrize("path, shows", [("/docs", ".opblock-summary-path >> text=/predict"),
                                         ("/redoc", "h2 >> text=Predict Endpoint")])  # fmt: skip
def test_api_docs_work_offline(offline, live_server, path, shows):
    context, elsewhere = offline
    page = context.new_page()
    page.goto(live_server + path)
    page.wait_for_selector(shows, timeout=20_000)  # the documentation drew itself from /openapi.json
    page.wait_for_load_state("networkidle")
    assert elsewhere == []
