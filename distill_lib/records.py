"""Records: what the study found, small enough to commit. Weights are a cache; records are results.

    records/<profile>/
        runs/<name>-<hash>.json      one finished training run (same name and config hash as its
                                     folder in the run store, runs/<profile>/)
        results/<name>-<key>.json    one computation a notebook made on models that are not a run's
                                     output: importance scores, perplexity right after truncation,
                                     latency, the evaluation of a pretrained teacher

A run record holds everything a notebook or the claims table reads about a run:

    record_version   RECORD_VERSION (a record of another version is refused, never misread)
    name, hash       the run's name and the hash of its full config (`runs.config_hash`)
    config           the RunConfig as plain data
    summary          the training summary: steps, tokens, FLOPs, wall-clock, final losses
    metrics          every logged step (losses, lr, tokens, wall time, FLOPs, validation ppl)
    model            layers and parameter counts of the final model
    evaluations      {evaluation key: perplexity + zero-shot results}, key = `evaluation_key`
    versions, hardware   library versions and machine of the training run
    code             the commit that trained it and whether distill_lib/ differed from it (records
                     written before this field have none): a run whose weights were lost is
                     rebuilt bit for bit by checking out that commit and training it again
    notes            (optional) sentences about a field corrected after the run was recorded: what
                     was changed and why (e.g. the GPU runs' `mfu`, set to null); read by people,
                     never by the code

A result record holds `name`, `key`, `inputs` (what was computed, as plain data), `value` and the
versions, code and hardware of the machine that computed it.

Every record is written whole, in one format (`storage.write_json_atomic(..., record=True)`).
Records from several machines merge: the same name and hash is the same run wherever it was trained,
and a run's evaluations are the union of both (the same key means the same evaluation settings).
Nothing in a record names a path of the machine that wrote it.
"""
from __future__ import annotations

import json
from pathlib import Path

from distill_lib.config import ConfigError
from distill_lib.env import CACHE_ROOT, PROJECT_ROOT
from distill_lib.storage import write_json_atomic

RECORDS_ROOT = PROJECT_ROOT / "records"
#: Bumped when a field changes meaning; `load` refuses other versions instead of misreading them.
RECORD_VERSION = 1


class MissingRecord(ConfigError):
    """A notebook asked for a result that no record holds, in a mode that may not compute it.
    `what` names the missing record in a few words (the message adds how to make it)."""

    def __init__(self, message: str, what: str | None = None):
        super().__init__(message)
        self.what = what or message


def portable(data):
    """`data` with this machine's project and cache folders replaced by placeholders, so that a
    committed record names no path of the machine that wrote it."""
    text = json.dumps(data, sort_keys=True, default=str)  # key order as a record read back has it
    for root, name in ((CACHE_ROOT, "<cache>"), (PROJECT_ROOT, "<project>")):
        text = text.replace(json.dumps(str(root))[1:-1], name)
    return json.loads(text)


def evaluation_key(eval_cfg: dict, data_cfg: dict) -> str:
    """The key of one evaluation of a model: its settings and the data they read, nothing local."""
    from distill_lib.data import content_hash

    return content_hash("evaluation", eval_cfg, data_cfg)


class RecordStore:
    """The records of one profile (`records/<profile>/`)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    # --- runs ---------------------------------------------------------------------------------------
    def run_path(self, folder_name: str) -> Path:
        return self.root / "runs" / f"{folder_name}.json"

    def run(self, folder_name: str) -> dict | None:
        """The record of the run stored as `<name>-<hash>`, or None."""
        return self.load(self.run_path(folder_name))

    def save_run(self, stored) -> dict:
        """Record a complete run of the run store (`runs.Run`): its config, summary, metrics and
        the size of its final model. Evaluations already recorded for it are kept."""
        from distill_lib.models import parameter_counts_of_folder

        complete = stored.summary  # complete.json: name, hash, config, summary, versions, hardware
        record = {**complete, "record_version": RECORD_VERSION, "metrics": stored.metrics(),
                  "model": parameter_counts_of_folder(stored.model_dir),
                  "evaluations": (self.run(stored.dir.name) or {}).get("evaluations", {})}
        record = portable(record)
        write_json_atomic(self.run_path(stored.dir.name), record, record=True)
        return record

    def add_evaluation(self, folder_name: str, key: str, result: dict) -> dict:
        record = self.run(folder_name)
        if record is None:
            raise MissingRecord(f"record: no run {folder_name} in {self.root / 'runs'} to add an evaluation to")
        record["evaluations"][key] = portable(result)
        write_json_atomic(self.run_path(folder_name), record, record=True)
        return record

    # --- results ------------------------------------------------------------------------------------
    def result_path(self, name: str, key: str) -> Path:
        return self.root / "results" / f"{name}-{key}.json"

    def result(self, name: str, key: str) -> dict | None:
        return self.load(self.result_path(name, key))

    def save_result(self, name: str, key: str, inputs: dict, value, environment: dict) -> dict:
        record = portable({"record_version": RECORD_VERSION, "name": name, "key": key, "inputs": inputs,
                           "value": value, **environment})
        write_json_atomic(self.result_path(name, key), record, record=True)
        return record

    # --- reading ------------------------------------------------------------------------------------
    def load(self, path: Path) -> dict | None:
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"record: {path.relative_to(self.root.parent)} is not valid JSON ({err}); "
                              "restore it from git or delete it to recompute") from err
        version = record.get("record_version")
        if version != RECORD_VERSION:
            raise ConfigError(f"record: {path.relative_to(self.root.parent)} has record_version {version}, "
                              f"this code reads {RECORD_VERSION}; re-create it with `make study`")
        return record

    def runs(self) -> list[dict]:
        """Every run record of the profile."""
        return [self.load(p) for p in sorted((self.root / "runs").glob("*.json"))]

    def merge_from(self, other: Path | str) -> dict[str, int]:
        """Add the records of another checkout or machine (`other` = its records/<profile>/): new
        runs and results are copied; for a run recorded on both sides the evaluations are united.
        Returns counts of what was added."""
        other = RecordStore(other)
        added = {"runs": 0, "evaluations": 0, "results": 0}
        for path in sorted((other.root / "runs").glob("*.json")):
            theirs, mine = other.load(path), self.load(self.root / "runs" / path.name)
            if mine is None:
                write_json_atomic(self.root / "runs" / path.name, theirs, record=True)
                added["runs"] += 1
                continue
            new = {k: v for k, v in theirs["evaluations"].items() if k not in mine["evaluations"]}
            if new:
                mine["evaluations"].update(new)
                write_json_atomic(self.root / "runs" / path.name, mine, record=True)
                added["evaluations"] += len(new)
        for path in sorted((other.root / "results").glob("*.json")):
            if not (self.root / "results" / path.name).exists():
                write_json_atomic(self.root / "results" / path.name, other.load(path), record=True)
                added["results"] += 1
        return added
