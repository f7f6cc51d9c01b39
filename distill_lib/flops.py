"""Compute and memory accounting: analytic FLOPs (forward and backward counted separately), MFU,
peak memory, and a planner that says whether teacher-free training, vanilla KD and offline KD fit
an accelerator (the paper's 'teacher and student don't fit together' argument, in numbers).

FLOPs per token of a forward pass through a decoder with context T:
  2 · (weights of every matmul, LM head included)  +  4 · T · d_attn per layer
(QKᵀ and A·V, each 2·T·d_attn, counted dense as the kernels compute them). A backward pass costs
twice the forward. Training a student: 3 · F_s per token; vanilla KD adds the teacher's forward F_t.
"""
from __future__ import annotations

import dataclasses
import resource
import sys
import time

import torch
from torch import nn

from distill_lib.config import ConfigError


def matmul_weights(model: nn.Module) -> int:
    """Weights multiplied per token: every Linear (and GPT-2's Conv1D), the LM head included even
    when it is tied to the embedding (the lookup is free, the head is a matmul)."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            total += module.weight.numel()
    return total


def attention_width(config) -> tuple[int, int]:
    """(layers, query heads x head dim) from an HF config."""
    n_layers = config.num_hidden_layers
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return n_layers, heads * head_dim


def attention_flops_per_token(config, seq_len: int) -> float:
    """Attention's own share of a forward pass per token, from an HF config: QKᵀ and A·V, each
    2·T·d_attn per layer (dense, as the kernels compute them)."""
    n_layers, d_attn = attention_width(config)
    return 4.0 * n_layers * seq_len * d_attn


def forward_flops_per_token(model: nn.Module, seq_len: int) -> float:
    return 2.0 * matmul_weights(model) + attention_flops_per_token(model.config, seq_len)


@dataclasses.dataclass(frozen=True)
class StepFlops:
    """FLOPs per training token, split by model and pass."""

    student_forward: float
    student_backward: float
    teacher_forward: float = 0.0

    @property
    def total(self) -> float:
        return self.student_forward + self.student_backward + self.teacher_forward


def training_flops_per_token(student: nn.Module, seq_len: int, teacher: nn.Module | None = None) -> StepFlops:
    fwd = forward_flops_per_token(student, seq_len)
    return StepFlops(fwd, 2 * fwd, forward_flops_per_token(teacher, seq_len) if teacher is not None else 0.0)


def flops_shares(step: StepFlops, student_attention: float, teacher_attention: float = 0.0) -> dict[str, float]:
    """What a training step's FLOPs per token (`step`, as `training_flops_per_token` counts them) are
    made of: {"matmul": the weight matmuls (every Linear, the LM head included), "attention":
    attention's QKᵀ and A·V}, as shares of `step.total`. `student_attention` and `teacher_attention`
    are the models' forward attention FLOPs per token (`attention_flops_per_token`): the student's
    counts thrice (forward and backward), the teacher's once where the step runs it."""
    attention = 3 * student_attention + (teacher_attention if step.teacher_forward else 0.0)
    return {"matmul": 1 - attention / step.total, "attention": attention / step.total}


_PEAK_CACHE: dict[tuple, float] = {}


def measure_matmul_peak(dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 5,
                        device: str | torch.device = "cpu", budget_seconds: float = 2.0) -> float:
    """Achieved FLOP/s of a square matmul on this device: the MFU denominator when no datasheet
    peak is given. Cached per process. It draws no random numbers (constant operands: the speed
    of a matmul does not depend on its values), so measuring never shifts a run's random stream,
    and it stops after `budget_seconds` (bf16 without hardware support runs ~50x slower than
    fp32 on an AVX2 CPU: a 2048 matmul then took minutes)."""
    key = (dtype, size, str(device))
    if key not in _PEAK_CACHE:
        a = torch.full((size, size), 0.5, dtype=dtype, device=device)
        b = torch.full((size, size), 0.25, dtype=dtype, device=device)
        cuda = torch.cuda.is_available() and str(device).startswith("cuda")
        a @ b  # warm-up
        best, spent = float("inf"), 0.0
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if cuda:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            best, spent = min(best, elapsed), spent + elapsed
            if spent > budget_seconds:
                break
        _PEAK_CACHE[key] = 2 * size**3 / best
    return _PEAK_CACHE[key]


def peak_memory_bytes(device: torch.device | str = "cpu") -> int:
    """CUDA: max allocated since the last reset. CPU: the process's peak resident set size (it
    only grows over a process's life, so compare runs in separate processes)."""
    if str(device).startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


# ---------------------------------------------------------------------------------------------
# Memory-fit planner
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelShape:
    name: str
    params: float
    n_layers: int
    hidden: int
    vocab: int


#: The paper's models (v3): OLMo-style 300M / 1.1B with 24 layers, llama2-7B; halves by truncation.
PAPER_MODELS = {
    "300M": ModelShape("300M", 300e6, 24, 1024, 50280),
    "1.1B": ModelShape("1.1B", 1.1e9, 24, 2048, 50280),
    "7B": ModelShape("llama2-7B", 6.74e9, 32, 4096, 32000),
}


def halved(shape: ModelShape) -> ModelShape:
    """The truncated student: half the layers; embeddings and head kept."""
    embed = 2 * shape.vocab * shape.hidden
    return ModelShape(f"{shape.name}/2", embed + (shape.params - embed) / 2, shape.n_layers // 2,
                      shape.hidden, shape.vocab)


def plan_memory(teacher: ModelShape, student: ModelShape, batch: int, seq_len: int,
                precision: str = "bf16", optimizer: str = "adamw", top_k: int = 32,
                card_gib: float | None = None) -> list[dict]:
    """Bytes each method needs on one accelerator (no sharding, no activation recomputation,
    flash attention: activations ≈ 34·b·s·h bytes per layer in 16-bit, Korthikanti et al. 2022).

    Training state per student parameter: bf16 mixed precision = 2 (weights) + 4 (fp32 master)
    + 2 (grads) + optimizer (AdamW 8, Lion 4); fp32 = 4 + 4 + optimizer. Logits: fp32 values and
    their gradient, 8·b·s·V. KD adds the teacher's weights for inference (2 or 4 bytes/param) and
    its logits (4·b·s·V); offline KD adds only the batch's top-k cache."""
    if precision not in ("bf16", "fp32"):
        raise ConfigError(f"precision: unknown {precision!r} (valid: bf16, fp32)")
    if optimizer not in ("adamw", "lion"):
        raise ConfigError(f"optimizer: unknown {optimizer!r} (valid: adamw, lion)")
    act_bytes = 2 if precision == "bf16" else 4
    # weights + grads: 2 + 4 (master) + 2 in bf16 mixed precision, 4 + 4 in fp32: 8 bytes either way
    state_per_param = 8 + (8 if optimizer == "adamw" else 4)
    weights_grads = student.params * state_per_param
    activations = student.n_layers * 34 * batch * seq_len * student.hidden * act_bytes / 2
    logits = 8 * batch * seq_len * student.vocab
    tf_total = weights_grads + activations + logits
    teacher_weights = teacher.params * act_bytes
    teacher_logits = 4 * batch * seq_len * teacher.vocab
    cache = batch * seq_len * top_k * (4 + 2)
    rows = [
        ("teacher-free", tf_total, 0.0),
        ("vanilla KD", tf_total + teacher_weights + teacher_logits, teacher_weights + teacher_logits),
        ("offline KD", tf_total + cache, cache),
    ]
    gib = 1024**3
    out = []
    for method, total, extra in rows:
        row = {"teacher": teacher.name, "student": student.name, "method": method,
               "batch": batch, "seq_len": seq_len, "precision": precision, "optimizer": optimizer,
               "student_state_gib": weights_grads / gib, "activations_gib": (activations + logits) / gib,
               "teacher_extra_gib": extra / gib, "total_gib": total / gib}
        if card_gib is not None:
            row["card_gib"] = card_gib
            row["fits"] = total / gib <= card_gib
        out.append(row)
    return out
