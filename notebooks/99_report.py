# %% [markdown]
# # 99 · Report: the paper's claims, tested
#
# Every number below is read from the run records of the earlier notebooks (`records/<profile>/`),
# never retrained here. Perplexities are token-level on the held-out *test* split of our corpus
# (validation split for curves); "avg acc" is the mean accuracy over the zero-shot suite.
# Intervals are 95% Student-t intervals over paired seeds. Every difference is signed so that
# **positive goes the paper's way**. Verdicts: *reproduced* (the interval lies on the paper's
# side), *tie* (a "matches or beats" claim whose interval covers zero: consistent with "matches"),
# *inconclusive* (a strict claim whose interval covers zero, or one seed), *not reproduced* (the
# interval lies on the other side), *not tested* (the profile leaves the method out, or a study run
# in parts has not recorded its runs yet). Each claim names the version of the paper it comes from.

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

from distill_lib import plots
from distill_lib.claims import claims, field_context, findings, reading

study = nb.open_study(profile, train)
cfg = study.cfg
records = study.records.runs()
first = records[0]
display(Markdown(f"**Profile `{cfg.name}`**: {cfg.description}"))
for note in cfg.notes:  # the profile's caveats, before any number
    display(Markdown(f"> **Caveat.** {note}"))

# %% [markdown]
# ## Verdicts

# %%
table = claims(study)
study.save_table(table, "99_claims")
counts = table.verdict.value_counts()
display(Markdown("Of the eight claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."))
shown = table.assign(**{"difference (95% CI)": [plots.format_value(d, h) for d, h in zip(table["diff"], table["ci95"])]})
plots.table(shown[["claim", "statement", "version", "verdict", "difference (95% CI)", "positive means", "seeds"]])

# %% [markdown]
# ## Claim by claim

# %%
display(Markdown("\n\n".join(reading(row) for _, row in table.iterrows())))
display(Markdown(field_context(table)))

# %% [markdown]
# ## Beyond the paper: the study's own hypotheses
# Stated with their rules before the numbers were seen (notebook 08), tested like the claims.

# %%
own = findings(study)
study.save_table(own, "99_findings")
shown = own.assign(**{"difference (95% CI)": [plots.format_value(d, h) for d, h in zip(own["diff"], own["ci95"])]})
display(plots.table(shown[["hypothesis", "statement", "verdict", "difference (95% CI)", "positive means", "seeds"]]))
display(Markdown("\n\n".join(f"**{row.hypothesis}** ({row.statement}): {row.ours}. Verdict: **{row.verdict}** "
                               f"(rule: {row.rule})." for row in own.itertuples())))

# %% [markdown]
# ## Key figures

# %%
for name, caption in [("02_curves", "TF, KD, offline KD and random init against tokens, FLOPs and (where the runs were timed alike) wall-clock (notebook 02)."),
                      ("01_recovery", "Recovery of each truncation configuration by continued pretraining (notebook 01)."),
                      ("01_table6", "Our configurations next to the paper's Table 6 (notebook 01)."),
                      ("04_vs_scratch", "Pruned + continued vs from scratch (notebook 04)."),
                      ("07_width_vs_depth", "Width vs depth pruning (notebook 07).")]:
    path = study.figures / f"{name}.png"
    if path.exists():
        display(Markdown(f"**{caption}**"))
        display(Image(filename=str(path), width=900))

# %% [markdown]
# ## The teacher: the reference every student is read against

# %%
teacher = pd.DataFrame([{"model": "teacher", **study.teacher_headline()}]).drop(columns=["avg_acc_stderr"], errors="ignore")
plots.table(teacher, percent=[c for c in teacher.columns if "/acc" in c or c == "avg_acc"])

# %% [markdown]
# ## Set-up: what was run, where

# %%
student = cfg.student_train
setup = {
    "profile": cfg.name, "seeds": ", ".join(map(str, cfg.seeds)), "training runs recorded": len(records),
    "training wall-clock, all runs (min)": round(sum(r["summary"]["wall_seconds"] for r in records) / 60),
    "corpus": cfg.data.corpus, "block length": cfg.data.block_length,
    "teacher": f"{cfg.teacher_path or 'trained here'}, {study.teacher_layers} layers",
    "student budget (tokens)": f"{student.max_steps * student.batch_size * cfg.data.block_length:,}",
    "precision": student.precision, "evaluation task sets": ", ".join(cfg.eval.task_sets),
    **{f"trained with {k}": v for k, v in first["versions"].items()},
    **{f"trained on: {k}": v for k, v in first["hardware"].items() if k in ("machine", "cpus", "torch_threads", "cuda")},
}
plots.table(pd.DataFrame({"setting": list(setup), "value": [str(v) for v in setup.values()]}))
