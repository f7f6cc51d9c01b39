# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · CHOP vs CHOP+distill (v3 Fig 4)
#
# CHOP+distill adds to the LM loss a logit KL, an MSE between (linearly projected) student hidden
# states and those of the teacher layers they were copied from, an MSE on attention outputs and an
# MSE on embeddings — an unweighted sum, as in the paper. Compared at equal tokens, FLOPs and
# wall-clock. Claim C8: the extra losses do not help.

# %% tags=["parameters"]
profile = "mini"

# %%
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from distill_lib.study import Study, curves
from distill_lib.report import fmt, mean_ci

sns.set_theme(style="whitegrid")
study = Study.load(profile)
cfg = study.cfg
runs = {(m, s): study.student(m, seed=s) for m in ("tf", "chop-distill", "kd") for s in cfg.seeds}

# %%
df = curves({f"{m} s{s}": r for (m, s), r in runs.items()})
df["method"] = df.label.str.rsplit(" ", n=1).str[0]
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, x in zip(axes, ["flops", "wall_seconds"]):
    if x == "wall_seconds":  # one line per run: time stamps differ between runs
        sns.lineplot(data=df, x=x, y="val_ppl", hue="method", units="label", estimator=None, ax=ax, alpha=0.8)
    else:
        sns.lineplot(data=df, x=x, y="val_ppl", hue="method", errorbar=("ci", 95), ax=ax)
    ax.set(yscale="log", xlabel=x)
study.save_figure(fig, "05_chop_distill")

# %%
rows = [{"method": m, "seed": s, **study.headline(r), "wall_seconds": r.summary["summary"]["wall_seconds"],
         "flops": r.summary["summary"]["flops"]} for (m, s), r in runs.items()]
table = pd.DataFrame(rows).drop(columns="seed").groupby("method").agg(lambda v: fmt(*mean_ci(list(v))))
study.save_table(table.reset_index(), "05_chop_distill")
table
