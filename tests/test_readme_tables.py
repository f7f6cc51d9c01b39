"""The README's claims tables are what the committed records give. Each table sits between
`<!-- claims-table: PROFILE -->` (or `findings-table`) and `<!-- /table -->`; this test recomputes it
from `records/PROFILE/` with the code of notebook 99, so the README cannot drift from the records.

After a change that moves a verdict, rewrite the tables with
`UPDATE_README=1 .venv/bin/python -m pytest tests/test_readme_tables.py` and read the diff."""
import os
import re

import pytest

from distill_lib.claims import claims, claims_summary
from distill_lib.findings import findings
from distill_lib.env import PROJECT_ROOT
from distill_lib.study import Study

README = PROJECT_ROOT / "README.md"
PROFILES = ["mini", "smollm2"]


def rendered(profile: str) -> dict[str, str]:
    study = Study.load(profile).read_only()
    return {"claims": claims_summary(claims(study)).to_markdown(index=False),
            "findings": claims_summary(findings(study), key="hypothesis").to_markdown(index=False)}


def block(name: str, profile: str) -> re.Pattern:
    # the table: any lines up to the closing marker, never across another marker
    return re.compile(rf"(<!-- {name}-table: {re.escape(profile)} -->\n)((?:(?!<!--).)*?)(\n?<!-- /table -->)", re.S)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_readme_claims_tables_are_recomputed_from_the_records(profile):
    text = README.read_text()
    for name, table in rendered(profile).items():
        pattern = block(name, profile)
        found = pattern.search(text)
        assert found, f"README.md has no {name} table for {profile} (markers <!-- {name}-table: {profile} -->)"
        if os.environ.get("UPDATE_README") == "1":
            text = pattern.sub(lambda m: m.group(1) + table + "\n<!-- /table -->", text)
            README.write_text(text)
        else:
            assert found.group(2) == table, (f"README's {name} table for {profile} differs from its records; "
                                            "rerun with UPDATE_README=1 and read the diff")
