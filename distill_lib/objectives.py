"""Pluggable objectives of the one training loop. Each is an `Objective`: it computes its named
terms for the student and a batch (`terms`) and says how much each weighs (`weights`); `mix`, the one
place terms become a loss, sums weight·term, and forward returns (loss, {term: value}). Modules an
objective trains itself (the projections of chop-distill) are its submodules. A teacher is held *outside* the module tree
(`self._teacher = [model]`) so it is neither trained, checkpointed nor wrapped by DDP."""
from __future__ import annotations

import torch
from torch import nn

from distill_lib.config import ConfigError, TrainConfig
from distill_lib.losses import forward_kd_sums, head_loss_sums, mse, token_cross_entropy, token_divergence, topk_kd_sums
from distill_lib.models import attention_module, decoder_layers, final_hidden, logits_from_hidden


def check_same_vocabulary(student, teacher) -> None:
    vs = student.get_output_embeddings().weight.shape[0]
    vt = teacher.get_output_embeddings().weight.shape[0]
    if vs != vt:
        raise ConfigError(f"teacher: vocabulary mismatch, student has {vs} output tokens and teacher {vt}; "
                          "distillation needs the same tokenizer")


def student_head(student) -> tuple:
    """The student's LM head as `head_loss_sums` takes it: hidden -> logits, and its trainable
    parameters (a tied head's weight is the input embedding's: its gradient is routed to both)."""
    return (lambda h: logits_from_hidden(student, h),
            [p for p in student.get_output_embeddings().parameters() if p.requires_grad])


def mix(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The loss: Σ weight·term, summed in the order of `weights` (every weighted term counts, a
    zero weight too: a non-finite term makes the loss non-finite)."""
    loss = None
    for name, weight in weights.items():
        part = weight * terms[name]
        loss = part if loss is None else loss + part
    return loss


class Objective(nn.Module):
    """`terms(student, input_ids, block_index)` -> {name: scalar tensor}; `weights`: {name: weight}
    of the terms that make the loss, in summation order."""

    weights: dict[str, float]

    def terms(self, student, input_ids, block_index=None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, student, input_ids, block_index=None):
        terms = self.terms(student, input_ids, block_index)
        return mix(terms, self.weights), {k: v.detach() for k, v in terms.items()}


def _kd_weights(alpha: float, temperature: float) -> dict[str, float]:
    """alpha·T²·KL + (1 - alpha)·CE: T² keeps the KL gradients' scale independent of T."""
    return {"kl": alpha * temperature**2, "ce": 1 - alpha}


class LMObjective(Objective):
    """Next-token cross-entropy: the teacher-free method, and how every base model is trained."""

    def __init__(self, chunk_size: int | None = None):
        super().__init__()
        self.chunk = chunk_size
        self.weights = {"ce": 1.0}

    def terms(self, student, input_ids, block_index=None):
        hidden, _ = final_hidden(student, input_ids)
        labels = input_ids[:, 1:]
        ce = head_loss_sums(*student_head(student), lambda z, y: token_cross_entropy(z, y)[None], [1.0],
                            self.chunk, hidden[:, :-1], labels)
        return {"ce": ce[0] / labels.numel()}


class KDObjective(Objective):
    """Vanilla logit distillation: alpha·T²·D(p_teacher,T || p_student,T) + (1 - alpha)·CE, the
    teacher's forward run every step under no_grad."""

    def __init__(self, cfg: TrainConfig, teacher):
        super().__init__()
        self._teacher = [teacher.eval().requires_grad_(False)]
        self.temperature = cfg.kd_temperature
        self.kind, self.beta, self.chunk = cfg.kd_divergence, cfg.jsd_beta, cfg.kd_chunk_size
        self.weights = _kd_weights(cfg.kd_alpha, cfg.kd_temperature)

    @property
    def teacher(self):
        return self._teacher[0]

    def _terms(self, student, hidden_s, hidden_t, labels):
        weights = (self.weights["ce"], self.weights["kl"])

        def per_chunk(logits_s, ht, y):
            with torch.no_grad():
                logits_t = logits_from_hidden(self.teacher, ht)
            if self.kind == "forward":  # the gradient in closed form (cheaper than autograd's)
                return forward_kd_sums(logits_s, logits_t, y, self.temperature, weights)
            return torch.stack([token_cross_entropy(logits_s, y),
                                token_divergence(logits_s, logits_t, self.temperature, self.kind, self.beta)])

        sums = head_loss_sums(*student_head(student), per_chunk, list(weights), self.chunk, hidden_s, hidden_t, labels)
        return sums[0] / labels.numel(), sums[1] / labels.numel()

    def terms(self, student, input_ids, block_index=None):
        hidden_s, _ = final_hidden(student, input_ids)
        with torch.no_grad():
            hidden_t, _ = final_hidden(self.teacher, input_ids)
        ce, kl = self._terms(student, hidden_s[:, :-1], hidden_t[:, :-1], input_ids[:, 1:])
        return {"ce": ce, "kl": kl}


class _AttentionRecorder:
    """Forward hooks that keep each layer's attention output for one forward pass."""

    def __init__(self, model):
        self.outputs: list[torch.Tensor] = []
        self.handles = [attention_module(layer).register_forward_hook(self._grab) for layer in decoder_layers(model)]

    def _grab(self, module, args, output):
        self.outputs.append(output[0] if isinstance(output, tuple) else output)

    def remove(self):
        for h in self.handles:
            h.remove()


class ChopDistillObjective(KDObjective):
    """CHOP+distill (v3 Fig 4): LM + logit KL + MSE(projected student hidden states, teacher hidden
    states) + MSE(attention outputs) + MSE(embeddings), each weighted (default 1: the paper's
    unweighted sum). Student layer j is matched to teacher layer `source_layers[j]`, the layer it was
    copied from by truncation."""

    def __init__(self, cfg: TrainConfig, teacher, student):
        super().__init__(cfg, teacher)
        mapping = getattr(student.config, "source_layers", None)
        if mapping is None or len(mapping) != student.config.num_hidden_layers:
            raise ConfigError("init.kind: chop-distill needs a student truncated from the teacher "
                              "(its config.source_layers maps student layers to teacher layers)")
        self.mapping = list(mapping)
        d_s, d_t = student.config.hidden_size, teacher.config.hidden_size
        self.projections = nn.ModuleList(nn.Linear(d_s, d_t, bias=False) for _ in self.mapping)
        if d_s == d_t:  # start from the identity: the truncated student's layers *are* teacher layers
            for proj in self.projections:
                nn.init.eye_(proj.weight)
        self.weights = {"ce": cfg.weight_lm, "kl": cfg.weight_kl, "hidden_mse": cfg.weight_hidden,
                        "attention_mse": cfg.weight_attention, "embedding_mse": cfg.weight_embedding}

    def terms(self, student, input_ids, block_index=None):
        rec_s = _AttentionRecorder(student)
        try:
            hidden_s, states_s = final_hidden(student, input_ids, output_hidden_states=True)
        finally:
            rec_s.remove()
        rec_t = _AttentionRecorder(self.teacher)
        try:
            with torch.no_grad():
                hidden_t, states_t = final_hidden(self.teacher, input_ids, output_hidden_states=True)
        finally:
            rec_t.remove()
        ce, kl = self._terms(student, hidden_s[:, :-1], hidden_t[:, :-1], input_ids[:, 1:])
        # states[0] is the embedding output, states[i + 1] the output of layer i
        hidden = sum(mse(proj(states_s[j + 1]), states_t[t + 1])
                     for j, (proj, t) in enumerate(zip(self.projections, self.mapping))) / len(self.mapping)
        attention = sum(mse(rec_s.outputs[j], rec_t.outputs[t]) for j, t in enumerate(self.mapping)) / len(self.mapping)
        embedding = mse(states_s[0], states_t[0])
        return {"ce": ce, "kl": kl, "hidden_mse": hidden, "attention_mse": attention, "embedding_mse": embedding}


class OfflineKDObjective(Objective):
    """KD from a stored top-k teacher cache: alpha·T²·KL(q_teacher,T || p_student,T) + (1-alpha)·CE."""

    def __init__(self, cfg: TrainConfig, cache):
        super().__init__()
        self.cache = cache
        self.temperature, self.chunk = cfg.kd_temperature, cfg.kd_chunk_size
        self.weights = _kd_weights(cfg.kd_alpha, cfg.kd_temperature)

    def terms(self, student, input_ids, block_index=None):
        if block_index is None:
            raise ValueError("offline-kd needs the block index of every row of the batch")
        topk_ids, topk_logits = self.cache.lookup(block_index, input_ids.device)
        hidden, _ = final_hidden(student, input_ids)
        labels = input_ids[:, 1:]

        weights = (self.weights["ce"], self.weights["kl"])
        sums = head_loss_sums(*student_head(student),
                              lambda z, ids, logits_t, y: topk_kd_sums(z, ids, logits_t, y, self.temperature, weights),
                              list(weights), self.chunk, hidden[:, :-1], topk_ids, topk_logits, labels)
        return {"ce": sums[0] / labels.numel(), "kl": sums[1] / labels.numel()}


class TrainingModule(nn.Module):
    """Student + objective as one module, so DDP/FSDP wrap (and sync) everything that trains and the
    forward always goes through the wrapper."""

    def __init__(self, student, objective):
        super().__init__()
        self.student = student
        self.objective = objective

    def forward(self, input_ids, block_index=None):
        return self.objective(self.student, input_ids, block_index)
