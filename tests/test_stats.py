import math

import numpy as np
import pytest

from distill_lib.stats import (
    ALPHA, BETTER, EQUIVALENCE, EQUIVALENT, INCONCLUSIVE, MARGIN_NATS, NON_INFERIORITY, NOT_REPRODUCED, REPRODUCED,
    SUPERIORITY, WORSE, ClaimTest, holm, holm_verdicts, log_ratios, mean_ci, minimum_detectable_difference,
    paired_difference,
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


def _diffs(mean, half):
    """Three paired differences whose mean is `mean` and whose 95% half-width is `half`."""
    sd = half * 3 ** 0.5 / 4.302653  # half = t(0.975, 2) * sd / sqrt(3)
    return [mean - sd, mean, mean + sd]


M = MARGIN_NATS


# every verdict of every rule, with its outcome word (the interval's [lo, hi] in the comment)
@pytest.mark.parametrize("kind, mean, half, verdict, word", [
    (SUPERIORITY, 0.3, 0.1, REPRODUCED, BETTER),               # [0.2, 0.4]: above 0
    (SUPERIORITY, 0.02, 0.01, REPRODUCED, BETTER),             # tiny but above 0: superiority has no margin
    (SUPERIORITY, 0.1, 0.3, INCONCLUSIVE, INCONCLUSIVE),       # covers 0
    (SUPERIORITY, -0.3, 0.1, NOT_REPRODUCED, WORSE),           # below 0
    (NON_INFERIORITY, 0.2, 0.1, REPRODUCED, BETTER),           # above -M and above 0
    (NON_INFERIORITY, -0.02, 0.02, REPRODUCED, EQUIVALENT),    # [-0.04, 0]: inside the margin
    (NON_INFERIORITY, 0.0, 0.1, INCONCLUSIVE, INCONCLUSIVE),   # reaches below -M: too wide
    (NON_INFERIORITY, -0.3, 0.1, NOT_REPRODUCED, WORSE),       # wholly below -M
    (NON_INFERIORITY, -0.08, 0.02, NOT_REPRODUCED, WORSE),     # [-0.1, -0.06]: below -M
    (EQUIVALENCE, 0.01, 0.03, REPRODUCED, EQUIVALENT),         # [-0.02, 0.04] inside ±M
    (EQUIVALENCE, 0.0, 0.1, INCONCLUSIVE, INCONCLUSIVE),       # a non-significant difference is not equality
    (EQUIVALENCE, 0.04, 0.03, INCONCLUSIVE, BETTER),           # [0.01, 0.07]: above 0, past +M
    (EQUIVALENCE, 0.3, 0.1, NOT_REPRODUCED, BETTER),           # wholly beyond +M
    (EQUIVALENCE, -0.3, 0.1, NOT_REPRODUCED, WORSE),           # wholly beyond -M
])
def test_every_rule_reaches_each_of_its_verdicts(kind, mean, half, verdict, word):
    test = ClaimTest(kind, _diffs(mean, half), 0.0 if kind == SUPERIORITY else M)
    assert test.mean == pytest.approx(mean) and test.half == pytest.approx(half)
    assert test.verdict == verdict and test.outcome == word
    p_yes, p_no = test.p_values()  # the p-values agree with the interval: below ALPHA exactly where it decides
    assert (p_yes < ALPHA) == (verdict == REPRODUCED) and (p_no < ALPHA) == (verdict == NOT_REPRODUCED)


def test_one_seed_has_no_interval_no_p_and_no_verdict():
    test = ClaimTest(NON_INFERIORITY, [0.5], M)
    assert test.half is None and test.verdict == INCONCLUSIVE and math.isnan(test.p) and math.isnan(test.mdd)


def test_a_test_without_its_margin_is_refused():
    with pytest.raises(ValueError, match="margin"):
        ClaimTest(EQUIVALENCE, [0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="kind"):
        ClaimTest("at least", [0.1, 0.2])


def test_the_p_value_of_a_non_inferiority_test_is_the_one_sided_t_test_against_minus_the_margin():
    from scipy import stats

    diffs = [0.01, -0.02, 0.03, 0.0]
    t = (np.mean(diffs) + M) / (np.std(diffs, ddof=1) / 2)
    assert ClaimTest(NON_INFERIORITY, diffs, M).p == pytest.approx(stats.t.sf(t, 3))
    # equivalence: the larger of the two one-sided p-values
    upper = stats.t.cdf((np.mean(diffs) - M) / (np.std(diffs, ddof=1) / 2), 3)
    assert ClaimTest(EQUIVALENCE, diffs, M).p == pytest.approx(max(stats.t.sf(t, 3), upper))


def test_the_minimum_detectable_difference_is_the_power_formula():
    from scipy import stats

    diffs = [0.1, 0.3, 0.2, 0.4]
    sd, n = np.std(diffs, ddof=1), 4
    expected = (stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * sd / n ** 0.5
    assert minimum_detectable_difference(diffs) == pytest.approx(expected)
    assert minimum_detectable_difference(diffs * 4) < expected  # more seeds detect smaller differences


def test_holm_adjusts_step_down_and_turns_what_does_not_survive_inconclusive():
    # k = 3: 0.005 * 3 = 0.015, 0.012 * 2 = 0.024, 0.02 * 1 = 0.02 -> 0.024 (monotone)
    assert holm([0.012, 0.005, math.nan, 0.02]) == pytest.approx([0.024, 0.015, math.nan, 0.024], nan_ok=True)
    adjusted, verdicts = holm_verdicts([REPRODUCED, NOT_REPRODUCED, "not tested", INCONCLUSIVE],
                                       [0.01, 0.004, math.nan, 0.3])
    # 0.004 * 3 = 0.012 survives; 0.01 * 2 = 0.02 survives; with one more test in the family it would not
    assert verdicts == [REPRODUCED, NOT_REPRODUCED, "not tested", INCONCLUSIVE]
    _, verdicts = holm_verdicts([REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, INCONCLUSIVE], [0.01, 0.004, 0.3, 0.5])
    assert verdicts == [INCONCLUSIVE, NOT_REPRODUCED, INCONCLUSIVE, INCONCLUSIVE]  # 0.01 * 3 = 0.03 >= 0.025


def test_log_ratios_are_nats():
    assert log_ratios([math.e, 10.0], [1.0, 10.0]) == pytest.approx([1.0, 0.0])


def test_catalog_declares_every_notebook_on_disk():
    from distill_lib.catalog import NOTEBOOKS
    from distill_lib.runner import notebooks

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
    with pytest.raises(ConfigError, match=r"seeds_by_method.kd-z@best-block: unknown method"):
        StudyConfig(methods=["tf"], seeds_by_method={"kd-z@best-block": [0]})
    with pytest.raises(ConfigError, match=r"seeds_by_method.tf@best-blok: unknown strategy 'best-blok'"):
        StudyConfig(methods=["tf"], seeds_by_method={"tf@best-blok": [0]})
    with pytest.raises(ConfigError, match=r"strategy: unknown 'best-blok'"):
        StudyConfig(methods=["tf"], c2_also_from=["best-blok"])
    assert StudyConfig(methods=["tf"], seeds_by_method={"tf@best-block": [2, 0]}).seeds_from("tf", "best-block") == [2, 0]
    with pytest.raises(ConfigError, match=r"tuned.tf: 'kd-4x' must be a variant in `variants` of the same method"):
        StudyConfig(methods=["tf"], variants={"kd-4x": {"method": "kd"}}, tuned={"tf": "kd-4x"})
    with pytest.raises(ConfigError, match=r"tuned.tf: 'tf-8x' must be a variant"):
        StudyConfig(methods=["tf"], tuned={"tf": "tf-8x"})
    lr = lambda x: {"train": {"lr": x}}  # noqa: E731
    with pytest.raises(ConfigError, match=r"tuned: needs `tf`"):
        StudyConfig(methods=["tf"], variants={"kd-4x": {"method": "kd", **lr(4e-3)}}, tuned={"kd": "kd-4x"})
    with pytest.raises(ConfigError, match=r"tuned: its variants must share one learning rate, got tf 0.004, kd 0.008"):
        StudyConfig(methods=["tf"], variants={"tf-4x": {"method": "tf", **lr(4e-3)}, "kd-8x": {"method": "kd", **lr(8e-3)}},
                    tuned={"tf": "tf-4x", "kd": "kd-8x"})
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
