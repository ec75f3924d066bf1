"""Issue 30's levers (random erasing, a moving average of the weights, distillation from a teacher run):
each changes what a run learns, each is off by default, and each resumes bit-identically."""

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import LENET, REPO
from lenet import TrainConfig, get_recipe, load, train
from lenet.core.errors import Interrupted, LenetError
from lenet.core.text import rounded
from lenet.training.augment import erase
from lenet.runs.checkpoint import save_model
from lenet.training.ema import WeightAverage
from lenet.training.engine import Engine
from lenet.training.metrics import evaluate
from lenet.training.objective import Objective, distillation_loss
from lenet.training.recipes import RECIPES, Recipe
from lenet.training.resume import resume_config
from lenet.runs.state import read_train_state


@pytest.fixture(scope="module")
def data(fmnist):
    return fmnist.subset(1536, 300)


def _config(out: Path, name: str = "run", **recipe) -> TrainConfig:
    base = replace(get_recipe("default"), **{"model": "lenet_bn", "epochs": 2, "batch_size": 256, **recipe})
    return TrainConfig(recipe=base, device="cpu", out=str(out), name=name, progress=False, engine=Engine(threads=1))


def _weights(result) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in result.model.net.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _stop_after_epoch_1(row):
    raise KeyboardInterrupt


def _interrupted_and_resumed(config: TrainConfig, data):
    """The run cut after epoch 1 (a Ctrl-C after its writes), then resumed from its own config.json."""
    with pytest.raises(Interrupted):
        train(config, data=data, on_epoch=_stop_after_epoch_1)
    run = Path(config.out) / config.name
    assert read_train_state(run).epoch == 1  # the fault landed after epoch 1's records
    # A distilling run's teacher is named again by the caller, as `lenet train --resume RUN --teacher T` does.
    return train(resume_config(run, config.recipe.teacher or None, progress=False), data=data, resume=run)


@pytest.fixture(scope="module")
def plain(data, tmp_path_factory):
    """The default recipe (shrunk) with no lever: what each lever must differ from."""
    return train(_config(tmp_path_factory.mktemp("plain")), data=data)


def test_levers_are_off_in_every_recipe():
    for recipe, _ in RECIPES.values():
        assert (recipe.erase, recipe.ema_decay, recipe.teacher) == (0.0, 0.0, "")


# --- random erasing -------------------------------------------------------------------


def test_erase_blanks_one_rectangle_of_the_drawn_size_per_image():
    images = torch.full((64, 1, 28, 28), 200, dtype=torch.uint8)
    out = erase(images, 1.0, (0.25, 0.25), (1.0, 1.0), "zero", torch.Generator().manual_seed(0))
    assert torch.equal(images, torch.full_like(images, 200))  # the input is left as it was
    blank = out == 0
    assert (blank.sum(dim=(1, 2, 3)) == 14 * 14).all()  # a quarter of 28x28, square
    rows, cols = blank.any(dim=3).squeeze(1), blank.any(dim=2).squeeze(1)
    assert (rows.sum(1) == 14).all() and (cols.sum(1) == 14).all()  # one rectangle: 14 rows x 14 columns
    places = {(int(r.nonzero()[0]), int(c.nonzero()[0])) for r, c in zip(rows, cols)}
    assert len(places) > 10  # at random places
    again = erase(images, 1.0, (0.25, 0.25), (1.0, 1.0), "zero", torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the generator decides everything
    assert torch.equal(erase(images, 0.0, (0.02, 0.33), (0.3, 3.3), "zero", torch.Generator()), images)
    half = erase(images, 0.5, (0.1, 0.2), (0.3, 3.3), "zero", torch.Generator().manual_seed(1))
    assert 16 < (half == 0).flatten(1).any(1).sum() < 48  # about half of the images
    noisy = erase(images.float() / 255, 1.0, (0.25, 0.25), (1.0, 1.0), "noise", torch.Generator().manual_seed(0))
    assert ((noisy != 200 / 255).flatten(1).sum(1) >= 14 * 14 - 3).all()  # random pixels, hardly ever the old value


def test_erasing_trains_other_weights_and_resumes_bit_identically(data, plain, tmp_path):
    config = _config(tmp_path, "whole", erase=0.5, erase_fill="noise")
    whole = train(config, data=data)
    assert json.loads((whole.run_dir / "config.json").read_text())["recipe"]["erase"] == 0.5
    assert not _same(_weights(whole), _weights(plain))  # the lever does something
    resumed = _interrupted_and_resumed(replace(config, name="cut"), data)
    assert _same(_weights(whole), _weights(resumed))


# --- the moving average of the weights --------------------------------------------------


def test_weight_average_follows_the_network_with_warm_up():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(net, 0.9)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(4.0)
        net[1].num_batches_tracked.fill_(7)
    assert average.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the start fades fast
    average.update(net)
    assert torch.allclose(average.net[0].weight, start + 0.9)
    assert torch.allclose(average.net[1].running_mean, torch.full((2,), 3.6))  # statistics are averaged too
    assert int(average.net[1].num_batches_tracked) == 7  # counts are copied
    average.updates = 10_000
    assert average.current_decay() == 0.9
    assert not any(p.requires_grad for p in average.net.parameters())


def test_the_average_is_judged_saved_and_resumed(data, plain, tmp_path):
    config = _config(tmp_path, "whole", ema_decay=0.95, bn_momentum=0.5)
    whole = train(config, data=data)
    run = whole.run_dir
    state = read_train_state(run)
    saved = load(run)  # model.safetensors: the average, not the last step's weights
    assert _same({k: v for k, v in saved.net.state_dict().items()}, {k: v.cpu() for k, v in state.ema["net"].items()})
    assert not _same(saved.net.state_dict(), state.model)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] == rounded(evaluate(saved, data.test_images, data.test_labels).accuracy)
    assert state.ema["updates"] == 2 * 6  # one update a step: 1536 images in batches of 256, two epochs
    assert not _same(_weights(whole), _weights(plain))
    resumed = _interrupted_and_resumed(replace(config, name="cut"), data)
    assert _same(_weights(whole), _weights(resumed))
    cut_state = read_train_state(Path(config.out) / "cut")
    assert _same(cut_state.model, state.model) and _same(cut_state.ema["net"], state.ema["net"])


# --- distillation ----------------------------------------------------------------------


def test_distillation_loss_is_hintons_scaled_kl():
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    assert distillation_loss(teacher, teacher, 4.0).abs() < 1e-6  # nothing to learn from oneself
    t = 3.0
    p = torch.softmax(teacher / t, 1)
    expected = (p * (p.log() - torch.log_softmax(student / t, 1))).sum(1).mean() * t * t
    assert torch.allclose(distillation_loss(student, teacher, t), expected, atol=1e-6)
    y = torch.randint(0, 10, (8,))
    blended = Objective(0.1, lambda x: teacher, 0.25, t)(student, None, y)
    hard = Objective(0.1)(student, None, y)
    assert torch.allclose(blended, 0.75 * hard + 0.25 * expected, atol=1e-6)


@pytest.fixture(scope="module")
def teacher_run(data, tmp_path_factory):
    """A (tiny) teacher trained by lenet: a wider registry model than the student."""
    out = tmp_path_factory.mktemp("teacher")
    return train(_config(out, "T", model="lenet_wide_pn", epochs=1), data=data).run_dir


def test_a_teacher_changes_the_student_and_is_recorded(data, plain, teacher_run, tmp_path):
    student = train(_config(tmp_path, "student", teacher=str(teacher_run)), data=data)
    assert not _same(_weights(student), _weights(plain))  # the teacher's soft targets moved the student
    record = json.loads((student.run_dir / "config.json").read_text())
    digest = hashlib.sha256((teacher_run / "model.safetensors").read_bytes()).hexdigest()
    assert record["teacher"] == {"path": str(teacher_run), "weights": str(teacher_run / "model.safetensors"),
                                 "sha256": digest}  # fmt: skip
    assert record["recipe"]["teacher"] == str(teacher_run)
    # Weight 0: the teacher runs, but the loss is the hard one alone, so the weights are the plain run's.
    silent = train(_config(tmp_path, "silent", teacher=str(teacher_run), distill_weight=0.0), data=data)
    assert _same(_weights(silent), _weights(plain))
    assert "teacher" not in json.loads((plain.run_dir / "config.json").read_text())


def test_a_teacher_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Recipe(teacher="runs/T").teacher == str(tmp_path / "runs" / "T")
    assert Recipe().teacher == ""


def test_a_distilling_run_resumes_bit_identically_and_refuses_a_changed_teacher(data, teacher_run, tmp_path):
    teacher_dir = tmp_path / "T"
    shutil.copytree(teacher_run, teacher_dir)
    config = _config(tmp_path, "whole", teacher=str(teacher_dir), distill_temperature=2.0)
    whole = train(config, data=data)
    resumed = _interrupted_and_resumed(replace(config, name="cut"), data)
    assert _same(_weights(whole), _weights(resumed))

    with pytest.raises(Interrupted):
        train(replace(config, name="second"), data=data, on_epoch=_stop_after_epoch_1)
    teacher = load(teacher_dir)
    with torch.no_grad():
        teacher.net.fc[-1].bias.add_(0.5)
    save_model(teacher, teacher_dir / "model.safetensors")  # the teacher retrained, or replaced
    second = tmp_path / "second"
    with pytest.raises(LenetError, match="restore that teacher, or start a new run"):
        resume_config(second, str(teacher_dir))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cli = subprocess.run([*LENET, "train", "--resume", str(second), "--teacher", str(teacher_dir), "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert cli.returncode == 1 and cli.stdout == ""
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "learnt from teacher" in lines[0] and "Traceback" not in cli.stderr
    assert read_train_state(second).epoch == 1  # nothing trained, nothing lost
    # train() itself checks too, for a caller that skips resume_config.
    with pytest.raises(LenetError, match="learnt from teacher"):
        train(replace(config, name="second"), data=data, resume=second)


def test_a_resume_never_reads_the_teacher_path_in_config_json(data, teacher_run, tmp_path):
    """config.json's teacher is a path a run's file would choose: a resume takes the teacher from the caller
    (--teacher), checked by its weights' digest, and refuses to go on without one."""
    teacher_dir = tmp_path / "T"
    shutil.copytree(teacher_run, teacher_dir)
    config = _config(tmp_path, "cut", teacher=str(teacher_dir), distill_temperature=2.0)
    with pytest.raises(Interrupted):
        train(config, data=data, on_epoch=_stop_after_epoch_1)
    run = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cli = subprocess.run([*LENET, "train", "--resume", str(run), "--no-progress"], capture_output=True, text=True,
                         env=env, timeout=120)  # fmt: skip
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1 and "name the teacher again with --teacher" in cli.stderr
    assert read_train_state(run).epoch == 1  # nothing trained, nothing lost
    moved = tmp_path / "moved"  # the teacher elsewhere now: config.json's path names nothing
    teacher_dir.rename(moved)
    resumed = train(resume_config(run, str(moved), progress=False), data=data, resume=run)
    assert len(resumed.history) == config.recipe.epochs
    with pytest.raises(LenetError, match="was not distilled from a teacher; drop --teacher"):
        resume_config(train(_config(tmp_path, "plain"), data=data).run_dir, str(moved))


def test_cli_refuses_a_missing_teacher_before_anything(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cli = subprocess.run([*LENET, "train", "--teacher", str(tmp_path / "nope"), "--out", str(tmp_path / "runs"),
                          "--no-progress"], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert cli.returncode == 1 and cli.stdout == ""
    assert cli.stderr.strip() == f"lenet train: error: teacher {tmp_path / 'nope'}: no such run directory or checkpoint file"
    assert not (tmp_path / "runs").exists()


def test_a_sweep_space_varies_the_teacher_like_any_field(teacher_run, tmp_path, monkeypatch):
    from lenet.sweep.space import configurations, parse_space

    monkeypatch.chdir(teacher_run.parent)
    space = parse_space({"vary": {"teacher": ["T", ""], "distill_weight": [0.3, 0.7]}}, "space")
    planned = configurations(space)  # as plan.json keeps them: absolute, whatever directory a trial runs in
    assert sorted({c["teacher"] for c in planned}) == ["", str(teacher_run)]
    assert {c["distill_weight"] for c in planned} == {0.3, 0.7}
    with pytest.raises(LenetError, match="distill-weight"):
        parse_space({"vary": {"distill_weight": [1.5]}}, "space")


def test_the_registry_has_a_lenet_shaped_teacher_of_1_to_2_million_parameters():
    from lenet.models.lenet import LeNet, count_parameters, create_model

    teacher = create_model("lenet_48x96_pn")
    assert type(teacher) is LeNet and 1_000_000 <= count_parameters(teacher) == 1_480_042 <= 2_000_000
    assert teacher(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_the_step_gives_the_teacher_the_students_batch_without_gradients():
    from lenet.models.lenet import create_model
    from lenet.training.engine import Step

    net = create_model("lenet_bn")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    seen = []

    def teacher(x):
        seen.append((x, torch.is_grad_enabled()))
        return torch.zeros(len(x), 10)

    step = Step(net, optimizer, None, Engine(threads=1), objective=Objective(0.0, teacher, 1.0, 2.0))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loss, _ = step(x, y)
    assert len(seen) == 1 and seen[0][0] is x and seen[0][1] is False
    # Weight 1 against a uniform teacher: the loss is the soft one alone, T^2 KL(uniform || student).
    with torch.no_grad():
        expected = distillation_loss(torch.func.functional_call(net, before, (x,)), torch.zeros(8, 10), 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
