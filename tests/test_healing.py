"""Healing methods (distill_lib.healing) on tiny models: what trains, what stays bitwise, what the run
records, and that every method ends in a plain HF checkpoint.

The student of the runs: a 6-layer Llama-style teacher (hidden 32, 4 heads of 8, 2 KV heads, MLP 64,
300 tokens, tied embeddings) with 2 layers removed. Per decoder layer: q 32·32 + k 32·16 + v 32·16 +
o 32·32 + gate, up, down 3·32·64 + two norms 2·32 = 9,280 parameters; the final norm 32; the tied
embedding / head 300·32 = 9,600."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from distill_lib.config import (
    ConfigError, DataConfig, HealingConfig, InitConfig, ModelConfig, RunConfig, TrainConfig, WidthConfig, from_dict,
)
from distill_lib.data import prepare_data
from distill_lib.models import build_model, decoder_layers, load_causal_lm
from distill_lib.runs import get_or_train
from distill_lib.train import train
from distill_lib.truncate import truncate

DATA = DataConfig(max_documents=120, vocab_size=300, block_length=32, validation_fraction=0.1, test_fraction=0.1)
TEACHER = ModelConfig(n_layers=6, hidden_size=32, n_heads=4, n_kv_heads=2, intermediate_size=64,
                      max_position_embeddings=64)
LAYER, NORM, EMBEDDING = 9280, 32, 300 * 32
#: LoRA rank r on every linear of a layer: r·(in + out) each: q, o r·64; k, v r·48; gate, up, down r·96
LORA_PER_LAYER = {4: 4 * (64 + 48 + 48 + 64 + 96 + 96 + 96)}
PEAK = 1e12  # skip the matmul benchmark


def adamw_bytes(numel: int, tensors: int) -> int:
    """AdamW's state: exp_avg and exp_avg_sq (fp32) per element, a 4-byte step per tensor."""
    return 2 * 4 * numel + 4 * tensors


@pytest.fixture(scope="module")
def data():
    return prepare_data(DATA, log=None)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    model = build_model(TEACHER, len(data.tokenizer), seed=0, bos_token_id=data.tokenizer.bos_token_id,
                        eos_token_id=data.eos_token_id)
    with torch.no_grad():  # larger weights than the init, so that every layer matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder = tmp_path_factory.mktemp("teacher") / "model"
    model.save_pretrained(folder)
    data.tokenizer.save_pretrained(folder)
    return folder


def healed(teacher, healing, strategy="middle", **train_kw):
    base = dict(max_steps=4, batch_size=4, lr=1e-2, warmup_steps=1, eval_every=0, eval_blocks=4, checkpoint_every=2)
    return RunConfig(name=f"heal-{healing.method}", data=DATA, teacher=str(teacher), healing=healing,
                     init=InitConfig(kind="truncate", strategy=strategy, drop=2), train=TrainConfig(**{**base, **train_kw}))


def truncated_teacher(teacher, keep):
    return {k: v for k, v in truncate(load_causal_lm(teacher), keep).state_dict().items()}


# --- lora -----------------------------------------------------------------------------------------------
def test_lora_trains_only_adapters_and_its_merged_model_gives_the_adapter_models_logits(teacher, data, tmp_path):
    from distill_lib.healing import with_adapter

    run = get_or_train(healed(teacher, HealingConfig(method="lora", lora_rank=4, lora_alpha=8.0)), root=tmp_path,
                       log=None, peak_flops=PEAK, keep_checkpoint=True)
    summary = run.training
    trainable = 4 * LORA_PER_LAYER[4]  # 4 student layers x 7 adapted linears
    assert summary["trainable_parameters"] == trainable
    assert summary["total_parameters"] == 4 * LAYER + NORM + EMBEDDING + trainable
    assert summary["optimizer_state_bytes"] == adamw_bytes(trainable, 4 * 7 * 2)
    assert summary["tokens_per_s"] > 0 and summary["healing"] == {"method": "lora", "lora_rank": 4, "lora_alpha": 8.0,
                                                                  "lora_dropout": 0.0}
    # the checkpoint: the frozen base, bitwise the truncated teacher, and a PEFT adapter folder
    checkpoint = run.dir / "checkpoint"
    base = load_file(checkpoint / "model" / "model.safetensors")
    keep = [0, 1, 4, 5]  # 'middle' removes layers 2 and 3 of 6
    expected = truncated_teacher(teacher, keep)
    assert set(base) == set(expected) - {"lm_head.weight"}  # tied: stored once
    assert all(torch.equal(base[k], expected[k]) for k in base)
    assert {p.name for p in (checkpoint / "adapter").iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    # the final model: a plain HF checkpoint whose logits are the adapter model's
    plain = AutoModelForCausalLM.from_pretrained(run.model_dir).eval()
    assert not any("lora" in k for k in load_file(run.model_dir / "model.safetensors"))
    assert plain.config.num_hidden_layers == 4 and plain.config.source_layers == keep
    adapted = with_adapter(load_causal_lm(checkpoint / "model"), checkpoint / "adapter", trainable=False).eval()
    assert any(float(p.abs().max()) > 0 for n, p in adapted.named_parameters() if "lora_B" in n)  # it trained
    ids = torch.from_numpy(data.blocks("validation")[:2].astype("int64"))
    with torch.no_grad():
        merged_logits, adapter_logits = plain(ids).logits, adapted(ids).logits
        base_logits = load_causal_lm(checkpoint / "model").eval()(ids).logits
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-5, atol=1e-5)
    assert (merged_logits - base_logits).abs().max() > 1e-3  # the adapters are in the merged weights


def test_a_lora_run_killed_and_resumed_ends_bitwise_equal(teacher, data, tmp_path):
    run = healed(teacher, HealingConfig(method="lora", lora_rank=4, lora_dropout=0.1), max_steps=5)
    train(run, tmp_path / "straight", data=data, log=None, peak_flops=PEAK)
    assert train(run, tmp_path / "killed", data=data, log=None, peak_flops=PEAK, stop_after=3) == {"stopped_at": 3}
    train(run, tmp_path / "killed", data=data, log=None, peak_flops=PEAK)
    for name in ("model/model.safetensors", "adapter/adapter_model.safetensors"):
        a, b = (load_file(tmp_path / r / "checkpoint" / name) for r in ("straight", "killed"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    lines = [[json.loads(x)["loss"] for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
             for r in ("straight", "killed")]
    assert lines[0] == lines[1]


# --- partial --------------------------------------------------------------------------------------------
def test_partial_leaves_frozen_weights_bitwise_and_trains_head_norm_and_last_layers(teacher, data, tmp_path):
    run = healed(teacher, HealingConfig(method="partial", partial_layers=2))
    summary = train(run, tmp_path, data=data, log=None, peak_flops=PEAK)
    trainable = 2 * LAYER + NORM + EMBEDDING  # the tied embedding matrix is the head: it trains, counted once
    assert summary["trainable_parameters"] == trainable
    assert summary["total_parameters"] == 4 * LAYER + NORM + EMBEDDING
    assert summary["optimizer_state_bytes"] == adamw_bytes(trainable, 2 * 9 + 1 + 1)
    assert summary["healing"] == {"method": "partial", "partial_layers": 2}
    # backward: 2x the forward of the last two layers and the head only
    per_layer = 2 * (LAYER - 64) + 4 * 32 * 32
    assert summary["flops_per_token"]["student_backward"] == 2 * (2 * per_layer + 2 * EMBEDDING)
    final = load_file(tmp_path / "checkpoint" / "model" / "model.safetensors")
    start = truncated_teacher(teacher, [0, 1, 4, 5])
    trained = ("model.layers.2.", "model.layers.3.", "model.norm.", "model.embed_tokens.")
    for key, value in final.items():
        if key.startswith(trained):
            assert not torch.equal(value, start[key]), key
        else:
            assert torch.equal(value, start[key]), key
    # tied embeddings stay tied: one matrix, trained as the head, is also the input embedding
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "checkpoint" / "model")
    assert model.lm_head.weight is model.model.embed_tokens.weight and "lm_head.weight" not in final


def test_partial_with_tied_embeddings_sends_no_gradient_below_the_trained_layers(teacher, data):
    from distill_lib.healing import freeze_all_but_top

    student = truncate(load_causal_lm(teacher), [0, 1, 4, 5]).train()
    freeze_all_but_top(student, 1)
    seen = []
    decoder_layers(student)[3].register_forward_pre_hook(lambda m, args, kwargs: seen.append(
        (args[0] if args else kwargs["hidden_states"]).requires_grad), with_kwargs=True)
    ids = torch.from_numpy(data.blocks("train")[:2].astype("int64"))
    student(ids, labels=ids).loss.backward()
    assert seen == [False]  # the last layer's input needs no gradient: nothing below is differentiated
    assert student.lm_head.weight.grad is not None  # the tied matrix learns through the head
    assert all(p.grad is None for layer in decoder_layers(student)[:3] for p in layer.parameters())


# --- replace --------------------------------------------------------------------------------------------
def test_replace_stage_one_fits_only_the_new_layer_to_the_block(teacher, data):
    from distill_lib.healing import layer_output, replacement_student
    from distill_lib.train import fit_replacement

    t = load_causal_lm(teacher)
    student, block = replacement_student(t, truncate(t, [0, 1, 4, 5]), [0, 1, 4, 5], "middle")
    assert block == [2, 3] and student.config.source_layers == [0, 1, 3, 4, 5]
    before = {k: v.clone() for k, v in student.state_dict().items()}
    run = healed(teacher, HealingConfig(method="replace", replace_steps=12, replace_lr=3e-3))
    blocks = data.blocks("train")
    record = fit_replacement(t, student, block, run, data, torch.device("cpu"))
    assert record["steps"] == 12 and record["tokens"] == 12 * 4 * 32 and record["position"] == 2
    assert record["losses"][-1] < 0.8 * record["losses"][0]
    changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("model.layers.2.") for k in changed)  # only the new layer moved
    assert all(p.requires_grad for p in student.parameters())  # stage 2 trains everything
    ids = torch.from_numpy(blocks[100:102].astype("int64"))
    with torch.no_grad():  # the student's input to the new layer is the block's input in the teacher
        mse = torch.nn.functional.mse_loss(layer_output(student, 2, ids), layer_output(t, 3, ids))
    assert float(mse) < record["losses"][0]


def _stage_one_by_hand(teacher, student, block, run, data) -> list[float]:
    """The reference: stage 1 as its own loop (how the recorded `replace` runs were trained before it
    moved into the one loop): AdamW on the new layer alone, torch's cosine annealing, clipping."""
    from distill_lib.healing import layer_output
    from distill_lib.loop import block_order

    cfg, steps = run.train, run.healing.replace_steps
    new = decoder_layers(student)[block[0]]
    student.train().requires_grad_(False)
    new.requires_grad_(True)
    lr = run.healing.replace_lr or cfg.lr
    optimizer = torch.optim.AdamW(new.parameters(), lr=lr, betas=tuple(cfg.betas), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr * cfg.min_lr_ratio)
    blocks, losses = data.blocks("train"), []
    torch.manual_seed(cfg.seed)
    for step in range(steps):
        ids = torch.from_numpy(blocks[block_order(len(blocks), cfg.seed, step * cfg.batch_size, cfg.batch_size)].astype("int64"))
        with torch.no_grad():
            target = layer_output(teacher, block[-1], ids)
        loss = torch.nn.functional.mse_loss(layer_output(student, block[0], ids).float(), target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(new.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(float(loss.detach()))
    return losses


def test_replace_stage_one_through_the_one_loop_equals_its_own_loop_bit_for_bit(teacher, data):
    """What the recorded `replace` runs' stage 1 did, the loop reproduces exactly: losses and weights
    (also checked on the committed mini records' per-step MSE, see the closing note of issue 27)."""
    from distill_lib.healing import replacement_student
    from distill_lib.train import fit_replacement

    run = healed(teacher, HealingConfig(method="replace", replace_steps=9, replace_lr=3e-3), grad_clip=0.5)
    made = []
    for _ in range(2):
        t = load_causal_lm(teacher)
        made.append(replacement_student(t, truncate(t, [0, 1, 4, 5]), [0, 1, 4, 5], "middle") + (t,))
    (ours, block, t1), (reference, _, t2) = made
    record = fit_replacement(t1, ours, block, run, data, torch.device("cpu"))
    assert record["losses"] == _stage_one_by_hand(t2, reference, block, run, data)
    theirs = reference.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())


def test_replace_saves_and_reloads_as_a_standard_checkpoint_with_one_layer_for_the_block(teacher, tmp_path):
    run = get_or_train(healed(teacher, HealingConfig(method="replace", replace_steps=6)), root=tmp_path, log=None,
                       peak_flops=PEAK)
    summary = run.training
    model = AutoModelForCausalLM.from_pretrained(run.model_dir)
    assert model.config.num_hidden_layers == len(decoder_layers(model)) == 5  # 6 - 2 + 1
    assert model.config.source_layers == [0, 1, 3, 4, 5] and model.config.replaced_layers == [2, 3]
    assert model.config.layer_selection["removed"] == [2, 3]  # the truncation's record is kept
    healing = summary["healing"]
    assert healing["extra_parameters"] == LAYER and healing["replace_steps"] == 6
    stage1 = healing["stage1"]
    assert stage1["block"] == [2, 3] and len(stage1["losses"]) == 6 and stage1["losses"][-1] < stage1["losses"][0]
    assert summary["trainable_parameters"] == summary["total_parameters"] == 5 * LAYER + NORM + EMBEDDING
    assert summary["tokens"] == stage1["tokens"] + 4 * 4 * 32  # stage 1's data, compute and time are the run's
    assert summary["flops"] > stage1["flops"] > 0 and summary["wall_seconds"] > stage1["wall_seconds"]


def test_replace_takes_the_block_a_scored_block_strategy_chooses(teacher, data, tmp_path):
    run = healed(teacher, HealingConfig(method="replace", replace_steps=2), strategy="best-block", max_steps=1)
    summary = train(run, tmp_path, data=data, log=None, peak_flops=PEAK)
    model = load_causal_lm(tmp_path / "checkpoint" / "model")
    removed = model.config.layer_selection["removed"]
    assert len(removed) == 2 and removed == list(range(removed[0], removed[0] + 2)) and 0 < removed[0] < 4
    assert model.config.replaced_layers == removed == summary["healing"]["stage1"]["block"]
    assert model.config.source_layers == [i for i in range(6) if i != removed[0]]


# --- bad configurations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda: HealingConfig(method="qlora"), "healing.method: unknown 'qlora' (valid: full, lora, partial, replace)"),
    (lambda: from_dict(RunConfig, {"name": "x", "healing": {"method": "lora", "rank": 4}}), "unknown key healing.rank"),
    (lambda: HealingConfig(method="partial", lora_rank=4),
     "healing.lora_rank: set to 4, but it belongs to method 'lora' and healing.method is 'partial'"),
    (lambda: HealingConfig(lora_rank=4), "healing.lora_rank: set to 4, but it belongs to method 'lora'"),
    (lambda: HealingConfig(method="lora", lora_rank=0), "healing.lora_rank: must be > 0, got 0"),
    (lambda: HealingConfig(method="lora", lora_dropout=1.0), "healing.lora_dropout: must be in [0, 1)"),
    (lambda: HealingConfig(method="partial", partial_layers=-1), "healing.partial_layers: must be >= 0"),
    (lambda: from_dict(RunConfig, {"name": "x", "healing": {"method": "replace", "replace_steps": "10"}}),
     "healing.replace_steps: expected an integer, got '10'"),
    (lambda: RunConfig(name="x", healing=HealingConfig(method="replace")),
     "healing.method: 'replace' replaces a block of teacher layers, so it needs init.kind 'truncate', got 'scratch'"),
    (lambda: RunConfig(name="x", teacher="t", init=InitConfig(kind="truncate", strategy="block-influence"),
                       healing=HealingConfig(method="replace")),
     "healing.method: 'replace' needs the removed layers to form one contiguous block, which init.strategy "
     "'block-influence' does not guarantee"),
    (lambda: RunConfig(name="x", healing=HealingConfig(method="lora"), width=WidthConfig()),
     "healing.method: 'lora' cannot be combined with width pruning or gradual layer removal"),
])
def test_bad_healing_configs_are_refused_in_one_line_naming_the_key(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_replace_with_scattered_layers_is_refused_before_any_expensive_work(teacher, tmp_path, monkeypatch):
    from distill_lib import train as train_module

    def no_data(*args, **kwargs):
        raise AssertionError("data prepared before the check")

    monkeypatch.setattr(train_module, "prepare_data", no_data)
    run = healed(teacher, HealingConfig(method="replace"), strategy="max-gap")
    with pytest.raises(ConfigError) as err:
        train(run, tmp_path, log=None)
    assert str(err.value) == ("healing.method: 'replace' needs the removed layers to form one contiguous block, but "
                              "init.strategy 'max-gap' removes layers [2, 4] of 6; use a block strategy (input, output, "
                              "middle, angular, best-block) or explicit with consecutive layers")
    assert not (tmp_path / "config.json").exists()


def test_partial_layers_beyond_the_students_depth_are_refused(teacher, data, tmp_path):
    run = healed(teacher, HealingConfig(method="partial", partial_layers=5))
    with pytest.raises(ConfigError, match=r"^healing.partial_layers: 5 exceeds the student's 4 layers$"):
        train(run, tmp_path, data=data, log=None, peak_flops=PEAK)


def test_method_full_is_the_run_without_healing():
    plain = RunConfig(name="x", teacher="t", init=InitConfig(kind="truncate"))
    full = RunConfig(name="x", teacher="t", init=InitConfig(kind="truncate"), healing=HealingConfig(method="full"))
    assert full == plain and full.healing is None
    assert from_dict(RunConfig, {"name": "x", "teacher": "t", "init": {"kind": "truncate"},
                                 "healing": {"method": "full"}}) == plain


def test_step_flops_of_lora_hand_computed():
    """LoRA's backward: activation gradients through everything (the forward's matmuls once more, the
    attention products twice) plus the adapters' weight gradients."""
    from distill_lib.flops import training_flops_per_token
    from distill_lib.healing import prepare, step_flops

    student = build_model(TEACHER, 300, seed=0)
    run = RunConfig(name="x", healing=HealingConfig(method="lora", lora_rank=4))
    prepare(run, student)
    flops = training_flops_per_token(student, 32)
    adapters = 6 * LORA_PER_LAYER[4]
    matmuls = 6 * (LAYER - 64) + adapters + EMBEDDING  # every layer's linears, adapters, head
    assert flops.student_forward == 2 * matmuls + 4 * 6 * 32 * 32
    assert step_flops(run, student, 32, flops).student_backward == 2 * matmuls + 8 * 6 * 32 * 32 + 2 * adapters
