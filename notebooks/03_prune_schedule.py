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
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import analysis, plots
from distill_lib.plots import format_value
from distill_lib.probes import probe_table_of_runs
from distill_lib.stats import log_ratios, mean_ci
from distill_lib.study import curves
from distill_lib.tuned import AtTunedRate, rate_label

study = nb.open_study(profile, train)
cfg = study.cfg
# C5 is judged at the base rate and, where the profile names a tuned rate (`tuned`) and gradual
# removal's variant there is recorded, again with every run at that rate (notebook 99)
rates = {rate_label(cfg, False): study}
tuned_rate = rate_label(cfg, True)
if cfg.tuned.get("gradual") in cfg.methods and cfg.tuned.get("tf") in cfg.methods:
    rates[tuned_rate] = AtTunedRate(study)
ONE_SHOT = "one-shot (TF)"


def schedule_runs(view) -> dict[str, list]:
    """One-shot TF and each gradual schedule, every recorded seed, at the view's rate."""
    runs = {ONE_SHOT: analysis.seed_runs(view, "tf")}
    for k in cfg.gradual_every_tokens:
        runs[f"gradual, one layer every {k:,} tokens"] = [view.student("gradual", seed=s, remove_every_tokens=k)
                                                          for s in view.seeds("gradual")]
    return runs


runs_at = {rate: schedule_runs(view) for rate, view in rates.items()}

# %% [markdown]
# Curves, one figure per rate: mean over seeds and 95% t-interval where a schedule has several. While
# layers are still being removed, the gradual model is larger than the one-shot one, so its early
# validation perplexity is not comparable.

# %%
for i, (rate, runs) in enumerate(runs_at.items()):
    fig = plots.token_curves(curves(runs), f"One-shot vs gradual layer removal, {rate}", ncol=1, marker="o",
                             colors={ONE_SHOT: "tab:blue"})
    nb.show_figure(study, fig, "03_schedule" if i == 0 else "03_schedule_tuned")

# %% [markdown]
# Test perplexity per schedule, and gradual minus one-shot paired over the seeds both have, in nats
# (log of gradual's test ppl over one-shot's; positive = gradual is worse, the paper's direction).
# The claims table (notebook 99) judges the same differences against the ±0.05-nat margin.

# %%
per_seed = pd.concat([analysis.per_seed_table(study, runs, by="schedule", extra=lambda r: {
    "layers at end": r.metrics()[-1]["layers"], **analysis.wall_clock(cfg, r)}).assign(rate=rate)
    for rate, runs in runs_at.items()], ignore_index=True)
per_seed.insert(0, "rate", per_seed.pop("rate"))
study.save_table(per_seed, "03_schedule")
for rate, at_rate in per_seed.groupby("rate", sort=False):
    one_shot = at_rate[at_rate.schedule == ONE_SHOT].set_index("seed").ppl
    lines = []
    for name, group in at_rate[at_rate.schedule != ONE_SHOT].groupby("schedule", sort=False):
        seeds = [s for s in group.seed if s in one_shot.index]
        gradual = group.set_index("seed").ppl
        d, h = mean_ci(log_ratios(gradual[seeds], one_shot[seeds]))
        lines.append(f"- {name}: {format_value(d, h) if h is not None else f'{d:+.3g}'} nats "
                     f"(test ppl {format_value(gradual[seeds].mean())} against {format_value(one_shot[seeds].mean())}; "
                     f"seeds {', '.join(map(str, seeds))})")
    display(Markdown(f"**{rate}**, gradual minus one-shot:\n" + "\n".join(lines)))
    table = plots.summary_table(at_rate.drop(columns="rate"), "schedule", [c for c in per_seed.columns if c in (
        "ppl", "bits_per_byte", "avg_acc", "layers at end", "wall-clock s")])
    display(plots.table(table.rename(columns={"avg_acc": "avg_acc %"})))

# %% [markdown]
# ## What each schedule keeps of the teacher's general ability, at the tuned rate
# Where gradual removal is recorded at the tuned rate: the out-of-domain perplexity and the
# informative suite (notebook 00) of one-shot TF and of each schedule, every run at that rate. Runs recorded
# before the probes have none and are left out.

# %%
if tuned_rate in runs_at:
    nb.show_probe_table(study, probe_table_of_runs(study, [
        (name, cfg.tuned["tf" if name == ONE_SHOT else "gradual"], [(run.config.train.seed, run) for run in runs])
        for name, runs in runs_at[tuned_rate].items()]), "03_out_of_domain")
else:
    display(Markdown("No gradual removal at a tuned rate in this profile."))
