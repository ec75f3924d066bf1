"""How the training step runs: memory format, layer order, fused optimizer, compilation, threads, allocator.

`Step` is the step itself (forward, loss, backward, update); `Engine` says how it runs. None
of these changes the maths beyond float rounding (bf16, which does, is the recipe's `precision`;
the step runs in it). Each fast path
falls back to the plain one where this PyTorch or device cannot take it, and each has a flag
to turn it off (BENCHMARKS.md has the measurements that chose the defaults).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from lenet.core.cpushare import fair_threads
from lenet.core.errors import LenetError
from lenet.core.text import plural
from lenet.training.objective import Objective

# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory gives them. 32 MiB is the
# largest mmap threshold glibc takes on 64-bit (HEAP_MAX_SIZE / 2), above any activation of these
# nets at the recipes' batch sizes; 1 GiB of free heap is kept before any is handed back.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 * 2**20, 2**30

# Eager steps before a CUDA graph is captured (PyTorch's own examples take three): cuDNN has picked
# its algorithms and the optimizer made its state by then, so the capture records the steady step.
GRAPH_WARMUP_STEPS = 3

# Non-decreasing activations: for these f, max(f(a), f(b)) = f(max(a, b)), so a max-pool can run first.
MONOTONIC = (nn.Sigmoid, nn.Tanh, nn.ReLU)


def _option(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class Engine:
    channels_last: bool = _option(True, "NHWC convolutions: oneDNN's fast layout on the CPU, tensor cores' on GPUs")
    fused: bool = _option(True, "the optimizer update as one kernel over all parameters")
    pool_first: bool = _option(True, "while training, max-pool before a monotonic activation (same result, "
                                     "a quarter of the activation's work)")  # fmt: skip
    compile: bool = _option(False, "torch.compile the model (slow start)")
    # On an H200 it cut a step 4-5 fold (seed recipe 2.25 -> 0.48 ms, default 4.44 -> 1.07; BENCHMARKS.md, GPU).
    cuda_graph: bool = _option(True, "on a CUDA GPU, capture the step's forward, loss and backward as one CUDA graph "
                                     "after a few eager steps, and replay it: one launch in place of dozens")  # fmt: skip
    threads: int | None = _option(None, "CPU threads for the run", low=1, shown="PyTorch's, one per core")
    keep_memory: bool = _option(True, "keep freed memory in the process for the next step (glibc's malloc) rather "
                                      "than return it to the system and page-fault it back in")  # fmt: skip

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise LenetError(f"threads must be at least 1, not {self.threads}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """A recipe's precision made concrete for this device: `auto` becomes bf16 or fp32."""
    if precision != "auto":
        return precision
    return "bf16" if has_fast_bf16(device) else "fp32"


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix units make autocast pay here; elsewhere bf16 is emulated, slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cpu = torch.cpu
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, so looked up with care
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory a step frees for the next step; whether it could (glibc only).

    By default glibc serves each allocation over 128 KiB with a fresh mapping and trims the heap
    once 128 KiB lie free at its top, so the megabytes of activations and gradients of every
    step come back as new pages that the kernel faults in and zeroes: a quarter of an fp32
    default-recipe step on a 2-core VM (BENCHMARKS.md). The peak stays the step's own. Setting
    either value also stops glibc's own threshold adjustment, which is why both are set.
    """
    if sys.platform != "linux" or not _confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
        return False  # macOS, Windows and musl have allocators of their own
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def _confstr(name: str) -> str:
    try:
        return os.confstr(name) or ""
    except (ValueError, OSError):  # a name this system does not know
        return ""


def shared_threads(engine: Engine, device: torch.device) -> tuple[Engine, str | None]:
    """The engine with its share of the cores, and a line saying so, for a CPU run whose threads nobody chose
    (--threads, OMP_NUM_THREADS) started beside busy lenet processes (core/cpushare.py says why); else the
    engine as it is and None. The count goes into the engine, so config.json records it for a resume."""
    if device.type != "cpu" or engine.threads is not None or "OMP_NUM_THREADS" in os.environ:
        return engine, None
    cores = torch.get_num_threads()
    threads, busy = fair_threads(cores)
    if threads >= cores:
        return engine, None
    return replace(engine, threads=threads), (
        f"{plural(busy, 'other lenet process', 'other lenet processes')} busy on this machine: this run takes "
        f"{plural(threads, 'thread')} of {cores} (recorded in config.json; --threads {cores} takes them all)")


def prepare(model: nn.Module, engine: Engine) -> nn.Module:
    """Set the thread count and the allocator, and move the weights to the engine's memory format (in place)."""
    if engine.threads is not None:
        torch.set_num_threads(engine.threads)
    if engine.keep_memory:
        keep_freed_memory()
    if engine.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


@contextlib.contextmanager
def training_order(model: nn.Module, engine: Engine):
    """Within this block, each (monotonic activation, max-pool) pair of model.conv runs pool first.

    The pool picks the same element either way, so outputs and gradients are the same (up to
    which of two equal values a saturated sigmoid passes the gradient to), while the
    activation and its backward touch a quarter of the values. The model's own order comes
    back on leaving, whatever happens inside; no parameter moves, so checkpoints don't notice.
    """
    layers = getattr(model, "conv", None)
    pairs = []
    if engine.pool_first and isinstance(layers, nn.Sequential):
        pairs = [i for i in range(len(layers) - 1)
                 if isinstance(layers[i], MONOTONIC) and isinstance(layers[i + 1], nn.MaxPool2d)]  # fmt: skip
    _swap(layers, pairs)
    try:
        yield model
    finally:
        _swap(layers, pairs)


def _swap(layers: nn.Sequential, pairs: list[int]) -> None:
    for i in pairs:
        layers[i], layers[i + 1] = layers[i + 1], layers[i]


def make_optimizer(factory: Callable[..., torch.optim.Optimizer], params, engine: Engine, **kw) -> torch.optim.Optimizer:
    """factory(params, **kw), fused where this PyTorch and device support it."""
    params = list(params)
    if engine.fused:
        with contextlib.suppress(RuntimeError, ValueError, TypeError):  # device or version without a fused kernel
            return factory(params, fused=True, **kw)
    return factory(params, **kw)


def forward_fn(model: nn.Module, engine: Engine, precision: str = "fp32",
               on_warning: Callable[[str], None] | None = None) -> Callable:  # fmt: skip
    """The training forward pass in `precision` (fp32 or bf16): logits in float32 either way."""
    forward = compiled(model, on_warning) if engine.compile else model
    if precision == "fp32":
        return forward
    if precision != "bf16":
        raise ValueError(f"a step runs in fp32 or bf16, not {precision!r} (resolve_precision first)")
    device_type = next(model.parameters()).device.type

    def autocast_forward(x: torch.Tensor) -> torch.Tensor:
        # No cast cache: each weight is cast once per forward anyway, and a CUDA graph cannot capture a cached cast.
        with torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False):
            return forward(x).float()

    return autocast_forward


def compiled(model: nn.Module, on_warning: Callable[[str], None] | None = None) -> Callable:
    """torch.compile(model), falling back to the model itself where compiling cannot work here.

    Compilation happens at the first call; if it fails (no C++ compiler, an unsupported
    platform or build), that call and every later one run eagerly.
    """
    compiled_forward = torch.compile(model)
    first = True

    def forward(x: torch.Tensor) -> torch.Tensor:
        nonlocal first, compiled_forward
        if first:
            first = False
            try:
                return compiled_forward(x)
            except Exception as e:  # torch._dynamo raises many types; none is the user's fault
                compiled_forward = model
                if on_warning is not None:
                    on_warning(f"--compile is unavailable here ({type(e).__name__}); training eagerly")
        return compiled_forward(x)

    return forward


class Step:
    """One optimisation step on a float batch, as the engine runs it: forward, loss, backward, update.

    The loss is the training objective (objective.py: label smoothing, and a teacher's soft targets
    when distilling); the schedule, if any, steps once per optimisation step. Call it inside `training_order(net, engine)`.

    With `engine.cuda_graph` on a CUDA device, the first GRAPH_WARMUP_STEPS steps run eagerly on a
    side stream, the next one is captured (forward, loss and backward into the gradients) and
    every later batch of that shape replays the capture; the optimizer and the schedule stay
    eager, so a schedule that changes the lr or momentum every step works unchanged. A batch of
    another shape (an epoch's short last one) runs eagerly into the same gradient tensors. If the
    capture fails (an operation this PyTorch or driver cannot capture), the run goes on eagerly.
    """

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, schedule, engine: Engine,
                 label_smoothing: float = 0.0, precision: str = "fp32",
                 on_warning: Callable[[str], None] | None = None, objective: Objective | None = None):  # fmt: skip
        self.optimizer, self.schedule = optimizer, schedule
        self.objective = objective if objective is not None else Objective(label_smoothing)
        self.forward = forward_fn(net, engine, precision, on_warning)
        self.on_warning = on_warning
        device = next(net.parameters()).device
        self.graphed = engine.cuda_graph and device.type == "cuda" and not engine.compile
        self.steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, ...] = ()  # the capture's input batch, labels, loss and logits

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the batch's mean loss, its logits), both detached and left on the device."""
        self.steps += 1
        if not self.graphed or (self.graph is not None and x.shape != self.static[0].shape):
            loss, logits = self._eager(x, y)
        elif self.steps <= GRAPH_WARMUP_STEPS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss, logits = self._eager(x, y)
            torch.cuda.current_stream().wait_stream(side)
        else:
            loss, logits = self._replay(x, y)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return loss, logits

    def _backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss and backward into the gradients (which the caller has zeroed or dropped)."""
        logits = self.forward(x)
        loss = self.objective(logits, x, y)
        loss.backward()
        return loss.detach(), logits.detach()

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Once captured, the gradients live in the graph's memory: zero them there rather than drop them.
        self.optimizer.zero_grad(set_to_none=self.graph is None)
        return self._backward(x, y)

    def _replay(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.graph is None:
            try:
                self._capture(x, y)
            except RuntimeError as e:  # torch's CUDA errors are RuntimeErrors
                self.graphed, self.graph = False, None
                if self.on_warning is not None:
                    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    self.on_warning(f"the step could not be captured as a CUDA graph ({reason}); training eagerly")
                return self._eager(x, y)
        static_x, static_y, loss, logits = self.static
        static_x.copy_(x)
        static_y.copy_(y)
        self.graph.replay()
        return loss, logits

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record forward, loss and backward on copies of this batch (nothing runs until a replay)."""
        static_x, static_y = x.clone(), y.clone()
        # Gradients made during the capture are allocated from the graph's pool, where replays write them.
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, logits = self._backward(static_x, static_y)
        self.graph, self.static = graph, (static_x, static_y, loss, logits)
