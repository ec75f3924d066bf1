"""Real training on a subset of the real data."""

import json
from dataclasses import replace

import pytest
import torch

from lenet import TrainConfig, get_recipe, load, train
from lenet.training.engine import Engine
from lenet.core.errors import LenetError


def _config(tmp_path, **recipe):
    base = replace(get_recipe("default"), **{"model": "lenet_bn", "epochs": 2, "batch_size": 64, **recipe})
    return TrainConfig(recipe=base, recipe_name="default", device="cpu", out=str(tmp_path), name="run", progress=False)


def test_short_training_learns_and_saves_a_run(fmnist, tmp_path):
    data = fmnist.subset(6000, 2000)
    result = train(_config(tmp_path), data=data)
    assert result.final.accuracy > 0.75  # chance is 0.10
    assert result.history[-1].train_loss < result.history[0].train_loss
    run = result.run_dir
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.csv", "model.safetensors", "samples.safetensors",
                                                     "summary.json", "train_state.pt"]  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 0 and config["recipe"]["epochs"] == 2 and config["data"]["sha256"] == data.sha256 != fmnist.sha256
    assert config["environment"]["torch"] == torch.__version__
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,train_accuracy,eval_split,eval_loss,eval_accuracy") and len(lines) == 3
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["correct"] == result.final.correct and summary["test"]["total"] == 2000
    # The saved weights are the final model.
    loaded = load(run)
    x = data.test_images[:50].float() / 255
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))


def test_same_seed_gives_bit_identical_weights_on_cpu(fmnist, tmp_path):
    data = fmnist.subset(1024, 256)
    a = train(replace(_config(tmp_path, epochs=1), save=False), data=data).model.net.state_dict()
    b = train(replace(_config(tmp_path, epochs=1), save=False), data=data).model.net.state_dict()
    c = train(replace(_config(tmp_path, epochs=1), seed=1, save=False), data=data).model.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv.0.weight"], c["conv.0.weight"])


def test_an_existing_run_is_never_overwritten(fmnist, tmp_path):
    data = fmnist.subset(256, 64)
    first = train(_config(tmp_path, epochs=1), data=data).run_dir
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    with pytest.raises(LenetError, match="already exists"):
        train(_config(tmp_path, epochs=1), data=data)
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


def test_seed_recipe_is_the_tutorial():
    seed = get_recipe("seed")
    assert (seed.model, seed.optimizer, seed.lr, seed.batch_size, seed.epochs) == ("lenet", "adam", 0.01, 64, 5)
    assert (seed.weight_decay, seed.schedule, seed.label_smoothing) == (0.0, "constant", 0.0)
    assert (seed.shift, seed.flip, seed.test_flip, seed.test_shift) == (0, False, False, 0)


def test_a_recipe_saved_before_test_shift_existed_reads_back_without_it():
    from lenet.training.recipes import Recipe

    saved = {k: v for k, v in get_recipe("default").to_dict().items() if k != "test_shift"}
    assert Recipe.from_dict(saved, "config.json").test_shift == 0  # resumed as started: mirror averaging only
    assert Recipe.from_dict(get_recipe("default").to_dict(), "config.json") == get_recipe("default")


def test_compile_falls_back_to_eager_with_a_warning(fmnist, tmp_path, monkeypatch):
    def broken_compile(model):
        def forward(x):
            raise RuntimeError("no C++ compiler")

        return forward

    monkeypatch.setattr(torch, "compile", broken_compile)
    data = fmnist.subset(512, 128)
    seen = []
    eager = train(replace(_config(tmp_path, epochs=1), save=False), data=data)
    config = replace(_config(tmp_path, epochs=1), save=False, engine=Engine(compile=True))
    fallback = train(config, data=data, on_warning=seen.append)
    assert len(seen) == 1 and "--compile is unavailable here (RuntimeError)" in seen[0]
    assert fallback.warnings == seen  # kept with the run (summary.json), not only shown
    a, b = eager.model.state_dict(), fallback.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the failed attempt changed nothing


def test_chance_after_a_single_step_is_not_blamed_on_saturation(fmnist, tmp_path):
    data = fmnist.subset(256, 200)
    seen = []
    config = replace(_config(tmp_path, model="lenet", epochs=1, batch_size=256, schedule="constant"), save=False)
    result = train(config, data=data, on_warning=seen.append)
    assert result.history[0].eval_accuracy < 0.15  # one update from random weights (seed 0: 8.0%)
    assert len(seen) == 1 and "single step" in seen[0] and "saturated" not in seen[0]
    assert "all 256 training images" in seen[0]


def test_eval_every_judges_only_the_epochs_asked_and_trains_the_same_weights(fmnist, tmp_path):
    from lenet.insight.report import write_report
    from lenet.runs.metrics import read_metrics

    data = fmnist.subset(1500, 300)
    every_epoch = train(replace(_config(tmp_path / "a", epochs=3), engine=Engine(threads=1)), data=data)
    config = replace(_config(tmp_path / "b", epochs=3), engine=Engine(threads=1), eval_every=2)
    sparse = train(config, data=data)
    assert [row.eval_accuracy is not None for row in sparse.history] == [False, True, True]  # epoch 2, and the last
    assert [row.eval_accuracy for row in sparse.history[1:]] == [row.eval_accuracy for row in every_epoch.history[1:]]
    assert sparse.history[0].eval_seconds == 0.0
    for a, b in zip(every_epoch.model.state_dict().values(), sparse.model.state_dict().values()):
        assert torch.equal(a, b)  # judging changes nothing in the training
    assert sparse.final.correct == every_epoch.final.correct

    rows = read_metrics(sparse.run_dir)  # an unjudged epoch is an empty cell, read back as NaN
    assert (sparse.run_dir / "metrics.csv").read_text().splitlines()[1].split(",")[4:6] == ["", ""]
    assert rows[0]["test_accuracy"] != rows[0]["test_accuracy"] and rows[1]["test_accuracy"] > 0
    assert json.loads((sparse.run_dir / "config.json").read_text())["eval_every"] == 2
    report = write_report(sparse.run_dir, data)  # the best epoch and the curves skip what was not judged
    assert f"(epoch {max(2, 3, key=lambda e: rows[e - 1]['test_accuracy'])})" in report.path.read_text()

    last_only = train(replace(_config(tmp_path / "c", epochs=2), engine=Engine(threads=1), eval_every=0), data=data)
    assert [row.eval_accuracy is not None for row in last_only.history] == [False, True]


def test_alternating_flips_mirror_a_fixed_half_then_the_other_half(tmp_path):
    from lenet.models.lenet import create_model
    from lenet.training.loop import alternated
    from lenet.training.state import start_state

    def state(**recipe):
        return start_state(_config(tmp_path, **recipe), create_model("lenet_bn"), 1000, 16, torch.device("cpu"))

    everyone = torch.arange(1000)
    alternating = state(alternate_flips=True)
    half = alternating.flip_half
    assert half.dtype == torch.bool and 400 < int(half.sum()) < 600
    assert torch.equal(alternated(alternating, everyone, 1), half)
    assert torch.equal(alternated(alternating, everyone, 2), ~half)  # two epochs in a row: both sides of each image
    assert torch.equal(alternated(alternating, everyone, 3), half)
    assert torch.equal(alternated(alternating, everyone[7:20], 4), ~half[7:20])
    assert torch.equal(state(alternate_flips=True).flip_half, half)  # from the seed alone: a resume redraws it
    assert not torch.equal(start_state(replace(_config(tmp_path, alternate_flips=True), seed=1), create_model("lenet_bn"),
                                       1000, 16, torch.device("cpu")).flip_half, half)  # fmt: skip
    assert state().flip_half is None and alternated(state(), everyone, 1) is None  # fresh coins
    assert state(alternate_flips=True, flip=False).flip_half is None


def test_alternating_flips_train_other_weights_and_resume_bit_identically(fmnist, tmp_path):
    from lenet.core.errors import Interrupted
    from lenet.training.resume import resume_config

    data = fmnist.subset(1536, 300)
    config = lambda name, **kw: replace(_config(tmp_path / name, batch_size=256, **kw), engine=Engine(threads=1))  # noqa: E731
    whole = train(config("whole", alternate_flips=True), data=data)
    coins = train(config("coins"), data=data)
    assert json.loads((whole.run_dir / "config.json").read_text())["recipe"]["alternate_flips"] is True

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        train(config("cut", alternate_flips=True), data=data, on_epoch=stop)  # after epoch 1's writes
    run = tmp_path / "cut" / "run"
    resumed = train(resume_config(run, progress=False), data=data, resume=run)
    a, b, c = (r.model.state_dict() for r in (whole, resumed, coins))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_training_state_saved_before_the_cuda_generator_was_restores_and_a_cpu_state_has_none(tmp_path):
    from lenet.models.lenet import create_model
    from lenet.training.state import start_state

    state = start_state(_config(tmp_path), create_model("lenet_bn"), 1000, 8, torch.device("cpu"))
    from lenet.runs.state import TrainStateRecord

    saved = state.to_record().model_dump(by_alias=True)
    assert saved["rng"]["cuda"] is None  # on the CPU there is no device generator to save
    del saved["rng"]["cuda"]  # a train_state.pt from before the CUDA generator was saved
    saved["epoch"] = 2
    fresh = start_state(_config(tmp_path), create_model("lenet_bn"), 1000, 8, torch.device("cpu"))
    fresh.restore(TrainStateRecord.model_validate(saved))
    assert fresh.epoch == 2 and torch.equal(fresh.shuffle.get_state(), state.shuffle.get_state())


class CudaLikeGenerator:
    """A stand-in for a CUDA torch.Generator on a machine without one: its device is cuda, and set_state
    takes only a CPU uint8 tensor, as CUDA's does (PyTorch's check_rng_state: "RNG state must be a
    torch.ByteTensor"); the states themselves are a CPU generator's."""

    device = torch.device("cuda")

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        if state.device.type != "cpu" or state.dtype != torch.uint8:
            raise TypeError("RNG state must be a torch.ByteTensor")
        self.generator.set_state(state)


def test_the_augmentation_generator_of_a_cuda_run_restores_from_its_cpu_state(tmp_path):
    """A CUDA run's augmentation generator takes its saved state as the CPU tensor it was saved as; moving it
    to the generator's device first refused every --resume on a GPU."""
    from lenet.models.lenet import create_model
    from lenet.training.state import start_state

    state = start_state(_config(tmp_path), create_model("lenet_bn"), 1000, 8, torch.device("cpu"))
    state.augment_rng = CudaLikeGenerator(1)
    torch.rand(5, generator=state.augment_rng.generator)  # a state other than the fresh one's
    saved = state.to_record()
    fresh = start_state(_config(tmp_path), create_model("lenet_bn"), 1000, 8, torch.device("cpu"))
    fresh.augment_rng = CudaLikeGenerator(2)
    fresh.restore(saved)
    assert torch.equal(fresh.augment_rng.get_state(), saved.rng.augment)
