"""`lenet preview DATASET`: the 28x28 inputs the model will see, a few per class, as one PNG (issue 38, item 3).

A user checks how their photos were prepared (ground removed, trimmed, scaled) before training on them.
"""

import sys

import pytest
import torch
from PIL import Image, ImageDraw

import lenet.insight
from lenet.cli import main
from lenet.data.load import load_dataset
from lenet.insight import preview as preview_module

pytest.importorskip("matplotlib", reason="matplotlib is in the dev extra: pip install -e '.[dev]'")


def photo_folder(root):
    """Photos as users take them: dark bags on white and on paper, discs on paper (JPEG, 300x240)."""
    for name, ground in (("bag", (255, 255, 255)), ("disc", (215, 210, 200)), ("paper_bag", (215, 210, 200))):
        (root / name).mkdir(parents=True)
        for i in range(4):
            img = Image.new("RGB", (300, 240), ground)
            draw = ImageDraw.Draw(img)
            if name.endswith("bag"):
                draw.rectangle((70 - 10 * i, 80, 230, 210), fill=(70, 50, 40))
                draw.arc((110, 30, 190, 130), 180, 360, fill=(70, 50, 40), width=12)
            else:
                draw.ellipse((100, 70, 200 + 15 * i, 170), fill=(60, 60, 90))
            img.save(root / name / f"{i}.jpg")
    return root


def test_preview_draws_the_inputs_the_model_will_see_per_class(tmp_path, capsys, monkeypatch):
    root = photo_folder(tmp_path / "photos")
    drawn = {}
    plots = preview_module.load_plots()
    real = plots.preview

    def spy(rows, classes, per_class, title):
        drawn.update(rows=rows, classes=classes, per_class=per_class)
        return real(rows, classes, per_class, title)

    monkeypatch.setattr(plots, "preview", spy)
    out = tmp_path / "look" / "preview.png"
    assert main(["preview", f"folder:{root}", "--out", str(out), "--per-class", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"9 images of 3 classes written to {out}"
    data = load_dataset(f"folder:{root}")
    images = torch.cat([data.train_images, data.test_images])
    labels = torch.cat([data.train_labels, data.test_labels])
    assert drawn["classes"] == ("bag", "disc", "paper_bag") and drawn["per_class"] == 3
    for c, row in enumerate(drawn["rows"]):  # exactly the decoded inputs: training images first
        assert torch.equal(row, images[labels == c][:3])
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 3 * 80 and png.height > 3 * 80  # 90 pixels a thumbnail
    assert drawn["rows"][0][0].shape == (3, 32, 32)  # brown bags on paper: colour photos, read in colour
    assert main(["preview", f"folder:{root}", "--out", str(out), "--per-class", "3", "--channels", "1"]) == 0
    assert drawn["rows"][0][0].shape == (1, 28, 28)  # in grey, as Fashion-MNIST's


def test_preview_of_a_registry_data_set_shows_each_class(tmp_path, capsys):
    out = tmp_path / "fashion.png"
    assert main(["preview", "fashion-mnist", "--out", str(out), "--per-class", "2"]) == 0
    assert "20 images of 10 classes" in capsys.readouterr().out
    assert out.stat().st_size > 1000


def test_a_class_with_fewer_images_than_asked_is_named_in_one_warning(tmp_path, capsys):
    root = photo_folder(tmp_path / "photos")
    assert main(["preview", f"folder:{root}", "--out", str(tmp_path / "p.png"), "--per-class", "6"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: fewer than 6 images in bag, disc, paper_bag"]


@pytest.mark.parametrize(("args", "why"), [
    (["--out", "p.jpg"], "give a name ending in .png"),
    (["--per-class", "33"], "--per-class 33: give 1 to 32"),
])  # fmt: skip
def test_bad_preview_flags_are_one_line(tmp_path, capsys, monkeypatch, args, why):
    monkeypatch.chdir(tmp_path)
    assert main(["preview", "fashion-mnist", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lenet preview: error:") and why in err[0]


def test_preview_without_matplotlib_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "lenet.insight.plots", None)
    monkeypatch.delattr(lenet.insight, "plots", raising=False)  # `from lenet.insight import plots` looks here first
    assert main(["preview", "fashion-mnist", "--out", str(tmp_path / "p.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'lenet[plots]'" in err[0]
    assert not (tmp_path / "p.png").exists()
