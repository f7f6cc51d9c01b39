"""Stored runs and caches keep their names: a run's folder is `<name>-<config_hash>`, every cache key
is a `content_hash`, and committed records (records/<profile>/runs/) name runs by these hashes.

The values below were computed with the code *before* the layering refactor (issue 14) and are
hard-coded: a change that moves any of them would orphan every stored run or cache, so it must
fail here. Never update a value to make this test pass; add a hash version instead (see
`distill_lib.config.HASH_VERSION`)."""
import json
from pathlib import Path

import pytest

from distill_lib.config import (
    DataConfig, HealingConfig, InitConfig, ModelConfig, RunConfig, TrainConfig, WidthConfig, from_dict,
)
from distill_lib.env import PROJECT_ROOT
from distill_lib.runs import config_hash, run_dir

DATA = DataConfig(corpus="web-bible", vocab_size=512, block_length=64)
TEACHER = "run:teacher-a47b26d0ef"

PINNED = [
    # teacher-free: truncate, continue pretraining with the LM loss
    (RunConfig(name="tf-max-gap-s0", data=DATA, init=InitConfig(kind="truncate", strategy="max-gap", drop=0.5),
               train=TrainConfig(objective="lm", max_steps=160, lr=3e-3, warmup_steps=16), teacher=TEACHER),
     "tf-max-gap-s0-f5b70efebf"),
    # KD, width unset (the field added after the first runs were stored is left out of the hash)
    (RunConfig(name="kd-max-gap-s1", data=DATA, init=InitConfig(kind="truncate", strategy="max-gap", drop=2),
               train=TrainConfig(objective="kd", seed=1, kd_alpha=1.0, kd_divergence="reverse"), teacher=TEACHER),
     "kd-max-gap-s1-273053a463"),
    # KD with width set
    (RunConfig(name="kd-width-s0", data=DATA, init=InitConfig(kind="pretrained"), train=TrainConfig(objective="kd"),
               teacher=TEACHER, width=WidthConfig(target=0.7677)),
     "kd-width-s0-12064725b3"),
    # from scratch, no teacher
    (RunConfig(name="scratch-s0", data=DATA, model=ModelConfig(n_layers=4, hidden_size=64, n_heads=2),
               init=InitConfig(kind="scratch"), train=TrainConfig(objective="lm", optimizer="lion", betas=[0.9, 0.99])),
     "scratch-s0-5df445b1ed"),
    # local text corpus, explicit removal, gradual schedule, paths in the config
    (RunConfig(name="teacher", data=DataConfig(corpus="text", paths=["/data/a.txt"], document_separator="\n\n"),
               init=InitConfig(kind="truncate", strategy="explicit", remove=[1, 2]), teacher="/models/t",
               train=TrainConfig(precision="bf16", micro_batch_size=4, removal_order=[1, 3], remove_every_tokens=1000)),
     "teacher-4f4e0b1c02"),
    # healing set (hash version 3); pinned when the field was added
    (RunConfig(name="lora-middle-s0", data=DATA, init=InitConfig(kind="truncate", strategy="middle", drop=0.5),
               train=TrainConfig(objective="lm", max_steps=160, lr=3e-3, warmup_steps=16), teacher=TEACHER,
               healing=HealingConfig(method="lora", lora_rank=16, lora_alpha=32.0)),
     "lora-middle-s0-f86ec5a156"),
    # calibration on the training split (hash version 4); pinned when the field was added
    (RunConfig(name="tf-best-block-s0", data=DATA, init=InitConfig(kind="truncate", strategy="best-block", drop=0.5,
                                                                    calibration_split="train"),
               train=TrainConfig(objective="lm", max_steps=160, lr=3e-3, warmup_steps=16), teacher=TEACHER),
     "tf-best-block-s0-e00779d0f1"),
    # healing: {method: full} is the default loop: the run (and hash) of the first entry
    (RunConfig(name="tf-max-gap-s0", data=DATA, init=InitConfig(kind="truncate", strategy="max-gap", drop=0.5),
               train=TrainConfig(objective="lm", max_steps=160, lr=3e-3, warmup_steps=16), teacher=TEACHER,
               healing=HealingConfig(method="full")),
     "tf-max-gap-s0-f5b70efebf"),
]


@pytest.mark.parametrize("run, folder", PINNED, ids=[folder for _, folder in PINNED])
def test_run_folders_keep_their_pinned_hashes(run, folder):
    assert run_dir(run, "/runs").name == folder
    assert config_hash(run) == folder.rsplit("-", 1)[1]


def test_configs_read_back_from_json_keep_their_hashes():
    from distill_lib.config import to_dict

    for run, folder in PINNED:
        assert config_hash(from_dict(RunConfig, json.loads(json.dumps(to_dict(run))))) == folder.rsplit("-", 1)[1]


RECORDS = sorted((PROJECT_ROOT / "records").glob("*/runs/*.json"))


@pytest.mark.skipif(not RECORDS, reason="no committed run records")
def test_every_committed_run_record_keeps_its_hash():
    for path in RECORDS:
        record = json.loads(path.read_text())
        run = from_dict(RunConfig, record["config"])
        assert config_hash(run) == record["hash"], path.relative_to(PROJECT_ROOT)
        assert f"{run.name}-{record['hash']}" == path.stem


def test_cache_keys_keep_their_pinned_values():
    from distill_lib.config import EvalConfig, to_dict
    from distill_lib.data import Document
    from distill_lib.records import evaluation_key
    from distill_lib.storage import content_hash, documents_fingerprint

    assert content_hash("eval", to_dict(EvalConfig()), "/c/tokens/abc", None, "model") == "52a90160f714ba01"
    assert content_hash("bpe", 1, "0.21.0", 512, b"raw-bytes", Path("/x")) == "6eb361a5376810d0"
    assert evaluation_key(to_dict(EvalConfig()), to_dict(DataConfig())) == "97db57901d11ecf7"
    docs = [Document("a/1.txt", "In the beginning"), Document("b", "é\n")]
    assert documents_fingerprint(docs) == "118fe136e882f8b9"


def test_fields_added_after_hash_version_1_are_hashed_only_when_set():
    import dataclasses

    from distill_lib import config
    from distill_lib.runs import hashed_fields

    nested = [config.DataConfig, config.ModelConfig, config.InitConfig, config.TrainConfig, config.WidthConfig,
              config.HealingConfig]
    added = {f"{cls.__name__}.{f.name}": f.metadata["hash_version"] for cls in [RunConfig, *nested]
             for f in dataclasses.fields(cls) if "hash_version" in f.metadata}
    assert added == {"RunConfig.width": 2, "RunConfig.healing": 3, "InitConfig.calibration_split": 4,
                     "TrainConfig.kd_fraction": 5}
    assert max(added.values()) == config.HASH_VERSION
    assert RunConfig("x").width is None and RunConfig("x").healing is None and InitConfig().calibration_split is None
    run, _ = PINNED[0]
    assert not {"width", "healing"} & set(hashed_fields(run))
    assert "calibration_split" not in hashed_fields(run)["init"]
    every = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(hashed_fields(dataclasses.replace(run, width=WidthConfig()))) == every - {"healing"}
    assert set(hashed_fields(dataclasses.replace(run, healing=HealingConfig(method="lora")))) == every - {"width"}
    calibrated = dataclasses.replace(run, init=dataclasses.replace(run.init, calibration_split="train"))
    assert hashed_fields(calibrated)["init"]["calibration_split"] == "train"
    assert config_hash(calibrated) != config_hash(run)
    assert "kd_fraction" not in hashed_fields(run)["train"]
    switched = dataclasses.replace(run, train=dataclasses.replace(run.train, objective="kd", kd_fraction=0.25))
    assert hashed_fields(switched)["train"]["kd_fraction"] == 0.25


def test_a_teacher_run_is_referenced_by_name_and_found_beside_its_student(tmp_path):
    from distill_lib.run_config import is_run_reference, run_reference, teacher_location

    ref = run_reference("teacher-a47b26d0ef")
    assert ref == "run:teacher-a47b26d0ef" and is_run_reference(ref)
    assert teacher_location(ref, tmp_path / "tf-max-gap-s0-x") == str(tmp_path / "teacher-a47b26d0ef" / "model")
    assert teacher_location("HuggingFaceTB/SmolLM2-135M", tmp_path) == "HuggingFaceTB/SmolLM2-135M"
    assert teacher_location(None, tmp_path) is None and not is_run_reference(None)
