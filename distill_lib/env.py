"""Keep every cache inside the project folder and stay offline unless the user opts in.

This runs when `distill_lib` is imported, before transformers / datasets / matplotlib are, because
those libraries read their cache locations once, at import time. Values already set in the
environment win (`setdefault`), so a user can still point a cache elsewhere on purpose.

Online use (downloading hub models and datasets, e.g. C4 or Pythia for the GPU profiles) is one
switch: `DISTILL_ONLINE=1`.

Also here: `keep_freed_memory` (glibc allocator setting, on import) and `environment_record` (the
library versions and hardware stored with every result).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Everything the study downloads or derives (tokenizers, token caches, HF caches) lives here.
CACHE_ROOT = Path(os.environ.get("DISTILL_CACHE", PROJECT_ROOT / ".cache")).resolve()
#: Layer-importance scores memoised by model weights and calibration blocks (truncate.cached_scores).
LAYER_SCORES_CACHE = CACHE_ROOT / "layer_scores"


def online() -> bool:
    """True when the user has opted into hub downloads with DISTILL_ONLINE=1."""
    return os.environ.get("DISTILL_ONLINE", "0").strip().lower() in {"1", "true", "yes"}


def configure_environment() -> None:
    cache_dirs = {
        "HF_HOME": "huggingface",
        "HF_DATASETS_CACHE": "huggingface/datasets",
        "MPLCONFIGDIR": "matplotlib",
        "IPYTHONDIR": "ipython",
        "JUPYTER_CONFIG_DIR": "jupyter/config",
        "JUPYTER_DATA_DIR": "jupyter/data",
        "JUPYTER_RUNTIME_DIR": "jupyter/runtime",
        "PIP_CACHE_DIR": "pip",
        "TRITON_CACHE_DIR": "triton",
        "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
        "XDG_CACHE_HOME": "xdg",
    }
    for var, sub in cache_dirs.items():
        os.environ.setdefault(var, str(CACHE_ROOT / sub))
    offline = "0" if online() else "1"
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, offline)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # weight-loading bars flood notebooks
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Stop glibc from handing large blocks back to the kernel after every free.

    By default glibc serves every allocation above 32 MiB with a fresh `mmap` and unmaps it on free,
    so each training step page-faults and zero-fills its logits, their gradient and the softmax
    again (a 4 x 256 x 49,152 fp32 tensor is 192 MiB). Serving them from the heap and never trimming
    it reuses the same pages. Measured on the SmolLM2 student (fp32, 2 threads, steady-state steps):
    1.06x the tokens/s on TF steps and 1.19x on KD steps, identical losses; see
    bench/RESULTS_smollm2.md. Linux/glibc only; DISTILL_KEEP_FREED_MEMORY=0 turns it off.
    Returns True when the setting took effect."""
    if os.environ.get("DISTILL_KEEP_FREED_MEMORY", "1").strip() in {"0", "false", "no"}:
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    ok = mallopt(_M_MMAP_MAX, 0)
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # an int: the largest value mallopt takes
    ok &= mallopt(_M_TOP_PAD, 256 * 2**20)
    return bool(ok)


@functools.cache
def code_version() -> dict:
    """The commit of this checkout and whether `distill_lib/` differs from it: the code that made a
    result, so that weights lost from the run store can be rebuilt bit for bit by the same code (a
    faster kernel changes float summation order, and a retrained model its last bits). Read once, at
    the first call (`distill_lib` makes it on import), so a run records the code it started with even
    if commits land while it trains. None where git cannot tell (no git, or the package installed
    outside its checkout)."""
    import subprocess

    def git(*args):
        done = subprocess.run(["git", "--no-optional-locks", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                              text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None

    try:
        if git("rev-parse", "--show-toplevel") != str(PROJECT_ROOT):  # some other repository, or none
            return {"commit": None, "distill_lib_modified": None}
        commit = git("rev-parse", "--verify", "HEAD")
        status = git("status", "--porcelain", "--", "distill_lib") if commit else None
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "distill_lib_modified": None}
    return {"commit": commit, "distill_lib_modified": None if status is None else bool(status)}


def environment_record() -> dict:
    """Library versions, the code's commit and the hardware, stored with every result so a number
    can be reproduced."""
    import accelerate
    import datasets
    import tokenizers
    import torch
    import transformers

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "datasets": datasets.__version__,
                "tokenizers": tokenizers.__version__, "accelerate": accelerate.__version__}
    try:
        import lm_eval

        versions["lm_eval"] = getattr(lm_eval, "__version__", "unknown")
    except ImportError:
        pass
    hardware = {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return {"versions": versions, "code": code_version(), "hardware": hardware}
