"""What the study notebooks write and draw from: figures and tables saved under a folder
(`figures/<profile>/`, `Study.save_figure` and `Study.save_table`), and the validation curves of
recorded runs as one table (`curves`, importable from `distill_lib.study` too)."""
from __future__ import annotations

from pathlib import Path


def save_figure(folder: Path, fig, name: str) -> None:
    """<folder>/<name>.png and .pdf (returns nothing: a notebook cell that ends with it shows the
    figure, not a path of this machine)."""
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(folder / f"{name}.{ext}", bbox_inches="tight", dpi=130,
                    metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})


def save_table(folder: Path, df, name: str) -> None:
    """<folder>/<name>.csv (full precision) and .md (rounded, for reading)."""
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / f"{name}.csv", index=False)
    (folder / f"{name}.md").write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")


def curves(runs: dict) -> "pd.DataFrame":
    """Validation curves: `runs` maps a label (e.g. a method) to one run or a list of runs (its
    seeds). DataFrame(method, seed, run, step, tokens, flops, wall_seconds, val_loss, val_ppl)."""
    import pandas as pd

    rows = []
    for label, group in runs.items():
        for run in group if isinstance(group, (list, tuple)) else [group]:
            for m in run.metrics():
                if "val_loss" in m:
                    rows.append({"method": label, "seed": run.config.train.seed, "run": run.config.name,
                                 "step": m["step"], "tokens": m["tokens"], "flops": m["flops"],
                                 "wall_seconds": m["wall_seconds"], "val_loss": m["val_loss"],
                                 "val_ppl": m["val_ppl"]})
    return pd.DataFrame(rows)
