"""Depth pruning: which layers to drop (by name or by importance) and a student that keeps the rest.

- `select_layers` turns a strategy name and an amount into the kept layer indices, without building
  anything, so a notebook can draw the configurations (v3 Fig 5).
- `layer_importance` scores layers on a calibration batch (block influence, angular distance).
- `truncate` builds a new, independent model that keeps the given layers, with a config and layer
  indices that make it a clean HF checkpoint.
- `remove_layers_` drops layers from a model that is being trained, keeping the optimizer state of
  every parameter that stays (the gradual schedule of v3 Fig 6).
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

# The strategy names are the config's (config.Strategy): PAPER_STRATEGIES are the paper's five
# configurations (v3 Fig 5 / Table 6), which keep the first and the last layer.
from distill_lib.config import IMPORTANCE_STRATEGIES, PAPER_STRATEGIES, STRATEGIES, ConfigError, check_drop  # noqa: F401
from distill_lib.models import check_causal_decoder, decoder_layers, load_causal_lm, set_decoder_layers


def drop_count(n_layers: int, drop: int | float) -> int:
    """Layers to remove: an int is a number of layers, a float in (0, 1) a fraction of the stack
    (rounded). 1.0 and 2.0 are floats, so they are refused (write 1 or 2 for a number of layers)."""
    if isinstance(drop, bool) or not isinstance(drop, (int, float)):
        raise ConfigError(f"drop: expected a number of layers (an integer) or a fraction in (0, 1), got {drop!r}")
    check_drop(drop)
    count = round(n_layers * drop) if isinstance(drop, float) else drop
    if not 0 < count < n_layers:
        given = f"{drop} of {n_layers} layers rounds to {count}" if isinstance(drop, float) else f"got {drop}"
        raise ConfigError(f"drop: must remove between 1 and {n_layers - 1} of the {n_layers} layers, {given}")
    return int(count)


def _check_interior(n_layers: int, k: int, strategy: str) -> None:
    if k > n_layers - 2:
        raise ConfigError(f"drop: strategy {strategy!r} keeps the first and last layer, so at most "
                          f"{n_layers - 2} of {n_layers} layers can be removed, got {k}")


def select_layers(strategy: str, n_layers: int, drop: int | float | None = None,
                  remove: Sequence[int] | None = None, scores: Sequence[float] | None = None) -> list[int]:
    """Indices of the layers to keep (ascending) for a named strategy.

    The paper's five (first and last layer always kept; readings *inferred* from v3 Fig 5):
      max-gap  removed layers spread evenly over the interior (one per equal-width bin: every other layer)
      input    one contiguous block right after the first layer
      output   one contiguous block right before the last layer
      middle   one contiguous block centred in the stack
      both     half the block after the first layer, the other half (the larger one if odd) before the last
    Others:
      first        keep the first n - drop layers (the last layer goes too)
      every-other  remove layers 1, 3, 5, ... (the first `drop` odd indices)
      explicit     remove exactly `remove`
      block-influence  remove the `drop` interior layers with the lowest `scores` (block influence)
      angular      remove the contiguous interior block of `drop` layers starting at argmin `scores`
                   (scores[l] = angular distance between the input of layer l and of layer l + drop)
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy: unknown {strategy!r} (valid: {', '.join(STRATEGIES)})")
    if n_layers < 1:
        raise ConfigError(f"n_layers: must be >= 1, got {n_layers}")
    everything = list(range(n_layers))
    if strategy == "explicit":
        if remove is None:
            raise ConfigError("remove: strategy 'explicit' needs the list of layer indices to remove")
        return keep_from_removed(n_layers, remove)
    if drop is None:
        raise ConfigError(f"drop: strategy {strategy!r} needs the number (or fraction) of layers to drop")
    k = drop_count(n_layers, drop)
    interior = everything[1:-1]
    if strategy == "first":
        removed = everything[n_layers - k:]
    elif strategy == "every-other":
        odd = everything[1::2]
        if k > len(odd):
            raise ConfigError(f"drop: 'every-other' can remove at most {len(odd)} of {n_layers} layers, got {k}")
        removed = odd[:k]
    else:
        _check_interior(n_layers, k, strategy)
        m = len(interior)
        if strategy == "max-gap":
            # one removed layer per equal-width bin of the interior, taken at the bin's centre
            removed = [interior[math.floor((i + 0.5) * m / k)] for i in range(k)]
        elif strategy == "input":
            removed = interior[:k]
        elif strategy == "output":
            removed = interior[m - k:]
        elif strategy == "middle":
            start = (m - k) // 2
            removed = interior[start:start + k]
        elif strategy == "both":
            removed = interior[: k // 2] + interior[m - (k - k // 2):]
        elif strategy == "block-influence":
            _check_scores(scores, n_layers, strategy)
            removed = sorted(interior, key=lambda i: (scores[i], i))[:k]
        else:  # angular
            _check_scores(scores, n_layers - k + 1, strategy)
            starts = range(1, n_layers - k)  # the block [start, start + k) stays inside the interior
            start = min(starts, key=lambda s: (scores[s], s))
            removed = list(range(start, start + k))
    return keep_from_removed(n_layers, removed)


def _check_scores(scores, expected: int, strategy: str) -> None:
    if scores is None or len(scores) < expected:
        raise ConfigError(f"scores: strategy {strategy!r} needs importance scores (layer_importance)")


def keep_from_removed(n_layers: int, removed: Sequence[int]) -> list[int]:
    removed = list(removed)
    _check_indices(removed, n_layers, "remove")
    keep = [i for i in range(n_layers) if i not in set(removed)]
    if not keep:
        raise ConfigError(f"remove: removing all {n_layers} layers keeps none")
    return keep


def _check_indices(indices: Sequence[int], n_layers: int, name: str) -> None:
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers:
            raise ConfigError(f"{name}: layer index {i!r} is out of range 0..{n_layers - 1}")
    if len(set(indices)) != len(indices):
        dup = sorted({i for i in indices if list(indices).count(i) > 1})
        raise ConfigError(f"{name}: duplicate layer index {dup[0]}")


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


def layer_importance(model: nn.Module, input_ids: torch.Tensor, method: str, drop: int | float = 0.5,
                     attention_mask: torch.Tensor | None = None) -> list[float]:
    """Scores for the importance strategies, averaged over the (unmasked) tokens of the batch.

    block-influence (Men et al., ShortGPT): BI_l = 1 - cos(x_l, x_{l+1}); low = redundant layer.
    angular (Gromov et al.): d_l = arccos(cos(x_l, x_{l+k})) / pi for a block of k = drop layers
    starting at l; low = the block barely changes the representation.
    """
    model = load_causal_lm(model)
    hidden = layer_inputs(model, input_ids, attention_mask)
    n = len(hidden) - 1
    if method == "block-influence":
        return [float(1.0 - _token_cosine(hidden[l], hidden[l + 1], attention_mask)) for l in range(n)]
    if method == "angular":
        k = drop_count(n, drop)
        return [float(torch.arccos(_token_cosine(hidden[l], hidden[l + k], attention_mask).clamp(-1, 1)) / math.pi)
                for l in range(n - k + 1)]
    raise ConfigError(f"method: unknown importance {method!r} (valid: {', '.join(IMPORTANCE_STRATEGIES)})")


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
    return student


def truncate_by_strategy(model_or_path, strategy: str, drop: int | float | None = None,
                         remove: Sequence[int] | None = None, calibration_ids: torch.Tensor | None = None):
    """`truncate` with the layers chosen by `select_layers`; importance strategies score the layers
    on `calibration_ids` first. Returns (student, kept indices)."""
    model = load_causal_lm(model_or_path)
    n = len(decoder_layers(model))
    scores = None
    if strategy in IMPORTANCE_STRATEGIES:
        if calibration_ids is None:
            raise ConfigError(f"calibration_ids: strategy {strategy!r} needs a calibration batch of token ids")
        scores = layer_importance(model, calibration_ids, strategy, drop if drop is not None else 0.5)
    keep = select_layers(strategy, n, drop=drop, remove=remove, scores=scores)
    return truncate(model, keep), keep


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
