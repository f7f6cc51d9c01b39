# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Corpus, tokenizer and base models
#
# The paper starts from base models its authors trained themselves (300M / 1.1B on C4). The
# miniature study does the same on its own corpus: it trains a *teacher* from scratch, and the
# *half-depth model from scratch* (same width, half the layers), the paper's upper-bound baseline.
# All settings come from `params/<profile>.yaml`; papermill injects `profile`.

# %% tags=["parameters"]
profile = "mini"

# %%
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns

from distill_lib.study import Study, curves
from distill_lib.models import build_model, load_causal_lm, parameter_counts
from distill_lib.evaluate import evaluate_model, headline

sns.set_theme(style="whitegrid")
study = Study.load(profile)
cfg = study.cfg

# %% [markdown]
# ## Corpus and tokenizer

# %%
stats = pd.DataFrame(study.data.stats["splits"]).T
stats.index.name = "split"
study.save_table(stats.reset_index(), "00_corpus")
print(f"corpus: {cfg.data.corpus}, tokenizer: {cfg.data.tokenizer} (vocab {len(study.data.tokenizer)}), "
      f"block length {cfg.data.block_length}")
stats

# %% [markdown]
# ## The teacher and the half-depth model trained from scratch
# A profile with `teacher_path` starts from a pretrained teacher (nothing to train); the half-depth
# model from scratch is trained only when the profile's `methods` include `scratch`.

# %%
teacher = None if cfg.teacher_path else study.teacher()
scratch = {s: study.student("scratch", seed=s) for s in cfg.seeds} if "scratch" in cfg.methods else {}
t_model = load_causal_lm(study.teacher_dir())
sizes = pd.DataFrame([{"model": "teacher", "source": cfg.teacher_path or "trained here",
                       "layers": t_model.config.num_hidden_layers, **parameter_counts(t_model)}]
                     + [{"model": f"scratch (seed {s})", "source": "trained here",
                         "layers": r.load_model().config.num_hidden_layers, **parameter_counts(r.load_model())}
                        for s, r in scratch.items()])
sizes

# %%
trained = ({"teacher": teacher} if teacher else {}) | {f"scratch s{s}": r for s, r in scratch.items()}
if trained:
    df = curves(trained)
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=df, x="tokens", y="val_ppl", hue="label", marker="o", ax=ax)
    ax.set(yscale="log", title="Validation perplexity while training from scratch", xlabel="training tokens")
    study.save_figure(fig, "00_base_training")

# %% [markdown]
# ## How good is the teacher? (against an untrained model of the same architecture)
# For a pretrained teacher these are the reference scores every student is read against.

# %%
random_teacher = build_model(cfg.teacher_model, len(study.data.tokenizer), seed=0)
rows = [
    {"model": "untrained (random)", **headline(evaluate_model(random_teacher, study.data.tokenizer, study.data,
                                                              cfg.eval, study.suite_dir), study.tasks)},
    {"model": "teacher", **study.headline(study.teacher_dir())},
    *[{"model": f"scratch half-depth (seed {s})", **study.headline(r)} for s, r in scratch.items()],
]
base = pd.DataFrame(rows)
study.save_table(base, "00_base_models")
base
