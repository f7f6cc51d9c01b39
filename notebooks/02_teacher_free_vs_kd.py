# %% [markdown]
# # 02 · Teacher-free continued pretraining vs vanilla knowledge distillation (v1 headline)
#
# The same truncated student (`strategy` of the profile) is trained for the same number of tokens
# with the plain LM loss (teacher-free, TF), with vanilla KD (teacher in memory, KL on logits), with
# offline KD (top-k teacher logits stored once, teacher never in memory), and — for claim C1 — the
# same architecture from a random initialisation. Curves are plotted against tokens, analytic FLOPs
# and wall-clock. Claims: C1 truncated init beats random init; C2 TF ≥ KD at equal compute; C3 KD
# costs ~1.5x per token.

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
from IPython.display import Markdown, display

from distill_lib import analysis, findings, plots
from distill_lib.claims import best_kd, best_tf, candidate_families, kd_candidates, tf_candidates
from distill_lib.records import MissingRecord

study = nb.open_study(profile, train)
cfg = study.cfg
runs = analysis.method_runs(study, ("tf", "kd", "offline-kd", "random"))

# %% [markdown]
# ## Validation perplexity against tokens, compute and wall-clock
# Mean and 95% t-interval over seeds (offline KD: one seed). Offline KD's FLOPs include building its
# logit cache (one teacher forward per cached token), so its curve starts late. Wall-clock (where
# the profile's runs were timed alike) differs between seeds, so each seed is its own line there.
# The bottom row leaves out random init, which would squeeze the others into the bottom of the axis.

# %%
df = analysis.charged_curves(study, runs, ["offline-kd"])  # its logit cache, paid before the first step
study.save_table(df, "02_curves")
study.save_figure(plots.curve_panels([df, df[df.method != cfg.label("random")]], nb.x_axes(cfg, "tokens", "flops", "wall_seconds"),
                                     panel=(5, 4), titles=["All methods", "Without random init"], order=list(runs)), "02_curves")
end = analysis.last_evaluations(df)
display(Markdown("At the end of training (equal tokens), mean validation perplexity: " + ", ".join(
    f"{m} {plots.format_value(end.val_ppl[m])} after {end.flops[m] / end.flops[cfg.label('tf')]:.2f}x TF's FLOPs" for m in end.index) + "."))
nb.wall_clock_caveat(cfg)

# %% [markdown]
# ## Final evaluation: test perplexity and the zero-shot suite
# Mean ± 95% t-interval over seeds; accuracies in percent.

# %%
per_seed = analysis.per_seed_table(study, runs, tasks_in_percent=True)
study.save_table(per_seed, "02_per_seed")
summary = plots.summary_table(per_seed, "method", [c for c in per_seed.columns if c not in ("method", "seed")])
study.save_table(summary, "02_summary")
mean = per_seed.groupby("method", sort=False).ppl.mean()
said = {"kd": ", KD", "offline-kd": ", offline KD", "random": "; the same architecture from random weights"}
display(Markdown(f"At equal tokens TF reaches test perplexity {plots.format_value(mean[cfg.label('tf')])}" + "".join(
    f"{said[m]} {plots.format_value(mean[cfg.label(m)])}" for m in said if cfg.label(m) in mean)
    + ". The claims table (notebook 99) reads KD at TF's compute, not at its tokens."))
plots.table(summary.rename(columns={c: f"{c} %" for c in analysis.accuracy_columns(per_seed)}))

# %% [markdown]
# ## The baselines' variants: every one, at equal tokens and at equal FLOPs
# TF and its learning-rate check; vanilla KD, offline KD and the profile's variants of them
# (`variants:` in the profile, e.g. logit-only KD). Claim C2 compares the best TF with the best KD
# variant, online or offline, each chosen on validation perplexity, never on test: TF at the end of
# its run, KD at TF's total FLOPs. What a variant pays before its first step is charged to it: a
# teacher correction's training, and offline KD's logit cache (one teacher forward per cached token;
# the table gives the cache's size and build time where a run recorded them), so against FLOPs
# their curves start late. Mean over each variant's seeds.

# %%
candidates, pair = [*tf_candidates(study), *kd_candidates(study)], []
if len(candidates) > 2 and kd_candidates(study, online_only=True):
    chosen_tf = best_tf(study)
    chosen = best_kd(study, tf=chosen_tf.method)
    pair = [chosen_tf.method, chosen.method]
    # TF's FLOPs are analytic (per-token FLOPs x tokens): the same at every seed, also at a seed TF lacks
    variants = analysis.variants_table(study, candidates, runs[cfg.label("tf")][0].training["flops"])
    study.save_table(variants, "02_kd_variants")
    display(Markdown(f"C2 compares **{cfg.label(chosen_tf.method)}**, the TF run with the lowest validation perplexity at "
                     f"the end ({chosen_tf.on_seeds}), with **{cfg.label(chosen.method)}**, the KD variant with the lowest "
                     f"validation perplexity at TF's FLOPs ({chosen.on_seeds}). Offline KD's FLOPs include building its logit "
                     "cache (one teacher forward per cached token, before its first step), as a teacher correction's are counted."))
    display(plots.table(plots.summary_table(variants, "variant", [c for c in variants.columns if c not in ("variant", "seed")])))
    ablation = analysis.charged_curves(study, analysis.method_runs(study, candidates), candidates)
    families = [[cfg.label(m) for m in family] for family in candidate_families(study)]  # TF's, online KD's, offline KD's
    study.save_figure(plots.variants_figure(ablation, families, [cfg.label(m) for m in pair]), "02_kd_variants")  # C2's pair thick

# %% [markdown]
# ## Budget sweep: does the equal-compute verdict change with the budget?
# TF and KD at several token budgets (variants with `budget:` in the profile), final test perplexity
# against training tokens and against FLOPs (KD's teacher forward and any teacher correction
# counted). Mean over each point's seeds. The distillation scaling law (Busbridge et al. 2025, arXiv
# 2502.08606) finds that distillation beats supervised training only when the teacher already exists
# and the student's compute stays below a threshold that grows with the student's size; above it,
# supervised training wins. Far below that threshold the law expects KD *ahead* at equal FLOPs (KD
# minus TF negative), its edge shrinking as the budget grows towards the threshold. The table below
# shows which sign KD minus TF at equal FLOPs has here and how it moves with the budget; a positive
# difference (TF ahead) that far below the threshold is a tension with the law, not an agreement.

# %%
sweep, points, differences = analysis.budget_sweep(study)  # TF's and KD's lines (from scratch at a longer budget: notebook 04)
if len(sweep):
    study.save_table(sweep, "02_budget_sweep")
    study.save_figure(plots.budget_sweep_figure(points), "02_budget_sweep")
    display(plots.table(points[["line", "budget", "test ppl", "flops", "seeds"]].rename(columns={"flops": "FLOPs"})))
    if len(differences):
        study.save_table(differences, "02_budget_differences")
        display(Markdown(analysis.SWEEP_ESTIMATORS))
        display(plots.table(differences))

# %% [markdown]
# ## What each method keeps of the teacher's general ability while it adapts to the book
# Perplexity on a text far from the training corpus (the Python language reference's prose, notebook
# 00) and the informative suite, for the teacher and every run of TF, KD, the pair C2 compares (also
# from the truncations of `c2_also_from`) and kd-then-tf that has them (profiles with `probes`; runs
# recorded before the probes have none and are left out).
# KD imitates a general-purpose teacher, TF fits the book: this is where they should differ most.

# %%
nb.show_probes(study, list(dict.fromkeys(["tf", "kd", *pair, *findings.kd_then_tf_runs(cfg)])), "02_out_of_domain",
               also_from=cfg.c2_also_from)  # C2's pair from another truncation too

# %% [markdown]
# ## Compute and memory
# Per-token FLOPs are analytic (forward 2·N_matmul + attention, backward 2x forward; KD adds the
# teacher's forward). Tokens/s is the median over logged steps of each run on the machine that
# trained it (records keep the hardware).

# %%
cost = analysis.cost_table(study, runs)
study.save_table(cost, "02_cost")
if analysis.kd_cost_reading(cost, cfg.label("kd")):
    display(Markdown(analysis.kd_cost_reading(cost, cfg.label("kd"))))
nb.wall_clock_caveat(cfg)
display(plots.table(cost))

# %% [markdown]
# ### Timed side by side
# Where the profile's runs were timed under different conditions (`timings_comparable: false`), the
# cost in time of KD (C3) and of width pruning (C7) comes from a side-by-side timing instead: short
# runs of TF, KD and width pruning (8 steps, the last 5 timed), alternated for three rounds on one
# machine (`distill_lib.timing`), recorded with that machine.

# %%
try:
    timing = analysis.step_rates_table(study)
except MissingRecord as missing:  # a study in parts: not measured yet
    timing = None
    display(Markdown(f"Not timed side by side yet ({missing}); C3 and C7's cost half are not judged."))
if timing is not None:
    study.save_table(timing, "02_step_rates")
    display(plots.table(timing))

# %% [markdown]
# ## Does KD fit? The memory-fit planner for the paper's model sizes
# bf16 mixed precision, AdamW, batch 4 x 2048 tokens, flash attention, no sharding; GiB per device.

# %%
plan = analysis.memory_plan(cfg.plan_cards_gib)
study.save_table(plan, "02_memory_plan")
plots.table(plan)

# %% [markdown]
# ## KD first, then teacher-free (hypothesis H3)
# KD gains per token and loses per FLOP (C2). `kd-then-tf` distils for the first share of the tokens
# and then continues with the LM loss alone, the teacher unloaded: does it keep KD's head start at a
# fraction of KD's cost? Each phase is charged its own FLOPs (the teacher's forward only while it
# distils), beside the KD and TF runs at the same settings. The table reads every run at TF's total
# FLOPs (validation ppl) and at the end (test ppl); notebook 99 judges H3, the share chosen on seed 0
# and judged on the other seeds.

# %%
reading, summary = findings.kd_then_tf_section(study)  # saves 02_kd_then_tf (table and figure) where it has runs
display(Markdown(reading), *([] if summary is None else [plots.table(summary)]))
