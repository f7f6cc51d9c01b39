# %% [markdown]
# # 03 · Remove all layers at once, or one at a time? (v3 Fig 6)
#
# One-shot: truncate, then continue pretraining. Gradual: start from the whole teacher and remove
# one of the same layers every K tokens (optimizer state of the remaining weights kept), training
# throughout; the total token budget is the same. Claim C5: no gain from gradual removal.

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
from IPython.display import Markdown, display

from distill_lib import analysis, plots
from distill_lib.plots import format_value
from distill_lib.stats import paired_difference
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
gradual_seeds = study.seeds("gradual")
runs = {"one-shot (TF)": analysis.seed_runs(study, "tf")}
for k in cfg.gradual_every_tokens:
    runs[f"gradual, one layer every {k:,} tokens"] = [study.student("gradual", seed=s, remove_every_tokens=k)
                                                      for s in gradual_seeds]

# %% [markdown]
# Curves: mean over seeds and 95% t-interval where a schedule has several. While layers are still
# being removed, the gradual model is larger than the one-shot one, so its early validation
# perplexity is not comparable.

# %%
fig = plots.token_curves(curves(runs), "One-shot vs gradual layer removal", ncol=1, marker="o",
                            colors={"one-shot (TF)": "tab:blue"})
study.save_figure(fig, "03_schedule")

# %%
per_seed = analysis.per_seed_table(study, runs, by="schedule", extra=lambda r: {
    "layers at end": r.metrics()[-1]["layers"], **analysis.wall_clock(cfg, r)})
table = plots.summary_table(per_seed, "schedule", [c for c in per_seed.columns if c in (
    "ppl", "bits_per_byte", "avg_acc", "layers at end", "wall-clock s")])
study.save_table(per_seed, "03_schedule")
one_shot = per_seed[per_seed.schedule == "one-shot (TF)"].set_index("seed").ppl


def gradual_minus_one_shot(group) -> str:
    """Paired over the gradual seeds (mean ± 95% t-interval with several)."""
    d, h = paired_difference(list(group.ppl), [one_shot[s] for s in group.seed])
    return format_value(d, h) if h is not None else f"{d:+.3g}"


over = (f"paired over seeds {', '.join(map(str, gradual_seeds))}" if len(gradual_seeds) > 1
        else f"seed {gradual_seeds[0]}")
display(Markdown(f"Test perplexity, gradual minus one-shot ({over}): "
                 + "; ".join(f"{name}: {gradual_minus_one_shot(g)}"
                             for name, g in per_seed[per_seed.schedule != "one-shot (TF)"].groupby("schedule", sort=False))
                 + f" (one-shot mean over seeds: {format_value(one_shot.mean())}). Positive = gradual is worse, "
                 "the paper's direction."))
plots.table(table.rename(columns={"avg_acc": "avg_acc %"}))
