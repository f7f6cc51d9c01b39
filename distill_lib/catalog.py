"""The study's notebooks, declared once: which methods each cannot run without (the runner skips it
for a profile that leaves one out), and which notebook trains a run first (named in the error a
report gives when a run's record is missing; a method declares its own notebook)."""
from __future__ import annotations

import dataclasses

from distill_lib import methods


@dataclasses.dataclass(frozen=True)
class Notebook:
    stem: str
    needs: tuple[str, ...] = ()
    """Methods it cannot do without (00, 01, 02, 06 and 99 adapt to the methods a profile has)."""
    needs_setting: str | None = None
    """A profile list it has nothing to do without (skipped when empty)."""

    @property
    def number(self) -> str:
        return self.stem[:2]


NOTEBOOKS = (
    Notebook("00_base_models"),
    Notebook("01_truncation_configs"),
    Notebook("02_teacher_free_vs_kd"),
    Notebook("03_prune_schedule", needs=("gradual",)),
    Notebook("04_vs_from_scratch", needs=("scratch",)),
    Notebook("05_chop_plus_distill", needs=("chop-distill", "kd")),
    Notebook("06_inference_speed"),
    Notebook("07_width_vs_depth", needs=("width",)),
    Notebook("08_selection_and_healing", needs_setting="selectors"),
    Notebook("99_report"),
)
#: What trains the runs that are not a method's own: the teacher, notebook 01's truncation
#: configurations (and extra strategies), notebook 08's selectors and healing variants.
TEACHER, CONFIGS, SELECTION = "00_base_models", "01_truncation_configs", "08_selection_and_healing"


def by_number(number: str) -> Notebook:
    return next(nb for nb in NOTEBOOKS if nb.number == number)


def by_stem(stem: str) -> Notebook:
    return next(nb for nb in NOTEBOOKS if nb.stem == stem)


def maker(method: str, strategy: str | None, cfg) -> Notebook:
    """The notebook that trains `method`'s run (with truncation `strategy`) in profile `cfg`: the
    method's own (`distill_lib.methods`), a variant's method's (a healing variant: notebook 08's),
    and for TF on another truncation notebook 01 (the configurations) or 08 (the selectors)."""
    if method == "teacher":
        return by_stem(TEACHER)
    if method in cfg.variants:
        variant = cfg.variants[method]
        return by_stem(SELECTION if variant.get("healing") else methods.get(variant["method"]).notebook)
    if method == "tf" and strategy not in (None, cfg.strategy):
        return by_stem(CONFIGS if strategy in (*cfg.configs, *cfg.extra_strategies) else SELECTION)
    return by_stem(methods.get(method).notebook)
