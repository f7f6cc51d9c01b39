"""A run's checkpoint: written by every process together, read back before any of it is used.

Layout of `<run>/checkpoint/`: `model/` (the student as an HF folder, what `runs` exports),
`objective.safetensors` (the objective's own weights, if any: chop-distill's projections),
`pruner.safetensors` (width pruning's scores and masks), `adapter/` (LoRA healing: the adapters as a
standard PEFT adapter folder; `model/` then holds the frozen base, and the run's final model is the
two merged, `healing.merged_model`), `optimizer.pt`, `rng.pt`, `state.json` (step, tokens, ...).
Model and optimizer are *full* (unsharded) state dicts keyed by parameter name, gathered with
`torch.distributed.checkpoint.state_dict` — the API accelerate itself uses for FSDP2 — so the same
code is right for one process, DDP (replicated state) and FSDP (sharded state: every process
contributes its shard, process 0 writes), and a checkpoint resumes with any process count.

Atomic: the files go into `checkpoint.tmp`, which is swapped in by rename; a kill at any point
leaves the previous complete checkpoint (as `checkpoint` or, mid-swap, `checkpoint.old`).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import torch

from distill_lib.config import ConfigError
from distill_lib.healing import split_adapter, with_adapter, write_adapter
from distill_lib.models import decoder_layers, load_causal_lm

LOG = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"


class CheckpointError(ConfigError):
    """A run folder's checkpoint cannot be read (a truncated or damaged file) and no earlier good
    checkpoint is left; the message names it and how to restart."""


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _plain_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one


def _unwrapped(module):
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(module, keep_fp32_wrapper=False)


def save_checkpoint(folder: Path, module, optimizer, state: dict, pruner=None) -> None:
    """Save the training module (student + objective, as prepared: plain, DDP or FSDP), optimizer,
    RNG, loop state and width pruner into `folder`. Every process of the run calls it (gathering a
    sharded state is collective); process 0 writes. Returns when the checkpoint is in place."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
    )

    # full state dicts, offloaded to the CPU; under several processes only process 0 receives them
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(module, options=options)
    optimizer_state = get_optimizer_state_dict(module, _plain_optimizer(optimizer), options=options)
    if _rank() == 0:
        # Processes draw the same random numbers in the same order from the same seed (dropout
        # shapes are equal on every rank), so process 0's generator state is every process's.
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        _write(Path(folder), _unwrapped(module).student, weights, optimizer_state, rng, state, pruner)
    _barrier()  # no process goes on (or ends) before the checkpoint is complete


def _write(folder: Path, student, weights: dict, optimizer_state: dict, rng: dict, state: dict, pruner) -> None:
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    part = lambda prefix: {k[len(prefix):]: v.contiguous() for k, v in weights.items() if k.startswith(prefix)}  # noqa: E731
    student_weights = _tied_as_in(student, part("student."))
    adapter = split_adapter(student, student_weights)  # LoRA: adapters out, the frozen base stays a plain model
    student.save_pretrained(tmp / "model", state_dict=student_weights)
    if adapter:
        write_adapter(student, adapter, tmp / "adapter")
    objective_state = part("objective.")
    if objective_state:
        save_file(objective_state, tmp / "objective.safetensors")
    if pruner is not None:  # width-pruning scores and masks
        save_file({k: v.contiguous() for k, v in pruner.state_dict().items()}, tmp / "pruner.safetensors")
    torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _tied_as_in(model, weights: dict) -> dict:
    """Names of one shared parameter (tied embeddings) point to one tensor, as in the model: shards
    gathered under FSDP arrive as separate copies, and `save_pretrained` stores a tensor once only
    when its names share it."""
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        kept = first.setdefault(id(param), name)
        if kept != name and kept in weights and name in weights:
            weights[name] = weights[kept]
    return weights


def restore_optimizer(module, optimizer, saved: dict) -> None:
    """Load a saved optimizer state into the optimizer of the prepared `module` (each process
    takes its own shard under FSDP). Checkpoints written before the state was keyed by parameter
    name (keyed by position, one process) load as they were saved."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if all(isinstance(p, int) for group in saved["param_groups"] for p in group["params"]):
        optimizer.load_state_dict(saved)
        return
    set_optimizer_state_dict(module, _plain_optimizer(optimizer), saved, options=StateDictOptions(full_state_dict=True))


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, newest first: `checkpoint`, then `checkpoint.old` (left by a
    kill in the middle of a swap)."""
    return [run_dir / name for name in (CHECKPOINT, CHECKPOINT + ".old") if (run_dir / name / "state.json").exists()]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[0] if found else None


def read_checkpoint(folder: Path) -> dict:
    """Everything a resume needs from one checkpoint, read (and so checked) before any of it is used."""
    from safetensors.torch import load_file

    out = {"state": json.loads((folder / "state.json").read_text()), "student": load_causal_lm(folder / "model"),
           "optimizer": _load_pickle_free(folder / "optimizer.pt"), "rng": _load_pickle_free(folder / "rng.pt")}
    if (folder / "adapter").is_dir():  # LoRA healing: the base with its trained adapters
        out["student"] = with_adapter(out["student"], folder / "adapter")
    for part in ("objective", "pruner"):
        path = folder / f"{part}.safetensors"
        out[part] = load_file(path) if path.exists() else None
    return out


def _first_line(err: BaseException) -> str:
    """`Type: first sentence of the message` (library errors can run to paragraphs)."""
    text = str(err).strip().splitlines()
    line = (text[0] if text else "").split(". ")[0]
    return f"{type(err).__name__}: {line[:200]}"


def load_resume_checkpoint(run_dir: Path, log=LOG.info) -> tuple[Path | None, dict | None]:
    """The newest checkpoint of `run_dir` that reads completely, or (None, None) for a fresh run. A
    damaged one (a truncated model.safetensors or optimizer.pt, ...) is named and skipped for the
    previous good one; when none is left, CheckpointError says how to restart."""
    from safetensors import SafetensorError

    damaged = []
    for folder in checkpoints(Path(run_dir)):
        try:
            return folder, read_checkpoint(folder)
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
            damaged.append((folder, _first_line(err)))
            if log:
                log(f"resume: checkpoint {folder} cannot be read ({_first_line(err)}); trying an earlier one")
    if damaged:
        folder, why = damaged[0]
        raise CheckpointError(f"resume: checkpoint {folder} cannot be read ({why}) and no earlier good checkpoint is "
                              f"left; delete {Path(run_dir) / CHECKPOINT} to restart the run from step 0")
    return None, None


def shrunk_model(checkpoint: Path):
    """The physically narrower model of a width-pruning checkpoint (masked FFN units removed)."""
    from safetensors.torch import load_file

    from distill_lib.width import shrink_ffn

    model = load_causal_lm(checkpoint / "model")
    state = load_file(checkpoint / "pruner.safetensors")
    masks = [state[f"mask_{i}"] for i in range(len(decoder_layers(model)))]
    return shrink_ffn(model, masks)


def _load_pickle_free(path: Path):
    return torch.load(path, weights_only=True)  # never unpickle arbitrary objects
