"""Probes (distill_lib.probes): the cached multiple-choice scorer equals scoring every candidate as
one whole sequence, items come only from the test split and are deterministic, the out-of-domain
text is pinned and spread over all of it, and a profile's probes are recorded under their own key."""
import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from distill_lib import probes
from distill_lib.config import ConfigError, DataConfig, ModelConfig, ProbeConfig
from distill_lib.data import prepare_data, split_of
from distill_lib.models import build_model

from tiny_models import tiny_model

DATA = DataConfig(max_documents=400, vocab_size=512, block_length=64, validation_fraction=0.1, test_fraction=0.1)
SMALL = ProbeConfig(ood_blocks=8, word_choice_items=40, next_sentence_items=40, next_or_after_items=40,
                    batch_items=8)


@pytest.fixture(scope="module")
def data():
    return prepare_data(DATA, log=None)


def whole_sequence_logprob(model, context: list[int], choice: list[int]) -> float:
    """log p(choice | context) from one unpadded forward pass over context + choice."""
    ids = torch.tensor([context + choice])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    return float(sum(logp[len(context) - 1 + i, t] for i, t in enumerate(choice)))


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt_neox"])
def test_cached_batched_scoring_equals_whole_sequence_scoring(family):
    model = tiny_model(family, n_layers=2)
    model.config._attn_implementation = "sdpa"
    rng = np.random.default_rng(0)
    contexts = [rng.integers(3, 96, size=n).tolist() for n in (5, 11, 1, 8)]  # unequal: left padding
    choices = [[rng.integers(3, 96, size=m).tolist() for m in lengths]
               for lengths in ((1, 3, 2, 4), (2, 2, 5, 1), (3, 1, 1, 1), (4, 4, 4, 4))]
    got = probes.choice_logprobs(model, contexts, choices, pad_id=0)
    for ctx, item, scores in zip(contexts, choices, got):
        for choice, score in zip(item, scores):
            assert score == pytest.approx(whole_sequence_logprob(model, ctx, choice), abs=1e-4)


def test_items_come_from_the_test_split_and_are_deterministic(data):
    docs = data.documents["test"]
    first, again = probes.build_items(docs, SMALL), probes.build_items(docs, SMALL)
    assert first == again
    for task, items in first.items():
        assert len(items) == 40
        assert all(split_of(item["doc_id"], DATA) == "test" for item in items)
        assert all(0 <= item["gold"] < len(item["choices"]) for item in items)
        assert len({len(item["choices"]) for item in items}) == 1
        assert all(len(set(item["choices"])) == len(item["choices"]) for item in items), task
    split_text = " ".join(d.text for d in docs)
    for item in first["word_choice"]:  # each distractor follows the passage's last word somewhere in the split
        last = item["context"].split()[-1]
        distractors = [c for i, c in enumerate(item["choices"]) if i != item["gold"]]
        assert all(re.search(rf"\b{re.escape(last)} {re.escape(d)}\b", split_text, re.I) for d in distractors)
    docs_text = {d.id: d.text for d in docs}
    for item in first["next_or_after"]:  # the next sentence, then the one after it, in the document
        first_, second = item["choices"][item["gold"]], item["choices"][1 - item["gold"]]
        assert f"{first_} {second}" in docs_text[item["doc_id"]]
    golds = [item["gold"] for item in first["next_sentence"]]
    assert len(set(golds)) > 1  # the true answer is not always in one place


def test_too_few_items_is_a_one_line_error_naming_the_parameter(data):
    with pytest.raises(ConfigError, match="probes.word_choice_items"):
        probes.build_items(data.documents["test"], dataclasses.replace(SMALL, word_choice_items=10 ** 6))
    with pytest.raises(ConfigError, match="probes.ood_blocks"):
        ProbeConfig(ood_blocks=0)
    with pytest.raises(ConfigError, match="probes.ood_text"):
        ProbeConfig(ood_text="wikipedia")


def test_the_out_of_domain_text_is_pinned_and_sampled_over_all_of_it(data):
    identity = probes.ood_identity()
    assert identity == probes.ood_identity() and len(identity["sha256"]) == 16
    docs = probes.ood_documents()
    assert len(docs) > 50 and all(d.id.startswith("python-reference/") for d in docs)
    tokens = probes.ood_tokens(data.tokenizer, 64, 8)
    assert tokens.shape == (8 * 64,)
    from distill_lib.data import pack_blocks, tokenize_split

    every = pack_blocks(tokenize_split(docs, data.tokenizer), 64)
    assert np.array_equal(tokens[:64], every[0]) and np.array_equal(tokens[-64:], every[-1])  # first and last
    with pytest.raises(ConfigError, match="probes.ood_blocks"):
        probes.ood_tokens(data.tokenizer, 64, len(every) + 1)


def test_a_uniform_model_scores_chance_out_of_domain_and_a_result_has_every_field(data):
    model = build_model(ModelConfig(n_layers=1, hidden_size=32, n_heads=4, tie_word_embeddings=False,
                                    max_position_embeddings=256), len(data.tokenizer), seed=0)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    result = probes.run_probes(model, data.tokenizer, data.documents["test"], SMALL, 64, 160)
    assert result["ood"]["ppl"] == pytest.approx(len(data.tokenizer), rel=1e-4)
    assert result["ood"]["sha256"] == probes.ood_identity()["sha256"]
    assert {row["task"] for row in result["suite"]} == set(probes.TASKS)
    log_v = math.log(len(data.tokenizer))
    for row in result["suite"]:  # every token costs log V: a candidate's score is -tokens * log V
        items = probes.build_items(data.documents["test"], SMALL)[row["task"]]
        hits = {"acc": 0, "acc_norm": 0}
        for item in items:
            n = [len(data.tokenizer(" " + c, add_special_tokens=False)["input_ids"]) for c in item["choices"]]
            hits["acc"] += int(np.argmax([-k * log_v for k in n])) == item["gold"]
            hits["acc_norm"] += int(np.argmax([-k * log_v / len((" " + c).encode())
                                               for k, c in zip(n, item["choices"])])) == item["gold"]
        assert row["acc"] == pytest.approx(hits["acc"] / len(items))
        assert row["acc_norm"] == pytest.approx(hits["acc_norm"] / len(items))
        assert row["n"] == 40 and row["stderr"] == pytest.approx(math.sqrt(row["value"] * (1 - row["value"]) / 39))
    flat = probes.headline(result)
    assert flat["ood_ppl"] == result["ood"]["ppl"] and "next_or_after/acc_norm" in flat


# --- in a study: recorded under their own key, rebuilt from a lost cache, absent for older runs ----
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from distill_lib.study import Study, load_study_config

    cfg = load_study_config("smoke")
    root = tmp_path_factory.mktemp("probe-study")
    return Study(dataclasses.replace(cfg, probes=None), root=root, log=None), \
        Study(cfg, root=root, log=None)


def test_a_study_records_probes_under_their_own_key_and_rebuilds_lost_weights(study):
    import shutil

    before, after = study  # one run store: `before` is the profile as it was without probes
    run = before.student("tf", seed=0)
    assert before.probes(run) is None and before.probe_key is None
    evaluation = before.evaluate(run)
    run = after.student("tf", seed=0)  # the same run and record, now in a profile with probes
    found = after.probes(run)
    assert found is not None and after.probe_key in run.record["evaluations"]
    assert len(run.record["evaluations"]) == 2  # the first evaluation and the probes
    assert after.evaluate(run) == evaluation  # the first evaluation is untouched
    assert found["ood"]["sha256"] == after.teacher_probes()["ood"]["sha256"]
    # report mode reads them back
    reader = type(after)(after.cfg, root=after.root, log=None, train=False)
    assert reader.probes(reader.student("tf", seed=0)) == found
    # weights are a cache: with the probes gone from the record and the model deleted, a rebuild
    # retrains the run, checks its final validation loss against the record, then measures it
    record = after.records.run(run.dir.name)
    del record["evaluations"][after.probe_key]
    from distill_lib.storage import write_json_atomic

    write_json_atomic(after.records.run_path(run.dir.name), record, record=True)
    shutil.rmtree(run.dir)
    again = after.student("tf", seed=0)
    assert not again.has_weights and after.probes(again) is None  # no rebuild unless asked
    rebuilt = after.probes(again, rebuild=True)
    assert again.has_weights
    assert rebuilt["ood"]["ppl"] == pytest.approx(found["ood"]["ppl"], rel=1e-5)
    assert [r["value"] for r in rebuilt["suite"]] == [r["value"] for r in found["suite"]]



def test_a_recorded_teacher_whose_weights_are_gone_is_rebuilt_before_a_student_needs_them(study):
    import shutil

    _, after = study
    teacher = after.teacher()
    recorded = teacher.record["summary"]["final"]["val_loss"]
    shutil.rmtree(teacher.dir)  # a fresh checkout: the record is committed, the weights are not
    reader = type(after)(after.cfg, root=after.root, log=None, train=False)
    assert not reader.teacher().has_weights  # report mode reads the record and trains nothing
    again = after.teacher()  # training mode: a student is about to need its weights
    assert again.has_weights
    assert again.training["final"]["val_loss"] == pytest.approx(recorded, rel=1e-4)


def test_the_probe_table_reads_the_teacher_the_runs_with_probes_and_the_pair_from_another_truncation():
    from distill_lib.study import StudyConfig

    def result(loss, acc):
        return {"ood": {"ppl": math.exp(loss), "loss": loss},
                "suite": [{"task": "word_choice", "metric": "acc_norm", "value": acc, "stderr": 0.02}]}

    class Fake:
        cfg = StudyConfig(methods=["tf", "kd"], seeds=[0, 1], seeds_by_method={"tf@best-block": [1], "kd@best-block": [0, 1]})
        found = {("tf", None, 0): result(7.0, 0.6), ("tf", None, 1): None,  # seed 1 recorded before the probes
                 ("kd", None, 0): result(6.0, 0.65), ("kd", None, 1): result(6.2, 0.64),
                 ("tf", "best-block", 1): result(6.5, 0.62), ("kd", "best-block", 0): result(5.5, 0.7),
                 ("kd", "best-block", 1): result(5.7, 0.69), ("tf", "best-block", 0): result(0.0, 0.0)}  # not listed

        def teacher_probes(self):
            return result(3.0, 0.78)

        def seeds(self, method):
            return self.cfg.seeds_of(method)

        def student(self, method, strategy=None, seed=0):
            return (method, strategy, seed)

        def probes(self, run):
            return self.found[run]

    table = probes.probe_table(Fake(), ["tf", "kd"], also_from=["best-block"])
    assert [(r.model, r.seed) for r in table.iloc[1:].itertuples()] == [
        ("TF, from max-gap", 0), ("KD, from max-gap", 0), ("KD, from max-gap", 1), ("TF, from best-block", 1), ("KD, from best-block", 0),
        ("KD, from best-block", 1)]
    assert list(probes.probe_table(Fake(), ["tf"]).model) == ["teacher", "TF"]  # one truncation: no "from"
    assert table.model.iloc[0] == "teacher" and list(table.ood_nats_vs_teacher) == pytest.approx([0.0, 4.0, 3.0, 3.2, 3.5, 2.5, 2.7])
    assert table["word_choice/acc_norm"].iloc[-1] == pytest.approx(69.0)
