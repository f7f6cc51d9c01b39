"""Width pruning, "DimCHOP" (v3 Fig 3): keep every layer, iteratively zero the least important FFN
dimensions during training, then remove them physically.

Importance is PLATON's (Zhang et al. 2022): per weight, sensitivity I = |θ ⊙ ∇L|, its EMA
Ī ← β1·Ī + (1-β1)·I, uncertainty U = |I - Ī| and its EMA Ū ← β2·Ū + (1-β2)·U; score = Ī ⊙ Ū.
A dimension's score is the L1 sum over every weight that belongs to it: row i of the gate and up
projections and column i of the down projection (the FFN's i-th hidden unit).

Scope of this version: the FFN (intermediate) dimensions of Llama-style gated MLPs, the same number
in every layer (HF configs have one `intermediate_size`). The residual width is not pruned: with
RMSNorm a zeroed residual dimension still counts in the norm's mean, so a physically narrower model
would not equal the masked one; FFN units remove exactly (masked logits = shrunk logits).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from distill_lib.config import ConfigError
from distill_lib.models import decoder_layers


def _mlp(layer):
    mlp = getattr(layer, "mlp", None)
    if mlp is None or not all(hasattr(mlp, p) for p in ("gate_proj", "up_proj", "down_proj")):
        raise ConfigError("width: FFN-dimension pruning needs gated MLPs with gate_proj/up_proj/down_proj "
                          "(Llama family)")
    return mlp


def pruned_fraction(step: int, target: float, start: int, end: int) -> float:
    """Cubic schedule: 0 before `start`, `target` from `end` on, target·(1 - (1 - p)³) between."""
    if step <= start:
        return 0.0
    if step >= end:
        return target
    p = (step - start) / (end - start)
    return target * (1 - (1 - p) ** 3)


def matching_ffn_fraction(model, keep_fraction_non_embedding: float) -> float:
    """Fraction of FFN units to prune so that the model keeps `keep_fraction_non_embedding` of its
    non-embedding parameters (e.g. those of a depth-pruned student)."""
    from distill_lib.models import parameter_counts

    counts = parameter_counts(model)
    ffn = sum(p.numel() for layer in decoder_layers(model) for p in _mlp(layer).parameters())
    remove = counts["non_embedding"] * (1 - keep_fraction_non_embedding)
    if remove > ffn:
        raise ConfigError(f"width: removing {remove:.0f} parameters needs more than the {ffn} FFN weights")
    return remove / ffn


class FFNPruner(nn.Module):
    """PLATON scores and masks for every layer's FFN units; buffers, so they checkpoint with state_dict."""

    def __init__(self, model, target: float, beta1: float = 0.85, beta2: float = 0.95, every: int = 10,
                 start: int = 0, end: int = 100):
        super().__init__()
        if not 0.0 < target < 1.0:
            raise ConfigError(f"width.target: must be in (0, 1), got {target}")
        self.target, self.beta1, self.beta2, self.every, self.start, self.end = target, beta1, beta2, every, start, end
        self.mlps = [_mlp(layer) for layer in decoder_layers(model)]
        width = self.mlps[0].gate_proj.out_features
        for i, mlp in enumerate(self.mlps):
            for name in ("gate_proj", "up_proj", "down_proj"):
                w = getattr(mlp, name).weight
                self.register_buffer(f"ibar_{i}_{name}", torch.zeros_like(w, dtype=torch.float32))
                self.register_buffer(f"ubar_{i}_{name}", torch.zeros_like(w, dtype=torch.float32))
            self.register_buffer(f"mask_{i}", torch.ones(width, dtype=torch.bool))
        self.width = width

    def mask(self, i: int) -> torch.Tensor:
        return getattr(self, f"mask_{i}")

    @torch.no_grad()
    def update_scores(self) -> None:
        """After backward, before the optimizer step: fold this step's sensitivities into the EMAs."""
        for i, mlp in enumerate(self.mlps):
            for name in ("gate_proj", "up_proj", "down_proj"):
                w = getattr(mlp, name).weight
                if w.grad is None:
                    continue
                sensitivity = (w.detach().float() * w.grad.float()).abs()
                ibar, ubar = getattr(self, f"ibar_{i}_{name}"), getattr(self, f"ubar_{i}_{name}")
                ibar.mul_(self.beta1).add_(sensitivity, alpha=1 - self.beta1)
                ubar.mul_(self.beta2).add_((sensitivity - ibar).abs(), alpha=1 - self.beta2)

    def unit_scores(self, i: int) -> torch.Tensor:
        """Score of each FFN unit of layer i: the L1 sum of Ī·Ū over its gate row, up row, down column."""
        s = lambda name: getattr(self, f"ibar_{i}_{name}") * getattr(self, f"ubar_{i}_{name}")  # noqa: E731
        return s("gate_proj").sum(1) + s("up_proj").sum(1) + s("down_proj").sum(0)

    @torch.no_grad()
    def step(self, step: int) -> None:
        """After the optimizer step `step` (1-based): grow the masks on schedule, then re-zero."""
        if step % self.every == 0 or step == self.end:
            n_pruned = round(pruned_fraction(step, self.target, self.start, self.end) * self.width)
            for i in range(len(self.mlps)):
                mask = self.mask(i)
                extra = n_pruned - int((~mask).sum())
                if extra > 0:  # masks only grow: already pruned units stay pruned
                    scores = self.unit_scores(i).masked_fill(~mask, math.inf)
                    mask[torch.argsort(scores, stable=True)[:extra]] = False
        self.apply_masks()

    @torch.no_grad()
    def apply_masks(self) -> None:
        for i, mlp in enumerate(self.mlps):
            keep = self.mask(i).to(mlp.gate_proj.weight.dtype)
            mlp.gate_proj.weight.mul_(keep[:, None])
            mlp.up_proj.weight.mul_(keep[:, None])
            mlp.down_proj.weight.mul_(keep[None, :])
            for name in ("gate_proj", "up_proj"):
                bias = getattr(mlp, name).bias
                if bias is not None:
                    bias.mul_(keep)

    def pruned_fraction_now(self) -> float:
        return float(sum(int((~self.mask(i)).sum()) for i in range(len(self.mlps)))) / (self.width * len(self.mlps))


@torch.no_grad()
def shrink_ffn(model, masks: list[torch.Tensor]):
    """A new, smaller dense model without the masked FFN units (same count in every layer), whose
    logits equal the masked model's."""
    counts = {int(m.sum()) for m in masks}
    if len(counts) != 1:
        raise ConfigError(f"width: layers keep different FFN widths {sorted(counts)}; one intermediate_size needed")
    (kept,) = counts
    small = copy.deepcopy(model)
    small.config.intermediate_size = kept
    for layer, mask in zip(decoder_layers(small), masks):
        mlp = _mlp(layer)
        index = mask.nonzero().squeeze(1)
        for name, dim in (("gate_proj", 0), ("up_proj", 0), ("down_proj", 1)):
            old = getattr(mlp, name)
            new = nn.Linear(old.in_features if dim == 0 else kept, kept if dim == 0 else old.out_features,
                            bias=old.bias is not None, dtype=old.weight.dtype, device=old.weight.device)
            new.weight.copy_(old.weight.index_select(dim, index))
            if old.bias is not None:
                new.bias.copy_(old.bias if dim == 1 else old.bias[index])
            setattr(mlp, name, new)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = kept
    return small
