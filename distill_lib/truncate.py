"""Depth pruning: which layers to drop (by name or by importance) and a student that keeps the rest.

- `select_layers` turns a strategy name and an amount into the kept layer indices, without building
  anything, so a notebook can draw the configurations (v3 Fig 5).
- `layer_importance` scores layers on a calibration batch (block influence, angular distance, and the
  calibration-loss selectors: perplexity without each layer, greedy re-scored removal, best
  contiguous block, first-order Taylor); `score_layers` adds what the scores mean and the full
  model's calibration perplexity, which `truncate_by_strategy` records in the student's config
  (`layer_selection`, see `selection_record`).
- `truncate` builds a new, independent model that keeps the given layers, with a config and layer
  indices that make it a clean HF checkpoint.
- `remove_layers_` drops layers from a model that is being trained, keeping the optimizer state of
  every parameter that stays (the gradual schedule of v3 Fig 6).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

# The strategy names are the config's (config.Strategy): PAPER_STRATEGIES are the paper's five
# configurations (v3 Fig 5 / Table 6), which keep the first and the last layer.
from distill_lib.config import IMPORTANCE_STRATEGIES, PAPER_STRATEGIES, STRATEGIES, ConfigError, check_drop  # noqa: F401
from distill_lib.layer_choice import (  # noqa: F401  (the selection's names: imported from here too)
    LAYER_SELECTION_FILE, _check_indices, _check_interior, _check_scores, drop_count, keep_from_removed,
    layer_selection, select_layers, selection_record, write_layer_selection,
)
from distill_lib.models import check_causal_decoder, decoder_layers, load_causal_lm, set_decoder_layers
from distill_lib.storage import write_json_atomic


# ---------------------------------------------------------------------------------------------
# Importance from a calibration batch
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def layer_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Hidden states entering each decoder layer, plus the last layer's output (n + 1 tensors of
    shape [batch, seq, d]), captured with hooks so no family's final-norm convention matters."""
    layers = decoder_layers(model)
    captured: list[torch.Tensor] = []

    def grab_input(module, args, kwargs):
        captured.append((args[0] if args else kwargs["hidden_states"]).detach().float())

    def grab_output(module, args, kwargs, output):
        captured.append((output[0] if isinstance(output, tuple) else output).detach().float())

    handles = [layer.register_forward_pre_hook(grab_input, with_kwargs=True) for layer in layers]
    handles.append(layers[-1].register_forward_hook(grab_output, with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return captured


def _token_cosine(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)  # [batch, seq]
    if mask is None:
        return cos.mean()
    mask = mask.to(cos.dtype)
    return (cos * mask).sum() / mask.sum()


#: Calibration blocks per scoring pass of the calibration-loss selectors (bounds the memory of the
#: logits and of the recorded layer outputs); None scores all blocks in one pass.
SCORING_BATCH = 4


def layer_importance(model: nn.Module, input_ids: torch.Tensor, method: str, drop: int | float = 0.5,
                     attention_mask: torch.Tensor | None = None, keep_ends: bool = True,
                     batch_size: int | None = SCORING_BATCH) -> list:
    """Scores for the importance strategies, averaged over the (unmasked) tokens of the batch.

    block-influence (Men et al., ShortGPT): BI_l = 1 - cos(x_l, x_{l+1}); low = redundant layer.
    angular (Gromov et al.): d_l = arccos(cos(x_l, x_{l+k})) / pi for a block of k = drop layers
    starting at l; low = the block barely changes the representation.
    ppl-removal, ppl-iterative, best-block, taylor: see the calibration-loss selectors below
    (`score_layers`, which also says what each score means). `keep_ends` and `batch_size` only
    matter to those (ppl-iterative's candidates; micro-batches of the calibration blocks).
    """
    return score_layers(model, input_ids, method, drop, attention_mask, keep_ends, batch_size)["scores"]


def _similarity_scores(model: nn.Module, input_ids: torch.Tensor, method: str, drop: int | float,
                       attention_mask: torch.Tensor | None) -> list[float]:
    hidden = layer_inputs(model, input_ids, attention_mask)
    n = len(hidden) - 1
    if method == "block-influence":
        return [float(1.0 - _token_cosine(hidden[l], hidden[l + 1], attention_mask)) for l in range(n)]
    k = drop_count(n, drop)
    return [float(torch.arccos(_token_cosine(hidden[l], hidden[l + k], attention_mask).clamp(-1, 1)) / math.pi)
            for l in range(n - k + 1)]


# ---------------------------------------------------------------------------------------------
# Selectors scored by the calibration loss
# ---------------------------------------------------------------------------------------------
LAYER_NUMBERING = """Layer numbering, everywhere in this package: decoder layers are numbered from 0, in the
order the forward pass runs them (`model.model.layers[i]` in HF, `config.source_layers`, the `keep`
and `removed` lists, score lists indexed by layer). The first layer (next to the embeddings) is 0,
the last (next to the final norm and the LM head) is n - 1. `keep` lists the teacher's indices that
the student keeps, in order; student layer j is teacher layer keep[j]. Embeddings, final norm and
LM head are not layers and are always kept. HF's `output_hidden_states` has n + 1 entries:
hidden_states[i] is the input of layer i (hidden_states[0] the embeddings). Papers that number
layers from 1 are one higher: their "layers 67-68" are our 66, 67. The importance strategies never
remove layer 0 or layer n - 1 unless `keep_ends=False`; the paper's five configurations always
keep both."""

#: What the scores of each importance strategy are; stored with them (`selection_record`).
SCORE_MEANING = {
    "block-influence": "scores[l] = 1 - cos(input of layer l, its output), mean over calibration tokens; "
                       "the lowest are removed",
    "angular": "scores[s] = arccos(cos(input of layer s, input of layer s + k)) / pi; the block of k layers "
               "at the lowest allowed start is removed",
    "ppl-removal": "scores[l] = calibration perplexity of the model without layer l; the lowest are removed",
    "ppl-iterative": "scores[t][l] = calibration perplexity without the layers removed at steps 0..t-1 and "
                     "without l (null: not a candidate at step t); step t removes the lowest",
    "best-block": "scores[s] = calibration perplexity without layers s..s+k-1; the lowest allowed block is "
                  "removed",
    "taylor": "scores[l] = sum over layer l's parameters of |theta * dL/dtheta|, L the mean calibration "
              "token NLL; the lowest are removed",
}


def score_layers(model_or_path, input_ids: torch.Tensor, method: str, drop: int | float = 0.5,
                 attention_mask: torch.Tensor | None = None, keep_ends: bool = True,
                 batch_size: int | None = SCORING_BATCH) -> dict:
    """Scores of an importance strategy on the calibration blocks `input_ids` [blocks, length], with
    what they mean and, for the perplexity selectors, the full model's calibration perplexity.

    ppl-removal (Kim et al., Shortened LLaMA, PPL criterion): perplexity without each layer (all
        n, the ends too, for the profile).
    ppl-iterative (Song et al., SLEB): greedy; step t scores every remaining candidate with the t
        earlier choices already removed and removes the lowest. Only k = drop steps are run.
    best-block: perplexity without each block of k = drop consecutive layers (all n - k + 1 starts).
    taylor (Kim et al., Taylor+): Σ |θ ⊙ ∂L/∂θ| over each layer's parameters (elementwise, then
        summed), with L the mean token NLL of all calibration blocks.

    A layer is removed by bypassing it (its forward returns its input) for one pass; layers before
    the first removed one replay the outputs recorded in a pass of the model they share, so
    "without layer l" runs only layers l + 1 .. n - 1. Nothing of the model changes: no parameter,
    gradient, `requires_grad` flag or train/eval mode is left different (tests/test_selectors.py).
    The scores are computed on the model's device; `batch_size` blocks per pass (None: all).
    """
    model = load_causal_lm(model_or_path)
    check_causal_decoder(model)
    if method not in IMPORTANCE_STRATEGIES:
        raise ConfigError(f"method: unknown importance {method!r} (valid: {', '.join(IMPORTANCE_STRATEGIES)})")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size: must be >= 1, got {batch_size}")
    n = len(decoder_layers(model))
    out = {"method": method, "meaning": SCORE_MEANING[method]}
    if method in ("block-influence", "angular"):
        return {**out, "scores": _similarity_scores(model, input_ids, method, drop, attention_mask)}
    if method == "taylor":
        return {**out, "scores": _taylor_scores(model, input_ids, attention_mask, batch_size)}
    everything = list(range(n))
    if method == "ppl-removal":
        full, ppl = _removal_perplexities(model, input_ids, attention_mask, [(l,) for l in everything], (), batch_size)
        return {**out, "scores": ppl, "full_ppl": full}
    k = drop_count(n, drop)
    if method == "best-block":
        blocks = [tuple(range(s, s + k)) for s in range(n - k + 1)]
        full, ppl = _removal_perplexities(model, input_ids, attention_mask, blocks, (), batch_size)
        return {**out, "scores": ppl, "full_ppl": full}
    # ppl-iterative
    if keep_ends:
        _check_interior(n, k, method)
    candidates = everything[1:-1] if keep_ends else everything
    removed: list[int] = []
    steps: list[list[float | None]] = []
    full = None
    for _ in range(k):
        remaining = [l for l in candidates if l not in removed]
        base, ppl = _removal_perplexities(model, input_ids, attention_mask, [(l,) for l in remaining],
                                          tuple(removed), batch_size)
        full = base if full is None else full
        row: list[float | None] = [None] * n
        for l, p in zip(remaining, ppl):
            row[l] = p
        steps.append(row)
        removed.append(min(remaining, key=lambda l: (row[l], l)))
    return {**out, "scores": steps, "full_ppl": full, "order": removed}


@contextlib.contextmanager
def _scoring_mode(model: nn.Module):
    """eval() for the scoring passes; the model's own train/eval flags come back afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


_NO_FORWARD = object()


@contextlib.contextmanager
def _layers_replaced(layers: nn.ModuleList, skip=(), replay: dict | None = None, as_tuple: bool = False):
    """For the passes inside: layer i in `replay` returns replay[i] (an output recorded earlier),
    layer i in `skip` returns its input (it is removed). Only the layers' `forward` attribute is
    set, on the instance; the previous one comes back, parameters are never touched."""
    replay = replay or {}

    def bypass(*args, **kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden,) if as_tuple else hidden

    saved = {}
    try:
        for i, layer in enumerate(layers):
            if i in replay:
                fn = (lambda recorded: lambda *args, **kwargs: recorded)(replay[i])
            elif i in skip:
                fn = bypass
            else:
                continue
            saved[i] = layer.__dict__.get("forward", _NO_FORWARD)
            layer.forward = fn
        yield
    finally:
        for i, previous in saved.items():
            if previous is _NO_FORWARD:
                del layers[i].forward
            else:
                layers[i].forward = previous


def _micro_batches(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, batch_size: int | None, device):
    size = batch_size or len(input_ids)
    for start in range(0, len(input_ids), size):
        ids = input_ids[start:start + size].to(device)
        mask = attention_mask[start:start + size].to(device) if attention_mask is not None else None
        yield ids, mask


def _nll_sum(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL (fp32) and the number of predicted tokens; with a mask, a token counts
    when it and its context token are both real."""
    logits = logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1),
                                            reduction="none")
    if mask is None:
        return nll.sum(), nll.numel()
    counted = (mask[:, 1:] * mask[:, :-1]).reshape(-1).to(nll.dtype)
    return (nll * counted).sum(), int(counted.sum())


def _perplexity(nats: float, tokens: int) -> float:
    loss = nats / tokens
    return math.exp(loss) if loss < 709.0 else float("inf")


def _returns_tuple(model: nn.Module, layers: nn.ModuleList, ids: torch.Tensor) -> bool:
    """Whether this family's decoder layers return a tuple (older HF) or the hidden states."""
    seen = []
    handle = layers[0].register_forward_hook(lambda module, args, output: seen.append(isinstance(output, tuple)))
    try:
        model(input_ids=ids[:1, :2], use_cache=False)
    finally:
        handle.remove()
    return seen[0]


@torch.no_grad()
def _removal_perplexities(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                          removals: Sequence[tuple[int, ...]], base_removed: tuple[int, ...],
                          batch_size: int | None) -> tuple[float, list[float]]:
    """Calibration perplexity of the model without the layers `base_removed` (the base), and of the
    base without each removal's layers as well. Per micro-batch: one base pass records every layer's
    output; the pass without removal R replays the recorded outputs of the layers before min(R)."""
    layers = decoder_layers(model)
    device = next(model.parameters()).device
    base_nats, nats, tokens = 0.0, [0.0] * len(removals), 0
    with _scoring_mode(model):
        as_tuple = _returns_tuple(model, layers, input_ids.to(device))
        for ids, mask in _micro_batches(input_ids, attention_mask, batch_size, device):
            recorded: dict[int, object] = {}

            def recorder(i):
                return lambda module, args, output: recorded.__setitem__(i, output)

            hooks = [layer.register_forward_hook(recorder(i)) for i, layer in enumerate(layers)]
            try:
                with _layers_replaced(layers, skip=set(base_removed), as_tuple=as_tuple):
                    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            finally:
                for h in hooks:
                    h.remove()
            total, count = _nll_sum(logits, ids, mask)
            base_nats += float(total)
            tokens += count
            del logits
            for j, removal in enumerate(removals):
                first = min(removal)
                with _layers_replaced(layers, skip=set(base_removed) | set(removal),
                                      replay={i: recorded[i] for i in range(first)}, as_tuple=as_tuple):
                    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                nats[j] += float(_nll_sum(logits, ids, mask)[0])
                del logits
    return _perplexity(base_nats, tokens), [_perplexity(x, tokens) for x in nats]


def _taylor_scores(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                   batch_size: int | None) -> list[float]:
    """Σ_θ∈layer |θ · ∂L/∂θ| per layer, L the mean token NLL over all calibration blocks. Gradients
    come from torch.autograd.grad (no `.grad` is written); `requires_grad` flags are restored."""
    layers = decoder_layers(model)
    device = next(model.parameters()).device
    per_layer = [list(layer.parameters()) for layer in layers]
    flat = [p for params in per_layer for p in params]
    flags = [p.requires_grad for p in flat]
    grads = [torch.zeros_like(p, dtype=torch.float32) for p in flat]
    tokens = 0
    try:
        for p in flat:
            p.requires_grad_(True)
        with _scoring_mode(model), torch.enable_grad():
            for ids, mask in _micro_batches(input_ids, attention_mask, batch_size, device):
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                total, count = _nll_sum(logits, ids, mask)
                tokens += count
                for acc, g in zip(grads, torch.autograd.grad(total, flat, allow_unused=True)):
                    if g is not None:
                        acc += g.float()
    finally:
        for p, flag in zip(flat, flags):
            p.requires_grad_(flag)
    scores, i = [], 0
    with torch.no_grad():
        for params in per_layer:
            scores.append(float(sum((p.float() * grads[i + j] / tokens).abs().sum() for j, p in enumerate(params))))
            i += len(params)
    return scores


# ---------------------------------------------------------------------------------------------
# Building the student
# ---------------------------------------------------------------------------------------------
#: Config fields that hold one entry per decoder layer *by definition*, in every family: sliced with
#: the stack. `source_layers` is ours (which teacher layer each one is).
PER_LAYER_KEYS = ("layer_types", "source_layers")
#: Further per-layer fields of one family (model_type -> field names). None of `models.FAMILIES`
#: has any today; a family added there with e.g. a per-layer window or MoE layout lists them here.
#: Lists of layer *numbers* (e.g. a `moe_layers` of indices) are not per-layer lists: they would
#: need renumbering, not slicing, so such a family needs its own rule before it is supported.
FAMILY_PER_LAYER_KEYS: dict[str, tuple[str, ...]] = {}


def _per_layer_config_keys(config, n_layers: int) -> list[str]:
    """The config's per-layer fields (`PER_LAYER_KEYS` and the family's own): only these are sliced.
    Every other list is kept as is, even when its length happens to equal the number of layers
    (e.g. `eos_token_id: [2, 5, 7]` of a 3-layer model)."""
    keys = PER_LAYER_KEYS + FAMILY_PER_LAYER_KEYS.get(getattr(config, "model_type", ""), ())
    found = []
    for key in keys:
        values = getattr(config, key, None)
        if values is None:
            continue
        if not isinstance(values, (list, tuple)) or len(values) != n_layers:
            raise ConfigError(f"model: config.{key} should hold one entry per layer ({n_layers}), got {values!r}")
        found.append(key)
    return found


def _check_renumbering_is_safe(config) -> None:
    # GPT-2 can scale attention by 1/layer_idx; renumbering kept layers would change their outputs.
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        raise ConfigError("model: scale_attn_by_inverse_layer_idx=True makes a layer's output depend on its "
                          "index, so truncation would change it; not supported")


def _apply_layer_subset(model: nn.Module, keep: Sequence[int], layers: Sequence[nn.Module]) -> None:
    """Install `layers` (the modules of the kept indices, in order) and make the config and the
    layers' own indices describe the new stack."""
    config = model.config
    if getattr(config, "source_layers", None) is None:
        # which original layer each one is; a per-layer list, so every later removal slices it too
        config.source_layers = list(range(config.num_hidden_layers))
    for key in _per_layer_config_keys(config, config.num_hidden_layers):  # still the old stack
        values = getattr(config, key)
        setattr(config, key, type(values)(values[i] for i in keep))
    config.num_hidden_layers = len(keep)
    set_decoder_layers(model, nn.ModuleList(layers))
    for new_index, layer in enumerate(layers):
        for module in layer.modules():  # attention (and some layers) carry the KV-cache slot index
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index


def truncate(model_or_path, keep: Sequence[int], trust_remote_code: bool = False) -> nn.Module:
    """A new, independent copy of the model that keeps the decoder layers `keep` (in this order),
    the embeddings, final norm and LM head. `save_pretrained` of the result is a clean checkpoint
    that `AutoModelForCausalLM.from_pretrained` reloads with identical logits."""
    model = load_causal_lm(model_or_path, trust_remote_code=trust_remote_code)
    check_causal_decoder(model)
    _check_renumbering_is_safe(model.config)
    layers = decoder_layers(model)
    keep = list(keep)
    _check_indices(keep, len(layers), "keep")
    if not keep:
        raise ConfigError("keep: keeping zero layers leaves no model")
    # Copy everything but the layer stack, then only the kept layers: never holds two full models.
    set_decoder_layers(model, nn.ModuleList())
    try:
        student = copy.deepcopy(model)
    finally:
        set_decoder_layers(model, layers)
    kept = [copy.deepcopy(layers[i]) for i in keep]
    _apply_layer_subset(student, keep, kept)
    if hasattr(student.config, "layer_selection"):  # the source's own record; truncate_by_strategy writes a new one
        del student.config.layer_selection
    return student


def truncate_by_strategy(model_or_path, strategy: str, drop: int | float | None = None,
                         remove: Sequence[int] | None = None, calibration_ids: torch.Tensor | None = None,
                         keep_ends: bool = True, batch_size: int | None = SCORING_BATCH,
                         scores_cache: Path | str | None = None):
    """`truncate` with the layers chosen by `select_layers`; importance strategies score the layers
    on `calibration_ids` first. Returns (student, kept indices); the student's
    `config.layer_selection` holds `selection_record` (kept/removed teacher layers, scores), so it
    is saved in its config.json. With `scores_cache` (a folder) the scores are read from it when the
    same model, strategy, amount and calibration blocks were scored before, and written to it
    otherwise (`cached_scores`)."""
    model = load_causal_lm(model_or_path)
    n = len(decoder_layers(model))
    scored = None
    if strategy in IMPORTANCE_STRATEGIES:
        if calibration_ids is None:
            raise ConfigError(f"calibration_ids: strategy {strategy!r} needs a calibration batch of token ids")
        if drop is None:
            raise ConfigError(f"drop: strategy {strategy!r} needs the number (or fraction) of layers to drop")
        if keep_ends:  # refuse an impossible amount before the (possibly long) scoring
            _check_interior(n, drop_count(n, drop), strategy)
        score = lambda: score_layers(model, calibration_ids, strategy, drop, keep_ends=keep_ends,  # noqa: E731
                                     batch_size=batch_size)
        scored = score() if scores_cache is None else cached_scores(
            scores_cache, score, model, calibration_ids, strategy=strategy, drop=drop, keep_ends=keep_ends)
    keep = select_layers(strategy, n, drop=drop, remove=remove, scores=scored and scored["scores"],
                         keep_ends=keep_ends)
    student = truncate(model, keep)
    student.config.layer_selection = selection_record(
        strategy, n, keep, drop if strategy != "explicit" else None, scored, keep_ends,
        calibration_ids if scored is not None else None)
    return student, keep


def cached_scores(folder: Path | str, score, model: nn.Module, calibration_ids: torch.Tensor, **what) -> dict:
    """`score()` memoised on disk: the key is a hash of every weight of `model` (names, dtypes,
    shapes, bytes), the calibration ids and `what` (strategy, amount, ...). Scoring is deterministic,
    so a hit returns what `score()` would; it saves the calibration passes a run's initialisation
    would repeat after a notebook scored the same teacher (ppl-iterative: hundreds of passes)."""
    import hashlib

    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode())
    digest.update(calibration_ids.cpu().numpy().tobytes())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    path = Path(folder) / f"{what.get('strategy', 'scores')}-{digest.hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    scored = score()
    write_json_atomic(path, scored)
    return scored


# ---------------------------------------------------------------------------------------------
# Removal during training
# ---------------------------------------------------------------------------------------------
def remove_layers_(model: nn.Module, remove: Sequence[int], optimizer: torch.optim.Optimizer | None = None) -> list[int]:
    """Remove layers (current indices) from `model` in place. Parameters that stay are the same
    tensors, so the optimizer's moments for them are untouched; the removed layers' parameters and
    state leave the optimizer. Returns the kept indices (relative to the stack before removal)."""
    check_causal_decoder(model)
    layers = decoder_layers(model)
    keep = keep_from_removed(len(layers), remove)
    gone = {id(p) for i in remove for p in layers[i].parameters()}
    _apply_layer_subset(model, keep, [layers[i] for i in keep])
    if optimizer is not None:
        for group in optimizer.param_groups:
            dropped = [p for p in group["params"] if id(p) in gone]
            for p in dropped:
                optimizer.state.pop(p, None)
            group["params"] = [p for p in group["params"] if id(p) not in gone]
    return keep
