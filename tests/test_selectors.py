"""The calibration-loss selectors (ppl-removal, ppl-iterative, best-block, taylor) against hand
computations on tiny models: each hand computation builds the truncated model with `truncate` and
takes HF's own loss, an independent route from the selectors' bypassed layers and replayed outputs."""
import copy
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from distill_lib.config import IMPORTANCE_STRATEGIES, ConfigError
from distill_lib.models import decoder_layers
from distill_lib.truncate import (
    LAYER_SELECTION_FILE, layer_importance, layer_selection, score_layers, select_layers, truncate,
    truncate_by_strategy, write_layer_selection,
)
from tiny_models import VOCAB, tiny_model

SELECTORS = ("ppl-removal", "ppl-iterative", "best-block", "taylor")
N = 6  # layers of the tiny models


def self_samples(model, blocks=8, length=24, seed=0):
    """Calibration blocks sampled from the model itself (temperature 1). On its own samples the model
    has the lowest expected loss of all models (E_p[-log q] = H(p) + KL(p||q)), so any removal that
    changes its function scores above the full model, and removing an exact identity ties with it."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (blocks, 1), generator=g)
    with torch.no_grad():
        for _ in range(length - 1):
            probs = torch.softmax(model(ids, use_cache=False).logits[:, -1].float(), dim=-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=g)], dim=1)
    return ids


def make_identity(model, layer: int):
    """Zero the layer's attention output projection and MLP down projection: its residual adds exact
    zeros, so the layer is the identity function, bit for bit."""
    block = decoder_layers(model)[layer]
    with torch.no_grad():
        for proj in (block.self_attn.o_proj, block.mlp.down_proj):
            proj.weight.zero_()
            if proj.bias is not None:
                proj.bias.zero_()
    return model


def hand_ppl(model, keep, ids):
    """Perplexity of the truncated model, built for real, from HF's own mean-token loss."""
    student = truncate(model, keep)
    with torch.no_grad():
        return math.exp(float(student(ids, labels=ids, use_cache=False).loss))


def without(removed, n=N):
    return [i for i in range(n) if i not in set(removed)]


@pytest.fixture(scope="module")
def identity3():
    model = make_identity(tiny_model("llama", N), 3)
    return model, self_samples(model)


# --- one-shot perplexity -----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "opt"])
def test_ppl_removal_equals_the_truncated_models_perplexity(family):
    # qwen2: sliding window on the upper layers (non-uniform layer_types), windows shorter than the blocks
    model = tiny_model(family, N)
    ids = self_samples(model, blocks=4, length=20)
    scored = score_layers(model, ids, "ppl-removal", batch_size=3)  # micro-batches of 3, 1
    with torch.no_grad():
        full = math.exp(float(model(ids, labels=ids, use_cache=False).loss))
    assert scored["full_ppl"] == pytest.approx(full, rel=1e-5)
    assert scored["scores"] == pytest.approx([hand_ppl(model, without([l]), ids) for l in range(N)], rel=1e-5)


def test_ppl_removal_and_best_block_pick_an_identity_layer_first(identity3):
    model, ids = identity3
    scored = score_layers(model, ids, "ppl-removal")
    ppl = scored["scores"]
    assert ppl[3] == scored["full_ppl"]  # removing an exact identity changes nothing, bit for bit
    assert min(range(N), key=lambda l: ppl[l]) == 3 and all(ppl[l] > ppl[3] for l in range(N) if l != 3)
    for strategy in ("ppl-removal", "best-block", "ppl-iterative"):
        student, keep = truncate_by_strategy(model, strategy, drop=1, calibration_ids=ids)
        assert keep == without([3]), strategy
        assert len(decoder_layers(student)) == N - 1


def test_best_block_finds_two_adjacent_identity_layers():
    model = make_identity(make_identity(tiny_model("llama", N), 2), 3)
    ids = self_samples(model)
    scored = score_layers(model, ids, "best-block", drop=2)
    assert len(scored["scores"]) == N - 2 + 1  # blocks starting at 0 .. 4
    assert scored["scores"][2] == scored["full_ppl"]
    assert scored["scores"] == pytest.approx([hand_ppl(model, without([s, s + 1]), ids) for s in range(N - 1)],
                                             rel=1e-5)
    student, keep = truncate_by_strategy(model, "best-block", drop=2, calibration_ids=ids)
    assert keep == [0, 1, 4, 5] and len(decoder_layers(student)) == 4


def test_best_block_keeps_the_ends_unless_told():
    scores = [0.0, 5.0, 4.0, 3.0, 1.0]  # 6 layers, blocks of 2 starting at 0..4; 0 and 4 touch an end
    assert select_layers("best-block", 6, drop=2, scores=scores) == [0, 1, 2, 5]  # start 3
    assert select_layers("best-block", 6, drop=2, scores=scores, keep_ends=False) == [2, 3, 4, 5]  # start 0


# --- iterative -----------------------------------------------------------------------------------------
def test_ppl_iterative_equals_a_greedy_hand_computation():
    model = tiny_model("llama", N, seed=2)  # a model on which re-scoring changes the choice (below)
    ids = self_samples(model, blocks=6, length=20, seed=1)
    k = 3
    removed, rows = [], []
    for _ in range(k):  # by hand: every remaining interior layer, the truncated model built for real
        row = {}
        for l in range(1, N - 1):
            if l not in removed:
                row[l] = hand_ppl(model, without(removed + [l]), ids)
        rows.append(row)
        removed.append(min(row, key=lambda l: (row[l], l)))

    scored = score_layers(model, ids, "ppl-iterative", drop=k, batch_size=4)
    assert scored["order"] == removed
    for row, got in zip(rows, scored["scores"]):
        assert [got[l] is None for l in range(N)] == [l not in row for l in range(N)]
        assert [got[l] for l in row] == pytest.approx(list(row.values()), rel=1e-5)
    assert select_layers("ppl-iterative", N, drop=k, scores=scored["scores"]) == without(removed)
    student, keep = truncate_by_strategy(model, "ppl-iterative", drop=k, calibration_ids=ids, batch_size=4)
    assert keep == without(removed) and len(decoder_layers(student)) == N - k
    # one-shot removal is step 0 of the greedy (the interior part of it)
    one_shot = layer_importance(model, ids, "ppl-removal", batch_size=4)
    assert [scored["scores"][0][l] for l in range(1, N - 1)] == pytest.approx(one_shot[1:-1], rel=1e-6)
    assert select_layers("ppl-removal", N, drop=k, scores=one_shot) != keep  # here greedy ≠ one-shot


def test_select_layers_replays_the_greedy_from_the_rows():
    rows = [[None, 3.0, 2.0, 5.0, None],
            [None, 1.0, None, 4.0, None]]  # step 1: layer 2 is gone
    assert select_layers("ppl-iterative", 5, drop=2, scores=rows) == [0, 3, 4]
    with pytest.raises(ConfigError, match="step 1 needs a score"):
        select_layers("ppl-iterative", 5, drop=2, scores=[rows[0], [None, None, None, 4.0, None]])


# --- taylor --------------------------------------------------------------------------------------------
def test_taylor_equals_a_hand_computation_and_guards_the_ends():
    model = make_identity(tiny_model("llama", N), 0)  # raw Taylor ranks this layer last: score exactly 0
    ids = self_samples(model, blocks=4, length=16)
    scores = layer_importance(model, ids, "taylor", batch_size=3)  # gradients summed over micro-batches

    ref = copy.deepcopy(model).requires_grad_(True)
    ref(ids, labels=ids, use_cache=False).loss.backward()  # mean NLL over all blocks, as the selector
    by_hand = [sum(float((p.detach() * p.grad).abs().sum()) for p in layer.parameters())
               for layer in decoder_layers(ref)]
    assert scores == pytest.approx(by_hand, rel=1e-4)
    assert scores[0] == 0.0 and min(scores) == 0.0

    for drop in range(1, N - 1):
        _, keep = truncate_by_strategy(model, "taylor", drop=drop, calibration_ids=ids)
        assert keep[0] == 0 and keep[-1] == N - 1 and len(keep) == N - drop
    assert select_layers("taylor", N, drop=1, scores=scores, keep_ends=False) == without([0])  # unguarded
    with pytest.raises(ConfigError, match="at most 4 of 6"):
        truncate_by_strategy(model, "taylor", drop=5, calibration_ids=ids)


def test_padding_masked_out_changes_no_score():
    # right padding: the real tokens never attend to it, and masked targets are not counted
    model = tiny_model("llama", N)
    ids = self_samples(model, blocks=4, length=16)
    padded = torch.cat([ids, torch.zeros(4, 5, dtype=ids.dtype)], dim=1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros(4, 5, dtype=ids.dtype)], dim=1)
    for method in ("ppl-removal", "taylor"):
        assert (layer_importance(model, padded, method, attention_mask=mask)
                == pytest.approx(layer_importance(model, ids, method), rel=1e-4)), method


# --- what every selector promises ------------------------------------------------------------------------
def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(p.requires_grad, p.grad) for p in model.parameters()],
            [m.training for m in model.modules()],
            [sorted(vars(m)) for m in model.modules()])


@pytest.mark.parametrize("strategy", SELECTORS)
def test_scoring_leaves_the_model_bitwise_unchanged(strategy):
    model = tiny_model("llama", N)
    model.requires_grad_(False)  # as a loaded teacher
    decoder_layers(model)[2].requires_grad_(True)
    decoder_layers(model)[4].train()  # a mixed train/eval state must come back as it was
    ids = self_samples(model, blocks=3, length=12)
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits
    state, params, modes, attrs = snapshot(model)
    truncate_by_strategy(model, strategy, drop=2, calibration_ids=ids, batch_size=2)
    state2, params2, modes2, attrs2 = snapshot(model)
    assert state.keys() == state2.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    assert params == params2 and modes == modes2 and attrs == attrs2  # flags, no .grad, no leftover forward
    with torch.no_grad():
        assert torch.equal(model(ids, use_cache=False).logits, logits)


@pytest.mark.parametrize("strategy", SELECTORS)
def test_truncate_by_strategy_records_the_selection_with_the_student(strategy, tmp_path):
    model = tiny_model("llama", 8)
    ids = self_samples(model, blocks=3, length=12)
    student, keep = truncate_by_strategy(model, strategy, drop=0.5, calibration_ids=ids)
    assert len(decoder_layers(student)) == 4 and len(keep) == 4 and keep[0] == 0 and keep[-1] == 7
    record = layer_selection(student)
    assert record["strategy"] == strategy and record["keep"] == keep and record["teacher_layers"] == 8
    assert record["removed"] == [i for i in range(8) if i not in keep]
    assert record["calibration"] == {"blocks": 3, "block_length": 12}
    assert len(record["scores"]) == {"ppl-removal": 8, "taylor": 8, "best-block": 5, "ppl-iterative": 4}[strategy]
    assert record["score_meaning"] and ("full_ppl" in record) == (strategy != "taylor")

    student.save_pretrained(tmp_path / "model")  # saved in config.json, readable without the weights
    assert layer_selection(tmp_path / "model") == json.loads(json.dumps(record))
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "model").config.layer_selection == record
    path = write_layer_selection(tmp_path / "run", student)
    assert path.name == LAYER_SELECTION_FILE and json.loads(path.read_text())["keep"] == keep
    # a further truncation does not inherit the record (it describes another selection)
    assert layer_selection(truncate(student, [0, 1])) is None


def test_keep_ends_is_only_for_importance_strategies():
    assert set(SELECTORS) <= set(IMPORTANCE_STRATEGIES)
    with pytest.raises(ConfigError, match="keep_ends: only the importance strategies"):
        select_layers("middle", 8, drop=2, keep_ends=False)
    with pytest.raises(ConfigError, match="calibration_ids: strategy 'best-block' needs"):
        truncate_by_strategy(tiny_model("llama", N), "best-block", drop=2)


@pytest.mark.parametrize("strategy", ["ppl-iterative", "taylor"])
def test_cached_scores_give_the_same_student_and_any_change_to_the_weights_misses(strategy, tmp_path, monkeypatch):
    import distill_lib.truncate as truncate_module

    model = tiny_model("llama", 8)
    ids = self_samples(model, blocks=3, length=12)
    fresh, keep = truncate_by_strategy(model, strategy, drop=0.5, calibration_ids=ids)
    cached, keep_cached = truncate_by_strategy(model, strategy, drop=0.5, calibration_ids=ids, scores_cache=tmp_path)
    assert len(list(tmp_path.glob(f"{strategy}-*.json"))) == 1  # written on the first call
    assert keep_cached == keep and layer_selection(cached) == layer_selection(fresh)

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored again although the cache holds these scores")

    monkeypatch.setattr(truncate_module, "score_layers", no_scoring)
    again, keep_again = truncate_by_strategy(model, strategy, drop=0.5, calibration_ids=ids, scores_cache=tmp_path)
    assert keep_again == keep and layer_selection(again) == layer_selection(fresh)
    sd_fresh, sd_again = fresh.state_dict(), again.state_dict()
    assert all(torch.equal(sd_fresh[k], sd_again[k]) for k in sd_fresh)
    with pytest.raises(AssertionError, match="scored again"):  # other calibration blocks: scored anew
        truncate_by_strategy(model, strategy, drop=0.5, calibration_ids=ids[:2], scores_cache=tmp_path)
    with pytest.raises(AssertionError, match="scored again"):  # another amount: scored anew
        truncate_by_strategy(model, strategy, drop=2, calibration_ids=ids, scores_cache=tmp_path)
    with pytest.raises(AssertionError, match="scored again"):  # one weight changed: another model, scored anew
        with torch.no_grad():
            decoder_layers(model)[3].mlp.down_proj.weight[0, 0] += 1e-3
        truncate_by_strategy(model, strategy, drop=0.5, calibration_ids=ids, scores_cache=tmp_path)


def test_scored_strategies_calibrate_on_the_split_the_profile_or_variant_names(monkeypatch, tmp_path):
    """`calibration_split` reaches a scored strategy's init (and the blocks its truncation reads);
    a fixed configuration reads no calibration and keeps the hash it had."""
    import dataclasses

    import numpy as np

    from distill_lib import train as train_module
    from distill_lib.config import RunConfig
    from distill_lib.runs import config_hash
    from distill_lib.study import Study, load_study_config

    cfg = load_study_config("smoke")
    cfg = dataclasses.replace(cfg, selectors=["best-block"], variants={
        **cfg.variants, "tf-cal": {"method": "tf", "calibration_split": "train"}}, methods=[*cfg.methods, "tf-cal"])
    legacy = Study(cfg, root=tmp_path, log=None, train=False)
    profile = Study(dataclasses.replace(cfg, calibration_split="train"), root=tmp_path, log=None, train=False)
    assert legacy.run_config("tf", "best-block").init.calibration_split is None
    assert profile.run_config("tf", "best-block").init.calibration_split == "train"
    assert legacy.run_config("tf-cal", "best-block").init.calibration_split == "train"  # the variant's
    for study in (legacy, profile):  # a fixed configuration: no calibration, the same hash
        assert config_hash(study.run_config("tf", "max-gap")) == config_hash(legacy.run_config("tf", "max-gap"))

    asked = []

    class Data:  # what initial_model reads of the data: the blocks of a split and the tokenizer
        def blocks(self, split):
            asked.append(split)
            return np.zeros((16, 8), dtype=np.int64)

    monkeypatch.setattr(train_module, "load_causal_lm", lambda path: "teacher")
    monkeypatch.setattr(train_module, "truncate_by_strategy", lambda *a, **k: ("student", [0]))
    monkeypatch.setattr(train_module, "decoder_layers", lambda model: [0, 1])
    for split in (None, "train"):
        run = profile.run_config("tf", "best-block")
        run = dataclasses.replace(run, init=dataclasses.replace(run.init, calibration_split=split))
        assert isinstance(run, RunConfig)
        train_module.initial_model(run, Data(), tmp_path, log=None)
    assert asked == ["validation", "train"]
