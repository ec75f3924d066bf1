"""An exponential moving average of a network's weights, which a recipe with `ema_decay` judges,
evaluates and saves as its model (Polyak averaging; airbench's lookahead is a cousin).

Batch norm's running statistics are averaged with the weights (as timm's ModelEmaV2 does), so the
averaged network's normalisation follows its averaged weights; integer buffers (batch counts) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lenet.training.recipes import EMA_WARMUP


class WeightAverage:
    def __init__(self, net: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        # A copy of the network as it is now (its device and memory format); never trained, never in train mode.
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay of the next update: small over the first steps, so the random start fades fast."""
        low, high = EMA_WARMUP
        return min(self.decay, (low + self.updates) / (high + self.updates))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average towards `net`'s weights and statistics by one step."""
        weight = 1 - self.current_decay()
        source = net.state_dict()
        floats, targets = [], []
        for key, average in self.net.state_dict().items():
            if average.is_floating_point():
                targets.append(average)
                floats.append(source[key])
            else:
                average.copy_(source[key])
        torch._foreach_lerp_(targets, floats, weight)  # one kernel per dtype group; PyTorch's own swa_utils call it
        self.updates += 1

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "updates": self.updates}

    def load_state_dict(self, saved: dict) -> None:
        self.net.load_state_dict(saved["net"])
        self.updates = int(saved["updates"])
