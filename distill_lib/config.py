"""One import for every config: a facade over the modules that hold them, so `from distill_lib.config
import ...` keeps working.

- `distill_lib.schema`: the schema engine (`from_dict`, `check_field_types`, `to_dict`, `require`,
  `ConfigError`, `load_yaml`, `resolve_profile_paths`);
- `distill_lib.names`: the name sets (`Strategy`/`STRATEGIES`, ...);
- `distill_lib.methods`: the study's methods, one file each (`METHODS`);;
- `distill_lib.run_config`: the run's configuration (`RunConfig` and its sections, `HASH_VERSION`);
- `distill_lib.eval_config`: the evaluation configs (`EvalConfig`, `SuiteConfig`, `ProbeConfig`,
  `LatencyConfig`);
- `distill_lib.study_config`: the study profile (`StudyConfig`, `METHOD_LABELS`).

Nothing is defined here.
"""
from __future__ import annotations

from distill_lib.eval_config import EvalConfig, LatencyConfig, ProbeConfig, SuiteConfig
from distill_lib.names import (
    BLOCK_STRATEGIES, CORPORA, DIVERGENCES, FAMILY_NAMES, HEALING_METHODS, IMPORTANCE_STRATEGIES, INIT_KINDS,
    OBJECTIVES, OPTIMIZERS, PAPER_STRATEGIES, PRECISIONS, STRATEGIES, UNSCORED_STRATEGIES, Corpus, Divergence, Family,
    HealingMethod, HeldOutSplit, InitKind, Objective, OfflineDtype, Optimizer, Precision, Strategy,
)
from distill_lib.methods import METHODS
from distill_lib.run_config import (
    HASH_VERSION, MIN_VOCAB_SIZE, DataConfig, HealingConfig, InitConfig, ModelConfig, RunConfig, TrainConfig,
    WidthConfig, added_in, check_drop,
)
from distill_lib.schema import (
    ConfigError, check_field_types, from_dict, load_yaml, require, resolve_profile_paths, to_dict, yaml_error,
)
from distill_lib.study_config import METHOD_LABELS, StudyConfig

__all__ = [
    # schema
    "ConfigError", "check_field_types", "from_dict", "load_yaml", "require", "resolve_profile_paths", "to_dict",
    "yaml_error",
    # names
    "BLOCK_STRATEGIES", "CORPORA", "DIVERGENCES", "FAMILY_NAMES", "HEALING_METHODS", "IMPORTANCE_STRATEGIES",
    "INIT_KINDS", "METHODS", "OBJECTIVES", "OPTIMIZERS", "PAPER_STRATEGIES", "PRECISIONS", "STRATEGIES",
    "UNSCORED_STRATEGIES", "Corpus", "Divergence", "Family", "HealingMethod", "HeldOutSplit", "InitKind",
    "Objective", "OfflineDtype", "Optimizer", "Precision", "Strategy",
    # run config
    "HASH_VERSION", "MIN_VOCAB_SIZE", "DataConfig", "HealingConfig", "InitConfig", "ModelConfig", "RunConfig",
    "TrainConfig", "WidthConfig", "added_in", "check_drop",
    # evaluation configs
    "EvalConfig", "LatencyConfig", "ProbeConfig", "SuiteConfig",
    # study profile
    "METHOD_LABELS", "StudyConfig",
]
