import pytest
import torch
from PIL import Image

from lenet import create_model, evaluate, load_image, predict
from lenet.errors import ImageError
from lenet.inference import to_fashion_mnist
from lenet.views import classes_of


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


def test_huge_image_header_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("lenet.inference.MAX_PIXELS", 100 * 100)
    # load_image copies the limit into Pillow's global; restore that too, or later tests inherit it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="over the limit"):
        load_image(tmp_path / "big.png")
