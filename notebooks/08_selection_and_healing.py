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
from matplotlib.ticker import EngFormatter

from distill_lib import plots
from distill_lib.analysis import val_ppl_at_flops
from distill_lib.plots import format_value
from distill_lib.study import curves

study = nb.open_study(profile, train)
cfg = study.cfg
n = study.teacher_layers
selectors = list(cfg.selectors)
reference = study.selection_reference_configs()

# %% [markdown]
# ## What each selector keeps, and how the model does right after truncation
# Calibration: the blocks a run's truncation uses (the validation split's first ones, or the
# training split's where the profile sets `calibration_split: train`). Perplexity on the test split.


# %%
def selection(strategy):
    """A selector's choice, its per-layer scores and the perplexity right after truncation."""
    from distill_lib.truncate import layer_selection

    model, keep = study.truncated_untrained(strategy)
    record = layer_selection(model) or {}
    return {"kept": [int(i) for i in keep], "scores": record.get("scores"),
            "ppl_after_truncation": study.perplexity_of(model)["ppl"]}


calibration = {"calibration_split": cfg.calibration_split} if cfg.calibration_split else {}
chosen = {s: study.result("08_selection", {"strategy": s, "drop": cfg.drop, **calibration}, lambda s=s: selection(s))
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
# Test perplexity right after truncation and after the profile's TF budget (seeds: `selector_seeds`,
# by default the first of notebook 01's), selectors next to the paper's configurations.

# %%
rows = []
for s in order:
    for seed in study.selector_seeds():
        after = study.headline(study.student("tf", strategy=s, seed=seed))
        rows.append({"selection": s, "seed": seed, "kind": "selector" if s in selectors else "paper configuration",
                     "kept layers": " ".join(map(str, kept[s])),
                     "ppl right after truncation": chosen[s]["ppl_after_truncation"] if s in selectors
                     else reference_runs[s]["ppl_after_truncation"],
                     "test ppl after healing": after["ppl"],
                     "avg acc % after healing": 100 * after.get("avg_acc", np.nan)})
healed = pd.DataFrame(rows)
study.save_table(healed, "08_selection")
mean = healed.groupby("selection", sort=False)["test ppl after healing"].mean()
best = mean.idxmin()
display(Markdown(f"Lowest mean test perplexity after healing: `{best}` ({format_value(mean[best])}, kept "
                 f"{' '.join(map(str, kept[best]))})" + (f"; the paper's `{cfg.strategy}`: {format_value(mean[cfg.strategy])}"
                                                         if cfg.strategy in mean else "")
                 + f". Seeds: {len(study.selector_seeds())}; hypothesis H1 (notebook 99) tests ppl-removal against "
                   "max-gap with its interval."))
plots.table(healed)

# %% [markdown]
# ## Healing: full continued pretraining, LoRA, partial fine-tuning, a replacement layer
# On one truncation fixed before any number was seen (`healing_strategy` of the profile: a
# contiguous block, so that LLM-Streamline's replacement layer applies), each healing method trains
# for the profile's token budget: **full** (the paper's continued pretraining), **LoRA** (adapters
# on every linear layer of the decoder, merged at the end), **partial** (only the LM head, the final
# norm and the last layers), **replace** (one new layer in the removed block's place, first fitted
# to the block's output, then everything trains; its first stage is counted in its tokens and
# FLOPs). Each ends as a plain Hugging Face checkpoint. Compared at the end of each run (test
# perplexity: full, LoRA and partial at equal tokens; replace's fitting stage adds its own steps, so
# it trains on more tokens, given in the table) and at equal FLOPs (validation perplexity read at the
# cheapest method's total FLOPs).

# %%
healers = [m for m in cfg.methods if cfg.variants.get(m, {}).get("healing")]
if healers:
    hs = cfg.healing_strategy
    seeds = sorted({s for m in healers for s in study.seeds(m)})
    groups = {"full": [study.student("tf", strategy=hs, seed=s) for s in seeds],
              **{cfg.variants[m]["healing"]["method"]: [study.student(m, strategy=hs, seed=s) for s in study.seeds(m)]
                 for m in healers}}
    curve = curves(groups)
    # mean training FLOPs per healing method: the cheapest is where all are compared, and the
    # scatter plots them in FLOPs (the table shows TFLOPs)
    mean_flops = pd.Series({label: np.mean([r.summary["summary"]["flops"] for r in runs])
                            for label, runs in groups.items()})
    cheapest = mean_flops.min()
    rows = []
    for label, runs in groups.items():
        for r in runs:
            summary = r.summary["summary"]
            at = val_ppl_at_flops(r, cheapest)
            rows.append({"healing": label, "seed": r.config.train.seed,
                         "trainable parameters": summary.get("trainable_parameters", np.nan),
                         "optimizer state MiB": summary.get("optimizer_state_bytes", np.nan) / 2**20,
                         "tokens/s": summary.get("tokens_per_s", np.nan), "tokens": summary["tokens"],
                         "TFLOPs": summary["flops"] / 1e12,
                         "val ppl at equal FLOPs": at, "test ppl at the end": study.headline(r)["ppl"]})
    healing = pd.DataFrame(rows)
    study.save_table(healing, "08_healing")
    xs = nb.x_axes(cfg, "flops", "wall_seconds")
    fig, axes = plt.subplots(1, len(xs) + 1, figsize=(5.4 * (len(xs) + 1), 4.5))
    for ax, x in zip(axes[:-1], xs):
        plots.draw_curves(ax, curve, x, "val_ppl", order=list(groups))
        plots.log_axis(ax)
        if x == "flops":
            plots.eng_axis(ax)
        plots.label_axes(ax, x, "val_ppl")
    means = healing.groupby("healing", sort=False).mean(numeric_only=True)
    rank = mean_flops.rank(method="first").astype(int)  # order in compute, for the label offsets
    for label, row in means.iterrows():
        axes[-1].scatter(mean_flops[label], row["test ppl at the end"], s=40 + 400 * row["optimizer state MiB"] / means["optimizer state MiB"].max(),
                        alpha=0.7, label=label)
        axes[-1].annotate(f"{label}: {row['optimizer state MiB']:.3g} MiB", (mean_flops[label], row["test ppl at the end"]),
                         # neighbours in compute alternate above and below, so close points keep apart labels
                         textcoords="offset points", xytext=(6, 6 if rank[label] % 2 else -14), fontsize=8)
    plots.eng_axis(axes[-1])
    axes[-1].margins(0.25)
    axes[-1].set(xlabel="training compute (FLOPs, analytic)", ylabel="test perplexity",
                title="Area: optimizer-state memory")
    plots.figure_legend(fig, axes[:-1])
    study.save_figure(fig, "08_healing")
    nb.wall_clock_caveat(cfg)
    best = means["val ppl at equal FLOPs"].idxmin() if means["val ppl at equal FLOPs"].notna().any() else None
    at_cheapest = ", ".join(f"{label} {format_value(v)}" for label, v in means["val ppl at equal FLOPs"].items())
    tokens = means["tokens"]
    more = [f"{label} {tokens[label]:,.0f} ({tokens[label] / tokens['full'] - 1:+.0%})" for label in tokens.index
            if tokens[label] != tokens["full"]]
    same = [label for label in tokens.index if tokens[label] == tokens["full"]]
    seen = (f" Test perplexity at the end: {', '.join(same)} at equal tokens ({tokens['full']:,.0f})"
            + (f"; not at equal tokens: {', '.join(more)}." if more else "."))
    display(Markdown((f"Healing on `{hs}`; at the cheapest method's {EngFormatter(unit='FLOPs', places=2, sep=' ')(cheapest)} the lowest validation "
                      f"perplexity is {best}'s ({at_cheapest}; means over seeds)." if best else f"Healing on `{hs}`.") + seen))
    display(plots.table(plots.summary_table(healing, "healing", [c for c in healing.columns if c not in ("healing", "seed")])))
