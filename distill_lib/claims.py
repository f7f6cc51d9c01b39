"""The paper's claims C1-C8, tested on a study's records (notebook 99): for each, our numbers, the
test that turns them into a verdict (rules, margins and statistics, declared once: `distill_lib.stats`),
and the verdict before and after Holm's adjustment for the family of claims.

Claims read the records only (`Study.read_only`): a report never trains. A claim whose runs are not
recorded yet (a study run in parts) is reported 'not tested' with what is missing. Each comparison
pairs the seeds both sides have; perplexities are compared in nats (log ratios). A claim that chooses
between variants (C2's best TF and best KD, C7's best depth configuration) chooses on data its verdict
does not read, and the table names both.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from distill_lib.analysis import final_val_ppl, val_ppl_at_flops
from distill_lib.records import MissingRecord
from distill_lib.stats import (
    C3_MIN_RATIO, C7_MIN_RATIO, EQUIVALENCE, INCONCLUSIVE, MARGIN_NATS, NON_INFERIORITY, NOT_REPRODUCED, NOT_TESTED,
    REPRODUCED, SUPERIORITY, ClaimTest, fmt, holm_verdicts, log_ratios, mean_ci,
)
from distill_lib.tuned import AtTunedRate, rate_label

NATS = "nats"


def _at_flops(run, flops: float) -> float:
    """`analysis.val_ppl_at_flops`, refused (ValueError) outside the run's curve: a claim never reads
    beyond what was measured, and a NaN would pass unseen into a verdict."""
    value = val_ppl_at_flops(run, flops)
    if math.isnan(value):
        raise ValueError(f"{flops:.3g} FLOPs is outside the run's validation curve")
    return value


def _against_tf(other: dict, tf: dict, ppl, seeds, extra_flops: float = 0.0) -> dict[str, tuple[list, list]]:
    """Per seed, `other`'s and TF's perplexities at equal FLOPs (validation ppl with `other` read at
    TF's total FLOPs; `extra_flops` spent before `other`'s run, e.g. a teacher correction, count
    against it) and at equal tokens (test ppl at the end)."""
    return {"equal FLOPs": ([_at_flops(other[s], tf[s].training["flops"] - extra_flops) for s in seeds],
                            [final_val_ppl(tf[s]) for s in seeds]),
            "equal tokens": ([ppl(other[s]) for s in seeds], [ppl(tf[s]) for s in seeds])}


def _ppls(a: list, b: list, name_a: str, name_b: str) -> str:
    """`A 31.2 ± 1.0, B 29.8 ± 0.9` for two perplexity lists (shown beside the nats)."""
    return f"{name_a} {fmt(*mean_ci(a))}, {name_b} {fmt(*mean_ci(b))}"


#: Each claim of the paper: the statement, what the paper reports, and the method (next to the
#: paper's TF) that testing it needs; a profile without that method reports it 'not tested'.
CLAIMS = {
    "C1": ("truncated init beats random init at equal tokens", "yes (v1)", "random"),
    "C2": ("teacher-free matches or beats vanilla KD at equal compute", "TF matches/beats KD, ~1.5x cheaper (v1)", "kd"),
    "C3": ("KD costs ~1.5x more per token than teacher-free", "~1.5x (1.67x analytic for N_t = 2 N_s)", "kd"),
    "C4": ("removing layers near the output is worst", "output worst at 300M and 1.1B (Table 6)", "tf"),
    "C5": ("removing all layers at once is as good as removing them gradually",
           "no gain; slightly worse the slower (Fig 6)", "gradual"),
    "C6": ("pruned+continued converges to the half-size model trained from scratch",
           "converge at 300M/1.1B; pruning ahead at 7B (Fig 2)", "scratch"),
    "C7": ("width pruning ~ depth pruning in quality, ~2x costlier", "similar quality; depth ~2x more efficient (Fig 3)",
           "width"),
    "C8": ("CHOP+distill (extra losses) does not beat plain continued pretraining", "slightly worse, much costlier (Fig 4)",
           "chop-distill"),
}


#: The version of the paper each claim comes from (arXiv 2305.14864): v1 "LLM Distillation Doesn't
#: Need a Teacher" (2023), v2 "How To Train Your (Compressed) LLM" (2023), v3 "Just CHOP" (2024).
VERSION = {"C1": "v1", "C2": "v1; v3: distillation 'becomes inefficient'", "C3": "v1", "C4": "v3 (Table 6)",
           "C5": "v3 (Fig 6)", "C6": "v3 (Fig 2); v2 found the opposite: the compressed model underperforms",
           "C7": "v3 (Fig 3)", "C8": "v3 (Fig 4)"}


def field_context(table) -> str:
    """How C2 sits next to the later work that found the opposite (a paragraph for 99)."""
    rows = table[table.claim == "C2"].set_index("comparison")
    ours = []
    for comparison in ("equal FLOPs", "equal tokens"):
        if comparison in rows.index and rows.loc[comparison, "verdict"] != NOT_TESTED:
            row = rows.loc[comparison]
            ours.append(f"at {comparison} KD's perplexity over TF's is {fmt(row['diff'], row['ci95'])} nats (positive: TF "
                        f"ahead; Holm verdict **{row['holm verdict']}**)")
    ours = "; ".join(ours) if ours else "C2 is not tested in this profile yet"
    return ("**Next to later work.** Minitron (Muralidharan et al. 2024, arXiv 2407.14679) found KD ahead: a 15B→4B "
            "prune (mostly width) healed by logit-only KD on 100B tokens scored MMLU 37.8 where healing by the LM loss "
            "on 150B tokens scored 24.6, while HellaSwag tied. That is not an equal-compute comparison by this "
            "study's accounting: with the 15B teacher's forward charged to KD, its 100B KD tokens cost about 1.5x its "
            "150B LM tokens, and the gap is on one benchmark. The distillation scaling law (Busbridge et al. 2025, "
            "arXiv 2502.08606) predicts that KD beats supervised training when a teacher already exists and the "
            "student's compute stays *below* a threshold that grows with the student's size. This study sits far below "
            "any such threshold (10^-3 tokens per parameter), so the law predicts KD ahead; finding TF ahead at equal "
            f"FLOPs here would be a tension with it, to be tested at larger budgets, not an agreement. Here {ours}.")


def claims(study) -> "pd.DataFrame":
    """C1–C8, one row per test (C2, C5, C7 and C8 have several): our numbers, the test and its rule,
    the verdict before and after Holm's adjustment over the table, the minimum detectable difference,
    and the seeds the verdict and any choice of variant read. `diff` is the mean paired difference in
    `unit` (positive = the paper's direction), `ci95` its 95% half-width."""
    import pandas as pd

    study = study.read_only()
    cfg = study.cfg
    ppl = lambda run: study.headline(run)["ppl"]  # noqa: E731  (test-split perplexity)
    rows = []

    def add(claim, comparison, rule, ours, test: ClaimTest | None = None, positive="", unit=NATS, verdict=None,
            verdict_seeds=(), choice_seeds=()):
        statement, paper, _ = CLAIMS[claim]
        rows.append(_row(claim, comparison, statement, rule, ours, test, positive, unit, verdict, verdict_seeds,
                         choice_seeds, version=VERSION[claim], paper=paper))

    def at_rate(rate: str, only_nats: bool = False):
        """`add` with the rate named in the comparison (a profile with `tuned` judges C4, C5, C7 and C8
        at two rates); `only_nats` leaves out the cost rows, which a rate does not change (read once)."""
        def add_at(claim, comparison, *args, **kw):
            if claim in TUNED_CLAIMS and rate:
                if kw.get("unit", NATS) != NATS:  # a cost: the same at every rate
                    if only_nats:
                        return
                else:
                    comparison = f"{comparison}, {rate}" if comparison else rate
            add(claim, comparison, *args, **kw)
        return add_at

    def judge(on, claim, rate, only_nats=False):
        """One claim's rows (`rate`: '' where the profile has one rate); a part not recorded yet leaves a
        'not tested' row for the claim, unless it already has rows at this rate (C3 after C2)."""
        add_to = at_rate(rate if claim in TUNED_CLAIMS else "", only_nats)
        first = len(rows)
        try:
            checks[claim](on, ppl, add_to)
        except MissingRecord as err:  # a study run in parts: this claim's runs are not all recorded yet
            for part in (("C2", "C3") if claim == "C2" else (claim,)):
                if not any(row["claim"] == part for row in rows[first:]):
                    add_to(part, "", "-", f"not recorded yet ({err.what})", verdict=NOT_TESTED)

    checks = {"C1": _c1, "C2": _c2_c3, "C4": _c4, "C5": _c5, "C6": _c6, "C7": _c7, "C8": _c8}
    base_rate, tuned_rate = (rate_label(cfg, tuned) if cfg.tuned else "" for tuned in (False, True))
    for claim, (_, _, method) in CLAIMS.items():
        if method not in cfg.methods:
            add(claim, "", "-", f"method {method} is not in this profile", verdict=NOT_TESTED)
        elif claim in checks:
            judge(study, claim, base_rate)
    if cfg.tuned:  # C4, C5, C7, C8 again, every run at the tuned rate (a claim without its method: said once above)
        for claim in (c for c in TUNED_CLAIMS if CLAIMS[c][2] in cfg.methods):
            method = CLAIMS[claim][2]
            if method not in cfg.tuned:
                at_rate(tuned_rate)(claim, "", "-", f"no variant of {method} at the tuned rate in `tuned`",
                                    verdict=NOT_TESTED)
            else:
                judge(AtTunedRate(study), claim, tuned_rate, only_nats=True)
    return _with_holm(pd.DataFrame(rows).sort_values("claim", kind="stable").reset_index(drop=True))


#: The claims that compare runs at one common learning rate: a profile with `tuned` judges them at
#: the base rate and again at the tuned one (C2 chooses each side's best rate itself).
TUNED_CLAIMS = ("C4", "C5", "C7", "C8")


def _row(key, comparison, statement, rule, ours, test, positive, unit, verdict, verdict_seeds, choice_seeds, **extra):
    """One row of the claims (or findings) table; `verdict` overrides the test's (C6's shrinking gap)."""
    has = test is not None
    margin = test.margin if has and test.kind != SUPERIORITY else math.nan
    return {"claim": key, "comparison": comparison, "statement": statement, **extra,
            "verdict": verdict or (test.verdict if has else NOT_TESTED), "outcome": test.outcome if has else "",
            "test": f"{test.kind}" if has else "", "unit": unit if has else "", "margin": margin,
            "diff": test.mean if has else math.nan, "ci95": (test.half if has and test.half is not None else math.nan),
            "mdd": test.mdd if has else math.nan, "p": test.p if has else math.nan,
            "ours": ours, "positive means": positive, "rule": rule, "seeds": test.n if has else 0,
            "verdict seeds": ", ".join(map(str, verdict_seeds)), "choice seeds": ", ".join(map(str, choice_seeds))}


def _with_holm(table):
    """Holm's adjustment over the table's tests (rows with a p-value: tested, two seeds or more)."""
    if table.empty:
        return table
    # rows without a p-value (not tested, one seed) are outside the family and keep their verdict
    table["holm p"], table["holm verdict"] = holm_verdicts(list(table["verdict"]), list(table["p"]))
    return table


def paired_seeds(study, *methods: str) -> list[int]:
    """The seeds every one of `methods` is trained with, in the order of the first."""
    return [s for s in study.seeds(methods[0]) if all(s in study.seeds(m) for m in methods[1:])]


#: Training fields a tuning variant may change: how the same run is optimised or distilled. A variant
#: changing anything else (the token budget, the validation blocks, a removal schedule, the healing
#: method) is a different experiment, never a candidate baseline.
TUNING_FIELDS = {"lr", "min_lr_ratio", "warmup_steps", "weight_decay", "betas", "grad_clip", "optimizer",
                 "kd_alpha", "kd_temperature", "kd_divergence", "jsd_beta", "offline_top_k", "offline_dtype"}


def _tunes_base_budget(cfg, method: str) -> bool:
    """A method itself, or a variant that only tunes its training (`TUNING_FIELDS`, or a teacher
    correction) at the base budget."""
    v = cfg.variants.get(method)
    return v is None or (cfg.budget_of(method) == 1 and not v.get("healing")
                         and set(v.get("train") or {}) <= TUNING_FIELDS)


def candidates(study, bases: tuple[str, ...]) -> list[str]:
    """The methods in `bases` and their tuning variants (learning rate, temperature, ...) in the profile."""
    cfg = study.cfg
    return [m for m in cfg.methods if (m in bases or cfg.variants.get(m, {}).get("method") in bases)
            and _tunes_base_budget(cfg, m)]


def kd_candidates(study, online_only: bool = False) -> list[str]:
    """Vanilla KD, offline KD and their tuning variants, the baselines C2 chooses from (offline KD
    with its logit cache's teacher forward charged: `Study.extra_flops`). `online_only`: only those
    with the teacher in memory."""
    return candidates(study, ("kd",) if online_only else ("kd", "offline-kd"))


def tf_candidates(study) -> list[str]:
    """Teacher-free continued pretraining and its tuning variants (the learning-rate check)."""
    return candidates(study, ("tf",))


def candidate_families(study) -> tuple[list[str], list[str], list[str]]:
    """C2's candidates by family: TF and its variants, online KD's, offline KD's (figures tell them apart)."""
    online = kd_candidates(study, online_only=True)
    return tf_candidates(study), online, [m for m in kd_candidates(study) if m not in online]


def _recorded(study, method: str, seeds, read) -> dict[int, float]:
    """`read(run, seed)` for each of `seeds` whose run is recorded (a study in parts: one missing seed
    leaves the others in); a reading outside the run's curve (ValueError) is left out too."""
    out = {}
    for s in seeds:
        try:
            out[s] = read(study.student(method, seed=s), s)
        except (MissingRecord, ValueError):
            continue
    return out


def _lowest_on_shared_seeds(readings: dict[str, dict[int, float]], what: str) -> "Choice":
    """The candidate with the lowest mean reading over the seeds all candidates have (an ablation run
    at one seed meets the others at that seed, not their mean over more seeds). Refuses (not tested)
    when they share no seed: means over different seeds are not a comparison."""
    readings = {m: r for m, r in readings.items() if r}
    if not readings:
        raise MissingRecord(f"no {what} run recorded yet", f"no {what} run recorded yet")
    shared = sorted(set.intersection(*(set(r) for r in readings.values())))
    if not shared:
        raise MissingRecord(f"the {what} candidates share no recorded seed",
                            f"a seed all {what} candidates share ({', '.join(readings)})")
    scores = {m: float(np.mean([r[s] for s in shared])) for m, r in readings.items()}
    return Choice(min(scores, key=scores.get), scores, shared)


@dataclasses.dataclass
class Choice:
    """A baseline chosen on validation: the method, every candidate's score, the seeds compared on."""
    method: str
    scores: dict
    seeds: list

    @property
    def on_seeds(self) -> str:
        return f"seed{'s' if len(self.seeds) > 1 else ''} {', '.join(map(str, self.seeds))}"


def best_tf(study) -> Choice:
    """The teacher-free run C2 uses: of TF and its tuning variants, the one with the lowest mean
    *validation* perplexity at the end (all spend the same FLOPs), never chosen on test; compared on
    the seeds they share."""
    return _lowest_on_shared_seeds(
        {m: _recorded(study, m, study.seeds(m), lambda run, s: final_val_ppl(run)) for m in tf_candidates(study)}, "TF")


def best_kd(study, tf: str = "tf") -> Choice:
    """The KD baseline C2 uses: of vanilla KD, offline KD and their variants, the one with the lowest
    mean *validation* perplexity at the total FLOPs of TF (`tf`, the chosen TF run), never chosen on
    test; compared on the seeds all of them share with it. A teacher correction's FLOPs and an
    offline logit cache's teacher forward count against their variant."""
    tf_flops = _recorded(study, tf, study.seeds(tf), lambda run, s: run.training["flops"])
    readings = {}
    for m in kd_candidates(study):
        try:
            extra = study.extra_flops(m)
        except MissingRecord:
            continue  # its teacher correction is not recorded yet: not a candidate this time
        readings[m] = _recorded(study, m, [s for s in study.seeds(m) if s in tf_flops],
                                lambda run, s, extra=extra: _at_flops(run, tf_flops[s] - extra))
    return _lowest_on_shared_seeds(readings, "KD")


def claims_summary(table, key: str = "claim") -> "pd.DataFrame":
    """The claims (or findings) table as a reader scans it: one row per test, its difference and
    interval in its unit, margin, minimum detectable difference, verdict before and after Holm, and
    the seeds the verdict and any choice read (notebook 99 and the README's tables)."""
    import pandas as pd

    def with_unit(row, text):
        return text + (" nats" if row["unit"] == NATS else f" ({row['unit']})")

    rows = []
    for _, row in table.iterrows():
        tested = row["diff"] == row["diff"]
        half = row["ci95"] if row["ci95"] == row["ci95"] else None
        rows.append({key: row[key], "comparison": row["comparison"] or "–", "test": row["test"] or "–",
                     "difference (95% CI)": with_unit(row, fmt(row["diff"], half)) if tested else "–",
                     "margin": f"±{row['margin']:g} nats" if row["margin"] == row["margin"] else "–",
                     "MDD (80% power)": with_unit(row, f"{row['mdd']:.2g}") if row["mdd"] == row["mdd"] else "–",
                     "verdict": row["verdict"], "Holm": row["holm verdict"],
                     "seeds": (row["verdict seeds"] or "–") + (f" (variant chosen on seed{'s' * (',' in row['choice seeds'])} "
                                                               f"{row['choice seeds']}'s validation ppl)"
                                                               if row["choice seeds"] else "")})
    return pd.DataFrame(rows)


def reading(row) -> str:
    """One or two plain sentences for a claim row of `claims`: what was compared, which way it went."""
    head = f"**{row['claim']}**" + (f" — {row['comparison']}" if row.get("comparison") else "")
    if row["verdict"] == NOT_TESTED:
        return f"{head} ({row['statement']}): not tested here: {row['ours']}."
    what = f"{head} ({row['statement']}): {row['ours']}."
    if row["diff"] == row["diff"]:
        half = row["ci95"] if row["ci95"] == row["ci95"] else None
        unit = f" {row['unit']}" if row["unit"] == NATS else f" ({row['unit']})"
        margin = f", margin ±{row['margin']:g}{unit}" if row["margin"] == row["margin"] else ""
        mdd = (f"; the smallest difference its seeds would detect (80% power) is {row['mdd']:.2g}{unit}"
               if row["mdd"] == row["mdd"] else "")
        reads = {"better": "lies on the paper's side of 0", "worse": "lies against the paper", "equivalent":
                 "lies inside the margin", "inconclusive": "is too wide to say"}[row["outcome"]] if half is not None \
            else "cannot be drawn (one seed)"
        what += (f" The difference ({row['positive means']}) is {fmt(row['diff'], half)}{unit}: its interval {reads} "
                 f"({row['test']} test{margin}{mdd}).")
    holm = "" if row.get("holm verdict", row["verdict"]) == row["verdict"] else \
        f"; after Holm's adjustment over the table: **{row['holm verdict']}**"
    return what + f" Verdict: **{row['verdict']}** (rule: {row['rule']}){holm}."


def _c1(study, ppl, add):
    """C1: truncated init beats random init at equal tokens (superiority, in nats)."""
    seeds = paired_seeds(study, "random", "tf")
    tf = [ppl(study.student("tf", seed=s)) for s in seeds]
    rand = [ppl(study.student("random", seed=s)) for s in seeds]
    add("C1", "equal tokens", "superiority: the interval of log ppl(random) - log ppl(TF) lies above 0",
        "test ppl " + _ppls(tf, rand, "TF", "random init"), ClaimTest(SUPERIORITY, log_ratios(rand, tf)),
        "log of random init's test ppl over TF's", verdict_seeds=seeds)


def _c2_c3(study, ppl, add):
    """C2: the best teacher-free run matches or beats the best KD baseline (non-inferiority at the
    margin), at equal FLOPs (KD's validation ppl read at TF's total FLOPs) and at equal tokens (test
    ppl). Both sides are chosen on validation at the seeds all candidates share, and the verdict
    reads only the chosen pair's other seeds. C3: vanilla KD costs ~1.5x per token."""
    tf_choice = best_tf(study)
    kd_choice = best_kd(study, tf=tf_choice.method)
    tf_method, method = tf_choice.method, kd_choice.method
    # the seeds a choice read (a side with one candidate chose nothing): the verdict reads the others
    choice_seeds = sorted({s for c in (tf_choice, kd_choice) if len(c.scores) > 1 for s in c.seeds})
    seeds = [s for s in paired_seeds(study, method, tf_method) if s not in choice_seeds]
    if not seeds:
        raise MissingRecord(f"{method} and {tf_method} share no seed that the choice did not read",
                            f"a seed of {method} and {tf_method} beyond the choice's ({', '.join(map(str, choice_seeds))})")
    tf = {s: study.student(tf_method, seed=s) for s in seeds}
    kd = {s: study.student(method, seed=s) for s in seeds}

    def chosen(name, c, base, how):
        if list(c.scores) == [base]:
            return ""
        return (f"; {name}: {c.method}, the lowest validation ppl {how} among the recorded variants ("
                + ", ".join(f"{m} {v:.4g}" for m, v in sorted(c.scores.items(), key=lambda kv: kv[1]))
                + f"; {c.on_seeds})")

    choice = chosen("TF", tf_choice, "tf", "at the end") + chosen("KD baseline", kd_choice, "kd", "at TF's FLOPs")
    read = {"equal FLOPs": "validation ppl, KD read at TF's total FLOPs (analytic; the teacher's forward counted)",
            "equal tokens": "test ppl at the end of training"}
    for comparison, (kd_ppl, tf_ppl) in _against_tf(kd, tf, ppl, seeds, study.extra_flops(method)).items():
        add("C2", comparison, f"non-inferiority: the interval of log ppl(KD) - log ppl(TF) lies above -{MARGIN_NATS} "
                              f"nats ({read[comparison]})",
            f"{read[comparison]}: " + _ppls(tf_ppl, kd_ppl, tf_method, method) + (choice if comparison == "equal FLOPs"
                                                                                   else ""),
            ClaimTest(NON_INFERIORITY, log_ratios(kd_ppl, tf_ppl), MARGIN_NATS), "log of KD's ppl over TF's",
            verdict_seeds=seeds, choice_seeds=choice_seeds)

    for strategy in study.cfg.c2_also_from:
        _c2_from(study, ppl, add, tf_method, method, strategy)

    seeds = paired_seeds(study, "kd", "tf")
    tf = {s: study.student("tf", seed=s) for s in seeds}  # every run recorded, or the claim is not tested yet
    kd = {s: study.student("kd", seed=s) for s in seeds}
    analytic = (kd[seeds[0]].training["flops_per_token"]["total"]
                / tf[seeds[0]].training["flops_per_token"]["total"])
    try:  # the runs' median tokens/s, or where their timings say nothing the side-by-side timing
        ratios, how = study.time_ratios("kd", seeds)
    except MissingRecord:  # only the side-by-side timing can be missing: the runs are read above
        add("C3", "time per token", "-", f"not judged: this profile's run timings are not comparable (see its notes) "
            f"and its side-by-side timing is not recorded; analytic FLOPs {analytic:.2f}x", verdict=NOT_TESTED)
        return
    _add_cost(add, "C3", "time per token", "the measured KD/TF time ratio", "KD/TF time ratio", C3_MIN_RATIO,
              ratios, how, seeds, f"KD/TF time per token {fmt(*mean_ci(ratios))}x measured ({how}), {analytic:.2f}x "
                                  "analytic FLOPs")


def _c2_from(study, ppl, add, tf_method: str, kd_method: str, strategy: str):
    """C2 again from another truncation (`c2_also_from`): the pair chosen on the main one's runs,
    trained from `strategy`, at every seed both have there. The choice read none of these runs (it
    read the main truncation's, at its choice seeds; a run here at such a seed shares that seed's data
    order, not its weights). Its rows are 'not tested' until they are recorded; C2's main rows and C3
    stand either way."""
    where = f"from {strategy}"
    seeds = [s for s in study.cfg.seeds_from(tf_method, strategy) if s in study.cfg.seeds_from(kd_method, strategy)]
    try:
        if not seeds:
            raise MissingRecord(f"no seed of {tf_method}@{strategy} and {kd_method}@{strategy} in seeds_by_method",
                                what=f"runs {tf_method}@{strategy} and {kd_method}@{strategy}")
        tf = {s: study.student(tf_method, strategy, seed=s) for s in seeds}
        kd = {s: study.student(kd_method, strategy, seed=s) for s in seeds}
    except MissingRecord as err:
        for comparison in ("equal FLOPs", "equal tokens"):
            add("C2", f"{comparison}, {where}", "-", f"not recorded yet ({err.what})", verdict=NOT_TESTED)
        return
    read = {"equal FLOPs": "validation ppl, KD read at TF's total FLOPs", "equal tokens": "test ppl at the end"}
    for comparison, (kd_ppl, tf_ppl) in _against_tf(kd, tf, ppl, seeds, study.extra_flops(kd_method)).items():
        add("C2", f"{comparison}, {where}",
            f"non-inferiority: the interval of log ppl(KD) - log ppl(TF) lies above -{MARGIN_NATS} nats, both trained "
            f"from {strategy} ({read[comparison]})",
            f"{read[comparison]}, from {strategy}: " + _ppls(tf_ppl, kd_ppl, tf_method, kd_method)
            + f" (the pair chosen on {study.cfg.strategy})",
            ClaimTest(NON_INFERIORITY, log_ratios(kd_ppl, tf_ppl), MARGIN_NATS), "log of KD's ppl over TF's",
            verdict_seeds=seeds)


def _add_cost(add, claim, comparison, interval_of, ratio, threshold, ratios, how, seeds, ours):
    """A cost claim (C3, C7's cost half): superiority of the measured time ratio over `threshold`. Side-
    by-side rounds share one machine and process: the rule says they are not independent replicates."""
    rounds = how.startswith("timed side by side")
    add(claim, comparison, f"superiority: the interval of {interval_of} lies above {threshold}"
        + ("; the rounds share one machine and process, so they are not independent replicates" if rounds else ""),
        ours, ClaimTest(SUPERIORITY, [r - threshold for r in ratios]), f"{ratio} minus {threshold}",
        unit=f"ratio − {threshold}", verdict_seeds=[f"round {i}" for i in range(len(ratios))] if rounds else seeds)


def _c4(study, ppl, add):
    """C4: removing layers near the output is worst (superiority over the worst other configuration)."""
    cfg = study.cfg
    five = [c for c in ("max-gap", "input", "output", "middle", "both") if c in cfg.configs]
    if "output" in five and len(five) > 1:
        seeds = study.config_seeds()
        by_config = {c: [ppl(study.student("tf", strategy=c, seed=s)) for s in seeds] for c in five}
        worst_other = [max(by_config[c][i] for c in five if c != "output") for i in range(len(seeds))]
        means = {c: mean_ci(v)[0] for c, v in by_config.items()}
        add("C4", "equal tokens", "superiority: the interval of log ppl(output) - log max ppl(other configurations) "
                                  "lies above 0",
            "test ppl " + ", ".join(f"{c} {fmt(v)}" for c, v in sorted(means.items(), key=lambda kv: kv[1])),
            ClaimTest(SUPERIORITY, log_ratios(by_config["output"], worst_other)),
            "log of output's test ppl over the worst other configuration's", verdict_seeds=seeds)
    else:
        add("C4", "", "-", "needs 'output' and another of the five configurations in `configs`", verdict=NOT_TESTED)


def _c5(study, ppl, add):
    """C5: no gradual schedule beats removing the layers at once: one non-inferiority test per schedule."""
    cfg = study.cfg
    if not cfg.gradual_every_tokens:
        add("C5", "", "-", "no gradual schedule in `gradual_every_tokens`", verdict=NOT_TESTED)
        return
    seeds = paired_seeds(study, "gradual", "tf")
    one = [ppl(study.student("tf", seed=s)) for s in seeds]
    for k in cfg.gradual_every_tokens:
        gradual = [ppl(study.student("gradual", seed=s, remove_every_tokens=k)) for s in seeds]
        add("C5", f"one layer every {k:,} tokens", f"non-inferiority: the interval of log ppl(gradual) - log "
                                                   f"ppl(one-shot) lies above -{MARGIN_NATS} nats",
            "test ppl " + _ppls(one, gradual, "one-shot", "gradual"),
            ClaimTest(NON_INFERIORITY, log_ratios(gradual, one), MARGIN_NATS), "log of gradual's test ppl over one-shot's",
            verdict_seeds=seeds)


def _c6(study, ppl, add):
    """C6: pruned+continued and half-depth-from-scratch converge: equivalence of the final gap; a gap
    beyond the margin that shrank over training is inconclusive (the budget ended first)."""
    seeds = paired_seeds(study, "scratch", "tf")
    tf = {s: study.student("tf", seed=s) for s in seeds}
    scratch = {s: study.student("scratch", seed=s) for s in seeds}
    curve = lambda run: [m["val_ppl"] for m in run.metrics() if "val_loss" in m]  # noqa: E731
    first = log_ratios([curve(scratch[s])[0] for s in seeds], [curve(tf[s])[0] for s in seeds])
    last = log_ratios([curve(scratch[s])[-1] for s in seeds], [curve(tf[s])[-1] for s in seeds])
    test = ClaimTest(EQUIVALENCE, last, MARGIN_NATS)
    shrank = ClaimTest(SUPERIORITY, [f - la for f, la in zip(first, last)])
    verdict = INCONCLUSIVE if test.verdict == NOT_REPRODUCED and shrank.verdict == REPRODUCED else None
    add("C6", "end of training", f"equivalence: the interval of the final log val ppl gap (scratch - pruned) lies "
                                 f"inside ±{MARGIN_NATS} nats; a gap beyond it that shrank over training (its interval "
                                 "of first minus final gap above 0) is inconclusive: the budget ended first",
        f"val ppl gap in nats {fmt(*mean_ci(first))} at the first evaluation, {fmt(*mean_ci(last))} at the end "
        f"(val ppl at the end: " + _ppls([curve(tf[s])[-1] for s in seeds], [curve(scratch[s])[-1] for s in seeds],
                                         "pruned", "from scratch") + ")",
        test, "log of from-scratch's final val ppl over the pruned model's", verdict=verdict, verdict_seeds=seeds)


def best_depth(study) -> Choice:
    """The depth configuration with the lowest mean final *validation* ppl: of notebook 01's
    configurations and notebook 08's selectors (TF at the same rate and budget), compared on the seeds
    they share; chosen on validation, so that C7's verdict, on test, reads other data."""
    cfg = study.cfg
    seeds = {c: study.config_seeds() for c in cfg.configs}
    seeds.update({c: study.selector_seeds() for c in cfg.selectors if c not in seeds})
    readings = {}
    for c, on in seeds.items():
        readings[c] = {}
        for s in on:
            try:
                readings[c][s] = final_val_ppl(study.student("tf", strategy=c, seed=s))
            except MissingRecord:  # a study in parts: a configuration not recorded yet is no candidate
                continue
    return _lowest_on_shared_seeds(readings, "depth")


def _c7(study, ppl, add):
    """C7: width pruning (DimCHOP) ~ depth pruning in quality (equivalence at equal tokens, against
    the paper's max-gap and against the best depth configuration), and ~2x costlier (superiority of
    the time ratio over 1.5x)."""
    seeds = paired_seeds(study, "width", "tf")
    width = {s: study.student("width", seed=s) for s in seeds}
    depths = [(study.cfg.strategy, None, seeds, [])]  # (configuration, how it was chosen, seeds, choice seeds)
    try:
        best = best_depth(study)
        if best.method != study.cfg.strategy:
            depths.append((best.method, "best depth configuration by final validation ppl ("
                           + ", ".join(f"{c} {v:.3g}" for c, v in sorted(best.scores.items(), key=lambda kv: kv[1]))
                           + f"; {best.on_seeds}), judged here on test", [s for s in seeds if s in best.seeds],
                           best.seeds))
    except MissingRecord:  # no other configuration recorded: max-gap only
        pass
    for strategy, how, on, choice_seeds in depths:
        depth = [ppl(study.student("tf", strategy=strategy, seed=s)) for s in on]
        wid = [ppl(width[s]) for s in on]
        add("C7", f"quality vs {strategy}", f"equivalence: the interval of log ppl(width) - log ppl(depth) lies inside "
                                            f"±{MARGIN_NATS} nats (test ppl at equal tokens)",
            "test ppl " + _ppls(depth, wid, f"depth ({strategy})", "width")
            + (f"; {strategy} is the {how}" if how else ""),
            ClaimTest(EQUIVALENCE, log_ratios(wid, depth), MARGIN_NATS), "log of width's test ppl over depth's",
            verdict_seeds=on, choice_seeds=choice_seeds)
    flops = width[seeds[0]].training["flops"] / study.student("tf", seed=seeds[0]).training["flops"]
    try:  # the runs' whole wall-clock, or where their timings say nothing the side-by-side timing
        cost, how = study.time_ratios("width", seeds, in_runs="wall_seconds")
    except (MissingRecord, KeyError):  # side-by-side timing not recorded, or without width
        add("C7", "cost", "-", f"wall-clock not comparable in this profile (see its notes); FLOPs {flops:.2f}x",
            verdict=NOT_TESTED, unit=f"ratio − {C7_MIN_RATIO}")  # a cost row (read once where rates are two)
        return
    what = "time per token" if how.startswith("timed side by side") else "wall-clock"
    _add_cost(add, "C7", "cost", "width/depth time per token", "width/depth time ratio", C7_MIN_RATIO, cost, how, seeds,
              f"width/depth {what} {fmt(*mean_ci(cost))}x ({how}), FLOPs {flops:.2f}x")


def _c8(study, ppl, add):
    """C8: adding distillation losses does not help: non-inferiority of TF at equal compute, for the
    paper's unweighted sum and for each recorded variant of it (e.g. a scaled hidden-state MSE)."""
    cfg = study.cfg
    variants = ["chop-distill"] + [m for m in cfg.methods if cfg.variants.get(m, {}).get("method") == "chop-distill"
                                   and m not in cfg.tuned.values()]  # the tuned ones stand in at the tuned rate
    for method in variants:
        comparison = "paper's unweighted sum" if method == "chop-distill" else method
        try:
            seeds = paired_seeds(study, method, "tf")
            if method != "chop-distill" and not seeds:
                continue
            tf = {s: study.student("tf", seed=s) for s in seeds}
            chop = {s: study.student(method, seed=s) for s in seeds}
        except MissingRecord as err:
            if method == "chop-distill":
                raise  # the paper's own row: the claim is not tested
            add("C8", comparison, "-", f"not recorded yet ({err.what})", verdict=NOT_TESTED)  # a weighting's row only
            continue
        comparisons = _against_tf(chop, tf, ppl, seeds)
        label = study.method_label(method)  # at the tuned rate: the variant whose runs were read
        (at_flops, tf_val), (chop_test, tf_test) = comparisons["equal FLOPs"], comparisons["equal tokens"]
        add("C8", comparison,
            f"non-inferiority at equal FLOPs: the interval of log val ppl(CHOP+distill at TF's total FLOPs) - log val "
            f"ppl(TF) lies above -{MARGIN_NATS} nats",
            "at equal FLOPs val ppl " + _ppls(tf_val, at_flops, "TF", label) + "; at equal tokens test ppl "
            + _ppls(tf_test, chop_test, "TF", label) + f" ({fmt(*mean_ci(log_ratios(chop_test, tf_test)))} nats)",
            ClaimTest(NON_INFERIORITY, log_ratios(at_flops, tf_val), MARGIN_NATS),
            "log of CHOP+distill's val ppl over TF's, at TF's total FLOPs", verdict_seeds=seeds)
