"""The page at / in a real browser: Debian's chromium, driven by Playwright, against `lenet serve`."""

import os
from pathlib import Path

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


def test_click_a_sample_and_see_its_class(page, small_run, fmnist):
    """A sample the model gets right: the page must name that sample's class and show its pixels."""
    model = load(small_run)
    samples = page.locator("#samples img")
    shown = [samples.nth(i).get_attribute("alt") for i in range(samples.count())]  # "test image N: CLASS"
    indices = [int(alt.split(":")[0].removeprefix("test image ")) for alt in shown]
    predictions = predict(model, fmnist.test_images[indices])
    right = [i for i, (n, p) in enumerate(zip(indices, predictions)) if p.label == CLASSES[int(fmnist.test_labels[n])]]
    pick = right[-1]  # from the last class the model gets right, so a stuck page showing the first fails
    assert samples.nth(pick).get_attribute("data-label") == CLASSES[int(fmnist.test_labels[indices[pick]])]
    with page.expect_response(lambda r: "/predict" in r.url) as answer:
        samples.nth(pick).click()
    assert answer.value.status == 200
    page.wait_for_function("document.getElementById('label').textContent !== 'none yet'")
    assert page.text_content("#label") == CLASSES[int(fmnist.test_labels[indices[pick]])]
    seen = page.evaluate("Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)")
    assert torch.equal(torch.tensor(seen[::4], dtype=torch.uint8).reshape(28, 28), fmnist.test_images[indices[pick], 0])
