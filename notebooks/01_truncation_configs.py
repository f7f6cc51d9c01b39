# %% [markdown]
# # 01 · Which layers to remove (v3 Fig 5, Table 6)
#
# Half of the teacher's layers are removed, first and last kept, in the paper's five configurations
# (readings *inferred* from v3 Fig 5: `max-gap` = every other layer, `input` / `output` / `middle` =
# one contiguous block after the first / before the last / in the centre, `both` = half a block at
# each end), plus `first`, `every-other` and two importance-based selections (block influence,
# angular distance) scored on validation blocks. Each student is then continued-pretrained with the
# LM loss for the same number of tokens. Claim C4: removing layers near the output is worst.

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
from distill_lib.paper import table6 as paper_table6
from distill_lib.plots import format_value
from distill_lib.stats import mean_ci
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
n = study.teacher_layers
strategies = list(dict.fromkeys(cfg.configs + cfg.extra_strategies))

# %% [markdown]
# ## Importance scores of the teacher's layers
# Block influence of a layer = 1 − cosine similarity of its input and output hidden states; angular
# distance of a block = the angle between the hidden states before and after it (Gromov et al.).
# Both are averaged over validation blocks.


# %%
def importance():
    import torch

    from distill_lib.models import load_causal_lm
    from distill_lib.truncate import layer_importance

    teacher = load_causal_lm(study.teacher_dir())
    calib = torch.from_numpy(study.data.blocks("validation")[:16].astype(np.int64))
    return {"block-influence": [float(v) for v in layer_importance(teacher, calib, "block-influence")],
            "angular": [float(v) for v in layer_importance(teacher, calib, "angular", cfg.drop)]}


scores = study.result("01_importance", {"drop": cfg.drop, "calibration_blocks": 16}, importance)
bi, ang = scores["block-influence"], scores["angular"]
removed = n - round(n * (1 - cfg.drop))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].bar(range(n), bi, color="tab:blue")
axes[0].set(title="Block influence of each layer", xlabel="teacher layer (0 = first)", ylabel="1 − cos(input, output)")
axes[1].bar(range(len(ang)), ang, color="tab:orange")
axes[1].set(title=f"Angular distance across a block of {removed} layers", xlabel="first layer of the block",
            ylabel="angular distance / π")
for ax in axes:
    plots.integer_axis(ax)
fig.tight_layout()
study.save_figure(fig, "01_importance")
low = sorted(range(n), key=lambda i: bi[i])[:removed]
display(Markdown(f"The {removed} layers of lowest block influence are {', '.join(map(str, sorted(low)))}; the first layer "
                 f"scores {bi[0]:.3g} and the last {bi[-1]:.3g} (median over layers {np.median(bi):.3g}). The block of lowest "
                 f"angular distance starts at layer {int(np.argmin(ang))}."))

# %% [markdown]
# ## The configurations (like v3 Fig 5)


# %%
truncated = {s: study.truncation(s) for s in strategies}
grid = np.array([[1 if i in truncated[s]["kept"] else 0 for i in range(n)] for s in strategies])
fig, ax = plt.subplots(figsize=(0.32 * n + 2.5, 0.38 * len(strategies) + 1.2))
ax.imshow(grid, cmap="Greys", vmin=-0.3, vmax=1.2, aspect="auto")
ax.set_yticks(range(len(strategies)), strategies)
ax.set_xticks(range(n))
ax.set_xticklabels([str(i) if n <= 16 or i % 5 == 0 or i == n - 1 else "" for i in range(n)])
ax.set(xlabel="teacher layer (0 = first)", title="Layers kept (dark) by each configuration")
ax.grid(False)
study.save_figure(fig, "01_configs")
same = {}
for s in strategies:
    same.setdefault(tuple(truncated[s]["kept"]), []).append(s)
groups = [g for g in same.values() if len(g) > 1]
if groups:
    display(Markdown("Configurations that keep the same layers (their students are the same model, so their "
                     "curves coincide): " + "; ".join(" = ".join(f"`{s}`" for s in g) for g in groups) + "."))

# %% [markdown]
# ## Perplexity right after truncation and after continued pretraining
# Test perplexity; the five paper configurations have every seed of the profile, the others the
# first seed. `removed block influence` sums the block influence of the removed layers: if the
# score measured what a layer is worth, a lower sum would mean a lower perplexity right after
# truncation.

# %%
trained = {s: [study.student("tf", strategy=s, seed=seed) for seed in (study.config_seeds() if s in cfg.configs else study.config_seeds()[:1])]
           for s in strategies}
rows = []
for s in strategies:
    after = [study.headline(run) for run in trained[s]]
    ppl_m, ppl_h = mean_ci([a["ppl"] for a in after])
    acc_m, acc_h = mean_ci([100 * a.get("avg_acc", float("nan")) for a in after])
    rows.append({"configuration": s, "kept layers": " ".join(map(str, truncated[s]["kept"])),
                 "removed block influence": sum(bi[i] for i in range(n) if i not in truncated[s]["kept"]),
                 "ppl right after truncation": truncated[s]["ppl_after_truncation"],
                 "ppl": ppl_m, "ppl_ci95": ppl_h, "avg acc %": acc_m, "avg_acc_ci95": acc_h, "seeds": len(after)})
table6 = pd.DataFrame(rows)
study.save_table(table6, "01_table6")
shown = table6.assign(**{"test ppl after training": [format_value(m, h) for m, h in zip(table6.ppl, table6.ppl_ci95)],
                         "avg acc % after training": [format_value(m, h) for m, h in zip(table6["avg acc %"], table6.avg_acc_ci95)]})
order = table6.sort_values("ppl").configuration.tolist()
display(Markdown(f"After continued pretraining the best configuration is `{order[0]}` "
                 f"({format_value(table6.set_index('configuration').ppl[order[0]])}) and the worst `{order[-1]}` "
                 f"({format_value(table6.set_index('configuration').ppl[order[-1]])}). Right after truncation the "
                 f"order is {', '.join(f'`{s}`' for s in table6.sort_values('ppl right after truncation').configuration)}."))
plots.table(shown[["configuration", "kept layers", "removed block influence", "ppl right after truncation",
                   "test ppl after training", "avg acc % after training", "seeds"]])

# %% [markdown]
# ## How fast continued pretraining recovers each configuration
# Validation perplexity over training; step 0 is the model right after truncation (evaluated in
# fp32 on the loop's validation blocks). Mean and 95% t-interval over seeds where there are
# several. The right panel leaves out the first evaluations so the end of training is readable.

# %%
df = curves(trained)
start = pd.DataFrame([{"method": s, "seed": r.config.train.seed, "step": 0, "tokens": 0,
                       "val_ppl": truncated[s]["val_ppl_at_step_0"]} for s in strategies for r in trained[s]])
recovery = pd.concat([start, df[["method", "seed", "step", "tokens", "val_ppl"]]], ignore_index=True)
recovery = recovery.rename(columns={"method": "configuration"})
study.save_table(recovery, "01_recovery")
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
late = recovery[recovery.step >= recovery.step.max() / 3]
for ax, part in zip(axes, [recovery, late]):
    plots.draw_curves(ax, part, "step", "val_ppl", hue="configuration", order=strategies, marker="o")
    plots.label_axes(ax, "step", "val_ppl")
    plots.integer_axis(ax)
plots.log_axis(axes[0])
axes[0].set_title("From truncation to the end of training (log scale)")
axes[1].set_title(f"From step {int(late.step.min())} on (linear scale)")
plots.figure_legend(fig, axes, ncol=5)
study.save_figure(fig, "01_recovery")
ends = recovery.groupby(["configuration", "step"]).val_ppl.mean().unstack()
first_eval = sorted(recovery.step.unique())[1]
display(Markdown(f"Mean validation perplexity right after truncation, after the first evaluation (step {first_eval}) and "
                 "at the end: " + "; ".join(f"`{c}` {format_value(ends.loc[c, 0])} → {format_value(ends.loc[c, first_eval])} → "
                                           f"{format_value(ends.loc[c].dropna().iloc[-1])}" for c in strategies) + "."))

# %% [markdown]
# ## The main configuration before and after continued pretraining (full evaluation)

# %%
from distill_lib.evaluate import headline

untrained = headline(study.evaluate_model("01_untrained-truncation-evaluation", {"strategy": cfg.strategy, "drop": cfg.drop},
                                          lambda: study.truncated_untrained(cfg.strategy)[0]), study.tasks)
before_after = pd.DataFrame([{"model": f"{cfg.strategy}, right after truncation", **untrained},
                             *[{"model": f"{cfg.strategy}, after continued pretraining (seed {s})",
                                **study.headline(study.student("tf", seed=s))} for s in study.seeds("tf")]])
before_after = before_after.drop(columns=["avg_acc_stderr"], errors="ignore")
if "avg_acc" in before_after:  # in percent, as in every other table (the tasks' own columns stay fractions)
    before_after["avg_acc"] *= 100
study.save_table(before_after, "01_before_after")
plots.table(before_after.rename(columns={"avg_acc": "avg_acc %"}), percent=[c for c in before_after.columns if "/acc" in c])

# %% [markdown]
# ## Our Table 6 next to the paper's
# Our test perplexity (Bible, after a short continued pretraining) and the paper's C4 perplexity
# after 20B tokens are on different scales; what can be compared is the *order* of the
# configurations. Each panel has its own axis.

# %%
paper = paper_table6()
five = table6[table6.configuration.isin(paper.index)].set_index("configuration")
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].errorbar(five.index, five.ppl, yerr=five.ppl_ci95.fillna(0), fmt="o", color="tab:blue", capsize=4)
axes[0].set(title=f"Ours ({cfg.name}): test perplexity", ylabel="perplexity")
for ax, col, title in [(axes[1], "paper 300M ppl", "Paper, 300M base: C4 perplexity"),
                       (axes[2], "paper 1.1B ppl", "Paper, 1.1B base: C4 perplexity")]:
    ax.plot(paper.index, paper[col], "o", color="tab:red")
    ax.set(title=title, ylabel="perplexity")
for ax in axes:  # dots, not bars: an axis that does not start at 0 then exaggerates nothing
    ax.tick_params(axis="x", rotation=30)
    low, high = ax.get_ylim()
    pad = 0.15 * (high - low)
    ax.set_ylim(low - pad, high + pad)
fig.tight_layout()
study.save_figure(fig, "01_table6")
display(Markdown(f"Worst configuration: ours `{five.ppl.idxmax()}`, the paper's `output` at both sizes."))
plots.table(paper.join(five[["ppl", "ppl_ci95", "avg acc %"]].rename(columns=lambda c: f"ours {c}"), how="left")
            .rename_axis("configuration").reset_index())
