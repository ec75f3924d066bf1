import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet import create_model, evaluate, load_image, predict
from lenet.core.errors import ImageError
from lenet.data.images import Skipped, decode_image, load_images, to_fashion_mnist
from lenet.inference.predict import write_predictions_csv
from lenet.models.views import classes_of


def _png(path, pixels: torch.Tensor):
    Image.fromarray(pixels.squeeze(0).numpy(), mode="L").save(path)
    return path


def test_a_test_image_written_as_png_predicts_as_eval_does(fmnist, tmp_path):
    torch.manual_seed(3)
    model = create_model("lenet_bn").eval()
    images, labels = fmnist.test_images[:40], fmnist.test_labels[:40]
    loaded = torch.stack([load_image(_png(tmp_path / f"{i}.png", img)) for i, img in enumerate(images)])
    assert torch.equal(loaded, images)  # 28x28 grey images are taken as they are
    predictions = predict(model, loaded, top_k=10)
    with torch.no_grad():
        expected = model(images.float() / 255).argmax(1)
    classes = classes_of(model)
    assert [p.label for p in predictions] == [classes[i] for i in expected]
    assert all(abs(sum(prob for _, prob in p.top) - 1) < 1e-4 for p in predictions)
    assert evaluate(model, images, labels).correct == sum(p.label == classes[t] for p, t in zip(predictions, labels))


def test_a_photo_on_white_becomes_light_on_dark_and_28x28(tmp_path):
    img = Image.new("RGB", (300, 200), (255, 255, 255))
    img.paste((40, 40, 120), (100, 20, 200, 180))  # a dark object on a white ground
    img.save(tmp_path / "photo.jpg")
    x = load_image(tmp_path / "photo.jpg")
    assert x.shape == (1, 28, 28) and x.dtype == torch.uint8
    sides = torch.cat([x[0, :, 0], x[0, :, -1]]).float()  # the object is taller than wide: it touches top and bottom
    assert sides.max() < 30 and x.float().max() > 150
    assert (x[0, :, 14] > 100).sum() == 28  # the object's longer side fills the frame


def _object_on(ground, shape: str, noise: int = 0) -> Image.Image:
    """A dark object drawn on a 300x240 ground: a bag (a body and a handle) or a disc; `noise` adds a texture."""
    from PIL import ImageDraw

    img = Image.new("RGB", (300, 240), ground)
    draw = ImageDraw.Draw(img)
    if shape == "bag":
        draw.rectangle((70, 80, 230, 210), fill=(70, 50, 40))
        draw.arc((110, 30, 190, 130), 180, 360, fill=(70, 50, 40), width=12)
    else:
        draw.ellipse((100, 70, 200, 170), fill=(60, 60, 90))
    if not noise:
        return img
    texture = np.random.default_rng(0).integers(-noise, noise + 1, (240, 300, 1))
    return Image.fromarray(np.clip(np.asarray(img).astype(int) + texture, 0, 255).astype(np.uint8))


PAPER = (215, 210, 200)


@pytest.mark.parametrize("shape", ["bag", "disc"])
@pytest.mark.parametrize("noise", [0, 12], ids=["flat", "textured"])
def test_an_object_on_paper_decodes_as_it_does_on_white(shape, noise):
    """Issue 38, item 3: trimming kept pixels above 10% of the brightest, so a paper ground survived the
    inversion as a grey frame (45) and the object shrank: the same bag read "Bag 92.2%" on white and
    "Bag 75.6%" on paper. The ground is now measured on the border and removed first."""
    on_white = to_fashion_mnist(_object_on((255, 255, 255), shape))[0].float()
    on_paper = to_fashion_mnist(_object_on(PAPER, shape, noise))[0].float()
    assert (on_white - on_paper).abs().mean() < 12  # before: 86 (bag) and 110 (disc), of 255
    area_white, area_paper = (on_white > 50).sum().item(), (on_paper > 50).sum().item()
    assert abs(area_white - area_paper) <= 0.05 * area_white  # before: the bag filled 229 pixels, not 563
    top_corners = torch.stack([on_paper[:3, :3], on_paper[:3, -3:]])  # beside the handle, or the disc
    assert top_corners.max() < 20  # the ground beside the object is black, as on white: no grey frame (before: 45)


def _trimmed_as_before(grey: Image.Image) -> torch.Tensor:
    """The decoder's rule for a dark ground, written out: trim to the pixels above 10% of the brightest,
    scale the longer side to 28 (Lanczos), centre on black."""
    brightest = grey.getextrema()[1]
    grey = grey.crop(grey.point(lambda v: 255 if v > brightest * 0.1 else 0).getbbox())
    scale = 28 / max(grey.size)
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(grey.resize(size, Image.Resampling.LANCZOS), ((28 - size[0]) // 2, (28 - size[1]) // 2))
    return torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).reshape(1, 28, 28)


@pytest.mark.parametrize("side", [56, 100])
def test_fashion_mnist_images_at_another_size_decode_as_before(fmnist, side):
    """A Fashion-MNIST image is already on a dark ground: removing the ground leaves it as it was, the
    images whose object covers most of the border (a grey border median, bags mostly) included."""
    x = fmnist.test_images[:, 0]
    border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
    covered = (border.median(dim=1).values > 0).nonzero().flatten()
    assert len(covered) >= 10
    for image in torch.cat([fmnist.test_images[:200], fmnist.test_images[covered]]):
        grey = Image.fromarray(image[0].numpy()).resize((side, side), Image.Resampling.BILINEAR)
        assert torch.equal(to_fashion_mnist(grey), _trimmed_as_before(grey))


def test_transparent_png_is_composited(tmp_path):
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (16, 8, 48, 56))
    x = to_fashion_mnist(img)
    assert x[0, 14, 14] > 200 and x[0, 0, 0] == 0


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50])
def test_unreadable_images_raise_image_error(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="bad.png"):
        load_image(path)


def test_huge_image_header_is_refused(tmp_path):
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="200x200 pixels is over the limit of 10,000"):
        load_image(tmp_path / "big.png", max_pixels=100 * 100)


@pytest.mark.tripwires
def test_decoding_bounds_itself_and_changes_no_process_wide_setting(tmp_path, monkeypatch):
    """The server decodes on many threads: Pillow's MAX_IMAGE_PIXELS and the warning filters are the
    whole process's, so decoding may neither set the one nor install the other, even for a moment."""
    import warnings

    def changed(*_args, **_kwargs):
        raise AssertionError("decoding touched the process's warning filters")

    for name in ("catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"):
        monkeypatch.setattr(warnings, name, changed)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # an application that turned Pillow's own check off
    Image.new("L", (5000, 2000)).save(tmp_path / "big.png")  # 10 MP: within Pillow's default limit anyway
    with pytest.raises(ImageError, match="5000x2000 pixels is over the limit of 1,000,000"):
        load_image(tmp_path / "big.png", max_pixels=1_000_000)  # the bound given, Pillow's check off or not
    assert load_image(tmp_path / "big.png").shape == (1, 28, 28)
    assert Image.MAX_IMAGE_PIXELS is None


def test_an_empty_file_is_reported_as_empty(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.png: empty file, 0 bytes"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match=r"upload: empty file, 0 bytes"):
        decode_image(b"", "upload")


def test_images_much_smaller_than_28x28_are_named_in_one_warning(fmnist, tmp_path):
    for i, side in enumerate((8, 13, 14, 28)):
        Image.fromarray(fmnist.test_images[i, 0].numpy()).resize((side, side)).save(tmp_path / f"{side}.png")
    loaded = load_images([tmp_path])
    assert loaded.small == [str(tmp_path / "13.png"), str(tmp_path / "8.png")]
    warning = loaded.small_warning()
    assert "\n" not in warning and warning.startswith("warning: 2 images under 14x14 pixels scaled up to 28x28")
    assert warning.endswith(f"{tmp_path / '13.png'}, {tmp_path / '8.png'}")


# --- every image mode Pillow decodes reaches the model as its 8-bit equivalent would -------
#
# Each case below is a real Fashion-MNIST test image (light object on a black ground) in another
# mode; it must become the original 8-bit pixels exactly (nothing here rounds differently). With
# transparency the case is the product photo the data set was made from (dark object on white,
# 255 - x) cut out: its background transparent and, under it, a colour that would show if the
# alpha were ignored. Composited onto white and inverted it is the original again.


def _cut_out(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo (255 - x) with black under its background, and an alpha that hides the background."""
    photo = 255 - x
    background = photo == 255
    return np.where(background, 0, photo).astype(np.uint8), np.where(background, 0, 255).astype(np.uint8)


def _grey_palette(photo: np.ndarray, transparent_red: bool):
    """A "P" image whose index is the grey level; index 255's colour is red and transparent if asked."""
    img = Image.frombytes("P", (28, 28), photo.tobytes())
    palette = [v for g in range(256) for v in (g, g, g)]
    if transparent_red:
        palette[-3:] = [255, 0, 0]
        img.info["transparency"] = 255
    img.putpalette(palette)
    return img


MODES = {  # name: (a function of the 8-bit original x -> PIL image, what the pixels must become)
    "I;16 (16-bit grey)": (lambda x: Image.fromarray(x.astype(np.uint16) * 257), "x"),
    "I;16B (16-bit grey, big-endian)": (lambda x: Image.frombytes("I;16B", (28, 28), (x.astype(">u2") * 257).tobytes()), "x"),  # fmt: skip
    "I (32-bit, 16-bit values)": (lambda x: Image.fromarray(x.astype(np.int32) * 257), "x"),
    "I (32-bit, Pillow's convert from L)": (lambda x: Image.fromarray(x).convert("I"), "x"),
    "F (float, 0-1)": (lambda x: Image.fromarray(x.astype(np.float32) / 255), "x"),
    "F (float, Pillow's convert from L: 0-255)": (lambda x: Image.fromarray(x).convert("F"), "x"),
    "P (grey palette)": (lambda x: _grey_palette(x, transparent_red=False), "x"),
    "P with tRNS (cut-out photo)": (lambda x: _grey_palette(np.where(x == 0, 255, 255 - x).astype(np.uint8), True), "x"),  # fmt: skip
    "PA (cut-out photo)": (lambda x: Image.merge("PA", (_grey_palette(_cut_out(x)[0], False), Image.fromarray(_cut_out(x)[1]))), "x"),  # fmt: skip
    "LA (cut-out photo)": (lambda x: Image.merge("LA", [Image.fromarray(a) for a in _cut_out(x)]), "x"),
    "LA (opaque)": (lambda x: Image.fromarray(x).convert("LA"), "x"),
    "RGBA (cut-out photo, red under the background)": (
        lambda x: Image.merge("RGBA", [Image.fromarray(_cut_out(x)[0] | ((_cut_out(x)[1] == 0) * 255).astype(np.uint8)),
                                       *[Image.fromarray(_cut_out(x)[0])] * 2, Image.fromarray(_cut_out(x)[1])]), "x"),  # fmt: skip
    "RGBA (opaque)": (lambda x: Image.fromarray(x).convert("RGBA"), "x"),
    "CMYK (from RGB: C=M=Y=255-x, K=0)": (lambda x: Image.fromarray(x).convert("RGB").convert("CMYK"), "x"),
    "CMYK (from L: K=255-x)": (lambda x: Image.fromarray(x).convert("CMYK"), "x"),
    "1 (1-bit, the original thresholded)": (lambda x: Image.fromarray(x).convert("1", dither=Image.Dither.NONE), "x >= 128"),  # fmt: skip
}
PNG_MODES = ("I;16", "P", "LA", "RGBA", "1")  # what a PNG file can hold: these are read back from one too


@pytest.mark.parametrize("name", list(MODES))
def test_every_mode_reaches_the_model_as_its_8_bit_original(fmnist, name):
    x = fmnist.test_images[0, 0].numpy()
    build, expected = MODES[name]
    img = build(x)
    assert img.mode == name.split(" ")[0]
    want = np.where(x >= 128, 255, 0).astype(np.uint8) if expected == "x >= 128" else x
    assert np.array_equal(to_fashion_mnist(img)[0].numpy(), want)
    if img.mode in PNG_MODES:  # the same through a PNG file (load_image) and an upload (decode_image)
        png = io.BytesIO()
        img.save(png, "PNG", **({"transparency": 255} if "transparency" in img.info else {}))
        assert np.array_equal(decode_image(png.getvalue(), name)[0].numpy(), want)


def test_a_16_bit_png_file_predicts_as_the_8_bit_one(fmnist, tmp_path):
    """The new user's case from issue 14: the same test images saved as 16-bit PNGs."""
    torch.manual_seed(0)
    model = create_model("lenet_bn").eval()
    images = fmnist.test_images[:20]
    for i, img in enumerate(images):
        Image.fromarray(img[0].numpy().astype(np.uint16) * 257).save(tmp_path / f"{i}.png")
    loaded = torch.stack([load_image(tmp_path / f"{i}.png") for i in range(len(images))])
    assert torch.equal(loaded, images)
    assert [p.top for p in predict(model, loaded)] == [p.top for p in predict(model, images)]


def test_wide_modes_are_scaled_not_clipped_at_any_size():
    """Larger than 28x28 the image is trimmed and scaled: the same result as from its 8-bit copy."""
    x = np.zeros((60, 40), np.uint8)
    x[10:50, 5:35] = np.arange(30, dtype=np.uint8) * 8 + 10  # an object of graded brightness on black
    eight_bit = to_fashion_mnist(Image.fromarray(x))
    for wide in (Image.fromarray(x.astype(np.uint16) * 257), Image.fromarray(x.astype(np.float32) / 255)):
        assert torch.equal(to_fashion_mnist(wide), eight_bit), wide.mode


# --- many files: directories, unreadable files, a CSV --------------------------------------


def _image_tree(root, fmnist):
    """b/2.png, a/1.jpg... under root, with a text file and a damaged PNG among them."""
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a").mkdir()
    names = ["b/deep/3.png", "a/1.png", "b/2.PNG", "0.bmp"]
    for i, name in enumerate(names):
        Image.fromarray(fmnist.test_images[i, 0].numpy()).save(root / name, "BMP" if name.endswith("bmp") else "PNG")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "b" / "cut.png").write_bytes((root / "a" / "1.png").read_bytes()[:60])
    return names


def test_a_directory_gives_its_images_recursively_sorted(fmnist, tmp_path):
    names = _image_tree(tmp_path, fmnist)
    (tmp_path / "b" / "cut.png").unlink()
    loaded = load_images([tmp_path])
    expected = sorted(str(tmp_path / n) for n in names)
    assert loaded.paths == expected
    order = [names.index(str(Path(p).relative_to(tmp_path))) for p in expected]
    assert torch.equal(loaded.images, fmnist.test_images[order])
    assert loaded.skipped == [Skipped(str(tmp_path / "a" / "notes.txt"), "not named as an image")]
    assert loaded.skipped_summary() == f"skipped 1 file: 1 not named as an image: {tmp_path / 'a' / 'notes.txt'} (not named as an image)"


def test_an_unreadable_file_stops_the_batch_unless_skipped(fmnist, tmp_path):
    _image_tree(tmp_path, fmnist)
    with pytest.raises(ImageError, match="cut.png"):
        load_images([tmp_path])
    loaded = load_images([tmp_path, tmp_path / "missing.png"], skip_bad=True)
    assert len(loaded.paths) == 4 and str(tmp_path / "b" / "cut.png") not in loaded.paths
    unreadable = [s for s in loaded.skipped if s.unreadable]
    assert [s.path for s in unreadable] == [str(tmp_path / "b" / "cut.png"), str(tmp_path / "missing.png")]
    assert "cannot decode" in unreadable[0].reason and "no such file" in unreadable[1].reason
    summary = loaded.skipped_summary()
    assert summary.startswith("skipped 3 files: 1 not named as an image, 2 unreadable: ")
    for s in loaded.skipped:  # each named, with its reason (not its path twice)
        assert f"{s.path} ({s.why})" in summary and f"{s.path}: " not in summary
    assert f"{tmp_path / 'missing.png'} (no such file)" in summary


def test_nothing_to_predict_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError, match="no image to predict in .*; skipped 1 file: 1 not named as an image: .*notes.txt"):
        load_images([tmp_path], skip_bad=True)


def test_the_csv_holds_each_images_top_k(fmnist, tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet_bn").eval()
    names = [f"dir/{i}.png" for i in range(5)]
    predictions = predict(model, fmnist.test_images[:5], top_k=3)
    write_predictions_csv(tmp_path / "out.csv", names, predictions)
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2", "label_3", "probability_3"]
    for row, name, p in zip(rows, names, predictions, strict=True):
        assert row["path"] == name and row["label"] == p.label and row["label_3"] == p.top[2][0]
        assert abs(float(row["probability"]) - p.top[0][1]) < 1e-6


def test_commands_silence_pillows_warnings_once_without_importing_pillow():
    """`lenet` calls quiet_pillow_warnings at its start (main thread); it must not import Pillow
    (start-up time) and must silence what Pillow warns from its own modules, the bomb warning too."""
    import subprocess
    import sys

    script = """if True:
        import io, sys, warnings
        warnings.simplefilter("error")  # any warning that gets through fails
        from lenet.data.images import quiet_pillow_warnings
        quiet_pillow_warnings()
        assert "PIL" not in sys.modules
        from PIL import Image
        Image.MAX_IMAGE_PIXELS = 100
        png = io.BytesIO()
        Image.new("L", (12, 12)).save(png, "PNG")
        Image.open(io.BytesIO(png.getvalue()))  # 144 pixels: Pillow warns of a decompression bomb
    """
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
