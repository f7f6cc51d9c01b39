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
import numpy as np
from IPython.display import Markdown, display

from distill_lib import analysis, plots
from distill_lib.evaluations import teacher_layer_scores
from distill_lib.paper import table6 as paper_table6
from distill_lib.plots import format_value
from distill_lib.truncate import drop_count

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
scores = teacher_layer_scores(study, calibration_blocks=16)
bi, ang = scores["block-influence"], scores["angular"]
removed = drop_count(n, cfg.drop)
study.save_figure(plots.importance_figure(bi, ang, removed), "01_importance")
low = sorted(range(n), key=lambda i: bi[i])[:removed]
display(Markdown(f"The {removed} layers of lowest block influence are {', '.join(map(str, sorted(low)))}; the first layer "
                 f"scores {bi[0]:.3g} and the last {bi[-1]:.3g} (median over layers {np.median(bi):.3g}). The block of lowest "
                 f"angular distance starts at layer {int(np.argmin(ang))}."))

# %% [markdown]
# ## The configurations (like v3 Fig 5)


# %%
truncated = {s: study.truncation(s) for s in strategies}
kept = {s: truncated[s]["kept"] for s in strategies}
study.save_figure(plots.layer_grid(kept, n, "Layers kept (dark) by each configuration"), "01_configs")
groups = analysis.same_layers(kept)
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
table6 = analysis.configurations_table(study, trained, truncated, bi)
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
# ### At the tuned learning rate
# Where the profile names a tuned rate (`tuned`: the rate validation chose for TF), C4 is judged at both
# rates (notebook 99): each configuration's mean test ppl at the base rate and at the tuned one, from
# the seeds recorded so far (0 = not recorded yet).

# %%
both_rates = analysis.configurations_at_both_rates(study, cfg.configs)
if len(both_rates):
    study.save_table(both_rates, "01_configs_at_both_rates")
    display(plots.table(both_rates))

# %% [markdown]
# ### What each configuration keeps of the teacher's general ability, at the tuned rate
# The out-of-domain perplexity and the informative suite (notebook 00) of the five configurations'
# students at the tuned rate, each row named by the configuration it was truncated with: the
# profile's own (`strategy`: `max-gap` on smollm2) reads TF's tuned variant's seeds, the others the
# seeds `seeds_by_method` lists under `METHOD@CONFIGURATION`. Runs recorded before the probes have
# none and are left out. C4 ranks the configurations in domain (test ppl); this is what each keeps outside it.

# %%
tuned_tf = cfg.tuned.get("tf")
if tuned_tf in cfg.methods:
    nb.show_probes(study, [tuned_tf], "01_out_of_domain", also_from=[c for c in cfg.configs if c != cfg.strategy])
else:
    display(Markdown("No TF runs at a tuned rate in this profile."))

# %% [markdown]
# ## How fast continued pretraining recovers each configuration
# Validation perplexity over training; step 0 is the model right after truncation (evaluated in
# fp32 on the loop's validation blocks). Mean and 95% t-interval over seeds where there are
# several. The right panel leaves out the first evaluations so the end of training is readable.

# %%
recovery = analysis.recovery_curves(trained, truncated)
study.save_table(recovery, "01_recovery")
study.save_figure(plots.recovery_figure(recovery, strategies), "01_recovery")
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
before_after = analysis.headline_table([{"model": f"{cfg.strategy}, right after truncation", **untrained},
                                        *[{"model": f"{cfg.strategy}, after continued pretraining (seed {r.config.train.seed})",
                                           **study.headline(r)} for r in analysis.seed_runs(study, "tf")]])
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
study.save_figure(plots.table6_figure(five, paper, cfg.name), "01_table6")
display(Markdown(f"Worst configuration: ours `{five.ppl.idxmax()}`, the paper's `output` at both sizes."))
plots.table(paper.join(five[["ppl", "ppl_ci95", "avg acc %"]].rename(columns=lambda c: f"ours {c}"), how="left")
            .rename_axis("configuration").reset_index())
