# %% [markdown]
# # 05 · CHOP vs CHOP+distill (v3 Fig 4)
#
# CHOP+distill adds to the LM loss a logit KL, an MSE between (linearly projected) student hidden
# states and those of the teacher layers they were copied from, an MSE on attention outputs and an
# MSE on embeddings — an unweighted sum, as in the paper. Compared at equal tokens, FLOPs and
# wall-clock. Claim C8: the extra losses do not help.

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import plots
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
labels = {"tf": "TF", "chop-distill": "CHOP+distill", "kd": "KD"}
# the profile's variants of CHOP+distill (e.g. its losses weighted otherwise) next to it
labels.update({m: cfg.label(m) for m in cfg.methods if cfg.variants.get(m, {}).get("method") == "chop-distill"})
runs = {labels[m]: [study.student(m, seed=s) for s in study.seeds(m)] for m in labels}

# %% [markdown]
# Mean and 95% t-interval over seeds against compute; each seed's own line against wall-clock.

# %%
df = curves(runs)
xs = nb.x_axes(cfg, "flops", "wall_seconds")
fig, axes = plt.subplots(1, len(xs), figsize=(6 * len(xs), 4.2), sharey=True, squeeze=False)
axes = axes[0]
for ax, x in zip(axes, xs):
    plots.draw_curves(ax, df, x, "val_ppl", order=list(runs))
    plots.log_axis(ax)
    plots.label_axes(ax, x, "val_ppl")
plots.eng_axis(axes[0])
plots.figure_legend(fig, axes)
study.save_figure(fig, "05_chop_distill")
nb.wall_clock_caveat(cfg)

# %%
wall = ["wall-clock s"] if cfg.timings_comparable else []  # elsewhere the runs' wall-clock is no cost
per_seed = pd.DataFrame([{"method": m, "seed": r.config.train.seed, **study.headline(r),
                          "wall-clock s": r.summary["summary"]["wall_seconds"], "FLOPs": r.summary["summary"]["flops"]}
                         for m, group in runs.items() for r in group]).drop(columns=["avg_acc_stderr"], errors="ignore")
per_seed = per_seed.drop(columns=[] if wall else ["wall-clock s"])
per_seed["avg_acc"] *= 100
table = plots.summary_table(per_seed, "method", ["ppl", "bits_per_byte", "avg_acc", *wall, "FLOPs"])
study.save_table(per_seed, "05_chop_distill")
mean = per_seed.groupby("method", sort=False).mean(numeric_only=True)
timed = (f" and {mean['wall-clock s']['CHOP+distill'] / mean['wall-clock s']['TF']:.2f}x the wall-clock" if wall else "")
display(Markdown(f"At equal tokens CHOP+distill's test perplexity is {mean.ppl['CHOP+distill'] - mean.ppl['TF']:+.3g} "
                 f"against TF's for {mean['FLOPs']['CHOP+distill'] / mean['FLOPs']['TF']:.2f}x the FLOPs{timed}; the "
                 "claims table compares them at equal FLOPs."))
plots.table(table.rename(columns={"avg_acc": "avg_acc %"}))
