"""What a study's method trains: a method (or variant) of the profile -> its `RunConfig` (the
student's initialisation, training objective and budget, teacher, healing or width pruning), the
teacher's correction run of a KD variant, and the width-pruning target that matches the depth-pruned
student's parameter count. Functions of a `Study` (`distill_lib.study`), which delegates to them."""
from __future__ import annotations

import dataclasses

from distill_lib.config import (
    METHODS, UNSCORED_STRATEGIES, ConfigError, HealingConfig, InitConfig, RunConfig, TrainConfig, WidthConfig,
    from_dict, to_dict,
)
from distill_lib.profiles import scaled

#: the training objective of each method
OBJECTIVE = {"tf": "lm", "kd": "kd", "offline-kd": "offline-kd", "chop-distill": "chop-distill",
             "random": "lm", "scratch": "lm", "gradual": "lm", "width": "lm"}


def run_config(study, method: str, strategy: str | None = None, seed: int = 0,
               every_tokens: int | None = None) -> RunConfig:
    """The run of `method` (a method or a variant in the profile) with `strategy` (default: the
    profile's) and `seed`; `every_tokens` is gradual removal's interval."""
    cfg = study.cfg
    if method not in METHODS and method not in cfg.variants:
        raise ConfigError(f"method: unknown {method!r} (valid: {', '.join(METHODS)} or a name in variants)")
    if method not in cfg.methods:
        raise ConfigError(f"method: {method!r} is not in profile {cfg.name}'s methods "
                          f"({', '.join(cfg.methods)}); add it to params/{cfg.name}.yaml")
    strategy = strategy or cfg.strategy
    name = f"{method}-{strategy}-s{seed}"
    variant_name = method
    # from scratch has its own base settings, if the profile sets them (its variants build on them)
    scratch = cfg.variants.get(method, {"method": method})["method"] == "scratch"
    student_train = (cfg.scratch_train or cfg.student_train) if scratch else cfg.student_train
    teacher = healing = None
    calibration = cfg.calibration_split
    if method in cfg.variants:
        variant = cfg.variants[method]
        calibration = variant.get("calibration_split", calibration)
        student_train = from_dict(TrainConfig, {**to_dict(student_train), **(variant.get("train") or {})})
        student_train = scaled(student_train, cfg.budget_of(method))
        if variant.get("teacher_correction_steps"):
            teacher = study.corrected_teacher_ref(method)
        if variant.get("healing") is not None:
            healing = from_dict(HealingConfig, variant["healing"])
        method = variant["method"]
    train = dataclasses.replace(student_train, objective=OBJECTIVE[method], seed=seed)
    if method == "scratch":  # a variant of it (e.g. a longer budget) is named after the variant
        from distill_lib.truncate import drop_count

        n = study.teacher_layers
        model = dataclasses.replace(cfg.teacher_model, n_layers=n - drop_count(n, cfg.drop))
        return RunConfig(name=f"{variant_name}-s{seed}", data=cfg.data, model=model, train=train)
    if study.train and not cfg.teacher_path:
        study.teacher()  # a student of the teacher trained here needs it in the run store
    # a named or hub teacher stays a name; the study's own one is a sibling run in the store,
    # named, not a machine path, so the config hash is the same in every checkout
    teacher = teacher or study.teacher_ref
    if method == "gradual":
        from distill_lib.truncate import select_layers

        n = study.teacher_layers
        keep = select_layers(strategy, n, drop=cfg.drop)
        removed = [i for i in range(n) if i not in keep]
        train = dataclasses.replace(train, remove_every_tokens=every_tokens, removal_order=removed)
        return RunConfig(name=f"gradual{every_tokens}-{strategy}-s{seed}", data=cfg.data,
                         init=InitConfig(kind="pretrained"), teacher=teacher, train=train)
    if method == "width":
        return RunConfig(name=f"width-s{seed}", data=cfg.data, init=InitConfig(kind="pretrained"), teacher=teacher,
                         train=train, width=WidthConfig(target=study.width_target))
    kind = "random-truncated" if method == "random" else "truncate"
    # only a scored strategy reads calibration blocks; the others keep the hash they had
    scored = strategy not in UNSCORED_STRATEGIES
    init = InitConfig(kind=kind, strategy=strategy, drop=cfg.drop, calibration_split=calibration if scored else None)
    return RunConfig(name=name, data=cfg.data, init=init,
                     teacher=teacher, train=train, **({"healing": healing} if healing else {}))


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
