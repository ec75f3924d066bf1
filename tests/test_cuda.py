"""On a CUDA GPU (benchmarks/gpu.sh runs these there): the same training and figures as on the CPU.

Skipped where this PyTorch sees no CUDA GPU, as on the project's CI machine.
"""

import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from conftest import REPO
from test_engine import graph_steps
from test_resume import same_run
from lenet import TrainConfig, evaluate, get_recipe, load, train
from lenet.training.engine import Engine

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu.sh)")]  # fmt: skip


def test_training_on_the_gpu_learns_and_saves_a_run_the_cpu_loads(fmnist, tmp_path):
    recipe = replace(get_recipe("default"), model="lenet_bn", epochs=2)
    config = TrainConfig(recipe=recipe, device="cuda", out=str(tmp_path), name="gpu", progress=False)
    result = train(config, data=fmnist.subset(6000, 1000))
    assert result.final.accuracy > 0.75 and next(result.model.parameters()).is_cuda
    on_cpu = load(result.run_dir, "cpu")
    cpu_figure = evaluate(on_cpu, fmnist.test_images[:1000], fmnist.test_labels[:1000])
    assert abs(cpu_figure.accuracy - result.final.accuracy) <= 0.002  # float rounding may flip an image or two


def test_bf16_autocast_on_the_gpu_trains(fmnist, tmp_path):
    recipe = replace(get_recipe("default"), model="lenet_bn", epochs=1)
    config = TrainConfig(recipe=replace(recipe, precision="bf16"), device="cuda", save=False, progress=False)
    assert train(config, data=fmnist.subset(6000, 1000)).final.accuracy > 0.7


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_cuda_graph_step_trains_as_the_eager_step(precision):
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        eager, _, eager_losses = graph_steps("cuda", cuda_graph=False, precision=precision)
        graphed, step, losses = graph_steps("cuda", cuda_graph=True, precision=precision)
    assert step.graph is not None  # captured after the warm-up, replayed, and a short batch ran eagerly between
    # Adam turns rounding differences in near-zero gradients into steps of up to the lr (4e-4 to 1e-2 over
    # these seven steps): an H200 showed 1.2e-4 between the two with cuDNN free to pick nondeterministic
    # kernels. A replay whose gradients the optimizer missed would be off by about the lr on most weights.
    tolerance = {"rtol": 1e-3, "atol": 1e-4} if precision == "fp32" else {"rtol": 2e-3, "atol": 2e-4}
    torch.testing.assert_close(losses, eager_losses, **tolerance)
    for a, b in zip(graphed.state_dict().values(), eager.state_dict().values()):
        torch.testing.assert_close(a, b, **tolerance)


def assert_graph_trains_as_eagerly(recipe, data) -> None:
    """Two runs of `recipe`, eager and with the CUDA graph: each epoch's loss and accuracy agree."""
    figures = []
    for graph in (False, True):
        config = TrainConfig(recipe=recipe, device="cuda", save=False, progress=False, engine=Engine(cuda_graph=graph))
        figures.append(train(config, data=data).history)
    for eager, graphed in zip(*figures):
        assert abs(eager.train_loss - graphed.train_loss) < 5e-3
        assert abs(eager.eval_accuracy - graphed.eval_accuracy) <= 0.01


def test_training_with_a_cuda_graph_matches_eager_training(fmnist):
    recipe = replace(get_recipe("fast"), epochs=2)
    data = fmnist.subset(6000, 1000)  # 6000 / 256: 23 full batches and a short one per epoch
    assert_graph_trains_as_eagerly(recipe, data)


def test_the_levers_train_as_a_cuda_graph_as_eagerly(fmnist, tmp_path):
    """Erasing and the moving average run beside the graph; the teacher's forward is captured with the step."""
    data = fmnist.subset(6000, 1000)
    base = replace(get_recipe("fast"), epochs=2)
    teacher = TrainConfig(recipe=replace(base, epochs=1), device="cuda", out=str(tmp_path), name="T", progress=False)
    recipe = replace(base, erase=0.5, ema_decay=0.99, bn_momentum=0.5, teacher=str(train(teacher, data=data).run_dir))
    assert_graph_trains_as_eagerly(recipe, data)


# --- a killed CUDA run resumed --------------------------------------------------------------------

# A run of the default recipe (its augmentation draws from a generator on the GPU) with deterministic
# kernels, so that two uninterrupted runs agree bit for bit; it SIGKILLs itself right after the writes of
# epoch KILL_AFTER (as a machine losing power: nothing after it runs), or, with 0, runs to its end.
CUDA_WORKER = """
import os, signal, sys
from dataclasses import replace
from lenet import TrainConfig, get_recipe, load_fashion_mnist
from lenet.training.engine import Engine
from lenet.training.loop import train
from lenet.training.records import resume_config
mode, out, name, step, kill_after = sys.argv[1:6]
data = load_fashion_mnist(download=False).subset(6000, 1000)

def say(row):
    print(f"epoch {row.epoch}", flush=True)  # after the epoch's writes: it is on disk
    if row.epoch == int(kill_after):
        os.kill(os.getpid(), signal.SIGKILL)

recipe = replace(get_recipe("default"), model="lenet_bn", epochs=4, batch_size=256)
config = TrainConfig(recipe=recipe, device="cuda", deterministic=True, out=out, name=name, progress=False, seed=7,
                     engine=Engine(cuda_graph=step == "graph"))
if mode == "start":
    train(config, data, on_epoch=say)
else:
    run = f"{out}/{name}"
    train(resume_config(run, progress=False), data, on_epoch=say, resume=run)
print("done", flush=True)
"""


def cuda_worker(mode: str, out, name: str, step: str, kill_after: int = 0) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", CUDA_WORKER, mode, str(out), name, step, str(kill_after)]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("step", ["eager", "graph"])
def test_a_killed_cuda_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, step):
    """Every generator of a CUDA run (the augmentation's is on the GPU) comes back from train_state.pt: the
    resumed run ends bit for bit as one never killed (the resume was refused outright before issue 36)."""
    whole = cuda_worker("start", tmp_path, "whole", step)
    assert whole.returncode == 0 and whole.stdout.split()[-1] == "done", whole.stderr
    killed = cuda_worker("start", tmp_path, "cut", step, kill_after=2)
    assert killed.returncode == -signal.SIGKILL and killed.stdout.split() == ["epoch", "1", "epoch", "2"], killed.stderr
    resumed = cuda_worker("resume", tmp_path, "cut", step)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ["epoch", "3", "epoch", "4", "done"], resumed.stdout
    same_run(tmp_path / "whole", tmp_path / "cut")
