# %% [markdown]
# # 06 · Inference speed of the compressed model (v3 Table 3)
#
# Time to generate a fixed number of tokens (greedy, KV cache) from fixed prompts and forward-pass
# throughput, teacher vs the truncated student, same device, threads and settings; min / median /
# max over repeats after a warm-up. The paper reports a 1.84x end-to-end speed-up at 50% depth.
# Timings are recorded with the machine that made them (a report from records shows those).

# %% tags=["parameters"]
import distill_lib.notebook as nb  # first: every cache inside the project, model hubs offline

profile = nb.default_profile()  # DISTILL_PROFILE, else "mini"
train = nb.default_train()  # False (DISTILL_TRAIN 0) reads the committed records only and trains nothing

# %%
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import plots
from distill_lib.evaluations import latency
from distill_lib.paper import GENERATION_SPEEDUP

study = nb.open_study(profile, train)
cfg = study.cfg.latency
student = study.student("tf", seed=study.seeds("tf")[0])
results = latency(study, student)

# %%
base = results["teacher"]
rows = []
for name in ("teacher", "student"):
    r = results[name]
    up = {s: base["generate_seconds"][s] / r["generate_seconds"][s] for s in ("min", "median", "max")}
    rows.append({"model": name if name == "teacher" else f"student ({study.cfg.strategy}, TF)", "layers": r["layers"],
                 "generate s (median)": r["generate_seconds"]["median"], "generate s (min)": r["generate_seconds"]["min"],
                 "generate s (max)": r["generate_seconds"]["max"], "speed-up (median)": up["median"],
                 "speed-up range": f"{min(up.values()):.2f}–{max(up.values()):.2f}",
                 "forward tokens/s": r["forward_tokens_per_s"], "threads": r["threads"]})
table = pd.DataFrame(rows)
study.save_table(table, "06_latency")
hw = results["hardware"]
display(Markdown(f"Generating {cfg.new_tokens} tokens (batch {cfg.batch}, prompt {cfg.prompt_length}) the student is "
                 f"{rows[1]['speed-up (median)']:.2f}x faster than the teacher (paper: {GENERATION_SPEEDUP}x), "
                 f"measured on {hw['machine']} with {rows[0]['threads']} threads"
                 + ("; the student's trained weights were not in the run store, so its architecture was timed right "
                    "after truncation (generating exactly that many tokens is the same work whatever the weights)"
                    if results.get("student_weights") == "truncated, untrained" else "") + "."))
plots.table(table)
