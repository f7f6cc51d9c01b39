"""The paper's claims C1-C8, tested on a study's records (notebook 99): for each, our numbers, the
rule that turns them into a verdict (rules and statistics: `distill_lib.stats`), and the verdict.

Claims read the records only (`Study.read_only`): a report never trains. A claim whose runs are not
recorded yet (a study run in parts) is reported 'not tested' with what is missing. Each comparison
pairs the seeds both sides have.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from distill_lib.records import MissingRecord
from distill_lib.stats import (
    INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTED, REPRODUCED, TIE, fmt, mean_ci, paired_difference, value_at,
    verdict_at_least, verdict_strict,
)


def val_ppl_at_flops(run, flops: float, nan_outside: bool = False) -> float:
    """`run`'s validation perplexity when it had spent `flops` training FLOPs, interpolated linearly
    in loss on its validation curve. Outside the curve: ValueError, or NaN with `nan_outside`
    (tables). Compute spent before the run (a teacher correction) is the caller's to subtract."""
    points = [(m["flops"], m["val_loss"]) for m in run.metrics() if "val_loss" in m]
    try:
        return math.exp(value_at([p[0] for p in points], [p[1] for p in points], flops))
    except ValueError:
        if nan_outside:
            return math.nan
        raise


def _final_val_ppl(run) -> float:
    return [m for m in run.metrics() if "val_loss" in m][-1]["val_ppl"]


def _against_tf(other: dict, tf: dict, ppl, seeds, extra_flops: float = 0.0) -> tuple[tuple, tuple]:
    """Paired differences other - TF: validation ppl with `other` read at TF's total FLOPs (equal
    compute; `extra_flops` spent before `other`'s run, e.g. a teacher correction, count against it),
    and test ppl at the end (equal tokens)."""
    at_tf_flops = [val_ppl_at_flops(other[s], tf[s].summary["summary"]["flops"] - extra_flops) for s in seeds]
    equal_compute = paired_difference(at_tf_flops, [_final_val_ppl(tf[s]) for s in seeds])
    equal_tokens = paired_difference([ppl(other[s]) for s in seeds], [ppl(tf[s]) for s in seeds])
    return equal_compute, equal_tokens


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
    """How C2 sits next to the work since the paper that found the opposite (a paragraph for 99)."""
    row = table.set_index("claim").loc["C2"]
    if row["verdict"] == NOT_TESTED:
        ours = "C2 is not tested in this profile yet"
    elif row["verdict"] in (REPRODUCED, TIE):
        ours = (f"here C2 came out **{row['verdict']}** (teacher-free matches or beats KD at equal compute), which "
                "sides with the paper")
    elif row["verdict"] == NOT_REPRODUCED:
        ours = f"here C2 came out **{row['verdict']}** (KD ahead at equal compute), which sides with Minitron"
    elif row["ci95"] is None or row["ci95"] != row["ci95"]:  # one paired seed: no interval yet
        ours = (f"here C2 is **{row['verdict']}**: one paired seed, no interval yet (the difference, "
                f"{row['diff']:+.3g}, {'goes the paper' if row['diff'] > 0 else 'goes Minitron'}'s way)")
    else:
        ours = f"here C2 is **{row['verdict']}**: the seeds do not separate the two"
    return ("**Next to later work.** Minitron (Muralidharan et al. 2024, arXiv 2407.14679) found the opposite of "
            "C2: at equal compute, a pruned 15B→4B model healed by logit-only KD scored MMLU 37.8 where healing by "
            "the LM loss scored 24.6, with a width-dominated prune, a 15B teacher and 100B+ tokens; the "
            "distillation scaling law (Busbridge et al. 2025, arXiv 2502.08606) predicts KD wins only below a "
            f"compute threshold that grows with the student. At this profile's scale {ours}.")


def claims(study) -> "pd.DataFrame":
    """C1–C8 with our numbers, the rule that turns them into a verdict, and the verdict. `diff` is
    the difference the verdict reads (positive = the paper's direction), `ci95` its half-width,
    `seeds` the number of paired seeds it rests on."""
    import pandas as pd

    study = study.read_only()
    cfg = study.cfg
    ppl = lambda run: study.headline(run)["ppl"]  # noqa: E731  (test-split perplexity)
    rows = []

    def add(claim, rule, ours, verdict, diff=None, half=None, positive="", seeds=0):
        statement, paper, _ = CLAIMS[claim]
        rows.append({"claim": claim, "statement": statement, "version": VERSION[claim], "verdict": verdict,
                     "ours": ours, "paper": paper,
                     "diff": diff, "ci95": half, "positive means": positive, "rule": rule, "seeds": seeds})

    checks = {"C1": _c1, "C2": _c2_c3, "C4": _c4, "C5": _c5, "C6": _c6, "C7": _c7, "C8": _c8}
    for claim, (_, _, method) in CLAIMS.items():
        if method not in cfg.methods:
            add(claim, "-", f"method {method} is not in this profile", NOT_TESTED)
        elif claim in checks:
            try:
                checks[claim](study, ppl, add)
            except MissingRecord as err:  # a study run in parts: this claim's runs are not all recorded yet
                done = {row["claim"] for row in rows}
                for part in (("C2", "C3") if claim == "C2" else (claim,)):
                    if part not in done:  # C2 may be complete where C3 (vanilla KD's cost) is not
                        add(part, "-", f"not recorded yet ({err.what})", NOT_TESTED)
    return pd.DataFrame(rows).sort_values("claim", kind="stable").reset_index(drop=True)


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
        {m: _recorded(study, m, study.seeds(m), lambda run, s: _final_val_ppl(run)) for m in tf_candidates(study)}, "TF")


def best_kd(study, tf: str = "tf") -> Choice:
    """The KD baseline C2 uses: of vanilla KD, offline KD and their variants, the one with the lowest
    mean *validation* perplexity at the total FLOPs of TF (`tf`, the chosen TF run), never chosen on
    test; compared on the seeds all of them share with it. A teacher correction's FLOPs and an
    offline logit cache's teacher forward count against their variant."""
    tf_flops = _recorded(study, tf, study.seeds(tf), lambda run, s: run.summary["summary"]["flops"])
    readings = {}
    for m in kd_candidates(study):
        try:
            extra = study.extra_flops(m)
        except MissingRecord:
            continue  # its teacher correction is not recorded yet: not a candidate this time
        readings[m] = _recorded(study, m, [s for s in study.seeds(m) if s in tf_flops],
                                lambda run, s, extra=extra: val_ppl_at_flops(run, tf_flops[s] - extra))
    return _lowest_on_shared_seeds(readings, "KD")


def sweep_differences(points: "pd.DataFrame") -> "pd.DataFrame":
    """The budget sweep read as C2 reads one budget: for every TF line and KD line (`points`: one row
    per line and budget, columns line, base ('tf' / 'kd'), budget, flops, test ppl) and every budget
    both have, KD's test ppl minus TF's at equal tokens, and at equal FLOPs: KD's line interpolated
    (log ppl against log FLOPs, between its own budget points, never beyond) at TF's FLOPs. Positive
    = TF ahead, the paper's direction. Points are means over their own seeds (a `seeds` column in
    `points` is shown with each difference): unpaired where the seed sets differ. With an `lr`
    column, a TF line meets only the KD lines at its learning rate (a tuned KD against an untuned
    TF, or the reverse, is not a comparison)."""
    import pandas as pd

    rows = []
    for tf_line in points[points.base == "tf"].line.unique():
        tf = points[points.line == tf_line].set_index("budget")
        for kd_line in points[points.base == "kd"].line.unique():
            kd = points[points.line == kd_line].sort_values("flops").set_index("budget")
            if "lr" in points and set(tf.lr) != set(kd.lr):
                continue
            for budget in sorted(set(tf.index) & set(kd.index)):
                at = np.exp(np.interp(np.log(tf.flops[budget]), np.log(kd.flops), np.log(kd["test ppl"]),
                                      left=np.nan, right=np.nan))
                row = {"TF line": tf_line, "KD line": kd_line, "budget": budget,
                       "KD - TF, equal tokens": float(kd["test ppl"][budget] - tf["test ppl"][budget]),
                       "KD - TF, equal FLOPs": float(at - tf["test ppl"][budget])}
                if "seeds" in points:  # each point is a mean over its own seeds: how many, side by side
                    row["seeds TF / KD"] = f"{tf.seeds[budget]} / {kd.seeds[budget]}"
                rows.append(row)
    return pd.DataFrame(rows)


def reading(row) -> str:
    """One or two plain sentences for a claim row of `claims`: what was compared, which way it went."""
    if row["verdict"] == NOT_TESTED:
        return f"**{row['claim']}** ({row['statement']}): not tested here: {row['ours']}."
    what = f"**{row['claim']}** ({row['statement']}): {row['ours']}."
    if row["diff"] is not None and not (isinstance(row["diff"], float) and math.isnan(row["diff"])):
        half = row["ci95"] if row["ci95"] is not None and not (isinstance(row["ci95"], float) and math.isnan(row["ci95"])) else None
        direction = "the paper's way" if row["diff"] > 0 else "against the paper" if row["diff"] < 0 else "neither way"
        covers = "" if half is None else (" and the 95% interval covers zero" if abs(row["diff"]) <= half
                                          else " and the 95% interval excludes zero")
        what += f" The difference ({row['positive means']}) is {fmt(row['diff'], half)}: {direction}{covers}."
    return what + f" Verdict: **{row['verdict']}** (rule: {row['rule']})."


def _c1(study, ppl, add):
    """C1: truncated init beats random init at equal tokens."""
    seeds = paired_seeds(study, "random", "tf")
    tf = [ppl(study.student("tf", seed=s)) for s in seeds]
    rand = [ppl(study.student("random", seed=s)) for s in seeds]
    d, h = paired_difference(rand, tf)
    add("C1", "strict: the interval of ppl(random) - ppl(TF) lies above 0",
        f"test ppl TF {fmt(*mean_ci(tf))}, random init {fmt(*mean_ci(rand))}",
        verdict_strict(d, h), d, h, "random init's test ppl minus TF's", len(seeds))


def _c2_c3(study, ppl, add):
    """C2: the best teacher-free run >= the best KD baseline at equal compute (KD's validation ppl
    read at TF's total FLOPs; both chosen on validation); C3: vanilla KD costs ~1.5x per token."""
    tf_choice = best_tf(study)
    kd_choice = best_kd(study, tf=tf_choice.method)
    tf_method, method = tf_choice.method, kd_choice.method
    seeds = paired_seeds(study, method, tf_method)
    if not seeds:
        raise MissingRecord(f"{method} and {tf_method} share no seed", f"a seed both {method} and {tf_method} have")
    tf = {s: study.student(tf_method, seed=s) for s in seeds}
    kd = {s: study.student(method, seed=s) for s in seeds}
    (d, h), (d_tok, h_tok) = _against_tf(kd, tf, ppl, seeds, study.extra_flops(method))

    def chosen(name, c, base, how):
        if list(c.scores) == [base]:
            return ""
        return (f"; {name}: {c.method}, the lowest validation ppl {how} among the recorded variants ("
                + ", ".join(f"{m} {v:.4g}" for m, v in sorted(c.scores.items(), key=lambda kv: kv[1]))
                + f"; {c.on_seeds})")

    choice = chosen("TF", tf_choice, "tf", "at the end") + chosen("KD baseline", kd_choice, "kd", "at TF's FLOPs")
    add("C2", "at least: val ppl(KD at TF's total FLOPs) - val ppl(TF) >= 0; equal FLOPs are analytic, the "
              "teacher's forward counted" + ("; each side is its best variant on validation, whose seeds the "
                                             "verdict reads again (test ppl at equal tokens is the unselected check)"
                                             if choice else ""),
        f"at equal FLOPs KD's val ppl minus TF's is {fmt(d, h)}; at equal tokens KD's test ppl minus TF's is "
        f"{fmt(d_tok, h_tok)}{choice}", verdict_at_least(d, h), d, h, "KD's val ppl minus TF's, at TF's total FLOPs",
        len(seeds))

    seeds = paired_seeds(study, "kd", "tf")
    tf = {s: study.student("tf", seed=s) for s in seeds}
    kd = {s: study.student("kd", seed=s) for s in seeds}
    analytic = kd[seeds[0]].summary["summary"]["flops_per_token"]["total"] / tf[seeds[0]].summary["summary"]["flops_per_token"]["total"]
    try:  # the runs' median tokens/s, or where their timings say nothing the side-by-side timing
        ratios, how = study.time_ratios("kd", seeds)
    except MissingRecord:  # only the side-by-side timing can be missing: the runs are read above
        add("C3", "measured step-time ratio KD/TF >= 1.3", f"not judged: this profile's run timings are not "
            f"comparable (see its notes) and its side-by-side timing is not recorded; analytic FLOPs "
            f"{analytic:.2f}x", NOT_TESTED)
        return
    m, h = mean_ci(ratios)
    add("C3", "measured step-time ratio KD/TF >= 1.3", f"KD/TF time per token {fmt(m, h)}x measured ({how}), "
        f"{analytic:.2f}x analytic FLOPs", REPRODUCED if m >= 1.3 else NOT_REPRODUCED, m - 1.3, h,
        "measured KD/TF ratio minus 1.3; the rule reads the mean", len(ratios))


def _c4(study, ppl, add):
    """C4: removing layers near the output is worst."""
    cfg = study.cfg
    five = [c for c in ("max-gap", "input", "output", "middle", "both") if c in cfg.configs]
    if "output" in five and len(five) > 1:
        seeds = study.config_seeds()
        by_config = {c: [ppl(study.student("tf", strategy=c, seed=s)) for s in seeds] for c in five}
        worst_other = [max(by_config[c][i] for c in five if c != "output") for i in range(len(seeds))]
        d, h = paired_difference(by_config["output"], worst_other)
        means = {c: mean_ci(v)[0] for c, v in by_config.items()}
        add("C4", "strict: the interval of ppl(output) - max ppl(other configurations) lies above 0",
            "test ppl " + ", ".join(f"{c} {fmt(v)}" for c, v in sorted(means.items(), key=lambda kv: kv[1])),
            verdict_strict(d, h), d, h, "output's test ppl minus the worst other configuration's", len(seeds))
    else:
        add("C4", "-", "needs 'output' and another of the five configurations in `configs`", NOT_TESTED)


def _c5(study, ppl, add):
    """C5: one-shot ~ gradual removal (no removal schedule beats removing the layers at once)."""
    cfg = study.cfg
    if not cfg.gradual_every_tokens:
        add("C5", "-", "no gradual schedule in `gradual_every_tokens`", NOT_TESTED)
        return
    seeds = paired_seeds(study, "gradual", "tf")
    one = [ppl(study.student("tf", seed=s)) for s in seeds]
    diffs = {k: paired_difference([ppl(study.student("gradual", seed=s, every_tokens=k)) for s in seeds], one)
             for k in cfg.gradual_every_tokens}
    best = min(diffs, key=lambda k: diffs[k][0])
    text = "gradual minus one-shot test ppl: " + "; ".join(f"one layer every {k:,} tokens {fmt(d, h) if h is not None else f'{d:+.3g}'}"
                                                          for k, (d, h) in diffs.items())
    if len(seeds) >= 2:  # paired over seeds: a schedule beats one-shot where its interval lies below 0
        verdict = (NOT_REPRODUCED if any(verdict_at_least(d, h) == NOT_REPRODUCED for d, h in diffs.values())
                   else REPRODUCED)
        add("C5", "no schedule's interval of gradual's test ppl minus one-shot's (paired seeds) lies below 0",
            f"{text} ({len(seeds)} paired seeds)", verdict, diffs[best][0], diffs[best][1],
            "the best gradual schedule's test ppl minus one-shot's", len(seeds))
        return
    # one seed of gradual: its difference against TF's seed-to-seed noise
    noise = mean_ci([ppl(study.student("tf", seed=s)) for s in study.seeds("tf")])[1]
    if noise is None:
        verdict = INCONCLUSIVE
    else:
        verdict = NOT_REPRODUCED if any(d < -noise for d, _ in diffs.values()) else REPRODUCED
    add("C5", "gradual's test ppl minus one-shot's >= minus the half-width of TF's seed interval, for every "
              "schedule (gradual has one seed)",
        text + (f" (TF's seed noise ±{noise:.2g})" if noise else ""), verdict, diffs[best][0], noise,
        "the best gradual schedule's test ppl minus one-shot's", len(study.seeds("tf")))


def _c6(study, ppl, add):
    """C6: pruned+continued and half-depth-from-scratch converge."""
    seeds = paired_seeds(study, "scratch", "tf")
    tf = {s: study.student("tf", seed=s) for s in seeds}
    scratch = {s: study.student("scratch", seed=s) for s in seeds}
    curve = lambda run: [m["val_ppl"] for m in run.metrics() if "val_loss" in m]  # noqa: E731
    first = float(np.mean([curve(scratch[s])[0] - curve(tf[s])[0] for s in seeds]))
    last = float(np.mean([curve(scratch[s])[-1] - curve(tf[s])[-1] for s in seeds]))
    final_tf = float(np.mean([curve(tf[s])[-1] for s in seeds]))
    if abs(last) <= 0.1 * final_tf:
        verdict = REPRODUCED
    elif abs(last) >= abs(first):
        verdict = NOT_REPRODUCED
    else:  # shrinking, but the budget ends before the two meet
        verdict = INCONCLUSIVE
    add("C6", "reproduced: the gap at the end is within 10% of the pruned model's ppl; not reproduced: the gap "
              "does not shrink; inconclusive: it shrinks but stays wider",
        f"val ppl gap (from scratch minus pruned) {first:.3g} at the first evaluation, {last:.3g} at the end "
        f"(pruned model at the end: {final_tf:.3g})", verdict, first - last, None,
        "how much the gap shrank over training", len(seeds))


def _c7(study, ppl, add):
    """C7: width pruning (DimCHOP) ~ depth pruning in quality, ~2x costlier."""
    seeds = paired_seeds(study, "width", "tf")
    tf = {s: study.student("tf", seed=s) for s in seeds}
    width = {s: study.student("width", seed=s) for s in seeds}
    d, h = paired_difference([ppl(width[s]) for s in seeds], [ppl(tf[s]) for s in seeds])
    flops = width[seeds[0]].summary["summary"]["flops"] / tf[seeds[0]].summary["summary"]["flops"]
    try:  # the runs' whole wall-clock, or where their timings say nothing the side-by-side timing
        cost, how = study.time_ratios("width", seeds, in_runs="wall_seconds")
        wall = (f"width/depth wall-clock {fmt(*mean_ci(cost))}x" if study.cfg.timings_comparable
                else f"width/depth time per token {fmt(*mean_ci(cost))}x ({how})")
    except (MissingRecord, KeyError):  # side-by-side timing not recorded, or without width
        cost, wall = None, "wall-clock not comparable in this profile (see its notes)"
    quality = verdict_at_least(d, h)
    if quality == INCONCLUSIVE:
        verdict = INCONCLUSIVE
    elif quality == NOT_REPRODUCED:
        verdict = NOT_REPRODUCED
    elif cost is None:  # quality holds; the cost half cannot be judged
        verdict = INCONCLUSIVE
    else:  # a quality tie is what the claim says ("similar quality")
        verdict = REPRODUCED if mean_ci(cost)[0] >= 1.5 else NOT_REPRODUCED
    add("C7", "depth matches or beats width (the interval of ppl(width) - ppl(depth) does not lie below 0) and "
              "width costs >= 1.5x the wall-clock",
        f"width minus depth test ppl {fmt(d, h)}; {wall}, FLOPs {flops:.2f}x",
        verdict, d, h, "width's test ppl minus depth's", len(seeds))


def _c8(study, ppl, add):
    """C8: adding distillation losses does not help (at equal compute)."""
    seeds = paired_seeds(study, "chop-distill", "tf")
    tf = {s: study.student("tf", seed=s) for s in seeds}
    chop = {s: study.student("chop-distill", seed=s) for s in seeds}
    (d, h), (d_tok, h_tok) = _against_tf(chop, tf, ppl, seeds)
    add("C8", "at least: val ppl(CHOP+distill at TF's total FLOPs) - val ppl(TF) >= 0",
        f"at equal FLOPs CHOP+distill's val ppl minus TF's is {fmt(d, h)}; at equal tokens its test ppl minus "
        f"TF's is {fmt(d_tok, h_tok)}", verdict_at_least(d, h), d, h,
        "CHOP+distill's val ppl minus TF's, at TF's total FLOPs", len(seeds))


# ---------------------------------------------------------------------------------------------
# Beyond the paper: the study's own hypotheses (notebook 08), stated with their rules before any
# number was seen, tested with the same machinery
# ---------------------------------------------------------------------------------------------
FINDINGS = {
    "H1": "selection by calibration perplexity (ppl-removal) beats the paper's max-gap after healing",
    "H2": "LoRA healing reaches full continued pretraining at equal compute",
}


#: Our own hypotheses are supported or refuted, not "reproduced": no paper reported them.
HYPOTHESIS_VERDICTS = {REPRODUCED: "supported", NOT_REPRODUCED: "refuted"}


def findings(study) -> "pd.DataFrame":
    """H1, H2 with our numbers, rule and verdict (empty when the profile runs no notebook 08)."""
    import pandas as pd

    study = study.read_only()
    cfg = study.cfg
    rows = []

    def add(key, rule, ours, verdict, diff=None, half=None, positive="", seeds=0):
        verdict = HYPOTHESIS_VERDICTS.get(verdict, verdict)
        rows.append({"hypothesis": key, "statement": FINDINGS[key], "verdict": verdict, "ours": ours, "diff": diff,
                     "ci95": half, "positive means": positive, "rule": rule, "seeds": seeds})

    lora = [m for m in cfg.methods if (cfg.variants.get(m, {}).get("healing") or {}).get("method") == "lora"]
    checks = {"H1": (_h1, "ppl-removal" in cfg.selectors, "no ppl-removal in `selectors`"),
              "H2": (_h2, bool(lora), "no LoRA healing variant in the profile")}
    for key, (check, applies, why) in checks.items():
        if not applies:
            add(key, "-", why, NOT_TESTED)
            continue
        try:
            check(study, add, *([lora[0]] if key == "H2" else []))
        except MissingRecord as err:
            add(key, "-", f"not recorded yet ({err.what})", NOT_TESTED)
    return pd.DataFrame(rows)


def _h1(study, add):
    seeds = study.selector_seeds()
    ppl = lambda s, seed: study.headline(study.student("tf", strategy=s, seed=seed))["ppl"]  # noqa: E731
    paper = [ppl("max-gap", s) for s in seeds]
    chosen = [ppl("ppl-removal", s) for s in seeds]
    d, h = paired_difference(paper, chosen)
    add("H1", "strict: the interval of ppl(max-gap) - ppl(ppl-removal) after healing lies above 0",
        f"test ppl after healing: ppl-removal {fmt(*mean_ci(chosen))}, max-gap {fmt(*mean_ci(paper))}",
        verdict_strict(d, h), d, h, "max-gap's test ppl minus ppl-removal's", len(seeds))


def _h2(study, add, lora):
    strategy = study.cfg.healing_strategy
    seeds = study.seeds(lora)
    full = {s: study.student("tf", strategy=strategy, seed=s) for s in seeds}
    adapters = {s: study.student(lora, strategy=strategy, seed=s) for s in seeds}
    at_lora = [val_ppl_at_flops(full[s], adapters[s].summary["summary"]["flops"]) for s in seeds]
    d, h = paired_difference(at_lora, [_final_val_ppl(adapters[s]) for s in seeds])
    add("H2", "at least: val ppl(full at LoRA's total FLOPs) - val ppl(LoRA) >= 0",
        f"on `{strategy}`, at LoRA's total FLOPs full continued pretraining's val ppl minus LoRA's is {fmt(d, h)}",
        verdict_at_least(d, h), d, h, "full's val ppl minus LoRA's, at LoRA's total FLOPs", len(seeds))
