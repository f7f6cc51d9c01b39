"""Atomic writes (distill_lib.storage): a folder or file is whole or absent, never half written."""
import json
import os

import pytest

from distill_lib.storage import atomic_directory, write_json_atomic, write_text_atomic


def test_atomic_directory_leaves_nothing_when_the_build_fails(tmp_path):
    final = tmp_path / "out"

    def broken(tmp):
        (tmp / "part.npy").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_directory(final, broken)
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_atomic_directory_builds_once_and_reuses(tmp_path):
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "a.txt").write_text("a")

    final = tmp_path / "deep" / "out"
    assert atomic_directory(final, build) == final and atomic_directory(final, build) == final
    assert len(calls) == 1 and (final / "a.txt").read_text() == "a" and os.listdir(final.parent) == ["out"]


def test_json_is_written_whole_through_a_temporary_sibling(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "record.json"
    write_json_atomic(path, {"b": 1, "a": tmp_path}, indent=2)
    assert path.read_text() == json.dumps({"b": 1, "a": str(tmp_path)}, indent=2)
    assert os.listdir(path.parent) == ["record.json"]

    def killed(src, dst):
        raise OSError("killed before the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError):
        write_text_atomic(path, "new")
    assert json.loads(path.read_text())["b"] == 1 and os.listdir(path.parent) == ["record.json"]
