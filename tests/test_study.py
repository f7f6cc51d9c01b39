"""The study end to end: every notebook of the smoke profile executes through papermill (about
3 minutes on 2 cores), plus the runner's and the profiles' checks."""
import json

import pytest

from distill_lib.cli import main, notebooks, run_study
from distill_lib.config import ConfigError
from distill_lib.env import PROJECT_ROOT
from distill_lib.study import Study


def test_every_profile_validates_and_plans_offline(capsys):
    for profile in ("smoke", "mini", "gpu-pythia", "smollm2"):
        assert main(["plan", "--profile", profile]) == 0
    out = capsys.readouterr().out
    assert "EleutherAI/pythia-410m" in out and "vanilla KD" in out


def test_only_refuses_an_unknown_notebook():
    with pytest.raises(ConfigError, match="--only: no notebook '42' \\(valid: 00, 01"):
        notebooks(["42"])
    assert [nb.name[:2] for nb in notebooks(["02", "99"])] == ["02", "99"]


def test_smoke_study_executes_every_notebook_and_reuses_runs(capsys):
    assert run_study("smoke") == 0
    reports = PROJECT_ROOT / "reports" / "smoke"
    for nb in notebooks():
        executed = json.loads((reports / f"{nb.stem}.ipynb").read_text())
        errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, nb.name
        assert (reports / f"{nb.stem}.html").exists()
    figures = PROJECT_ROOT / "figures" / "smoke"
    assert (figures / "99_claims.md").exists() and (figures / "01_configs.png").exists()
    claims = (figures / "99_claims.csv").read_text()
    assert all(f"C{i}" in claims for i in range(1, 9))
    # a second execution reuses every run: no training line in the notebooks' outputs
    study = Study.load("smoke", log=None)
    before = {p: p.stat().st_mtime_ns for p in study.root.glob("*/complete.json")}
    assert run_study("smoke", only=["04"]) == 0
    assert {p: p.stat().st_mtime_ns for p in study.root.glob("*/complete.json")} == before


def test_a_failing_notebook_stops_the_run_and_names_it(tmp_path, monkeypatch, capsys):
    import distill_lib.cli as cli

    bad = tmp_path / "notebooks"
    bad.mkdir()
    (bad / "00_broken.py").write_text('# %% tags=["parameters"]\nprofile = "x"\n# %%\nraise RuntimeError("boom")\n')
    monkeypatch.setattr(cli, "NOTEBOOKS", bad)
    assert run_study("smoke") == 1
    out = capsys.readouterr().out
    assert "FAILED in cell" in out and "RuntimeError: boom" in out and "00_broken.py failed" in out
