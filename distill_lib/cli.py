"""`python -m distill_lib <command>`: the study's entry points.

- `study --profile NAME`: runs the study of a params profile (today: corpus + tokenizer preparation,
  written to reports/<profile>/data.json; the experiment notebooks are added by later issues).
- `prepare-data --profile NAME`: only the data step.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from distill_lib.config import ConfigError, load_profile, to_dict
from distill_lib.env import PROJECT_ROOT


def _prepare(profile: str) -> dict:
    from distill_lib.data import CorpusError, prepare_data

    cfg = load_profile(profile)
    data = prepare_data(cfg.data)
    report = {"profile": cfg.name, "config": to_dict(cfg.data), "stats": data.stats,
              "tokenizer_dir": str(data.tokenizer_dir), "token_cache": str(data.cache_dir)}
    out = PROJECT_ROOT / "reports" / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "data.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("study", "prepare-data"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="mini", help="params/<profile>.yaml (default: mini)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        _prepare(args.profile)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.command} ({args.profile}) done in {time.perf_counter() - started:.1f} s")
    return 0
