"""The evaluation configs: how every model of a profile is measured (`EvalConfig` with its offline
suite `SuiteConfig`, the later probes `ProbeConfig`, and the inference-speed `LatencyConfig`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from distill_lib.names import HeldOutSplit
from distill_lib.schema import check_field_types, require


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
    """Sizes of the offline zero-shot suite (distill_lib.tasks), built from the test split."""

    cloze_items: int = 200
    choice_items: int = 200
    pair_items: int = 200
    bpb_documents: int = 20
    cloze_context_words: int = 30
    seed: int = 1234

    def __post_init__(self) -> None:
        check_field_types(self, "eval.suite")
        for f in dataclasses.fields(self):
            if f.name != "seed":
                require(getattr(self, f.name) > 0, f"eval.suite.{f.name}: must be > 0, got {getattr(self, f.name)}")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How every model of a profile is evaluated (the same window and seeds for all of them)."""

    task_sets: list[str] = dataclasses.field(default_factory=lambda: ["offline"])
    """Task-set names ('offline', 'v3six', 'paper13') or single lm-eval task names."""
    limit: Optional[int] = None
    """lm-eval: at most this many items per task (None: all)."""
    max_length: int = 256
    """lm-eval context window in tokens, the same for teacher and students."""
    batch_size: int = 32
    seed: int = 1234
    ppl_split: HeldOutSplit = "test"
    ppl_max_blocks: Optional[int] = None
    """Perplexity over at most this many non-overlapping blocks of the split (None: all)."""
    suite: SuiteConfig = dataclasses.field(default_factory=SuiteConfig)

    def __post_init__(self) -> None:
        check_field_types(self, "eval")
        require(self.max_length > 0, f"eval.max_length: must be > 0, got {self.max_length}")
        require(self.batch_size > 0, f"eval.batch_size: must be > 0, got {self.batch_size}")
        require(self.limit is None or self.limit > 0, f"eval.limit: must be > 0, got {self.limit}")
        require(bool(self.task_sets), "eval.task_sets: give at least one task set or task")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Measurements added after the first evaluation (distill_lib.probes): out-of-domain perplexity
    and the informative multiple-choice suite, recorded under an evaluation key of their own."""

    ood_text: str = "python-reference"
    """The out-of-domain text: 'python-reference' (the Python language reference's prose that ships
    inside CPython as pydoc_data.topics)."""
    ood_blocks: int = 64
    """Non-overlapping blocks of the profile's block length, evenly spaced over the text."""
    word_choice_items: int = 500
    next_sentence_items: int = 500
    next_or_after_items: int = 500
    context_words: int = 20
    """word_choice: the passage's length in words at least."""
    max_sentence_words: int = 14
    """next_sentence, next_or_after: candidate sentences have 4 to this many words."""
    batch_items: int = 16
    seed: int = 1234

    def __post_init__(self) -> None:
        check_field_types(self, "probes")
        require(self.ood_text == "python-reference",
                f"probes.ood_text: unknown source {self.ood_text!r} (valid: python-reference)")
        for f in dataclasses.fields(self):
            if f.name not in ("seed", "ood_text"):
                require(getattr(self, f.name) > 0, f"probes.{f.name}: must be > 0, got {getattr(self, f.name)}")


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
    batch: int = 1
    prompt_length: int = 32
    new_tokens: int = 32
    repeats: int = 5
