"""The study runner: execute the notebooks of a profile through papermill into reports (`study`,
`report`), train and record named runs one at a time (`train`), and turn an executed notebook into
its committed report (stderr and papermill metadata removed, machine paths made portable, HTML
without code). `distill_lib.cli` parses the command line and calls it."""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from distill_lib import catalog, methods
from distill_lib.config import ConfigError
from distill_lib.env import PROJECT_ROOT

LOG = logging.getLogger(__name__)

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if not only:
        return found
    chosen = [nb for nb in found if nb.name[:2] in only]
    unknown = sorted(set(only) - {nb.name[:2] for nb in found})
    if unknown:
        raise ConfigError(f"--only: no notebook {unknown[0]!r} (valid: {', '.join(nb.name[:2] for nb in found)})")
    return chosen


def run_study(profile: str, only: list[str] | None = None, log=LOG.info, train: bool = True) -> int:
    """Execute the notebooks; returns the exit code (non-zero names the failing notebook and cell).
    `train=False` re-renders them from the records (`make report`)."""
    import jupytext
    import papermill

    from distill_lib.study import Study

    study = Study.load(profile, train=train, log=None)  # a bad profile fails here, before any work
    chosen = []
    for nb in notebooks(only):
        spec = catalog.by_number(nb.name[:2])
        missing = [m for m in spec.needs if m not in study.cfg.methods]
        if spec.needs_setting and not getattr(study.cfg, spec.needs_setting):
            log(f"skipping {nb.stem}: profile {study.cfg.name} sets no {spec.needs_setting}")
        elif missing:
            log(f"skipping {nb.stem}: it needs method(s) {', '.join(missing)}, not in profile {study.cfg.name}")
        else:
            chosen.append(nb)
    if train:
        study.data  # noqa: B018  (corpus and tokenizer first: fast failure on a data problem)
    # a profile given as a file reaches the notebooks (which run in notebooks/) as an absolute path
    as_parameter = str(Path(profile).resolve()) if Path(profile).suffix else str(profile)
    out = PROJECT_ROOT / "reports" / study.cfg.name
    out.mkdir(parents=True, exist_ok=True)
    os.environ["TQDM_DISABLE"] = "1"  # the kernels inherit it: no progress bars in the reports
    # the kernels (which run in notebooks/) import this checkout's package, not the one an editable
    # install points at: a git worktree or a copy of the project renders with its own code
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    total = time.perf_counter()
    skipped: list[str] = []
    for i, source in enumerate(chosen, 1):
        started = time.perf_counter()
        executed = out / f"{source.stem}.ipynb"
        staged = out / f".{source.stem}.input.ipynb"
        jupytext.write(jupytext.read(source), staged)
        step = f"[{i}/{len(chosen)}] {source.stem}"
        log(f"{step} ...")
        try:
            papermill.execute_notebook(str(staged), str(executed), parameters={"profile": as_parameter, "train": train},
                                       kernel_name="python3", language="python", cwd=str(NOTEBOOKS),
                                       progress_bar=False)
        except papermill.PapermillExecutionError as err:
            if not train and err.ename == "MissingRecord":  # a study run in parts: render the rest
                log(f"{step}: skipped: {err.evalue}")
                skipped.append(source.stem)
                for stale in (executed, executed.with_suffix(".html")):  # never leave an older report
                    stale.unlink(missing_ok=True)
                continue
            log(f"{step}: FAILED in cell {err.exec_count}: {err.ename}: {err.evalue}")
            log(f"notebook {source.name} failed; the partial output is {executed}")
            return 1
        finally:
            staged.unlink(missing_ok=True)
        stripped = write_report(executed)
        log(f"{step}: ok in {time.perf_counter() - started:.0f} s" + (f" ({stripped} stderr outputs left out of the "
                                                                    "report)" if stripped else ""))
    if skipped:
        log(f"report {study.cfg.name}: {len(skipped)} notebook(s) lack records and were not rendered "
            f"({', '.join(skipped)}); `python -m distill_lib study --profile {study.cfg.name} --only "
            f"{' '.join(n[:2] for n in skipped)}` makes them")
        return 1
    log(f"{'study' if train else 'report'} {study.cfg.name}: {len(chosen)} notebooks in "
        f"{time.perf_counter() - total:.0f} s; reports in {out.relative_to(PROJECT_ROOT)}, figures in "
        f"{study.figures.relative_to(PROJECT_ROOT)}" + (f", records in {study.records.root.relative_to(PROJECT_ROOT)}"
                                                         if train else ""))
    return 0


def parse_run_specs(study, specs: list[str]) -> list[tuple[str, str | None, int | None]]:
    """`METHOD[@STRATEGY][:SEED,SEED]` items -> (method, strategy, seed) triples, checked against the
    profile before any work; `teacher` is (teacher, None, None). `@STRATEGY` trains a method on
    another truncation (notebook 01's configurations, notebook 08's selectors: `tf@input:0,1,2`);
    `gradual` stands for each of the profile's `gradual_every_tokens` schedules (notebook 03)."""
    triples = []
    for spec in specs:
        head, _, seeds = spec.partition(":")
        method, _, strategy = head.partition("@")
        if method == "teacher":
            triples.append(("teacher", None, None))
            continue
        # checks that need no model first: run_config may train (the teacher, a teacher correction)
        valid = dict.fromkeys([study.cfg.strategy, study.cfg.healing_strategy, *study.cfg.configs,
                               *study.cfg.extra_strategies, *study.cfg.selectors])
        if strategy and strategy not in valid:
            raise ConfigError(f"runs: {spec!r}: strategy {strategy!r} is not one this profile trains "
                              f"(valid: {', '.join(valid)})")
        if method == "gradual" and not study.cfg.gradual_every_tokens:
            raise ConfigError(f"runs: {spec!r}: profile {study.cfg.name} sets no `gradual_every_tokens`")
        remove_every_tokens = _schedules(study, method)[0]
        study.run_config(method, seed=0, remove_every_tokens=remove_every_tokens)  # an unknown or left-out method fails first
        try:
            chosen = [int(x) for x in seeds.split(",")] if seeds else study.seeds(method)
        except ValueError:
            raise ConfigError(f"runs: {spec!r}: seeds must be integers separated by commas, e.g. {method}:0,1,2")
        triples += [(method, strategy or None, seed) for seed in chosen]
    return triples


def _schedules(study, method: str) -> list:
    """The runs a seed of `method` (or variant) makes: one, or one per schedule (gradual removal)."""
    if method not in methods.METHODS and method not in study.cfg.variants:
        return [None]  # run_config names the valid ones
    return methods.get(study.cfg.base_method(method)).schedules(study.cfg) or [None]


def train_runs(profile: str, specs: list[str], log=LOG.info) -> int:
    """Train, evaluate and record runs one at a time (`python -m distill_lib train`): a study too big
    for one sitting is run in parts, and each run's record is written the moment it finishes, so a
    part that is stopped loses at most the run in progress (which resumes from its checkpoint)."""
    from distill_lib.study import Study

    study = Study.load(profile, log=log)
    triples = parse_run_specs(study, specs)
    study.data  # noqa: B018
    for method, strategy, seed in triples:
        started = time.perf_counter()
        if method == "teacher":
            study.teacher_model_info  # noqa: B018  (its size and depth, which every report reads)
            study.teacher_headline()
            study.teacher_probes()
            labels = ["teacher"]
        else:
            labels = []
            for remove_every_tokens in _schedules(study, method):
                run = study.student(method, strategy, seed=seed, remove_every_tokens=remove_every_tokens)
                study.headline(run)
                study.probes(run, rebuild=True)  # a recorded run without them is trained again (weights are a cache)
                labels.append(run.dir.name)
        log(f"recorded {', '.join(labels)} in {time.perf_counter() - started:.0f} s")
    return 0


def write_report(executed: Path) -> int:
    """Turn an executed notebook into a report: stderr outputs (diagnostics for whoever runs the
    study, not results) and papermill's cell metadata are removed from the .ipynb, and paths of this
    machine are replaced as in records; the HTML shows no code. Returns the number of stderr
    outputs removed."""
    import nbformat
    from nbconvert import HTMLExporter

    from distill_lib.records import portable

    nb = nbformat.read(executed, as_version=4)
    stripped = 0
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"  # jupytext draws random ids: fixed ones keep a re-rendered report's diff empty
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            kept = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
            stripped += len(cell.outputs) - len(kept)
            for output in kept:  # an object's default repr names a memory address: it changes every run
                plain = output.get("data", {}).get("text/plain", "")
                if len(output.get("data", {})) > 1 and re.fullmatch(r"<[\w.]+ (object )?at 0x[0-9a-f]+>", plain.strip()):
                    del output["data"]["text/plain"]
            cell.outputs = kept
    nb.metadata.pop("papermill", None)
    nb = nbformat.from_dict(portable(nb))
    nbformat.write(nb, executed)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(nb)
    executed.with_suffix(".html").write_text(html)
    return stripped
