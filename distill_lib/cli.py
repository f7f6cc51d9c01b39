"""`python -m distill_lib <command>`.

  study --profile NAME [--only NN ...]   execute the notebooks in order with papermill into
                                         reports/<profile>/ (ipynb + html); figures and tables go
                                         to figures/<profile>/, run records to records/<profile>/;
                                         runs not recorded yet are trained; a notebook that needs a
                                         method the profile leaves out (`methods:`) is skipped
  report --profile NAME [--only NN ...]  the same from the committed records alone: nothing is
                                         trained or computed; a missing record is an error that
                                         names the notebook that makes it
  records merge --profile NAME FOLDER    add the records of another checkout or machine
  prepare-data --profile NAME            only the corpus / tokenizer / token-block step
  plan --profile NAME                    validate a profile and print its runs, token budgets, FLOPs
                                         and memory fit without downloading or training anything
"""
from __future__ import annotations

import argparse
import logging
import sys

from distill_lib.config import ConfigError
from distill_lib.planner import print_plan
from distill_lib.runner import run_study, train_runs

LOG = logging.getLogger(__name__)


def _show_the_librarys_log() -> None:
    """The library logs through `logging` (a logger per module, under `distill_lib`); on the command
    line its messages are the program's output, printed as lines (other libraries' loggers as they are)."""
    package = logging.getLogger("distill_lib")
    if _PRINTED not in package.handlers:
        package.addHandler(_PRINTED)
    package.setLevel(logging.INFO)
    package.propagate = False


class _Stdout(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is when a message comes (a test's captured one, say)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


_PRINTED = _Stdout()
_PRINTED.setFormatter(logging.Formatter("%(message)s"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("study", "report", "prepare-data", "plan", "records", "train"):
        p = sub.add_parser(name)
        if name == "train":
            p.add_argument("runs", nargs="+", metavar="METHOD[@STRATEGY][:SEEDS]",
                           help="e.g. teacher tf:0,1,2 kd-logit:0 tf@input:0 gradual:0 (seeds default to the "
                                "profile's for the method; STRATEGY to its `strategy`)")
        if name == "records":
            p.add_argument("action", choices=["merge"])
            p.add_argument("source", help="records/<profile>/ folder of another checkout or machine")
        p.add_argument("--profile", default="mini", help="a name in params/ (default: mini) or a YAML file")
        if name in ("study", "report"):
            p.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 00 02)")
    args = parser.parse_args(argv)
    _show_the_librarys_log()
    import yaml

    try:
        if args.command in ("study", "report"):
            return run_study(args.profile, args.only, train=args.command == "study")
        if args.command == "plan":
            return print_plan(args.profile)
        if args.command == "train":
            return train_runs(args.profile, args.runs)
        from distill_lib.study import Study

        study = Study.load(args.profile, log=LOG.info)
        if args.command == "records":
            added = study.records.merge_from(args.source)
            print(f"records {study.cfg.name}: added {added['runs']} runs, {added['evaluations']} evaluations, "
                  f"{added['results']} results from {args.source}")
            return 0
        study.data  # noqa: B018
        return 0
    except ConfigError as err:  # the project's own input errors: one line; anything else is a bug (traceback)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except yaml.YAMLError as err:  # a profile that does not parse (the file is read as text, so not named by yaml)
        from distill_lib.config import yaml_error

        print(f"error: {yaml_error(err, f'{args.profile!r} (or a profile it builds on)')}", file=sys.stderr)
        return 2
