"""The one loop's step, shared by every run and by the replacement layer's first stage
(`train.fit_replacement`): the schedule, the optimizer, the data order, the `Trainer` a step works
on, and `run_steps` (lr, micro-batches, backward, divergence check, clip, update, the step's metrics
entry, the callbacks at their hook points; `distill_lib.callbacks`). `train.set_up` builds a run's
`Trainer`; everything a step does is here, so no stage of any run trains with a loop of its own."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from distill_lib.callbacks import Callback
from distill_lib.config import ConfigError, RunConfig
from distill_lib.flops import StepFlops, peak_memory_bytes
from distill_lib.models import decoder_layers
from distill_lib.optim import Lion


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is kept and the run is not complete."""


def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to `min_ratio`·peak at the last step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def cosine_annealing_lrs(peak: float, min_ratio: float, steps: int) -> list[float]:
    """The lr of each of `steps` steps under torch's `CosineAnnealingLR` (T_max = steps, eta_min =
    min_ratio·peak, stepped once per step), in its recursive form, so the values are torch's to the
    bit (the replacement layer's stage 1 was recorded with it; `tests/test_checkpoint.py` checks)."""
    eta_min, lr, out = peak * min_ratio, peak, []
    for epoch in range(steps):
        if epoch > 0:
            lr = (1 + math.cos(math.pi * epoch / steps)) / (1 + math.cos(math.pi * (epoch - 1) / steps)) * (lr - eta_min) + eta_min
        out.append(lr)
    return out


def make_optimizer(module: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW or Lion; weight decay only on matrices (not on norms and biases)."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    if cfg.optimizer == "lion":
        return Lion(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def batch_split(cfg, procs: int) -> tuple[int, int]:
    """(rows per forward, micro-batches per optimizer step and process) for `procs` processes."""
    micro = cfg.micro_batch_size or cfg.batch_size // procs
    if cfg.batch_size % (micro * procs):
        raise ConfigError(f"train.batch_size: {cfg.batch_size} is not a multiple of micro_batch_size ({micro}) "
                          f"x processes ({procs})")
    return micro, cfg.batch_size // (micro * procs)


def block_order(n_blocks: int, seed: int, start: int, count: int) -> np.ndarray:
    """Blocks `start .. start+count` of an endless stream of seeded permutations (one per epoch).
    A pure function of its arguments, so a resumed run reads the same blocks as an uninterrupted one."""
    out = []
    position = start
    while len(out) < count:
        epoch, offset = divmod(position, n_blocks)
        perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = perm[offset: offset + count - len(out)].numpy()
        out.extend(take.tolist())
        position += len(take)
    return np.asarray(out, dtype=np.int64)


@dataclasses.dataclass
class Trainer:
    """What one step and the callbacks work on. `wrapped` (the prepared student + objective) and
    `flops` change when gradual removal drops a layer; `state` is what a checkpoint saves."""

    run: RunConfig
    run_dir: Path
    accelerator: object
    micro: int  # rows per forward
    accum: int  # micro-batches per optimizer step and process
    blocks: np.ndarray  # the training blocks
    valid: np.ndarray  # the validation blocks
    teacher: torch.nn.Module | None
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer
    pruner: torch.nn.Module | None
    flops: StepFlops  # per token of a training step
    peak: float  # peak FLOP/s of one device, for MFU
    state: dict  # step, tokens, flops, wall_seconds, layers_removed (+ healing: replacement stage 1, counted in)
    rng: dict | None  # the checkpoint's generator states, restored just before the first step
    #: the lr of each step; None: `lr_at` with the run's warm-up and cosine decay
    schedule: Callable[[int], float] | None = None
    step_started: float = 0.0
    stop: bool = False  # set by a callback: end this process's work now (StopAfter)

    @property
    def cfg(self):
        return self.run.train

    @property
    def device(self):
        return self.accelerator.device

    @property
    def procs(self) -> int:
        return self.accelerator.num_processes

    @property
    def length(self) -> int:
        return self.blocks.shape[1]

    @property
    def last_step(self) -> bool:
        return self.state["step"] == self.cfg.max_steps

    def start_run_rng(self) -> None:
        """The run's own random stream (dropout) starts here, after all set-up: fresh from the
        seed, or exactly where the checkpoint left it; nothing else draws from it (see
        `outside_the_run_rng`)."""
        if self.rng is not None:
            torch.set_rng_state(self.rng["torch"])
            if self.rng["cuda"]:
                torch.cuda.set_rng_state_all(self.rng["cuda"])
        else:
            torch.manual_seed(self.cfg.seed)


def _forward_backward(t: Trainer, step: int) -> dict[str, float]:
    """This step's gradients (this process's share of the batch, in micro-batches) and its loss
    terms, averaged over the batch and the processes."""
    cfg = t.cfg
    order = block_order(len(t.blocks), cfg.seed, step * cfg.batch_size, cfg.batch_size)
    mine = order.reshape(t.procs, t.accum, t.micro)[t.accelerator.process_index]
    sums: dict[str, torch.Tensor] = {}
    for m in range(t.accum):
        index = torch.from_numpy(mine[m])
        ids = torch.from_numpy(t.blocks[mine[m]].astype(np.int64)).to(t.device)
        # gradients are all-reduced once per optimizer step, on the last micro-batch only
        sync = t.accelerator.no_sync(t.wrapped) if m < t.accum - 1 else contextlib.nullcontext()
        with sync, t.accelerator.autocast():
            loss, terms = t.wrapped(ids, index)
            t.accelerator.backward(loss / t.accum)
        for k, v in {"loss": loss.detach(), **terms}.items():
            sums[k] = sums.get(k, 0.0) + v.float() / t.accum
    return {k: float(t.accelerator.reduce(v.to(t.device), reduction="mean")) for k, v in sums.items()}


def train_step(t: Trainer, callbacks: list[Callback]) -> tuple[dict[str, float], float, float | None]:
    """One optimizer step: lr, gradients, divergence check, `before_optimizer_step` hooks, clip,
    update. Returns the loss terms, the lr and the gradient norm (None without clipping)."""
    cfg, step = t.cfg, t.state["step"]
    lr = t.schedule(step) if t.schedule else lr_at(step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    values = _forward_backward(t, step)
    if not all(math.isfinite(v) for v in values.values()):
        raise TrainingDiverged(f"train: loss is not finite at step {step} ({values}); "
                               f"the last good checkpoint is kept in {t.run_dir}")
    for callback in callbacks:
        callback.before_optimizer_step(t)
    grad_norm = None
    if cfg.grad_clip > 0:
        grad_norm = float(t.accelerator.clip_grad_norm_(t.wrapped.parameters(), cfg.grad_clip))
    t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)
    t.state["step"] = step + 1
    return values, lr, grad_norm


def step_entry(t: Trainer, values: dict[str, float], lr: float, grad_norm: float | None) -> dict:
    """Count the step's tokens, FLOPs and time into `t.state`; the step's metrics line."""
    cfg, state = t.cfg, t.state
    state["tokens"] += cfg.batch_size * t.length
    state["flops"] += t.flops.total * cfg.batch_size * t.length
    now = time.perf_counter()
    state["wall_seconds"] += now - t.step_started
    tokens_per_s = cfg.batch_size * t.length / (now - t.step_started)
    t.step_started = now
    entry = {"step": state["step"], **values, "lr": lr, "tokens": state["tokens"],
             "wall_seconds": round(state["wall_seconds"], 4), "tokens_per_s": tokens_per_s,
             "flops": state["flops"], "mfu": t.flops.total * tokens_per_s / (t.peak * t.procs),
             "peak_memory_bytes": peak_memory_bytes(t.device),
             "layers": len(decoder_layers(t.accelerator.unwrap_model(t.wrapped).student))}
    if grad_norm is not None:
        entry["grad_norm"] = grad_norm
    return entry


def run_steps(t: Trainer, callbacks: list[Callback]) -> dict | None:
    """Steps until `max_steps` or a callback's stop, then `end_of_training`; the last metrics entry
    (None when no step ran)."""
    entry = None
    t.step_started = time.perf_counter()
    while t.state["step"] < t.cfg.max_steps and not t.stop:
        values, lr, grad_norm = train_step(t, callbacks)
        for callback in callbacks:
            callback.after_optimizer_step(t)
        entry = step_entry(t, values, lr, grad_norm)
        for callback in callbacks:  # a callback that sets t.stop ends the step there (StopAfter)
            callback.end_of_step(t, entry)
            if t.stop:
                break
    for callback in callbacks:
        callback.end_of_training(t)
    return entry


class OneProcess:
    """The accelerator's interface for work every process does alike, outside the process group
    (the replacement layer's stage 1: each process fits the same layer on the same blocks): one
    process, its gradients its own, mixed precision as the run's."""

    num_processes, process_index, is_main_process = 1, 0, True

    def __init__(self, device: torch.device, precision: str):
        self.device, self.precision = torch.device(device), precision

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def no_sync(self, module):
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def reduce(self, value: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return value

    def clip_grad_norm_(self, parameters, max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    def unwrap_model(self, module):
        return module
