"""The study's notebooks, declared once: which methods each cannot run without (the runner skips it
for a profile that leaves one out) and which runs it is the first to train (named in the error a
report gives when a run's record is missing)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Notebook:
    stem: str
    needs: tuple[str, ...] = ()
    """Methods it cannot do without (00, 01, 02, 06 and 99 adapt to the methods a profile has)."""
    trains: tuple[str, ...] = ()
    """Methods whose runs it trains first ('configs': the truncation configurations and extra
    strategies; 'variants': every profile variant)."""
    needs_setting: str | None = None
    """A profile list it has nothing to do without (skipped when empty)."""

    @property
    def number(self) -> str:
        return self.stem[:2]


NOTEBOOKS = (
    Notebook("00_base_models", trains=("teacher", "scratch")),
    Notebook("01_truncation_configs", trains=("configs",)),
    Notebook("02_teacher_free_vs_kd", trains=("tf", "kd", "offline-kd", "random", "variants")),
    Notebook("03_prune_schedule", needs=("gradual",), trains=("gradual",)),
    Notebook("04_vs_from_scratch", needs=("scratch",)),
    Notebook("05_chop_plus_distill", needs=("chop-distill", "kd"), trains=("chop-distill",)),
    Notebook("06_inference_speed"),
    Notebook("07_width_vs_depth", needs=("width",), trains=("width",)),
    Notebook("08_selection_and_healing", trains=("selectors",), needs_setting="selectors"),
    Notebook("99_report"),
)


def by_number(number: str) -> Notebook:
    return next(nb for nb in NOTEBOOKS if nb.number == number)


def maker(method: str, strategy: str | None, cfg) -> Notebook:
    """The notebook that trains `method`'s run (with truncation `strategy`) in profile `cfg`."""
    if method in cfg.variants:
        base = cfg.variants[method]["method"]
        # a variant of a method another notebook trains (from scratch, CHOP+distill) is trained there
        kind = ("selectors" if cfg.variants[method].get("healing") else
                base if base in ("scratch", "chop-distill") else "variants")
    elif method == "tf" and strategy not in (None, cfg.strategy):
        kind = "configs" if strategy in (*cfg.configs, *cfg.extra_strategies) else "selectors"
    else:
        kind = method
    return next(nb for nb in NOTEBOOKS if kind in nb.trains)
