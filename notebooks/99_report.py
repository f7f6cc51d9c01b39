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
# # 99 · Report: the paper's claims, tested
#
# Every number below comes from the runs of the earlier notebooks (reused from the run store, not
# retrained). Perplexities are token-level on the held-out *test* split of our corpus (validation
# split for curves); "avg acc" is the mean over the offline zero-shot suite's accuracy tasks.
# Verdict rules are stated per claim; 95% confidence intervals are over paired seeds.

# %% tags=["parameters"]
profile = "mini"

# %%
import json

import pandas as pd

from distill_lib.study import Study
from distill_lib.report import claims
from distill_lib.runs import environment_record

pd.set_option("display.max_colwidth", 200)
study = Study.load(profile)
for note in study.cfg.notes:  # the profile's caveats, stated before any number
    print(f"NOTE: {note}")
table = claims(study)
study.save_table(table, "99_claims")
table[["claim", "statement", "ours", "paper", "verdict", "rule", "seeds"]]

# %% [markdown]
# ## Set-up

# %%
summaries = [json.loads(p.read_text()) for p in study.root.glob("*/complete.json")]
env = environment_record()
setup = {
    "profile": study.cfg.name, "description": study.cfg.description, "seeds": study.cfg.seeds,
    "runs": len(summaries), "training wall-clock (s, all runs)": round(sum(s["summary"]["wall_seconds"] for s in summaries)),
    "corpus": study.cfg.data.corpus, "vocab": len(study.data.tokenizer), "block length": study.cfg.data.block_length,
    "teacher": f"{study.cfg.teacher_path or 'trained here'}: {study.teacher_layers} layers, d={study.cfg.teacher_model.hidden_size}",
    "student budget (tokens)": study.cfg.student_train.max_steps * study.cfg.student_train.batch_size * study.cfg.data.block_length,
    **env["versions"], **{f"hw.{k}": v for k, v in env["hardware"].items()},
}
pd.Series(setup, name="value").to_frame()

# %% [markdown]
# ## Table 6 next to the paper's (300M base, 20B tokens; C4 perplexity / 6-task accuracy)

# %%
ours = pd.read_csv(study.figures / "01_table6.csv").set_index("configuration")
paper = pd.DataFrame({"paper 300M ppl": [23.0, 24.5, 25.6, 24.0, 23.0], "paper 300M acc": [53.2, 52.9, 51.6, 52.9, 53.2],
                      "paper 1.1B ppl": [18.1, 17.3, 22.0, 18.6, 18.6], "paper 1.1B acc": [54.8, 55.1, 53.1, 54.7, 53.8]},
                     index=["max-gap", "input", "output", "middle", "both"])
paper.join(ours[["ppl", "ppl_ci95", "avg_acc"]].rename(columns=lambda c: f"ours {c}"), how="left")

# %% [markdown]
# ## The teacher: the reference every student is read against

# %%
pd.Series(study.headline(study.teacher_dir()), name="teacher").to_frame()
