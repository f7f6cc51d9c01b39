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
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
import numpy as np
from IPython.display import Markdown, display

from distill_lib import analysis, plots
from distill_lib.records import MissingRecord
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
runs = {"depth (LayerCHOP)": analysis.seed_runs(study, "tf"), "width (DimCHOP)": analysis.seed_runs(study, "width")}
display(Markdown(f"DimCHOP prunes {study.width_target:.1%} of the FFN units of every layer."))

# %% [markdown]
# Mean and 95% t-interval over seeds against compute; each seed's own line against wall-clock.
# While it trains, the width-pruned model is the whole teacher with masked units.

# %%
fig = plots.curve_panels([curves(runs)], nb.x_axes(cfg, "flops", "wall_seconds"), order=list(runs))
study.save_figure(fig, "07_width_vs_depth")
nb.wall_clock_caveat(cfg)

# %%
per_seed = analysis.per_seed_table(study, runs, extra=lambda r: {
    "non-embedding params": r.record["model"]["non_embedding"], **analysis.wall_clock(cfg, r),
    "training FLOPs": r.training["flops"]})
table = plots.summary_table(per_seed, "method", [c for c in per_seed.columns if c in (
    "ppl", "bits_per_byte", "avg_acc", "non-embedding params", "wall-clock s", "training FLOPs")])
study.save_table(per_seed, "07_width_vs_depth")
mean = per_seed.groupby("method", sort=False).mean(numeric_only=True)
w, d = mean.loc["width (DimCHOP)"], mean.loc["depth (LayerCHOP)"]
if "wall-clock s" in mean:
    timed = f"{w['wall-clock s'] / d['wall-clock s']:.2f}x the wall-clock and "
else:  # the side-by-side timing of notebook 02, where recorded
    try:
        ratios, _ = study.time_ratios("width")
        timed = f"{np.mean(ratios):.2f}x the time per token (timed side by side, notebook 02) and "
    except (MissingRecord, KeyError):
        timed = ""
display(Markdown(f"Width minus depth test perplexity: {w.ppl - d.ppl:+.3g}; width costs {timed}"
                 f"{w['training FLOPs'] / d['training FLOPs']:.2f}x the FLOPs of depth pruning "
                 "(paper: similar quality, depth ~2x more efficient)."))
plots.table(table.rename(columns={"avg_acc": "avg_acc %"}))

# %% [markdown]
# ## What width and depth keep of the teacher's general ability, at the tuned rate
# Where the profile has a tuned rate (`tuned`) and width's variant is recorded: the out-of-domain
# perplexity and the informative suite (notebook 00) of width and of depth at that rate, depth from the
# profile's truncation and from those of `c2_also_from`. Runs recorded before the probes have none and
# are left out. C7 judges quality in domain (test ppl); this is what each keeps outside it.

# %%
at_tuned = [cfg.tuned.get(m) for m in ("tf", "width")]
if all(m in cfg.methods for m in at_tuned):
    nb.show_probes(study, at_tuned, "07_out_of_domain", also_from=cfg.c2_also_from)
else:
    display(Markdown("No width and depth runs at a tuned rate in this profile."))
