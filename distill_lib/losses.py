"""Training objectives' loss terms: LM cross-entropy, logit distillation (forward / reverse KL,
generalized JSD, temperature, α), top-k distillation from a stored teacher cache, and MSE terms.

Every loss here is a *mean over predicted tokens*. `chunked_token_loss` evaluates a per-token loss
over slices of the sequence, recomputing each slice's logits in backward (activation
checkpointing), so at most one slice of [batch, chunk, vocab] logits is alive at a time; the result
equals the unchunked loss up to float summation order.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from distill_lib.config import DIVERGENCES, ConfigError


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token next-token cross-entropy (sum over the given tokens, not the mean)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), reduction="sum")


def token_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
                     kind: str = "forward", jsd_beta: float = 0.5) -> torch.Tensor:
    """Sum over tokens of a divergence between the teacher's and student's next-token
    distributions at temperature T.
    forward: KL(p_t || p_s) (Hinton et al.; the paper's vanilla KD) · reverse: KL(p_s || p_t) ·
    jsd: β·KL(p_t || m) + (1-β)·KL(p_s || m), m = β·p_t + (1-β)·p_s (generalized JSD)."""
    log_ps = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if kind == "forward":
        per_token = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    elif kind == "reverse":
        per_token = (log_ps.exp() * (log_ps - log_pt)).sum(-1)
    elif kind == "jsd":
        log_m = torch.logsumexp(torch.stack([log_pt + torch.log(torch.tensor(jsd_beta)),
                                             log_ps + torch.log(torch.tensor(1 - jsd_beta))]), dim=0)
        per_token = (jsd_beta * (log_pt.exp() * (log_pt - log_m)).sum(-1)
                     + (1 - jsd_beta) * (log_ps.exp() * (log_ps - log_m)).sum(-1))
    else:
        raise ConfigError(f"kd_divergence: unknown {kind!r} (valid: {', '.join(DIVERGENCES)})")
    return per_token.sum()


def topk_forward_kl(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logits: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """Sum over tokens of KL(q_t || p_s) where q_t is the teacher's distribution renormalised over its
    stored top-k tokens (= softmax of the top-k logits / T) and p_s the student's full softmax
    gathered at those tokens. With k = vocabulary size this is exactly the forward KL."""
    log_ps = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, topk_ids.long())
    log_qt = F.log_softmax(topk_logits.float() / temperature, dim=-1)
    return (log_qt.exp() * (log_qt - log_ps)).sum()


def chunked_token_loss(fn: Callable[..., torch.Tensor], chunk_size: int | None, *tensors: torch.Tensor) -> torch.Tensor:
    """Sum of `fn(*slices)` over slices of dim 1 (the sequence) of every tensor; `chunk_size=None`
    evaluates in one piece. Slices are checkpointed so their logits are recomputed in backward."""
    length = tensors[0].size(1)
    if chunk_size is None or chunk_size >= length:
        return fn(*tensors)
    total = None
    for start in range(0, length, chunk_size):
        pieces = [t[:, start:start + chunk_size] for t in tensors]
        if torch.is_grad_enabled() and any(t.requires_grad for t in pieces):
            part = checkpoint(fn, *pieces, use_reentrant=False)
        else:
            part = fn(*pieces)
        total = part if total is None else total + part
    return total


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(a.float(), b.float())
