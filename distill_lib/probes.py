"""Probes: measurements added after the study's first evaluation, stored beside it in a run's
record under a key of their own (so the runs recorded before them keep theirs and read "not
measured"):

- **Out-of-domain perplexity**: what a student keeps of the teacher's general ability while it
  adapts to the training corpus. The text is the prose of the Python language reference that ships
  inside every CPython (`pydoc_data.topics`): general technical English, offline on every machine,
  far from the Bible. Its CPython version and SHA-256 are part of the evaluation key, so two
  machines with different texts never mix their numbers. `ood_blocks` non-overlapping blocks are
  taken evenly spaced over the whole text (all topics, not the first few alphabetically).
- **An informative multiple-choice suite** from the test split's documents, built so that the
  teacher sits neither at the floor nor at the ceiling (the first offline suite's cloze task was at
  26% and its pairs at 97% for SmolLM2), with >= 500 items per task where the split allows:
    word_choice     a passage of >= `context_words` words without its last word; 4 candidates: the
                    true word and 3 words that follow the passage's last word elsewhere in the
                    test split (so each fits the syntax, and only the passage's sense decides;
                    with words of the passage itself as distractors SmolLM2 scored 91%).
                    Metric: acc_norm (log-likelihood per byte).
    next_sentence   up to 2 preceding sentences; 3 candidates: the true next sentence and 2
                    sentences of the same document at least 3 sentences away. Metric: acc_norm.
    next_or_after   the sentence before (its last 12 words), then 2 candidates: the next sentence
                    and the one after it (which comes first: discourse order, not topic).
                    Metric: acc_norm.
  Candidate sentences have 4 to `max_sentence_words` words: the suite's cost is its tokens.
  Each item's shared context is scored once (its key/value cache repeated for the candidates), so
  the suite costs a fraction of what lm-eval's one-sequence-per-candidate scoring would.
  Accuracies come with their standard error sqrt(p(1-p)/(n-1)) (lm-eval's).
"""
from __future__ import annotations

import hashlib
import inspect
import math
import random
import re
import sys
import time
from typing import Sequence

import numpy as np
import torch

from distill_lib.config import ConfigError, ProbeConfig, to_dict
from distill_lib.data import Document, pack_blocks, tokenize_split
from distill_lib.env import environment_record
from distill_lib.evaluate import perplexity
from distill_lib.tasks import sentences

#: Bump when item construction or scoring changes, so that old and new numbers get different keys.
PROBES_FORMAT = 2
TASKS = {"word_choice": "acc_norm", "next_sentence": "acc_norm", "next_or_after": "acc_norm"}
CHANCE = {"word_choice": 0.25, "next_sentence": 1 / 3, "next_or_after": 0.5}
_WORD = re.compile(r"[A-Za-z][A-Za-z']{2,}")
_TOKEN = re.compile(r"[A-Za-z']+|[^\sA-Za-z']+")
_LAST_WORD = re.compile(r"^(.*\S)\s+([A-Za-z][A-Za-z']{2,})([.!?;:,\"')’”]*)$", re.S)


# ---------------------------------------------------------------------------------------------
# The out-of-domain text
# ---------------------------------------------------------------------------------------------
def ood_documents(source: str = "python-reference") -> list[Document]:
    """The out-of-domain text as documents (one per topic, in sorted order)."""
    if source != "python-reference":
        raise ConfigError(f"probes.ood_text: unknown source {source!r} (valid: python-reference)")
    from pydoc_data.topics import topics

    return [Document(id=f"python-reference/{name}", text=topics[name]) for name in sorted(topics)]


def ood_identity(source: str = "python-reference") -> dict:
    """What pins the out-of-domain text: its source, the CPython that ships it, its SHA-256."""
    h = hashlib.sha256()
    for doc in ood_documents(source):
        h.update(doc.id.encode() + b"\x00" + doc.text.encode() + b"\x01")
    return {"source": source, "python": sys.version.split()[0], "sha256": h.hexdigest()[:16]}


def ood_tokens(tokenizer, block_length: int, blocks: int, source: str = "python-reference") -> np.ndarray:
    """`blocks` blocks of the text's token stream, evenly spaced over all of it, concatenated."""
    all_blocks = pack_blocks(tokenize_split(ood_documents(source), tokenizer), block_length)
    if len(all_blocks) < blocks:
        raise ConfigError(f"probes.ood_blocks: the text has {len(all_blocks)} blocks of {block_length} tokens, "
                          f"fewer than the {blocks} asked for")
    chosen = np.linspace(0, len(all_blocks) - 1, blocks).round().astype(int)
    return np.ascontiguousarray(all_blocks[chosen]).reshape(-1)


# ---------------------------------------------------------------------------------------------
# The suite's items (test-split documents only; each names its document)
# ---------------------------------------------------------------------------------------------
def _sample(candidates: list, n: int, rng: random.Random, task: str) -> list:
    if len(candidates) < n:
        raise ConfigError(f"probes.{task}_items: the test split yields {len(candidates)} candidate items, fewer "
                          f"than the {n} asked for; lower it or hold out more documents")
    return rng.sample(candidates, n)


def _tokens(text: str) -> list[str]:
    """Words and runs of punctuation, in order (so "the, LORD" does not make LORD follow the)."""
    return _TOKEN.findall(text)


def word_choice_items(docs: Sequence[Document], cfg: ProbeConfig, rng: random.Random) -> list[dict]:
    followers: dict[str, set[str]] = {}  # a word -> the words that follow it somewhere in the split
    for doc in docs:
        tokens = _tokens(doc.text)
        for a, b in zip(tokens, tokens[1:]):
            if _WORD.fullmatch(b) and a[0].isalpha():
                followers.setdefault(a.lower(), set()).add(b)
    candidates = []
    for doc in docs:
        sents = sentences(doc.text)
        for end in range(len(sents)):
            start = end
            while start > 0 and len(" ".join(sents[start:end + 1]).split()) < cfg.context_words:
                start -= 1
            passage = " ".join(sents[start:end + 1])
            m = _LAST_WORD.match(passage)
            if not m or len(passage.split()) < cfg.context_words or not m.group(1)[-1].isalpha():
                continue
            target = m.group(2)
            previous = _tokens(m.group(1))[-1].lower()
            others = sorted(w for w in followers.get(previous, ()) if w.lower() != target.lower())
            if len(others) >= 3:
                candidates.append((doc.id, m.group(1), target, others))
    items = []
    for doc_id, context, target, others in _sample(candidates, cfg.word_choice_items, rng, "word_choice"):
        choices = rng.sample(others, 3)
        gold = rng.randrange(4)
        items.append({"doc_id": doc_id, "context": context, "choices": choices[:gold] + [target] + choices[gold:],
                      "gold": gold})
    return items


def next_sentence_items(docs: Sequence[Document], cfg: ProbeConfig, rng: random.Random) -> list[dict]:
    short = lambda s: 4 <= len(s.split()) <= cfg.max_sentence_words  # noqa: E731
    candidates = []
    for doc in docs:
        sents = sentences(doc.text)
        for i in range(1, len(sents)):
            far = sorted({s for j, s in enumerate(sents) if abs(j - i) >= 3 and short(s) and s != sents[i]})
            context = " ".join(sents[max(0, i - 2):i])
            if short(sents[i]) and len(context.split()) >= 8 and len(far) >= 3:
                candidates.append((doc.id, context, sents[i], far))
    items = []
    for doc_id, context, ending, far in _sample(candidates, cfg.next_sentence_items, rng, "next_sentence"):
        choices = rng.sample(far, 2)
        gold = rng.randrange(3)
        items.append({"doc_id": doc_id, "context": context, "choices": choices[:gold] + [ending] + choices[gold:],
                      "gold": gold})
    return items


def next_or_after_items(docs: Sequence[Document], cfg: ProbeConfig, rng: random.Random) -> list[dict]:
    short = lambda s: 4 <= len(s.split()) <= cfg.max_sentence_words  # noqa: E731
    candidates = []
    for doc in docs:
        sents = sentences(doc.text)
        for i in range(1, len(sents) - 1):
            a, b = sents[i], sents[i + 1]
            if short(a) and short(b) and a != b:
                candidates.append((doc.id, " ".join(sents[i - 1].split()[-12:]), a, b))
    items = []
    for doc_id, before, a, b in _sample(candidates, cfg.next_or_after_items, rng, "next_or_after"):
        gold = rng.randrange(2)
        items.append({"doc_id": doc_id, "context": before, "choices": [a, b] if gold == 0 else [b, a], "gold": gold})
    return items


def build_items(test_docs: Sequence[Document], cfg: ProbeConfig) -> dict[str, list[dict]]:
    """Every task's items, drawn with one seeded generator (the same items on every machine)."""
    if not test_docs:
        raise ConfigError("probes: the test split has no documents")
    rng = random.Random(cfg.seed)
    return {"word_choice": word_choice_items(test_docs, cfg, rng),
            "next_sentence": next_sentence_items(test_docs, cfg, rng),
            "next_or_after": next_or_after_items(test_docs, cfg, rng)}


# ---------------------------------------------------------------------------------------------
# Scoring: each item's context once, its candidates from the context's cache
# ---------------------------------------------------------------------------------------------
def encode_item(tokenizer, item: dict, max_length: int) -> tuple[list[int], list[list[int]]]:
    """Context and candidate token ids as lm-eval forms them (the candidate after a space, each
    tokenized on its own); the context loses its oldest tokens when the longest candidate would not
    fit in `max_length`."""
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    choices = [encode(" " + c) for c in item["choices"]]
    room = max_length - max(len(c) for c in choices)
    if room < 1:
        raise ConfigError(f"eval.max_length: {max_length} tokens leave no room for a context before a "
                          f"{max(len(c) for c in choices)}-token candidate")
    return encode(item["context"])[-room:], choices


@torch.inference_mode()
def choice_logprobs(model, contexts: list[list[int]], choices: list[list[list[int]]], pad_id: int = 0,
                    device: str | torch.device = "cpu") -> list[list[float]]:
    """Summed log-probability of each candidate given its item's context, for a batch of items with
    the same number of candidates. Contexts are left-padded (positions counted from the first real
    token) and run once; their cache is repeated for the candidates, which are right-padded."""
    k = len(choices[0])
    if any(len(c) != k for c in choices):
        raise ValueError("choice_logprobs: every item of a batch needs the same number of candidates")
    width = max(len(c) for c in contexts)
    ctx = torch.full((len(contexts), width), pad_id, dtype=torch.long)
    ctx_mask = torch.zeros_like(ctx)
    for i, c in enumerate(contexts):
        ctx[i, width - len(c):] = torch.tensor(c)
        ctx_mask[i, width - len(c):] = 1
    ctx, ctx_mask = ctx.to(device), ctx_mask.to(device)
    # only the last context position's logits are needed: the LM head is a third of a SmolLM2
    # student's forward FLOPs (a 49k vocabulary), so the context skips it where the model allows
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    out = model(input_ids=ctx, attention_mask=ctx_mask, position_ids=(ctx_mask.cumsum(-1) - 1).clamp(min=0),
                use_cache=True, **keep)
    first = torch.log_softmax(out.logits[:, -1].float(), -1).repeat_interleave(k, 0)
    # transformers renamed `past_key_values` to `cache` within 5.x (the old name warns on stderr)
    new_name = "cache" in inspect.signature(model.forward).parameters
    cache = out["cache"] if new_name else out.past_key_values
    cache.batch_repeat_interleave(k)
    flat = [c for item in choices for c in item]
    clen = max(len(c) for c in flat)
    cand = torch.full((len(flat), clen), pad_id, dtype=torch.long)
    cand_mask = torch.zeros_like(cand)
    for i, c in enumerate(flat):
        cand[i, :len(c)] = torch.tensor(c)
        cand_mask[i, :len(c)] = 1
    cand, cand_mask = cand.to(device), cand_mask.to(device)
    start = torch.tensor([len(c) for c in contexts], device=device).repeat_interleave(k)
    out = model(input_ids=cand, attention_mask=torch.cat([ctx_mask.repeat_interleave(k, 0), cand_mask], 1),
                position_ids=start[:, None] + torch.arange(clen, device=device),
                **{"cache" if new_name else "past_key_values": cache})
    logp = torch.cat([first[:, None], torch.log_softmax(out.logits[:, :-1].float(), -1)], 1)
    token_logp = logp.gather(-1, cand[:, :, None]).squeeze(-1) * cand_mask
    sums = token_logp.sum(-1).tolist()
    return [sums[i * k:(i + 1) * k] for i in range(len(contexts))]


def accuracy(correct: Sequence[bool]) -> dict:
    n = len(correct)
    p = sum(correct) / n
    return {"value": p, "stderr": math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None, "n": n}


def score_task(model, tokenizer, task: str, items: list[dict], max_length: int, batch_items: int,
               device="cpu") -> dict:
    """acc (highest summed log-probability) and acc_norm (highest log-probability per byte). Items
    are batched in order of length (as lm-eval orders its requests), so that a batch pads little:
    unsorted, padding cost about a third of the time."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [encode_item(tokenizer, item, max_length) for item in items]
    order = sorted(range(len(items)), key=lambda i: (len(encoded[i][0]), max(map(len, encoded[i][1]))))
    scores: list = [None] * len(items)
    for start in range(0, len(order), batch_items):
        batch = order[start:start + batch_items]
        found = choice_logprobs(model, [encoded[i][0] for i in batch], [encoded[i][1] for i in batch], pad, device)
        for i, s in zip(batch, found):
            scores[i] = s
    hits, hits_norm = [], []
    for item, s in zip(items, scores):
        per_byte = [v / len((" " + c).encode()) for v, c in zip(s, item["choices"])]
        hits.append(int(np.argmax(s)) == item["gold"])
        hits_norm.append(int(np.argmax(per_byte)) == item["gold"])
    return {"task": task, "metric": TASKS[task], "chance": CHANCE[task],
            **accuracy(hits_norm if TASKS[task] == "acc_norm" else hits),
            "acc": accuracy(hits)["value"], "acc_norm": accuracy(hits_norm)["value"]}


# ---------------------------------------------------------------------------------------------
# Both probes of one model
# ---------------------------------------------------------------------------------------------
def probe_key_inputs(cfg: ProbeConfig) -> dict:
    """What the evaluation key of the probes is taken of (with the data config): their settings and
    the format of the items and scores. The out-of-domain text's identity (CPython version, SHA-256)
    is recorded in each result, not keyed, so that a report re-renders from records under any Python;
    `Study.probes` refuses to measure a run on a text other than the teacher's."""
    return {"probes": to_dict(cfg), "format": PROBES_FORMAT}


def run_probes(model, tokenizer, test_docs: Sequence[Document], cfg: ProbeConfig, block_length: int,
               max_length: int, batch_size: int = 16, device: str | None = None) -> dict:
    """Out-of-domain perplexity and the suite's accuracies of one model, timed."""
    started = time.perf_counter()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    ood = perplexity(model, tokenizer, ood_tokens(tokenizer, block_length, cfg.ood_blocks, cfg.ood_text),
                     block_length, batch_size=batch_size, device=device)
    ood_seconds = time.perf_counter() - started
    rows = [score_task(model, tokenizer, task, items, max_length, cfg.batch_items, device)
            for task, items in build_items(test_docs, cfg).items()]
    return {"ood": {**ood, **ood_identity(cfg.ood_text), "seconds": ood_seconds}, "suite": rows,
            "probe_config": to_dict(cfg), "format": PROBES_FORMAT, "seconds": time.perf_counter() - started,
            **environment_record()}


def headline(result: dict) -> dict:
    """Flat numbers of a probes result: out-of-domain ppl (and its loss in nats), each task's
    reported accuracy in percent and its standard error."""
    out = {"ood_ppl": result["ood"]["ppl"], "ood_loss": result["ood"]["loss"]}
    for row in result["suite"]:
        out[f"{row['task']}/{row['metric']}"] = 100 * row["value"]
        out[f"{row['task']}/stderr"] = 100 * row["stderr"]
    return out


# ---------------------------------------------------------------------------------------------
# Tables for the notebooks
# ---------------------------------------------------------------------------------------------
def teacher_suite_table(result: dict) -> "pd.DataFrame":
    """The suite as the teacher scores it: items, chance, accuracy and standard error (%), and
    whether the task is informative (35% < accuracy < 85%: neither floor nor ceiling)."""
    import pandas as pd

    return pd.DataFrame([{"task": r["task"], "metric": r["metric"], "items": r["n"], "chance %": 100 * r["chance"],
                          "teacher %": 100 * r["value"], "stderr %": 100 * r["stderr"],
                          "informative": 35 < 100 * r["value"] < 85} for r in result["suite"]])


def probe_table(study, methods: Sequence[str], also_from: Sequence[str] = ()) -> "pd.DataFrame":
    """`probe_table_of_runs` for every recorded seed of `methods` (in the profile), then for those
    trained from each truncation of `also_from` (the seeds `seeds_by_method` lists under
    `METHOD@STRATEGY`, labelled "…, from STRATEGY", as the profile's own rows then are)."""
    # where the table mixes truncations, the profile's own rows name theirs too, or a reader cannot
    # tell "TF" trained from the profile's strategy from "TF, from best-block"
    own = f", from {study.cfg.strategy}" if also_from else ""
    listed = [(m, None, study.cfg.label(m) + own, study.seeds(m)) for m in methods if m in study.cfg.methods]
    listed += [(m, strategy, f"{study.cfg.label(m)}, from {strategy}", study.cfg.seeds_from(m, strategy))
               for strategy in also_from for m in methods if m in study.cfg.methods]
    return probe_table_of_runs(study, [(label, method, [(seed, study.student(method, strategy, seed=seed))
                                                        for seed in seeds])
                                       for method, strategy, label, seeds in listed])


def probe_table_of_runs(study, groups: Sequence[tuple[str, str, Sequence[tuple[int, object]]]]) -> "pd.DataFrame":
    """One row per measured model: the teacher, then each run of `groups` ((label, method, [(seed,
    run), ...]), in order) whose record has probes; runs recorded before the probes are left out, not
    invented. `ood_nats_vs_teacher` is the out-of-domain loss minus the teacher's (nats per token)."""
    import pandas as pd

    teacher = study.teacher_probes()
    if teacher is None:
        return pd.DataFrame()
    rows = [{"model": "teacher", "method": "teacher", "seed": None, **headline(teacher)}]
    for label, method, runs in groups:
        for seed, run in runs:
            found = study.probes(run)
            if found is not None:
                rows.append({"model": label, "method": method, "seed": seed, **headline(found)})
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("ood_loss") + 1, "ood_nats_vs_teacher",
                 table.ood_loss - headline(teacher)["ood_loss"])
    return table
