# %% [markdown]
# # 02 · Teacher-free continued pretraining vs vanilla knowledge distillation (v1 headline)
#
# The same truncated student (`strategy` of the profile) is trained for the same number of tokens
# with the plain LM loss (teacher-free, TF), with vanilla KD (teacher in memory, KL on logits), with
# offline KD (top-k teacher logits stored once, teacher never in memory), and — for claim C1 — the
# same architecture from a random initialisation. Curves are plotted against tokens, analytic FLOPs
# and wall-clock. Claims: C1 truncated init beats random init; C2 TF ≥ KD at equal compute; C3 KD
# costs ~1.5x per token.

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
import json

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import plots
from distill_lib.flops import PAPER_MODELS, halved, plan_memory
from distill_lib.plots import format_value
from distill_lib.records import MissingRecord
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
runs = {cfg.label(m): [study.student(m, seed=s) for s in study.seeds(m)]
        for m in ("tf", "kd", "offline-kd", "random") if m in cfg.methods}

# %% [markdown]
# ## Validation perplexity against tokens, compute and wall-clock
# Mean and 95% t-interval over seeds (offline KD: one seed). Offline KD's FLOPs include building its
# logit cache (one teacher forward per cached token), so its curve starts late. Wall-clock (where
# the profile's runs were timed alike) differs between seeds, so each seed is its own line there.
# The bottom row leaves out random init, which would squeeze the others into the bottom of the axis.

# %%
df = curves(runs)
for m in ("offline-kd",):  # its logit cache's teacher forward, paid before the first step
    if m in cfg.methods:
        df.loc[df.method == cfg.label(m), "flops"] += study.extra_flops(m)
study.save_table(df, "02_curves")
xs = nb.x_axes(cfg, "tokens", "flops", "wall_seconds")
fig, axes = plt.subplots(2, len(xs), figsize=(5 * len(xs), 8), sharey="row")
for row, part in enumerate([df, df[df.method != "random init"]]):
    for ax, x in zip(axes[row], xs):
        plots.draw_curves(ax, part, x, "val_ppl", order=list(runs))
        plots.log_axis(ax)
        if x != "wall_seconds":
            plots.eng_axis(ax)
        plots.label_axes(ax, x, "val_ppl")
axes[0, 0].set_title("All methods")
axes[1, 0].set_title("Without random init")
plots.figure_legend(fig, axes)
study.save_figure(fig, "02_curves")
end = df.sort_values("step").groupby(["method", "seed"]).last().groupby("method", sort=False).mean(numeric_only=True)
display(Markdown("At the end of training (equal tokens), mean validation perplexity: " + ", ".join(
    f"{m} {format_value(end.val_ppl[m])} after {end.flops[m] / end.flops['TF']:.2f}x TF's FLOPs" for m in end.index) + "."))
nb.wall_clock_caveat(cfg)

# %% [markdown]
# ## Final evaluation: test perplexity and the zero-shot suite
# Mean ± 95% t-interval over seeds; accuracies in percent.

# %%
per_seed = pd.DataFrame([{"method": m, "seed": r.config.train.seed, **study.headline(r)}
                         for m, group in runs.items() for r in group]).drop(columns=["avg_acc_stderr"], errors="ignore")
accuracy = [c for c in per_seed.columns if "/acc" in c or c == "avg_acc"]
per_seed[accuracy] = per_seed[accuracy] * 100
study.save_table(per_seed, "02_per_seed")
summary = plots.summary_table(per_seed, "method", [c for c in per_seed.columns if c not in ("method", "seed")])
study.save_table(summary, "02_summary")
mean = per_seed.groupby("method", sort=False).ppl.mean()
text = f"At equal tokens TF reaches test perplexity {format_value(mean['TF'])}"
if "KD" in mean:
    text += f", KD {format_value(mean['KD'])}"
if "offline KD" in mean:
    text += f", offline KD {format_value(mean['offline KD'])}"
if "random init" in mean:
    text += f"; the same architecture from random weights {format_value(mean['random init'])}"
display(Markdown(text + ". The claims table (notebook 99) reads KD at TF's compute, not at its tokens."))
plots.table(summary.rename(columns={c: f"{c} %" for c in accuracy}))

# %% [markdown]
# ## The baselines' variants: every one, at equal tokens and at equal FLOPs
# TF and its learning-rate check; vanilla KD, offline KD and the profile's variants of them
# (`variants:` in the profile, e.g. logit-only KD). Claim C2 compares the best TF with the best KD
# variant, online or offline, each chosen on validation perplexity, never on test: TF at the end of
# its run, KD at TF's total FLOPs. What a variant pays before its first step is charged to it: a
# teacher correction's training, and offline KD's logit cache (one teacher forward per cached token;
# the table gives the cache's size and build time where a run recorded them), so against FLOPs
# their curves start late. Mean over each variant's seeds.

# %%
from distill_lib.analysis import val_ppl_at_flops
from distill_lib.claims import best_kd, best_tf, kd_candidates, sweep_differences, tf_candidates

candidates = [*tf_candidates(study), *kd_candidates(study)]


CACHE_COLUMNS = ("teacher cache MiB", "cache build s")


def teacher_cache_cost(run) -> dict:
    """Offline KD's one-off cost outside its FLOPs: the teacher cache on disk and its build time."""
    cache = run.summary["summary"].get("teacher_cache")
    return dict(zip(CACHE_COLUMNS, (cache["bytes"] / 2**20, cache["build_seconds"]) if cache else (np.nan, np.nan)))


if len(candidates) > 2 and kd_candidates(study, online_only=True):
    chosen_tf = best_tf(study)
    chosen = best_kd(study, tf=chosen_tf.method)
    # TF's FLOPs are analytic (per-token FLOPs x tokens): the same at every seed, also at a seed TF lacks
    tf_total = runs["TF"][0].summary["summary"]["flops"]
    rows = []
    for m in candidates:
        for seed in study.seeds(m):
            r = study.student(m, seed=seed)
            extra = study.extra_flops(m)  # a teacher correction or a logit cache, charged to the variant
            at_tf = val_ppl_at_flops(r, tf_total - extra)
            rows.append({"variant": cfg.label(m), "seed": seed, "val ppl at TF's FLOPs": at_tf,
                         "val ppl at the end": [e for e in r.metrics() if "val_ppl" in e][-1]["val_ppl"],
                         "test ppl": study.headline(r)["ppl"],
                         "FLOPs vs TF": (r.summary["summary"]["flops"] + extra) / tf_total,
                         **teacher_cache_cost(r)})
    variants = pd.DataFrame(rows)
    variants = variants.drop(columns=[c for c in CACHE_COLUMNS if variants[c].isna().all()])
    study.save_table(variants, "02_kd_variants")
    summary = plots.summary_table(variants, "variant", [c for c in variants.columns if c not in ("variant", "seed")])
    display(Markdown(f"C2 compares **{cfg.label(chosen_tf.method)}**, the TF run with the lowest validation "
                     f"perplexity at the end ({chosen_tf.on_seeds}), with **{cfg.label(chosen.method)}**, the KD "
                     f"variant with the lowest validation perplexity at TF's FLOPs ({chosen.on_seeds}). Offline KD's "
                     "FLOPs include building its logit cache (one teacher forward per cached token, before its "
                     "first step), as a teacher correction's are counted."))
    display(plots.table(summary))
    ablation = curves({cfg.label(m): [study.student(m, seed=s) for s in study.seeds(m)] for m in candidates})
    for m in candidates:  # a teacher correction's or logit cache's FLOPs come before the first step
        ablation.loc[ablation.method == cfg.label(m), "flops"] += study.extra_flops(m)
    # TF's variants in blues, KD's in oranges, offline KD's in greens; C2's two choices drawn thick
    online = kd_candidates(study, online_only=True)
    shades, styles = {}, {}
    for cmap, family in {"Blues": tf_candidates(study), "Oranges": online,
                         "Greens": [m for m in kd_candidates(study) if m not in online]}.items():
        shades.update({cfg.label(m): mpl.colormaps[cmap](0.45 + 0.5 * i / (len(family) - 1) if len(family) > 1 else 0.75)
                       for i, m in enumerate(family)})
        # neighbouring shades are hard to tell apart: each also gets the next of four line styles
        styles.update({cfg.label(m): ["-", "--", ":", "-."][i % 4] for i, m in enumerate(family)})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, x in zip(axes, ["tokens", "flops"]):
        plots.draw_curves(ax, ablation, x, "val_ppl", order=[cfg.label(m) for m in candidates], colors=shades,
                          emphasis=[cfg.label(chosen_tf.method), cfg.label(chosen.method)], styles=styles)
        plots.log_axis(ax)
        plots.eng_axis(ax)
        plots.label_axes(ax, x, "val_ppl")
    plots.figure_legend(fig, axes)
    study.save_figure(fig, "02_kd_variants")

# %% [markdown]
# ## Budget sweep: does the equal-compute verdict change with the budget?
# TF and KD at several token budgets (variants with `budget:` in the profile), final test perplexity
# against training tokens and against FLOPs (KD's teacher forward and any teacher correction
# counted). Mean over each point's seeds. The distillation scaling law (Busbridge et al. 2025, arXiv
# 2502.08606) finds that distillation beats supervised training only when the teacher already exists
# and the student's compute stays below a threshold that grows with the student's size; above it,
# supervised training wins. Far below that threshold the law expects KD *ahead* at equal FLOPs (KD
# minus TF negative), its edge shrinking as the budget grows towards the threshold. The table below
# shows which sign KD minus TF at equal FLOPs has here and how it moves with the budget; a positive
# difference (TF ahead) that far below the threshold is a tension with the law, not an agreement.

# %%
def family(m):
    """A method or variant without its budget (its whole definition otherwise): the line a budget
    point belongs to."""
    v = {k: x for k, x in cfg.variants.get(m, {"method": m}).items() if k != "budget"}
    return json.dumps({"train": {}, "teacher_correction_steps": 0, "healing": None, **v}, sort_keys=True)


# TF's and KD's lines (from scratch at a longer budget is notebook 04's)
swept = {family(m) for m in cfg.methods
         if cfg.budget_of(m) != 1 and cfg.variants.get(m, {"method": m})["method"] in ("tf", "kd")}
if swept:
    rows, members = [], {}  # members: (line, budget) -> the variant, to read its runs again
    for m in cfg.methods:
        if family(m) not in swept:
            continue
        # the line is named after its 1x member; without one, after this point's name less its budget
        name = next((x for x in cfg.methods if family(x) == family(m) and cfg.budget_of(x) == 1), None)
        line = cfg.label(name) if name else cfg.label(m, with_budget=False)
        members[(line, cfg.budget_of(m))] = m
        for seed in study.seeds(m):
            r = study.student(m, seed=seed)
            rows.append({"line": line, "base": cfg.variants.get(m, {"method": m})["method"],
                         "budget": cfg.budget_of(m), "seed": seed, "lr": r.config.train.lr,
                         "tokens": r.summary["summary"]["tokens"],
                         "flops": r.summary["summary"]["flops"] + study.extra_flops(m), "test ppl": study.headline(r)["ppl"]})
    sweep = pd.DataFrame(rows)
    study.save_table(sweep, "02_budget_sweep")
    points = sweep.groupby(["line", "base", "lr", "budget"], sort=False).agg(
        tokens=("tokens", "mean"), flops=("flops", "mean"), **{"test ppl": ("test ppl", "mean")},
        seeds=("seed", "count")).reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, x in zip(axes, ["tokens", "flops"]):
        for line, group in points.groupby("line", sort=False):
            group = group.sort_values(x)
            ax.plot(group[x], group["test ppl"], marker="o", label=line)
            for _, p in group.iterrows():
                ax.annotate(f"{p.budget:g}x", (p[x], p["test ppl"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        plots.log_axis(ax)
        plots.log_axis(ax, "x")
        plots.eng_axis(ax)
        plots.label_axes(ax, x, "test_ppl")
    plots.figure_legend(fig, axes)
    study.save_figure(fig, "02_budget_sweep")
    display(plots.table(points[["line", "budget", "test ppl", "flops", "seeds"]].rename(columns={"flops": "FLOPs"})))
    differences = sweep_differences(points)

    def mid_run(row) -> dict:
        """C2's estimator at one budget: KD's validation ppl read on its own run's curve at TF's total
        FLOPs (what KD spends before its first step counted), minus TF's final validation ppl, paired
        over the seeds both have; in nats (mean log ratio) and in ppl."""
        tf_m, kd_m = members[(row["TF line"], row["budget"])], members[(row["KD line"], row["budget"])]
        pairs = []
        for seed in (s for s in study.seeds(tf_m) if s in study.seeds(kd_m)):
            tf_run, kd_run = study.student(tf_m, seed=seed), study.student(kd_m, seed=seed)
            flops = tf_run.summary["summary"]["flops"] + study.extra_flops(tf_m) - study.extra_flops(kd_m)
            pairs.append((val_ppl_at_flops(kd_run, flops),
                          [e for e in tf_run.metrics() if "val_ppl" in e][-1]["val_ppl"]))
        return {"KD - TF, equal FLOPs, mid-run (nats)": float(np.mean([np.log(k / t) for k, t in pairs])),
                "KD - TF, equal FLOPs, mid-run (ppl)": float(np.mean([k - t for k, t in pairs])),
                "paired seeds, mid-run": len(pairs)}

    if len(differences):
        differences = pd.concat([differences, pd.DataFrame([mid_run(row) for _, row in differences.iterrows()])], axis=1)
        study.save_table(differences, "02_budget_differences")
        display(Markdown(
            "KD minus TF at each budget (positive: TF ahead). At equal tokens: test perplexity of the finished runs. "
            "At equal FLOPs, two estimators of the same pair, side by side: **finished runs** (`KD - TF, equal "
            "FLOPs`, from the sweep): test perplexity of runs that ended at their budget, KD's line (means over its seeds, log "
            "perplexity against log FLOPs) interpolated at TF's FLOPs between KD's own budget points, unpaired "
            "(empty where KD has no point that low or that high); **mid-run** (`KD - TF, equal FLOPs, mid-run`: C2's "
            "reading in notebook 99): "
            "KD's *validation* perplexity read on its own run's curve at TF's total FLOPs, before its "
            "learning-rate schedule has finished, minus TF's final validation perplexity, paired over seeds. "
            "The two read different splits (the test split; the validation blocks the training loop reads) and "
            "different runs, so their numbers differ; nats = log of the perplexity ratio."))
        display(plots.table(differences))

# %% [markdown]
# ## What each method keeps of the teacher's general ability while it adapts to the book
# Perplexity on a text far from the training corpus (the Python language reference's prose, notebook
# 00) and the informative suite, for the teacher and every run of TF, KD and the pair C2 compares
# that has them (profiles with `probes`; runs recorded before the probes have none and are left out).
# KD imitates a general-purpose teacher, TF fits the book: this is where they should differ most.

# %%
from distill_lib.probes import probe_table
from distill_lib.stats import mean_ci

pair = [chosen_tf.method, chosen.method] if "chosen" in globals() else []
probed = probe_table(study, list(dict.fromkeys(["tf", "kd", *pair])))
if len(probed) <= 1:
    display(Markdown("No student of this profile has the probes yet." if len(probed) else
                     f"Profile {cfg.name} sets no `probes`."))
else:
    study.save_table(probed, "02_out_of_domain")
    columns = [c for c in probed.columns if c not in ("model", "method", "seed")]
    display(plots.table(plots.summary_table(probed, "model", columns)))
    students = probed[probed.method != "teacher"].groupby("model", sort=False).ood_nats_vs_teacher.apply(list)
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(students) + 1.2))
    for y, (model, values) in enumerate(students.items()):
        mean, half = mean_ci(values)
        ax.errorbar(mean, y, xerr=half, fmt="o", capsize=4, color=f"C{y}")
        ax.annotate(f"n={len(values)}", (mean, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_yticks(range(len(students)), students.index)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("out-of-domain loss minus the teacher's (nats per token; mean, 95% t-interval)")
    study.save_figure(fig, "02_out_of_domain")

# %% [markdown]
# ## Compute and memory
# Per-token FLOPs are analytic (forward 2·N_matmul + attention, backward 2x forward; KD adds the
# teacher's forward). Tokens/s is the median over logged steps of each run on the machine that
# trained it (records keep the hardware).

# %%
cost = pd.DataFrame([{"method": m, "seed": r.config.train.seed,
                      "FLOPs per token": r.summary["summary"]["flops_per_token"]["total"],
                      "tokens/s": float(np.median([e["tokens_per_s"] for e in r.metrics()])),
                      "wall-clock s": r.summary["summary"]["wall_seconds"]} for m, group in runs.items() for r in group])
cost = cost.groupby("method", sort=False).mean(numeric_only=True).drop(columns="seed")
cost["FLOPs ratio vs TF"] = cost["FLOPs per token"] / cost.loc["TF", "FLOPs per token"]
cost["time ratio vs TF"] = cost.loc["TF", "tokens/s"] / cost["tokens/s"]
if not cfg.timings_comparable:  # the runs' own timings are no cost here (the side-by-side timing below is)
    cost = cost.drop(columns=["tokens/s", "wall-clock s", "time ratio vs TF"])
cost = cost.reset_index()
study.save_table(cost, "02_cost")
if "KD" in set(cost.method):
    kd = cost.set_index("method").loc["KD"]
    timed = (f"{kd['time ratio vs TF']:.2f}x TF's time per token on this machine and "
            if "time ratio vs TF" in kd else "")
    display(Markdown(f"KD costs {timed}{kd['FLOPs ratio vs TF']:.2f}x TF's FLOPs per token (paper: ~1.5x; 1.67x for "
                     "a teacher twice the student's size)."))
nb.wall_clock_caveat(cfg)
display(plots.table(cost))

# %% [markdown]
# ### Timed side by side
# Where the profile's runs were timed under different conditions (`timings_comparable: false`), the
# cost in time of KD (C3) and of width pruning (C7) comes from a side-by-side timing instead: short
# runs of TF, KD and width pruning (8 steps, the last 5 timed), alternated for three rounds on one
# machine (`distill_lib.timing`), recorded with that machine.

# %%
try:
    rates = study.step_rates() if not cfg.timings_comparable else None
except MissingRecord as missing:  # a study in parts: not measured yet
    rates = None
    display(Markdown(f"Not timed side by side yet ({missing}); C3 and C7's cost half are not judged."))
if rates:
    rates = {m: rates[m] for m in ("tf", "kd", "width") if m in rates}  # the record keeps its keys sorted
    timing = pd.DataFrame({"method": [cfg.label(m) for m in rates],
                           **{f"tokens/s, round {i + 1}": [v[i] for v in rates.values()] for i in range(len(rates["tf"]))}})
    timing["time per token vs TF (mean)"] = [float(np.mean(study.time_ratios(m)[0])) for m in rates]
    study.save_table(timing, "02_step_rates")
    display(plots.table(timing))

# %% [markdown]
# ## Does KD fit? The memory-fit planner for the paper's model sizes
# bf16 mixed precision, AdamW, batch 4 x 2048 tokens, flash attention, no sharding; GiB per device.

# %%
plan = pd.DataFrame([row for shape in PAPER_MODELS.values() for card in cfg.plan_cards_gib
                     for row in plan_memory(shape, halved(shape), batch=4, seq_len=2048, card_gib=card)])
plan = plan[["teacher", "student", "method", "card_gib", "student_state_gib", "activations_gib",
             "teacher_extra_gib", "total_gib", "fits"]]
study.save_table(plan, "02_memory_plan")
plots.table(plan)
