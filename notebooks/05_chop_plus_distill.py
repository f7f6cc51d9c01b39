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
from IPython.display import Markdown, display

from distill_lib import analysis, plots
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
labels = {"tf": "TF", "chop-distill": "CHOP+distill", "kd": "KD"}
# the profile's variants of CHOP+distill (e.g. its losses weighted otherwise) next to it
labels.update({m: cfg.label(m) for m in cfg.methods if cfg.variants.get(m, {}).get("method") == "chop-distill"})
# a variant at the tuned rate (`tuned`, C8's rows there) is shown beside TF at that rate
tuned_chop = [m for m in labels if m in cfg.tuned.values()]
at_tuned = [cfg.tuned["tf"], *tuned_chop] if tuned_chop and cfg.tuned["tf"] in cfg.methods else []
if at_tuned:  # TF at that rate joins the figure and table (the CHOP+distill variants are there already)
    labels[cfg.tuned["tf"]] = cfg.label(cfg.tuned["tf"])
runs = {labels[m]: analysis.seed_runs(study, m) for m in labels}

# %% [markdown]
# Mean and 95% t-interval over seeds against compute; each seed's own line against wall-clock.

# %%
fig = plots.curve_panels([curves(runs)], nb.x_axes(cfg, "flops", "wall_seconds"), order=list(runs))
study.save_figure(fig, "05_chop_distill")
nb.wall_clock_caveat(cfg)

# %%
per_seed = analysis.per_seed_table(study, runs, extra=lambda r: {**analysis.wall_clock(cfg, r),
                                                                 "FLOPs": r.training["flops"]})
table = plots.summary_table(per_seed, "method", [c for c in per_seed.columns if c in (
    "ppl", "bits_per_byte", "avg_acc", "wall-clock s", "FLOPs")])
study.save_table(per_seed, "05_chop_distill")
mean = per_seed.groupby("method", sort=False).mean(numeric_only=True)
timed = (f" and {mean['wall-clock s']['CHOP+distill'] / mean['wall-clock s']['TF']:.2f}x the wall-clock"
         if "wall-clock s" in mean else "")
display(Markdown(f"At equal tokens CHOP+distill's test perplexity is {mean.ppl['CHOP+distill'] - mean.ppl['TF']:+.3g} "
                 f"against TF's for {mean['FLOPs']['CHOP+distill'] / mean['FLOPs']['TF']:.2f}x the FLOPs{timed}; the "
                 "claims table compares them at equal FLOPs."))
plots.table(table.rename(columns={"avg_acc": "avg_acc %"}))

# %% [markdown]
# ## What CHOP+distill and TF keep of the teacher's general ability, at the tuned rate
# Where the profile's CHOP+distill has a variant at the tuned rate: the out-of-domain perplexity and the
# informative suite (notebook 00) of it and of TF at that rate. Runs recorded before the probes have
# none and are left out.

# %%
if at_tuned:
    nb.show_probes(study, at_tuned, "05_out_of_domain")
else:
    display(Markdown("No CHOP+distill and TF runs at a tuned rate in this profile."))
