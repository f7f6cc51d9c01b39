import json

import pytest
import torch
from safetensors.torch import load_file

from distill_lib.config import ConfigError, DataConfig, InitConfig, ModelConfig, RunConfig, TrainConfig, WidthConfig
from distill_lib.models import decoder_layers, parameter_counts
from distill_lib.runs import config_hash, get_or_train
from distill_lib.width import FFNPruner, matching_ffn_fraction, pruned_fraction, shrink_ffn
from tiny_models import VOCAB, tiny_model

DATA = DataConfig(max_documents=120, vocab_size=300, block_length=32, validation_fraction=0.1, test_fraction=0.1)


def test_schedule_is_cubic_and_hits_the_target_exactly_at_its_last_step():
    values = [pruned_fraction(s, 0.6, 10, 50) for s in range(0, 61)]
    assert values[10] == 0.0 and values[50] == 0.6 and values[60] == 0.6
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert values[30] == pytest.approx(0.6 * (1 - 0.5**3))  # fast early, slow near the target


def test_platon_scores_match_a_hand_computation():
    model = tiny_model("llama", n_layers=2)
    pruner = FFNPruner(model, target=0.5, beta1=0.8, beta2=0.9)
    ids = torch.randint(3, VOCAB, (2, 10))
    history = []
    for _ in range(2):
        model.zero_grad()
        model(ids, labels=ids).loss.backward()
        w = model.model.layers[1].mlp.down_proj.weight
        history.append((w.detach() * w.grad).abs())
        pruner.update_scores()
    i1, i2 = history
    ibar1 = 0.2 * i1
    ubar1 = 0.1 * (i1 - ibar1).abs()
    ibar2 = 0.8 * ibar1 + 0.2 * i2
    ubar2 = 0.9 * ubar1 + 0.1 * (i2 - ibar2).abs()
    torch.testing.assert_close(pruner.ibar_1_down_proj, ibar2)
    torch.testing.assert_close(pruner.ubar_1_down_proj, ubar2)
    score = lambda n: getattr(pruner, f"ibar_1_{n}") * getattr(pruner, f"ubar_1_{n}")  # noqa: E731
    expected = score("gate_proj").sum(1) + score("up_proj").sum(1) + score("down_proj").sum(0)
    torch.testing.assert_close(pruner.unit_scores(1), expected)


def test_shrunk_model_equals_the_masked_model():
    model = tiny_model("llama", n_layers=3)
    pruner = FFNPruner(model, target=0.75, every=1, start=0, end=1)
    ids = torch.randint(3, VOCAB, (2, 10))
    model(ids, labels=ids).loss.backward()
    pruner.update_scores()
    pruner.step(1)  # prune 75% of the 64 units of every layer at once
    masks = [pruner.mask(i) for i in range(3)]
    assert all(int(m.sum()) == 16 for m in masks)
    small = shrink_ffn(model, masks)
    assert small.config.intermediate_size == 16 and small.model.layers[0].mlp.down_proj.in_features == 16
    with torch.no_grad():
        torch.testing.assert_close(small(ids).logits, model(ids).logits, rtol=0, atol=1e-6)
    assert parameter_counts(small)["total"] < parameter_counts(model)["total"]


def test_masked_units_stay_zero_through_training_and_export_shrinks(tmp_path):
    teacher = get_or_train(RunConfig(name="t", data=DATA, model=ModelConfig(n_layers=2, hidden_size=32, n_heads=4,
                                                                            max_position_embeddings=64),
                                     train=TrainConfig(max_steps=4, batch_size=8, eval_every=0, eval_blocks=4)),
                           root=tmp_path, log=None)
    run = RunConfig(name="w", data=DATA, init=InitConfig(kind="pretrained"), teacher=str(teacher.model_dir),
                    width=WidthConfig(target=0.5, prune_every=2, end_step=6),
                    train=TrainConfig(max_steps=8, batch_size=8, eval_every=0, eval_blocks=4, checkpoint_every=4))
    result = get_or_train(run, root=tmp_path, log=None, keep_checkpoint=True)
    entries = [json.loads(line) for line in (result.dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["ffn_pruned"] for e in entries][-3:] == [0.5, 0.5, 0.5]
    masked = load_file(result.dir / "checkpoint" / "model" / "model.safetensors")
    masks = load_file(result.dir / "checkpoint" / "pruner.safetensors")
    for i in range(2):
        gone = ~masks[f"mask_{i}"]
        assert int(gone.sum()) == 64 // 2
        assert masked[f"model.layers.{i}.mlp.gate_proj.weight"][gone].abs().sum() == 0
        assert masked[f"model.layers.{i}.mlp.down_proj.weight"][:, gone].abs().sum() == 0
    exported = result.load_model()
    assert exported.config.intermediate_size == 32 and exported.config.num_hidden_layers == 2


def test_unset_width_keeps_the_hash_of_runs_stored_before_it():
    import hashlib

    from distill_lib.config import to_dict

    run = RunConfig(name="x", data=DATA)
    legacy = {k: v for k, v in to_dict(run).items() if k not in ("width", "healing")}  # fields added later
    del legacy["init"]["calibration_split"]  # added later too (hash version 4), inside init
    del legacy["train"]["kd_fraction"]  # and hash version 5, inside train
    assert config_hash(run) == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:10]
    assert config_hash(RunConfig(name="x", data=DATA, width=WidthConfig())) != config_hash(run)


def test_matching_fraction_gives_the_depth_pruned_parameter_count():
    model = tiny_model("llama", n_layers=4)
    f = matching_ffn_fraction(model, 0.5)
    per_layer_ffn = 3 * 32 * 64
    removed = f * 4 * per_layer_ffn
    assert removed == pytest.approx(0.5 * parameter_counts(model)["non_embedding"])
    with pytest.raises(ConfigError, match="needs more than the"):
        matching_ffn_fraction(model, 0.05)
    with pytest.raises(ConfigError, match="width.target"):
        WidthConfig(target=1.0)
