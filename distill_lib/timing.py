"""Side-by-side step timing: the tokens/s of short runs of several methods, measured one after the
other in rounds, in one process, under the same conditions.

A study run in parts times its runs under different conditions (other jobs, pauses, code made
faster between parts, a GPU for some), so their recorded wall-clock is not a cost. Claims that are
about cost (C3: KD's time per token against TF's; C7: width pruning's against depth pruning's) read
this measurement instead when a profile says its runs' timings are not comparable. Alternating the
methods in each round spreads any drift of the machine's speed over all of them.

`time_steps` times one short run (what `step_rates` repeats; the benches in bench/ call it too), and
`steady_tokens_per_s` turns step times into the steady state's tokens/s (the benches' bare-PyTorch
and HF `Trainer` loops time their steps themselves and call it).
"""
from __future__ import annotations

import dataclasses
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

from distill_lib.config import ConfigError, RunConfig


def steady_tokens_per_s(step_seconds: Sequence[float], tokens_per_step: int, warmup: int,
                        statistic: Callable[[Sequence[float]], float] = statistics.median) -> float:
    """Tokens/s of the steady state: `tokens_per_step` over `statistic` (default the median) of the
    step times after the first `warmup` steps (which allocate and warm caches)."""
    return tokens_per_step / statistic(step_seconds[warmup:])


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """One short run timed by `time_steps`."""

    tokens_per_s: float  #: steady state (`steady_tokens_per_s`)
    step_seconds: list[float]  #: every step's time, from its logged tokens/s
    metrics: list[dict]  #: the run's metrics lines, one per step
    summary: dict  #: what `train.train` returned
    train_seconds: float  #: wall-clock of the whole `train` call: set-up, steps and the final save

    @property
    def setup_seconds(self) -> float:
        """Wall-clock outside the steps (model loading, an offline-KD cache, saving)."""
        return self.train_seconds - self.summary["wall_seconds"]


def time_steps(run: RunConfig, folder: Path, steps: int = 8, warmup: int = 3,
               statistic: Callable[[Sequence[float]], float] = statistics.median) -> StepTiming:
    """`run` trained for `steps` optimizer steps (no validation, no checkpoint, every step logged)
    in `folder`, emptied first and deleted afterwards, and its steady-state tokens/s: `statistic`
    of the step times after the first `warmup`. A student whose teacher is a run finds it next to
    `folder` when `folder` lies in the run store."""
    if not 0 <= warmup < steps:
        raise ConfigError(f"timing: warmup must be in [0, steps), got {warmup} of {steps} steps")
    from distill_lib.runs import Run
    from distill_lib.train import train

    short = dataclasses.replace(run, train=dataclasses.replace(run.train, max_steps=steps, eval_every=0, log_every=1,
                                                               checkpoint_every=steps + 1))
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    summary = train(short, folder, log=None)
    train_seconds = time.perf_counter() - started
    lines = Run(short, folder).metrics()
    shutil.rmtree(folder, ignore_errors=True)
    tokens = short.train.batch_size * short.data.block_length
    seconds = [tokens / e["tokens_per_s"] for e in lines]
    return StepTiming(steady_tokens_per_s(seconds[:steps], tokens, warmup, statistic), seconds, lines, summary,
                      train_seconds)


def step_rates(runs: dict[str, RunConfig], folder: Path, steps: int = 8, warmup: int = 3, rounds: int = 3,
               log=None) -> dict[str, list[float]]:
    """{name: [tokens/s in each round]}: each run of `runs` timed by `time_steps` (`steps` optimizer
    steps, the median step time after the first `warmup`) in `folder`, all of them once per round.
    `folder` is the run store (a student finds its teacher run there); the runs are deleted after
    they are measured."""
    if not 0 <= warmup < steps:
        raise ConfigError(f"timing: warmup must be in [0, steps), got {warmup} of {steps} steps")
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds):
        for name, run in runs.items():
            rate = time_steps(run, Path(folder) / f"_timing-{name}-round{round_}", steps, warmup).tokens_per_s
            rates[name].append(rate)
            if log:
                log(f"timing round {round_ + 1}/{rounds}: {name} {rate:,.0f} tokens/s")
    return rates
