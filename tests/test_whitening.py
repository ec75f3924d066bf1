"""The frozen patch-whitening first convolution (recipe field `whiten`)."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from lenet import TrainConfig, get_recipe, train
from lenet.core.errors import Interrupted, LenetError
from lenet.models.whitening import patch_covariance, whitening_filters
from lenet.training.engine import Engine
from lenet.training.recipes import WHITEN_EPS


def _config(tmp_path, **recipe):
    base = replace(get_recipe("fast"), **{"epochs": 2, "batch_size": 128, "whiten": True, **recipe})
    return TrainConfig(recipe=base, recipe_name="fast", device="cpu", out=str(tmp_path), name="run", progress=False,
                       engine=Engine(threads=1))  # fmt: skip


def test_whitening_filters_decorrelate_the_patches_along_their_leading_directions(fmnist):
    conv = nn.Conv2d(1, 16, 5, padding=2)
    images = fmnist.train_images[:400].float() / 255
    covariance = patch_covariance(images, conv, nn.Identity())
    direct = torch.cov(nn.functional.unfold(images, 5, padding=2).transpose(1, 2).reshape(-1, 25).double().T, correction=0)
    assert torch.allclose(covariance, direct, rtol=1e-6, atol=1e-9)  # chunked, the same covariance
    filters = whitening_filters(covariance, 16, (1, 5, 5), WHITEN_EPS)
    assert filters.shape == (16, 1, 5, 5)
    flat = filters.reshape(16, 25).double()
    assert torch.allclose(flat[8:], -flat[:8])  # each direction with both signs
    # The filters' outputs over the patches: uncorrelated, each of variance eigenvalue / (eigenvalue + eps).
    eigenvalues = torch.linalg.eigvalsh(covariance).flip(0)[:8]
    outputs = flat[:8] @ covariance @ flat[:8].T
    assert torch.allclose(outputs, torch.diag(eigenvalues / (eigenvalues + WHITEN_EPS)), atol=1e-6)
    assert eigenvalues[0] > eigenvalues[7] > 0  # the leading directions, in order


def test_whitening_refuses_an_odd_or_too_wide_first_convolution():
    covariance = torch.eye(25, dtype=torch.float64)
    with pytest.raises(LenetError, match="even number of channels"):
        whitening_filters(covariance, 15, (1, 5, 5), WHITEN_EPS)
    with pytest.raises(LenetError, match="at most 50 channels"):
        whitening_filters(covariance, 52, (1, 5, 5), WHITEN_EPS)


def test_a_whitened_first_convolution_stays_frozen_in_training_and_the_rest_learns(fmnist, tmp_path):
    from lenet.training.build import build_model

    data = fmnist.subset(1024, 256)
    config = replace(_config(tmp_path, epochs=1), save=False)
    torch.manual_seed(config.seed)
    built = build_model(config.recipe, data.spec, data.train_images).net  # as train() builds it, before any step
    # The first convolution is the whitening of the training images' patches, normalised as the network does.
    covariance = patch_covariance(data.train_images.float() / 255, built.conv[0], built.normalize)
    assert torch.allclose(built.conv[0].weight, whitening_filters(covariance, 16, (1, 5, 5), WHITEN_EPS))
    assert torch.equal(built.conv[0].bias, torch.zeros(16)) and not built.conv[0].weight.requires_grad
    trained = train(config, data=data).model.net
    before, after = built.state_dict(), trained.state_dict()
    assert all(torch.equal(after[f"conv.0.{name}"], before[f"conv.0.{name}"]) for name in ("weight", "bias"))
    assert not torch.equal(after["conv.4.weight"], before["conv.4.weight"])  # the second convolution learnt
    assert not torch.equal(after["fc.0.weight"], before["fc.0.weight"])


def test_a_whitened_run_learns_records_the_field_and_resumes_bit_identically(fmnist, tmp_path):
    from lenet.training.resume import resume_config

    data = fmnist.subset(3000, 1000)
    whole = train(_config(tmp_path / "whole"), data=data)
    assert whole.final.accuracy > 0.7  # chance is 0.10
    assert json.loads((whole.run_dir / "config.json").read_text())["recipe"]["whiten"] is True

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        train(_config(tmp_path / "cut"), data=data, on_epoch=stop)  # after epoch 1's writes
    run = tmp_path / "cut" / "run"
    resumed = train(resume_config(run, progress=False), data=data, resume=run)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
