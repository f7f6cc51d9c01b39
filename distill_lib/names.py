"""Name sets: the valid values of every name-valued config field.

Each is a Literal type (what `from_dict` and `check_field_types` check a value against:
"train.objective: unknown 'x' (valid: lm, kd, ...)") and a tuple of the names, for messages and loops
elsewhere. They live here, with no import of the package, so that building a config needs neither
torch nor the modules that implement the names.
"""
from __future__ import annotations

import typing
from typing import Literal

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
#: Objectives that read the teacher while training (it is loaded), and those of them that run its
#: forward inside every step (charged to the step's FLOPs; offline KD reads a cache filled before).
TEACHER_OBJECTIVES = ("kd", "chop-distill", "offline-kd")
TEACHER_FORWARD_OBJECTIVES = ("kd", "chop-distill")
#: Divergences of logit distillation (distill_lib.losses.token_divergence).
Divergence = Literal["forward", "reverse", "jsd"]
Optimizer = Literal["adamw", "lion"]
Precision = Literal["fp32", "bf16"]
OfflineDtype = Literal["float16", "float32"]
HeldOutSplit = Literal["validation", "test"]

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

#: How the student heals (distill_lib.healing, run_config.HealingConfig): which parameters continued
#: pretraining trains.
HealingMethod = Literal["full", "lora", "partial", "replace"]
HEALING_METHODS: tuple[str, ...] = typing.get_args(HealingMethod)
#: Strategies that always remove one contiguous block (`replace` needs one), and those chosen from the
#: config alone, without scores (for those `replace` checks the block against the teacher's depth).
BLOCK_STRATEGIES = ("input", "output", "middle", "first", "angular", "best-block")
UNSCORED_STRATEGIES = ("max-gap", "input", "output", "middle", "both", "first", "every-other", "explicit")
