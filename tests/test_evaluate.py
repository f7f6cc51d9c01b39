import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distill_lib.config import ConfigError, DataConfig, EvalConfig, ModelConfig, RunConfig, SuiteConfig, TrainConfig
from distill_lib.data import Document, prepare_data
from distill_lib.evaluate import (
    evaluate_folder, headline, latency, load_model_and_tokenizer, perplexity, resolve_tasks,
    needs_registry, run_lm_eval, speedup, task_manager,
)
from distill_lib.models import build_model
from distill_lib.runs import get_or_train
from distill_lib.tasks import OFFLINE, PAPER13, V3SIX, build_offline_suite

DATA = DataConfig(max_documents=400, vocab_size=512, block_length=64, validation_fraction=0.1, test_fraction=0.1)
SMALL_SUITE = SuiteConfig(cloze_items=40, choice_items=40, pair_items=40, bpb_documents=4)
EVAL = EvalConfig(task_sets=["offline"], max_length=64, batch_size=16, suite=SMALL_SUITE, ppl_max_blocks=40)


@pytest.fixture(scope="module")
def data():
    return prepare_data(DATA, log=None)


@pytest.fixture(scope="module")
def suite(data, tmp_path_factory):
    return build_offline_suite(data.documents["test"], tmp_path_factory.mktemp("suite"), SMALL_SUITE,
                               tokenizer=data.tokenizer, max_length=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained long enough to have learned something (about 20 s on 2 cores)."""
    run = RunConfig(name="eval-model", data=DATA, model=ModelConfig(n_layers=2, hidden_size=64, n_heads=4,
                                                                    max_position_embeddings=64),
                    train=TrainConfig(max_steps=250, batch_size=16, lr=5e-3, warmup_steps=20, eval_every=0,
                                      eval_blocks=8, checkpoint_every=1000))
    return get_or_train(run, root=tmp_path_factory.mktemp("runs"), log=None)


def read_items(suite_dir: Path, task: str) -> list[dict]:
    """The items of one task of a built offline suite (one JSON object a line)."""
    return [json.loads(line) for line in (Path(suite_dir) / f"{task}.jsonl").read_text().splitlines()]


def random_model(data, seed: int = 7):
    return build_model(ModelConfig(n_layers=2, hidden_size=64, n_heads=4, max_position_embeddings=64),
                       len(data.tokenizer), seed=seed).eval()


# --- perplexity ------------------------------------------------------------------------------------
def test_a_uniform_model_has_the_vocabulary_size_as_perplexity(data):
    model = build_model(ModelConfig(n_layers=1, hidden_size=32, n_heads=4, tie_word_embeddings=False,
                                    max_position_embeddings=64), len(data.tokenizer), seed=0)
    torch.nn.init.zeros_(model.lm_head.weight)  # every logit 0: uniform prediction
    result = perplexity(model, data.tokenizer, data.tokens["test"], 64, max_blocks=10)
    assert result["ppl"] == pytest.approx(512, rel=1e-5)
    assert result["tokens"] == 10 * 63


def test_bits_per_byte_matches_a_hand_computation(data):
    model = random_model(data)
    doc = data.documents["test"][0].text
    ids = data.tokenizer(doc, add_special_tokens=False)["input_ids"][: 3 * 32]  # one document: no EOS inside
    result = perplexity(model, data.tokenizer, np.asarray(ids), 32)
    nats, n_bytes = 0.0, 0
    for b in range(3):
        block = torch.tensor(ids[b * 32:(b + 1) * 32])
        with torch.no_grad():
            logp = torch.log_softmax(model(block[None]).logits[0, :-1], -1)
        nats -= float(logp[torch.arange(31), block[1:]].sum())
        n_bytes += len(data.tokenizer.decode(block[1:].tolist()).encode("utf-8"))
    assert result["bytes"] == n_bytes
    assert result["bits_per_byte"] == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
    assert result["ppl"] == pytest.approx(math.exp(nats / 93), rel=1e-5)


def test_perplexity_is_the_same_in_memory_and_reloaded(trained, data):
    model, tokenizer = load_model_and_tokenizer(trained.model_dir)
    reloaded = perplexity(model, tokenizer, data.tokens["test"], 64, max_blocks=20)
    trained_in_memory = trained.load_model()
    assert perplexity(trained_in_memory, data.tokenizer, data.tokens["test"], 64, max_blocks=20) == reloaded


# --- the offline suite ------------------------------------------------------------------------------
def test_offline_items_come_only_from_held_out_documents(suite, data):
    test_ids = {d.id: d.text for d in data.documents["test"]}
    train_ids = {d.id for d in data.documents["train"]}
    for task in OFFLINE:
        items = read_items(suite, task)
        assert items and all(item["doc_id"] in test_ids and item["doc_id"] not in train_ids for item in items)
    for item in read_items(suite, "offline_cloze"):
        assert (item["context"] + " " + item["target"]) in test_ids[item["doc_id"]]
    for item in read_items(suite, "offline_pairs"):
        assert item["good"] in test_ids[item["doc_id"]] and item["bad"] != item["good"]
        assert sorted(item["bad"].split()) == sorted(item["good"].split())
    for item in read_items(suite, "offline_choice"):
        assert item["choices"][item["gold"]] in test_ids[item["doc_id"]] and len(set(item["choices"])) == 4


def test_suite_is_deterministic_and_refuses_a_too_small_split(data, tmp_path):
    again = build_offline_suite(data.documents["test"], tmp_path, SMALL_SUITE)
    first = build_offline_suite(data.documents["test"], tmp_path / "other", SMALL_SUITE)
    for task in OFFLINE:
        assert read_items(again, task) == read_items(first, task)
    with pytest.raises(ConfigError, match="eval.suite: the held-out split yields .* fewer than the 40 requested"):
        build_offline_suite([Document("a", "One short sentence. And another one here.")], tmp_path / "x", SMALL_SUITE)


@pytest.mark.slow  # lm-eval
def test_a_trained_model_beats_a_random_one_on_every_offline_task(trained, data, suite):
    tasks = resolve_tasks(["offline"], suite)
    model, tokenizer = load_model_and_tokenizer(trained.model_dir)
    good = run_lm_eval(model, tokenizer, tasks, 64, include_path=suite, batch_size=16)
    bad = run_lm_eval(random_model(data), data.tokenizer, tasks, 64, include_path=suite, batch_size=16)
    value = lambda r, t, m: next(x["value"] for x in r["rows"] if x["task"] == t and x["metric"] == m)  # noqa: E731
    for task, metric in tasks.items():
        if metric == "bits_per_byte":
            assert value(good, task, metric) < value(bad, task, metric) - 0.5, task
        else:
            assert value(good, task, metric) > value(bad, task, metric), task
    assert good["n_samples"]["offline_pairs"]["effective"] == 40 and good["max_length"] == 64


@pytest.mark.slow  # lm-eval
def test_cli_and_python_api_give_the_same_numbers(trained, suite, tmp_path):
    """The CLI indexes lm-eval's whole registry besides the suite; the API, for offline tasks, only
    the suite's folder: the same numbers either way."""
    tasks = resolve_tasks(["offline"], suite)
    model, tokenizer = load_model_and_tokenizer(trained.model_dir)
    api = run_lm_eval(model, tokenizer, tasks, 64, include_path=suite, batch_size=16, seed=1234)
    out = tmp_path / "cli"
    subprocess.run([str(Path(sys.executable).with_name("lm_eval")), "--model", "hf", "--model_args",
                    f"pretrained={trained.model_dir},max_length=64,dtype=float32", "--tasks", ",".join(tasks),
                    "--include_path", str(suite), "--batch_size", "16", "--device", "cpu", "--seed", "1234",
                    "--output_path", str(out)], check=True, capture_output=True, timeout=900)
    cli = json.loads(next(out.rglob("results*.json")).read_text())["results"]
    for row in api["rows"]:
        assert cli[row["task"]][f"{row['metric']},none"] == pytest.approx(row["value"], rel=1e-6), row


# --- task sets and bad input ----------------------------------------------------------------------------
def test_only_hub_tasks_need_lm_evals_registry(suite):
    assert not needs_registry(OFFLINE, suite)
    assert needs_registry(OFFLINE, None)  # no suite folder: nothing but the registry to look in
    assert needs_registry({**OFFLINE, "piqa": "acc_norm"}, suite)


@pytest.mark.slow  # lm-eval
def test_a_suite_only_task_manager_indexes_the_suite_alone(suite):
    tasks = set(task_manager(suite, defaults=False).all_tasks)
    assert set(OFFLINE) <= tasks and "hellaswag" not in tasks


@pytest.mark.slow  # lm-eval
def test_paper_task_names_resolve_in_the_lm_eval_registry_without_downloading():
    registry = set(task_manager().all_tasks)
    assert set(PAPER13) <= registry and set(V3SIX) <= registry
    assert resolve_tasks(["v3six"]) == V3SIX and len(resolve_tasks(["paper13"])) == 13


@pytest.mark.slow  # lm-eval
def test_unknown_task_names_list_the_valid_sets():
    with pytest.raises(ConfigError, match="unknown task or task set 'hellaswagg' \\(task sets: paper13, v3six, offline"):
        resolve_tasks(["hellaswagg"])


def test_bad_eval_inputs(trained, data, suite, tmp_path):
    model, tokenizer = load_model_and_tokenizer(trained.model_dir)
    with pytest.raises(ConfigError, match="eval.max_length: 128 exceeds the model's maximum positions \\(64\\)"):
        run_lm_eval(model, tokenizer, {"offline_pairs": "acc"}, 128, include_path=suite)
    bare = tmp_path / "bare"
    model.save_pretrained(bare)
    with pytest.raises(ConfigError, match="tokenizer: .* has no tokenizer files and none was given"):
        load_model_and_tokenizer(bare)
    with pytest.raises(ConfigError, match="eval.ppl_split"):
        EvalConfig(ppl_split="train")


# --- the whole evaluation, tables, latency ----------------------------------------------------------------
@pytest.mark.slow  # lm-eval
def test_evaluate_folder_is_deterministic_tabulated_and_writes_nothing_beside_the_model(trained, data, suite):
    before = sorted(p.name for p in trained.model_dir.parent.iterdir())
    first = evaluate_folder(trained.model_dir, data, EVAL, suite, log=None)
    again = evaluate_folder(trained.model_dir, data, EVAL, suite, log=None)
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in again.items() if k != "seconds"}
    assert "lm_eval" in first["versions"]
    assert sorted(p.name for p in trained.model_dir.parent.iterdir()) == before  # the record is the one cache
    head = headline(first, resolve_tasks(["offline"], suite))
    assert set(head) >= {"ppl", "bits_per_byte", "avg_acc", "offline_choice/acc_norm"}


def test_latency_reports_min_median_max(data):
    model = random_model(data)
    prompts = torch.randint(3, 500, (2, 16))
    out = latency(model, prompts, new_tokens=8, repeats=3)
    for key in ("generate_seconds", "forward_seconds"):
        assert out[key]["min"] <= out[key]["median"] <= out[key]["max"]
    assert out["new_tokens"] == 8 and out["generate_tokens_per_s"] > 0
    assert speedup(out, out)["median"] == 1.0
