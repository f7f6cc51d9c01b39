# %% [markdown]
# # 99 · Report: the paper's claims, tested
#
# Every number below is read from the run records of the earlier notebooks (`records/<profile>/`),
# never retrained here. Perplexities are token-level on the held-out *test* split of our corpus
# (validation split for curves); "avg acc" is the mean accuracy over the zero-shot suite.
# Perplexities are compared in **nats** (the log of their ratio), with the perplexities beside them.
# Intervals are 95% Student-t intervals over paired seeds, and every difference is signed so that
# **positive goes the paper's way**. Each claim is tested by the test its wording asks for:
# *superiority* ("beats"), *non-inferiority* ("matches or beats", "does not help") or *equivalence*
# ("≈", "converges", two one-sided tests against a declared margin). Verdicts: *reproduced*,
# *not reproduced*, *inconclusive* (the interval is too wide for the test, or one seed), *not tested*
# (the profile leaves the method out, or a study run in parts has not recorded its runs yet); the
# Holm column adjusts them for testing the claims as one family. The rules and margins below are
# declared once in `distill_lib.stats`. Each claim names the version of the paper it comes from.

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

from distill_lib import plots
from distill_lib.claims import claims, claims_summary, field_context, reading
from distill_lib.findings import findings
from distill_lib.stats import RULES

study = nb.open_study(profile, train)
cfg = study.cfg
records = study.records.runs()
first = records[0]
display(Markdown(f"**Profile `{cfg.name}`**: {cfg.description}"))
for note in cfg.notes:  # the profile's caveats, before any number
    display(Markdown(f"> **Caveat.** {note}"))

# %% [markdown]
# ## The rules

# %%
display(Markdown("\n".join(f"- **{name}.** {text}" for name, text in RULES.items())))

# %% [markdown]
# ## Verdicts
# One row per test: C2 at equal FLOPs and at equal tokens (and again from each truncation of
# `c2_also_from`), C5 per removal schedule, C7's quality against max-gap and against the best depth
# configuration (chosen on validation) and its cost, C8 for the paper's unweighted sum and for each
# weighting recorded. A profile with `tuned` judges C4, C5, C7 and C8 at the base learning rate and
# again with every run at the tuned one: each of those rows names its rate ("lr 0.0012 (tuned)").

# %%
table = claims(study)
study.save_table(table, "99_claims")
counts = table["holm verdict"].value_counts()
display(Markdown(f"Of the {len(table)} tests: " + ", ".join(f"{n} {v}" for v, n in counts.items())
                 + " (after Holm's adjustment)."))
plots.table(claims_summary(table))

# %% [markdown]
# ## Claim by claim

# %%
display(Markdown("\n\n".join(reading(row) for _, row in table.iterrows())))
display(Markdown(field_context(table)))

# %% [markdown]
# ## Beyond the paper: the study's own hypotheses
# Stated with their rules before the numbers were seen (H1, H2: notebook 08; H3, distilling only early:
# notebook 02), tested like the claims (their own Holm family); with `tuned`, H1 and H2 at both rates
# (at the tuned rate LoRA's own rate is chosen on validation first).

# %%
own = findings(study)
study.save_table(own, "99_findings")
display(plots.table(claims_summary(own, key="hypothesis")))
display(Markdown("\n\n".join(reading(row.rename({"hypothesis": "claim"})) for _, row in own.iterrows())))

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
