"""The run store: each run lives in `runs/<profile>/<name>-<hash of its full config>/`.

    config.json      the RunConfig (written when training starts)
    metrics.jsonl    one line per logged step (losses, lr, tokens, wall time, FLOPs, MFU, memory)
    checkpoint/      the latest resumable checkpoint (model, optimizer, RNG, loop state); removed
                     once complete.json is written (a finished run never resumes, and the
                     optimizer state is ~2x the model: 1-2 GB per SmolLM2 student)
    model/           the final HF checkpoint + tokenizer (written atomically at the end; a plain HF
                     folder for every method: width pruning shrunk, LoRA adapters merged)
    complete.json    written last: summary, library versions, hardware. Its presence = complete.

Asking for a run whose config matches a complete one returns it without training; an interrupted
one resumes from its checkpoint; a failed one never gets complete.json.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from distill_lib.config import RunConfig, to_dict
from distill_lib.env import PROJECT_ROOT, environment_record  # noqa: F401 (environment_record: re-exported)
from distill_lib.storage import atomic_directory, write_json_atomic

LOG = logging.getLogger(__name__)

RUNS_ROOT = PROJECT_ROOT / "runs"


def hashed_fields(run) -> dict:
    """What a run's hash is taken of: its config as plain data, without the fields added after hash
    version 1 that it leaves unset (config.HASH_VERSION), at any depth (e.g. init.calibration_split)."""
    return {f.name: hashed_fields(value) if dataclasses.is_dataclass(value) else to_dict(value)
            for f in dataclasses.fields(run)
            if (value := getattr(run, f.name)) is not None or f.metadata.get("hash_version", 1) == 1}


def config_hash(run: RunConfig) -> str:
    """The hash that names a run's folder: equal configs share a run, any change makes a new one."""
    return hashlib.sha256(json.dumps(hashed_fields(run), sort_keys=True).encode()).hexdigest()[:10]


def run_dir(run: RunConfig, root: Path | str = RUNS_ROOT) -> Path:
    return Path(root) / f"{run.name}-{config_hash(run)}"


@dataclasses.dataclass
class Run:
    config: RunConfig
    dir: Path

    @property
    def complete(self) -> bool:
        return (self.dir / "complete.json").exists()

    @property
    def summary(self) -> dict:
        return json.loads((self.dir / "complete.json").read_text())

    @property
    def training(self) -> dict:
        """What training reported (`train.train`'s return): steps, tokens, FLOPs, wall-clock, FLOPs
        per token, the last metrics line (`final`), healing and teacher-cache costs."""
        return self.summary["summary"]

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    def metrics(self) -> list[dict]:
        path = self.dir / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def load_model(self):
        from distill_lib.models import load_causal_lm

        return load_causal_lm(self.model_dir)


@dataclasses.dataclass
class RecordedRun:
    """A finished run as its record describes it (`distill_lib.records`): what notebooks and the
    claims table read. Its weights are in the run store only where it was trained (or copied)."""

    config: RunConfig
    dir: Path
    record: dict
    complete = True

    @property
    def summary(self) -> dict:
        """The record (same keys as complete.json: name, hash, config, summary, versions, hardware)."""
        return self.record

    @property
    def training(self) -> dict:
        """As `Run.training`, from the record."""
        return self.record["summary"]

    def metrics(self) -> list[dict]:
        return self.record["metrics"]

    @property
    def has_weights(self) -> bool:
        """Whether the run's final model is in this checkout's run store."""
        return (self.dir / "model" / "config.json").exists()

    @property
    def model_dir(self) -> Path:
        if not self.has_weights:
            from distill_lib.records import MissingRecord

            commit = (self.record.get("code") or {}).get("commit")
            if commit and self.record["code"].get("distill_lib_modified") is False:
                exact = f"rebuild them bit for bit by training it in a checkout of the commit that trained it ({commit}), or "
            elif commit:
                exact = f"no commit reproduces them exactly (distill_lib/ differed from {commit}); "
            else:
                exact = "no commit reproduces them exactly (none recorded); "
            raise MissingRecord(f"weights: run {self.dir.name} is recorded but its model is not in this checkout's "
                                f"run store ({self.dir.parent.name}/); records hold results, not weights. To compute "
                                f"on it, {exact}remove its record and retrain it with this code (new numbers, "
                                "recorded anew)")
        return self.dir / "model"

    def load_model(self):
        from distill_lib.models import load_causal_lm

        return load_causal_lm(self.model_dir)


def _remove_leftovers(folder: Path) -> None:
    """What a process killed while finishing a run leaves in its folder: a model/ that has no
    complete.json yet, temporary folders and files of atomic writes (`.model.tmp-<pid>`,
    `.complete.json.tmp-<pid>`, `checkpoint.tmp`) and a checkpoint swapped out but not yet deleted
    (`checkpoint.old`). Called once the final checkpoint is in place, by the one process that
    finishes the run."""
    from distill_lib.train import CHECKPOINT

    for path in [folder / "model", folder / f"{CHECKPOINT}.tmp", folder / f"{CHECKPOINT}.old",
                 *folder.glob(".model.tmp-*")]:
        shutil.rmtree(path, ignore_errors=True)
    for path in folder.glob(".complete.json.tmp*"):
        path.unlink(missing_ok=True)


def get_or_train(run: RunConfig, root: Path | str = RUNS_ROOT, log=LOG.info, keep_checkpoint: bool = False,
                 **train_kwargs) -> Run:
    """The complete run for `run`: reused if done, resumed if interrupted, trained otherwise. Its
    resume checkpoint is deleted once the run is complete unless `keep_checkpoint` (tests that
    inspect the final optimizer-side state ask for it)."""
    from distill_lib.data import prepare_data
    from distill_lib.train import CHECKPOINT, train

    result = Run(run, run_dir(run, root))
    if result.complete:
        if log:
            log(f"run {result.dir.name}: complete, reused")
        return result
    data = prepare_data(run.data, log=log)
    summary = train(run, result.dir, data=data, log=log, **train_kwargs)
    if "stopped_at" in summary or int(os.environ.get("RANK", "0")) != 0:
        return result  # only the main process writes the final model and the completion record

    def write_model(tmp: Path) -> None:
        if run.width is not None:  # the deliverable is the physically smaller model
            from distill_lib.train import shrunk_model

            shrunk_model(result.dir / CHECKPOINT).save_pretrained(tmp)
        elif run.healing is not None and run.healing.method == "lora":  # adapters merged: a plain model
            from distill_lib.healing import merged_model

            merged_model(result.dir / CHECKPOINT).save_pretrained(tmp)
        else:
            for item in (result.dir / CHECKPOINT / "model").iterdir():
                shutil.copy2(item, tmp / item.name)
        data.tokenizer.save_pretrained(tmp)

    # Finishing is idempotent: a kill anywhere below leaves no complete.json, and the restart (whose
    # train() resumes from the final checkpoint and returns the same summary) redoes all of it,
    # first removing what the killed process left: model/ without complete.json, its temporaries.
    _remove_leftovers(result.dir)
    atomic_directory(result.model_dir, write_model)
    record = {"name": run.name, "hash": config_hash(run), "config": to_dict(run), "summary": summary,
              **environment_record()}
    write_json_atomic(result.dir / "complete.json", record, indent=2)
    # After complete.json: a kill before the delete leaves a complete run, no loss. Only process 0 gets
    # here, after the final checkpoint's barrier, so no other process still reads the checkpoint.
    if not keep_checkpoint:
        shutil.rmtree(result.dir / CHECKPOINT, ignore_errors=True)
    return result
