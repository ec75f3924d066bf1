"""On a CUDA GPU (benchmarks/gpu.sh runs these there): the same training and figures as on the CPU.

Skipped where this PyTorch sees no CUDA GPU, as on the project's CI machine.
"""

from dataclasses import replace

import pytest
import torch

from conftest import small_subset
from lenet import TrainConfig, evaluate, get_recipe, load, train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu.sh)")]  # fmt: skip


def test_training_on_the_gpu_learns_and_saves_a_run_the_cpu_loads(fmnist, tmp_path):
    recipe = replace(get_recipe("default"), model="lenet_bn", epochs=2)
    config = TrainConfig(recipe=recipe, device="cuda", out=str(tmp_path), name="gpu", progress=False)
    result = train(config, data=small_subset(fmnist, 6000, 1000))
    assert result.final.accuracy > 0.75 and next(result.model.parameters()).is_cuda
    on_cpu = load(result.run_dir, "cpu")
    cpu_figure = evaluate(on_cpu, fmnist.test_images[:1000], fmnist.test_labels[:1000])
    assert abs(cpu_figure.accuracy - result.final.accuracy) <= 0.002  # float rounding may flip an image or two


def test_bf16_autocast_on_the_gpu_trains(fmnist, tmp_path):
    recipe = replace(get_recipe("default"), model="lenet_bn", epochs=1)
    config = TrainConfig(recipe=replace(recipe, precision="bf16"), device="cuda", save=False, progress=False)
    assert train(config, data=small_subset(fmnist, 6000, 1000)).final.accuracy > 0.7
