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
# # 06 · Inference speed of the compressed model (v3 Table 3)
#
# Time to generate a fixed number of tokens (greedy, KV cache) from fixed prompts and forward-pass
# throughput, teacher vs the truncated student, same device, threads and settings; min / median /
# max over repeats after a warm-up. The paper reports a 1.84x end-to-end speed-up at 50% depth.

# %% tags=["parameters"]
profile = "mini"

# %%
import numpy as np
import pandas as pd
import torch

from distill_lib.study import Study
from distill_lib.evaluate import latency, speedup
from distill_lib.models import load_causal_lm

study = Study.load(profile)
cfg = study.cfg.latency
blocks = study.data.blocks("test")
prompts = torch.from_numpy(blocks[: cfg.batch, : cfg.prompt_length].astype(np.int64))
models = {"teacher": load_causal_lm(study.teacher_dir()),
          f"student ({study.cfg.strategy}, TF)": study.student("tf", seed=study.cfg.seeds[0]).load_model()}
results = {name: latency(m, prompts, new_tokens=cfg.new_tokens, repeats=cfg.repeats) for name, m in models.items()}

# %%
base = results["teacher"]
rows = []
for name, r in results.items():
    up = speedup(base, r)
    rows.append({"model": name, "layers": models[name].config.num_hidden_layers,
                 "generate_s_median": r["generate_seconds"]["median"], "generate_s_min": r["generate_seconds"]["min"],
                 "generate_s_max": r["generate_seconds"]["max"], "speedup_median": up["median"],
                 "speedup_min..max": f"{min(up.values()):.2f}..{max(up.values()):.2f}",
                 "forward_tokens_per_s": r["forward_tokens_per_s"], "threads": r["threads"]})
table = pd.DataFrame(rows)
study.save_table(table, "06_latency")
table
