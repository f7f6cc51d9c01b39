"""Side-by-side step timing: the tokens/s of short runs of several methods, measured one after the
other in rounds, in one process, under the same conditions.

A study run in parts times its runs under different conditions (other jobs, pauses, code made
faster between parts, a GPU for some), so their recorded wall-clock is not a cost. Claims that are
about cost (C3: KD's time per token against TF's; C7: width pruning's against depth pruning's) read
this measurement instead when a profile says its runs' timings are not comparable. Alternating the
methods in each round spreads any drift of the machine's speed over all of them.
"""
from __future__ import annotations

import dataclasses
import shutil
import statistics
from pathlib import Path

from distill_lib.config import ConfigError, RunConfig


def step_rates(runs: dict[str, RunConfig], folder: Path, steps: int = 8, warmup: int = 3, rounds: int = 3,
               log=None) -> dict[str, list[float]]:
    """{name: [tokens/s in each round]}: each run of `runs` trained for `steps` optimizer steps (no
    validation, no checkpoint) in `folder`, all of them once per round; a round's rate is the median
    over the steps after the first `warmup` (which allocate and warm caches). `folder` is the run
    store (a student finds its teacher run there); the runs are deleted after they are measured."""
    if not 0 <= warmup < steps:
        raise ConfigError(f"timing: warmup must be in [0, steps), got {warmup} of {steps} steps")
    from distill_lib.runs import Run
    from distill_lib.train import train

    rates: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds):
        for name, run in runs.items():
            short = dataclasses.replace(run, train=dataclasses.replace(run.train, max_steps=steps, eval_every=0, log_every=1,
                                                                       checkpoint_every=steps + 1))
            out = Path(folder) / f"_timing-{name}-round{round_}"
            shutil.rmtree(out, ignore_errors=True)
            train(short, out, log=None)
            lines = Run(short, out).metrics()
            shutil.rmtree(out, ignore_errors=True)
            tokens = short.train.batch_size * short.data.block_length
            seconds = statistics.median(tokens / e["tokens_per_s"] for e in lines[warmup:steps])
            rates[name].append(tokens / seconds)
            if log:
                log(f"timing round {round_ + 1}/{rounds}: {name} {tokens / seconds:,.0f} tokens/s")
    return rates
