"""What the study's notebooks read from records, written once, so that every notebook is a question,
a call here (or a figure of `distill_lib.plots`), a figure or table, and its reading.

- **Curves.** One interpolation rule (`interpolate`): linear, NaN outside the measured curve (a
  reading beyond a run's last evaluation would be a guess). `val_ppl_at_flops` and
  `final_val_ppl` read a run's validation curve with it; the claims (`distill_lib.claims`) read the
  same functions.
- **Per-seed tables.** One row per run: its label, its seed, its headline evaluation (test
  perplexity, bits per byte, the zero-shot suite; accuracies in percent) and what else a notebook
  asks of the run; `plots.summary_table` turns it into mean ± 95% interval.
- **A notebook's own tables** (Table 6, the healing methods, the budget sweep, costs): built here
  from runs, so that the notebook shows and reads them.

Functions take a `Study` (`distill_lib.study`) and its recorded runs; none of them trains or draws.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd


# --- curves ----------------------------------------------------------------------------------------
def interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """The curve (xs increasing) read at `x`, linearly between its points; NaN outside [xs[0],
    xs[-1]]: the study never extends a curve beyond what was measured."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(xs) == 0 or not xs.min() <= x <= xs.max():
        return math.nan
    return float(np.interp(x, xs, ys))


def val_ppl_at_flops(run, flops: float) -> float:
    """`run`'s validation perplexity when it had spent `flops` training FLOPs, interpolated linearly
    in loss (the unit the curve is smooth in); NaN outside its curve. Compute spent before the run
    (a teacher correction, a logit cache) is the caller's to subtract."""
    points = [(m["flops"], m["val_loss"]) for m in run.metrics() if "val_loss" in m]
    return math.exp(interpolate([p[0] for p in points], [p[1] for p in points], flops))


def final_val_ppl(run) -> float:
    """Validation perplexity at a run's last evaluation (what a choice made on validation reads)."""
    return [m for m in run.metrics() if "val_loss" in m][-1]["val_ppl"]


def median_tokens_per_s(run) -> float:
    """The median over a run's logged steps: robust to the first steps' warm-up and to pauses."""
    return float(np.median([m["tokens_per_s"] for m in run.metrics()]))


def seed_runs(study, method: str, strategy: str | None = None) -> list:
    """The recorded runs of `method` (or variant), one per seed the profile trains it with."""
    return [study.student(method, strategy=strategy, seed=s) for s in study.seeds(method)]


def method_runs(study, methods: Sequence[str]) -> dict[str, list]:
    """Display label -> runs of every seed, for those of `methods` the profile trains."""
    return {study.cfg.label(m): seed_runs(study, m) for m in methods if m in study.cfg.methods}


def charged_curves(study, runs: dict[str, list], methods: Sequence[str]) -> pd.DataFrame:
    """Validation curves of `runs` (labels as `cfg.label` spells them), what each of `methods`
    spends before its first step (a teacher correction, a logit cache: `Study.extra_flops`) added to
    its FLOPs, so that against compute its curve starts late."""
    from distill_lib.outputs import curves

    df = curves(runs)
    for m in methods:
        if m in study.cfg.methods:
            df.loc[df.method == study.cfg.label(m), "flops"] += study.extra_flops(m)
    return df


def last_evaluations(df: pd.DataFrame) -> pd.DataFrame:
    """Each label's mean over seeds of its runs' last evaluation (curves as `outputs.curves` gives
    them): where each method ends at equal tokens."""
    ends = df.sort_values("step").groupby(["method", "seed"]).last()
    return ends.groupby("method", sort=False).mean(numeric_only=True)


# --- per-seed tables -------------------------------------------------------------------------------
def accuracy_columns(table: pd.DataFrame, tasks: bool = True) -> list[str]:
    """The accuracy columns of a headline table: the suite's average, and with `tasks` each task's."""
    return [c for c in table.columns if c == "avg_acc" or (tasks and "/acc" in c)]


def headline_table(rows: Sequence[dict], tasks_in_percent: bool = False) -> pd.DataFrame:
    """Rows of headline scores as a table: the average accuracy in percent, as in every table of the
    study (with `tasks_in_percent`, each task's accuracy too), its standard error left out (the
    seeds' interval is the study's)."""
    table = pd.DataFrame(rows).drop(columns=["avg_acc_stderr"], errors="ignore")
    accuracy = accuracy_columns(table, tasks=tasks_in_percent)
    table[accuracy] = table[accuracy] * 100
    return table


def per_seed_table(study, runs: dict[str, list], by: str = "method", extra: Callable[[object], dict] | None = None,
                   tasks_in_percent: bool = False) -> pd.DataFrame:
    """One row per run of `runs` (label -> runs): the label (column `by`), the seed, the run's
    headline evaluation and `extra(run)`: the table every comparison of methods starts from.
    `tasks_in_percent`: notebook 02's tables show each task's accuracy in percent too."""
    return headline_table([{by: label, "seed": run.config.train.seed, **study.headline(run),
                            **(extra(run) if extra else {})} for label, group in runs.items() for run in group],
                          tasks_in_percent)


def wall_clock(cfg, run) -> dict:
    """A run's wall-clock as a table column, where the profile's runs were timed alike
    (`timings_comparable`); elsewhere it is no cost, and no column."""
    return {"wall-clock s": run.training["wall_seconds"]} if cfg.timings_comparable else {}


# --- which layers to remove (notebooks 01 and 08) ------------------------------------------------
def same_layers(kept: dict[str, Sequence[int]]) -> list[list[str]]:
    """Groups of truncations that keep the same layers: their students are the same model."""
    same = {}
    for s, layers in kept.items():
        same.setdefault(tuple(layers), []).append(s)
    return [g for g in same.values() if len(g) > 1]


def configurations_at_both_rates(study, strategies: Sequence[str], seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """C4's view at the base learning rate and at the tuned one (`tuned` in the profile), side by side:
    per configuration (or selector), the mean test ppl over its recorded seeds of `seeds` (default
    `config_seeds`; notebook 08 gives `selector_seeds`) and how many, and the difference of the means
    in nats. A configuration not recorded at a rate yet reads NaN and 0 seeds (a study in parts);
    empty for a profile without `tuned`."""
    from distill_lib.records import MissingRecord
    from distill_lib.tuned import AtTunedRate, rate_label

    if not study.cfg.tuned:
        return pd.DataFrame()
    base, tuned = rate_label(study.cfg, False), rate_label(study.cfg, True)
    rows = []
    for strategy in strategies:
        row = {"configuration": strategy}
        for view, rate in ((study, base), (AtTunedRate(study), tuned)):
            ppls = []
            for seed in study.config_seeds() if seeds is None else seeds:
                try:
                    ppls.append(study.headline(view.student("tf", strategy=strategy, seed=seed))["ppl"])
                except MissingRecord:
                    continue
            row[f"test ppl, {rate}"] = float(np.mean(ppls)) if ppls else math.nan
            row[f"seeds, {rate}"] = len(ppls)
        row["tuned - base (nats)"] = float(np.log(row[f"test ppl, {tuned}"] / row[f"test ppl, {base}"]))
        rows.append(row)
    return pd.DataFrame(rows)


def configurations_table(study, trained: dict[str, list], truncated: dict[str, dict], influence: Sequence[float]):
    """One row per truncation configuration (`trained`: configuration -> its TF runs): the layers it
    keeps, the block influence of those it removes, test perplexity right after truncation and after
    continued pretraining, and the average accuracy (mean and 95% half-width over seeds): Table 6."""
    from distill_lib.stats import mean_ci

    rows = []
    for s, runs in trained.items():
        after = [study.headline(run) for run in runs]
        ppl_m, ppl_h = mean_ci([a["ppl"] for a in after])
        acc_m, acc_h = mean_ci([100 * a.get("avg_acc", float("nan")) for a in after])
        kept = truncated[s]["kept"]
        rows.append({"configuration": s, "kept layers": " ".join(map(str, kept)),
                     "removed block influence": sum(influence[i] for i in range(len(influence)) if i not in kept),
                     "ppl right after truncation": truncated[s]["ppl_after_truncation"],
                     "ppl": ppl_m, "ppl_ci95": ppl_h, "avg acc %": acc_m, "avg_acc_ci95": acc_h, "seeds": len(after)})
    return pd.DataFrame(rows)


def recovery_curves(trained: dict[str, list], truncated: dict[str, dict]) -> pd.DataFrame:
    """Validation perplexity of each configuration's runs from step 0 (right after truncation, on
    the loop's validation blocks) to the end of continued pretraining."""
    from distill_lib.outputs import curves

    start = pd.DataFrame([{"method": s, "seed": r.config.train.seed, "step": 0, "tokens": 0,
                           "val_ppl": truncated[s]["val_ppl_at_step_0"]} for s, runs in trained.items() for r in runs])
    df = curves(trained)[["method", "seed", "step", "tokens", "val_ppl"]]
    return pd.concat([start, df], ignore_index=True).rename(columns={"method": "configuration"})


def healed_table(study, truncations: dict[str, dict], selectors: Sequence[str]) -> pd.DataFrame:
    """One row per truncation and seed of `selector_seeds` (`truncations`: name -> its kept layers
    and perplexity right after truncation): that perplexity next to the test perplexity and average
    accuracy after healing by TF, selectors told from the paper's configurations (H1)."""
    rows = []
    for s, truncated in truncations.items():
        for seed in study.selector_seeds():
            after = study.headline(study.student("tf", strategy=s, seed=seed))
            rows.append({"selection": s, "seed": seed, "kind": "selector" if s in selectors else "paper configuration",
                         "kept layers": " ".join(map(str, truncated["kept"])),
                         "ppl right after truncation": truncated["ppl_after_truncation"],
                         "test ppl after healing": after["ppl"], "avg acc % after healing": 100 * after.get("avg_acc", np.nan)})
    return pd.DataFrame(rows)


# --- how to heal (notebook 08) --------------------------------------------------------------------
def healing_labels(cfg, healers: Sequence[str], full: str = "tf") -> dict[str, str]:
    """Label -> method of notebook 08's healing runs: "full" for `full` (TF, or its variant at another
    rate), each healer under its healing method's name with its learning rate where it differs from
    full's ("lora, lr 0.0003"); a healer whose label another already has keeps its variant name."""
    labels = {"full": full}
    for m in healers:
        name = cfg.variants[m]["healing"]["method"]
        label = name if cfg.lr_of(m) == cfg.lr_of(full) else f"{name}, lr {cfg.lr_of(m):g}"
        labels[m if label in labels else label] = m
    return labels


def healing_runs(study, healers: Sequence[str], full: str = "tf") -> dict[str, list]:
    """`healing_labels` -> the runs on `healing_strategy`: each healer's recorded seeds, and full's at
    every seed a healer has (so that each healer meets full at its own seeds)."""
    on = study.cfg.healing_strategy
    seeds = sorted({s for m in healers for s in study.seeds(m)})
    return {label: [study.student(m, strategy=on, seed=s) for s in seeds] if m == full else seed_runs(study, m, strategy=on)
            for label, m in healing_labels(study.cfg, healers, full).items()}


def healers_by_rate(cfg) -> dict[str, tuple[str, list[str]]]:
    """Rate -> (full continued pretraining there, the healers notebook 08 compares with it). At the
    base rate: the healers at that rate calibrated where TF is. At the tuned rate (where `tuned` has
    TF's variant and it is recorded): the healers calibrated where that variant is, at that rate or at
    the base rate (LoRA's rate check, H2, needs the base rate on the tuned rate's truncation). Any
    other healer is in neither: another rate, or a truncation full continued pretraining did not heal."""
    from distill_lib.tuned import rate_label

    healers = [m for m in cfg.methods if cfg.variants.get(m, {}).get("healing")]
    base = [m for m in healers if cfg.lr_of(m) == cfg.lr_of("tf") and cfg.calibration_split_of(m) == cfg.calibration_split_of("tf")]
    sections = {rate_label(cfg, False): ("tf", base)} if base else {}
    full = cfg.tuned.get("tf")
    tuned = [m for m in healers if m not in base and cfg.calibration_split_of(m) == cfg.calibration_split_of(full)
             and cfg.lr_of(m) in (cfg.lr_of("tf"), cfg.lr_of(full))]
    if full in cfg.methods and tuned:
        sections[rate_label(cfg, True)] = (full, tuned)
    return sections


def healing_reading(healing: pd.DataFrame, at_flops: float, strategy: str) -> str:
    """Notebook 08's reading of one healing table: the lowest validation ppl at the cheapest method's
    FLOPs (means over seeds), and which methods ended at equal tokens."""
    from matplotlib.ticker import EngFormatter

    from distill_lib.stats import format_value

    means = healing.groupby("healing", sort=False).mean(numeric_only=True)
    at = means["val ppl at equal FLOPs"]
    best = at.idxmin() if at.notna().any() else None
    tokens = means["tokens"]
    more = [f"{label} {tokens[label]:,.0f} ({tokens[label] / tokens['full'] - 1:+.0%})" for label in tokens.index
            if tokens[label] != tokens["full"]]
    same = [label for label in tokens.index if tokens[label] == tokens["full"]]
    seen = (f" Test perplexity at the end: {', '.join(same)} at equal tokens ({tokens['full']:,.0f})"
            + (f"; not at equal tokens: {', '.join(more)}." if more else "."))
    cheapest = EngFormatter(unit="FLOPs", places=2, sep=" ")(at_flops)
    return (f"Healing on `{strategy}`; at the cheapest method's {cheapest} the lowest validation perplexity is "
            f"{best}'s ({', '.join(f'{label} {format_value(v)}' for label, v in at.items())}; means over seeds)."
            if best else f"Healing on `{strategy}`.") + seen


def mean_training_flops(groups: dict[str, list]) -> pd.Series:
    """Label -> the mean training FLOPs of its runs: the cheapest is where healing methods are compared."""
    return pd.Series({label: np.mean([r.training["flops"] for r in runs]) for label, runs in groups.items()})


def healing_table(study, groups: dict[str, list], at_flops: float) -> pd.DataFrame:
    """One row per healing run: what it trains (parameters, optimizer state), its speed and compute,
    its validation perplexity at `at_flops` (NaN beyond its curve) and its test perplexity at the end."""
    rows = []
    for label, runs in groups.items():
        for r in runs:
            summary = r.training
            rows.append({"healing": label, "seed": r.config.train.seed,
                         "trainable parameters": summary.get("trainable_parameters", np.nan),
                         "optimizer state MiB": summary.get("optimizer_state_bytes", np.nan) / 2**20,
                         "tokens/s": summary.get("tokens_per_s", np.nan), "tokens": summary["tokens"],
                         "TFLOPs": summary["flops"] / 1e12, "val ppl at equal FLOPs": val_ppl_at_flops(r, at_flops),
                         "test ppl at the end": study.headline(r)["ppl"]})
    return pd.DataFrame(rows)


# --- pruned against from scratch (C6) ------------------------------------------------------------
def gap_over_tokens(df: pd.DataFrame, pruned: str, scratch: str) -> pd.DataFrame:
    """Mean validation perplexity of the two curves (labels `pruned`, `scratch`) at each number of
    tokens, the gap between them and the gap relative to the pruned model: C6 asks it to close."""
    gap = df.pivot_table(index="tokens", columns="method", values="val_ppl", aggfunc="mean").reset_index()
    gap["gap (scratch − pruned)"] = gap[scratch] - gap[pruned]
    gap["gap / pruned"] = gap["gap (scratch − pruned)"] / gap[pruned]
    return gap


def budget_pairs(study, a: str, b: str) -> list[tuple[float, str, str, list[int]]]:
    """(budget, a's variant, b's variant, the seeds both have) for each budget at which the profile
    trains variants of `a` and of `b` that change the token budget and nothing else, so that the two
    stay comparable at a longer budget; budgets without a shared seed are left out."""
    cfg = study.cfg

    def budget_only(m, base):
        v = cfg.variants.get(m, {})
        return v.get("method") == base and set(v) == {"method", "budget"}

    found = {}
    for m in cfg.methods:
        if budget_only(m, b):
            pair = next((t for t in cfg.methods if budget_only(t, a) and cfg.budget_of(t) == cfg.budget_of(m)), None)
            if pair:
                found[cfg.budget_of(m)] = (pair, m)
    pairs = [(budget, a_m, b_m, [s for s in study.seeds(b_m) if s in study.seeds(a_m)])
             for budget, (a_m, b_m) in sorted(found.items())]
    return [pair for pair in pairs if pair[3]]


def gap_by_budget(curves: pd.DataFrame, model_of: dict[str, str]) -> pd.DataFrame:
    """The final validation perplexity of the pruned model and of the one from scratch at each
    budget (`curves` with a `budget` column; `model_of`: curve label -> 'pruned' or 'scratch'),
    means over seeds, and the gap between them."""
    ends = curves.sort_values("tokens").groupby(["budget", "method", "seed"]).tail(1)
    ends = ends.assign(model=ends.method.map(model_of))
    table = ends.pivot_table(index="budget", columns="model", values="val_ppl", aggfunc="mean")
    table["tokens"] = ends.groupby("budget").tokens.max()
    table["seeds"] = ends[ends.model == "scratch"].groupby("budget").seed.nunique()
    table["gap (scratch − pruned)"] = table["scratch"] - table["pruned"]
    table["gap / pruned"] = table["gap (scratch − pruned)"] / table["pruned"]
    table = table.reset_index().rename(columns={"pruned": "pruned val ppl", "scratch": "from scratch val ppl"})
    return table[["budget", "tokens", "seeds", "pruned val ppl", "from scratch val ppl", "gap (scratch − pruned)",
                  "gap / pruned"]]


# --- teacher-free against KD (notebook 02) -----------------------------------------------------------
#: Offline KD's one-off cost outside its FLOPs: the teacher cache on disk and its build time.
CACHE_COLUMNS = ("teacher cache MiB", "cache build s")


def teacher_cache_cost(run) -> dict:
    """A run's teacher cache (offline KD) as table columns: its size and build time, NaN without one."""
    cache = run.training.get("teacher_cache")
    return dict(zip(CACHE_COLUMNS, (cache["bytes"] / 2**20, cache["build_seconds"]) if cache else (np.nan, np.nan)))


def variants_table(study, candidates: Sequence[str], tf_flops: float) -> pd.DataFrame:
    """One row per seed of every TF and KD variant C2 chooses from (`candidates`): validation ppl at
    TF's total FLOPs (what a variant spends before its first step charged to it; NaN where its curve
    ends before), at its end, test ppl, FLOPs against TF's; the cache columns where a run has one."""
    rows = []
    for m in candidates:
        extra = study.extra_flops(m)  # a teacher correction or a logit cache, charged to the variant
        for r in seed_runs(study, m):
            rows.append({"variant": study.cfg.label(m), "seed": r.config.train.seed,
                         "val ppl at TF's FLOPs": val_ppl_at_flops(r, tf_flops - extra),
                         "val ppl at the end": final_val_ppl(r), "test ppl": study.headline(r)["ppl"],
                         "FLOPs vs TF": (r.training["flops"] + extra) / tf_flops, **teacher_cache_cost(r)})
    variants = pd.DataFrame(rows)
    return variants.drop(columns=[c for c in CACHE_COLUMNS if variants[c].isna().all()])


def budget_line(cfg, m: str) -> str:
    """A method or variant without its budget (its whole definition otherwise): the line of the
    budget sweep a budget point belongs to."""
    import json

    v = {k: x for k, x in cfg.variants.get(m, {"method": m}).items() if k != "budget"}
    return json.dumps({"train": {}, "teacher_correction_steps": 0, "healing": None, **v}, sort_keys=True)


def sweep_runs(study) -> tuple[pd.DataFrame, dict]:
    """TF's and KD's lines of budget points (variants with a `budget`; from scratch at a longer
    budget is notebook 04's): one row per point and seed (line, base method, budget, learning rate,
    tokens, FLOPs with what the variant spends before its first step, test ppl), and (line, budget)
    -> the variant, to read its runs again. Empty where the profile sweeps no budget."""
    cfg = study.cfg
    swept = {budget_line(cfg, m) for m in cfg.methods if cfg.budget_of(m) != 1 and cfg.base_method(m) in ("tf", "kd")}
    rows, members = [], {}
    for m in (m for m in cfg.methods if budget_line(cfg, m) in swept):
        # the line is named after its 1x member; without one, after this point's name less its budget
        name = next((x for x in cfg.methods if budget_line(cfg, x) == budget_line(cfg, m) and cfg.budget_of(x) == 1), None)
        line = cfg.label(name) if name else cfg.label(m, with_budget=False)
        members[(line, cfg.budget_of(m))] = m
        for r in seed_runs(study, m):
            rows.append({"line": line, "base": cfg.base_method(m), "budget": cfg.budget_of(m), "seed": r.config.train.seed,
                         "lr": r.config.train.lr, "tokens": r.training["tokens"],
                         "flops": r.training["flops"] + study.extra_flops(m), "test ppl": study.headline(r)["ppl"]})
    return pd.DataFrame(rows), members


def budget_sweep(study) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The budget sweep as notebook 02 shows it: its runs (`sweep_runs`), its points (`sweep_points`)
    and KD minus TF at each budget by both equal-FLOPs estimators (`sweep_differences`,
    `with_mid_run`); three empty tables where the profile sweeps no budget."""
    sweep, members = sweep_runs(study)
    if not len(sweep):
        return sweep, sweep, sweep
    points = sweep_points(sweep)
    return sweep, points, with_mid_run(study, sweep_differences(points), members)


def sweep_points(sweep: pd.DataFrame) -> pd.DataFrame:
    """The budget sweep's points: means over each point's seeds, and how many."""
    return sweep.groupby(["line", "base", "lr", "budget"], sort=False).agg(
        tokens=("tokens", "mean"), flops=("flops", "mean"), **{"test ppl": ("test ppl", "mean")},
        seeds=("seed", "count")).reset_index()


def sweep_differences(points: pd.DataFrame) -> pd.DataFrame:
    """The budget sweep read as C2 reads one budget: for every TF line and KD line (`points`: one row
    per line and budget, columns line, base ('tf' / 'kd'), budget, flops, test ppl) and every budget
    both have, KD's test ppl minus TF's at equal tokens, and at equal FLOPs: KD's line interpolated
    (log ppl against log FLOPs, between its own budget points, never beyond) at TF's FLOPs; in nats
    (log of the ppl ratio: the primary unit) and in ppl. Positive = TF ahead, the paper's direction. Points are means over their own seeds (a `seeds` column in
    `points` is shown with each difference): unpaired where the seed sets differ. With an `lr`
    column, a TF line meets only the KD lines at its learning rate (a tuned KD against an untuned
    TF, or the reverse, is not a comparison)."""
    rows = []
    for tf_line in points[points.base == "tf"].line.unique():
        tf = points[points.line == tf_line].set_index("budget")
        for kd_line in points[points.base == "kd"].line.unique():
            kd = points[points.line == kd_line].sort_values("flops").set_index("budget")
            if "lr" in points and set(tf.lr) != set(kd.lr):
                continue
            for budget in sorted(set(tf.index) & set(kd.index)):
                at = np.exp(interpolate(np.log(kd.flops), np.log(kd["test ppl"]), np.log(tf.flops[budget])))
                row = {"TF line": tf_line, "KD line": kd_line, "budget": budget,
                       "KD - TF, equal tokens (nats)": float(np.log(kd["test ppl"][budget] / tf["test ppl"][budget])),
                       "KD - TF, equal FLOPs (nats)": float(np.log(at / tf["test ppl"][budget])),
                       "KD - TF, equal tokens (ppl)": float(kd["test ppl"][budget] - tf["test ppl"][budget]),
                       "KD - TF, equal FLOPs (ppl)": float(at - tf["test ppl"][budget])}
                if "seeds" in points:  # each point is a mean over its own seeds: how many, side by side
                    row["seeds TF / KD"] = f"{tf.seeds[budget]} / {kd.seeds[budget]}"
                rows.append(row)
    return pd.DataFrame(rows)


def mid_run_difference(study, tf_m: str, kd_m: str) -> dict:
    """C2's estimator at one budget: KD's validation ppl read on its own run's curve at TF's total
    FLOPs (what KD spends before its first step counted), minus TF's final validation ppl, paired
    over the seeds both have; in nats (mean log ratio, with its 95% t half-interval over the pairs:
    empty below two) and in ppl."""
    from distill_lib.stats import mean_ci

    pairs = []
    for seed in (s for s in study.seeds(tf_m) if s in study.seeds(kd_m)):
        tf_run, kd_run = study.student(tf_m, seed=seed), study.student(kd_m, seed=seed)
        flops = tf_run.training["flops"] + study.extra_flops(tf_m) - study.extra_flops(kd_m)
        pairs.append((val_ppl_at_flops(kd_run, flops), final_val_ppl(tf_run)))
    nats, half = mean_ci([np.log(k / t) for k, t in pairs])
    return {"KD - TF, equal FLOPs, mid-run (nats)": nats,
            "± 95% CI, mid-run (nats)": float("nan") if half is None else half,
            "KD - TF, equal FLOPs, mid-run (ppl)": float(np.mean([k - t for k, t in pairs])),
            "paired seeds, mid-run": len(pairs)}


def with_mid_run(study, differences: pd.DataFrame, members: dict) -> pd.DataFrame:
    """`sweep_differences` with C2's mid-run estimator beside it at each budget."""
    if not len(differences):
        return differences
    mid = [mid_run_difference(study, members[(row["TF line"], row["budget"])], members[(row["KD line"], row["budget"])])
           for _, row in differences.iterrows()]
    return pd.concat([differences, pd.DataFrame(mid)], axis=1)


#: What the two equal-FLOPs estimators of the budget sweep read (`sweep_differences`, `with_mid_run`).
SWEEP_ESTIMATORS = (
    "KD minus TF at each budget (positive: TF ahead). At equal tokens: test perplexity of the finished runs. "
    "At equal FLOPs, two estimators of the same pair, side by side: **finished runs** (`KD - TF, equal "
    "FLOPs`, from the sweep): test perplexity of runs that ended at their budget, KD's line (means over its seeds, log "
    "perplexity against log FLOPs) interpolated at TF's FLOPs between KD's own budget points, unpaired "
    "(empty where KD has no point that low or that high); **mid-run** (`KD - TF, equal FLOPs, mid-run`: C2's "
    "reading in notebook 99): "
    "KD's *validation* perplexity read on its own run's curve at TF's total FLOPs, before its "
    "learning-rate schedule has finished, minus TF's final validation perplexity, paired over seeds (its "
    "95% t-interval beside it, no test: the sweep is read for its trend, C2's verdict is at 1x). "
    "The two read different splits (the test split; the validation blocks the training loop reads) and "
    "different runs, so their numbers differ; nats = log of the perplexity ratio.")


def cost_table(study, runs: dict[str, list]) -> pd.DataFrame:
    """Per method (label -> runs), means over seeds: analytic FLOPs per token and, where the profile's
    runs were timed alike, median tokens/s and wall-clock; each against TF's."""
    cfg, tf = study.cfg, study.cfg.label("tf")
    cost = pd.DataFrame([{"method": m, "seed": r.config.train.seed,
                          "FLOPs per token": r.training["flops_per_token"]["total"],
                          "tokens/s": median_tokens_per_s(r), "wall-clock s": r.training["wall_seconds"]}
                         for m, group in runs.items() for r in group])
    cost = cost.groupby("method", sort=False).mean(numeric_only=True).drop(columns="seed")
    cost["FLOPs ratio vs TF"] = cost["FLOPs per token"] / cost.loc[tf, "FLOPs per token"]
    cost["time ratio vs TF"] = cost.loc[tf, "tokens/s"] / cost["tokens/s"]
    if not cfg.timings_comparable:  # the runs' own timings are no cost here (the side-by-side timing is)
        cost = cost.drop(columns=["tokens/s", "wall-clock s", "time ratio vs TF"])
    return cost.reset_index()


def kd_cost_reading(cost: pd.DataFrame, kd_label: str) -> str:
    """The sentence under the cost table: KD's FLOPs (and, where timed alike, time) per token against
    TF's, beside the paper's; empty without a KD row."""
    if kd_label not in set(cost.method):
        return ""
    kd = cost.set_index("method").loc[kd_label]
    timed = f"{kd['time ratio vs TF']:.2f}x TF's time per token on this machine and " if "time ratio vs TF" in kd else ""
    return (f"KD costs {timed}{kd['FLOPs ratio vs TF']:.2f}x TF's FLOPs per token (paper: ~1.5x; 1.67x for "
            "a teacher twice the student's size).")


def step_rates_table(study) -> pd.DataFrame | None:
    """Tokens/s of TF, KD and width pruning timed side by side, per round, and each one's mean time
    per token against TF's (C3, C7); None where the profile's runs were timed alike (their own
    timings are the cost). MissingRecord where it is not recorded yet."""
    rates = study.step_rates() if not study.cfg.timings_comparable else None
    if not rates:
        return None
    rates = {m: rates[m] for m in ("tf", "kd", "width") if m in rates}  # the record keeps its keys sorted
    timing = pd.DataFrame({"method": [study.cfg.label(m) for m in rates],
                           **{f"tokens/s, round {i + 1}": [v[i] for v in rates.values()] for i in range(len(rates["tf"]))}})
    timing["time per token vs TF (mean)"] = [float(np.mean(study.time_ratios(m)[0])) for m in rates]
    return timing


def memory_plan(cards_gib: Sequence[float]) -> pd.DataFrame:
    """Whether TF and KD fit on each card for the paper's model sizes, halved (`flops.plan_memory`:
    bf16 mixed precision, AdamW, batch 4 x 2048 tokens, flash attention, no sharding)."""
    from distill_lib.flops import PAPER_MODELS, halved, plan_memory

    plan = pd.DataFrame([row for shape in PAPER_MODELS.values() for card in cards_gib
                         for row in plan_memory(shape, halved(shape), batch=4, seq_len=2048, card_gib=card)])
    return plan[["teacher", "student", "method", "card_gib", "student_state_gib", "activations_gib",
                 "teacher_extra_gib", "total_gib", "fits"]]
