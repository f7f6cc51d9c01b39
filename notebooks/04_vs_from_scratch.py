# %% [markdown]
# # 04 · Pruned + continued vs a half-depth model trained from scratch (v3 Fig 2)
#
# Both models have the same architecture (half the teacher's layers, same width) and train on the
# same tokens; the pruned one starts from the teacher's layers. Claim C6: given enough tokens the
# two converge (at 300M / 1.1B in the paper; at 7B pruning stays ahead).

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import plots
from distill_lib.plots import format_value
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
runs = {"TF": [study.student("tf", seed=s) for s in study.seeds("tf")],
        "from scratch": [study.student("scratch", seed=s) for s in study.seeds("scratch")]}

# %% [markdown]
# Mean and 95% t-interval over seeds. Both axes are logarithmic.

# %%
df = curves(runs).replace({"method": {"TF": "pruned + continued (TF)"}})
fig, ax = plt.subplots(figsize=(8, 4.5))
plots.draw_curves(ax, df, "tokens", "val_ppl", marker="o", colors={"pruned + continued (TF)": "tab:blue"})
plots.log_axis(ax)
plots.log_axis(ax, "x")
plots.eng_axis(ax)
plots.label_axes(ax, "tokens", "val_ppl")
ax.set_title("Pruned + continued vs the same architecture from scratch")
plots.figure_legend(fig, ax)
study.save_figure(fig, "04_vs_scratch")

# %%
gap = df.pivot_table(index="tokens", columns="method", values="val_ppl", aggfunc="mean").reset_index()
gap["gap (scratch − pruned)"] = gap["from scratch"] - gap["pruned + continued (TF)"]
gap["gap / pruned"] = gap["gap (scratch − pruned)"] / gap["pruned + continued (TF)"]
study.save_table(gap, "04_gap")
first, last = gap.iloc[0], gap.iloc[-1]
display(Markdown(f"The gap in validation perplexity goes from {format_value(first['gap (scratch − pruned)'])} after "
                 f"{first.tokens:,.0f} tokens to {format_value(last['gap (scratch − pruned)'])} after {last.tokens:,.0f} "
                 f"({100 * last['gap / pruned']:.0f}% of the pruned model's perplexity); the claim needs it to close."))
plots.table(gap, percent=["gap / pruned"])

# %% [markdown]
# ## A longer budget
# C6 is judged at the base budget. Where the profile also trains both models with more tokens
# (variants of `tf` and `scratch` that change only the `budget`, so both at the base learning rate),
# their curves show whether the gap keeps closing.

# %%
def budget_only(m, base):
    """`m` is a variant of `base` that changes the token budget and nothing else."""
    v = cfg.variants.get(m, {})
    return v.get("method") == base and set(v) == {"method", "budget"}


longer = {}
for m in cfg.methods:
    if budget_only(m, "scratch"):
        pair = next((t for t in cfg.methods if budget_only(t, "tf") and cfg.budget_of(t) == cfg.budget_of(m)), None)
        if pair:
            longer[cfg.budget_of(m)] = (pair, m)
long_runs, budget_of_line = {}, {}
for budget, (tf_m, scratch_m) in sorted(longer.items()):
    seeds = [s for s in study.seeds(scratch_m) if s in study.seeds(tf_m)]
    if seeds:  # else no seed both have: no comparison at this budget
        for line, m in ((f"pruned + continued (TF), {budget:g}x tokens", tf_m), (f"from scratch, {budget:g}x tokens", scratch_m)):
            long_runs[line] = [study.student(m, seed=s) for s in seeds]
            budget_of_line[line] = float(budget)
if long_runs:
    df_long = curves(long_runs)
    budgets = df.assign(budget=1.0)
    df_long["budget"] = df_long.method.map(budget_of_line)
    both = pd.concat([budgets, df_long])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    plots.draw_curves(ax, both, "tokens", "val_ppl",
                      colors={"pruned + continued (TF)": "tab:blue", "from scratch": "tab:red",
                              **{k: ("tab:cyan" if k.startswith("pruned") else "tab:orange") for k in long_runs}})
    plots.log_axis(ax)
    plots.log_axis(ax, "x")
    plots.eng_axis(ax)
    plots.label_axes(ax, "tokens", "val_ppl")
    ax.set_title("The same comparison with more tokens")
    plots.figure_legend(fig, ax)
    study.save_figure(fig, "04_vs_scratch_longer")
    ends = both.sort_values("tokens").groupby(["budget", "method", "seed"]).tail(1)
    ends = ends.assign(model=np.where(ends.method.str.startswith("pruned"), "pruned", "scratch"))
    table = ends.pivot_table(index="budget", columns="model", values="val_ppl", aggfunc="mean")
    table["tokens"] = ends.groupby("budget").tokens.max()
    table["seeds"] = ends[ends.model == "scratch"].groupby("budget").seed.nunique()
    table["gap (scratch − pruned)"] = table["scratch"] - table["pruned"]
    table["gap / pruned"] = table["gap (scratch − pruned)"] / table["pruned"]
    table = table.reset_index().rename(columns={"pruned": "pruned val ppl", "scratch": "from scratch val ppl"})
    table = table[["budget", "tokens", "seeds", "pruned val ppl", "from scratch val ppl", "gap (scratch − pruned)", "gap / pruned"]]
    study.save_table(table, "04_gap_by_budget")
    display(plots.table(table, percent=["gap / pruned"]))
