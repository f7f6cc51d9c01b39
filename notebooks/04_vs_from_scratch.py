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
# # 04 · Pruned + continued vs a half-depth model trained from scratch (v3 Fig 2)
#
# Both models have the same architecture (half the teacher's layers, same width) and train on the
# same tokens; the pruned one starts from the teacher's layers. Claim C6: given enough tokens the
# two converge (at 300M / 1.1B in the paper; at 7B pruning stays ahead).

# %% tags=["parameters"]
profile = "mini"

# %%
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from distill_lib.study import Study, curves

sns.set_theme(style="whitegrid")
study = Study.load(profile)
cfg = study.cfg
runs = {**{f"pruned+continued s{s}": study.student("tf", seed=s) for s in cfg.seeds},
        **{f"from scratch s{s}": study.student("scratch", seed=s) for s in cfg.seeds}}

# %%
df = curves(runs)
df["model"] = df.label.str.rsplit(" ", n=1).str[0]
fig, ax = plt.subplots(figsize=(7, 4))
sns.lineplot(data=df, x="tokens", y="val_ppl", hue="model", errorbar=("ci", 95), marker="o", ax=ax)
ax.set(yscale="log", xlabel="training tokens", title="Validation perplexity over tokens")
study.save_figure(fig, "04_vs_scratch")

# %%
gap = df.pivot_table(index="tokens", columns="model", values="val_ppl", aggfunc="mean")
gap["gap (scratch - pruned)"] = gap["from scratch"] - gap["pruned+continued"]
study.save_table(gap.reset_index(), "04_gap")
gap
