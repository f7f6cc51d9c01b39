"""What a study's method trains: a method (or variant) of the profile -> its `RunConfig` (the
student's initialisation, training objective and budget, teacher, healing or width pruning), the
teacher's correction run of a KD variant, and the width-pruning target that matches the depth-pruned
student's parameter count. Functions of a `Study` (`distill_lib.study`), which delegates to them."""
from __future__ import annotations

import dataclasses

from distill_lib import methods
from distill_lib.config import ConfigError, HealingConfig, InitConfig, RunConfig, TrainConfig, from_dict, to_dict
from distill_lib.methods import METHODS, RunRequest
from distill_lib.profiles import scaled


def run_config(study, method: str, strategy: str | None = None, seed: int = 0,
               remove_every_tokens: int | None = None) -> RunConfig:
    """The run of `method` (a method or a variant in the profile) with `strategy` (default: the
    profile's) and `seed`; `remove_every_tokens` is gradual removal's interval. The profile resolves the
    variant (its training changes, budget, teacher, healing, calibration); the method
    (`distill_lib.methods`) makes the run from that."""
    cfg = study.cfg
    if method not in METHODS and method not in cfg.variants:
        raise ConfigError(f"method: unknown {method!r} (valid: {', '.join(METHODS)} or a name in variants)")
    if method not in cfg.methods:
        raise ConfigError(f"method: {method!r} is not in profile {cfg.name}'s methods "
                          f"({', '.join(cfg.methods)}); add it to params/{cfg.name}.yaml")
    variant = cfg.variants.get(method, {"method": method})
    base = methods.get(variant["method"])
    student_train = base.base_training(cfg)
    teacher = healing = None
    if method in cfg.variants:
        student_train = from_dict(TrainConfig, {**to_dict(student_train), **(variant.get("train") or {})})
        student_train = scaled(student_train, cfg.budget_of(method))
        if variant.get("teacher_correction_steps"):
            teacher = study.corrected_teacher_ref(method)
        if variant.get("healing") is not None:
            healing = from_dict(HealingConfig, variant["healing"])
    train = dataclasses.replace(student_train, objective=base.objective, seed=seed)
    if base.uses_teacher:
        if study.train and not cfg.teacher_path:
            study.teacher()  # a student of the teacher trained here needs it in the run store
        # a named or hub teacher stays a name; the study's own one is a sibling run in the store,
        # named, not a machine path, so the config hash is the same in every checkout
        teacher = teacher or study.teacher_ref
    return base.run_config(RunRequest(
        study=study, name=method, strategy=strategy or cfg.strategy, seed=seed, train=train, teacher=teacher,
        calibration_split=cfg.calibration_split_of(method), healing=healing,
        remove_every_tokens=remove_every_tokens))


def correction_run_config(study, variant: str) -> RunConfig:
    """The teacher's correction for a KD variant: the whole teacher continued with the LM loss on
    the training split for `teacher_correction_steps` (student_train's batch and learning rate)."""
    steps = study.cfg.variants[variant]["teacher_correction_steps"]
    train = dataclasses.replace(study.cfg.student_train, objective="lm", seed=0, max_steps=steps,
                                warmup_steps=min(study.cfg.student_train.warmup_steps, steps),
                                eval_every=0, checkpoint_every=steps)
    return RunConfig(name=f"teacher-corrected{steps}", data=study.cfg.data, init=InitConfig(kind="pretrained"),
                     teacher=study.teacher_ref, train=train)


def width_target(study) -> float:
    """Fraction of FFN units to prune so the width-pruned model has the depth-pruned student's
    non-embedding parameter count (rounded, so the run's config hash is stable). Loads and
    truncates the teacher, so it is recorded."""

    def compute():
        from distill_lib.models import compare_parameters, load_causal_lm
        from distill_lib.width import matching_ffn_fraction

        teacher = load_causal_lm(study.teacher_dir())
        depth, _ = study.truncated_untrained(study.cfg.strategy)
        keep = compare_parameters(teacher, depth)["kept_fraction_non_embedding"]
        return round(matching_ffn_fraction(teacher, keep), 4)

    return study.result("07_width-target", {"strategy": study.cfg.strategy, "drop": study.cfg.drop}, compute)
