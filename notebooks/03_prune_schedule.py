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
# # 03 · Remove all layers at once, or one at a time? (v3 Fig 6)
#
# One-shot: truncate, then continue pretraining. Gradual: start from the whole teacher and remove
# one of the same layers every K tokens (optimizer state of the remaining weights kept), training
# throughout; the total token budget is the same. Claim C5: no gain from gradual removal.

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
seed = cfg.seeds[0]
runs = {"one-shot": study.student("tf", seed=seed)}
for k in cfg.gradual_every_tokens:
    runs[f"gradual every {k:,} tokens"] = study.student("gradual", seed=seed, every_tokens=k)

# %%
df = curves(runs)
fig, ax = plt.subplots(figsize=(7, 4))
sns.lineplot(data=df, x="tokens", y="val_ppl", hue="label", marker="o", ax=ax)
ax.set(yscale="log", xlabel="training tokens", title="One-shot vs gradual layer removal")
study.save_figure(fig, "03_schedule")

# %%
table = pd.DataFrame([{"schedule": name, **study.headline(r),
                       "layers_at_end": r.metrics()[-1]["layers"], "wall_seconds": r.summary["summary"]["wall_seconds"]}
                      for name, r in runs.items()])
study.save_table(table, "03_schedule")
table
