"""The study end to end: every notebook of the smoke profile executes through papermill (about
3 minutes on 2 cores), plus the runner's and the profiles' checks."""
import json

import pytest

from distill_lib.cli import main
from distill_lib.config import ConfigError
from distill_lib.env import PROJECT_ROOT
from distill_lib.runner import NOTEBOOKS, notebooks, parse_run_specs, run_study
from distill_lib.study import Study
from project_copy import copy_project, run_cli


def test_every_profile_validates_and_plans_offline(capsys):
    for profile in ("smoke", "mini", "gpu-pythia", "smollm2", "smollm2-gpu"):
        assert main(["plan", "--profile", profile]) == 0
    out = capsys.readouterr().out
    assert "EleutherAI/pythia-410m" in out and "vanilla KD" in out


def test_only_refuses_an_unknown_notebook():
    with pytest.raises(ConfigError, match="--only: no notebook '42' \\(valid: 00, 01"):
        notebooks(["42"])
    assert [nb.name[:2] for nb in notebooks(["02", "99"])] == ["02", "99"]


def _tables(root, profile: str) -> dict:
    return {p.name: p.read_text() for p in sorted((root / "figures" / profile).glob("*.csv"))}


@pytest.mark.slow  # executes notebooks (papermill)
def test_smoke_study_executes_every_notebook_then_renders_the_same_from_records_alone(tmp_path):
    """In a copy of the project (tests/project_copy.py): nothing is written into this checkout."""
    copy_project(tmp_path)
    run_cli(tmp_path, "study", "--profile", "smoke")
    reports = tmp_path / "reports" / "smoke"
    for nb in notebooks():
        executed = json.loads((reports / f"{nb.stem}.ipynb").read_text())
        outputs = [o for c in executed["cells"] for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], nb.name
        html = (reports / f"{nb.stem}.html").read_text()
        # reports, not logs: no stderr, no code in the HTML, no path of this machine
        assert not [o for o in outputs if o.get("name") == "stderr"], nb.name
        assert "import distill_lib" not in html and "nb.open_study" not in html, nb.name  # no code
        for path in (str(tmp_path), str(PROJECT_ROOT)):
            assert path not in html and path not in json.dumps(executed), nb.name
    figures = tmp_path / "figures" / "smoke"
    assert (figures / "99_claims.md").exists() and (figures / "01_configs.png").exists()
    claims = (figures / "99_claims.csv").read_text()
    assert all(f"C{i}" in claims for i in range(1, 9))
    trained = _tables(tmp_path, "smoke")
    store = tmp_path / "runs" / "smoke"
    completed = {p: p.stat().st_mtime_ns for p in store.glob("*/complete.json")}
    assert completed

    # every table again from the records alone, with the run store (weights) out of the way
    store.rename(store.with_name("smoke.hidden"))
    run_cli(tmp_path, "report", "--profile", "smoke")
    assert not store.exists()  # nothing trained
    store.with_name("smoke.hidden").rename(store)
    assert _tables(tmp_path, "smoke") == trained

    # and once more after the run records are re-made from the run store (re-evaluated from weights)
    for record in (tmp_path / "records" / "smoke").glob("runs/*.json"):
        record.unlink()
    run_cli(tmp_path, "study", "--profile", "smoke", "--only", "02", "99")
    assert {p: p.stat().st_mtime_ns for p in store.glob("*/complete.json")} == completed  # reused, not retrained
    assert _tables(tmp_path, "smoke") == trained


@pytest.mark.slow  # executes notebooks (papermill)
def test_a_failing_notebook_stops_the_run_and_names_it(tmp_path, monkeypatch, capsys):
    import distill_lib.runner as runner

    bad = tmp_path / "notebooks"
    bad.mkdir()
    (bad / "00_broken.py").write_text('# %% tags=["parameters"]\nprofile = "x"\n# %%\nraise RuntimeError("boom")\n')
    monkeypatch.setattr(runner, "NOTEBOOKS", bad)
    assert run_study("smoke") == 1
    out = capsys.readouterr().out
    assert "FAILED in cell" in out and "RuntimeError: boom" in out and "00_broken.py failed" in out


def _profile(tmp_path, text: str, name: str = "derived"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_a_profile_builds_on_another_and_scale_multiplies_every_budget(tmp_path):
    from distill_lib.study import load_study_config

    base = load_study_config("smoke")
    derived = load_study_config(_profile(tmp_path, "base: smoke\nname: derived\nscale: 3\nstudent_train: {lr: 0.01}\n"))
    assert derived.name == "derived" and derived.data == base.data and derived.seeds == base.seeds
    # the nested mapping is merged key by key: only lr changes, then the scale applies
    st, bt = derived.student_train, base.student_train
    assert st.lr == 0.01 and st.batch_size == bt.batch_size
    assert (st.max_steps, st.warmup_steps, st.eval_every) == (3 * bt.max_steps, 3 * bt.warmup_steps, 3 * bt.eval_every)
    assert derived.teacher_train.max_steps == 3 * base.teacher_train.max_steps
    assert derived.gradual_every_tokens == [3 * k for k in base.gradual_every_tokens]
    # the GPU profile is smollm2 with one knob turned
    gpu, cpu = load_study_config("smollm2-gpu"), load_study_config("smollm2")
    assert gpu.student_train.max_steps == gpu.scale * cpu.student_train.max_steps and gpu.methods == cpu.methods


@pytest.mark.parametrize("text, message", [
    ("base: smoke\nscale: 2\n", "name: profile derived builds on 'smoke' and needs its own name"),
    ("base: smoke\nname: d\nscale: 0\n", "scale: must be an integer >= 1, got 0"),
    ("base: smoke\nname: d\nmethods: [tf, distil]\n", "methods: unknown 'distil' \\(valid: tf, kd"),
    ("base: smoke\nname: d\nmethods: [kd]\n", "methods: 'tf'"),
    ("base: nowhere\nname: d\n", "profile: 'nowhere' not found"),
    ("base: smoke\nname: d\nvariants: {s-lora: {method: scratch, healing: {method: lora}}}\n",
     "variants.s-lora.healing: only a tf variant heals a truncated model, got method 'scratch'"),
])
def test_bad_profiles_are_refused_with_the_key(tmp_path, text, message):
    from distill_lib.study import load_study_config

    with pytest.raises(ConfigError, match=message):
        load_study_config(_profile(tmp_path, text))


def test_a_base_cycle_is_refused(tmp_path):
    from distill_lib.study import load_study_config

    _profile(tmp_path, f"base: {tmp_path / 'b.yaml'}\nname: a\n", "a")
    _profile(tmp_path, f"base: {tmp_path / 'a.yaml'}\nname: b\n", "b")
    with pytest.raises(ConfigError, match="form a cycle"):
        load_study_config(tmp_path / "a.yaml")


def test_a_left_out_method_is_refused_before_any_work(tmp_path):
    study = Study.load(_profile(tmp_path, "base: smoke\nname: d\nmethods: [tf, kd]\n"), root=tmp_path / "runs", log=None)
    with pytest.raises(ConfigError, match="method: 'width' is not in profile d's methods \\(tf, kd\\)"):
        study.student("width")
    assert not (tmp_path / "runs").exists()


def test_train_specs_name_a_strategy_and_are_checked_before_any_work(tmp_path):
    profile = _profile(tmp_path, "base: smoke\nname: d\nmethods: [tf, kd, gradual]\ngradual_every_tokens: []\n")
    study = Study.load(profile, root=tmp_path / "runs", log=None, train=False)
    assert parse_run_specs(study, ["tf@input:0,1", "kd:1", "teacher"]) == [
        ("tf", "input", 0), ("tf", "input", 1), ("kd", None, 1), ("teacher", None, None)]
    # refused before any work: a training study would train its teacher for a good spec
    study = Study.load(profile, root=tmp_path / "runs", log=None, train=True)
    with pytest.raises(ConfigError, match="strategy 'upper' is not one this profile trains \\(valid: max-gap, "):
        parse_run_specs(study, ["tf@upper:0"])
    with pytest.raises(ConfigError, match="profile d sets no `gradual_every_tokens`"):
        parse_run_specs(study, ["gradual:0"])
    with pytest.raises(ConfigError, match="'width' is not in profile d's methods"):
        parse_run_specs(study, ["width@input:0"])
    assert not (tmp_path / "runs").exists()


def test_a_scratch_variant_trains_its_own_budget_under_its_own_name(tmp_path):
    profile = _profile(tmp_path, "base: smoke\nname: d\nmethods: [tf, scratch, scratch-4x]\n"
                                 "variants: {scratch-4x: {method: scratch, budget: 4}}\n")
    study = Study.load(profile, root=tmp_path / "runs", log=None, train=False)
    study.__dict__["teacher_layers"] = 4  # the smoke teacher's depth, without training it
    base, longer = study.run_config("scratch", seed=1), study.run_config("scratch-4x", seed=1)
    assert (base.name, longer.name) == ("scratch-s1", "scratch-4x-s1")
    assert longer.train.max_steps == 4 * base.train.max_steps
    assert longer.model == base.model and longer.model.n_layers == 2


def test_offline_kd_is_charged_its_logit_cache_teacher_forward(tmp_path):
    profile = _profile(tmp_path, "base: smoke\nname: d\nmethods: [tf, offline-kd, offline-k4]\n"
                                 "variants: {offline-k4: {method: offline-kd, train: {offline_top_k: 4}}}\n")
    study = Study.load(profile, root=tmp_path / "runs", log=None, train=False)
    study.__dict__["teacher_forward_flops"] = 1000.0

    class Described:  # a run that records its cache: 24 blocks of the smoke profile's 64 tokens
        training = {"teacher_cache": {"blocks": 24}, "tokens": 99_999}

    class Older:  # recorded before the cache was described: the blocks it trained on
        training = {"tokens": 768}

    study.student = lambda method, seed=0: Described if method == "offline-k4" else Older
    assert study.extra_flops("offline-k4") == 1000.0 * 24 * 64
    assert study.extra_flops("offline-kd") == 1000.0 * 768
    assert study.extra_flops("tf") == 0.0


@pytest.mark.parametrize("family", ["llama", "gpt2"])  # gpt2: Conv1D, not Linear
def test_the_teacher_forward_flops_are_counted_from_its_config_as_from_its_weights(tmp_path, family):
    import dataclasses

    from distill_lib.config import ModelConfig
    from distill_lib.flops import forward_flops_per_token
    from distill_lib.models import build_model, load_causal_lm
    from distill_lib.study import load_study_config

    teacher = tmp_path / "teacher"
    build_model(ModelConfig(family=family, n_layers=2, hidden_size=32, n_heads=4), 300, seed=0).save_pretrained(teacher)
    cfg = dataclasses.replace(load_study_config("smoke"), teacher_path=str(teacher))
    study = Study(cfg, root=tmp_path / "runs", log=None)
    assert study.teacher_forward_flops == forward_flops_per_token(load_causal_lm(teacher), cfg.data.block_length)


@pytest.mark.slow  # executes notebooks (papermill)
def test_a_profile_with_fewer_methods_skips_their_notebooks_and_claims(tmp_path, capsys):
    """Notebooks 00, 01, 02 and 99 adapt to a profile that trains only the paper's method; 03
    (gradual removal) is skipped by the runner; every claim that needs a left-out method (and C4,
    with one configuration) is reported 'not tested'."""
    import shutil

    import pandas as pd

    profile = _profile(tmp_path, "base: smoke\nname: smoke-tf-only\nmethods: [tf]\nconfigs: [max-gap]\n"
                                 "extra_strategies: []\n")
    study = Study.load(profile, log=None)
    leftovers = (study.root, study.records.root, study.figures, PROJECT_ROOT / "reports" / "smoke-tf-only")
    for folder in leftovers:  # of an earlier, interrupted execution
        shutil.rmtree(folder, ignore_errors=True)
    try:
        assert run_study(str(profile), only=["00", "01", "02", "03", "99"]) == 0
        out = capsys.readouterr().out
        assert "skipping 03_prune_schedule: it needs method(s) gradual, not in profile smoke-tf-only" in out
        assert not (PROJECT_ROOT / "reports" / "smoke-tf-only" / "03_prune_schedule.ipynb").exists()
        table = pd.read_csv(study.figures / "99_claims.csv").set_index("claim")
        assert list(table.index) == [f"C{i}" for i in range(1, 9)]
        assert set(table.verdict) == {"not tested"}
        assert "method random is not in this profile" in table.loc["C1", "ours"]
        trained = sorted(p.parent.name.split("-")[0] for p in study.root.glob("*/complete.json"))
        assert trained == ["teacher", "tf", "tf"]  # nothing else was trained
    finally:
        for folder in leftovers:
            shutil.rmtree(folder, ignore_errors=True)


def test_relative_corpus_paths_are_relative_to_the_profile_file(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from distill_lib.study import load_study_config

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("some text\n")
    path = tmp_path / "mine.yaml"
    path.write_text("base: smoke\nname: mine\ndata: {corpus: text, paths: [corpus/]}\n")
    monkeypatch.chdir(tmp_path.parent)  # any working directory, e.g. notebooks/
    cfg = load_study_config(path)
    assert cfg.data.paths == [str(tmp_path / "corpus")] and Path(cfg.data.paths[0]).is_absolute()
    path.write_text("base: smoke\nname: mine\ndata: {corpus: text, paths: [nowhere/]}\n")
    assert main(["plan", "--profile", str(path)]) == 2
    assert f"data.paths: '{tmp_path / 'nowhere'}' does not exist" in capsys.readouterr().err


def test_every_table_a_notebook_builds_reaches_its_report():
    """`plots.table(...)` returns a styled table that Jupyter shows only as the last statement of a
    cell; anywhere else (inside an `if`, or before other statements) it must go through display()."""
    import ast
    import re

    lost = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        for cell in re.split(r"(?m)^# %%", path.read_text())[1:]:  # [0]: text before the first cell
            marker, _, code = cell.partition("\n")  # what follows "# %%": [markdown], tags=[...]
            if "[markdown]" in marker:
                continue
            body = ast.parse(code).body
            for node in ast.walk(ast.Module(body=body, type_ignores=[])):
                if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                        and ast.unparse(node.value.func) == "plots.table" and (not body or node is not body[-1])):
                    lost.append(f"{path.name}: {ast.unparse(node)[:60]}")
    assert not lost, lost
