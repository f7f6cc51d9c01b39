"""Keep every cache inside the project folder and stay offline unless the user opts in.

This runs when `distill_lib` is imported, before transformers / datasets / matplotlib are, because
those libraries read their cache locations once, at import time. Values already set in the
environment win (`setdefault`), so a user can still point a cache elsewhere on purpose.

Online use (downloading hub models and datasets, e.g. C4 or Pythia for the GPU profiles) is one
switch: `DISTILL_ONLINE=1`.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Everything the study downloads or derives (tokenizers, token caches, HF caches) lives here.
CACHE_ROOT = Path(os.environ.get("DISTILL_CACHE", PROJECT_ROOT / ".cache")).resolve()


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
