"""The one training loop. Every model of the study comes out of `train`: the teacher and the
half-depth baseline (objective lm, init scratch), the teacher-free student (lm, init truncate),
the random-init student, vanilla KD, CHOP+distill and offline KD — only the objective differs.

Read bottom-up from `train`: `set_up` (checks first, before anything expensive → data → model, fresh
or from the last checkpoint → objective → optimizer → `accelerate.prepare` → callbacks), then the
loop (`distill_lib.loop.run_steps`: `train_step` — lr, micro-batches, backward, divergence check,
clip, optimizer step —, the step's metrics entry), and the callbacks (`distill_lib.callbacks`: width pruning, gradual removal,
validation, metrics log, progress, checkpointing) at their hook points. The healing method
(`distill_lib.healing`: full, LoRA, partial, replacement layer) decides what trains: it shapes the
initial model (replace: stage 1), the student before the optimizer sees it, the backward FLOPs and
what the summary records. `accelerate` runs the same
code on CPU, one GPU or several, with DDP or FSDP from its config; checkpoints hold full (unsharded)
state, gathered by every process (`distill_lib.checkpoint`). N processes on one machine:
`accelerate launch --multi_gpu --num_processes N ...` (or `torchrun --nproc_per_node N ...`); on a
machine without GPU they form a CPU (gloo) group. `accelerate launch --cpu --num_processes N` starts
one process (accelerate 1.x), so `make_accelerator` refuses it.

Reproducibility: the run's random stream (dropout) is seeded, or restored from the checkpoint, just
before the first step, and only the training forward draws from it; benchmarks, validation and
checkpoint writing run on a fork of the generators (`outside_the_run_rng`). A run trained twice in
one process, or killed and resumed in a new process, ends with the same weights bit for bit (CPU).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from distill_lib.callbacks import (
    Callback, Checkpointing, GradualRemoval, MetricsLog, Progress, StopAfter, TeacherRelease, Validation,
    WidthPruning, outside_the_run_rng,
)
from distill_lib.checkpoint import (  # noqa: F401  (CHECKPOINT, CheckpointError, shrunk_model: imported from here)
    CHECKPOINT, CheckpointError, load_resume_checkpoint, restore_optimizer, save_checkpoint, shrunk_model,
)
from distill_lib.config import ConfigError, RunConfig, to_dict
from distill_lib.data import PreparedData, has_tokenizer, prepare_data
from distill_lib.env import LAYER_SCORES_CACHE
from distill_lib.flops import StepFlops, measure_matmul_peak, training_flops_per_token
from distill_lib.healing import (
    ReplacementFit, check_replace_block, healing_summary, method_of, optimizer_state_bytes, prepare,
    replacement_student, stage1_flops_per_token, stage1_train_config, step_flops,
)
from distill_lib.launch import (  # noqa: F401  (PEAK_FLOPS_ENV, peak_flops_from_env: read from here too)
    PEAK_FLOPS_ENV, make_accelerator, peak_flops_from_env,
)
from distill_lib.loop import (  # noqa: F401  (lr_at, TrainingDiverged: imported from here too)
    OneProcess, Trainer, TrainingDiverged, batch_split, block_order, cosine_annealing_lrs, lr_at, make_optimizer,
    run_steps,
)
from distill_lib.models import build_model, check_causal_decoder, decoder_layers, load_causal_lm, max_positions
from distill_lib.names import TEACHER_FORWARD_OBJECTIVES, TEACHER_OBJECTIVES
from distill_lib.objectives import (
    ChopDistillObjective, KDObjective, LMObjective, OfflineKDObjective, TrainingModule, check_same_vocabulary,
)
from distill_lib.run_config import is_run_reference, teacher_location  # noqa: F401  (teacher_location: read from here too)
from distill_lib.truncate import truncate_by_strategy

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def initial_model(run: RunConfig, data: PreparedData, run_dir: Path, log=LOG.info, device="cpu"):
    """The run's starting model, for truncations the kept teacher layers, and for healing by
    replacement the record of its stage 1 (else None)."""
    init = run.init
    if init.kind == "scratch":
        return build_model(run.model, len(data.tokenizer), run.train.seed,
                           data.tokenizer.bos_token_id, data.eos_token_id), None, None
    teacher = load_causal_lm(teacher_location(run.teacher, run_dir))
    if init.kind == "pretrained":
        return teacher, None, None
    split = init.calibration_split or "validation"  # None: the runs recorded before the field
    calibration = torch.from_numpy(data.blocks(split)[: init.calibration_blocks].astype(np.int64))
    student, keep = truncate_by_strategy(teacher, init.strategy, drop=init.drop, remove=init.remove,
                                         calibration_ids=calibration, scores_cache=LAYER_SCORES_CACHE)
    if init.kind == "random-truncated":  # same architecture, fresh weights: the paper's random init
        torch.manual_seed(run.train.seed)
        student = type(student)(student.config)
    if log:
        log(f"init: {init.kind} with {init.strategy}, kept layers {keep} of {len(decoder_layers(teacher))}")
    if method_of(run) == "replace":  # LLM-Streamline: one new layer for the removed block, fitted to it
        student, block = replacement_student(teacher, student, keep, init.strategy)
        return student, keep, fit_replacement(teacher, student, block, run, data, device, log)
    return student, keep, None


class _Losses(Callback):
    def __init__(self):
        self.losses = []

    def end_of_step(self, t, entry: dict) -> None:
        self.losses.append(entry["loss"])


def fit_replacement(teacher, student, block: list[int], run: RunConfig, data: PreparedData, device,
                    log=None) -> dict:
    """Stage 1 of `replace` through the one loop: only the new layer (student layer block[0]) trains,
    its output fitted to the teacher's output of the removed block (`healing.ReplacementFit`), on the
    training blocks the run starts with, under `healing.stage1_train_config` (AdamW without weight
    decay, torch's cosine annealing, the run's clipping). Every process fits it alike, outside the
    process group (`OneProcess`); dropout (if any) draws from its own generator seeded with
    train.seed, outside the run's stream. Returns its record: per-step MSE, tokens, FLOPs, seconds,
    optimizer-state bytes."""
    cfg, device = stage1_train_config(run), torch.device(device)
    teacher.to(device).eval()
    student.to(device).train().requires_grad_(False)
    decoder_layers(student)[block[0]].requires_grad_(True)
    module = TrainingModule(student, ReplacementFit(teacher, block))
    optimizer = make_optimizer(module, cfg)
    blocks = data.blocks("train")
    per_token = stage1_flops_per_token(teacher, student, block, blocks.shape[1])
    lrs = cosine_annealing_lrs(cfg.lr, cfg.min_lr_ratio, cfg.max_steps)
    t = Trainer(dataclasses.replace(run, train=cfg), None, OneProcess(device, cfg.precision), *batch_split(cfg, 1),
                blocks, blocks[:0], teacher, module, optimizer, None, StepFlops(per_token, 0.0), math.inf,
                {"step": 0, "tokens": 0, "flops": 0.0, "wall_seconds": 0.0}, None, schedule=lrs.__getitem__)
    losses = _Losses()
    with outside_the_run_rng(device):
        torch.manual_seed(cfg.seed)
        run_steps(t, [losses])
    student.requires_grad_(True)
    if log:
        log(f"healing: replace stage 1, layers {block} -> one layer, MSE {losses.losses[0]:.4g} -> {losses.losses[-1]:.4g}")
    # FLOPs as tokens x per token, as the records have them (the loop's per-step sum differs in the last bits)
    return {"block": list(block), "position": block[0], "steps": len(losses.losses), "losses": losses.losses,
            "tokens": t.state["tokens"], "flops": t.state["tokens"] * per_token,
            "wall_seconds": t.state["wall_seconds"], "optimizer_state_bytes": optimizer_state_bytes(optimizer)}


def _teacher_for(run: RunConfig, run_dir: Path, step: int = 0):
    """The teacher, loaded when the objective that trains step `step` reads it (not after KD's
    share of a kd-then-tf run: a run resumed there never loads it)."""
    if run.train.objective_at(step) not in TEACHER_OBJECTIVES:
        return None
    teacher = load_causal_lm(teacher_location(run.teacher, run_dir))
    check_causal_decoder(teacher)
    return teacher.eval().requires_grad_(False)


def validate_run(run: RunConfig, run_dir: Path) -> None:
    """Checks that need no model: the teacher exists. (Config values are checked by the dataclasses.)"""
    from distill_lib.env import online

    from distill_lib.pretrained import gguf_location, is_named_source

    teacher = teacher_location(run.teacher, run_dir)
    if teacher is None or (Path(teacher) / "config.json").exists():
        return
    if is_run_reference(run.teacher):
        raise ConfigError(f"teacher: {run.teacher!r} names a run that is not complete in {Path(run_dir).parent} "
                          "(train the teacher first)")
    if is_named_source(teacher):
        gguf_location(teacher)  # package installed? (names the install command if not)
        return
    if Path(teacher).exists() or teacher.startswith((".", "/")) or not online():
        raise ConfigError(f"teacher: {teacher!r} is not an HF model folder (no config.json); "
                          "a hub name needs DISTILL_ONLINE=1")


def check_teacher_tokenizer(run: RunConfig, data: PreparedData, run_dir: Path) -> None:
    """A run that uses the teacher's weights or logits (truncation, the pretrained init, every
    distillation objective) must read the data with the teacher's own tokenizer: token i of the
    student is token i of the teacher. Equal vocabulary sizes are not enough, so when the teacher's
    folder carries a tokenizer its vocabulary is compared with the data tokenizer's (token -> id)."""
    uses_teacher = run.train.objective != "lm" or run.init.kind in ("truncate", "pretrained")
    location = teacher_location(run.teacher, run_dir)
    if not uses_teacher or location is None:
        return
    from distill_lib.pretrained import resolve

    folder = Path(str(resolve(location)))
    if not has_tokenizer(folder):
        return  # a hub name or a bare weights folder: nothing to compare offline
    if data.tokenizer_dir is not None and Path(data.tokenizer_dir).resolve() == folder.resolve():
        return
    from distill_lib.data import load_tokenizer, vocabulary_hash

    theirs = load_tokenizer(folder)
    ours = data.tokenizer
    if vocabulary_hash(theirs) == vocabulary_hash(ours):
        return
    v_ours, v_theirs = ours.get_vocab(), theirs.get_vocab()
    differ = sorted(set(v_ours.items()) ^ set(v_theirs.items()), key=lambda kv: (kv[1], kv[0]))
    token_id = differ[0][1] if differ else None
    by_id = lambda vocab: {i: t for t, i in vocab.items()}.get(token_id)  # noqa: E731
    raise ConfigError(
        f"data.tokenizer: the data tokenizer {run.data.tokenizer!r} ({data.tokenizer_dir}, {len(ours)} tokens) is not "
        f"the teacher's tokenizer ({folder}, {len(theirs)} tokens): their vocabularies differ (id {token_id} is "
        f"{by_id(v_ours)!r} vs {by_id(v_theirs)!r}); set data.tokenizer to the teacher folder")


def _check_model_fits(model, run: RunConfig, data: PreparedData, name: str) -> None:
    limit = max_positions(model)
    if limit is not None and run.data.block_length > limit:
        raise ConfigError(f"data.block_length: {run.data.block_length} exceeds the {name}'s maximum "
                          f"positions ({limit})")
    vocab = model.get_output_embeddings().weight.shape[0]
    if vocab < len(data.tokenizer):
        raise ConfigError(f"data.tokenizer: {len(data.tokenizer)} tokens but the {name} has only {vocab} outputs")



def _objective_for(run: RunConfig, student, teacher, data: PreparedData, run_dir: Path, device, log, step: int = 0):
    cfg = run.train
    if cfg.objective_at(step) == "lm":
        return LMObjective(cfg.kd_chunk_size)
    check_same_vocabulary(student, teacher)
    if cfg.objective == "kd":
        return KDObjective(cfg, teacher.to(device))
    if cfg.objective == "chop-distill":
        return ChopDistillObjective(cfg, teacher.to(device), student)
    from distill_lib.offline_kd import build_teacher_cache

    blocks = data.blocks("train")
    needed = block_order(len(blocks), cfg.seed, 0, cfg.max_steps * cfg.batch_size)
    cache = build_teacher_cache(teacher, blocks, needed, cfg.offline_top_k, cfg.offline_dtype,
                                run_dir / "teacher_cache", device=device, log=log)
    return OfflineKDObjective(cfg, cache)


def _validation_loss(student, blocks: np.ndarray, micro: int, device, accelerator) -> float:
    """Mean next-token CE of the student over the validation blocks (the same blocks every time)."""
    was_training = student.training
    student.eval()
    total, count = 0.0, 0
    with torch.no_grad(), accelerator.autocast():
        for start in range(0, len(blocks), micro):
            ids = torch.from_numpy(blocks[start:start + micro].astype(np.int64)).to(device)
            loss, _ = _PLAIN_LM(student, ids)
            total += float(loss) * ids[:, 1:].numel()
            count += ids[:, 1:].numel()
    student.train(was_training)
    return total / count


_PLAIN_LM = LMObjective()


# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------
def _step_flops(run: RunConfig, student, length: int, teacher) -> StepFlops:
    online = teacher is not None and run.train.objective in TEACHER_FORWARD_OBJECTIVES
    flops = training_flops_per_token(student, length, teacher if online else None)
    return step_flops(run, student, length, flops)  # healing: the backward of what trains


def _launch(run: RunConfig, log):
    """The accelerator, rows per forward and micro-batches per step, and a `say` that only the
    main process's log hears."""
    cfg = run.train
    accelerator = make_accelerator(cfg.precision)
    micro, accum = batch_split(cfg, accelerator.num_processes)
    say = log if (log and accelerator.is_main_process) else (lambda *a, **k: None)
    return accelerator, micro, accum, say


def _claim_folder(run: RunConfig, run_dir: Path, data: PreparedData | None, is_main: bool, say) -> PreparedData:
    """Refuse a folder that holds another run, prepare the data, record the run's config."""
    saved_config = run_dir / "config.json"
    if saved_config.exists() and json.loads(saved_config.read_text()) != to_dict(run):
        raise ConfigError(f"resume: {run_dir} holds a run with a different config; use another folder")
    data = data or prepare_data(run.data, log=say)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main:
        saved_config.write_text(json.dumps(to_dict(run), indent=2))
    return data


def _build(run: RunConfig, run_dir: Path, data: PreparedData, student, saved: dict | None, accelerator, say):
    """Teacher, objective, optimizer and width pruner around `student`, prepared by accelerate and,
    on resume, restored from the checkpoint's contents `saved`."""
    _check_model_fits(student, run, data, "student")
    student = prepare(run, student)  # healing: LoRA adapters, or only the top trains
    step = saved["state"]["step"] if saved is not None else 0
    teacher = _teacher_for(run, run_dir, step)
    if teacher is not None:
        _check_model_fits(teacher, run, data, "teacher")
        check_same_vocabulary(student, teacher)
    check_teacher_tokenizer(run, data, run_dir)
    device = accelerator.device
    student.to(device).train()
    objective = _objective_for(run, student, teacher, data, run_dir, device, say, step)
    module = TrainingModule(student, objective).to(device)
    optimizer = make_optimizer(module, run.train)
    if saved is not None and saved["objective"] is not None:
        objective.load_state_dict(saved["objective"])
    pruner = None
    if run.width is not None:
        from distill_lib.width import FFNPruner

        w = run.width
        pruner = FFNPruner(student, w.target, w.beta1, w.beta2, w.prune_every, w.start_step,
                           w.end_step or max(w.start_step + 1, round(0.7 * run.train.max_steps))).to(device)
        if saved is not None:
            pruner.load_state_dict(saved["pruner"])
    wrapped, optimizer = accelerator.prepare(module, optimizer)
    if saved is not None:  # after prepare: under FSDP each process loads its shard of the state
        restore_optimizer(wrapped, optimizer, saved["optimizer"])
    return teacher, wrapped, optimizer, pruner


def set_up(run: RunConfig, run_dir: Path, data: PreparedData | None, log, peak_flops: float | None) -> Trainer:
    """Everything before the first step, checks first (before anything expensive)."""
    validate_run(run, run_dir)
    check_replace_block(run, teacher_location(run.teacher, run_dir))
    accelerator, micro, accum, say = _launch(run, log)
    data = _claim_folder(run, run_dir, data, accelerator.is_main_process, say)
    # the model: fresh, or from the last checkpoint that reads completely
    ckpt, saved = load_resume_checkpoint(run_dir, log=say)
    if ckpt is not None:
        student, state = saved["student"], saved["state"]
        say(f"resume: {run.name} from step {state['step']}" + (f" ({ckpt.name})" if ckpt.name != CHECKPOINT else ""))
    else:
        student, _, stage1 = initial_model(run, data, run_dir, log=say, device=accelerator.device)
        state = {"step": 0, "tokens": 0, "flops": 0.0, "wall_seconds": 0.0, "layers_removed": 0}
        if stage1 is not None:  # its data, compute and time are the run's
            state.update(tokens=stage1["tokens"], flops=stage1["flops"], wall_seconds=stage1["wall_seconds"],
                         healing=stage1)
    teacher, wrapped, optimizer, pruner = _build(run, run_dir, data, student, saved, accelerator, say)
    blocks = data.blocks("train")
    valid = data.blocks("validation")[: run.train.eval_blocks]
    flops = _step_flops(run, student, blocks.shape[1], teacher)
    with outside_the_run_rng(accelerator.device):
        peak = peak_flops or peak_flops_from_env() or measure_matmul_peak(
            torch.bfloat16 if run.train.precision == "bf16" else torch.float32, device=accelerator.device)
    return Trainer(run, run_dir, accelerator, micro, accum, blocks, valid, teacher, wrapped, optimizer, pruner,
                   flops, peak, state, saved["rng"] if saved is not None else None)


def default_callbacks(t: Trainer, log, stop_after: int | None) -> list[Callback]:
    """The loop's callbacks, in hook order (the order of keys in a metrics line)."""
    cfg, is_main = t.cfg, t.accelerator.is_main_process
    out: list[Callback] = [WidthPruning(t.pruner)] if t.pruner is not None else []
    if cfg.remove_every_tokens:
        out.append(GradualRemoval(cfg.removal_order, cfg.remove_every_tokens,
                                  lambda student: _step_flops(t.run, student, t.length, t.teacher)))
    if cfg.kd_steps() is not None and t.state["step"] < cfg.kd_steps():
        out.append(TeacherRelease(cfg.kd_steps(), LMObjective(cfg.kd_chunk_size),
                                  lambda student: _step_flops(t.run, student, t.length, None)))
    evaluate = _validation_loss  # looked up at each call of train (tests replace it)
    out.append(Validation(cfg.eval_every, lambda student: evaluate(student, t.valid, t.micro, t.device, t.accelerator)))
    out.append(MetricsLog(t.run_dir / "metrics.jsonl", cfg.log_every, t.state["step"], is_main))
    out.append(Progress(cfg.max_steps, t.state["step"], t.run.name, enabled=is_main and bool(log)))
    if stop_after is not None:
        out.append(StopAfter(stop_after))
    out.append(Checkpointing(t.run_dir / CHECKPOINT, cfg.checkpoint_every, save_checkpoint, t.pruner))
    return out


def train(run: RunConfig, run_dir: Path, data: PreparedData | None = None, log=LOG.info,
          peak_flops: float | None = None, stop_after: int | None = None) -> dict:
    """Train `run` in `run_dir`, resuming from its last checkpoint if there is one. Returns the
    summary (also the last line of metrics.jsonl). `stop_after` ends the process's work after that
    many steps *without* the final save, as a kill would (used to test resume)."""
    run_dir = Path(run_dir)
    t = set_up(run, run_dir, data, log, peak_flops)
    callbacks = default_callbacks(t, log, stop_after)
    resumed = next(c.resumed_entry for c in callbacks if isinstance(c, MetricsLog))
    t.start_run_rng()
    entry = run_steps(t, callbacks) or resumed
    if t.stop:
        return {"stopped_at": t.state["step"]}
    state = t.state
    module = t.accelerator.unwrap_model(t.wrapped)
    return {"step": state["step"], "tokens": state["tokens"], "flops": state["flops"],
            "wall_seconds": state["wall_seconds"], "flops_per_token": vars(t.flops) | {"total": t.flops.total},
            "final": entry, "processes": t.procs, "device": str(t.device),
            **healing_summary(t.run, module, t.optimizer, state), **_teacher_cache_summary(module.objective)}


def _teacher_cache_summary(objective) -> dict:
    """Offline KD's one-off cost, outside the run's FLOPs and wall-clock: the teacher cache's size
    on disk and the time it took to build (each run builds its own, in its folder; a resumed run
    reports the build of its first attempt)."""
    cache = getattr(objective, "cache", None)
    if cache is None:
        return {}
    meta = cache.meta
    return {"teacher_cache": {"top_k": meta["top_k"], "dtype": meta["dtype"], "blocks": len(meta["blocks"]),
                              "bytes": meta["bytes"], "build_seconds": meta["seconds"]}}
