# %% [markdown]
# # 08 · Beyond the paper: which layers to drop, and how to heal them
#
# The paper removes a fixed pattern of layers. Later work chooses them from the model: by the
# calibration perplexity without each layer (one-shot, Kim et al. 2024, *Shortened LLaMA*; or
# re-scored after each removal, SLEB), by the best contiguous block (Gromov et al. 2024), or by a
# first-order Taylor importance |θ·∇L| with the first and last layers guarded. Each selector is
# scored on calibration blocks of the validation split, then its student is healed by the paper's
# continued pretraining (TF) for the profile's budget; the paper's configurations are the reference.
# Layers are numbered from 0 (the first, next to the embeddings) to n − 1 (the last).

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import analysis, plots
from distill_lib.evaluations import selection
from distill_lib.plots import format_value
from distill_lib.probes import probe_table_of_runs
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
n = study.teacher_layers
selectors = list(cfg.selectors)
reference = study.selection_reference_configs()

# %% [markdown]
# ## What each selector keeps, and how the model does right after truncation
# Calibration: the blocks a run's truncation uses (the validation split's first ones, or the
# training split's where the profile sets `calibration_split: train`). Perplexity on the test split.


# %%
chosen = {s: selection(study, s) for s in selectors}
truncations = {**chosen, **{s: study.truncation(s) for s in reference}}  # selectors, then the paper's configurations
kept = {s: t["kept"] for s, t in truncations.items()}
study.save_figure(plots.layer_grid(kept, n, "Layers kept (dark): selectors, then the paper's configurations"), "08_kept")

# %% [markdown]
# ## Per-layer scores: is there a U-shape?
# Published rankings of Llama-2-7B and Llama-3-8B find the first and last layers the most
# important. Left: calibration perplexity without each layer alone (`ppl-removal`); right: the
# Taylor importance of each layer (`taylor`). Higher = removing it hurts more.

# %%
profiles = {s: chosen[s]["scores"] for s in ("ppl-removal", "taylor") if s in chosen and chosen[s]["scores"]}
if profiles:
    study.save_figure(plots.layer_scores_figure(profiles), "08_layer_scores")
    lines = []
    for s, values in profiles.items():
        middle = float(np.median(values[1:-1]))
        ends = "both ends score above" if min(values[0], values[-1]) > middle else (
            "only one end scores above" if max(values[0], values[-1]) > middle else "neither end scores above")
        lines.append(f"`{s}`: first layer {format_value(values[0])}, last {format_value(values[-1])}, median of the "
                     f"others {format_value(middle)}: {ends} the middle layers.")
    display(Markdown(" ".join(lines)))

# %% [markdown]
# ## After healing: continued pretraining of each selector's student
# Test perplexity right after truncation and after the profile's TF budget (seeds: `selector_seeds`,
# by default the first of notebook 01's), selectors next to the paper's configurations.

# %%
healed = analysis.healed_table(study, truncations, selectors)
study.save_table(healed, "08_selection")
mean = healed.groupby("selection", sort=False)["test ppl after healing"].mean()
best = mean.idxmin()
display(Markdown(f"Lowest mean test perplexity after healing: `{best}` ({format_value(mean[best])}, kept "
                 f"{' '.join(map(str, kept[best]))})" + (f"; the paper's `{cfg.strategy}`: {format_value(mean[cfg.strategy])}"
                                                         if cfg.strategy in mean else "")
                 + f". Seeds: {len(study.selector_seeds())}; hypothesis H1 (notebook 99) tests ppl-removal against "
                   "max-gap with its interval."))
plots.table(healed)

# %% [markdown]
# ### At the tuned learning rate
# Where the profile names a tuned rate (`tuned`), each selector's and configuration's student is healed
# again with TF at that rate (H1 and C7's best depth configuration read them there, notebook 99): mean
# test ppl at both rates over the selector seeds recorded so far (0 = not recorded yet). At the tuned
# rate a selector scores layers on the calibration blocks of TF's tuned variant (`calibration_split`:
# the training split on smollm2), so the layers it keeps there can differ from the ones shown above.

# %%
both_rates = analysis.configurations_at_both_rates(study, [*selectors, *reference], seeds=study.selector_seeds())
if len(both_rates):
    study.save_table(both_rates, "08_selection_at_both_rates")
    display(plots.table(both_rates.rename(columns={"configuration": "selection"})))

# %% [markdown]
# ## Healing: full continued pretraining, LoRA, partial fine-tuning, a replacement layer
# On one truncation fixed before any number was seen (`healing_strategy` of the profile: a
# contiguous block, so that LLM-Streamline's replacement layer applies), each healing method trains
# for the profile's token budget: **full** (the paper's continued pretraining), **LoRA** (adapters
# on every linear layer of the decoder, merged at the end), **partial** (only the LM head, the final
# norm and the last layers), **replace** (one new layer in the removed block's place, first fitted
# to the block's output, then everything trains; its first stage is counted in its tokens and
# FLOPs). Each ends as a plain Hugging Face checkpoint. Compared at the end of each run (test
# perplexity: full, LoRA and partial at equal tokens; replace's fitting stage adds its own steps, so
# it trains on more tokens, given in the table) and at equal FLOPs (validation perplexity read at the
# cheapest method's total FLOPs). Once at the base rate, and again at the tuned rate where the profile
# has one: full continued pretraining and the healers at that rate, beside LoRA's rate check (LoRA at
# the base rate on the same truncation, named with its rate), which H2 (notebook 99) chooses from.
# Below each table, what each healer keeps of the teacher's general ability (out-of-domain perplexity
# and the informative suite of notebook 00), for the runs recorded with these probes.

# %%
by_rate = analysis.healers_by_rate(cfg)  # the base rate's healers; those at the tuned rate where recorded
tables = []
for rate, (full, healers) in by_rate.items():
    groups, methods = analysis.healing_runs(study, healers, full=full), analysis.healing_labels(cfg, healers, full)
    mean_flops = analysis.mean_training_flops(groups)
    cheapest = mean_flops.min()  # every method has a curve up to there: the one compute they all reach
    healing = analysis.healing_table(study, groups, at_flops=cheapest)
    tables.append(healing.assign(rate=rate, **{"full method": full}))
    suffix = "" if full == "tf" else "_tuned"
    fig = plots.healing_figure(curves(groups), healing, mean_flops, nb.x_axes(cfg, "flops", "wall_seconds"),
                               title=f"Healing {cfg.healing_strategy}'s student, {rate}")
    display(Markdown(f"**{rate}**. " + analysis.healing_reading(healing, cheapest, cfg.healing_strategy)))
    display(plots.table(plots.summary_table(healing, "healing", [c for c in healing.columns if c not in ("healing", "seed")])))
    nb.show_figure(study, fig, "08_healing" + suffix)
    probed = probe_table_of_runs(study, [(label, methods[label], [(r.config.train.seed, r) for r in runs])
                                         for label, runs in groups.items()])
    nb.show_probe_table(study, probed, "08_out_of_domain" + suffix)
if tables:
    study.save_table(pd.concat(tables, ignore_index=True), "08_healing")
    nb.wall_clock_caveat(cfg)
