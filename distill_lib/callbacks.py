"""What the training loop does besides training, as callbacks at named hook points.

Each step of `train.train` runs, in this order:

1. forward/backward over the micro-batches, divergence check;
2. `before_optimizer_step(t)` — this step's gradients are all-reduced, not yet clipped or applied;
3. clip, `optimizer.step()`; `t.state["step"]` advances;
4. `after_optimizer_step(t)` — the weights are updated;
5. the step's metrics entry is built (loss terms, lr, tokens, throughput, depth);
6. `end_of_step(t, entry)` — callbacks extend and record the entry, in list order; one that sets
   `t.stop` ends the process's work there, as a kill would (the callbacks after it do not run);

and `end_of_training(t)` once, when the loop ends or stops. `t` is the loop's `train.Trainer`
(state, prepared module, optimizer, accelerator, ...). The order of `end_of_step` callbacks is
the order of keys in a metrics line: width pruning, gradual removal, teacher release, validation,
then the log.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch


@contextlib.contextmanager
def outside_the_run_rng(device: torch.device | str = "cpu"):
    """Run work that is not the run's own (benchmarks, validation, checkpoint writing) on a fork of
    the global random generators: whatever it draws, the run's stream (dropout masks) continues
    exactly where it was, so a result never depends on what else ran in the process, and a resumed
    run draws what the uninterrupted one drew."""
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        yield


class Callback:
    """No-op hooks; a callback overrides the ones it needs."""

    def before_optimizer_step(self, t) -> None:
        pass

    def after_optimizer_step(self, t) -> None:
        pass

    def end_of_step(self, t, entry: dict) -> None:
        pass

    def end_of_training(self, t) -> None:
        pass


class WidthPruning(Callback):
    """PLATON width pruning (`width.FFNPruner`): scores from each step's gradients, masks grown on
    schedule, masked weights kept at zero."""

    def __init__(self, pruner):
        self.pruner = pruner

    def before_optimizer_step(self, t) -> None:
        self.pruner.update_scores()  # PLATON needs this step's gradients, before clipping and the update

    def after_optimizer_step(self, t) -> None:
        self.pruner.step(t.state["step"])  # grow the masks on schedule and keep masked weights at zero

    def end_of_step(self, t, entry: dict) -> None:
        entry["ffn_pruned"] = self.pruner.pruned_fraction_now()


class GradualRemoval(Callback):
    """Gradual removal (v3 Fig 6): one more layer of `removal_order` every `remove_every_tokens`."""

    def __init__(self, removal_order: list[int], remove_every_tokens: int, flops_of):
        self.order, self.every, self.flops_of = list(removal_order), remove_every_tokens, flops_of

    def end_of_step(self, t, entry: dict) -> None:
        done = t.state["layers_removed"]
        if done < len(self.order) and t.state["tokens"] >= (done + 1) * self.every:
            self._remove_next_layer(t)
            entry["removed_layer"] = self.order[done]

    def _remove_next_layer(self, t) -> None:
        from distill_lib.models import decoder_layers
        from distill_lib.truncate import remove_layers_

        module = t.accelerator.unwrap_model(t.wrapped)
        removed = self.order[: t.state["layers_removed"]]
        target = self.order[t.state["layers_removed"]]
        start_layers = len(decoder_layers(module.student)) + len(removed)
        remaining = [i for i in range(start_layers) if i not in removed]
        optimizer = getattr(t.optimizer, "optimizer", t.optimizer)
        remove_layers_(module.student, [remaining.index(target)], optimizer)
        t.state["layers_removed"] += 1
        if t.accelerator.num_processes > 1:  # DDP's reducer is built for a fixed set of parameters
            t.wrapped = t.accelerator.prepare_model(module)
        t.flops = self.flops_of(module.student)


class TeacherRelease(Callback):
    """KD for the first `kd_steps` steps, then the LM loss alone (kd-then-tf): after step `kd_steps`
    the objective becomes `lm_objective` and the teacher is dropped, so its memory is freed and the
    steps after it are charged the student's FLOPs only (`flops_of(student)`). The objective holds
    no parameters, so the optimizer and a DDP wrapper stay as they are."""

    def __init__(self, kd_steps: int, lm_objective, flops_of):
        self.kd_steps, self.lm_objective, self.flops_of = kd_steps, lm_objective, flops_of

    def end_of_step(self, t, entry: dict) -> None:
        if t.state["step"] != self.kd_steps:
            return
        module = t.accelerator.unwrap_model(t.wrapped)
        module.objective = self.lm_objective.to(t.device)
        t.teacher = None
        if t.device.type == "cuda":
            torch.cuda.empty_cache()
        t.flops = self.flops_of(module.student)
        entry["teacher_released"] = True


class Validation(Callback):
    """Validation loss and perplexity every `every` steps and after the last one, on a fork of the
    random generators (`evaluate(student)` -> mean next-token CE)."""

    def __init__(self, every: int, evaluate):
        self.every, self.evaluate = every, evaluate

    def end_of_step(self, t, entry: dict) -> None:
        if (self.every and t.state["step"] % self.every == 0) or t.last_step:
            student = t.accelerator.unwrap_model(t.wrapped).student
            started = time.perf_counter()
            with outside_the_run_rng(t.device):
                entry["val_loss"] = self.evaluate(student)
            entry["val_ppl"] = math.exp(min(entry["val_loss"], 50))
            entry["val_seconds"] = time.perf_counter() - started
            t.step_started += entry["val_seconds"]  # validation is not training time (nor tokens/s)


class MetricsLog(Callback):
    """`metrics.jsonl`, one line per `every` steps, after the last one and with every validation,
    written by the main process. On resume the lines after the checkpoint's step are dropped: those
    steps are redone; `resumed_entry` is the checkpoint step's own line (a run resumed from its
    final checkpoint reports the `final` entry the uninterrupted run had)."""

    def __init__(self, path: Path, every: int, resumed_step: int, is_main: bool):
        self.path, self.every, self.is_main = Path(path), every, is_main
        self.resumed_entry: dict = {}
        if is_main:
            lines = self.path.read_text().splitlines() if self.path.exists() else []
            kept = [line for line in lines if json.loads(line).get("step", 0) <= resumed_step]
            self.path.write_text("".join(line + "\n" for line in kept))
            self.resumed_entry = next((e for e in map(json.loads, reversed(kept)) if e.get("step") == resumed_step), {})

    def end_of_step(self, t, entry: dict) -> None:
        if self.is_main and (t.state["step"] % self.every == 0 or t.last_step or "val_loss" in entry):
            with open(self.path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")


class Progress(Callback):
    """A tqdm bar on the main process (when logging)."""

    def __init__(self, total: int, initial: int, name: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, disable=not enabled, desc=name, unit="step", mininterval=2.0)

    def end_of_step(self, t, entry: dict) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{entry['loss']:.3f}", tok_s=f"{entry['tokens_per_s']:,.0f}", refresh=False)

    def end_of_training(self, t) -> None:
        self.bar.close()


class StopAfter(Callback):
    """End the process's work after `steps` steps of this process, before the step's checkpoint,
    as a kill would (how resume is tested); never at the last step."""

    def __init__(self, steps: int):
        self.steps, self.done = steps, 0

    def end_of_step(self, t, entry: dict) -> None:
        self.done += 1
        if self.done >= self.steps and not t.last_step:
            t.stop = True


class Checkpointing(Callback):
    """A checkpoint every `every` steps and after the last one (`save(folder, module, optimizer,
    state, pruner)`, called by every process), written on a fork of the random generators so the
    saved generator state is the run's, untouched by saving."""

    def __init__(self, folder: Path, every: int, save, pruner=None):
        self.folder, self.every, self.save, self.pruner = Path(folder), every, save, pruner

    def end_of_step(self, t, entry: dict) -> None:
        if t.state["step"] % self.every == 0 or t.last_step:
            with outside_the_run_rng(t.device):
                self.save(self.folder, t.wrapped, t.optimizer, t.state, self.pruner)
            t.step_started = time.perf_counter()  # checkpoint time is not training time
