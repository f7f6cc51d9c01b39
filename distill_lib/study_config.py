"""The study profile (params/<name>.yaml): `StudyConfig`, every notebook's parameters, with its method
variants, and how figures and tables spell a method or variant (`METHOD_LABELS`, `StudyConfig.label`).
distill_lib.study loads and runs it.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Optional, Union

from distill_lib.eval_config import EvalConfig, LatencyConfig, ProbeConfig
from distill_lib.methods import CORE_METHODS, LABELS, METHODS, VARIANT_BASES
from distill_lib.names import STRATEGIES
from distill_lib.run_config import DataConfig, HealingConfig, ModelConfig, TrainConfig
from distill_lib.schema import from_dict, require, to_dict

_VARIANT_KEYS = {"method", "train", "budget", "teacher_correction_steps", "healing", "calibration_split"}
#: Names of the methods in figures and tables (each method declares its own, distill_lib.methods).
METHOD_LABELS = LABELS


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
    methods: list[str] = dataclasses.field(default_factory=lambda: list(CORE_METHODS))
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
    first seed). A study run in parts grows these as each part's runs are recorded. A key
    `METHOD@STRATEGY` lists the seeds of that method trained from another truncation (e.g.
    `tf-lr-4x@best-block: [0, 1, 2]`, read by `c2_also_from`)."""
    tuned: dict[str, str] = dataclasses.field(default_factory=dict)
    """The claims at the tuned learning rate: each method a claim compares (C4, C5, C7, C8) -> its
    variant at the rate validation chose (e.g. `{tf: tf-lr-4x, gradual: gradual-lr-4x}`). The claims
    table then judges those claims twice, at the base rate and at the tuned one, each row naming its
    rate; empty: once, at the base rate. A variant joins `methods` when its runs are recorded."""
    c2_also_from: list[str] = dataclasses.field(default_factory=list)
    """Truncations C2 is judged from besides `strategy`: the TF and KD pair chosen on `strategy`'s runs,
    trained again from each of these at the seeds `seeds_by_method` lists under `METHOD@STRATEGY`
    (the choice read none of them). Does TF's standing against KD depend on where it starts?"""
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

    def seeds_from(self, method: str, strategy: str) -> list[int]:
        """The recorded seeds of `method` trained from `strategy` (`seeds_by_method['METHOD@STRATEGY']`;
        none when it is not listed)."""
        return list(self.seeds_by_method.get(f"{method}@{strategy}", []))

    def seeds_of(self, method: str) -> list[int]:
        """The seeds `method` (or variant) is trained with: `seeds_by_method`, else `seeds` (a
        variant: the first seed)."""
        return list(self.seeds_by_method.get(method, self.seeds[:1] if method in self.variants else self.seeds))

    def lr_of(self, method: str) -> float:
        """The peak learning rate of a method or variant trained from `student_train` (a TF, KD or healing
        student; not `scratch_train`'s runs): the variant's `train.lr`, else the profile's."""
        return (self.variants.get(method, {}).get("train") or {}).get("lr", self.student_train.lr)

    def calibration_split_of(self, method: str) -> Optional[str]:
        """Where a method's (or variant's) scored truncation takes its calibration blocks: the
        variant's `calibration_split`, else the profile's."""
        return self.variants.get(method, {}).get("calibration_split", self.calibration_split)

    def base_method(self, name: str) -> str:
        """The method a name of `methods` stands for: itself, or a variant's `method`."""
        return self.variants.get(name, {"method": name})["method"]

    def budget_of(self, method: str) -> float:
        """The factor on the token budget of a method (1) or variant (its `budget`, default 1)."""
        return self.variants.get(method, {}).get("budget", 1)

    def label(self, method: str, with_budget: bool = True) -> str:
        """A reader's name for a method or variant, spelled from its definition: 'KD', 'KD, lr 2x',
        'KD, logit only', 'TF, lr 2x, 0.5x tokens' (figures and tables; records keep the names).
        `with_budget=False` leaves the token budget out ('TF, lr 2x'): a budget sweep's line name."""
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
            elif key == "kd_fraction":
                parts.append(f"KD for {value:.0%} of tokens")
            else:
                parts.append(f"{key} {value}")
        if variant.get("teacher_correction_steps"):
            parts.append(f"teacher corrected ({variant['teacher_correction_steps']} steps)")
        if variant.get("healing"):
            parts.append(variant["healing"].get("method", "full"))
        base = METHOD_LABELS.get(variant["method"], variant["method"])
        if self.budget_of(method) != 1:
            if not with_budget:
                return ", ".join([base, *parts])
            parts.append(f"{self.budget_of(method):g}x tokens")
        return ", ".join([base, *parts]) if parts else method

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
            require(variant.get("method") in VARIANT_BASES,
                    f"{where}.method: expected one of {', '.join(VARIANT_BASES)}, got {variant.get('method')!r}")
            fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"objective", "seed"}
            train = variant.get("train") or {}
            require(isinstance(train, dict), f"{where}.train: expected a mapping of student_train fields")
            for key in train:
                require(key in fields, f"{where}.train.{key}: not a student_train field (valid: {', '.join(sorted(fields))})")
            from_dict(TrainConfig, {**to_dict(self.student_train), **train}, where=f"{where}.train")
        for m in self.methods:
            require(m in METHODS or m in self.variants,
                    f"methods: unknown {m!r} (valid: {', '.join(METHODS)} or a name in variants)")
        for key, seeds in self.seeds_by_method.items():
            m, at, strategy = key.partition("@")
            require(m in METHODS or m in self.variants,
                    f"seeds_by_method.{key}: unknown method (valid: {', '.join(METHODS)} or a name in variants)")
            require(not at or strategy in STRATEGIES,
                    f"seeds_by_method.{key}: unknown strategy {strategy!r} (valid: {', '.join(STRATEGIES)})")
            require(isinstance(seeds, list) and seeds and all(isinstance(x, int) for x in seeds),
                    f"seeds_by_method.{key}: expected a non-empty list of integer seeds, got {seeds!r}")
        for m, variant in self.tuned.items():
            require(m in METHODS or m in self.variants,
                    f"tuned.{m}: unknown method (valid: {', '.join(METHODS)} or a name in variants)")
            require(variant in self.variants and self.base_method(variant) == self.base_method(m),
                    f"tuned.{m}: {variant!r} must be a variant in `variants` of the same method as {m!r}")
        if self.tuned:  # every claim at the tuned rate compares against TF there, at one rate
            require("tf" in self.tuned, "tuned: needs `tf` (the run every claim at the tuned rate compares against)")
            rates = {m: self.lr_of(v) for m, v in self.tuned.items()}
            require(len(set(rates.values())) == 1,
                    f"tuned: its variants must share one learning rate, got {', '.join(f'{m} {r:g}' for m, r in rates.items())}")
        require("tf" in self.methods, "methods: 'tf' (the paper's method) is what every notebook compares against")
        require(self.scale >= 1, f"scale: must be an integer >= 1, got {self.scale}")
        for s in [self.strategy, self.healing_strategy, *self.configs, *self.extra_strategies, *self.selectors,
                  *self.c2_also_from]:
            require(s in STRATEGIES, f"strategy: unknown {s!r} (valid: {', '.join(STRATEGIES)})")
        for s in self.selection_reference or []:
            require(s in self.configs, f"selection_reference: {s!r} is not one of configs ({', '.join(self.configs)})")
