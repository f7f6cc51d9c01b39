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
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from distill_lib import plots
from distill_lib.plots import format_value

study = nb.open_study(profile, train)
cfg = study.cfg
n = study.teacher_layers
selectors = list(cfg.selectors)
reference = [c for c in cfg.configs if c not in selectors]

# %% [markdown]
# ## What each selector keeps, and how the model does right after truncation
# Calibration: the validation blocks a run's truncation uses. Perplexity on the test split.


# %%
def selection(strategy):
    """A selector's choice, its per-layer scores and the perplexity right after truncation."""
    from distill_lib.truncate import layer_selection

    model, keep = study.truncated_untrained(strategy)
    record = layer_selection(model) or {}
    return {"kept": [int(i) for i in keep], "scores": record.get("scores"), "meaning": record.get("meaning"),
            "ppl_after_truncation": study.perplexity_of(model)["ppl"]}


chosen = {s: study.result("08_selection", {"strategy": s, "drop": cfg.drop}, lambda s=s: selection(s))
          for s in selectors}
reference_runs = {s: study.truncation(s) for s in reference}
order = selectors + reference
kept = {**{s: chosen[s]["kept"] for s in selectors}, **{s: reference_runs[s]["kept"] for s in reference}}
grid = np.array([[1 if i in kept[s] else 0 for i in range(n)] for s in order])
fig, ax = plt.subplots(figsize=(0.32 * n + 2.5, 0.38 * len(order) + 1.2))
ax.imshow(grid, cmap="Greys", vmin=-0.3, vmax=1.2, aspect="auto")
ax.set_yticks(range(len(order)), order)
ax.set_xticks(range(n))
ax.set_xticklabels([str(i) if n <= 16 or i % 5 == 0 or i == n - 1 else "" for i in range(n)])
ax.set(xlabel="teacher layer (0 = first)", title="Layers kept (dark): selectors, then the paper's configurations")
ax.grid(False)
study.save_figure(fig, "08_kept")

# %% [markdown]
# ## Per-layer scores: is there a U-shape?
# Published rankings of Llama-2-7B and Llama-3-8B find the first and last layers the most
# important. Left: calibration perplexity without each layer alone (`ppl-removal`); right: the
# Taylor importance of each layer (`taylor`). Higher = removing it hurts more.

# %%
profiles = {s: chosen[s]["scores"] for s in ("ppl-removal", "taylor") if s in chosen and chosen[s]["scores"]}
if profiles:
    fig, axes = plt.subplots(1, len(profiles), figsize=(5.5 * len(profiles), 3.4), squeeze=False)
    for ax, (s, values) in zip(axes[0], profiles.items()):
        ax.bar(range(len(values)), values, color="tab:blue" if s == "ppl-removal" else "tab:orange")
        ax.set(title=s, xlabel="teacher layer (0 = first)",
               ylabel="calibration ppl without the layer" if s == "ppl-removal" else "Σ |θ·∂L/∂θ| over the layer")
        if s == "ppl-removal" and max(values) > 10 * min(values):  # a layer whose removal breaks the model
            plots.log_axis(ax)
        plots.integer_axis(ax)
    fig.tight_layout()
    study.save_figure(fig, "08_layer_scores")
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
# Test perplexity right after truncation and after the profile's TF budget (first seed of
# notebook 01's configurations), selectors next to the paper's configurations.

# %%
seed = study.config_seeds()[0]
rows = []
for s in order:
    run = study.student("tf", strategy=s, seed=seed)
    after = study.headline(run)
    rows.append({"selection": s, "kind": "selector" if s in selectors else "paper configuration",
                 "kept layers": " ".join(map(str, kept[s])),
                 "ppl right after truncation": chosen[s]["ppl_after_truncation"] if s in selectors
                 else reference_runs[s]["ppl_after_truncation"],
                 "test ppl after healing": after["ppl"], "avg acc % after healing": 100 * after.get("avg_acc", np.nan)})
healed = pd.DataFrame(rows)
study.save_table(healed, "08_selection")
best = healed.sort_values("test ppl after healing").iloc[0]
paper = healed[healed.selection == cfg.strategy]
display(Markdown(f"Lowest test perplexity after healing: `{best.selection}` ({format_value(best['test ppl after healing'])}, "
                 f"kept {best['kept layers']})" + (f"; the paper's `{cfg.strategy}`: "
                                                   f"{format_value(paper['test ppl after healing'].iloc[0])}" if len(paper) else "")
                 + ". One seed: differences smaller than the seed spread of notebook 01 are not findings."))
plots.table(healed)
