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
# # 07 · Width pruning (DimCHOP) vs depth pruning at the same size (v3 Fig 3)
#
# Depth (LayerCHOP): truncate, then continue pretraining. Width (DimCHOP): keep every layer and train
# the whole teacher while PLATON importance (EMA of |θ·∇L| times the EMA of its uncertainty, summed per
# FFN unit) decides which FFN units to zero, the pruned fraction rising on a cubic schedule to the
# fraction that matches the depth-pruned student's non-embedding parameters; then the zeroed units
# are removed. Same token budget. This version prunes FFN units only (see `distill_lib/width.py`).
# Claim C7: similar quality, depth pruning ~2x more efficient.

# %% tags=["parameters"]
profile = "mini"

# %%
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from distill_lib.study import Study, curves
from distill_lib.models import parameter_counts
from distill_lib.report import fmt, mean_ci

sns.set_theme(style="whitegrid")
study = Study.load(profile)
cfg = study.cfg
print(f"FFN units pruned by DimCHOP: {study.width_target:.1%} of every layer")
runs = {(m, s): study.student(m, seed=s) for m in ("tf", "width") for s in cfg.seeds}

# %%
df = curves({f"{'depth' if m == 'tf' else 'width'} s{s}": r for (m, s), r in runs.items()})
df["method"] = df.label.str.rsplit(" ", n=1).str[0]
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, x in zip(axes, ["flops", "wall_seconds"]):
    if x == "wall_seconds":
        sns.lineplot(data=df, x=x, y="val_ppl", hue="method", units="label", estimator=None, ax=ax, alpha=0.8)
    else:
        sns.lineplot(data=df, x=x, y="val_ppl", hue="method", errorbar=("ci", 95), ax=ax)
    ax.set(yscale="log", xlabel=x)
axes[0].set_title("validation perplexity (width: masked model during training)")
study.save_figure(fig, "07_width_vs_depth")

# %%
rows = []
for (m, s), r in runs.items():
    model = r.load_model()
    rows.append({"method": "depth (LayerCHOP)" if m == "tf" else "width (DimCHOP)", "seed": s, **study.headline(r),
                 "params_non_embedding": parameter_counts(model)["non_embedding"],
                 "wall_seconds": r.summary["summary"]["wall_seconds"], "train_flops": r.summary["summary"]["flops"]})
table = pd.DataFrame(rows).drop(columns="seed").groupby("method").agg(lambda v: fmt(*mean_ci(list(v))))
study.save_table(table.reset_index(), "07_width_vs_depth")
table
