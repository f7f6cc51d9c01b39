"""Where a profile's wall-clock goes, from its committed run records: optimizer steps, in-loop
validation and the final evaluation of every run; with the log of `python -m distill_lib train`,
also each run's total (set-up, model loading, saving, recording). Not a test.

    python bench/study_time.py smollm2 [TRAIN_LOG ...]

Runs recorded before validation was timed (`val_seconds` in the metrics) count their validation
inside the step time; the table says so.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def totals_from_logs(paths: list[str]) -> dict[str, float]:
    """run name -> seconds, from the 'recorded NAME in N s' lines of train logs."""
    out = {}
    for path in paths:
        for name, seconds in re.findall(r"recorded (\S+) in (\d+) s", Path(path).read_text(errors="replace")):
            out[name] = max(out.get(name, 0.0), float(seconds))  # a re-record of a finished run takes 0 s
    return out


def rows(profile: str, totals: dict[str, float]) -> list[dict]:
    out = []
    for path in sorted((ROOT / "records" / profile / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        metrics = record["metrics"]
        validation = [m["val_seconds"] for m in metrics if "val_seconds" in m]
        out.append({"run": record["name"], "machine": record["hardware"].get("cuda") or f"{record['hardware']['cpus']}-core CPU",
                    "steps_s": record["summary"]["wall_seconds"],
                    "validation_s": sum(validation) if validation else None,
                    "evaluation_s": sum(e["seconds"] for e in record["evaluations"].values()),
                    "total_s": totals.get(path.stem) or None})
    return out


def totals(table: list[dict]) -> list[str]:
    """Minutes per machine: optimizer steps, in-loop validation, final evaluation (runs whose
    validation was not timed apart count it in the steps)."""
    lines = ["| machine | runs | optimizer steps (min) | in-loop validation (min) | final evaluation (min) | "
             "validation + evaluation share |", "|---|---|---|---|---|---|"]
    for machine in sorted({r["machine"] for r in table}):
        mine = [r for r in table if r["machine"] == machine]
        steps = sum(r["steps_s"] for r in mine)
        validation = sum(r["validation_s"] or 0 for r in mine)
        evaluation = sum(r["evaluation_s"] for r in mine)
        lines.append(f"| {machine} | {len(mine)} | {steps / 60:.0f} | {validation / 60:.0f} | {evaluation / 60:.0f} | "
                     f"{(validation + evaluation) / (steps + validation + evaluation):.0%} |")
    return lines


def main() -> None:
    profile, logs = sys.argv[1], sys.argv[2:]
    table = rows(profile, totals_from_logs(logs))
    fmt = lambda v: "–" if v is None else f"{v / 60:.1f}"  # noqa: E731
    print(f"| run ({profile}) | optimizer steps (min) | in-loop validation (min) | final evaluation (min) | "
          "whole run incl. set-up (min) | outside the steps |")
    print("|---|---|---|---|---|---|")
    for r in table:
        # a run resumed in another process: the log's total covers its last process only
        outside = (f"{1 - r['steps_s'] / r['total_s']:.0%}" if r["total_s"] and r["total_s"] > r["steps_s"] else "–")
        validation = fmt(r["validation_s"]) if r["validation_s"] is not None else "in the steps"
        print(f"| {r['run']} | {fmt(r['steps_s'])} | {validation} | {fmt(r['evaluation_s'])} | {fmt(r['total_s'])} | {outside} |")
    print("\n" + "\n".join(totals(table)))


if __name__ == "__main__":
    main()
