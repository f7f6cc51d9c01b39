# %% [markdown]
# # 00 · Corpus, tokenizer and base models
#
# The paper starts from base models its authors trained themselves (300M / 1.1B on C4). The
# miniature study does the same on its own corpus: it trains a *teacher* from scratch and, where the
# profile includes it, the *half-depth model from scratch* (same width, half the layers), the
# paper's upper-bound baseline. A profile with `teacher_path` starts from a pretrained teacher.

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import analysis, plots
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
for note in cfg.notes:
    display(Markdown(f"> **Note.** {note}"))

# %% [markdown]
# ## Corpus and tokenizer
# Each document (a Bible chapter, for `web-bible`) goes wholly to one split.

# %%
corpus = study.result("00_corpus", {}, lambda: {"splits": study.data.stats["splits"],
                                                 "vocab": len(study.data.tokenizer)})
splits = pd.DataFrame(corpus["splits"]).T.rename_axis("split").reset_index()
study.save_table(splits, "00_corpus")
display(Markdown(f"Corpus `{cfg.data.corpus}`, tokenizer `{cfg.data.tokenizer}` with {corpus['vocab']:,} tokens, "
                 f"blocks of {cfg.data.block_length} tokens."))
plots.table(splits)

# %% [markdown]
# ## The teacher and the half-depth model from scratch

# %%
teacher = None if cfg.teacher_path else study.teacher()
scratch = analysis.seed_runs(study, "scratch") if "scratch" in cfg.methods else []
info = study.teacher_model_info
sizes = pd.DataFrame([{"model": "teacher", "source": cfg.teacher_path or "trained here", **info}]
                     + [{"model": f"half-depth from scratch (seed {r.config.train.seed})", "source": "trained here",
                         **r.record["model"]} for r in scratch])
sizes = sizes[["model", "source", "layers", "total", "embedding", "non_embedding"]]
study.save_table(sizes, "00_model_sizes")
plots.table(sizes)

# %%
trained = ({"teacher": teacher} if teacher else {}) | ({"from scratch": scratch} if scratch else {})
if trained:
    df = curves(trained)
    study.save_figure(plots.token_curves(df, "Training from scratch", figsize=(7, 4), marker="o"), "00_base_training")
    final = {m: np.mean([analysis.final_val_ppl(r) for r in (runs if isinstance(runs, list) else [runs])])
             for m, runs in trained.items()}
    display(Markdown("Final validation perplexity: " + ", ".join(f"{m} {plots.format_value(v)}" for m, v in final.items())
                     + " (each run's last evaluation, the mean over seeds where there are several)."))

# %% [markdown]
# ## How good is the teacher? (against an untrained model of the same architecture)
# Test-split perplexity, bits per byte and the zero-shot suite's average accuracy; these are the
# reference every student is read against.

# %%
from distill_lib.config import to_dict
from distill_lib.evaluate import headline
from distill_lib.models import build_model

untrained = headline(study.evaluate_model("00_untrained-evaluation", {"model": to_dict(cfg.teacher_model)},
                                          lambda: build_model(cfg.teacher_model, len(study.data.tokenizer), seed=0)),
                     study.tasks)
rows = [{"model": "untrained (random weights)", **untrained},
        {"model": "teacher", **study.teacher_headline()},
        *[{"model": f"half-depth from scratch (seed {r.config.train.seed})", **study.headline(r)} for r in scratch]]
base = analysis.headline_table(rows)  # the average accuracy in percent (the tasks' own columns stay fractions)
study.save_table(base, "00_base_models")
t = base.set_index("model").loc["teacher"]
display(Markdown(f"The teacher's test perplexity is {plots.format_value(t.ppl)} against "
                 f"{plots.format_value(untrained['ppl'])} untrained"
                 + (f"; its average zero-shot accuracy is {t.avg_acc:.1f}% against {100 * untrained['avg_acc']:.1f}%."
                    if "avg_acc" in base else ".")))
plots.table(base.rename(columns={"avg_acc": "avg_acc %"}), percent=[c for c in base.columns if "/acc" in c])

# %% [markdown]
# ## The informative suite and the out-of-domain text (profiles with `probes`)
# The first offline suite sits at the floor or the ceiling for a real teacher (SmolLM2: cloze 26%,
# pairs 97%). The probes' suite is built so that it does not: each task's accuracy with its standard
# error, against chance; and the perplexity of a text far from the training corpus (the Python
# language reference's prose that ships with CPython), which students are read against in notebook 02.

# %%
from distill_lib.probes import teacher_suite_table

teacher_probes = study.teacher_probes()
if teacher_probes is None:
    display(Markdown(f"Profile {cfg.name} sets no `probes`: neither is measured."))
else:
    suite = teacher_suite_table(teacher_probes)
    study.save_table(suite, "00_probe_suite")
    ood = teacher_probes["ood"]
    display(Markdown(f"{suite.informative.sum()} of {len(suite)} tasks are informative for the teacher (between 35% "
                     f"and 85%). Its out-of-domain perplexity is {plots.format_value(ood['ppl'])} ({ood['blocks']} blocks of "
                     f"{ood['block_length']} tokens of the Python {ood['python']} language reference, sha256 "
                     f"{ood['sha256']}), against {plots.format_value(t.ppl)} on the test split."))
    display(plots.table(suite))
