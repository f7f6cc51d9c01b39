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
# # 01 · Which layers to remove (v3 Fig 5, Table 6)
#
# Half of the teacher's layers are removed, first and last kept, in the paper's five configurations
# (readings *inferred* from v3 Fig 5: `max-gap` = every other layer, `input` / `output` / `middle` =
# one contiguous block after the first / before the last / in the centre, `both` = half a block at
# each end), plus `first`, `every-other` and two importance-based selections (block influence,
# angular distance) scored on validation blocks. Each student is then continued-pretrained with the
# LM loss for the same number of tokens. Claim C4: removing layers near the output is worst.

# %% tags=["parameters"]
profile = "mini"

# %%
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns
import torch

from distill_lib.study import Study
from distill_lib.truncate import layer_importance, select_layers
from distill_lib.models import load_causal_lm
from distill_lib.report import mean_ci, fmt
from distill_lib.evaluate import evaluate_model, headline

sns.set_theme(style="whitegrid")
study = Study.load(profile)
cfg = study.cfg
n = study.teacher_layers

# %% [markdown]
# ## Importance scores of the teacher's layers

# %%
teacher = load_causal_lm(study.teacher_dir())
calib = torch.from_numpy(study.data.blocks("validation")[:16].astype(np.int64))
bi = layer_importance(teacher, calib, "block-influence")
ang = layer_importance(teacher, calib, "angular", cfg.drop)
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].bar(range(n), bi); axes[0].set(title="block influence (1 - cos in/out)", xlabel="layer")
axes[1].bar(range(len(ang)), ang); axes[1].set(title=f"angular distance of a {n - round(n * (1 - cfg.drop))}-layer block", xlabel="first layer of block")
study.save_figure(fig, "01_importance")

# %% [markdown]
# ## The configurations (like v3 Fig 5): dark = kept

# %%
strategies = list(dict.fromkeys(cfg.configs + cfg.extra_strategies))
scores = {"block-influence": bi, "angular": ang}
kept = {s: select_layers(s, n, drop=cfg.drop, scores=scores.get(s)) for s in strategies}
grid = np.array([[1 if i in kept[s] else 0 for i in range(n)] for s in strategies])
fig, ax = plt.subplots(figsize=(0.45 * n + 2, 0.4 * len(strategies) + 1))
ax.imshow(grid, cmap="Greys", vmin=-0.3, vmax=1.2, aspect="auto")
ax.set_yticks(range(len(strategies)), strategies); ax.set_xticks(range(n)); ax.set_xlabel("teacher layer")
ax.set_title("layers kept by each configuration")
ax.grid(False)
study.save_figure(fig, "01_configs")

# %% [markdown]
# ## Perplexity right after truncation, and after continued pretraining
# `removed_block_influence` sums the block-influence scores of the layers a configuration removes:
# if the score measured what a layer is worth, a lower sum would mean a lower perplexity right
# after truncation.

# %%
rows, recovery = [], []
for s in strategies:
    model, keep = study.truncated_untrained(s)
    before = study.perplexity_of(model)["ppl"]
    seeds = cfg.seeds if s in cfg.configs else cfg.seeds[:1]
    trained = [study.student("tf", strategy=s, seed=seed) for seed in seeds]
    after = [study.headline(run) for run in trained]
    ppl_m, ppl_h = mean_ci([a["ppl"] for a in after])
    acc_m, acc_h = mean_ci([a.get("avg_acc", float("nan")) for a in after])
    rows.append({"configuration": s, "kept": str(keep), "removed_block_influence": sum(bi[i] for i in range(n) if i not in keep),
                 "ppl_after_truncation": before, "ppl": ppl_m,
                 "ppl_ci95": ppl_h, "avg_acc": acc_m, "avg_acc_ci95": acc_h, "seeds": len(seeds),
                 "ppl (±95% CI) / avg acc": f"{fmt(ppl_m, ppl_h)} / {fmt(100 * acc_m, None if acc_h is None else 100 * acc_h)}"})
    # the recovery curve: step 0 is the untrained truncation on the loop's validation blocks
    start = study.perplexity_of(model, split="validation", max_blocks=cfg.student_train.eval_blocks)["ppl"]
    recovery += [{"configuration": s, "step": 0, "val_ppl": start}]
    recovery += [{"configuration": s, "step": m["step"], "val_ppl": m["val_ppl"]} for m in trained[0].metrics() if "val_ppl" in m]
table6 = pd.DataFrame(rows)
study.save_table(table6, "01_table6")
table6[["configuration", "kept", "removed_block_influence", "ppl_after_truncation", "ppl (±95% CI) / avg acc", "seeds"]]

# %% [markdown]
# ## How fast continued pretraining recovers each configuration (first seed)
# Validation perplexity over the first training steps; step 0 is the model right after truncation
# (evaluated in fp32, the loop's later points under the run's precision).

# %%
recovery = pd.DataFrame(recovery)
study.save_table(recovery, "01_recovery")
fig, ax = plt.subplots(figsize=(7, 4))
sns.lineplot(data=recovery, x="step", y="val_ppl", hue="configuration", marker="o", ax=ax)
ax.set(yscale="log", title="Recovery by continued pretraining", xlabel="training step", ylabel="validation perplexity")
study.save_figure(fig, "01_recovery")
recovery.pivot(index="step", columns="configuration", values="val_ppl").round(1)

# %% [markdown]
# ## The main configuration before and after continued pretraining (full evaluation)

# %%
untrained, _ = study.truncated_untrained(cfg.strategy)
before_after = pd.DataFrame([
    {"model": f"{cfg.strategy}, right after truncation",
     **headline(evaluate_model(untrained, study.data.tokenizer, study.data, cfg.eval, study.suite_dir), study.tasks)},
    *[{"model": f"{cfg.strategy}, after continued pretraining (seed {s})", **study.headline(study.student("tf", seed=s))}
      for s in cfg.seeds],
])
study.save_table(before_after, "01_before_after")
before_after

# %%
paper = {"max-gap": 23.0, "input": 24.5, "output": 25.6, "middle": 24.0, "both": 23.0}  # v3 Table 6, 300M
five = table6[table6.configuration.isin(cfg.configs)].set_index("configuration")
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(five.index, five.ppl, yerr=five.ppl_ci95.fillna(0), color="tab:blue", alpha=0.8, label="ours (test ppl)")
ax2 = ax.twinx()
ax2.plot([c for c in five.index if c in paper], [paper[c] for c in five.index if c in paper], "ro--", label="paper 300M (C4 ppl)")
ax.set(title="Perplexity after continued pretraining, by configuration", ylabel="ours"); ax2.set_ylabel("paper")
fig.legend(loc="upper left")
study.save_figure(fig, "01_table6")
