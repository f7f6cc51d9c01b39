"""Figures and tables shared by the notebooks, so that every figure draws its seeds the same way
and every table shows the same interval as the figure next to it.

- Intervals are Student-t 95% intervals over seeds (`stats.mean_ci`), in tables and in the bands
  of figures alike; one seed draws a line without a band. A perplexity curve's band is taken in
  nats (log perplexity) and exponentiated: a geometric mean with a multiplicative interval, which
  on the log axis the curves use cannot reach below 1 (the tables' "±" is in the table's own unit).
- One legend per figure, human axis labels with units, no offset notation, integer ticks for layer
  indices, engineering prefixes for tokens and FLOPs (`1.2M`, `30T`).
- The study's figures are built here and returned (the layer grid of notebooks 01 and 08, curves
  against tokens or compute, ...): a notebook saves and shows them, and draws none itself. The data
  they draw comes from records through `distill_lib.analysis`.
"""
from __future__ import annotations

from typing import Sequence

import math

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from distill_lib import methods
from distill_lib.stats import format_value, mean_ci  # format_value is also read from here (notebooks)

#: Human labels of the curve columns that the study's figures put on their axes.
AXIS_LABELS = {
    "tokens": "training tokens",
    "flops": "training compute (FLOPs, analytic)",
    "wall_seconds": "wall-clock (seconds)",
    "step": "training step",
    "val_ppl": "validation perplexity",
    "test_ppl": "test perplexity",
    "val_loss": "validation loss (nats/token)",
}
#: One colour per method in every figure of the study.
#: (each method declares its own, distill_lib.methods; notebook 07 names its two lines by the paper's names)
METHOD_COLORS = {**methods.COLORS, "width (DimCHOP)": "tab:red", "depth (LayerCHOP)": "tab:blue"}


def style() -> None:
    """The study's plotting defaults (called once per notebook)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams.update({"axes.formatter.useoffset": False, "axes.formatter.limits": (-4, 6),
                         "figure.dpi": 100, "savefig.dpi": 130, "legend.frameon": False})


def summarize(df: pd.DataFrame, by: Sequence[str] | str, value: str) -> pd.DataFrame:
    """Mean, 95% t-interval (lo, hi, half-width) and the number of seeds of `value` per group:
    the one function behind every band and every "±" of the study."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for keys, group in df.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        mean, half = mean_ci(group[value].tolist())
        rows.append({**dict(zip(by, keys)), "mean": mean, "ci95": half, "n": len(group),
                     "lo": mean - (half or 0.0), "hi": mean + (half or 0.0)})
    return pd.DataFrame(rows)


def draw_curves(ax, df: pd.DataFrame, x: str, y: str = "val_ppl", hue: str = "method",
                colors: dict | None = None, order: Sequence[str] | None = None, marker: str | None = None,
                emphasis: Sequence[str] = (), styles: dict | None = None) -> None:
    """Mean curve per `hue` with its 95% t-band over seeds (rows sharing `hue` and `x`); a perplexity
    (`*_ppl`) is averaged in nats: the line is the seeds' geometric mean, the band exp(mean ± t·se) of
    their log perplexities. Where
    the x values of seeds differ (wall-clock), each seed is drawn as its own thin line instead.
    Series named in `emphasis` are drawn thick and solid, the others thin; `styles` gives a series
    a line style (shades of one colour are told apart by it)."""
    colors = {**METHOD_COLORS, **(colors or {})}
    groups = list(order) if order is not None else list(dict.fromkeys(df[hue]))
    # series without a colour of their own take the next tab10 colour no named series uses here
    taken = {colors.get(name) for name in groups}
    palette = iter([c for c in mpl.colormaps["tab10"].colors if mpl.colors.to_hex(c) not in
                    {mpl.colors.to_hex(t) for t in taken if t}] * 4)
    for name in groups:
        part = df[df[hue] == name]
        if part.empty:
            continue
        color = colors.get(name) or next(palette)
        shared_x = part.groupby("seed")[x].apply(tuple).nunique() == 1 if "seed" in part else True
        if shared_x:
            # a perplexity is exp(loss): its mean and band are taken over the seeds' log perplexities
            # (nats) and exponentiated, so the band is symmetric on the log axis and never crosses 1
            in_nats = y.endswith("_ppl")
            s = summarize(part.assign(**{y: np.log(part[y])}) if in_nats else part, x, y).sort_values(x)
            if in_nats:
                s[["mean", "lo", "hi"]] = np.exp(s[["mean", "lo", "hi"]])
            n = int(s["n"].max())
            lw = 1.6 if not emphasis else 2.8 if name in emphasis else 1.1
            averaged = f"{n} seeds" if in_nats else f"mean of {n} seeds"  # the figure's legend says how (PPL_BANDS)
            ax.plot(s[x], s["mean"], color=color, marker=marker, ms=3, lw=lw, ls="-" if name in emphasis else (styles or {}).get(name, "-"),
                    label=name if n == 1 else f"{name} ({averaged})")
            if n > 1:  # a band taken in nats is tagged: `figure_legend` then says how it was taken
                ax.fill_between(s[x], s["lo"], s["hi"], color=color, alpha=0.2, lw=0,
                                gid=PPL_BAND_GID if in_nats else None)
        else:
            for i, (_, seed_part) in enumerate(part.groupby("seed")):
                ax.plot(seed_part[x], seed_part[y], color=color, lw=1.0, alpha=0.8,
                        label=f"{name} (each seed)" if i == 0 else None)


def log_axis(ax, axis: str = "y") -> None:
    """A log scale labelled in plain numbers (10, 100, 1,000 ...; no 1e3 offsets)."""
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    low, high = sorted(getattr(ax, f"get_{axis}lim")())
    # within one decade 1-2-5 leaves two or three labels: label more steps there; over many decades
    # (a model right after truncation at 10^9) it crowds the axis: powers of ten only
    wide = low > 0 and high > 1e4 * low
    subs = ((1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0) if low > 0 and high < 10 * low else (1.0,) if wide else (1.0, 2.0, 5.0))
    target.set_major_locator(LogLocator(base=10, subs=subs))
    # four significant digits below 1,000: a narrow range (163.5 to 166) keeps distinct labels
    target.set_major_formatter(FuncFormatter(
        lambda v, _: f"$10^{{{math.log10(v):.0f}}}$" if v >= 1e5 and wide else f"{v:,.0f}" if v >= 1000 else f"{v:.4g}"))
    target.set_minor_formatter(NullFormatter())


def eng_axis(ax, axis: str = "x") -> None:
    """Engineering prefixes (k, M, G, T, P) instead of scientific offsets."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(EngFormatter(sep=""))
    target.set_minor_formatter(NullFormatter())  # a log axis would label its minor ticks 4×10⁴


def integer_axis(ax, axis: str = "x") -> None:
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def label_axes(ax, x: str, y: str) -> None:
    ax.set_xlabel(AXIS_LABELS.get(x, x))
    ax.set_ylabel(AXIS_LABELS.get(y, y))


#: The legend's title wherever a perplexity curve averages seeds (`draw_curves` labels it "NAME (3 seeds)"
#: and tags its band with the artist id PPL_BAND_GID).
PPL_BANDS = "perplexity over seeds: line, geometric mean; band, 95% interval (both taken in nats)"
PPL_BAND_GID = "ppl-band-in-nats"


def figure_legend(fig, axes, ncol: int | None = None) -> None:
    """One legend for the whole figure, below the panels (entries of all axes, each label once),
    titled with how a perplexity curve averages its seeds where one does."""
    handles, labels, banded = {}, [], False
    for ax in np.atleast_1d(axes).ravel():
        banded = banded or any(c.get_gid() == PPL_BAND_GID for c in ax.collections)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    # two entries per panel across at most: a one-panel figure's legend no wider than its panel
    across = np.atleast_2d(axes).shape[1] if isinstance(axes, np.ndarray) else 1
    ncol = ncol or min(len(labels), 4, 2 * across)
    title = PPL_BANDS if banded else None
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center", ncol=ncol,
               bbox_to_anchor=(0.5, -0.02), frameon=False, title=title, title_fontsize="small")
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // ncol + (title is not None)), 1, 1))


def table(df: pd.DataFrame, digits: int = 3, percent: Sequence[str] = ()):
    """A DataFrame as a reader sees it: no index, numbers to `digits` significant digits, thousands
    separated, `percent` columns (fractions) as percentages."""
    out = df.reset_index(drop=True).copy()
    text = [c for c in out.columns if not pd.api.types.is_numeric_dtype(out[c])]
    for col in out.columns:
        if col in percent:
            out[col] = out[col].map(lambda v: "–" if pd.isna(v) else f"{100 * v:.1f}%")
        elif pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda v: format_value(v, digits=digits))
        elif pd.api.types.is_integer_dtype(out[col]):
            out[col] = out[col].map(lambda v: f"{v:,}")
    import hashlib

    # a uuid from the content, not a random one: a re-rendered report is byte-identical
    styled = out.style.hide(axis="index").set_uuid(hashlib.sha256(out.to_csv().encode()).hexdigest()[:8])
    if text:  # words read from the left, numbers from the right
        styled = styled.set_properties(subset=text, **{"text-align": "left"})
        styled = styled.set_table_styles([{"selector": "th", "props": "text-align: left"}])
    return styled


def summary_table(per_seed: pd.DataFrame, by: str, columns: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """One row per `by` group (in order of appearance), each of `columns` as `mean ± ci95` over its
    rows (seeds; Student-t, as in the figures' bands), and the number of seeds."""
    rows = []
    for name, group in per_seed.groupby(by, sort=False):
        row = {by: name}
        for col in columns:
            values = group[col].dropna().tolist()
            row[col] = format_value(*mean_ci(values), digits=digits) if values else "–"
        row["seeds"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


# --- the study's figures: each drawn the same way wherever a notebook shows it -------------------------
def layer_grid(kept: dict[str, Sequence[int]], n: int, title: str):
    """The layers (0..n-1) each truncation keeps, one row per truncation, kept layers dark."""
    import matplotlib.pyplot as plt

    order = list(kept)
    grid = np.array([[1 if i in kept[s] else 0 for i in range(n)] for s in order])
    fig, ax = plt.subplots(figsize=(0.32 * n + 2.5, 0.38 * len(order) + 1.2))
    ax.imshow(grid, cmap="Greys", vmin=-0.3, vmax=1.2, aspect="auto")
    ax.set_yticks(range(len(order)), order)
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(i) if n <= 16 or i % 5 == 0 or i == n - 1 else "" for i in range(n)])
    ax.set(xlabel="teacher layer (0 = first)", title=title)
    ax.grid(False)
    return fig


def importance_figure(influence: Sequence[float], angular: Sequence[float], block: int):
    """The teacher's layer scores: block influence per layer, angular distance per block of `block`
    layers (by its first layer)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    axes[0].bar(range(len(influence)), influence, color="tab:blue")
    axes[0].set(title="Block influence of each layer", xlabel="teacher layer (0 = first)", ylabel="1 − cos(input, output)")
    axes[1].bar(range(len(angular)), angular, color="tab:orange")
    axes[1].set(title=f"Angular distance across a block of {block} layers", xlabel="first layer of the block",
                ylabel="angular distance / π")
    for ax in axes:
        integer_axis(ax)
    fig.tight_layout()
    return fig


def recovery_figure(recovery: pd.DataFrame, order: Sequence[str]):
    """`recovery_curves` against steps: the whole run on a log scale, and its last two thirds on a
    linear one, where the configurations' ends can be told apart."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    late = recovery[recovery.step >= recovery.step.max() / 3]
    for ax, part in zip(axes, [recovery, late]):
        draw_curves(ax, part, "step", "val_ppl", hue="configuration", order=order, marker="o")
        label_axes(ax, "step", "val_ppl")
        integer_axis(ax)
    log_axis(axes[0])
    axes[0].set_title("From truncation to the end of training (log scale)")
    axes[1].set_title(f"From step {int(late.step.min())} on (linear scale)")
    figure_legend(fig, axes, ncol=5)
    return fig


def table6_figure(ours: pd.DataFrame, paper: pd.DataFrame, profile: str):
    """Our configurations' test perplexity (`ours`: by configuration, ppl and ppl_ci95) next to the
    paper's Table 6 at 300M and 1.1B, each on its own axis: only the order can be compared."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].errorbar(ours.index, ours.ppl, yerr=ours.ppl_ci95.fillna(0), fmt="o", color="tab:blue", capsize=4)
    axes[0].set(title=f"Ours ({profile}): test perplexity", ylabel="perplexity")
    for ax, col, title in [(axes[1], "paper 300M ppl", "Paper, 300M base: C4 perplexity"),
                           (axes[2], "paper 1.1B ppl", "Paper, 1.1B base: C4 perplexity")]:
        ax.plot(paper.index, paper[col], "o", color="tab:red")
        ax.set(title=title, ylabel="perplexity")
    for ax in axes:  # dots, not bars: an axis that does not start at 0 then exaggerates nothing
        ax.tick_params(axis="x", rotation=30)
        low, high = ax.get_ylim()
        pad = 0.15 * (high - low)
        ax.set_ylim(low - pad, high + pad)
    fig.tight_layout()
    return fig


def layer_scores_figure(scores: dict[str, Sequence[float]]):
    """Per-layer scores of the selectors that have them (`ppl-removal`: calibration perplexity without
    the layer, log scale where one layer breaks the model; `taylor`: Σ |θ·∂L/∂θ|), one panel each."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(5.5 * len(scores), 3.4), squeeze=False)
    for ax, (s, values) in zip(axes[0], scores.items()):
        ax.bar(range(len(values)), values, color="tab:blue" if s == "ppl-removal" else "tab:orange")
        ax.set(title=s, xlabel="teacher layer (0 = first)",
               ylabel="calibration ppl without the layer" if s == "ppl-removal" else "Σ |θ·∂L/∂θ| over the layer")
        if s == "ppl-removal" and max(values) > 10 * min(values):  # a layer whose removal breaks the model
            log_axis(ax)
        integer_axis(ax)
    fig.tight_layout()
    return fig


def healing_figure(curve: pd.DataFrame, healing: pd.DataFrame, mean_flops: pd.Series, xs: Sequence[str],
                   title: str | None = None):
    """Healing methods' validation curves against each of `xs`, and a last panel of test perplexity
    against mean training compute, each point's area its optimizer-state memory."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(xs) + 1, figsize=(5.4 * (len(xs) + 1), 4.5))
    if title:
        fig.suptitle(title)
    for ax, x in zip(axes[:-1], xs):
        draw_curves(ax, curve, x, "val_ppl", order=list(mean_flops.index))
        log_axis(ax)
        if x == "flops":
            eng_axis(ax)
        label_axes(ax, x, "val_ppl")
    means = healing.groupby("healing", sort=False).mean(numeric_only=True)
    rank = mean_flops.rank(method="first").astype(int)  # order in compute, for the label offsets
    for label, row in means.iterrows():
        axes[-1].scatter(mean_flops[label], row["test ppl at the end"],
                         s=40 + 400 * row["optimizer state MiB"] / means["optimizer state MiB"].max(), alpha=0.7, label=label)
        axes[-1].annotate(f"{label}: {row['optimizer state MiB']:.3g} MiB", (mean_flops[label], row["test ppl at the end"]),
                          # neighbours in compute alternate above and below, so close points keep apart labels
                          textcoords="offset points", xytext=(6, 6 if rank[label] % 2 else -14), fontsize=8)
    eng_axis(axes[-1])
    axes[-1].margins(0.25)
    axes[-1].set(xlabel="training compute (FLOPs, analytic)", ylabel="test perplexity", title="Area: optimizer-state memory")
    figure_legend(fig, axes[:-1])
    return fig


def token_curves(df: pd.DataFrame, title: str, figsize=(8, 4.5), log_x: bool = False, ncol: int | None = None, **draw):
    """Validation perplexity against training tokens on one panel (log scale), mean and 95% band over
    seeds; `draw` goes to `draw_curves` (colours, order, markers)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    draw_curves(ax, df, "tokens", "val_ppl", **draw)
    log_axis(ax)
    if log_x:
        log_axis(ax, "x")
    eng_axis(ax)
    label_axes(ax, "tokens", "val_ppl")
    ax.set_title(title)
    figure_legend(fig, ax, ncol=ncol)
    return fig


def curve_panels(parts: Sequence[pd.DataFrame], xs: Sequence[str], panel=(6, 4.2), titles: Sequence[str] = (), **draw):
    """Validation perplexity (log scale) against each of `xs` (tokens, FLOPs, wall-clock), one row of
    panels per frame of `parts`, the y axis shared along a row, one legend; `titles` go to the first
    panel of each row, `draw` to `draw_curves`. Returns (figure, axes)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(parts), len(xs), figsize=(panel[0] * len(xs), panel[1] * len(parts)), sharey="row",
                             squeeze=False)
    for row, part in zip(axes, parts):
        for ax, x in zip(row, xs):
            draw_curves(ax, part, x, "val_ppl", **draw)
            log_axis(ax)
            if x != "wall_seconds":
                eng_axis(ax)
            label_axes(ax, x, "val_ppl")
    for row, title in zip(axes, titles):
        row[0].set_title(title)
    figure_legend(fig, axes)
    return fig


def family_styles(families: dict[str, Sequence[str]]) -> tuple[dict, dict]:
    """(colour, line style) per label, for several families of variants drawn together
    (`families`: colormap name -> labels): each family in shades of its colormap, and since
    neighbouring shades are hard to tell apart, each member also the next of four line styles."""
    shades, styles = {}, {}
    for cmap, family in families.items():
        shades.update({label: mpl.colormaps[cmap](0.45 + 0.5 * i / (len(family) - 1) if len(family) > 1 else 0.75)
                       for i, label in enumerate(family)})
        styles.update({label: ["-", "--", ":", "-."][i % 4] for i, label in enumerate(family)})
    return shades, styles


def variants_figure(curves: pd.DataFrame, families: Sequence[Sequence[str]], emphasis: Sequence[str]):
    """Validation curves of variants against tokens and FLOPs, the three `families` of labels (TF's,
    online KD's, offline KD's) in blues, oranges and greens (`family_styles`), `emphasis` thick."""
    shades, styles = family_styles(dict(zip(("Blues", "Oranges", "Greens"), families)))
    return curve_panels([curves], ["tokens", "flops"], panel=(6, 4.5), colors=shades, styles=styles, emphasis=emphasis)


def budget_sweep_figure(points: pd.DataFrame):
    """Test perplexity of each line of the budget sweep (`analysis.sweep_points`) against training
    tokens and against FLOPs, both axes logarithmic, each point labelled with its budget."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, x in zip(axes, ["tokens", "flops"]):
        for line, group in points.groupby("line", sort=False):
            group = group.sort_values(x)
            ax.plot(group[x], group["test ppl"], marker="o", label=line)
            for _, p in group.iterrows():
                ax.annotate(f"{p.budget:g}x", (p[x], p["test ppl"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        log_axis(ax)
        log_axis(ax, "x")
        eng_axis(ax)
        label_axes(ax, x, "test_ppl")
    figure_legend(fig, axes)
    return fig


def out_of_domain_figure(probed: pd.DataFrame):
    """Each student's out-of-domain loss minus the teacher's (`probes.probe_table`), mean and 95%
    t-interval over its seeds, one row per model."""
    import matplotlib.pyplot as plt

    students = probed[probed.method != "teacher"].groupby("model", sort=False).ood_nats_vs_teacher.apply(list)
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(students) + 1.2))
    for y, (model, values) in enumerate(students.items()):
        mean, half = mean_ci(values)
        ax.errorbar(mean, y, xerr=half, fmt="o", capsize=4, color=f"C{y}")
        ax.annotate(f"n={len(values)}", (mean, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.set_yticks(range(len(students)), students.index)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("out-of-domain loss minus the teacher's (nats per token; mean, 95% t-interval)")
    return fig
