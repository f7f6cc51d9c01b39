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


def charge_extra_flops(study, df: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Curves (`outputs.curves`, labelled by `cfg.label`) with what each of `methods` spends before
    its first step (a teacher correction, a logit cache: `Study.extra_flops`) added to its FLOPs, so
    that against compute its curve starts late. In place; returns `df`."""
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
    headline evaluation and `extra(run)`: the table every comparison of methods starts from."""
    return headline_table([{by: label, "seed": run.config.train.seed, **study.headline(run), **(extra(run) if extra else {})}
                           for label, group in runs.items() for run in group], tasks_in_percent)


def wall_clock(cfg, run) -> dict:
    """A run's wall-clock as a table column, where the profile's runs were timed alike
    (`timings_comparable`); elsewhere it is no cost, and no column."""
    return {"wall-clock s": run.summary["summary"]["wall_seconds"]} if cfg.timings_comparable else {}


# --- which layers to remove (notebooks 01 and 08) ------------------------------------------------
def same_layers(kept: dict[str, Sequence[int]]) -> list[list[str]]:
    """Groups of truncations that keep the same layers: their students are the same model."""
    same = {}
    for s, layers in kept.items():
        same.setdefault(tuple(layers), []).append(s)
    return [g for g in same.values() if len(g) > 1]


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
def healing_runs(study, healers: Sequence[str]) -> dict[str, list]:
    """Healing method -> its runs on `healing_strategy`: `full` (TF, on every seed a healing method
    has) and each of `healers` (variants with `healing`), under its method's name."""
    cfg, on = study.cfg, study.cfg.healing_strategy
    seeds = sorted({s for m in healers for s in study.seeds(m)})
    return {"full": [study.student("tf", strategy=on, seed=s) for s in seeds],
            **{cfg.variants[m]["healing"]["method"]: seed_runs(study, m, strategy=on) for m in healers}}


def mean_training_flops(groups: dict[str, list]) -> pd.Series:
    """Label -> the mean training FLOPs of its runs: the cheapest is where healing methods are compared."""
    return pd.Series({label: np.mean([r.summary["summary"]["flops"] for r in runs]) for label, runs in groups.items()})


def healing_table(study, groups: dict[str, list], at_flops: float) -> pd.DataFrame:
    """One row per healing run: what it trains (parameters, optimizer state), its speed and compute,
    its validation perplexity at `at_flops` (NaN beyond its curve) and its test perplexity at the end."""
    rows = []
    for label, runs in groups.items():
        for r in runs:
            summary = r.summary["summary"]
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
