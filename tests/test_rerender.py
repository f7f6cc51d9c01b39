"""Committed output is what the code renders: a copy of the project's tracked files re-renders the
`mini` and `smollm2` reports from their committed records (`python -m distill_lib report`), and every
report, figure and table comes out byte for byte as committed. A change to a notebook or the library
that changes what a reader sees fails here until the profiles are re-rendered (`make report
PROFILE=...`) and committed."""
import shutil

import pytest

from project_copy import ROOT, copy_project, run_cli

OUTPUT_FOLDERS = ("reports", "figures")


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["mini", "smollm2"])
def test_a_copy_of_the_project_re_renders_the_committed_reports_byte_for_byte(profile, tmp_path):
    files = copy_project(tmp_path)
    committed = {name for name in files if name.split("/")[0] in OUTPUT_FOLDERS and name.split("/")[1:2] == [profile]}
    assert committed, f"no committed reports or figures for {profile}"
    for folder in OUTPUT_FOLDERS:  # rendered afresh: a file the code no longer makes shows as missing
        shutil.rmtree(tmp_path / folder / profile, ignore_errors=True)
    run_cli(tmp_path, "report", "--profile", profile)
    rendered = {str(p.relative_to(tmp_path)) for folder in OUTPUT_FOLDERS
                for p in (tmp_path / folder / profile).rglob("*") if p.is_file()}
    assert sorted(rendered - committed) == [], "rendered but not committed"
    assert sorted(committed - rendered) == [], "committed but no longer rendered"
    differ = [name for name in sorted(committed) if (tmp_path / name).read_bytes() != (ROOT / name).read_bytes()]
    assert differ == [], f"re-rendered {profile} differs from what is committed: {differ}"
