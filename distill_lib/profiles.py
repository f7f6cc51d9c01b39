"""Profile files -> `StudyConfig`: a profile's YAML found by name (`params/<name>.yaml`) or path,
its `base: <profile>` inheritance resolved (the base's keys, then the profile's, mappings merged key
by key), its relative paths made absolute, and its training budgets multiplied by `scale`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from distill_lib.config import ConfigError, StudyConfig, TrainConfig, from_dict, load_yaml, resolve_profile_paths
from distill_lib.env import PROJECT_ROOT


def profile_path(profile: str | Path) -> Path:
    """The profile's file: `params/<profile>.yaml` for a bare name, else the path as given."""
    path = Path(profile)
    if not path.suffix:
        path = PROJECT_ROOT / "params" / f"{profile}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in (PROJECT_ROOT / "params").glob("*.yaml"))
        raise ConfigError(f"profile: {str(profile)!r} not found (available: {', '.join(available)})")
    return path


def merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`, mappings merged key by key (so `student_train: {lr: ...}`
    changes only the learning rate)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def raw_profile(profile: str | Path, seen: tuple = ()) -> dict:
    """The profile's YAML, with `base: <profile>` resolved (the named profile's keys, then this one's)."""
    path = profile_path(profile)
    if path in seen:
        raise ConfigError(f"base: profiles {' -> '.join(p.stem for p in (*seen, path))} form a cycle")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"profile: {path} must hold a mapping of keys, got {type(data).__name__}")
    data = resolve_profile_paths(data, path.parent)  # paths in a profile are relative to its file
    base = data.pop("base", None)
    if base and "name" not in data:
        raise ConfigError(f"name: profile {path.stem} builds on {base!r} and needs its own name "
                          f"(its runs, figures and reports are kept under that name)")
    return merge(raw_profile(base, (*seen, path)), data) if base else data


def scaled(train: TrainConfig, scale: int | float) -> TrainConfig:
    """`train` with its budget (steps, warm-up, evaluation and checkpoint intervals) times `scale`."""
    if scale == 1:
        return train
    times = lambda n: max(1, round(n * scale)) if n else n  # noqa: E731
    return dataclasses.replace(train, max_steps=times(train.max_steps), warmup_steps=times(train.warmup_steps),
                               eval_every=times(train.eval_every), checkpoint_every=times(train.checkpoint_every))


def load_study_config(profile: str | Path) -> StudyConfig:
    """The profile's `StudyConfig` (a name in params/ or a path), its budgets already scaled."""
    cfg = from_dict(StudyConfig, raw_profile(profile))
    if cfg.scale == 1:
        return cfg
    return dataclasses.replace(
        cfg, teacher_train=scaled(cfg.teacher_train, cfg.scale), student_train=scaled(cfg.student_train, cfg.scale),
        scratch_train=cfg.scratch_train and scaled(cfg.scratch_train, cfg.scale),
        gradual_every_tokens=[k * cfg.scale for k in cfg.gradual_every_tokens])
