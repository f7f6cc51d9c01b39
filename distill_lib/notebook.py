"""What every study notebook does first: open the profile's study, quietly.

A notebook's first cell imports `distill_lib` (every cache inside the project, hubs offline) and
reads its two parameters: `profile` (default: the `DISTILL_PROFILE` environment variable, else
`mini`) and `train` (default: `DISTILL_TRAIN`, else true; false = read the committed records only,
as `make report` does). Papermill overrides both. Then `open_study(profile, train)`.

Executed notebooks are reports: library chatter (progress bars, lm-eval and transformers logging,
warnings) stays out of them. The study's progress lines and everything written to stderr go to a
log file instead: `runs/<profile>/study.log` when training, `.cache/logs/<profile>-report.log` when
reading records. An error still shows in the notebook (the kernel reports it, not stderr).
"""
from __future__ import annotations

import logging
import os
import warnings


def default_profile() -> str:
    return os.environ.get("DISTILL_PROFILE", "mini")


def default_train() -> bool:
    return os.environ.get("DISTILL_TRAIN", "1").strip().lower() not in {"0", "false", "no"}


def quiet() -> None:
    """No progress bars, library logging below ERROR or warnings in a notebook's outputs."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.simplefilter("ignore")
    for name in ("lm-eval", "lm_eval", "transformers", "datasets", "accelerate", "torch", "evaluate", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _log_to_file(path) -> None:
    """The study's progress lines (runs trained, reused, evaluated) and stderr (progress bars of
    training and lm-eval, warnings) go to a log file, not the report."""
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    if getattr(sys.stderr, "name", None) != str(path):
        sys.stderr = open(path, "a", buffering=1)  # noqa: SIM115  (open for the kernel's lifetime)
    logger = logging.getLogger("distill_lib")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)


def open_study(profile: str, train: bool = True):
    """The profile's `Study`, with plotting defaults and quiet libraries."""
    import pandas as pd

    from distill_lib.plots import style
    from distill_lib.study import Study

    quiet()
    style()
    pd.set_option("display.max_colwidth", 120)
    from distill_lib.env import CACHE_ROOT

    study = Study.load(profile, train=train)
    _log_to_file(study.root / "study.log" if train else CACHE_ROOT / "logs" / f"{study.cfg.name}-report.log")
    return study


def x_axes(cfg, *xs: str) -> list[str]:
    """The x axes of a curve figure: `wall_seconds` only where the profile's runs were timed under
    comparable conditions (elsewhere their wall-clock is not a cost, so it is not drawn)."""
    return [x for x in xs if x != "wall_seconds" or cfg.timings_comparable]


def wall_clock_caveat(cfg) -> None:
    """Shown under a figure or table of a notebook that would show wall-clock: where the profile's
    runs were timed under different conditions (`timings_comparable: false`), it is not a cost."""
    if not cfg.timings_comparable:
        from IPython.display import Markdown, display

        display(Markdown("**No wall-clock here:** this profile's runs were timed under different conditions (see the "
                         "profile's notes), so their wall-clock is not a cost and no figure plots it; read cost from "
                         "FLOPs, and time per token from notebook 02's side-by-side timing."))


def show_figure(study, fig, name: str) -> None:
    """Save `fig` as `name` and show it here, not at the end of the cell: in a loop over rates each
    figure then sits beside its own table and reading."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    study.save_figure(fig, name)
    display(fig)
    plt.close(fig)  # or the cell would show it a second time at its end


def show_probes(study, methods, name: str, also_from=()) -> None:
    """What each of `methods` keeps of the teacher's general ability (`probes.probe_table`: the teacher's
    row, then every recorded seed with the probes, also trained from each truncation of `also_from`):
    `show_probe_table`."""
    from distill_lib.probes import probe_table

    show_probe_table(study, probe_table(study, methods, also_from=also_from), name)


def show_probe_table(study, probed, name: str) -> None:
    """A probe table (`probes.probe_table`, `probes.probe_table_of_runs`) and its out-of-domain figure,
    saved as `name`; where there is nothing to show, says why."""
    from IPython.display import Markdown, display

    from distill_lib import plots

    if len(probed) <= 1:
        display(Markdown(f"Profile {study.cfg.name} sets no `probes`." if probed.empty
                         else "No student of this profile has these methods' probes yet."))
        return
    study.save_table(probed, name)
    display(plots.table(plots.summary_table(probed, "model", [c for c in probed.columns if c not in ("model", "method", "seed")])))
    show_figure(study, plots.out_of_domain_figure(probed), name)
