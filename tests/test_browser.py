"""The page at / in a real browser: Debian's chromium, driven by Playwright, against `lenet serve`."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
from PIL import Image

from lenet import load, predict
from lenet.data.registry import DATASETS

CLASSES = DATASETS["fashion-mnist"].classes

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


CHINESE = {"T-shirt/top": "T恤/上衣", "Trouser": "裤子", "Pullover": "套头衫", "Dress": "连衣裙", "Coat": "外套",
           "Sandal": "凉鞋", "Shirt": "衬衫", "Sneaker": "运动鞋", "Bag": "包", "Ankle boot": "短靴"}  # fmt: skip
DESKTOP, PHONE = {"width": 1100, "height": 800}, {"width": 390, "height": 844}


def offline_context(browser, live_server, viewport=DESKTOP, locale="en-US", **options):
    """A browser context in which any request to a host other than the server's is refused and noted."""
    context = browser.new_context(viewport=viewport, locale=locale, **options)
    elsewhere: list[str] = []
    server = urlsplit(live_server).netloc

    def route(r):
        if urlsplit(r.request.url).netloc == server or r.request.url.startswith(("data:", "blob:")):
            return r.continue_()
        elsewhere.append(r.request.url)
        return r.abort()

    context.route("**/*", route)
    return context, elsewhere


def open_page(browser, live_server, viewport=DESKTOP, locale="en-US", **options):
    """The page in a fresh offline context (see offline_context; options are Playwright's new_context's)."""
    context, elsewhere = offline_context(browser, live_server, viewport, locale, **options)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.elsewhere = elsewhere
    return page


def screenshot_dir(tmp_path: Path) -> Path:
    """Where a test's screenshots go: $SCREENSHOTS to keep them and look at them, else the test's own folder."""
    shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def close_page(page):
    page.context.close()
    assert page.errors == [] and page.elsewhere == [], (page.errors, page.elsewhere)


@pytest.fixture(params=[DESKTOP], ids=["desktop"])
def page(request, browser, live_server):
    page = open_page(browser, live_server, request.param)
    page.goto(live_server)
    page.wait_for_selector("#samples img")
    yield page
    close_page(page)


def answered(page) -> str:
    """Waits for a prediction on screen; its class as the model names it."""
    page.wait_for_function("document.getElementById('label').dataset.class")
    return page.get_attribute("#label", "data-class")


def test_upload_a_test_image_and_see_its_class(page, small_run, fmnist, tmp_path):
    model = load(small_run)
    images, labels = fmnist.test_images[:50], fmnist.test_labels[:50]
    right = [i for i, p in enumerate(predict(model, images)) if p.label == CLASSES[int(labels[i])]]
    index = right[0]  # one the model gets right, so the page must name its true class
    path = tmp_path / "upload.png"
    Image.fromarray(images[index, 0].numpy()).save(path)
    page.set_input_files("#file", str(path))
    assert answered(page) == CLASSES[int(labels[index])] == page.text_content("#label")
    assert page.locator("#bars [role=listitem]").count() == 10
    seen = page.evaluate("Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)")
    assert torch.equal(torch.tensor(seen[::4], dtype=torch.uint8).reshape(28, 28), images[index, 0])
    assert page.is_hidden("#truth")  # an upload's true class is not known


def stroke(page, box, x, y, steps=12, dx=8, dy=9):
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.mouse.down()
    for step in range(1, steps + 1):
        page.mouse.move(box["x"] + x + dx * step, box["y"] + y + dy * step)
    page.mouse.up()


def test_draw_says_what_to_draw_and_classifies_when_the_pen_rests(page):
    hint = page.locator("#" + page.get_attribute("#draw", "aria-describedby"))
    assert "filled silhouette" in hint.text_content() and page.is_visible("#draw") and page.is_hidden("#draw-open")
    assert "ten kinds of clothing" in page.text_content("#give-hint")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/predict" in r.url else None)
    box = page.locator("#draw").bounding_box()
    with page.expect_response(lambda r: "/predict" in r.url) as answer:
        for i in range(3):  # three strokes in quick succession: one drawing, one request
            stroke(page, box, 60 + 30 * i, 50)
    assert answer.value.status == 200 and answered(page) in CLASSES
    page.wait_for_timeout(1_000)
    assert len(sent) == 1, sent  # it used to send one request per stroke
    assert page.text_content("#status") == ""
    lit = page.evaluate("Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)")
    assert max(lit[::4]) > 200  # the strokes, inverted to light on dark, are what the model saw
    with page.expect_response(lambda r: "/predict" in r.url):
        page.click("#classify")  # the button does not wait
    assert len(sent) == 2


def test_click_a_sample_shows_its_true_class_beside_the_prediction(page):
    samples = page.locator("#samples button")
    for i in (0, samples.count() - 1):
        truth = samples.nth(i).get_attribute("data-label")
        assert truth in CLASSES
        samples.nth(i).click()
        page.wait_for_function(f"document.getElementById('true-label').dataset.class === {truth!r}")
        predicted = answered(page)
        assert page.text_content("#true-label") == truth and page.is_visible("#truth")
        assert page.text_content("#verdict") == ("(right)" if predicted == truth else "(wrong)")


def test_an_error_clears_the_previous_answer(page, tmp_path):
    page.locator("#samples button").first.click()
    answered(page)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.getElementById('status').textContent.includes('notes.png')")
    assert page.text_content("#label") == "none yet" and page.get_attribute("#label", "data-class") == ""
    assert page.locator("#bars [role=listitem]").count() == 0 and page.is_hidden("#truth")
    seen = page.evaluate("Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)")
    assert max(seen[::4]) == 0  # the previous image is gone too
    page.errors.remove("Failed to load resource: the server responded with a status of 400 (Bad Request)")


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"], ids=["en", "zh"])
def test_a_phone_sized_screen_needs_no_sideways_scrolling(browser, live_server, locale, tmp_path):
    shots = screenshot_dir(tmp_path)
    page = open_page(browser, live_server, PHONE, locale)
    try:
        page.goto(live_server)
        page.wait_for_selector("#samples img")
        page.locator("#samples button").nth(3).click()
        answered(page)
        in_view(page, "#answer", PHONE)  # brought into view: it sits far below the samples
        page.screenshot(path=str(shots / f"fashion-mnist-390-{locale[:2]}.png"))  # what the phone shows
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        for part in ("#drop", "#draw", "#classify", "#samples", "#seen", "#bars"):
            box = page.locator(part).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (part, box)
    finally:
        close_page(page)


def in_view(page, selector, viewport):
    """Waits (a smooth scroll takes a moment) until the element's box lies within the viewport and the page
    has stopped scrolling."""
    page.wait_for_function("""([selector, height]) => {
        const box = document.querySelector(selector).getBoundingClientRect();
        const still = window.lastScrollY === window.scrollY;
        window.lastScrollY = window.scrollY;
        return still && box.height > 0 && box.top >= 0 && box.bottom <= height;
    }""", arg=[selector, viewport["height"]], timeout=5_000, polling=100)


def test_with_reduced_motion_the_answer_jumps_into_view(browser, live_server):
    page = open_page(browser, live_server, PHONE, reduced_motion="reduce")
    try:
        page.goto(live_server)
        page.wait_for_selector("#samples img")
        assert page.evaluate("window.scrollY") == 0
        page.locator("#samples button").nth(3).click()
        answered(page)
        box = page.locator("#answer").bounding_box()  # at once, no animation to wait for
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], box
        assert page.evaluate("window.scrollY") > 0
    finally:
        close_page(page)


def test_keyboard_only(page):
    reached = []
    for _ in range(12):  # from the top: the language switch, the file input, the drawing's buttons, the samples
        page.keyboard.press("Tab")
        focused = page.evaluate("[document.activeElement.id, document.activeElement.className]")
        reached.append(focused)
        if focused[1] == "sample":
            break
    assert ["file", ""] in reached, reached
    assert reached[-1][1] == "sample", reached
    assert page.evaluate("document.getElementById('file').labels[0].textContent.trim()")  # a labelled input
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring != "none"  # focus is visible
    first = page.evaluate("document.activeElement.dataset.label")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.getElementById('true-label').dataset.class === {first!r}")
    answered(page)
    page.keyboard.press("Tab")  # the next sample, chosen with Space
    second_index = page.evaluate("document.activeElement.dataset.index")
    page.keyboard.press("Space")
    page.wait_for_function(f"document.getElementById('status').textContent === '' && "
                           f"document.querySelector('#samples button[data-index=\"{second_index}\"]') !== null")
    second = page.evaluate("document.activeElement.dataset.label")
    page.wait_for_function(f"document.getElementById('true-label').dataset.class === {second!r}")


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe  # axe-core's script from the package, not a CDN

    results = Axe().run(page).response
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in results["violations"]
            if v["impact"] in ("serious", "critical")]  # fmt: skip


def test_accessibility_check_finds_nothing_serious_in_either_language(page):
    page.locator("#samples button").first.click()
    answered(page)
    assert serious_violations(page) == []
    page.click("button[data-lang=zh]")
    page.wait_for_function("document.documentElement.lang === 'zh-CN'")
    assert serious_violations(page) == []


def test_chinese_from_the_browser_and_english_at_the_switch(browser, live_server):
    page = open_page(browser, live_server, locale="zh-CN")
    try:
        page.goto(live_server)
        page.wait_for_selector("#samples img")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        assert page.text_content("#give") == "给模型一张图片" and "剪影" in page.text_content("#draw-hint")
        assert "十类衣物" in page.text_content("#give-hint") and "短靴" in page.text_content("#give-hint")
        sample = page.locator("#samples button").nth(2)
        truth = sample.get_attribute("data-label")
        sample.click()
        predicted = answered(page)
        assert page.text_content("#label") == CHINESE[predicted]
        assert page.text_content("#true-label") == CHINESE[truth]
        assert page.locator("#bars [role=listitem] span:first-child").all_text_contents() == list(CHINESE.values())
        assert "测试图片" in sample.locator("img").get_attribute("alt")
        page.click("button[data-lang=en]")
        assert page.text_content("#give") == "Give it an image" and page.text_content("#label") == predicted
        assert page.locator("#bars [role=listitem] span:first-child").all_text_contents() == list(CLASSES)
        page.reload()  # the choice is kept
        page.wait_for_selector("#samples img")
        assert page.evaluate("document.documentElement.lang") == "en"
    finally:
        close_page(page)


# --- offline: nothing but the server is ever asked for anything --------------------------------


@pytest.fixture
def offline(browser, live_server):
    context, elsewhere = offline_context(browser, live_server)
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


# --- what each layer sees -----------------------------------------------------------------------

WIDE = {"width": 1280, "height": 900}
SCREENSHOTS = os.environ.get("LENET_SCREENSHOTS")  # a folder to keep the layer view's screenshots in, to look at


def chinese_font_problem() -> str | None:
    import shutil
    import subprocess

    if shutil.which("fc-list") is None:
        return "no fc-list (fontconfig) to ask for a CJK font"
    found = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout.strip()
    return None if found else "no CJK font (scripts/get-browser.sh installs fonts-noto-cjk as root): Chinese renders as boxes"


def canvas_pixels(page, selector: str, index: int) -> list[list[int]]:
    """The RGB of every pixel of the index-th canvas matching selector, row by row."""
    return page.evaluate("""([selector, index]) => {
        const canvas = document.querySelectorAll(selector)[index];
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const rgb = [];
        for (let i = 0; i < data.length; i += 4) rgb.push([data[i], data[i + 1], data[i + 2]]);
        return rgb;
    }""", [selector, index])


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280px", "390px"])
def test_the_layer_view_draws_each_layers_arrays_in_both_languages(browser, live_server, viewport, tmp_path):
    problem = chinese_font_problem()
    if problem and os.environ.get("CI"):
        pytest.fail(f"the Chinese page cannot be checked under CI: {problem}")
    shots = screenshot_dir(tmp_path)
    page = open_page(browser, live_server, viewport)
    try:
        page.goto(live_server)
        page.wait_for_selector("#samples img")
        assert page.locator("#layers canvas").count() == 0 and "Give the model an image" in page.text_content("#layers-hint")
        page.focus("#samples button >> nth=4")  # from the keyboard, as the keyboard test reaches the samples
        page.keyboard.press("Enter")
        page.wait_for_selector("#layers-output")
        predicted = answered(page)
        url = page.locator("#samples button >> nth=4").get_attribute("data-index")
        png = page.request.get(f"{live_server}/samples/{url}.png").body()
        layers = page.request.post(f"{live_server}/layers", multipart={"files": {"name": "s.png", "mimeType": "image/png", "buffer": png}}).json()

        # Every map the server sent is drawn, brightest where the array is highest, darkest where lowest.
        blocks = page.locator("#layers .maps")
        assert blocks.count() == len(layers["conv"]) == 2
        for b, block in enumerate(layers["conv"]):
            selector = f"#layers .maps.block{b + 1} canvas"
            assert page.locator(selector).count() == len(block["channels"])
            for c in (0, len(block["channels"]) - 1):
                flat = [v for row in block["maps"][c] for v in row]
                if max(flat) == min(flat):
                    continue
                rgb = canvas_pixels(page, selector, c)
                assert rgb[flat.index(max(flat))] == [253, 231, 37] and rgb[flat.index(min(flat))] == [68, 1, 84]
        units = page.locator("#layers canvas.units")
        assert units.count() == len(layers["hidden"]) == 2
        assert [units.nth(i).get_attribute("width") for i in range(2)] == [str(4 * len(h["values"])) for h in layers["hidden"]]
        assert predicted == layers["label"] or layers["label"] in CLASSES  # one pass may differ from the views' mean
        assert page.text_content("#layers-output").startswith(f"Output of this pass: {layers['label']}, ")

        # It fits: nothing sideways, every figure within the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        for i in range(page.locator("#layers figure").count()):
            box = page.locator("#layers figure").nth(i).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        name = f"layers-{viewport['width']}"
        page.locator(".layers").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / f"{name}-en.png"), full_page=True)

        page.click("button[data-lang=zh]")
        page.wait_for_function("document.documentElement.lang === 'zh-CN'")
        assert page.text_content("#layers-title") == "每一层看到了什么"
        captions = page.locator("#layers figcaption").all_text_contents()
        assert captions[0].startswith("第 1 个卷积层") and captions[2].startswith("第 1 个全连接层"), captions
        assert page.text_content("#layers-output").startswith(f"这次前向传播的输出：{CHINESE[layers['label']]}")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        page.screenshot(path=str(shots / f"{name}-zh.png"), full_page=True)
        assert serious_violations(page) == []
    finally:
        close_page(page)


# --- a model of a user's own folder: the page knows what it was trained on -----------------------

FOLDER_CLASSES = ("bars", "blocks", "stripes")
CLOTHING = ("clothing", "silhouette", "shoe", "shirt", "Fashion-MNIST", "衣物", "剪影", "鞋", "衬衫")


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A run of one short epoch on a folder of three classes (conftest's make_folder): (its run directory, the folder)."""
    import dataclasses

    from conftest import make_folder
    from lenet import TrainConfig, get_recipe, train

    tmp = tmp_path_factory.mktemp("own")
    root = make_folder(tmp / "shapes", dict.fromkeys(FOLDER_CLASSES, 12))
    recipe = dataclasses.replace(get_recipe("seed"), model="lenet_bn", epochs=1, batch_size=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train(TrainConfig(recipe=recipe, dataset=f"folder:{root}", device="cpu", out=str(tmp / "runs"),
                                name="shapes", progress=False)).run_dir  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return run, root


@pytest.fixture(scope="module")
def folder_server(folder_run):
    """`lenet serve` of the folder run, without its data: the page's samples are the few the run keeps."""
    from conftest import serving

    with serving(folder_run[0]) as url:
        yield url


LANGUAGES = {"en-US": ("Upload an image of one of: bars, blocks, stripes", "is not an image this page can read"),
             "zh-CN": ("请上传一张属于以下某一类的图片：bars、blocks、stripes", "不是本页能读取的图片")}  # fmt: skip


@pytest.mark.parametrize("locale", list(LANGUAGES), ids=["en", "zh"])
@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280px", "390px"])
def test_a_folder_models_page_names_its_classes_offers_upload_and_brings_the_answer_into_view(
        browser, folder_server, folder_run, viewport, locale, tmp_path):  # fmt: skip
    shots = screenshot_dir(tmp_path)
    hint_text, refusal = LANGUAGES[locale]
    page = open_page(browser, folder_server, viewport, locale)
    try:
        page.goto(folder_server)
        page.wait_for_selector("#samples img")
        hint = page.text_content("#give-hint")
        assert hint_text in hint and "folder:shapes" in hint, hint
        shown = page.locator("main").inner_text()
        assert not [word for word in CLOTHING if word in shown], shown
        # Upload only: the drawing waits behind an explicit choice.
        assert page.is_hidden("#draw") and page.is_hidden("#draw-hint") and page.is_visible("#draw-open")
        assert page.is_visible("#samples-part")  # the test images the run keeps
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

        page.set_input_files("#file", str(folder_run[1] / "blocks" / "0.png"))
        assert answered(page) in FOLDER_CLASSES
        in_view(page, "#answer", viewport)
        assert page.locator("#bars [role=listitem] span:first-child").all_text_contents() == list(FOLDER_CLASSES)
        page.wait_for_selector("#layers-output")
        lang = locale[:2]
        page.screenshot(path=str(shots / f"folder-{viewport['width']}-{lang}.png"))
        assert serious_violations(page) == []

        page.evaluate("window.scrollTo(0, 0)")
        bad = tmp_path / "notimage.png"
        bad.write_text("not an image")
        page.set_input_files("#file", str(bad))
        page.wait_for_function("document.getElementById('status').textContent.includes('notimage.png')")
        status = page.text_content("#status")
        assert refusal in status and "Pillow" not in status, status
        in_view(page, "#status", viewport)
        page.screenshot(path=str(shots / f"folder-{viewport['width']}-{lang}-refused.png"))
        page.errors.remove("Failed to load resource: the server responded with a status of 400 (Bad Request)")

        page.click("#draw-open")  # asked for: the drawing, with its hint naming the classes
        assert page.is_visible("#draw") and page.get_attribute("#draw-open", "aria-expanded") == "true"
        assert all(name in page.text_content("#draw-hint") for name in FOLDER_CLASSES)
    finally:
        close_page(page)


def test_no_samples_section_for_a_run_that_keeps_no_test_images(browser, folder_run, tmp_path):
    import shutil

    from conftest import serving

    old = tmp_path / "old"
    shutil.copytree(folder_run[0], old)
    (old / "samples.safetensors").unlink()  # as a run of an older lenet
    with serving(old) as url:
        page = open_page(browser, url, PHONE)
        try:
            page.goto(url)
            page.wait_for_function("document.getElementById('give-hint').textContent.includes('bars')")
            page.wait_for_load_state("networkidle")
            assert page.is_hidden("#samples-part") and page.locator("#samples li").count() == 0
            assert page.is_visible("#drop")
        finally:
            close_page(page)


@pytest.mark.parametrize("data_set, classes, hint, draw", [
    ("mnist", [str(d) for d in range(10)], "ten handwritten digits, 0 to 9", "Draw one digit"),
    ("kmnist", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"], "お (o), き (ki)", "Draw one of these hiragana"),
])  # fmt: skip
def test_digit_and_kana_models_get_their_own_hints_and_the_canvas(browser, live_server, data_set, classes, hint, draw):
    """GET /model answered as for an MNIST or a KMNIST run (the page reads nothing else of the data set)."""
    import json

    page = open_page(browser, live_server)
    try:
        info = page.request.get(f"{live_server}/model").json()
        body = json.dumps({**info, "data_set": data_set, "classes": classes})
        page.route("**/model", lambda route: route.fulfill(status=200, content_type="application/json", body=body))
        page.goto(live_server)
        page.wait_for_function("document.getElementById('give-hint').textContent !== ''")
        assert hint in page.text_content("#give-hint") and page.text_content("#draw-hint").startswith(draw)
        assert page.is_visible("#draw") and page.is_hidden("#draw-open")
        assert not [word for word in CLOTHING if word in page.locator(".inputs").inner_text()]
    finally:
        close_page(page)


# --- a colour model: pictures in colour, no drawing pad -----------------------------------------

COLOUR_HINTS = {"en-US": "Upload an image of one of: blue, green, red", "zh-CN": "请上传一张属于以下某一类的图片：blue、green、red"}


@pytest.fixture(scope="module")
def colour_server(colour_run):
    """`lenet serve` of conftest's colour run (3x32x32 discs), without its data: the samples are the ones it keeps."""
    from conftest import serving

    with serving(colour_run[0]) as url:
        yield url


@pytest.mark.parametrize("locale", list(COLOUR_HINTS), ids=["en", "zh"])
@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1280px", "390px"])
def test_a_colour_models_page_shows_its_input_in_colour_and_offers_no_drawing(
        browser, colour_server, colour_run, viewport, locale, tmp_path):  # fmt: skip
    from lenet.data.images import load_image

    shots = screenshot_dir(tmp_path)
    page = open_page(browser, colour_server, viewport, locale)
    try:
        page.goto(colour_server)
        page.wait_for_selector("#samples img")
        assert COLOUR_HINTS[locale] in page.text_content("#give-hint")
        # A pen stroke is nothing like a colour photo: neither the pad, nor its hint, nor the button that opens it.
        assert page.is_hidden("#draw-part") and page.is_hidden("#draw-hint") and page.is_hidden("#draw-open")
        # The samples are the run's own 32x32 RGB images (once loaded: the element comes before its picture).
        page.wait_for_function("document.querySelector('#samples img').naturalWidth > 0")
        assert page.evaluate("document.querySelector('#samples img').naturalWidth") == 32

        path = colour_run[1] / "blue" / "0.png"
        page.set_input_files("#file", str(path))
        assert answered(page) in ("red", "green", "blue")
        in_view(page, "#answer", viewport)
        assert page.get_attribute("#seen", "width") == "32"
        seen = torch.tensor(canvas_pixels(page, "#seen", 0), dtype=torch.uint8).reshape(32, 32, 3).permute(2, 0, 1)
        assert torch.equal(seen, load_image(path, channels=3, size=32))  # the RGB input itself, not a grey copy
        assert "32x32" in page.get_attribute("#seen", "aria-label") or "32×32" in page.get_attribute("#seen", "aria-label")

        page.wait_for_selector("#layers-output")
        assert page.locator("#layers .maps").count() == 2 and page.locator("#layers .maps.block1 canvas").count() > 0
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        for i in range(page.locator("#layers figure").count()):
            box = page.locator("#layers figure").nth(i).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
        lang = locale[:2]
        page.screenshot(path=str(shots / f"colour-{viewport['width']}-{lang}.png"), full_page=True)
        assert serious_violations(page) == []
    finally:
        close_page(page)
