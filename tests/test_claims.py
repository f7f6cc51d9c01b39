"""Claims on hand-made records: which KD baseline C2 reads, paired seeds, parts not recorded yet, and
each claim's test (in nats) reaching its verdicts."""
import dataclasses
import math

import numpy as np
import pytest

from distill_lib.claims import best_kd, best_tf, claims, kd_candidates, paired_seeds, tf_candidates
from distill_lib.records import MissingRecord
from distill_lib.study import Study, StudyConfig


class FakeRun:
    """A recorded run: validation loss falling linearly in FLOPs from `start` to `end` ppl."""

    def __init__(self, flops_per_step, start, end, test_ppl, steps=4):
        self.flops = flops_per_step * steps
        self.points = [(flops_per_step * (i + 1), math.log(start + (end - start) * i / (steps - 1))) for i in range(steps)]
        self.training = {"flops": self.flops, "wall_seconds": 10.0, "flops_per_token": {"total": flops_per_step}}
        self.test_ppl = test_ppl

    def metrics(self):
        return [{"step": i + 1, "flops": f, "val_loss": v, "val_ppl": math.exp(v), "tokens_per_s": 100.0}
                for i, (f, v) in enumerate(self.points)]


class FakeStudy:
    def __init__(self, cfg, runs, extra=None):
        self.cfg, self.runs, self.extra = cfg, runs, extra or {}

    def read_only(self):
        return self

    def seeds(self, method):
        return self.cfg.seeds_by_method.get(method, self.cfg.seeds[:1] if method in self.cfg.variants else self.cfg.seeds)

    def student(self, method, strategy=None, seed=0, remove_every_tokens=None):
        if remove_every_tokens is not None:  # a gradual-removal schedule
            method = f"{method}{remove_every_tokens}"
        if (method, seed) not in self.runs:
            raise MissingRecord(f"record: run {method}-s{seed} is missing", what=f"run {method}-s{seed}")
        return self.runs[method, seed]

    def headline(self, run):
        return {"ppl": run.test_ppl}

    def extra_flops(self, method):
        return self.extra.get(method, 0.0)

    def step_rates(self):
        raise MissingRecord("record: result 02_step-rates is missing", what="result 02_step-rates")

    method_label = Study.method_label
    time_ratios = Study.time_ratios  # the real one, on the hand-made runs and rates
    config_seeds = Study.config_seeds
    selector_seeds = Study.selector_seeds


CFG = StudyConfig(methods=["tf", "kd", "offline-kd", "kd-logit", "kd-corrected"], seeds=[0, 1, 2], configs=["max-gap"],
                  seeds_by_method={"kd": [0, 1, 2], "offline-kd": [0], "kd-logit": [0, 1], "kd-corrected": [0]},
                  variants={"kd-logit": {"method": "kd", "train": {"kd_alpha": 1.0}},
                            "kd-corrected": {"method": "kd", "teacher_correction_steps": 2}})


def one(table, claim, comparison=None):
    """The row of `claim` (and `comparison`, where the claim has several) in a claims table."""
    rows = table[(table.claim == claim) & ((table.comparison == comparison) if comparison else True)]
    assert len(rows) == 1, f"{claim} {comparison}: {len(rows)} rows ({list(rows.comparison)})"
    return rows.iloc[0]


def _runs():
    runs = {}
    for s in range(3):
        runs["tf", s] = FakeRun(10, 100, 40 + s, 45 + s)  # TF ends at 40-42 ppl after 40 FLOPs
        runs["kd", s] = FakeRun(15, 90, 38, 43 + s)       # KD at TF's 40 FLOPs: between steps 2 and 3
    runs["offline-kd", 0] = FakeRun(10, 60, 20, 30)       # far better per FLOP, until its cache is charged
    runs["kd-logit", 0] = FakeRun(15, 80, 35, 41)
    runs["kd-logit", 1] = FakeRun(15, 80, 35, 42)
    runs["kd-corrected", 0] = FakeRun(15, 50, 30, 35)
    return runs


def test_c2_chooses_the_best_kd_variant_on_validation_with_the_correction_and_the_cache_charged():
    study = FakeStudy(CFG, _runs(), extra={"kd-corrected": 30.0, "offline-kd": 30.0})
    assert kd_candidates(study) == ["kd", "offline-kd", "kd-logit", "kd-corrected"]
    assert kd_candidates(study, online_only=True) == ["kd", "kd-logit", "kd-corrected"]
    choice = best_kd(study)
    chosen, scores = choice.method, choice.scores
    # kd-corrected's correction (30 FLOPs) leaves 10 of TF's 40: its curve starts at 15, so no reading
    assert "kd-corrected" not in scores
    # offline KD's cache (30 FLOPs) leaves 10: its first point, 60 ppl (uncharged it would read 20)
    assert scores["offline-kd"] == pytest.approx(60.0)
    # at TF's 40 FLOPs each KD curve lies 2/3 of the way from its point at 30 FLOPs to the one at 45
    # (interpolated in log-perplexity): kd from 72.67 to 55.33, kd-logit from 65 to 50
    at = lambda a, b: math.exp(math.log(a) + (math.log(b) - math.log(a)) * 2 / 3)  # noqa: E731
    assert scores["kd"] == pytest.approx(at(90 - 52 / 3, 90 - 104 / 3))
    assert scores["kd-logit"] == pytest.approx(at(65, 50))
    assert chosen == "kd-logit"
    assert paired_seeds(study, "kd-logit", "tf") == [0, 1]


def test_claims_pair_the_seeds_both_sides_have_and_mark_unrecorded_parts():
    runs = _runs()
    del runs["kd", 2]  # a part that has not run yet: kd s2 is in the profile but not recorded
    table = claims(FakeStudy(CFG, runs, extra={"kd-corrected": 30.0, "offline-kd": 30.0}))
    # kd-logit is chosen on seed 0 (the seed all candidates share); the verdict reads its other seed
    for comparison in ("equal FLOPs", "equal tokens"):
        c2 = one(table, "C2", comparison)
        assert c2["seeds"] == 1 and c2["verdict seeds"] == "1" and c2["choice seeds"] == "0"
    assert "kd-logit" in one(table, "C2", "equal FLOPs")["ours"]
    assert one(table, "C3")["verdict"] == "not tested" and "run kd-s2" in one(table, "C3")["ours"]
    assert one(table, "C1")["verdict"] == "not tested" and "random" in one(table, "C1")["ours"]  # not in methods


def test_kd_variants_are_compared_on_the_seeds_they_share():
    runs = _runs()
    # kd's seed 0 is worse than kd-logit's seed 0, its seeds 1 and 2 far better: chosen on seed 0 alone
    runs["kd", 0] = FakeRun(15, 90, 60, 50)
    runs["kd", 1] = runs["kd", 2] = FakeRun(15, 30, 10, 12)
    cfg = StudyConfig(methods=["tf", "kd", "kd-logit"], seeds=[0, 1, 2], configs=["max-gap"],
                      seeds_by_method={"kd": [0, 1, 2], "kd-logit": [0]},
                      variants={"kd-logit": {"method": "kd", "train": {"kd_alpha": 1.0}}})
    choice = best_kd(FakeStudy(cfg, runs))
    chosen, scores = choice.method, choice.scores
    at = lambda a, b: math.exp(math.log(a) + (math.log(b) - math.log(a)) * 2 / 3)  # noqa: E731
    assert scores["kd"] == pytest.approx(at(80, 70)) and scores["kd-logit"] == pytest.approx(at(65, 50))
    assert chosen == "kd-logit"


def test_claims_on_timings_that_are_not_comparable_are_not_judged():
    import dataclasses

    runs = _runs()
    for s in range(3):
        runs["width", s] = FakeRun(10, 100, 40 + s, 45 + s)  # the same quality as depth: equivalent
        runs["width", s].training["wall_seconds"] = 30.0  # 3x depth's wall-clock
    cfg = dataclasses.replace(CFG, methods=[*CFG.methods, "width"])
    judged = claims(FakeStudy(cfg, runs, extra={"kd-corrected": 30.0, "offline-kd": 30.0}))
    assert one(judged, "C7", "quality vs max-gap")["verdict"] == "reproduced"
    assert one(judged, "C7", "quality vs max-gap")["outcome"] == "equivalent"
    assert one(judged, "C7", "cost")["verdict"] == "reproduced" and one(judged, "C3")["verdict"] != "not tested"
    cfg = dataclasses.replace(cfg, timings_comparable=False)
    table = claims(FakeStudy(cfg, runs, extra={"kd-corrected": 30.0, "offline-kd": 30.0}))
    assert one(table, "C3")["verdict"] == "not tested" and "not comparable" in one(table, "C3")["ours"]
    assert one(table, "C7", "cost")["verdict"] == "not tested" and "not comparable" in one(table, "C7", "cost")["ours"]
    assert one(table, "C7", "quality vs max-gap")["verdict"] == "reproduced"  # quality needs no timing
    for comparison in ("equal FLOPs", "equal tokens"):  # FLOPs-based claims are unaffected
        assert one(table, "C2", comparison)["verdict"] == one(judged, "C2", comparison)["verdict"]


def test_without_comparable_run_timings_c3_and_c7_read_the_side_by_side_timing():
    import dataclasses

    runs = _runs()
    for s in range(3):
        runs["width", s] = FakeRun(10, 100, 40 + s, 45 + s)  # the same quality as depth
    cfg = dataclasses.replace(CFG, methods=[*CFG.methods, "width"], timings_comparable=False)
    study = FakeStudy(cfg, runs, extra={"kd-corrected": 30.0, "offline-kd": 30.0})
    # three rounds: KD takes 1.6x, 1.5x, 1.7x TF's time per token; width 1.2x, 1.3x, 1.1x depth's
    study.step_rates = lambda: {"tf": [160.0, 150.0, 170.0], "kd": [100.0, 100.0, 100.0],
                                "width": [160 / 1.2, 150 / 1.3, 170 / 1.1]}
    table = claims(study)
    c3 = one(table, "C3")
    # 1.6 ± 0.25: the interval [1.35, 1.85] lies above 1.3
    assert c3["verdict"] == "reproduced" and c3["seeds"] == 3 and c3["unit"] == "ratio − 1.3"
    assert c3["diff"] == pytest.approx(1.6 - 1.3) and "side by side, 3 rounds" in c3["ours"]
    assert "not independent replicates" in c3["rule"] and c3["verdict seeds"] == "round 0, round 1, round 2"
    # width costs 1.2x ± 0.25: the whole interval lies under the claim's 1.5x: not reproduced
    cost = one(table, "C7", "cost")
    assert cost["verdict"] == "not reproduced" and "time per token 1.2" in cost["ours"]


def test_mini_c3s_wide_interval_is_inconclusive_not_reproduced_from_its_mean():
    import dataclasses

    study = FakeStudy(CFG, _runs(), extra={"kd-corrected": 30.0, "offline-kd": 30.0})
    study.cfg = dataclasses.replace(CFG, timings_comparable=False)
    # KD/TF 1.0x, 1.5x, 1.9x: mean 1.47, above 1.3, but the interval [0.35, 2.58] covers it
    study.step_rates = lambda: {"tf": [100.0, 150.0, 190.0], "kd": [100.0, 100.0, 100.0]}
    assert one(claims(study), "C3")["verdict"] == "inconclusive"


@pytest.mark.parametrize("gradual, verdict, outcome", [
    ([45.0, 46.0, 47.0], "reproduced", "equivalent"),            # identical to one-shot: within the margin
    ([45.0 * 0.9, 46.0 * 0.91, 47.0 * 0.92], "not reproduced", "worse"),  # gradual ~9% better: against the paper
    ([45.0 * 0.93, 46.0 * 1.01, 47.0 * 1.06], "inconclusive", "inconclusive"),  # too wide for the margin
    ([45.0 * 1.3, 46.0 * 1.3, 47.0 * 1.31], "reproduced", "better"),  # one-shot far ahead: no gain from gradual
])
def test_c5_is_a_non_inferiority_test_per_schedule_in_nats(gradual, verdict, outcome):
    import dataclasses

    runs = _runs()  # TF's (one-shot) test ppl 45, 46, 47
    for s in range(3):
        runs["gradual64", s] = FakeRun(10, 100, 40, gradual[s])
        runs["gradual256", s] = FakeRun(10, 100, 40, 45 + s)  # the same as one-shot
    cfg = dataclasses.replace(CFG, methods=[*CFG.methods, "gradual"], gradual_every_tokens=[64, 256],
                              seeds_by_method={**CFG.seeds_by_method, "gradual": [0, 1, 2]})
    table = claims(FakeStudy(cfg, runs))
    row = one(table, "C5", "one layer every 64 tokens")
    assert row["verdict"] == verdict and row["outcome"] == outcome and row["seeds"] == 3 and row["unit"] == "nats"
    assert row["diff"] == pytest.approx(sum(math.log(g / (45 + s)) for s, g in enumerate(gradual)) / 3)
    assert row["test"] == "non-inferiority" and row["margin"] == 0.05
    assert one(table, "C5", "one layer every 256 tokens")["verdict"] == "reproduced"


def test_a_profile_with_a_tuned_rate_judges_c4_c5_c7_c8_at_both_rates_each_on_its_own_runs():
    runs = _runs()  # TF at the base rate: test ppl 45, 46, 47
    for s in range(3):
        runs["gradual64", s] = FakeRun(10, 100, 40, 45 + s)            # = one-shot at the base rate
        runs["tf-4x", s] = FakeRun(10, 100, 30, 30 + s)                # TF at the tuned rate
        runs["gradual-4x64", s] = FakeRun(10, 100, 30, (30 + s) * 0.9)  # gradual 10% ahead there
        runs["chop-distill", s] = runs["chop-w", s] = FakeRun(15, 100, 40, 45 + s)
        runs["chop-distill-4x", s] = FakeRun(15, 100, 30, 30 + s)
        runs["width", s] = FakeRun(10, 100, 40, 45 + s)
        runs["width-4x", s] = FakeRun(10, 100, 30, (30 + s) * 1.2)
    lr4 = {"train": {"lr": 0.0012}}
    variants = {"tf-4x": {"method": "tf", **lr4}, "gradual-4x": {"method": "gradual", **lr4},
                "chop-distill-4x": {"method": "chop-distill", **lr4}, "width-4x": {"method": "width", **lr4},
                "chop-w": {"method": "chop-distill", "train": {"weight_hidden": 0.1}},
                "chop-w-4x": {"method": "chop-distill", "train": {"weight_hidden": 0.1, "lr": 0.0012}}}
    recorded = ["gradual", "chop-distill", "width", "tf-4x", "gradual-4x", "chop-distill-4x", "width-4x", "chop-w"]
    cfg = dataclasses.replace(
        CFG, student_train=dataclasses.replace(CFG.student_train, lr=0.0003), selectors=[],
        methods=[*CFG.methods, *recorded], gradual_every_tokens=[64], variants={**CFG.variants, **variants},
        tuned={"tf": "tf-4x", "gradual": "gradual-4x", "chop-distill": "chop-distill-4x", "chop-w": "chop-w-4x",
               "width": "width-4x"},
        seeds_by_method={**CFG.seeds_by_method, **{m: [0, 1, 2] for m in recorded}})
    table = claims(FakeStudy(cfg, runs, extra={"kd-corrected": 30.0, "offline-kd": 30.0}))
    base = one(table, "C5", "one layer every 64 tokens, lr 0.0003")
    assert base["diff"] == pytest.approx(0.0) and base["verdict"] == "reproduced"
    tuned = one(table, "C5", "one layer every 64 tokens, lr 0.0012 (tuned)")
    assert tuned["diff"] == pytest.approx(math.log(0.9)) and tuned["verdict"] == "not reproduced"
    # C8: both rows at the base rate; at the tuned rate the paper's sum is judged on the 4x runs and the
    # weighting whose 4x variant is not recorded says so (its row is not lost)
    assert one(table, "C8", "chop-w, lr 0.0003")["verdict seeds"] == "0, 1, 2"
    c8 = one(table, "C8", "paper's unweighted sum, lr 0.0012 (tuned)")
    assert "test ppl TF 31.0" in c8["ours"] and c8["verdict seeds"] == "0, 1, 2"  # tf-4x's 30-32
    assert "chop-distill-4x 31.0" in c8["ours"]  # the text names the runs it read, not the base method
    assert "chop-distill 4" in one(table, "C8", "paper's unweighted sum, lr 0.0003")["ours"]
    waiting = one(table, "C8", "chop-w, lr 0.0012 (tuned)")
    assert waiting["verdict"] == "not tested" and "chop-w-4x (not in `methods` yet)" in waiting["ours"]
    # C7: quality at each rate on its own runs; the cost, the same at every rate, once and without a rate
    assert one(table, "C7", "quality vs max-gap, lr 0.0012 (tuned)")["diff"] == pytest.approx(math.log(1.2))
    assert one(table, "C7", "quality vs max-gap, lr 0.0003")["diff"] == pytest.approx(0.0)
    assert list(table[table.claim == "C7"].comparison).count("cost") == 1 and len(table[table.claim == "C7"]) == 3
    # C4 needs the five configurations: said at each rate
    assert one(table, "C4", "lr 0.0012 (tuned)")["verdict"] == "not tested"
    # C2 is judged once (it chooses each side's rate itself); C1 and C6, whose methods are not in the
    # profile, say so once
    assert not any("lr" in c for c in table[table.claim.isin(["C1", "C2", "C3", "C6"])].comparison)
    assert len(table[table.claim == "C6"]) == 1
    # one Holm family over both rates: the smallest p is multiplied by the number of tested rows
    family = table.p.notna().sum()
    assert base["p"] == base["p"] and tuned["p"] == tuned["p"] and family >= 6
    assert table["holm p"][table.p.idxmin()] == pytest.approx(min(1.0, family * table.p.min()))


def test_c5_with_one_gradual_seed_has_no_interval_and_no_verdict():
    import dataclasses

    runs = _runs()
    runs["gradual64", 0] = FakeRun(10, 100, 40, 30.0)  # far better on its one seed: still no interval
    cfg = dataclasses.replace(CFG, methods=[*CFG.methods, "gradual"], gradual_every_tokens=[64],
                              seeds_by_method={**CFG.seeds_by_method, "gradual": [0]})
    row = one(claims(FakeStudy(cfg, runs)), "C5")
    assert row["verdict"] == "inconclusive" and row["seeds"] == 1 and math.isnan(row["p"]) and math.isnan(row["mdd"])


class DepthStudy(FakeStudy):
    """TF students on other truncations keyed `tf@strategy` (max-gap is the profile's `tf`)."""

    def student(self, method, strategy=None, seed=0, remove_every_tokens=None):
        key = method if method != "tf" or strategy in (None, "max-gap") else f"tf@{strategy}"
        return super().student(key, seed=seed)


class StrategyStudy(FakeStudy):
    """Students trained from another truncation keyed `METHOD@STRATEGY`."""

    def student(self, method, strategy=None, seed=0, remove_every_tokens=None):
        return super().student(f"{method}@{strategy}" if strategy else method, seed=seed)


def test_c2_from_another_truncation_judges_the_chosen_pair_there_on_every_seed_it_has():
    import dataclasses

    runs = _runs()  # on max-gap kd-logit is the KD baseline chosen (on seed 0)
    for s in range(3):
        runs["tf@best-block", s] = FakeRun(10, 100, 40, 45 + s)
        runs["kd-logit@best-block", s] = FakeRun(15, 80, 35, 30 + s)  # far ahead of TF from best-block
    extra = {"kd-corrected": 30.0, "offline-kd": 30.0}
    listed = {"tf@best-block": [0, 1, 2], "kd-logit@best-block": [0, 1, 2]}
    cfg = dataclasses.replace(CFG, c2_also_from=["best-block"], seeds_by_method={**CFG.seeds_by_method, **listed})
    table = claims(StrategyStudy(cfg, runs, extra=extra))
    row = one(table, "C2", "equal tokens, from best-block")
    # every seed both have from best-block: the choice (made on max-gap's seed 0) read none of them
    assert row["verdict seeds"] == "0, 1, 2" and row["choice seeds"] == ""
    assert row["diff"] == pytest.approx(np.mean([math.log((30 + s) / (45 + s)) for s in range(3)]))
    assert row["outcome"] == "worse" and "kd-logit" in row["ours"] and "chosen on max-gap" in row["ours"]
    assert one(table, "C2", "equal FLOPs, from best-block")["verdict seeds"] == "0, 1, 2"
    assert one(table, "C2", "equal tokens")["verdict seeds"] == "1"  # the main rows are as before
    without = claims(StrategyStudy(CFG, runs, extra=extra))
    assert len(table) == len(without) + 2 and one(table, "C3")["verdict"] == one(without, "C3")["verdict"]

    # not listed, or listed and not recorded: the two rows say what is missing; C2's main rows stand
    for seeds, runs_here, missing in (({}, runs, "runs tf@best-block and kd-logit@best-block"),
                                      (listed, _runs(), "run tf@best-block-s0")):
        cfg = dataclasses.replace(CFG, c2_also_from=["best-block"], seeds_by_method={**CFG.seeds_by_method, **seeds})
        table = claims(StrategyStudy(cfg, runs_here, extra=extra))
        for comparison in ("equal FLOPs, from best-block", "equal tokens, from best-block"):
            row = one(table, "C2", comparison)
            assert row["verdict"] == "not tested" and missing in row["ours"], row["ours"]
        assert one(table, "C2", "equal tokens")["verdict"] != "not tested"


def test_c7_judges_width_against_max_gap_and_the_depth_configuration_best_on_validation():
    import dataclasses

    runs = _runs()  # tf (max-gap): val 40-42, test 45-47
    for s in range(3):
        runs["tf@middle", s] = FakeRun(10, 100, 30 + s, 33 + s)       # best on validation
        runs["tf@best-block", s] = FakeRun(10, 100, 35 + s, 30 + s)   # best on test: never chosen on it
        runs["width", s] = FakeRun(10, 100, 31, (33 + s) * 1.01)      # 1% behind middle at every seed
    cfg = dataclasses.replace(CFG, methods=[*CFG.methods, "width"], configs=["max-gap", "middle"],
                              selectors=["best-block"], selector_seeds=[0, 1, 2])
    table = claims(DepthStudy(cfg, runs, extra={"kd-corrected": 30.0, "offline-kd": 30.0}))
    best = one(table, "C7", "quality vs middle")
    assert best["verdict"] == "reproduced" and best["outcome"] == "equivalent"
    assert best["diff"] == pytest.approx(math.log(1.01)) and best["choice seeds"] == "0, 1, 2"
    assert "best-block 36" in best["ours"] and "judged here on test" in best["ours"]
    paper = one(table, "C7", "quality vs max-gap")  # width far better than max-gap: not equivalent
    assert paper["verdict"] == "not reproduced" and paper["outcome"] == "worse" and paper["choice seeds"] == ""


def test_time_ratios_read_the_runs_where_comparable_else_the_side_by_side_rounds():
    import dataclasses

    runs = _runs()  # every run logs 100 tokens/s and takes 10 s
    runs["kd", 1].metrics = lambda: [{"tokens_per_s": v} for v in (50.0, 60.0, 200.0)]  # median 60
    runs["kd", 2].training["wall_seconds"] = 15.0
    study = FakeStudy(CFG, runs)
    assert study.time_ratios("kd") == ([1.0, pytest.approx(100 / 60), 1.0], "measured in the runs")
    assert study.time_ratios("kd", [1]) == ([pytest.approx(100 / 60)], "measured in the runs")
    assert study.time_ratios("kd", in_runs="wall_seconds") == ([1.0, 1.0, 1.5], "measured in the runs")
    study.cfg = dataclasses.replace(CFG, timings_comparable=False)  # the runs' timings are ignored
    with pytest.raises(MissingRecord):
        study.time_ratios("kd")
    study.step_rates = lambda: {"tf": [150.0, 160.0], "kd": [100.0, 100.0]}
    assert study.time_ratios("kd", in_runs="wall_seconds") == ([1.5, 1.6], "timed side by side, 2 rounds")
    with pytest.raises(KeyError):
        study.time_ratios("width")  # not timed


def test_c2_pairs_the_best_kd_with_the_best_tf_chosen_on_validation_not_test():
    import dataclasses

    runs = _runs()
    # TF at 2x lr: lower validation ppl at the end (36 vs 40 on seed 0) but a worse test ppl; TF at
    # half lr: worse on validation. A budget point (4x tokens) is never a candidate, however good.
    runs["tf-lr-2x", 0] = FakeRun(10, 100, 36, 60)
    runs["tf-lr-half", 0] = FakeRun(10, 100, 44, 30)
    runs["tf-4x", 0] = FakeRun(10, 100, 5, 5, steps=16)
    runs["kd-4x", 0] = FakeRun(15, 90, 5, 5, steps=16)
    cfg = dataclasses.replace(
        CFG, methods=[*CFG.methods, "tf-lr-2x", "tf-lr-half", "tf-4x", "kd-4x"],
        seeds_by_method={**CFG.seeds_by_method, "tf-lr-2x": [0], "tf-lr-half": [0], "tf-4x": [0], "kd-4x": [0]},
        variants={**CFG.variants, "tf-lr-2x": {"method": "tf", "train": {"lr": 2e-3}},
                  "tf-lr-half": {"method": "tf", "train": {"lr": 5e-4}}, "tf-4x": {"method": "tf", "budget": 4},
                  "kd-4x": {"method": "kd", "train": {"max_steps": 16}}})
    study = FakeStudy(cfg, runs, extra={"kd-corrected": 30.0, "offline-kd": 30.0})
    assert tf_candidates(study) == ["tf", "tf-lr-2x", "tf-lr-half"]
    assert "kd-4x" not in kd_candidates(study)
    choice = best_tf(study)
    chosen, scores = choice.method, choice.scores
    assert scores == pytest.approx({"tf": 40.0, "tf-lr-2x": 36.0, "tf-lr-half": 44.0})  # seed 0, shared by all
    assert chosen == "tf-lr-2x"
    # the verdict reads the chosen pair's seeds beyond the choice's seed 0: tf-lr-2x and kd-logit at seed 1
    runs["tf-lr-2x", 1] = FakeRun(10, 100, 37, 61)
    study.cfg = dataclasses.replace(cfg, seeds_by_method={**cfg.seeds_by_method, "tf-lr-2x": [0, 1]})
    assert best_tf(study).method == "tf-lr-2x" and best_tf(study).seeds == [0]
    table = claims(study)
    row = one(table, "C2", "equal FLOPs")
    # kd-logit s1 (80 -> 35 over 60 FLOPs) at tf-lr-2x's 40 FLOPs, over tf-lr-2x's final 37, in nats
    at = math.exp(math.log(65) + (math.log(50) - math.log(65)) * 2 / 3)
    assert row["seeds"] == 1 and row["diff"] == pytest.approx(math.log(at / 37.0))
    assert row["verdict seeds"] == "1" and row["choice seeds"] == "0" and row["verdict"] == "inconclusive"
    assert "TF: tf-lr-2x" in row["ours"] and "KD baseline: kd-logit" in row["ours"]
    assert one(table, "C2", "equal tokens")["diff"] == pytest.approx(math.log(42 / 61))


def _lr_check_cfg(**seeds):
    import dataclasses

    return dataclasses.replace(
        CFG, methods=[*CFG.methods, "tf-lr-2x", "tf-val32"],
        seeds_by_method={**CFG.seeds_by_method, "tf-lr-2x": [0], "tf-val32": [0], **seeds},
        variants={**CFG.variants, "tf-lr-2x": {"method": "tf", "train": {"lr": 2e-3}},
                  "tf-val32": {"method": "tf", "train": {"eval_blocks": 32}}})


def test_a_missing_seed_leaves_the_candidates_other_seeds_in_the_choice():
    runs = _runs()
    runs["tf-lr-2x", 0] = FakeRun(10, 100, 45, 50)  # worse than tf on seed 0 (45 vs 40)
    runs["tf-val32", 0] = FakeRun(10, 100, 1, 1)  # other validation blocks: not comparable, never a candidate
    del runs["tf", 2]  # a part not run yet
    # the correction and the cache cost more than TF's 40 FLOPs leave: neither has a reading
    study = FakeStudy(_lr_check_cfg(), runs, extra={"kd-corrected": 30.0, "offline-kd": 45.0})
    choice = best_tf(study)
    assert choice.method == "tf" and choice.seeds == [0] and "tf-val32" not in choice.scores
    kd = best_kd(study, tf=choice.method)  # KD read at tf's FLOPs on tf's recorded seeds 0 and 1
    assert set(kd.scores) == {"kd", "kd-logit"} and kd.seeds == [0, 1]


def test_c2_is_not_tested_when_the_chosen_tf_and_kd_share_no_seed():
    runs = _runs()
    runs["tf-lr-2x", 2] = FakeRun(10, 100, 30, 35)  # better than tf on their one shared seed, 2
    for s in range(3):
        del runs["kd", s]  # KD's only recorded runs: kd-logit on seeds 0-1, kd-corrected on 0
    study = FakeStudy(_lr_check_cfg(**{"tf-lr-2x": [2]}), runs, extra={"kd-corrected": 30.0, "offline-kd": 30.0})
    assert best_tf(study).method == "tf-lr-2x"
    with pytest.raises(MissingRecord, match="no KD run"):
        best_kd(study, tf="tf-lr-2x")  # nothing read at tf-lr-2x's seed 2
    row = one(claims(study), "C2")
    assert row["verdict"] == "not tested" and "no KD run" in row["ours"]
    import dataclasses

    runs["tf-lr-half", 1] = FakeRun(10, 100, 50, 55)
    cfg = _lr_check_cfg(**{"tf-lr-2x": [2]})
    study.cfg = dataclasses.replace(cfg, methods=[*cfg.methods, "tf-lr-half"],
                                    seeds_by_method={**cfg.seeds_by_method, "tf-lr-half": [1]},
                                    variants={**cfg.variants, "tf-lr-half": {"method": "tf", "train": {"lr": 5e-4}}})
    with pytest.raises(MissingRecord, match="TF candidates share no recorded seed"):
        best_tf(study)  # tf-lr-2x on seed 2, tf-lr-half on seed 1: means over different seeds compare nothing


class SelectionStudy(FakeStudy):
    """Notebook 08's TF students keyed by (strategy, seed), as H1 reads them."""

    def selector_seeds(self):
        return [0, 1, 2]

    def student(self, method, strategy=None, seed=0):
        return super().student(strategy, seed=seed)


@pytest.mark.parametrize("shift, verdict", [(-0.5, "supported"), (+0.5, "refuted"), (0.0, "inconclusive")])
def test_h1_reads_max_gap_against_ppl_removal_on_paired_seeds_and_says_supported_not_reproduced(shift, verdict):
    from distill_lib.findings import findings

    cfg = StudyConfig(methods=["tf"], seeds=[0, 1, 2], selectors=["ppl-removal"])
    paper = [47.7, 47.4, 47.6]
    noise = [0.0, 0.1, -0.1] if shift == 0.0 else [0.0, 0.02, -0.02]  # no shift: the interval covers 0
    runs = {**{("max-gap", s): FakeRun(10, 100, 40, ppl) for s, ppl in enumerate(paper)},
            **{("ppl-removal", s): FakeRun(10, 100, 40, ppl + shift + n) for s, (ppl, n) in enumerate(zip(paper, noise))}}
    h1 = findings(SelectionStudy(cfg, runs)).set_index("hypothesis").loc["H1"]
    assert h1["verdict"] == verdict and h1["seeds"] == 3
    assert h1["diff"] == pytest.approx(np.mean([math.log(p / (p + shift + n)) for p, n in zip(paper, noise)]), abs=1e-9)
    assert h1["unit"] == "nats" and h1["holm verdict"] == verdict  # a family of one (H2 is not tested)


def test_h1_and_h2_at_the_tuned_rate_read_the_tuned_runs_and_lora_gets_its_own_rate_check():
    from distill_lib.claims import _at_flops
    from distill_lib.findings import findings

    lora, train = {"method": "tf", "healing": {"method": "lora"}}, {"calibration_split": "train"}
    cfg = StudyConfig(
        methods=["tf", "tf-lr-4x", "tf-lora", "tf-lora-cal", "tf-lora-lr-4x"], seeds=[0, 1, 2], selectors=["ppl-removal"],
        selector_seeds=[0, 1, 2], student_train=dataclasses.replace(CFG.student_train, lr=0.0003),
        variants={"tf-lr-4x": {"method": "tf", "train": {"lr": 0.0012}, **train}, "tf-lora": lora,
                  "tf-lora-cal": {**lora, **train}, "tf-lora-lr-4x": {**lora, "train": {"lr": 0.0012}, **train}},
        seeds_by_method={"tf-lora": [0, 1, 2], "tf-lora-cal": [0, 1, 2], "tf-lora-lr-4x": [0, 1, 2]},
        tuned={"tf": "tf-lr-4x", "tf-lora": "tf-lora-lr-4x"})
    runs = {}
    for s in range(3):
        for tf, end in (("tf", 40), ("tf-lr-4x", 30)):
            runs[f"{tf}@max-gap", s] = FakeRun(10, 100, end, end + 5 + s)
            runs[f"{tf}@ppl-removal", s] = FakeRun(10, 100, end, end + 3 + s)    # ahead of max-gap at both rates
            runs[f"{tf}@best-block", s] = FakeRun(10, 100, end - 5, end + s)    # full continued pretraining
        runs["tf-lora@best-block", s] = FakeRun(6, 100, 50, 70)  # best of all, but calibrated on validation
        runs["tf-lora-cal@best-block", s] = FakeRun(6, 100, 70, 70)
        runs["tf-lora-lr-4x@best-block", s] = FakeRun(6, 100, 60 + 3 * s, 60)  # the better rate on seed 0
    table = findings(StrategyStudy(cfg, runs)).set_index(["hypothesis", "comparison"])
    base, tuned = table.loc[("H2", "lr 0.0003")], table.loc[("H2", "lr 0.0012 (tuned)")]
    # at the base rate: LoRA at 3e-4 against full at 3e-4, every seed
    assert base["verdict seeds"] == "0, 1, 2" and base["choice seeds"] == ""
    # at the tuned rate: full at 1.2e-3 against LoRA at its better rate, chosen on seed 0 and judged on 1, 2
    # (tf-lora, calibrated on the validation blocks the choice reads, is no candidate there)
    assert tuned["choice seeds"] == "0" and tuned["verdict seeds"] == "1, 2" and "tf-lora-lr-4x 60" in tuned["ours"]
    assert "tf-lora-cal 70" in tuned["ours"] and "tf-lora 50" not in tuned["ours"]
    expected = [math.log(_at_flops(runs["tf-lr-4x@best-block", s], 24) / (60 + 3 * s)) for s in (1, 2)]
    assert tuned["diff"] == pytest.approx(np.mean(expected))
    h1 = table.loc[("H1", "lr 0.0012 (tuned)")]
    assert h1["diff"] == pytest.approx(np.mean([math.log((35 + s) / (33 + s)) for s in range(3)]))
    assert table.loc[("H1", "lr 0.0003")]["diff"] == pytest.approx(np.mean([math.log((45 + s) / (43 + s)) for s in range(3)]))
    # LoRA's tuned variant not recorded yet: no rate check to make, so H2 at the tuned rate waits for it
    cfg = dataclasses.replace(cfg, methods=["tf", "tf-lr-4x", "tf-lora", "tf-lora-cal"])
    table = findings(StrategyStudy(cfg, runs)).set_index(["hypothesis", "comparison"])
    waiting = table.loc[("H2", "lr 0.0012 (tuned)")]
    assert waiting["verdict"] == "not tested" and "tf-lora-lr-4x (not in `methods` yet)" in waiting["ours"]
    assert table.loc[("H2", "lr 0.0003")]["verdict"] == base["verdict"]
    # a candidate rate whose choice-seed run is missing: no rate check among the others, not tested
    cfg = dataclasses.replace(cfg, methods=["tf", "tf-lr-4x", "tf-lora", "tf-lora-cal", "tf-lora-lr-4x"])
    del runs["tf-lora-cal@best-block", 0]
    table = findings(StrategyStudy(cfg, runs)).set_index(["hypothesis", "comparison"])
    missing = table.loc[("H2", "lr 0.0012 (tuned)")]
    assert missing["verdict"] == "not tested" and "tf-lora-cal@best-block-s0" in missing["ours"]
