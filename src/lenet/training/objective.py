"""The training loss: cross-entropy on the labels (with label smoothing), blended with a teacher's soft
targets when the recipe distils (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network").

The engine's step calls an `Objective` inside its forward-and-backward, which the eager step and the
CUDA-graph capture share, so the teacher's forward is captured with the student's: one loss path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Objective:
    label_smoothing: float = 0.0
    # The teacher's logits (float32) for a float batch; run here under no_grad. None: no distillation.
    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None
    distill_weight: float = 0.5
    temperature: float = 4.0

    def __call__(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's mean loss for the student's `logits` on the float batch `x` with labels `y`."""
        hard = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if self.teacher is None:
            return hard
        with torch.no_grad():
            target = self.teacher(x)
        soft = distillation_loss(logits, target, self.temperature)
        return (1 - self.distill_weight) * hard + self.distill_weight * soft


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher's softmax(z / T) || student's), mean over the batch, times T^2: Hinton's scaling, which
    keeps the soft targets' gradients as large as the hard loss's whatever the temperature."""
    log_student = F.log_softmax(student.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2
