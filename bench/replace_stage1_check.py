"""Stage 1 of recorded `replace` runs (the replacement layer fitted to the removed block), recomputed
by this checkout's code and compared with each record's per-step MSE, FLOPs, tokens and optimizer
bytes. Stage 1 reads no LM head, so records of any age are comparable.

usage: .venv/bin/python bench/replace_stage1_check.py runs/mini records/mini/runs/tf-replace-*.json
(the first argument: the run store holding the records' teacher; ~50 s per mini record on 2 cores).
2026-12-05, stage 1 through the one loop, on this 2-core CPU: all three mini records and smollm2's
CPU record (seed 0) bit-equal (smollm2: 18 min for the three, beside a training job); smollm2's
seeds 1-2 were trained on an H200 and differ in the last bits, as any CPU re-run of a GPU run."""
import json
import sys
from pathlib import Path

import torch

from distill_lib.config import RunConfig
from distill_lib.data import prepare_data
from distill_lib.schema import from_dict
from distill_lib.train import initial_model

torch.set_num_threads(2)
store, records = Path(sys.argv[1]), sys.argv[2:]
for path in records:
    record = json.loads(Path(path).read_text())
    run = from_dict(RunConfig, record["config"])
    _, _, stage1 = initial_model(run, prepare_data(run.data, log=None), store / Path(path).stem, log=None)
    want = record["summary"]["healing"]["stage1"]
    same = {k: stage1[k] == want[k] for k in ("losses", "flops", "tokens", "optimizer_state_bytes")}
    print(Path(path).stem, "bit-equal" if all(same.values()) else f"DIFFERS: {same}")
