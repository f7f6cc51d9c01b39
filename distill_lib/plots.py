"""Figures and tables shared by the notebooks, so that every figure draws its seeds the same way
and every table shows the same interval as the figure next to it.

- Intervals are Student-t 95% intervals over seeds (`stats.mean_ci`), in tables and in the bands
  of figures alike; one seed draws a line without a band.
- One legend per figure, human axis labels with units, no offset notation, integer ticks for layer
  indices, engineering prefixes for tokens and FLOPs (`1.2M`, `30T`).
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
    """Mean curve per `hue` with its 95% t-band over seeds (rows sharing `hue` and `x`). Where
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
            s = summarize(part, x, y).sort_values(x)
            n = int(s["n"].max())
            lw = 1.6 if not emphasis else 2.8 if name in emphasis else 1.1
            ax.plot(s[x], s["mean"], color=color, marker=marker, ms=3, lw=lw, ls="-" if name in emphasis else (styles or {}).get(name, "-"),
                    label=name if n == 1 else f"{name} (mean of {n} seeds)")
            if n > 1:
                ax.fill_between(s[x], s["lo"], s["hi"], color=color, alpha=0.2, lw=0)
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


def figure_legend(fig, axes, ncol: int | None = None) -> None:
    """One legend for the whole figure, below the panels (entries of all axes, each label once)."""
    handles, labels = {}, []
    for ax in np.atleast_1d(axes).ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center", ncol=ncol or min(len(labels), 4),
               bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // (ncol or 4)), 1, 1))


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
