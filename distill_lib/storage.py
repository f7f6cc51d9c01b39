"""Files that are whole or absent, and the hashes that name them.

- `atomic_directory`: build a folder under a temporary name, rename it into place.
- `write_text_atomic` / `write_json_atomic`: the same for one file; `write_json_atomic(..., record=True)`
  writes the committed records' format (`dumps_record`).
- `content_hash` / `documents_fingerprint`: the short SHA-256 keys of every derived cache.

Standard library only, and nothing else of `distill_lib`: every layer may use it. A change to a hash
here renames every cache and run (tests/test_hashes.py pins the values).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable


def content_hash(*parts: object) -> str:
    """Short SHA-256 of JSON-able parts (bytes as is): the key of every derived cache."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode() if not isinstance(part, bytes) else part)
        h.update(b"\x00")
    return h.hexdigest()[:16]


def documents_fingerprint(documents: Iterable) -> str:
    """Short SHA-256 of documents (anything with `.id` and `.text`, e.g. `data.Document`), in order."""
    h = hashlib.sha256()
    for doc in documents:
        h.update(doc.id.encode())
        h.update(b"\x00")
        h.update(doc.text.encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


def atomic_directory(final: Path, build: Callable[[Path], Any]) -> Path:
    """Create directory `final` by calling `build(tmp_dir)` on a temporary sibling and renaming it
    into place, so a killed run never leaves a half-written folder that looks complete. An existing
    `final` is returned as is (whoever finished first wins)."""
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        build(tmp)
        os.replace(tmp, final)
    except OSError:
        if not final.exists():  # a real failure, not a concurrent writer that finished first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def temporary_sibling(path: Path) -> Path:
    """Where `write_text_atomic` writes `path` before renaming it: `.<name>.tmp-<pid>` next to it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write `text` to `path` through a temporary sibling and a rename: a reader (or a kill) never
    sees half a file. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def dumps_record(data: Any) -> str:
    """A record's JSON (`distill_lib.records`): indented by one, keys sorted, except that a run's
    `metrics` are one line per logged step (half the size, and a diff shows which steps changed);
    values JSON does not know are written as `str`. No final newline."""
    if not (isinstance(data, dict) and isinstance(data.get("metrics"), list) and data["metrics"]):
        return json.dumps(data, indent=1, sort_keys=True, default=str)
    text = json.dumps({**data, "metrics": "@metrics@"}, indent=1, sort_keys=True, default=str)
    steps = ",\n  ".join(json.dumps(m, sort_keys=True, default=str) for m in data["metrics"])
    return text.replace('"@metrics@"', "[\n  " + steps + "\n ]", 1)


def write_json_atomic(path: Path | str, data: Any, indent: int | None = 1, sort_keys: bool = False, *,
                      record: bool = False) -> Path:
    """`write_text_atomic` of `json.dumps(data, indent=indent, sort_keys=sort_keys)`, values JSON does
    not know written as `str`; or, with `record=True`, of a record's format, `dumps_record(data)`
    and a final newline (`indent` and `sort_keys` then do not apply): the format of records/
    (tests/test_records.py rewrites every committed record with it, byte for byte)."""
    text = dumps_record(data) + "\n" if record else json.dumps(data, indent=indent, sort_keys=sort_keys, default=str)
    return write_text_atomic(path, text)
