"""Colour and size (issue 37): images carry their shape [C, S, S], models are sized from the data, colour
folders are learned where grey ones cannot be, and grey data goes on exactly as before."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from benchmarks.colour import draw_discs
from conftest import LENET, REPO
from sweeps import needs_ray
from lenet import TrainConfig, get_recipe, train
from lenet.core.errors import DataError, LenetError
from lenet.data.images import load_image, prepared
from lenet.data.load import load_dataset, load_model_data
from lenet.data.registry import DataSpec
from lenet.models.lenet import create_model, model_config

# The last commit before images carried their shape: the grey path must give its bits, on whatever machine
# the tests run (float kernels differ between CPUs, so the two are compared on the same one).
BEFORE_COLOUR = "e1ca10d"
# Trains the default and seed recipes for one epoch on the first 2,048 training images (one thread), then reads
# a grey folder; prints the weights' and the folder's SHA-256s. Run with each version of the package.
PROBE = """
import hashlib, sys
from dataclasses import replace
import torch
torch.set_num_threads(1)
from lenet import TrainConfig, get_recipe, train
from lenet.data.load import load_dataset
data = load_dataset("fashion-mnist").subset(2048, 512)
for name in ("default", "seed"):
    config = TrainConfig(recipe=replace(get_recipe(name), epochs=1), recipe_name=name, device="cpu", save=False,
                         progress=False)
    digest = hashlib.sha256()
    for key, value in sorted(train(config, data=data).model.net.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.cpu().contiguous().numpy().tobytes())
    print(name, digest.hexdigest())
print("folder", load_dataset("folder:" + sys.argv[1]).spec.sha256)
"""


def _probe(source: Path, folder: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env,
                          cwd=folder.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_fashion_mnist_and_grey_folders_give_the_same_bits_as_before_colour(tmp_path):
    """The default and seed recipes' weights after an epoch on Fashion-MNIST, and a grey folder's tensors, equal
    those of the code before colour, taken from the repository's history."""
    old = tmp_path / "before"
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE_COLOUR, "src/lenet"], capture_output=True)
    if archive.returncode != 0:
        message = f"the repository's history lacks {BEFORE_COLOUR} (a shallow clone?): {archive.stderr.decode()[:200]}"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    old.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    folder = draw_discs(tmp_path / "grey", 40, grey=True)
    before, now = _probe(old / "src", folder), _probe(REPO / "src", folder)
    assert len(now) == 6 and now == before


def test_a_grey_folder_is_read_in_grey_as_before(tmp_path):
    data = load_dataset(f"folder:{draw_discs(tmp_path / 'grey', 40, grey=True)}")
    assert data.spec.channels == 1 and data.train_images.shape[1:] == (1, 28, 28)
    assert "channels" not in data.spec.to_dict()  # a grey description is written as before


def _quick(recipe: str, tmp_path, **fields) -> TrainConfig:
    return TrainConfig(recipe=replace(get_recipe(recipe), **fields), recipe_name=recipe, device="cpu",
                       out=str(tmp_path), name=recipe, progress=False, save=False)  # fmt: skip


def test_the_hue_folder_is_learned_in_colour_and_not_in_grey(tmp_path):
    """Issue 37's acceptance test, small: discs told apart by hue alone. Default settings read the folder in
    colour and learn it; the same discs in grey (or read with --channels 1) stay at chance."""
    colours = load_dataset(f"folder:{draw_discs(tmp_path / 'colours', 40)}")
    assert colours.spec.channels == 3 and colours.train_images.shape[1:] == (3, 32, 32)
    assert len(colours.spec.mean) == 3 and len(colours.spec.std) == 3
    learned = train(_quick("default", tmp_path), data=colours).final.accuracy
    assert learned >= 0.95
    grey = load_dataset(f"folder:{draw_discs(tmp_path / 'grey', 40, grey=True)}")
    assert grey.spec.channels == 1
    assert train(_quick("default", tmp_path), data=grey).final.accuracy <= 0.6
    forced = load_dataset(f"folder:{tmp_path / 'colours'}", channels=1)
    assert forced.spec.channels == 1
    assert train(_quick("default", tmp_path), data=forced).final.accuracy <= 0.6


def test_a_folder_is_read_in_colour_when_a_tenth_of_it_has_colour(tmp_path):
    draw_discs(tmp_path / "f", 20, grey=True)
    for i in range(5):  # 5 of 65 images: under a tenth
        Image.new("RGB", (30, 30), (200, 30, 30)).save(tmp_path / "f" / "red" / f"c{i}.png")
    assert load_dataset(f"folder:{tmp_path / 'f'}").spec.channels == 1
    for i in range(5, 10):  # 10 of 70: over a tenth
        Image.new("RGB", (30, 30), (200, 30, 30)).save(tmp_path / "f" / "red" / f"c{i}.png")
    assert load_dataset(f"folder:{tmp_path / 'f'}").spec.channels == 3


def test_channels_and_size_choose_how_a_folder_is_read(tmp_path):
    folder = f"folder:{draw_discs(tmp_path / 'colours', 10)}"
    assert load_dataset(folder, size=24).train_images.shape[1:] == (3, 24, 24)
    assert load_dataset(folder, channels=1, size=40).train_images.shape[1:] == (1, 40, 40)
    with pytest.raises(DataError, match="fashion-mnist has grey 28x28 images of its own"):
        load_dataset("fashion-mnist", channels=3)


def test_a_colour_photo_is_resized_and_centre_cropped_not_inverted():
    img = Image.new("RGB", (64, 48), (250, 250, 250))
    ImageDraw.Draw(img).rectangle((0, 0, 3, 47), fill=(255, 0, 0))  # a red band at the left edge, cut by the crop
    ImageDraw.Draw(img).rectangle((28, 20, 35, 27), fill=(0, 0, 255))  # a blue square in the centre
    x = prepared(img, 3, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert x[:, 0, 0].tolist() == [250, 250, 250]  # light ground kept light: no inversion
    centre = x[:, 16, 16].tolist()
    assert centre[2] > 200 and centre[0] < 50  # the blue square, still blue, in the middle
    assert not ((x[0] > 200) & (x[1] < 100)).any()  # the red band cropped away
    grey = prepared(img, 1, 28)
    assert grey.shape == (1, 28, 28) and grey[0, 0, 0] == 0  # grey: Fashion-MNIST's form, inverted


def test_a_transparent_colour_image_is_composited_onto_white(tmp_path):
    Image.new("RGBA", (32, 32), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", channels=3, size=32).unique().tolist() == [255]


def test_models_are_sized_from_the_data():
    spec = DataSpec("colours", ("a", "b", "c"), (0.5, 0.4, 0.3), (0.2, 0.2, 0.25), image_size=32, channels=3)
    for name in ("lenet", "lenet5", "lenet_32x48_pn", "lenet_cifar"):
        net = create_model(name, spec)
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    config = model_config("lenet_32x48_pn", spec)
    assert (config.in_channels, config.image_size, config.input_mean) == (3, 32, (0.5, 0.4, 0.3))
    small = DataSpec("s", ("a", "b"), 0.5, 0.5, image_size=20)
    assert create_model("lenet", small)(torch.rand(1, 1, 20, 20)).shape == (1, 2)


def test_the_classifier_tutorials_network_is_a_named_model():
    """pytorch.org's "Training a classifier": conv 3->6 5x5, pool, 6->16 5x5, pool, 400-120-84-10, ReLU, inputs
    normalised by 0.5; 62,006 parameters on CIFAR-10's 3x32x32."""
    cifar = DataSpec("cifar10", tuple("0123456789"), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), image_size=32,
                     channels=3)  # fmt: skip
    net = create_model("lenet_cifar", cifar)
    assert sum(p.numel() for p in net.parameters()) == 62_006
    assert net.conv[0].in_channels == 3 and net.fc[0].in_features == 400
    assert (net.config.input_mean, net.config.input_std) == (0.5, 0.5)  # the tutorial's, not the data's
    recipe = get_recipe("classifier")
    assert (recipe.model, recipe.optimizer, recipe.lr, recipe.momentum, recipe.nesterov) == ("lenet_cifar", "sgd", 0.001, 0.9, False)
    assert (recipe.batch_size, recipe.epochs, recipe.shift, recipe.flip, recipe.test_flip) == (4, 2, 0, False, False)


def test_a_colour_description_round_trips_and_bad_ones_are_refused():
    spec = DataSpec("c", ("a", "b"), (0.1, 0.2, 0.3), (0.3, 0.2, 0.1), image_size=32, channels=3)
    assert DataSpec.from_dict(spec.to_dict()) == spec
    for bad in ({"mean": 0.5}, {"mean": (0.1, 0.2)}, {"channels": 2}, {"image_size": 8}, {"std": (0.1, 0.0, 0.1)}):
        with pytest.raises(LenetError):
            DataSpec.from_dict({**spec.to_dict(), **bad})
    assert model_config("lenet", DataSpec("s", ("a", "b"), 0.5, 0.5, image_size=16)).feature_side == 1  # the least
    with pytest.raises(LenetError, match="image_size must be a whole number from 16 to 128"):
        model_config("lenet", image_size=15)


def test_a_colour_run_is_evaluated_on_its_folder_read_as_it_was_trained(tmp_path):
    folder = f"folder:{draw_discs(tmp_path / 'colours', 12)}"
    data = load_dataset(folder, size=24)
    model = replace(data.spec)
    again = load_model_data(model, folder)
    assert again.spec.image_shape == (3, 24, 24) and again.spec.sha256 == data.spec.sha256
    with pytest.raises(DataError, match="takes 3x24x24"):
        load_model_data(model, "fashion-mnist")


def test_the_command_line_trains_a_colour_folder_and_refuses_bad_shapes(tmp_path):
    folder = draw_discs(tmp_path / "colours", 12)
    ok = subprocess.run([*LENET, "train", "--dataset", f"folder:{folder}", "--epochs", "1", "--out", str(tmp_path / "runs"),
                         "--no-report", "--name", "c"], capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "(colour 32x32)" in ok.stdout.splitlines()[0]
    assert '"channels": 3' in (tmp_path / "runs" / "c" / "config.json").read_text()
    for flags, words in ((["--size", "8"], "an image side is 16 to 128 pixels, not 8"),
                         (["--channels", "2"], "invalid choice")):  # fmt: skip
        bad = subprocess.run([*LENET, "train", "--dataset", f"folder:{folder}", *flags], capture_output=True, text=True)
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr
    wrong = subprocess.run([*LENET, "train", "--channels", "3", "--epochs", "1", "--no-save-run"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "fashion-mnist has grey 28x28 images of its own" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1



@pytest.mark.usefixtures("ray_namespace")
@needs_ray
def test_a_sweep_trains_every_trial_on_a_colour_folder(tmp_path):
    """`lenet sweep` on a colour folder: the plan records how the folder is read, the data goes to the trials as
    it was read (3x32x32), and every trial learns the hues (chance is 1 in 3)."""
    from sweeps import Sweep, read_table, space_file

    folder = draw_discs(tmp_path / "colours", 30)
    text = (f'dataset = "folder:{folder}"\nbase = "default"\ntrials = 2\nval_split = 18\nsize = 28\n[recipe]\n'
            'epochs = 6\n[vary]\nlr = [0.01, 0.02]\n')  # fmt: skip
    out, _ = Sweep(str(space_file(tmp_path, text)), "--out", str(tmp_path / "runs"), "--name", "hues").wait()
    sweep = tmp_path / "runs" / "hues"
    assert '"channels": 3' in (sweep / "trial-0001" / "config.json").read_text()
    assert '"image_size": 28' in (sweep / "trial-0001" / "config.json").read_text()
    assert '"size": 28' in (sweep / "plan.json").read_text()
    rows = read_table(sweep)["rows"]
    assert len(rows) == 2 and all(row["val"]["mean"] >= 0.8 for row in rows), rows


def test_a_colour_folder_run_resumes_evaluates_and_fine_tunes_with_its_own_shape(tmp_path, capsys):
    from lenet.cli import main
    from lenet.training.resume import recorded_data

    folder = f"folder:{draw_discs(tmp_path / 'colours', 12)}"
    runs = tmp_path / "runs"
    base = ["--dataset", folder, "--out", str(runs), "--no-report", "--no-progress", "--device", "cpu"]
    assert main(["train", *base, "--size", "24", "--epochs", "2", "--name", "c"]) == 0
    again = load_model_data(recorded_data(runs / "c"), folder, own=True)  # as a resume reads it
    assert again.spec.image_shape == (3, 24, 24)  # read as recorded, not as the folder's default 32
    assert main(["eval", str(runs / "c"), "--dataset", folder]) == 0
    assert "test accuracy" in capsys.readouterr().out
    # Fine-tuning a colour 24x24 model on the folder read at its default 32: refused, saying how to fit it.
    assert main(["train", *base, "--start-from", str(runs / "c"), "--epochs", "1", "--name", "f"]) == 1
    assert "takes colour 24x24 images, the data gives colour 32x32; read a folder to fit it with --channels 3 " \
           "--size 24" in capsys.readouterr().err
    assert main(["train", *base, "--size", "24", "--start-from", str(runs / "c"), "--epochs", "1", "--name", "g"]) == 0


def test_the_report_of_a_colour_run_shows_colour_images_and_rgb_filters(tmp_path):
    from lenet.cli import main
    from lenet.insight import plots

    folder = f"folder:{draw_discs(tmp_path / 'colours', 12)}"
    argv = ["train", "--dataset", folder, "--out", str(tmp_path), "--name", "c", "--epochs", "2", "--no-progress"]
    assert main(argv) == 0
    assert (tmp_path / "c" / "report.html").is_file() and (tmp_path / "c" / "plots" / "filters.png").is_file()
    assert main(["summary", str(tmp_path / "c")]) == 0
    weights = torch.zeros(2, 3, 5, 5)
    weights[0, 0] = 1.0  # a filter that weighs red up: drawn red on mid-grey
    drawn = plots.filters(weights).axes[0].images[0].get_array()
    assert drawn.shape == (5, 5, 3) and drawn[0, 0].tolist() == [1.0, 0.5, 0.5]
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    image[2] = 200  # blue
    figure = plots.samples(image[None], torch.tensor([0]), ["blue"], name="colours")
    assert figure.axes[0].images[0].get_array()[0, 0].tolist() == [0, 0, 200]


def test_a_model_is_listed_and_summarised_on_the_input_it_was_made_for(capsys):
    from lenet.cli import main
    from lenet.models.lenet import list_models

    assert list_models()["lenet_cifar"].endswith("(62,006 parameters on 3x32x32)")
    assert list_models()["lenet"].endswith("(44,426 parameters on 1x28x28)")
    assert main(["summary", "--model", "lenet_cifar"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "lenet_cifar: input [64, 3, 32, 32]"
    assert main(["summary", "--model", "lenet_cifar", "--channels", "1", "--size", "28"]) == 0
    assert "total parameters: 44,426" in capsys.readouterr().out
