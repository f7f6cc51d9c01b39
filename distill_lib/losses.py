"""Training objectives' loss terms: LM cross-entropy, logit distillation (forward / reverse KL,
generalized JSD, temperature, α), top-k distillation from a stored teacher cache, and MSE terms.

Every loss here is a *mean over predicted tokens*. `head_loss_sums` evaluates per-token losses on
the LM head's logits over slices of the sequence and computes each slice's gradient right away, so
at most one slice of [batch, chunk, vocab] logits is alive at a time and nothing is recomputed in
backward; the result equals the unchunked loss up to float summation order.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

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


def _student_side(student_logits: torch.Tensor, labels: torch.Tensor, temperature: float):
    """log p_s, the CE sum, and log p_s at temperature T (the same tensor at T = 1)."""
    zs = student_logits.detach().float()
    log_ps = F.log_softmax(zs, dim=-1)
    ce = -log_ps.gather(-1, labels.unsqueeze(-1)).sum()
    return log_ps, ce, (log_ps if temperature == 1 else F.log_softmax(zs / temperature, dim=-1))


def _student_gradient(log_ps: torch.Tensor, log_ps_t: torch.Tensor, labels: torch.Tensor, temperature: float,
                      w_ce: float, w_kl: float) -> torch.Tensor:
    """The student's part of the closed-form gradient, w_ce·(p_s - onehot(y)) + (w_kl/T)·p_s,T,
    computed in place in `log_ps` (and `log_ps_t`); the caller subtracts the teacher's (w_kl/T)·q_t."""
    if temperature == 1:
        grad = log_ps.exp_().mul_(w_ce + w_kl)
    else:
        grad = log_ps.exp_().mul_(w_ce).add_(log_ps_t.exp_(), alpha=w_kl / temperature)
    return grad.scatter_add_(-1, labels.unsqueeze(-1),
                             torch.full(labels.shape + (1,), -w_ce, dtype=grad.dtype, device=grad.device))


def forward_kd_sums(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                    temperature: float, weights: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """[CE sum, forward-KL sum at T] (as `token_cross_entropy` and `token_divergence(kind="forward")`)
    and, computed in closed form, the gradient of w_ce·CE + w_kl·KL with respect to the student's
    logits: w_ce·(p_s - onehot(y)) + (w_kl/T)·(p_s,T - p_t,T). On a 49k vocabulary autograd's
    backward through the log-softmaxes, products and sums costs more than the teacher's LM head, so
    vanilla KD takes this path (`head_loss_sums` accepts the gradient). With gradients off (an
    evaluation) only the sums are computed and returned."""
    w_ce, w_kl = weights
    want_grad = torch.is_grad_enabled()
    with torch.no_grad():
        log_ps, ce, log_ps_t = _student_side(student_logits, labels, temperature)
        zt = teacher_logits.float()
        log_pt = F.log_softmax(zt if temperature == 1 else zt / temperature, dim=-1)
        pt = log_pt.exp()
        # in place and a dot product: every [tokens, vocab] temporary is a fresh allocation (page faults)
        kl = torch.dot(pt.reshape(-1), log_pt.sub_(log_ps_t).reshape(-1))
        del log_pt
        if not want_grad:
            return torch.stack([ce, kl])
        grad = _student_gradient(log_ps, log_ps_t, labels, temperature, w_ce, w_kl).add_(pt, alpha=-w_kl / temperature)
    return torch.stack([ce, kl]), grad.to(student_logits.dtype)


def topk_kd_sums(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logits: torch.Tensor,
                 labels: torch.Tensor, temperature: float, weights: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """[CE sum, `topk_forward_kl` sum] and, in closed form, the gradient of w_ce·CE + w_kl·KL with
    respect to the student's logits: w_ce·(p_s - onehot(y)) + (w_kl/T)·(p_s,T - q_t scattered onto
    its top-k tokens) (q_t sums to 1). Offline KD's counterpart of `forward_kd_sums`."""
    w_ce, w_kl = weights
    want_grad = torch.is_grad_enabled()
    with torch.no_grad():
        log_ps, ce, log_ps_t = _student_side(student_logits, labels, temperature)
        ids = topk_ids.long()
        log_qt = F.log_softmax(topk_logits.float() / temperature, dim=-1)
        qt = log_qt.exp()
        kl = (qt * (log_qt - log_ps_t.gather(-1, ids))).sum()
        if not want_grad:
            return torch.stack([ce, kl])
        grad = _student_gradient(log_ps, log_ps_t, labels, temperature, w_ce, w_kl)
        grad.scatter_add_(-1, ids, qt.mul_(-w_kl / temperature))
    return torch.stack([ce, kl]), grad.to(student_logits.dtype)


def head_loss_sums(head: Callable[[torch.Tensor], torch.Tensor], head_params: list[torch.Tensor],
                   fn: Callable[..., torch.Tensor], weights: list[float], chunk_size: int | None,
                   hidden: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
    """Σ over slices of dim 1 (the sequence) of `fn(head(hidden slice), *extra slices)`: a vector of
    per-term sums. `chunk_size=None` is one slice. `fn` may also return (sums, the gradient of
    Σ weights·sums with respect to the logits), computed in closed form (`forward_kd_sums`).

    With gradients on, each slice's gradient of Σ weights·terms with respect to the hidden states and
    the trainable head parameters `head_params` is taken as soon as the slice's loss is known (a fused
    head + loss, as in Liger's fused linear cross-entropy), and the slice's logits are freed. Backward
    then only scales those gradients: no logits are recomputed (checkpointing each slice would run the
    head's matmul, and a KD teacher's, a second time: ~12% of a SmolLM2 student's step). This is exact
    for a loss c·Σ weights·terms, any scalar c, which is how `objectives.mix` uses the terms; a
    backward that weighs the terms otherwise is refused."""
    slices = [(0, hidden.size(1))] if chunk_size is None else \
        [(s, min(s + chunk_size, hidden.size(1))) for s in range(0, hidden.size(1), chunk_size)]
    if not torch.is_grad_enabled() or not (hidden.requires_grad or head_params):
        with torch.no_grad():
            outs = [fn(head(hidden[:, a:b].contiguous()), *[x[:, a:b].contiguous() for x in extras]) for a, b in slices]
        return sum(o[0] if isinstance(o, tuple) else o for o in outs)
    return _FusedHeadLoss.apply(head, fn, torch.tensor(weights, dtype=torch.float64), slices, len(head_params),
                                hidden, *head_params, *extras)


def _unlisted_leaves(output: torch.Tensor, listed: list[torch.Tensor]) -> int:
    """How many tensors that need a gradient `output` was computed from, other than `listed` (a
    graph walk to its leaves). The fused head returns gradients only for what it was given."""
    ids, seen, stack, count = {id(t) for t in listed}, set(), [output.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf that wants a gradient
            count += id(node.variable) not in ids
        else:
            stack.extend(n for n, _ in node.next_functions)
    return count


class _FusedHeadLoss(torch.autograd.Function):
    """`head_loss_sums` with gradients: forward computes the sums and their gradients slice by slice;
    backward scales the stored gradients by c, where grad_output = c·weights."""

    @staticmethod
    def forward(ctx, head, fn, weights, slices, n_params, hidden, *rest):
        params, extras = rest[:n_params], rest[n_params:]
        grad_hidden = torch.zeros_like(hidden) if hidden.requires_grad else None
        grad_params = [torch.zeros_like(p) for p in params]
        total = None
        for a, b in slices:
            # contiguous slices: the head's matmul is then one mm, not a batched one
            h = hidden[:, a:b].detach().contiguous().requires_grad_(hidden.requires_grad)
            with torch.enable_grad():
                logits = head(h)
                inputs = ([h] if hidden.requires_grad else []) + list(params)
                if a == 0 and _unlisted_leaves(logits, inputs):
                    raise RuntimeError("head_loss_sums: the LM head computes with tensors that need gradients but are "
                                       "not among its parameters (e.g. FSDP1 flat parameters without "
                                       "use_orig_params=True); they would get no gradient. Use FSDP2 or use_orig_params")
                out = fn(logits, *[x[:, a:b].contiguous() for x in extras])
                if isinstance(out, tuple):  # the logits' gradient, given in closed form
                    sums, grad_logits = out
                    grads = torch.autograd.grad(logits, inputs, grad_logits, allow_unused=True)
                else:
                    sums = out
                    grads = torch.autograd.grad((sums * weights.to(sums.device, sums.dtype)).sum(), inputs,
                                                allow_unused=True)
            del logits, out
            if hidden.requires_grad:
                grad_hidden[:, a:b] = grads[0]
                grads = grads[1:]
            for acc, g in zip(grad_params, grads):
                if g is not None:
                    acc += g
            total = sums.detach() if total is None else total + sums.detach()
        ctx.weights = weights
        ctx.n_extras = len(extras)
        # kept on ctx, not saved for backward: they are no inputs or outputs, and backward scales them in place
        ctx.grad_hidden, ctx.grad_params = grad_hidden, grad_params
        return total

    @staticmethod
    def backward(ctx, grad_sums):
        # Backward runs inside the training step's autocast (bf16 precision), which would compute these
        # float32 products in bf16 and round c enough to fail the check below: autocast off here (the
        # same float32 arithmetic as without it, so fp32 runs are unchanged bit for bit).
        with torch.autocast(device_type=grad_sums.device.type, enabled=False):
            w = ctx.weights.to(grad_sums.device, grad_sums.dtype)
            norm = float(w @ w)
            c = float(grad_sums @ w) / norm if norm > 0 else 0.0
        # a non-finite loss passes through, as autograd would (the loop then stops the run as diverged)
        if torch.isfinite(grad_sums).all() and not torch.allclose(grad_sums, c * w, rtol=1e-4, atol=1e-12 + 1e-6 * abs(c)):
            raise RuntimeError(f"head_loss_sums: its terms must be weighed by {ctx.weights.tolist()} (times any scalar) "
                               f"in the loss; backward got {[round(g, 6) for g in grad_sums.tolist()]}")
        if ctx.grad_params is None:
            raise RuntimeError("head_loss_sums: backward ran twice (retain_graph); its gradients were handed over")
        grad_hidden = ctx.grad_hidden.mul_(c) if ctx.grad_hidden is not None else None
        grad_params = [g.mul_(c) for g in ctx.grad_params]
        ctx.grad_hidden = ctx.grad_params = None
        return (None, None, None, None, None, grad_hidden, *grad_params, *[None] * ctx.n_extras)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(a.float(), b.float())
