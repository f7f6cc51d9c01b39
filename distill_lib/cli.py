"""`python -m distill_lib <command>`.

  study --profile NAME [--only NN ...]   execute the notebooks in order with papermill into
                                         reports/<profile>/ (ipynb + html); figures and tables go
                                         to figures/<profile>/; a notebook that needs a method the
                                         profile leaves out (`methods:`) is skipped, with a line
  prepare-data --profile NAME            only the corpus / tokenizer / token-block step
  plan --profile NAME                    validate a profile and print its runs, token budgets, FLOPs
                                         and memory fit without downloading or training anything
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from distill_lib.config import ConfigError
from distill_lib.env import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"
#: Methods a notebook cannot do without: the runner skips it for a profile whose `methods` leave
#: one out. (00, 01, 02, 06 and 99 adapt to the methods a profile has.)
REQUIRED_METHODS = {"03": ("gradual",), "04": ("scratch",), "05": ("chop-distill", "kd"), "07": ("width",)}


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if not only:
        return found
    chosen = [nb for nb in found if nb.name[:2] in only]
    unknown = sorted(set(only) - {nb.name[:2] for nb in found})
    if unknown:
        raise ConfigError(f"--only: no notebook {unknown[0]!r} (valid: {', '.join(nb.name[:2] for nb in found)})")
    return chosen


def run_study(profile: str, only: list[str] | None = None, log=print) -> int:
    """Execute the notebooks; returns the exit code (non-zero names the failing notebook and cell)."""
    import jupytext
    import papermill
    from nbconvert import HTMLExporter

    from distill_lib.study import Study

    study = Study.load(profile)  # a bad profile fails here, before any work
    chosen = []
    for nb in notebooks(only):
        missing = [m for m in REQUIRED_METHODS.get(nb.name[:2], ()) if m not in study.cfg.methods]
        if missing:
            log(f"skipping {nb.stem}: it needs method(s) {', '.join(missing)}, not in profile {study.cfg.name}")
        else:
            chosen.append(nb)
    study.data  # noqa: B018  (corpus and tokenizer first: fast failure on a data problem)
    # a profile given as a file reaches the notebooks (which run in notebooks/) as an absolute path
    as_parameter = str(Path(profile).resolve()) if Path(profile).suffix else str(profile)
    out = PROJECT_ROOT / "reports" / study.cfg.name
    out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    for i, source in enumerate(chosen, 1):
        started = time.perf_counter()
        executed = out / f"{source.stem}.ipynb"
        staged = out / f".{source.stem}.input.ipynb"
        jupytext.write(jupytext.read(source), staged)
        log(f"[{i}/{len(chosen)}] {source.stem} ...", end="", flush=True)
        try:
            papermill.execute_notebook(str(staged), str(executed), parameters={"profile": as_parameter},
                                       kernel_name="python3", language="python", cwd=str(NOTEBOOKS),
                                       progress_bar=False)
        except papermill.PapermillExecutionError as err:
            log(f" FAILED in cell {err.exec_count}: {err.ename}: {err.evalue}")
            log(f"notebook {source.name} failed; the partial output is {executed}")
            return 1
        finally:
            staged.unlink(missing_ok=True)
        html, _ = HTMLExporter().from_filename(str(executed))
        executed.with_suffix(".html").write_text(html)
        log(f" ok in {time.perf_counter() - started:.0f} s")
    log(f"study {study.cfg.name}: {len(chosen)} notebooks in {time.perf_counter() - total:.0f} s; "
        f"reports in {out}, figures in {study.figures}")
    return 0


def print_plan(profile: str) -> int:
    """What a profile will do, computed offline from its config alone."""
    from distill_lib.flops import ModelShape, plan_memory
    from distill_lib.study import METHODS, load_study_config

    cfg = load_study_config(profile)
    tokens = lambda t: t.max_steps * t.batch_size * cfg.data.block_length  # noqa: E731
    print(f"profile {cfg.name}: {cfg.description}")
    print(f"  data: {cfg.data.corpus} {cfg.data.hf_path or ''} tokenizer={cfg.data.tokenizer} block={cfg.data.block_length}")
    shape_of = f"{cfg.teacher_model.n_layers} layers x d={cfg.teacher_model.hidden_size}"
    teacher = (f"{cfg.teacher_path} ({shape_of}, as teacher_model describes it)" if cfg.teacher_path
               else f"train {shape_of} for {tokens(cfg.teacher_train):,} tokens")
    print(f"  teacher: {teacher}")
    print(f"  students: drop {cfg.drop} ({cfg.strategy}), {tokens(cfg.student_train):,} tokens each, seeds {cfg.seeds}")
    per_method = {"tf": len(cfg.configs) * len(cfg.seeds) + len(cfg.extra_strategies), "offline-kd": 1,
                  "gradual": len(cfg.gradual_every_tokens)}
    n_runs = sum(per_method.get(m, len(cfg.seeds)) for m in cfg.methods)
    left_out = [m for m in METHODS if m not in cfg.methods]
    print(f"  runs: about {n_runs} student runs ({', '.join(cfg.methods)})"
          + (f"; left out: {', '.join(left_out)}" if left_out else "") + f"; eval task sets {cfg.eval.task_sets}")
    m = cfg.teacher_model
    vocab = cfg.data.vocab_size if cfg.data.tokenizer == "train-bpe" else 50_000  # a GPT-2-sized guess
    params = 12 * m.n_layers * m.hidden_size**2 + 2 * vocab * m.hidden_size
    shape = ModelShape("teacher", params, m.n_layers, m.hidden_size, vocab)
    from distill_lib.flops import halved

    micro = cfg.student_train.micro_batch_size or cfg.student_train.batch_size
    for row in plan_memory(shape, halved(shape), micro, cfg.data.block_length,
                           precision=cfg.student_train.precision, optimizer=cfg.student_train.optimizer,
                           card_gib=max(cfg.plan_cards_gib)):
        print(f"  memory per device, micro-batch {micro}: {row['method']:>13} {row['total_gib']:.1f} GiB "
              f"(fits {row['card_gib']:.0f} GiB: {row['fits']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("study", "prepare-data", "plan"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="mini", help="a name in params/ (default: mini) or a YAML file")
        if name == "study":
            p.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 00 02)")
    args = parser.parse_args(argv)
    try:
        if args.command == "study":
            return run_study(args.profile, args.only)
        if args.command == "plan":
            return print_plan(args.profile)
        from distill_lib.study import Study

        Study.load(args.profile).data  # noqa: B018
        return 0
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
