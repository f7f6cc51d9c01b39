"""The one training loop. Every model of the study comes out of `train`: the teacher and the
half-depth baseline (objective lm, init scratch), the teacher-free student (lm, init truncate),
the random-init student, vanilla KD, CHOP+distill and offline KD — only the objective differs.

Read top to bottom: set-up (checks first, before anything expensive) → data → model (fresh or from
the last checkpoint) → objective → optimizer → loop (lr, micro-batches, backward, clip, step,
metrics, gradual removal, validation, checkpoint) → final checkpoint. `accelerate` runs the same
code on CPU, one GPU or several, with DDP or FSDP from its config. N processes on one machine:
`accelerate launch --multi_gpu --num_processes N ...` (or `torchrun --nproc_per_node N ...`); on a
machine without GPU they form a CPU (gloo) group. `accelerate launch --cpu --num_processes N` starts
one process (accelerate 1.x), so `make_accelerator` refuses it.

Reproducibility: the run's random stream (dropout) is seeded, or restored from the checkpoint, just
before the first step, and only the training forward draws from it; benchmarks, validation and
checkpoint writing run on a fork of the generators (`outside_the_run_rng`). A run trained twice in
one process, or killed and resumed in a new process, ends with the same weights bit for bit (CPU).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from distill_lib.config import ConfigError, RunConfig, to_dict
from distill_lib.data import PreparedData, has_tokenizer, prepare_data
from distill_lib.flops import StepFlops, measure_matmul_peak, peak_memory_bytes, training_flops_per_token
from distill_lib.models import build_model, check_causal_decoder, decoder_layers, load_causal_lm, max_positions
from distill_lib.objectives import (
    ChopDistillObjective, KDObjective, LMObjective, OfflineKDObjective, TrainingModule, check_same_vocabulary,
)
from distill_lib.optim import Lion
from distill_lib.truncate import remove_layers_, truncate_by_strategy

CHECKPOINT = "checkpoint"


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is kept and the run is not complete."""


class CheckpointError(ConfigError):
    """A run folder's checkpoint cannot be read (a truncated or damaged file) and no earlier good
    checkpoint is left; the message names it and how to restart."""


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


# ---------------------------------------------------------------------------------------------
# Schedule, optimizer, data order
# ---------------------------------------------------------------------------------------------
def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine decay to `min_ratio`·peak at the last step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup - 1)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(module: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW or Lion; weight decay only on matrices (not on norms and biases)."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    if cfg.optimizer == "lion":
        return Lion(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


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


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def teacher_location(teacher: str | None, run_dir: Path) -> str | None:
    """Where a run's `teacher` is. `run:<folder>` names a sibling run in the same run store (the
    study's own teacher): kept as a name in the config, so the config hash, and the run's record,
    are the same on every machine and in every checkout; anything else (a folder, a hub name,
    `pypi:...`) is returned unchanged."""
    if teacher is None or not teacher.startswith("run:"):
        return teacher
    return str(Path(run_dir).parent / teacher[len("run:"):] / "model")


def initial_model(run: RunConfig, data: PreparedData, run_dir: Path, log=print):
    """The run's starting model and, for truncations, the kept teacher layers."""
    init = run.init
    if init.kind == "scratch":
        return build_model(run.model, len(data.tokenizer), run.train.seed,
                           data.tokenizer.bos_token_id, data.eos_token_id), None
    teacher = load_causal_lm(teacher_location(run.teacher, run_dir))
    if init.kind == "pretrained":
        return teacher, None
    calibration = torch.from_numpy(data.blocks("validation")[: init.calibration_blocks].astype(np.int64))
    student, keep = truncate_by_strategy(teacher, init.strategy, drop=init.drop, remove=init.remove,
                                         calibration_ids=calibration)
    if init.kind == "random-truncated":  # same architecture, fresh weights: the paper's random init
        torch.manual_seed(run.train.seed)
        student = type(student)(student.config)
    if log:
        log(f"init: {init.kind} with {init.strategy}, kept layers {keep} of {len(decoder_layers(teacher))}")
    return student, keep


def _teacher_for(run: RunConfig, run_dir: Path):
    if run.train.objective not in ("kd", "chop-distill", "offline-kd"):
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
    if run.teacher.startswith("run:"):
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


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def save_checkpoint(folder: Path, student, objective, optimizer, state: dict, pruner=None) -> None:
    """Model (HF safetensors), the objective's own weights, optimizer, RNG and loop state, written
    into a temporary folder and swapped in by rename: a kill at any point leaves the previous
    complete checkpoint (as `checkpoint` or, mid-swap, `checkpoint.old`)."""
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    student.save_pretrained(tmp / "model")
    objective_state = {k: v.contiguous() for k, v in objective.state_dict().items()}
    if objective_state:
        save_file(objective_state, tmp / "objective.safetensors")
    if pruner is not None:  # width-pruning scores and masks
        save_file({k: v.contiguous() for k, v in pruner.state_dict().items()}, tmp / "pruner.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


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
    for part in ("objective", "pruner"):
        path = folder / f"{part}.safetensors"
        out[part] = load_file(path) if path.exists() else None
    return out


def _first_line(err: BaseException) -> str:
    """`Type: first sentence of the message` (library errors can run to paragraphs)."""
    text = str(err).strip().splitlines()
    line = (text[0] if text else "").split(". ")[0]
    return f"{type(err).__name__}: {line[:200]}"


def load_resume_checkpoint(run_dir: Path, log=print) -> tuple[Path | None, dict | None]:
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


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def _objective_for(run: RunConfig, student, teacher, data: PreparedData, run_dir: Path, device, log):
    cfg = run.train
    if cfg.objective == "lm":
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


def make_accelerator(precision: str = "fp32"):
    """The run's `Accelerator`. Several processes started by a launcher (`torchrun --nproc_per_node
    N`, `accelerate launch --multi_gpu --num_processes N`) join one DDP group; on a machine without
    GPU that group is a CPU one (gloo), which accelerate forms only when told to use the CPU. A
    launch that asked for several processes but got one, or whose processes did not join, is
    refused: each process would train alone, all of them writing into the same run folder."""
    from accelerate import Accelerator

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cpu = world > 1 and not torch.cuda.is_available()
    if world == 1 and os.environ.get("MASTER_ADDR") and os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
        raise ConfigError("launch: `accelerate launch --cpu --num_processes N` starts one process (without mpirun); "
                          "start N CPU processes with `accelerate launch --multi_gpu --num_processes N` or "
                          "`torchrun --nproc_per_node N`")
    accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=cpu)
    if accelerator.num_processes != world:
        raise ConfigError(f"launch: {world} processes were started (WORLD_SIZE) but accelerate joined "
                          f"{accelerator.num_processes} ({accelerator.distributed_type}); start N processes with "
                          "`accelerate launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N`")
    return accelerator


def train(run: RunConfig, run_dir: Path, data: PreparedData | None = None, log=print,
          peak_flops: float | None = None, stop_after: int | None = None) -> dict:
    """Train `run` in `run_dir`, resuming from its last checkpoint if there is one. Returns the
    summary (also the last line of metrics.jsonl). `stop_after` ends the process's work after that
    many steps *without* the final save, as a kill would (used to test resume)."""
    cfg = run.train
    validate_run(run, run_dir)
    run_dir = Path(run_dir)
    accelerator = make_accelerator(cfg.precision)
    device = accelerator.device
    procs = accelerator.num_processes
    micro = cfg.micro_batch_size or cfg.batch_size // procs
    if cfg.batch_size % (micro * procs):
        raise ConfigError(f"train.batch_size: {cfg.batch_size} is not a multiple of micro_batch_size ({micro}) "
                          f"x processes ({procs})")
    accum = cfg.batch_size // (micro * procs)
    is_main = accelerator.is_main_process
    say = log if (log and is_main) else (lambda *a, **k: None)

    saved_config = run_dir / "config.json"
    if saved_config.exists() and json.loads(saved_config.read_text()) != to_dict(run):
        raise ConfigError(f"resume: {run_dir} holds a run with a different config; use another folder")
    data = data or prepare_data(run.data, log=say)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main:
        saved_config.write_text(json.dumps(to_dict(run), indent=2))

    # --- model: fresh, or from the last checkpoint that reads completely ---------------------------
    ckpt, saved = load_resume_checkpoint(run_dir, log=say)
    if ckpt is not None:
        student, state = saved["student"], saved["state"]
        say(f"resume: {run.name} from step {state['step']}" + (f" ({ckpt.name})" if ckpt.name != CHECKPOINT else ""))
    else:
        student, _ = initial_model(run, data, run_dir, log=say)
        state = {"step": 0, "tokens": 0, "flops": 0.0, "wall_seconds": 0.0, "layers_removed": 0}
    _check_model_fits(student, run, data, "student")
    teacher = _teacher_for(run, run_dir)
    if teacher is not None:
        _check_model_fits(teacher, run, data, "teacher")
        check_same_vocabulary(student, teacher)
    check_teacher_tokenizer(run, data, run_dir)
    student.to(device).train()
    objective = _objective_for(run, student, teacher, data, run_dir, device, say)
    module = TrainingModule(student, objective).to(device)
    optimizer = make_optimizer(module, cfg)
    if ckpt is not None:
        if saved["objective"] is not None:
            objective.load_state_dict(saved["objective"])
        optimizer.load_state_dict(saved["optimizer"])
    pruner = None
    if run.width is not None:
        from distill_lib.width import FFNPruner

        w = run.width
        pruner = FFNPruner(student, w.target, w.beta1, w.beta2, w.prune_every, w.start_step,
                           w.end_step or max(w.start_step + 1, round(0.7 * cfg.max_steps))).to(device)
        if ckpt is not None:
            pruner.load_state_dict(saved["pruner"])
    wrapped, optimizer = accelerator.prepare(module, optimizer)

    blocks = data.blocks("train")
    valid = data.blocks("validation")[: cfg.eval_blocks]
    length = blocks.shape[1]
    flops = training_flops_per_token(student, length, teacher if cfg.objective in ("kd", "chop-distill") else None)
    with outside_the_run_rng(device):
        peak = peak_flops or measure_matmul_peak(torch.bfloat16 if cfg.precision == "bf16" else torch.float32,
                                                 device=device)
    metrics_path = run_dir / "metrics.jsonl"
    entry: dict = {}
    if is_main:  # drop lines logged after the checkpoint we resume from: they will be redone
        lines = metrics_path.read_text().splitlines() if metrics_path.exists() else []
        kept = [l for l in lines if json.loads(l).get("step", 0) <= state["step"]]
        metrics_path.write_text("".join(l + "\n" for l in kept))
        # resumed from the final checkpoint (a kill before the run was finished): the summary's
        # `final` is that step's line, as the uninterrupted run had it
        entry = next((e for e in map(json.loads, reversed(kept)) if e.get("step") == state["step"]), {})

    def record(entry: dict) -> None:
        if is_main:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.max_steps, initial=state["step"], disable=not is_main or not log,
               desc=run.name, unit="step", mininterval=2.0)
    # the run's own random stream (dropout) starts here, after all set-up: fresh from the seed, or
    # exactly where the checkpoint left it; nothing else draws from it (see outside_the_run_rng)
    if ckpt is not None:
        torch.set_rng_state(saved["rng"]["torch"])
        if saved["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    else:
        torch.manual_seed(cfg.seed)
    step_started = time.perf_counter()
    steps_this_process = 0
    while state["step"] < cfg.max_steps:
        step = state["step"]
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = block_order(len(blocks), cfg.seed, step * cfg.batch_size, cfg.batch_size)
        mine = order.reshape(procs, accum, micro)[accelerator.process_index]
        sums: dict[str, torch.Tensor] = {}
        for m in range(accum):
            index = torch.from_numpy(mine[m])
            ids = torch.from_numpy(blocks[mine[m]].astype(np.int64)).to(device)
            # gradients are all-reduced once per optimizer step, on the last micro-batch only
            sync = accelerator.no_sync(wrapped) if m < accum - 1 else contextlib.nullcontext()
            with sync, accelerator.autocast():
                loss, terms = wrapped(ids, index)
                accelerator.backward(loss / accum)
            for k, v in {"loss": loss.detach(), **terms}.items():
                sums[k] = sums.get(k, 0.0) + v.float() / accum
        values = {k: float(accelerator.reduce(v.to(device), reduction="mean")) for k, v in sums.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise TrainingDiverged(f"train: loss is not finite at step {step} ({values}); "
                                   f"the last good checkpoint is kept in {run_dir}")
        if pruner is not None:  # PLATON needs this step's gradients, before clipping and the update
            pruner.update_scores()
        grad_norm = None
        if cfg.grad_clip > 0:
            grad_norm = float(accelerator.clip_grad_norm_(wrapped.parameters(), cfg.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        state["step"] = step + 1
        if pruner is not None:  # grow the masks on schedule and keep masked weights at zero
            pruner.step(state["step"])
        state["tokens"] += cfg.batch_size * length
        state["flops"] += flops.total * cfg.batch_size * length
        now = time.perf_counter()
        state["wall_seconds"] += now - step_started
        tokens_per_s = cfg.batch_size * length / (now - step_started)
        step_started = now
        entry = {"step": state["step"], **values, "lr": lr, "tokens": state["tokens"],
                 "wall_seconds": round(state["wall_seconds"], 4), "tokens_per_s": tokens_per_s,
                 "flops": state["flops"], "mfu": flops.total * tokens_per_s / (peak * procs),
                 "peak_memory_bytes": peak_memory_bytes(device),
                 "layers": len(decoder_layers(accelerator.unwrap_model(wrapped).student))}
        if grad_norm is not None:
            entry["grad_norm"] = grad_norm
        if pruner is not None:
            entry["ffn_pruned"] = pruner.pruned_fraction_now()

        # gradual removal (v3 Fig 6): one more layer every remove_every_tokens
        if cfg.remove_every_tokens and state["layers_removed"] < len(cfg.removal_order) and \
                state["tokens"] >= (state["layers_removed"] + 1) * cfg.remove_every_tokens:
            wrapped, flops = _remove_next_layer(run, state, accelerator, wrapped, optimizer, length, teacher)
            entry["removed_layer"] = cfg.removal_order[state["layers_removed"] - 1]

        last = state["step"] == cfg.max_steps
        if (cfg.eval_every and state["step"] % cfg.eval_every == 0) or last:
            student_now = accelerator.unwrap_model(wrapped).student
            with outside_the_run_rng(device):
                entry["val_loss"] = _validation_loss(student_now, valid, micro, device, accelerator)
            entry["val_ppl"] = math.exp(min(entry["val_loss"], 50))
        if state["step"] % cfg.log_every == 0 or last or "val_loss" in entry:
            record(entry)
        bar.update(1)
        bar.set_postfix(loss=f"{values['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        steps_this_process += 1
        if stop_after is not None and steps_this_process >= stop_after and not last:
            bar.close()
            return {"stopped_at": state["step"]}
        if state["step"] % cfg.checkpoint_every == 0 or last:
            accelerator.wait_for_everyone()
            if is_main:
                unwrapped = accelerator.unwrap_model(wrapped)
                with outside_the_run_rng(device):  # the saved RNG state is the run's, untouched by saving
                    save_checkpoint(run_dir / CHECKPOINT, unwrapped.student, unwrapped.objective, optimizer, state,
                                    pruner)
            step_started = time.perf_counter()  # checkpoint time is not training time
    bar.close()
    summary = {"step": state["step"], "tokens": state["tokens"], "flops": state["flops"],
               "wall_seconds": state["wall_seconds"], "flops_per_token": vars(flops) | {"total": flops.total},
               "final": entry, "processes": procs, "device": str(device)}
    return summary


def _remove_next_layer(run, state, accelerator, wrapped, optimizer, length, teacher):
    cfg = run.train
    module = accelerator.unwrap_model(wrapped)
    removed = cfg.removal_order[: state["layers_removed"]]
    target = cfg.removal_order[state["layers_removed"]]
    start_layers = len(decoder_layers(module.student)) + len(removed)
    remaining = [i for i in range(start_layers) if i not in removed]
    remove_layers_(module.student, [remaining.index(target)], optimizer.optimizer
                   if hasattr(optimizer, "optimizer") else optimizer)
    state["layers_removed"] += 1
    if accelerator.num_processes > 1:  # DDP's reducer is built for a fixed set of parameters
        wrapped = accelerator.prepare_model(module)
    flops = training_flops_per_token(module.student, length, teacher if cfg.objective in ("kd", "chop-distill") else None)
    return wrapped, flops
