"""A study read at the learning rate validation chose (`tuned` in the profile): the view that the claims,
the hypotheses and the notebooks judge and show at the tuned rate, beside the base rate's."""
from __future__ import annotations

from distill_lib.records import MissingRecord


def rate_label(cfg, tuned: bool) -> str:
    """'lr 0.0003' (the base rate) or 'lr 0.0012 (tuned)' (the rate of TF's tuned variant)."""
    if not tuned:
        return f"lr {cfg.student_train.lr:g}"
    return f"lr {cfg.lr_of(cfg.tuned['tf']):g} (tuned)" if "tf" in cfg.tuned else "tuned rate"


class AtTunedRate:
    """A study read at the tuned rate: every method a claim asks for is its variant in `tuned`; a
    method without one has no seeds and no runs there, and a variant not yet in `methods` (its runs
    not recorded) is a missing record. The seeds of a truncation other than the profile's (C4's
    configurations, notebook 08's selectors) are the base rate's: `config_seeds`, `selector_seeds`."""

    def __init__(self, study):
        self._study = study

    def __getattr__(self, name):
        return getattr(self._study, name)

    def _recorded_variant(self, method: str) -> str:
        """`method`'s tuned variant, refused (MissingRecord) while it has none or is not in `methods`."""
        variant = self._study.cfg.tuned.get(method)
        if variant is None or variant not in self._study.cfg.methods:
            what = f"runs of {variant} (not in `methods` yet)" if variant else f"a variant of {method} in `tuned`"
            raise MissingRecord(f"record: {what}", what=what)
        return variant

    def seeds(self, method: str) -> list[int]:
        if method not in self._study.cfg.tuned:
            return []  # e.g. a CHOP+distill variant with no tuned counterpart: not compared there
        return self._study.seeds(self._recorded_variant(method))

    def method_label(self, method: str) -> str:
        """The variant whose runs `student(method)` reads, so that a row's text names the runs it read."""
        return self._study.cfg.tuned.get(method, method)

    def student(self, method: str, strategy: str | None = None, seed: int = 0, remove_every_tokens: int | None = None):
        return self._study.student(self._recorded_variant(method), strategy, seed, remove_every_tokens)
