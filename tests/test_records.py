"""Records: the committed results that reports are rendered from (distill_lib/records.py)."""
import json

import pytest

from distill_lib.config import ConfigError
from distill_lib.env import PROJECT_ROOT
from distill_lib.records import RECORD_VERSION, MissingRecord, RecordStore, portable
from distill_lib.storage import write_json_atomic
from distill_lib.study import Study


def _run_record(name: str, evaluations: dict) -> dict:
    return {"record_version": RECORD_VERSION, "name": name.rsplit("-", 1)[0], "hash": name.rsplit("-", 1)[1],
            "config": {}, "summary": {"wall_seconds": 1.0}, "metrics": [], "model": {"layers": 2},
            "evaluations": evaluations, "versions": {}, "hardware": {}}


def test_a_missing_record_names_the_notebook_that_makes_it_and_trains_nothing(tmp_path):
    study = Study.load("smoke", root=tmp_path / "runs", records=tmp_path / "records", train=False)
    with pytest.raises(MissingRecord, match=r"run teacher-[0-9a-f]{10} is not in .*notebook 00_base_models makes it: "
                                            r"`python -m distill_lib study --profile smoke --only 00`"):
        study.teacher()
    with pytest.raises(MissingRecord, match="notebook 01_truncation_configs makes it"):
        study.student("tf", strategy="middle")  # the study's own teacher is a name: no teacher needed
    with pytest.raises(MissingRecord, match="result 07_width-target .* notebook 07_width_vs_depth makes it"):
        study.width_target  # noqa: B018
    assert not (tmp_path / "runs").exists() and not (tmp_path / "records").exists()


def test_results_are_computed_once_then_read_back_as_recorded(tmp_path):
    study = Study.load("smoke", root=tmp_path / "runs", records=tmp_path / "records")
    calls = []

    def compute():
        calls.append(1)
        return {"kept": (0, 3), "ppl": 12.5}

    first = study.result("01_example", {"strategy": "x"}, compute)
    again = study.result("01_example", {"strategy": "x"}, compute)
    assert calls == [1] and first == again == {"kept": [0, 3], "ppl": 12.5}  # JSON as recorded, both times
    study.result("01_example", {"strategy": "y"}, compute)  # other inputs: another record
    assert len(calls) == 2
    reader = Study.load("smoke", root=tmp_path / "runs", records=tmp_path / "records", train=False)
    assert reader.result("01_example", {"strategy": "x"}, lambda: pytest.fail("recomputed")) == first


def test_records_merge_runs_results_and_evaluations(tmp_path):
    mine, theirs = RecordStore(tmp_path / "a"), RecordStore(tmp_path / "b")
    for store, name, evaluations in ((mine, "tf-s0-0000000001", {"k1": {"ppl": 1}}),
                                     (theirs, "tf-s0-0000000001", {"k2": {"ppl": 2}}),
                                     (theirs, "kd-s0-0000000002", {})):
        write_json_atomic(store.run_path(name), _run_record(name, evaluations), record=True)
    theirs.save_result("01_x", "abc", {"s": 1}, [1, 2], {"versions": {}, "hardware": {}})
    assert mine.merge_from(theirs.root) == {"runs": 1, "evaluations": 1, "results": 1}
    assert set(mine.run("tf-s0-0000000001")["evaluations"]) == {"k1", "k2"}
    assert mine.run("kd-s0-0000000002") is not None and mine.result("01_x", "abc")["value"] == [1, 2]
    assert mine.merge_from(theirs.root) == {"runs": 0, "evaluations": 0, "results": 0}  # idempotent


def test_a_record_of_another_version_or_broken_json_is_refused(tmp_path):
    store = RecordStore(tmp_path / "p")
    write_json_atomic(store.run_path("tf-s0-0000000001"), {**_run_record("tf-s0-0000000001", {}), "record_version": 0},
                      record=True)
    with pytest.raises(ConfigError, match="has record_version 0, this code reads 1"):
        store.run("tf-s0-0000000001")
    store.run_path("kd-s0-0000000002").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        store.run("kd-s0-0000000002")


def test_records_name_no_path_of_the_machine_that_wrote_them():
    from distill_lib.env import CACHE_ROOT

    data = {"teacher": str(PROJECT_ROOT / "runs" / "x"), "cache": f"{CACHE_ROOT}/models/y", "n": 1}
    assert portable(data) == {"teacher": "<project>/runs/x", "cache": "<cache>/models/y", "n": 1}
    for profile in ("mini", "smollm2"):  # the committed ones, if present
        for path in (PROJECT_ROOT / "records" / profile).rglob("*.json"):
            text = path.read_text()
            assert str(PROJECT_ROOT) not in text and "/home/" not in text, path


def test_opening_and_saving_a_notebook_in_lab_keeps_the_py_clean(tmp_path):
    """What JupyterLab does through jupytext's contents manager (notebooks/jupytext.toml): the .py
    opens as a notebook; saving it with outputs writes them to the paired .ipynb and the .py
    text is unchanged."""
    import shutil

    import nbformat
    from jupytext import TextFileContentsManager

    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "notebooks" / "jupytext.toml", root)
    source = PROJECT_ROOT / "notebooks" / "03_prune_schedule.py"
    shutil.copy(source, root)
    manager = TextFileContentsManager(root_dir=str(root))
    model = manager.get("03_prune_schedule.py", content=True)
    nb = model["content"]
    assert model["type"] == "notebook" and "parameters" in nb.cells[1].metadata.tags
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="an output\n")]
    manager.save({"type": "notebook", "content": nb}, "03_prune_schedule.py")
    assert (root / "03_prune_schedule.py").read_text() == source.read_text()
    assert "an output" in (root / "03_prune_schedule.ipynb").read_text()


def test_the_profile_default_of_a_notebook_comes_from_the_environment(monkeypatch):
    import distill_lib.notebook as nb

    monkeypatch.setenv("DISTILL_PROFILE", "smoke")
    monkeypatch.setenv("DISTILL_TRAIN", "0")
    assert nb.default_profile() == "smoke" and nb.default_train() is False
    monkeypatch.delenv("DISTILL_PROFILE")
    monkeypatch.delenv("DISTILL_TRAIN")
    assert nb.default_profile() == "mini" and nb.default_train() is True


def test_tables_show_meaningful_digits():
    from distill_lib.plots import format_value

    assert format_value(0.973, 3.4e-16) == "0.973 ± 0"
    assert format_value(47.83, 0.612) == "47.8 ± 0.6"
    assert format_value(3_012_345.0) == "3,012,345"
    assert format_value(194.2, 29.4) == "194 ± 29"
    assert format_value(0.350, 1.904) == "0.3 ± 1.9"


def test_a_run_record_is_written_one_metrics_line_per_step_and_reads_back_equal(tmp_path):
    store = RecordStore(tmp_path)
    record = _run_record("tf-s0-0000000001", {"k": {"ppl": 3.5}})
    record["metrics"] = [{"step": i, "loss": 1.0 / (i + 1), "val_ppl": None} for i in range(5)]
    write_json_atomic(store.run_path("tf-s0-0000000001"), record, record=True)
    text = store.run_path("tf-s0-0000000001").read_text()
    assert '  {"loss": 0.5, "step": 1, "val_ppl": null},' in text
    assert store.run("tf-s0-0000000001") == record


@pytest.mark.parametrize("code, says", [
    ({"commit": "abc123", "distill_lib_modified": False}, "training it in a checkout of the commit that trained it (abc123)"),
    ({"commit": "abc123", "distill_lib_modified": True}, "no commit reproduces them exactly (distill_lib/ differed from abc123)"),
    (None, "no commit reproduces them exactly (none recorded)")])
def test_a_recorded_run_without_weights_says_how_they_can_be_rebuilt(tmp_path, code, says):
    from distill_lib.config import RunConfig
    from distill_lib.records import MissingRecord
    from distill_lib.runs import RecordedRun

    run = RecordedRun(RunConfig(name="tf"), tmp_path / "tf-0123456789", {"code": code} if code else {})
    with pytest.raises(MissingRecord, match="is recorded but its model is not") as err:
        run.model_dir  # noqa: B018
    assert says in str(err.value) and "remove its record and retrain it" in str(err.value)


def test_the_code_version_is_this_repositorys_commit_or_none(tmp_path, monkeypatch):
    import subprocess

    import distill_lib.env as env

    head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--verify", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert env.code_version()["commit"] == (head or None)
    # a copy of the package outside any repository (an installed wheel): git cannot tell, and says nothing
    monkeypatch.setattr(env, "PROJECT_ROOT", tmp_path)
    assert env.code_version.__wrapped__() == {"commit": None, "distill_lib_modified": None}
    # inside some other repository: its commit is not this code's
    subprocess.run(["git", "init", "-q", str(tmp_path / "other")], check=True)
    monkeypatch.setattr(env, "PROJECT_ROOT", tmp_path / "other" / "src")
    (tmp_path / "other" / "src").mkdir()
    assert env.code_version.__wrapped__() == {"commit": None, "distill_lib_modified": None}



#: Committed records that lack the final newline the writer always ends a record with: they lost it
#: outside the writer (95361d0 removed a field from mini's four by hand; smollm2's three were
#: committed so in 67532ae). Apart from that newline the writer reproduces them byte for byte.
WITHOUT_FINAL_NEWLINE = {
    "mini/results/08_selection-15aa833e3f700729.json", "mini/results/08_selection-ab19704c99240e06.json",
    "mini/results/08_selection-c139aa340710214b.json", "mini/results/08_selection-c66e392826c98ca1.json",
    "smollm2/results/08_selection-25325da24737904d.json", "smollm2/results/08_selection-3a832fa97022b2ae.json",
    "smollm2/results/08_selection-98fc87eeccec9c05.json",
}


def test_every_committed_record_is_rewritten_byte_identically(tmp_path):
    """The one JSON writer (`storage.write_json_atomic`, record format) reproduces every committed
    record exactly: read from disk, written again, the same bytes."""
    from distill_lib.records import RECORDS_ROOT

    paths = sorted([*RECORDS_ROOT.glob("*/runs/*.json"), *RECORDS_ROOT.glob("*/results/*.json")])
    assert len(paths) > 100 and {p.parent.name for p in paths} == {"runs", "results"}
    differ = []
    for i, path in enumerate(paths):
        name = path.relative_to(RECORDS_ROOT).as_posix()
        committed = path.read_bytes()
        written = write_json_atomic(tmp_path / f"{i}.json", json.loads(committed), record=True).read_bytes()
        if written != (committed + b"\n" if name in WITHOUT_FINAL_NEWLINE else committed):
            differ.append(name)
    assert differ == []


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "gpt_neox", "opt"])
def test_a_records_parameter_counts_come_from_the_config_and_equal_the_loaded_models(family, tmp_path):
    """A record says how big its model is without reading the weights: counts of the model built on
    the meta device from config.json equal those of the loaded model (tied weights once; a model
    whose FFN width pruning shrank is counted at its new width)."""
    import torch
    from tiny_models import tiny_model

    from distill_lib.models import load_causal_lm, parameter_counts, parameter_counts_of_folder
    from distill_lib.width import shrink_ffn

    model = tiny_model(family, n_layers=3)
    models = {"whole": model}
    if family == "llama":
        width = model.config.intermediate_size
        masks = [torch.arange(width) % 4 != 0 for _ in range(3)]
        models["ffn-pruned"] = shrink_ffn(model, masks)
    for name, m in models.items():
        m.save_pretrained(tmp_path / name)
        loaded = load_causal_lm(tmp_path / name)
        assert parameter_counts_of_folder(tmp_path / name) == {"layers": 3, **parameter_counts(loaded)}, name
    if family == "llama":
        assert parameter_counts_of_folder(tmp_path / "ffn-pruned")["total"] < parameter_counts_of_folder(tmp_path / "whole")["total"]
