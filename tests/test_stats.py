import pytest

from distill_lib.stats import (
    INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, TIE, mean_ci, paired_difference, value_at, verdict_at_least, verdict_strict,
)


def test_mean_ci_uses_student_t():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302653 * 1.0 / 3**0.5, rel=1e-6)  # t(0.975, 2) * sd / sqrt(n)
    assert mean_ci([5.0]) == (5.0, None)


def test_paired_difference_pairs_by_seed():
    d, h = paired_difference([10, 12, 14], [9, 11, 13])
    assert d == 1.0 and h == 0.0
    with pytest.raises(ValueError, match="equal counts"):
        paired_difference([1, 2], [1])


@pytest.mark.parametrize("diff, half, strict, at_least", [
    (1.0, 0.5, REPRODUCED, REPRODUCED),
    (0.2, 0.5, INCONCLUSIVE, TIE),              # the interval covers 0: a tie, consistent with "matches"
    (-0.2, 0.5, INCONCLUSIVE, TIE),
    (-1.0, 0.5, NOT_REPRODUCED, NOT_REPRODUCED),
    (1.0, None, INCONCLUSIVE, INCONCLUSIVE),    # one seed: no interval
])
def test_verdict_rules(diff, half, strict, at_least):
    assert verdict_strict(diff, half) == strict
    assert verdict_at_least(diff, half) == at_least


def test_value_at_interpolates_and_refuses_to_extrapolate():
    assert value_at([0, 10, 20], [5.0, 3.0, 2.0], 15) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="outside the curve's range"):
        value_at([0, 10], [1.0, 2.0], 11)


def test_catalog_declares_every_notebook_on_disk():
    from distill_lib.catalog import NOTEBOOKS
    from distill_lib.cli import notebooks

    assert [nb.stem for nb in NOTEBOOKS] == [p.stem for p in notebooks()]


def test_catalog_names_the_notebook_that_trains_a_run():
    from distill_lib.catalog import maker
    from distill_lib.study import StudyConfig

    cfg = StudyConfig(methods=["tf", "kd", "gradual", "kd-logit"],
                      variants={"kd-logit": {"method": "kd", "train": {"kd_alpha": 1.0}}})
    assert maker("tf", None, cfg).number == "02"
    assert maker("tf", "middle", cfg).number == "01"
    assert maker("kd-logit", None, cfg).number == "02"
    assert maker("gradual", None, cfg).number == "03"
    assert maker("teacher", None, cfg).number == "00"


def test_variants_and_seeds_by_method_are_checked():
    from distill_lib.config import ConfigError
    from distill_lib.study import StudyConfig

    with pytest.raises(ConfigError, match=r"variants.kd-x.train.kd_alfa: not a student_train field"):
        StudyConfig(methods=["tf", "kd-x"], variants={"kd-x": {"method": "kd", "train": {"kd_alfa": 1.0}}})
    with pytest.raises(ConfigError, match=r"variants.kd-x.method: expected one of"):
        StudyConfig(methods=["tf", "kd-x"], variants={"kd-x": {"method": "random"}})
    with pytest.raises(ConfigError, match=r"seeds_by_method.kd-z: unknown method"):
        StudyConfig(methods=["tf"], seeds_by_method={"kd-z": [0]})
    with pytest.raises(ConfigError, match=r"methods: unknown 'kd-y'"):
        StudyConfig(methods=["tf", "kd-y"])
    with pytest.raises(ConfigError, match=r"selection_reference: 'first' is not one of configs"):
        StudyConfig(selection_reference=["max-gap", "first"])
    assert StudyConfig(selection_reference=["output"]).selection_reference == ["output"]


def test_notebook_08_reference_defaults_to_every_configuration_that_is_not_a_selector(tmp_path):
    from distill_lib.study import Study, StudyConfig

    def reference(**kw):
        cfg = StudyConfig(configs=["max-gap", "output", "best-block"], selectors=["ppl-removal", "best-block"], **kw)
        return Study(cfg, root=tmp_path, train=False).selection_reference_configs()

    assert reference() == ["max-gap", "output"]  # best-block is healed once, as a selector
    assert reference(selection_reference=["output"]) == ["output"]
    assert reference(selection_reference=[]) == []


def test_variants_change_only_what_they_name(tmp_path):
    import dataclasses

    from distill_lib.runs import run_dir
    from distill_lib.study import Study, load_study_config

    cfg = load_study_config("smoke")
    study = Study(cfg, root=tmp_path, train=False)
    plain = Study(dataclasses.replace(cfg, variants={}, methods=["tf", "kd"], seeds_by_method={}), root=tmp_path,
                  train=False)
    base = study.run_config("kd", seed=1)
    assert run_dir(base, tmp_path) == run_dir(plain.run_config("kd", seed=1), tmp_path)  # variants leave kd alone

    logit = study.run_config("kd-logit", seed=1)
    assert logit.train == dataclasses.replace(base.train, kd_alpha=1.0)
    assert logit.name.startswith("kd-logit-")

    double = study.run_config("kd-2x", seed=1).train
    assert (double.max_steps, double.warmup_steps, double.eval_every) == (
        2 * base.train.max_steps, 2 * base.train.warmup_steps, 2 * base.train.eval_every)

    corrected = study.run_config("kd-corrected", seed=0)
    correction = study.correction_run_config("kd-corrected")
    assert corrected.teacher == f"run:{run_dir(correction, tmp_path).name}"
    assert (correction.init.kind, correction.train.objective, correction.train.max_steps) == ("pretrained", "lm", 4)
    assert correction.teacher == base.teacher  # the correction continues the study's own teacher
    assert study.seeds("kd-corrected") == [0, 1] and study.seeds("kd-logit") == [0] and study.seeds("tf") == [0, 1]


def test_bad_variants_are_refused_with_the_key():
    from distill_lib.config import ConfigError
    from distill_lib.study import StudyConfig

    with pytest.raises(ConfigError, match=r"variants.x.budget: expected a positive number"):
        StudyConfig(methods=["tf", "x"], variants={"x": {"method": "tf", "budget": 0}})
    with pytest.raises(ConfigError, match=r"variants.x.teacher_correction_steps: only a kd variant"):
        StudyConfig(methods=["tf", "x"], variants={"x": {"method": "tf", "teacher_correction_steps": 3}})
