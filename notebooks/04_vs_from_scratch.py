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
