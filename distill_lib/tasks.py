"""Zero-shot task sets: the paper's (lm-eval hub tasks) and an offline suite built from the
held-out split of our own corpus, so zero-shot numbers exist with no hub access.

Offline suite (all items from *test-split* documents only; each item records its document id):
- `offline_cloze`  LAMBADA-style: a passage of >= `cloze_context_words` words ending in a sentence;
  the model must greedily produce its final word. Metric: acc (greedy match).
- `offline_choice` HellaSwag-style: a context and 4 candidate next sentences, the true one and 3 from
  other held-out documents. Metrics: acc, acc_norm (log-likelihood per byte).
- `offline_pairs`  BLiMP-style minimal pairs: a held-out sentence vs the same sentence with two adjacent
  words swapped. Metric: acc (the original is more likely).
- `offline_bpb`    rolling log-likelihood of whole held-out documents. Metrics: bits_per_byte,
  byte_perplexity, word_perplexity.
They are written as jsonl plus lm-eval task YAMLs (absolute paths), usable from the Python API and
from the `lm_eval` CLI with `--include_path`.
"""
from __future__ import annotations

import dataclasses
import json
import random
import re
import types
from pathlib import Path
from typing import Sequence

from distill_lib.config import ConfigError, SuiteConfig
from distill_lib.data import Document
from distill_lib.storage import atomic_directory, content_hash, documents_fingerprint

#: The paper's task sets with the metric each one is reported with (PAPER.md, Evaluation).
#: The paper used pmi-dc for boolq and arc_challenge; lm-eval has no such metric, so acc is used.
PAPER13 = {
    "piqa": "acc_norm", "hellaswag": "acc_norm", "winogrande": "acc", "openbookqa": "acc_norm",
    "boolq": "acc", "sciq": "acc", "arc_easy": "acc", "arc_challenge": "acc", "copa": "acc",
    "rte": "acc_norm", "cb": "acc", "mrpc": "f1", "sst2": "acc",
}
PAPER13_NOTES = {"boolq": "paper: pmi-dc; lm-eval has none, acc reported",
                 "arc_challenge": "paper: pmi-dc; lm-eval has none, acc reported",
                 "rte": "paper: len-norm; lm-eval's rte defines acc only, so acc is what it returns"}
V3SIX = {"piqa": "acc_norm", "hellaswag": "acc_norm", "openbookqa": "acc_norm", "winogrande": "acc",
         "sciq": "acc", "arc_easy": "acc"}
OFFLINE = {"offline_cloze": "acc", "offline_choice": "acc_norm", "offline_pairs": "acc", "offline_bpb": "bits_per_byte"}
TASK_SETS = {"paper13": PAPER13, "v3six": V3SIX, "offline": OFFLINE}


#: Bump when item construction changes, so stale suites are not reused.
SUITE_FORMAT = 2
_SENTENCE = re.compile(r"\S.*?[.!?;]+[\"'’”)\]]*(?=\s|$)|\S.*$", re.S)
_WORD_END = re.compile(r"^(.*\s)(\w[\w']*)([.!?;:,\"')]*)$", re.S)


def sentences(text: str) -> list[str]:
    """Sentences in order, closing quotes kept; joined by single spaces they give back the text
    (the corpus cleaning leaves single spaces)."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _length_filter(tokenizer=None, max_tokens: int | None = None):
    """Candidate continuations stay short: 4 (or `min_words`) to 20 words and, with a tokenizer, at
    most `max_tokens` tokens (lm-eval refuses a continuation longer than its window)."""
    def short(sentence: str, min_words: int = 4, max_words: int = 20) -> bool:
        if not min_words <= len(sentence.split()) <= max_words:
            return False
        return tokenizer is None or len(tokenizer(" " + sentence, add_special_tokens=False)["input_ids"]) <= max_tokens
    return short


def _cloze_items(docs: Sequence[Document], cfg: SuiteConfig, rng: random.Random) -> list[dict]:
    candidates = []
    for doc in docs:
        sents = sentences(doc.text)
        for end in range(1, len(sents)):
            start = end
            while start > 0 and len(" ".join(sents[start:end + 1]).split()) < cfg.cloze_context_words:
                start -= 1
            passage = " ".join(sents[start:end + 1])
            m = _WORD_END.match(passage)
            if m and len(passage.split()) >= cfg.cloze_context_words and len(m.group(2)) >= 3:
                candidates.append({"doc_id": doc.id, "context": m.group(1).rstrip(), "target": m.group(2)})
    return _sample(candidates, cfg.cloze_items, rng, "offline_cloze")


def _choice_items(docs: Sequence[Document], cfg: SuiteConfig, rng: random.Random, short) -> list[dict]:
    per_doc = {d.id: sentences(d.text) for d in docs}
    candidates = []
    for doc in docs:
        sents = per_doc[doc.id]
        for i in range(2, len(sents)):
            context = " ".join(sents[max(0, i - 3):i])
            if len(context.split()) >= 15 and short(sents[i]):
                candidates.append((doc.id, context, sents[i]))
    chosen = _sample(candidates, cfg.choice_items, rng, "offline_choice")
    others = [(d, s) for d, ss in per_doc.items() for s in ss if short(s)]
    items = []
    for doc_id, context, ending in chosen:
        distractors = []
        while len(distractors) < 3:
            d, s = others[rng.randrange(len(others))]
            if d != doc_id and s != ending and s not in distractors:
                distractors.append(s)
        gold = rng.randrange(4)
        choices = distractors[:gold] + [ending] + distractors[gold:]
        items.append({"doc_id": doc_id, "context": context, "choices": choices, "gold": gold})
    return items


def _pair_items(docs: Sequence[Document], cfg: SuiteConfig, rng: random.Random, short) -> list[dict]:
    candidates = []
    for doc in docs:
        for sent in sentences(doc.text):
            if short(sent, 6):
                candidates.append((doc.id, sent))
    items = []
    for doc_id, sent in _sample(candidates, cfg.pair_items, rng, "offline_pairs"):
        words = sent.split()
        for _ in range(20):  # find two adjacent words that differ, so the pair really differs
            i = rng.randrange(len(words) - 1)
            if words[i] != words[i + 1]:
                break
        swapped = words[:i] + [words[i + 1], words[i]] + words[i + 2:]
        items.append({"doc_id": doc_id, "good": sent, "bad": " ".join(swapped)})
    return items


def _sample(candidates: list, n: int, rng: random.Random, task: str) -> list:
    if len(candidates) < n:
        raise ConfigError(f"eval.suite: the held-out split yields {len(candidates)} candidate items for {task}, "
                          f"fewer than the {n} requested; lower the size or hold out more documents")
    return rng.sample(candidates, n)


def _task_yaml(task: str, data_file: Path) -> str:
    """lm-eval task config; `data_file` is absolute (lm-eval resolves relative paths from its cwd)."""
    import yaml

    acc = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
    specific = {
        "offline_cloze": {"output_type": "loglikelihood", "doc_to_text": "{{context}}",
                          "doc_to_target": "{{' ' + target}}", "metric_list": [acc]},
        "offline_choice": {"output_type": "multiple_choice", "doc_to_text": "{{context}}",
                           "doc_to_choice": "{{choices}}", "doc_to_target": "{{gold}}", "target_delimiter": " ",
                           "metric_list": [acc, {**acc, "metric": "acc_norm"}]},
        "offline_pairs": {"output_type": "multiple_choice", "doc_to_text": "", "doc_to_choice": "{{[good, bad]}}",
                          "doc_to_target": 0, "target_delimiter": "", "metric_list": [acc]},
        "offline_bpb": {"output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
                        "metric_list": [{"metric": m, "higher_is_better": False}
                                        for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")]},
    }[task]
    config = {"task": task, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
              "test_split": "test", **specific, "metadata": {"version": 1.0}}
    return yaml.safe_dump(config, sort_keys=False)


def build_offline_suite(held_out: Sequence[Document], folder: Path, cfg: SuiteConfig = SuiteConfig(),
                        tokenizer=None, max_length: int | None = None) -> Path:
    """Write the suite (jsonl + task YAMLs) for these held-out documents into a folder keyed by their
    content and the sizes; reuse it if it exists. Returns the folder (an lm-eval include path).
    With a tokenizer and the evaluation window `max_length`, candidate sentences are limited to
    half the window in tokens."""
    if not held_out:
        raise ConfigError("eval.suite: the held-out split has no documents")
    max_tokens = max_length // 2 if (tokenizer is not None and max_length) else None
    tok_key = tokenizer.backend_tokenizer.to_str() if max_tokens else None
    key = content_hash("suite", SUITE_FORMAT, documents_fingerprint(held_out), dataclasses.asdict(cfg), max_tokens,
                tok_key)
    short = _length_filter(tokenizer if max_tokens else None, max_tokens)
    final = Path(folder) / f"offline-suite-{key}"

    def build(tmp: Path) -> None:
        rng = random.Random(cfg.seed)
        items = {
            "offline_cloze": _cloze_items(held_out, cfg, rng),
            "offline_choice": _choice_items(held_out, cfg, rng, short),
            "offline_pairs": _pair_items(held_out, cfg, rng, short),
            "offline_bpb": [{"doc_id": d.id, "text": d.text}
                            for d in _sample(list(held_out), min(cfg.bpb_documents, len(held_out)), rng, "offline_bpb")],
        }
        for task, rows in items.items():
            (tmp / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            # the YAML names the *final* absolute path: lm-eval resolves data files from its cwd otherwise
            (tmp / f"{task}.yaml").write_text(_task_yaml(task, final.resolve() / f"{task}.jsonl"))

    return atomic_directory(final, build)


def suite_capacity(held_out: Sequence[Document], cloze_context_words: int) -> dict[str, int]:
    """The most items of each `eval.suite` size the held-out documents can supply: candidates as
    build_offline_suite finds them, before its token-length limit (so an upper bound). `plan`
    checks a profile's suite sizes against it before any data are prepared."""

    class CountingRandom(random.Random):
        """Runs a builder of this module with its own rules but picks nothing: `sample` records the
        size of the population of candidates it is offered and returns []."""

        def sample(self, population, k, **kwargs):
            self.population = len(population)
            return []

    none = types.SimpleNamespace(cloze_items=0, choice_items=0, pair_items=0,
                                 cloze_context_words=cloze_context_words)
    short = _length_filter()
    counts = {}
    for key, build in (("cloze_items", lambda r: _cloze_items(held_out, none, r)),
                       ("choice_items", lambda r: _choice_items(held_out, none, r, short)),
                       ("pair_items", lambda r: _pair_items(held_out, none, r, short))):
        rng = CountingRandom()
        build(rng)
        counts[key] = rng.population
    # a choice item takes 3 distractors from other documents: with too few, the builder never ends
    others = {}
    for doc in held_out:
        others[doc.id] = {s for s in sentences(doc.text) if short(s)}
    every = set().union(*others.values()) if others else set()
    if any(len(every - own) < 4 for own in others.values()):
        counts["choice_items"] = 0
    counts["bpb_documents"] = len(held_out)
    return counts
