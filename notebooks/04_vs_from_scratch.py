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
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import analysis, plots
from distill_lib.plots import format_value
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
pruned, scratch = "pruned + continued (TF)", "from scratch"
runs = {pruned: analysis.seed_runs(study, "tf"), scratch: analysis.seed_runs(study, "scratch")}

# %% [markdown]
# Mean and 95% t-interval over seeds. Both axes are logarithmic.

# %%
df = curves(runs)
fig = plots.token_curves(df, "Pruned + continued vs the same architecture from scratch", log_x=True, marker="o",
                            colors={pruned: "tab:blue"})
study.save_figure(fig, "04_vs_scratch")

# %%
gap = analysis.gap_over_tokens(df, pruned, scratch)
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
model_of, colors = {pruned: "pruned", scratch: "scratch"}, {pruned: "tab:blue", scratch: "tab:red"}
long_runs, budget_of_line = {}, {}
for budget, tf_m, scratch_m, seeds in analysis.budget_pairs(study, "tf", "scratch"):
    for line, m, model, color in ((f"{pruned}, {budget:g}x tokens", tf_m, "pruned", "tab:cyan"),
                                  (f"{scratch}, {budget:g}x tokens", scratch_m, "scratch", "tab:orange")):
        long_runs[line] = [study.student(m, seed=s) for s in seeds]
        model_of[line], colors[line], budget_of_line[line] = model, color, float(budget)
if long_runs:
    df_long = curves(long_runs)
    df_long["budget"] = df_long.method.map(budget_of_line)
    both = pd.concat([df.assign(budget=1.0), df_long])
    fig = plots.token_curves(both, "The same comparison with more tokens", log_x=True, colors=colors)
    study.save_figure(fig, "04_vs_scratch_longer")
    table = analysis.gap_by_budget(both, model_of)
    study.save_table(table, "04_gap_by_budget")
    display(plots.table(table, percent=["gap / pruned"]))
