#!/usr/bin/env bash
# Rebuild a recorded teacher's weights with the code that recorded it, into this checkout's run store.
#
# Weights are a cache: `Study.teacher` retrains a recorded teacher whose weights are missing and
# refuses the result unless its final validation loss equals the record's. Code changes that move a
# gradient by one ulp make that impossible for older records: commit df71c57 (2026-11-29, the fused
# LM head + loss) changed the LM loss's gradient in the last bit, so every record made before it
# (all of `mini`'s first 59 runs, its teacher included) is reproduced only by the code before it.
# Found with `git bisect` on the teacher's first 12 steps (equal at dbbea03, a 1-ulp loss difference
# at step 9 from df71c57 on; 1000 steps at lr 3e-3 grow it to val loss 3.5834 vs the record's 3.5896).
#
# usage: bench/rebuild_teacher_at_commit.sh COMMIT PROFILE      (e.g. dbbea03 mini: ~6 min on 2 cores)
# The old code trains in a temporary git worktree, with this checkout's .venv; the script then checks
# every logged step's loss against the record and moves the weights to runs/PROFILE/.
set -euo pipefail
commit=$1 profile=$2
root=$(cd "$(dirname "$0")/.." && pwd)
tree=$(mktemp -d)/tree
git -C "$root" worktree add --detach "$tree" "$commit" >/dev/null
trap 'git -C "$root" worktree remove --force "$tree"' EXIT
ln -s "$root/.venv" "$tree/.venv"
cd "$tree"
PYTHONPATH="$tree" "$root/.venv/bin/python" - "$profile" <<'PY'
import sys
from distill_lib.runs import get_or_train
from distill_lib.study import Study

study = Study.load(sys.argv[1], log=print)
get_or_train(study.teacher_run_config(), root=study.root, log=print)
PY
PYTHONPATH="$root" "$root/.venv/bin/python" - "$tree/runs/$profile" "$root" "$profile" <<'PY'
import json, shutil, sys
from pathlib import Path

built, root, profile = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
(folder,) = built.glob("teacher-*")
record = json.loads((root / "records" / profile / "runs" / f"{folder.name}.json").read_text())
logged = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
differ = [(a["step"], a["loss"], b["loss"]) for a, b in zip(record["metrics"], logged) if a["loss"] != b["loss"]]
if differ or len(logged) != len(record["metrics"]):
    sys.exit(f"rebuild: {folder.name} differs from its record (first: {differ[:1]}); weights not moved")
target = root / "runs" / profile / folder.name
if target.exists():
    shutil.rmtree(target)
shutil.move(str(folder), target)
print(f"{folder.name}: all {len(logged)} steps' losses equal the record; weights in {target}")
PY
