"""Beyond the paper: the study's own hypotheses H1-H3, each stated with its rule before any number
was seen, tested on the records with the claims' machinery (`distill_lib.claims`, rules in
`distill_lib.stats`) as a Holm family of their own. Verdicts are 'supported' or 'refuted': no paper
reported them. A hypothesis whose runs are not recorded is 'not tested', with what is missing."""
from __future__ import annotations

import dataclasses
import math

from distill_lib.analysis import final_val_ppl, val_ppl_at_flops
from distill_lib.claims import NATS, _at_flops, _lowest_on_shared_seeds, _ppls, _recorded, _row, _with_holm, candidates
from distill_lib.records import MissingRecord
from distill_lib.stats import (
    MARGIN_NATS, NON_INFERIORITY, NOT_REPRODUCED, NOT_TESTED, REPRODUCED, SUPERIORITY, ClaimTest, log_ratios,
)
from distill_lib.tuned import AtTunedRate, rate_label

FINDINGS = {
    "H1": "selection by calibration perplexity (ppl-removal) beats the paper's max-gap after healing",
    "H2": "LoRA healing reaches full continued pretraining at equal compute",
    "H3": "distilling only early (KD for the first part of the tokens, then TF) keeps KD's gain per token "
          "and beats TF per FLOP",
}

#: Our own hypotheses are supported or refuted, not "reproduced": no paper reported them.
HYPOTHESIS_VERDICTS = {REPRODUCED: "supported", NOT_REPRODUCED: "refuted"}


def findings(study) -> "pd.DataFrame":
    """H1-H3 with our numbers, test, rule and verdict ('not tested' where the profile lacks their runs)."""
    import pandas as pd

    study = study.read_only()
    cfg = study.cfg
    rows = []

    def add(key, rule, ours, test=None, positive="", verdict=None, verdict_seeds=(), comparison="", choice_seeds=()):
        rows.append(_row(key, comparison, FINDINGS[key], rule, ours, test, positive, NATS, verdict, verdict_seeds,
                         choice_seeds))

    def at_rate(rate):  # `add` with the rate named in the comparison (a profile with `tuned`: H1, H2 at two rates)
        return lambda key, *args, **kw: add(key, *args, **{**kw, "comparison": rate})

    lora = lora_variants(cfg)
    base_lora = [m for m in lora if m not in cfg.tuned.values()]
    switched = kd_then_tf_runs(cfg)
    base, tuned = (rate_label(cfg, t) if cfg.tuned else "" for t in (False, True))
    checks = [("H1", lambda: _h1(study, at_rate(base)), "ppl-removal" in cfg.selectors, "no ppl-removal in `selectors`", base),
              ("H2", lambda: _h2(study, at_rate(base), base_lora[:1]), bool(base_lora),
               "no LoRA healing variant in the profile", base)]
    if cfg.tuned:  # every TF run at the tuned rate; LoRA at its own best rate, chosen on validation
        checks += [("H1", lambda: _h1(AtTunedRate(study), at_rate(tuned)), "ppl-removal" in cfg.selectors,
                    "no ppl-removal in `selectors`", tuned),
                   ("H2", lambda: _h2(study, at_rate(tuned), _with_tuned_lora(cfg, lora), full=AtTunedRate(study)),
                    any(m in cfg.tuned for m in base_lora), "no LoRA variant at the tuned rate in `tuned`", tuned)]
    checks.append(("H3", lambda: _h3(study, add, switched), bool(switched), "no kd-then-tf run in the profile", ""))
    for key, check, applies, why, rate in checks:
        if not applies:
            add(key, "-", why, verdict=NOT_TESTED, comparison=rate)
            continue
        try:
            check()
        except MissingRecord as err:
            add(key, "-", f"not recorded yet ({err.what})", verdict=NOT_TESTED, comparison=rate)
    if not rows:
        return pd.DataFrame(rows)
    table = _with_holm(pd.DataFrame(rows)).rename(columns={"claim": "hypothesis"})
    for column in ("verdict", "holm verdict"):
        table[column] = table[column].map(lambda v: HYPOTHESIS_VERDICTS.get(v, v))
    return table


def _h1(study, add):
    seeds = study.selector_seeds()
    ppl = lambda s, seed: study.headline(study.student("tf", strategy=s, seed=seed))["ppl"]  # noqa: E731
    paper = [ppl("max-gap", s) for s in seeds]
    chosen = [ppl("ppl-removal", s) for s in seeds]
    add("H1", "superiority: the interval of log ppl(max-gap) - log ppl(ppl-removal) after healing lies above 0",
        "test ppl after healing: " + _ppls(chosen, paper, "ppl-removal", "max-gap"),
        ClaimTest(SUPERIORITY, log_ratios(paper, chosen)), "log of max-gap's test ppl over ppl-removal's", verdict_seeds=seeds)


def lora_variants(cfg) -> list[str]:
    """The profile's LoRA healing variants (one per learning rate, e.g. `tf-lora`, `tf-lora-lr-4x`)."""
    return [m for m in cfg.methods if (cfg.variants.get(m, {}).get("healing") or {}).get("method") == "lora"]


def _with_tuned_lora(cfg, loras: list[str]) -> list[str]:
    """LoRA's candidates at the tuned rate: the recorded LoRA variants calibrated where full continued
    pretraining at that rate is (the same truncation, and no candidate whose truncation read the
    validation blocks the choice reads), once the tuned one is recorded (a rate check needs the rate
    it checks)."""
    missing = [v for m, v in cfg.tuned.items() if m in loras and v not in loras]
    if missing:
        raise MissingRecord(f"record: runs of {missing[0]}", what=f"runs of {missing[0]} (not in `methods` yet)")
    split = cfg.calibration_split_of(cfg.tuned["tf"])
    return [m for m in loras if cfg.calibration_split_of(m) == split]


def _h2(study, add, loras: list[str], full=None):
    """LoRA against full continued pretraining (TF of `full`: the study, or the study at the tuned
    rate) on `healing_strategy`, at LoRA's total FLOPs. Several LoRA variants (its own rate check):
    the one with the lowest final validation ppl on the first seed they share, the verdict on the
    others."""
    strategy, full = study.cfg.healing_strategy, full or study
    choice_seeds = []
    if len(loras) > 1:
        first = sorted(set.intersection(*(set(study.seeds(m)) for m in loras)))[:1]
        # every candidate read (a missing run is missing, not a candidate less)
        readings = {m: {s: final_val_ppl(study.student(m, strategy, seed=s)) for s in first} for m in loras}
        choice = _lowest_on_shared_seeds(readings, "LoRA")
        lora, choice_seeds = choice.method, choice.seeds
        chose = ("; LoRA's rate chosen on final validation ppl: " + ", ".join(
            f"{m} {v:.4g}" for m, v in sorted(choice.scores.items(), key=lambda kv: kv[1])) + f" ({choice.on_seeds})")
    else:
        lora, chose = loras[0], ""
    seeds = [s for s in study.seeds(lora) if s not in choice_seeds]
    if not seeds:
        raise MissingRecord(f"no seed of {lora} beyond the choice's", f"a seed of {lora} beyond the choice's")
    runs = {s: full.student("tf", strategy=strategy, seed=s) for s in seeds}
    adapters = {s: study.student(lora, strategy=strategy, seed=s) for s in seeds}
    at_lora = [_at_flops(runs[s], adapters[s].training["flops"]) for s in seeds]
    lora_ppl = [final_val_ppl(adapters[s]) for s in seeds]
    add("H2", f"non-inferiority: the interval of log val ppl(full at LoRA's total FLOPs) - log val ppl(LoRA) lies above "
              f"-{MARGIN_NATS} nats",
        f"on `{strategy}`, val ppl at LoRA's total FLOPs: " + _ppls(at_lora, lora_ppl, "full", f"LoRA ({lora})" if chose else "LoRA") + chose,
        ClaimTest(NON_INFERIORITY, log_ratios(at_lora, lora_ppl), MARGIN_NATS),
        "log of full's val ppl over LoRA's, at LoRA's total FLOPs", verdict_seeds=seeds, choice_seeds=choice_seeds)


# --- H3: KD first, then teacher-free (method kd-then-tf) ------------------------------------------
def kd_then_tf_runs(cfg) -> list[str]:
    """The profile's kd-then-tf method and variants (one per KD share)."""
    return [m for m in cfg.methods if cfg.base_method(m) == "kd-then-tf"]


def matched_baselines(study, switched: str) -> tuple[str, str]:
    """The KD run a kd-then-tf run starts as and the TF run it ends as: the profile's online-KD and
    TF runs (methods or tuning variants) with its student, teacher and training settings, KD share
    aside (e.g. its learning rate; not a KD variant with a corrected teacher). A comparison at other
    settings would mix the switch with the tuning."""
    own = study.run_config(switched, seed=0)
    kd_train = dataclasses.replace(own.train, kd_fraction=None)
    # the same student, teacher (not a corrected one) and healing; training as its KD phase, then its LM phase
    found = {}
    for base, train in (("kd", kd_train), ("tf", dataclasses.replace(kd_train, objective="lm"))):
        wanted = (own.init, own.teacher, own.healing, train)
        configs = {m: study.run_config(m, seed=0) for m in candidates(study, (base,))}
        same = [m for m, rc in configs.items() if (rc.init, rc.teacher, rc.healing, rc.train) == wanted]
        if not same:
            raise MissingRecord(f"no {base} run at {switched}'s settings",
                                f"a {base} run with {switched}'s training settings")
        found[base] = same[0]
    return found["kd"], found["tf"]


def kd_then_tf_comparison(study) -> tuple[dict, "pd.DataFrame"]:
    """Notebook 02's view of H3: the runs of KD, TF and every kd-then-tf share at the same settings
    ({label: runs over seeds}), and one row per run: its test ppl, its validation ppl read at TF's
    total FLOPs (NaN where its curve does not reach them), and its total FLOPs over TF's (same seed).
    Empty when the profile has no kd-then-tf run."""
    import pandas as pd

    switched = kd_then_tf_runs(study.cfg)
    if not switched:
        return {}, pd.DataFrame()
    kd, tf = matched_baselines(study, switched[0])
    label = study.cfg.label
    group = {m: {s: study.student(m, seed=s) for s in study.seeds(m)} for m in (tf, kd, *switched)}
    rows = []
    for m, runs in group.items():
        train = study.run_config(m, seed=0).train
        share = train.kd_fraction or (1.0 if train.objective == "kd" else 0.0)
        for s, run in runs.items():
            tf_flops = group[tf][s].training["flops"] if s in group[tf] else math.nan
            rows.append({"method": label(m), "seed": s, "KD share": share,
                         "test ppl": study.headline(run)["ppl"],
                         "val ppl at TF's FLOPs": val_ppl_at_flops(run, tf_flops),  # NaN outside its curve
                         "FLOPs / TF's": run.training["flops"] / tf_flops,
                         "switch: Δ val loss (nats)": switch_change(run, train.kd_steps())})
    return {label(m): list(runs.values()) for m, runs in group.items()}, pd.DataFrame(rows)


def switch_change(run, switch_step: int | None) -> float:
    """The validation loss at the first validation after a kd-then-tf run's switch to the LM loss
    minus at the last one before it (nats; positive: the switch lost ground); NaN for a run that
    never switches or has no validation on both sides."""
    if switch_step is None:
        return math.nan
    points = [(e["step"], e["val_loss"]) for e in run.metrics() if "val_loss" in e]
    before = [v for step, v in points if step <= switch_step]
    after = [v for step, v in points if step > switch_step]
    return after[0] - before[-1] if before and after else math.nan


def kd_then_tf_section(study) -> tuple[str, "pd.DataFrame | None"]:
    """Notebook 02's H3 section: saves the per-run table and the curves against tokens and FLOPs
    (`02_kd_then_tf`) and returns what to show: a reading, and the table's means over seeds (None,
    with the reason as the reading, where the profile has no kd-then-tf run or a study in parts has
    not recorded them)."""
    try:
        runs, table = kd_then_tf_comparison(study)
    except MissingRecord as missing:
        return f"Not recorded yet ({missing.what}).", None
    if not runs:
        return f"Profile {study.cfg.name} trains no `kd-then-tf` run.", None
    from distill_lib import plots
    from distill_lib.outputs import curves

    study.save_table(table, "02_kd_then_tf")
    study.save_figure(plots.curve_panels([curves(runs)], ["tokens", "flops"], order=list(runs)), "02_kd_then_tf")
    return ("Mean ± 95% t-interval over seeds. KD share: the fraction of the tokens distilled; FLOPs / TF's: the "
            "run's training FLOPs over TF's at the same seed, the teacher's forward included while it distils. Switch: "
            "the validation loss at the first validation after the switch to the LM loss minus at the last one "
            "before it (positive: the run lost ground when the teacher left)."), \
        plots.summary_table(table, "method", list(table.columns[2:]))


def _h3(study, add, switched: list[str]):
    """The KD share chosen on validation (at TF's total FLOPs) on the first seed all shares have, when
    there are several; the verdict reads the other seeds. Against TF at equal FLOPs (superiority: the
    teacher's forward is the price) and against KD at equal tokens (non-inferiority: the head start
    kept)."""
    kd, tf = matched_baselines(study, switched[0])
    for other in switched[1:]:
        if matched_baselines(study, other) != (kd, tf):
            raise MissingRecord(f"{other} and {switched[0]} differ in training settings",
                                "kd-then-tf runs that differ only in their KD share")
    tf_flops = _recorded(study, tf, study.seeds(tf), lambda run, s: run.training["flops"])
    shared = sorted(set(tf_flops).intersection(*(study.seeds(m) for m in switched)))
    # several shares: chosen on the first seed they share, so the verdict has the others to read
    first = shared[:1] if len(switched) > 1 else shared
    choice = _lowest_on_shared_seeds(
        {m: _recorded(study, m, first, lambda run, s: _at_flops(run, tf_flops[s])) for m in switched},
        "kd-then-tf")
    method = choice.method
    choice_seeds = choice.seeds if len(choice.scores) > 1 else []
    seeds = [s for s in study.seeds(method) if s in study.seeds(tf) and s in study.seeds(kd) and s not in choice_seeds]
    if not seeds:
        raise MissingRecord(f"{method}, {kd} and {tf} share no seed that the choice did not read",
                            f"a seed of {method}, {kd} and {tf} beyond the choice's")
    runs = {m: {s: study.student(m, seed=s) for s in seeds} for m in (method, kd, tf)}
    share = study.run_config(method, seed=0).train.kd_fraction
    chose = ("" if not choice_seeds else f"; {method} chosen on validation ppl at TF's FLOPs among "
             + ", ".join(f"{m} {v:.4g}" for m, v in sorted(choice.scores.items(), key=lambda kv: kv[1]))
             + f" ({choice.on_seeds})")
    at_flops = [_at_flops(runs[method][s], runs[tf][s].training["flops"]) for s in seeds]
    tf_val = [final_val_ppl(runs[tf][s]) for s in seeds]
    add("H3", "superiority: the interval of log val ppl(TF) - log val ppl(KD then TF, read at TF's total FLOPs) lies "
              "above 0", f"KD for {share:.0%} of tokens; val ppl at TF's total FLOPs: "
        + _ppls(at_flops, tf_val, method, tf) + chose,
        ClaimTest(SUPERIORITY, log_ratios(tf_val, at_flops)), "log of TF's val ppl over KD-then-TF's",
        verdict_seeds=seeds, comparison="vs TF, equal FLOPs", choice_seeds=choice_seeds)
    ppl = lambda run: study.headline(run)["ppl"]  # noqa: E731
    switched_ppl, kd_ppl = [ppl(runs[method][s]) for s in seeds], [ppl(runs[kd][s]) for s in seeds]
    add("H3", f"non-inferiority: the interval of log ppl(KD) - log ppl(KD then TF) lies above -{MARGIN_NATS} nats "
              "(test ppl at the end, equal tokens)", f"KD for {share:.0%} of tokens; test ppl: "
        + _ppls(switched_ppl, kd_ppl, method, kd) + chose,
        ClaimTest(NON_INFERIORITY, log_ratios(kd_ppl, switched_ppl), MARGIN_NATS), "log of KD's test ppl over KD-then-TF's",
        verdict_seeds=seeds, comparison="vs KD, equal tokens", choice_seeds=choice_seeds)


__all__ = ["FINDINGS", "HYPOTHESIS_VERDICTS", "findings", "kd_then_tf_comparison", "kd_then_tf_runs",
           "lora_variants", "matched_baselines"]
