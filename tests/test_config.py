import dataclasses
import re

import pytest

from distill_lib.config import ConfigError, DataConfig, from_dict, to_dict
from distill_lib.study import StudyConfig, load_study_config as load_profile


def test_profiles_in_params_load_and_round_trip():
    for name in ("smoke", "mini", "gpu-pythia", "smollm2"):
        cfg = load_profile(name)
        assert cfg.name == name
        assert from_dict(StudyConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, message", [
    ({"data": {"vocab_sise": 100}}, "unknown key data.vocab_sise"),
    ({"dataa": {}}, "unknown key dataa"),
    ({"data": {"vocab_size": "big"}}, "data.vocab_size: expected an integer"),
    ({"data": {"vocab_size": 4096.0}}, "data.vocab_size: expected an integer"),
    ({"data": {"hf_streaming": 1}}, "data.hf_streaming: expected true/false"),
    ({"drop": True}, "drop: expected a number"),
    ({"seeds": [0, "1"]}, "seeds[1]: expected an integer"),
    ({"data": {"paths": "a.txt"}}, "data.paths: expected a list"),
    ({"data": []}, "data: expected a mapping"),
])
def test_unknown_keys_and_wrong_types_name_the_key(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict(StudyConfig, data)


@pytest.mark.parametrize("kwargs, message", [
    ({"corpus": "wiki"}, "data.corpus: unknown corpus 'wiki' (valid: web-bible, text, hf)"),
    ({"vocab_size": 100}, "data.vocab_size: must be >= 257"),
    ({"block_length": 0}, "data.block_length: must be > 0"),
    ({"block_length": -5}, "data.block_length: must be > 0"),
    ({"corpus": "text"}, "data.paths: corpus 'text' needs"),
    ({"corpus": "hf"}, "data.hf_path: corpus 'hf' needs"),
    ({"validation_fraction": 0.0}, "data.validation_fraction: must be in (0, 0.5)"),
])
def test_bad_values_raise_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError) as err:
        DataConfig(**kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_profile_lists_available(tmp_path):
    with pytest.raises(ConfigError, match="available: .*mini.*smoke"):
        load_profile("does-not-exist")


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DataConfig().vocab_size = 10
