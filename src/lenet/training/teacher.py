"""The teacher of a distilling run: loaded from a lenet run (or checkpoint), named by its weights' digest.

config.json records the teacher's identity (its weights file and that file's SHA-256); a resume
computes the digest again and refuses a teacher whose weights changed, since the run would then
go on learning from another model than the one it began with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from lenet.core.errors import CheckpointError, LenetError
from lenet.data.registry import DataSpec
from lenet.models.lenet import LeNet
from lenet.runs.checkpoint import load, resolve_weights
from lenet.runs.config import TeacherRecord
from lenet.training.engine import Engine, forward_fn, prepare

DIGEST_CHUNK = 2**20  # bytes read at a time while hashing the weights


@dataclass(frozen=True)
class TeacherIdentity:
    path: str  # the recipe's teacher: a run directory or a .safetensors file, absolute
    weights: str  # the weights file read
    sha256: str  # of the weights file's bytes

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def teacher_identity(teacher: str) -> TeacherIdentity:
    """Who the teacher is, from its weights on disk; a missing or unreadable one is one CheckpointError."""
    try:
        weights = resolve_weights(teacher)
    except CheckpointError as e:
        raise CheckpointError(f"teacher {e}") from None
    digest = hashlib.sha256()
    try:
        with open(weights, "rb") as f:
            while chunk := f.read(DIGEST_CHUNK):
                digest.update(chunk)
    except OSError as e:
        raise CheckpointError(f"teacher {weights}: unreadable ({e.strerror})") from None
    return TeacherIdentity(teacher, str(weights), digest.hexdigest())


def load_teacher(teacher: str, data: DataSpec, device: torch.device) -> tuple[LeNet, TeacherIdentity]:
    """The teacher's network (eval mode, on `device`, frozen) and its identity, read from the same bytes' file."""
    identity = teacher_identity(teacher)
    try:
        model = load(identity.weights, device)
    except CheckpointError as e:
        raise CheckpointError(f"teacher {e}") from None
    if model.data.classes != data.classes:
        raise LenetError(f"teacher {teacher} knows the classes of {model.data.name}, not those of {data.name}; "
                         "distil from a teacher trained on the same data set")  # fmt: skip
    net = model.net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, identity


def teacher_forward(net: LeNet, engine: Engine, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The teacher's logits for a float batch: its network alone (no test-time views), in the student's
    precision and memory format; never compiled (a second compiled model would double the start-up)."""
    prepare(net, replace(engine, threads=None, keep_memory=False))
    return forward_fn(net, replace(engine, compile=False), precision)


def check_teacher_unchanged(run_dir: str | Path, recorded: TeacherRecord | None, teacher: str) -> TeacherIdentity:
    """The teacher's identity now, if it is the one config.json recorded when the run began; else one LenetError."""
    now = teacher_identity(teacher)
    if recorded is None:
        raise CheckpointError(f"{run_dir}: config.json names a teacher but not the SHA-256 of its weights, "
                              "so a resume cannot check it is the same one")  # fmt: skip
    if recorded.sha256 != now.sha256:
        raise LenetError(f"{run_dir} learnt from teacher {teacher} with weights SHA-256 {recorded.sha256[:12]}..., "
                         f"which are now {now.sha256[:12]}...: restore that teacher, or start a new run")  # fmt: skip
    return now
