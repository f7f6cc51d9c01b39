"""Evaluation: perplexity and bits per byte on held-out blocks, lm-eval zero-shot tasks (the paper's
sets and our offline suite), generation latency, and a tidy comparison table.

Perplexity windows: the split's token stream cut into non-overlapping blocks of `block_length`
tokens (the data module's blocks); within a block every token after the first is predicted from
all tokens before it in the block, so the first token of each block is context only.
Bits per byte = total nats / ln 2 / UTF-8 bytes of the predicted tokens; a special token
(<|endoftext|> between documents) counts as one byte, like the newline it stands for.
"""
from __future__ import annotations

import logging
import math
import re
import statistics
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from distill_lib.config import ConfigError, EvalConfig, to_dict
from distill_lib.data import pack_blocks
from distill_lib.env import environment_record
from distill_lib.models import load_causal_lm, max_positions
from distill_lib.tasks import PAPER13_NOTES, TASK_SETS

LOG = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Perplexity and bits per byte
# ---------------------------------------------------------------------------------------------
_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")  # SentencePiece byte fallback


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for. Byte-level BPE (GPT-2 alphabet): one character = one
    byte. Otherwise the decoded token's length. Special tokens: 1."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = set(ByteLevel.alphabet())  # the 256 characters that stand for bytes
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    lengths = np.zeros(len(tokens), dtype=np.int64)
    for i, tok in enumerate(tokens):
        if i in special or tok is None:
            lengths[i] = 1
        elif _BYTE_TOKEN.match(tok):
            lengths[i] = 1
        elif all(ch in alphabet for ch in tok):
            lengths[i] = len(tok)
        else:
            lengths[i] = len(tokenizer.decode([i]).encode("utf-8"))
    return lengths


@torch.no_grad()
def perplexity(model, tokenizer, tokens: np.ndarray, block_length: int, batch_size: int = 16,
               max_blocks: int | None = None, device: str | torch.device = "cpu") -> dict:
    """Token perplexity and bits per byte of `model` on a token stream (see module doc for windows)."""
    limit = max_positions(model)
    if limit is not None and block_length > limit:
        raise ConfigError(f"block_length: {block_length} exceeds the model's maximum positions ({limit})")
    blocks = pack_blocks(np.asarray(tokens), block_length)[:max_blocks]
    if len(blocks) == 0:
        raise ConfigError(f"perplexity: the split has fewer than {block_length} tokens")
    byte_len = token_byte_lengths(tokenizer)
    model = model.to(device).eval()
    nats, n_tokens, n_bytes = 0.0, 0, 0
    for start in range(0, len(blocks), batch_size):
        ids = torch.from_numpy(blocks[start:start + batch_size].astype(np.int64)).to(device)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
        target = ids[:, 1:]
        nats += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                                         reduction="sum"))
        n_tokens += target.numel()
        n_bytes += int(byte_len[target.cpu().numpy()].sum())
    loss = nats / n_tokens
    return {"loss": loss, "ppl": math.exp(loss), "bits_per_byte": nats / math.log(2) / n_bytes,
            "tokens": n_tokens, "bytes": n_bytes, "blocks": len(blocks), "block_length": block_length,
            "windows": "non-overlapping blocks; first token of each block is context only"}


# ---------------------------------------------------------------------------------------------
# lm-eval
# ---------------------------------------------------------------------------------------------
_TASK_MANAGERS: dict = {}


def task_manager(include_path: str | Path | None = None, defaults: bool = True):
    """lm-eval's TaskManager: the tasks of `include_path`, and lm-eval's own registry if `defaults`.
    One per process and set of folders: indexing lm-eval's registry (~13,000 YAML files) takes
    ~12 s on 2 cores, a third of an offline-suite evaluation of a small model."""
    from lm_eval.tasks import TaskManager

    key = (str(include_path) if include_path else None, defaults)
    if key not in _TASK_MANAGERS:
        _TASK_MANAGERS[key] = TaskManager(include_path=key[0], include_defaults=defaults)
    return _TASK_MANAGERS[key]


def needs_registry(tasks: Sequence[str], include_path: str | Path | None) -> bool:
    """Whether `tasks` need lm-eval's own registry: not when they are all offline-suite tasks and
    the suite's folder is given."""
    return include_path is None or not set(tasks) <= set(TASK_SETS["offline"])


def resolve_tasks(names: Sequence[str], include_path: str | Path | None = None) -> dict[str, str]:
    """Task → reported metric, from task-set names and single task names (checked against the
    registry, which reads no data)."""
    tasks: dict[str, str] = {}
    for name in names:
        if name in TASK_SETS:
            tasks.update(TASK_SETS[name])
            continue
        if name not in task_manager(include_path).all_tasks:
            raise ConfigError(f"eval.task_sets: unknown task or task set {name!r} (task sets: "
                              f"{', '.join(TASK_SETS)}; or any lm-eval task name)")
        tasks[name] = "acc"
    return tasks


def _metric_value(task_result: dict, metric: str) -> tuple[float | None, float | None]:
    value = task_result.get(f"{metric},none")
    stderr = task_result.get(f"{metric}_stderr,none")
    stderr = stderr if isinstance(stderr, (int, float)) else None
    return (float(value) if isinstance(value, (int, float)) else None), stderr


def run_lm_eval(model, tokenizer, tasks: dict[str, str], max_length: int, include_path=None, limit=None,
                batch_size: int = 32, seed: int = 1234, device: str = "cpu") -> dict:
    """Zero-shot lm-eval on an in-memory model. Returns rows (task, metric, value, stderr) for every
    metric lm-eval reports, the reported metric per task, and what reproduces the numbers."""
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    limit_positions = max_positions(model)
    if limit_positions is not None and max_length > limit_positions:
        raise ConfigError(f"eval.max_length: {max_length} exceeds the model's maximum positions ({limit_positions})")
    lm = HFLM(pretrained=model.eval(), tokenizer=tokenizer, max_length=max_length, batch_size=batch_size, device=device)
    manager = task_manager(include_path, defaults=needs_registry(tasks, include_path))
    out = simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                          random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                          fewshot_random_seed=seed, num_fewshot=0, bootstrap_iters=1000, log_samples=False)
    rows = []
    for task, result in out["results"].items():
        for key, value in result.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric = key.split(",")[0]
            val, err = _metric_value(result, metric)
            rows.append({"task": task, "metric": metric, "value": val, "stderr": err,
                         "reported": tasks.get(task) == metric, "note": PAPER13_NOTES.get(task, "")})
    return {"rows": rows, "lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "unknown",
            "task_versions": {k: v for k, v in out.get("versions", {}).items()},
            "n_samples": out.get("n-samples", {}), "limit": limit, "seed": seed, "max_length": max_length,
            "num_fewshot": 0}


# ---------------------------------------------------------------------------------------------
# Whole evaluation of one model, stored with its run
# ---------------------------------------------------------------------------------------------
def evaluate_model(model, tokenizer, data, cfg: EvalConfig, suite_dir: Path | None, device: str | None = None) -> dict:
    """Perplexity on the held-out split and the configured zero-shot tasks, on `device` (default: the
    GPU where there is one, as training uses it; the numbers differ from a CPU's in the last bits)."""
    started = time.perf_counter()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tasks = resolve_tasks(cfg.task_sets, suite_dir)
    ppl = perplexity(model, tokenizer, data.tokens[cfg.ppl_split], data.config.block_length,
                     batch_size=cfg.batch_size, max_blocks=cfg.ppl_max_blocks, device=device)
    zero_shot = run_lm_eval(model, tokenizer, tasks, cfg.max_length, include_path=suite_dir, limit=cfg.limit,
                            batch_size=cfg.batch_size, seed=cfg.seed, device=device)
    return {"perplexity": ppl, "zero_shot": zero_shot, "eval_config": to_dict(cfg),
            "seconds": time.perf_counter() - started, **environment_record()}


def load_model_and_tokenizer(model_dir: Path, tokenizer=None):
    """The model of an HF folder and its tokenizer: the folder's own, else the one given."""
    from distill_lib.data import load_tokenizer

    model_dir = Path(model_dir)
    if (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists():
        tokenizer = load_tokenizer(model_dir)
    elif tokenizer is None:
        raise ConfigError(f"tokenizer: {model_dir} has no tokenizer files and none was given")
    return load_causal_lm(model_dir), tokenizer


def evaluate_folder(model_dir: Path, data, cfg: EvalConfig, suite_dir: Path | None, device: str | None = None,
                    log=LOG.info, tokenizer=None) -> dict:
    """`evaluate_model` for an HF folder. Nothing is cached here: a study's run record is the one
    place an evaluation is kept (`distill_lib.evaluations.evaluate`)."""
    model, tokenizer = load_model_and_tokenizer(Path(model_dir), tokenizer)
    result = evaluate_model(model, tokenizer, data, cfg, suite_dir, device)
    if log:
        log(f"eval {Path(model_dir).parent.name}: ppl {result['perplexity']['ppl']:.2f} in {result['seconds']:.0f} s")
    return result


def headline(result: dict, tasks: dict[str, str]) -> dict:
    """Perplexity, bits/byte and each task's reported metric; `avg_acc` = mean over accuracy tasks
    (the paper's average), with its standard error from the per-task ones."""
    out = {"ppl": result["perplexity"]["ppl"], "bits_per_byte": result["perplexity"]["bits_per_byte"]}
    accs, errs = [], []
    for row in result["zero_shot"]["rows"]:
        if tasks.get(row["task"]) == row["metric"]:
            out[f"{row['task']}/{row['metric']}"] = row["value"]
            if row["metric"].startswith("acc") or row["metric"] == "f1":
                accs.append(row["value"])
                errs.append(row["stderr"] or 0.0)
    if accs:
        out["avg_acc"] = sum(accs) / len(accs)
        out["avg_acc_stderr"] = math.sqrt(sum(e * e for e in errs)) / len(errs)
    return out


# ---------------------------------------------------------------------------------------------
# Latency (v3 Table 3)
# ---------------------------------------------------------------------------------------------
@torch.inference_mode()
def latency(model, prompts: torch.Tensor, new_tokens: int = 32, repeats: int = 5, device: str = "cpu") -> dict:
    """Seconds to generate exactly `new_tokens` greedy tokens (KV cache on) for the prompt batch,
    and forward-pass throughput on the prompts; min / median / max over `repeats` timings.

    Each timing is `torch.utils.benchmark.Timer.timeit(1)`: two warm-up calls, then one timed call
    between accelerator synchronizations, at this process's torch thread count."""
    from torch.utils.benchmark import Timer

    model = model.to(device).eval()
    prompts = prompts.to(device)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad,
                  attention_mask=torch.ones_like(prompts))

    def timed(fn) -> list[float]:
        timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        return [timer.timeit(number=1).times[0] for _ in range(repeats)]

    gen = timed(lambda: model.generate(prompts, **kwargs))
    fwd = timed(lambda: model(input_ids=prompts, use_cache=False))
    stats = lambda xs: {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}  # noqa: E731
    return {"generate_seconds": stats(gen), "forward_seconds": stats(fwd),
            "generate_tokens_per_s": prompts.shape[0] * new_tokens / statistics.median(gen),
            "forward_tokens_per_s": prompts.numel() / statistics.median(fwd),
            "batch": prompts.shape[0], "prompt_length": prompts.shape[1], "new_tokens": new_tokens,
            "repeats": repeats, "device": str(device), "threads": torch.get_num_threads()}


def speedup(base: dict, other: dict, key: str = "generate_seconds") -> dict:
    """Speed-up of `other` over `base` (base time / other time) at min, median and max."""
    return {s: base[key][s] / other[key][s] for s in ("min", "median", "max")}
