import pytest
import torch
from transformers import AutoModelForCausalLM

from distill_lib.config import ConfigError
from distill_lib.models import FAMILIES, compare_parameters, decoder_layers, load_causal_lm, parameter_counts
from distill_lib.optim import Lion
from distill_lib.truncate import (
    PAPER_STRATEGIES, layer_importance, remove_layers_, select_layers, truncate, truncate_by_strategy,
)
from tiny_models import VOCAB, tiny_model

FAMILY_NAMES = list(FAMILIES)
KEEP = [0, 2, 3, 5]  # of 6 layers


def ids(batch=2, seq=12, seed=1):
    return torch.randint(3, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def skipping_forward(model, keep, input_ids):
    """Reference: the *original* model with every dropped layer turned into the identity by a hook
    (an independent route to 'a forward through the kept layers only')."""
    handles = []
    for i, layer in enumerate(decoder_layers(model)):
        if i in keep:
            continue

        def identity(module, args, kwargs, output):
            hidden = args[0] if args else kwargs["hidden_states"]
            return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden

        handles.append(layer.register_forward_hook(identity, with_kwargs=True))
    try:
        with torch.no_grad():
            return model(input_ids, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_keeping_every_layer_reproduces_the_teacher(family):
    teacher = tiny_model(family)
    student = truncate(teacher, range(6))
    with torch.no_grad():
        assert torch.equal(student(ids()).logits, teacher(ids()).logits)
    assert student is not teacher
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(student.parameters(), teacher.parameters()))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_truncated_logits_equal_a_forward_through_the_kept_layers(family):
    teacher = tiny_model(family)
    reference = skipping_forward(teacher, KEEP, ids())
    student = truncate(teacher, KEEP)
    assert student.config.num_hidden_layers == len(KEEP) == len(decoder_layers(student))
    with torch.no_grad():
        logits = student(ids(), use_cache=False).logits
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-6)
    # the teacher is untouched and its dropped layers really mattered
    assert teacher.config.num_hidden_layers == 6
    with torch.no_grad():
        assert not torch.allclose(teacher(ids()).logits, logits, atol=1e-3)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_save_reload_gives_identical_logits_and_cached_generation(family, tmp_path):
    teacher = tiny_model(family)
    student = truncate(teacher, KEEP)
    per_layer = getattr(teacher.config, "layer_types", None)
    if per_layer is not None:
        assert student.config.layer_types == [per_layer[i] for i in KEEP]
    student.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert reloaded.config.num_hidden_layers == len(KEEP)
    assert getattr(reloaded.config, "layer_types", None) == getattr(student.config, "layer_types", None)
    with torch.no_grad():
        assert torch.equal(reloaded(ids()).logits, student(ids()).logits)
    for new_index, layer in enumerate(decoder_layers(reloaded)):
        assert all(m.layer_idx == new_index for m in layer.modules() if hasattr(m, "layer_idx"))

    prompt = ids(batch=1, seq=5)
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    with_cache = reloaded.generate(prompt, use_cache=True, **kwargs)
    without_cache = reloaded.generate(prompt, use_cache=False, **kwargs)
    assert with_cache.shape[1] == 13
    assert torch.equal(with_cache, without_cache)


def test_truncate_accepts_an_hf_folder(tmp_path):
    teacher = tiny_model("llama")
    teacher.save_pretrained(tmp_path)
    student = truncate(str(tmp_path), [0, 5])
    with torch.no_grad():
        torch.testing.assert_close(student(ids()).logits, skipping_forward(teacher, [0, 5], ids()),
                                   rtol=0, atol=1e-6)


def test_only_per_layer_config_fields_are_sliced(tmp_path):
    """A list whose length happens to equal the depth (eos ids of a 3-layer model) is kept; the
    per-layer `layer_types` is sliced, and the student saves and reloads with both."""
    teacher = tiny_model("qwen2", n_layers=3)
    teacher.config.eos_token_id = [2, 5, 7]
    teacher.config.layer_types = ["full_attention", "sliding_attention", "full_attention"]
    teacher.config.custom_list = ["a", "b", "c"]  # a field truncation knows nothing about
    student = truncate(teacher, [0, 2])
    assert student.config.eos_token_id == [2, 5, 7] and student.config.custom_list == ["a", "b", "c"]
    assert student.config.layer_types == ["full_attention", "full_attention"]
    assert student.config.source_layers == [0, 2]
    remove_layers_(student, [0])  # removal during training follows the same rule
    assert student.config.eos_token_id == [2, 5, 7] and student.config.layer_types == ["full_attention"]
    assert student.config.source_layers == [2]
    student.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert reloaded.config.eos_token_id == [2, 5, 7] and reloaded.config.num_hidden_layers == 1


def test_a_per_layer_field_of_the_wrong_length_is_refused():
    teacher = tiny_model("qwen2", n_layers=3)
    teacher.config.layer_types = ["full_attention"] * 2
    with pytest.raises(ConfigError, match=r"model: config.layer_types should hold one entry per layer \(3\)"):
        truncate(teacher, [0, 2])


# --- strategies ------------------------------------------------------------------------------------
def removed(keep, n=24):
    return [i for i in range(n) if i not in keep]


def test_the_five_paper_configurations_on_24_layers():
    expected = {
        "max-gap": [1, 3, 5, 7, 9, 11, 12, 14, 16, 18, 20, 22],
        "input": list(range(1, 13)),
        "output": list(range(11, 23)),
        "middle": list(range(6, 18)),
        "both": list(range(1, 7)) + list(range(17, 23)),
    }
    for strategy in PAPER_STRATEGIES:
        keep = select_layers(strategy, 24, drop=12)
        assert removed(keep) == expected[strategy], strategy
        assert len(keep) == 12 and keep[0] == 0 and keep[-1] == 23
        assert select_layers(strategy, 24, drop=0.5) == keep  # a fraction means the same


def test_other_named_strategies():
    assert select_layers("first", 24, drop=12) == list(range(12))
    assert select_layers("every-other", 24, drop=12) == list(range(0, 24, 2))
    assert select_layers("explicit", 8, remove=[6, 1]) == [0, 2, 3, 4, 5, 7]
    # 32-layer llama2-7B, 16 removed: the configurations still keep first and last
    for strategy in PAPER_STRATEGIES:
        keep = select_layers(strategy, 32, drop=16)
        assert len(keep) == 16 and keep[0] == 0 and keep[-1] == 31


def test_importance_strategies_follow_the_scores():
    bi = [0.9, 0.1, 0.5, 0.05, 0.7, 0.2, 0.3, 0.01]  # layer 7 is last: never removed
    assert removed(select_layers("block-influence", 8, drop=3, scores=bi), 8) == [1, 3, 5]
    angular = [0.0, 0.6, 0.2, 0.4, 0.5, 0.1]  # block of 3 starting at l, l in 0..5; l=0 not allowed
    assert removed(select_layers("angular", 8, drop=3, scores=angular), 8) == [2, 3, 4]


def test_layer_importance_matches_a_hand_computation():
    model = tiny_model("llama")
    batch = ids(batch=3, seq=10)
    with torch.no_grad():
        hs = model(batch, output_hidden_states=True).hidden_states  # hs[l] enters layer l (l < n)
    bi = layer_importance(model, batch, "block-influence")
    cos = torch.nn.functional.cosine_similarity
    for l in range(5):  # hs[6] has the final norm applied in HF; our hooks use the raw output
        assert bi[l] == pytest.approx(float(1 - cos(hs[l], hs[l + 1], dim=-1).mean()), abs=1e-5)
    ang = layer_importance(model, batch, "angular", drop=2)
    assert len(ang) == 5
    assert ang[1] == pytest.approx(float(torch.arccos(cos(hs[1], hs[3], dim=-1).mean()) / torch.pi), abs=1e-5)

    student, keep = truncate_by_strategy(model, "block-influence", drop=2, calibration_ids=batch)
    interior_scores = sorted(range(1, 5), key=lambda l: bi[l])[:2]
    assert removed(keep, 6) == sorted(interior_scores) and len(decoder_layers(student)) == 4


# --- removal during training -------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer_cls", [torch.optim.AdamW, Lion])
def test_removal_mid_training_keeps_optimizer_moments_bit_for_bit(optimizer_cls):
    model = tiny_model("llama").train()
    opt = optimizer_cls(model.parameters(), lr=1e-3)
    batch = ids()
    for _ in range(3):
        loss = model(batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    kept_layer = decoder_layers(model)[4]
    gone = {id(p) for p in decoder_layers(model)[2].parameters()}
    before = {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    n_before = len(list(opt.param_groups[0]["params"]))

    keep = remove_layers_(model, [2], opt)
    assert keep == [0, 1, 3, 4, 5]
    assert model.config.num_hidden_layers == 5 and decoder_layers(model)[3] is kept_layer
    assert kept_layer.self_attn.layer_idx == 3
    assert len(opt.param_groups[0]["params"]) == n_before - len(gone)
    assert not any(id(p) in gone for p in opt.state)
    for p in model.parameters():
        for k, v in opt.state[p].items():
            assert torch.equal(v, before[id(p)][k])
    # training goes on without a restart
    loss = model(batch, labels=batch).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


# --- parameter accounting ------------------------------------------------------------------------------
def test_parameter_counts_split_embeddings_and_count_tied_once():
    teacher = tiny_model("gpt2")  # tied LM head, learned positions
    counts = parameter_counts(teacher)
    assert counts["embedding"] == VOCAB * 32 + 128 * 32
    assert counts["total"] == sum(p.numel() for p in teacher.parameters())
    student = truncate(teacher, [0, 5])
    cmp = compare_parameters(teacher, student)
    per_layer = (counts["non_embedding"] - 2 * 32) // 6  # minus the final LayerNorm
    assert cmp["student_non_embedding"] == 2 * per_layer + 2 * 32
    assert cmp["kept_fraction_non_embedding"] == pytest.approx((2 * per_layer + 64) / (6 * per_layer + 64))
    untied = tiny_model("llama")  # untied LM head counts as embedding
    assert parameter_counts(untied)["embedding"] == 2 * VOCAB * 32


# --- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda m: truncate(m, [0, 6]), "keep: layer index 6 is out of range 0..5"),
    (lambda m: truncate(m, [0, -1]), "keep: layer index -1 is out of range"),
    (lambda m: truncate(m, [1, 1, 2]), "keep: duplicate layer index 1"),
    (lambda m: truncate(m, []), "keep: keeping zero layers"),
    (lambda m: select_layers("random", 6, drop=2), "strategy: unknown 'random' (valid: max-gap"),
    (lambda m: select_layers("middle", 6, drop=5), "at most 4 of 6 layers can be removed"),
    (lambda m: select_layers("input", 6, drop=0.99), "drop: must remove between 1 and 5"),
    (lambda m: select_layers("input", 6, drop=1.5), "drop: a fraction must be in (0, 1)"),
    (lambda m: select_layers("explicit", 6, remove=list(range(6))), "keeps none"),
    (lambda m: select_layers("block-influence", 6, drop=2), "scores: strategy 'block-influence' needs"),
    (lambda m: truncate_by_strategy(m, "angular", drop=2), "calibration_ids: strategy 'angular' needs"),
])
def test_bad_input_raises_a_named_error(call, message):
    model = tiny_model("llama")
    with pytest.raises(ConfigError) as err:
        call(model)
    assert message in str(err.value)


def test_non_decoder_models_are_refused():
    import transformers as tf

    bert = tf.BertForMaskedLM(tf.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ConfigError, match="BertForMaskedLM is not a causal decoder-only LM"):
        truncate(bert, [0])
    with pytest.raises(ConfigError, match="expected a transformers causal LM"):
        truncate(torch.nn.Linear(2, 2), [0])
    decoder_bert = tf.BertLMHeadModel(tf.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=32, is_decoder=True))
    with pytest.raises(ConfigError, match="family 'bert' is not supported \\(supported: llama, mistral"):
        truncate(decoder_bert, [0])


def test_loading_a_folder_that_is_no_causal_lm_or_is_damaged_fails_in_one_line(tmp_path):
    import transformers as tf

    t5 = tf.T5ForConditionalGeneration(tf.T5Config(vocab_size=50, d_model=16, d_ff=32, num_layers=1, num_heads=2,
                                                   d_kv=8))
    t5.save_pretrained(tmp_path / "t5")
    with pytest.raises(ConfigError) as err:
        load_causal_lm(str(tmp_path / "t5"))
    assert str(err.value) == (f"model: {str(tmp_path / 't5')!r} is a 't5' model (T5ForConditionalGeneration), not a "
                              f"causal decoder-only LM; supported families: {', '.join(FAMILIES)}")
    (tmp_path / "notes").mkdir()
    with pytest.raises(ConfigError, match=r"model: '.*notes' is not an HF model folder \(no config.json\)$"):
        load_causal_lm(str(tmp_path / "notes"))
    tiny_model("llama").save_pretrained(tmp_path / "llama")
    weights = tmp_path / "llama" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(ConfigError) as err:
        load_causal_lm(str(tmp_path / "llama"))
    message = str(err.value)
    assert message.startswith(f"model: cannot load causal LM {str(tmp_path / 'llama')!r} (")
    assert "\n" not in message and len(message) < 400 and "DISTILL_ONLINE" not in message
