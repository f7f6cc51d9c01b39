"""The schema engine: plain profile data (YAML) in, checked frozen dataclasses out, and back.

`from_dict` builds a (possibly nested) dataclass from plain YAML data and refuses, with a one-line
message naming the key, any unknown key or value of the wrong type; `check_field_types` gives a
dataclass built directly the same check. Each config dataclass checks its *values* (ranges, names) in
`__post_init__` with `require`, so a bad profile fails before any expensive work. `to_dict` turns a
config back into plain data; `load_yaml` and `resolve_profile_paths` read a profile file so that it
means the same from any working directory. Standard library and PyYAML only, nothing of `distill_lib`.
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
from typing import Any, Literal, TypeVar, Union

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


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition`; keeps `__post_init__` checks one line each."""
    if not condition:
        raise ConfigError(message)


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
