"""Statistics and verdict rules for the claims table (`distill_lib.claims`). Seeds pair runs across methods
(same seed = same data order), so differences are paired; a 95% confidence interval uses
Student's t with n - 1 degrees of freedom. With one seed there is no interval and a verdict that
needs one is 'inconclusive'.

Every difference is signed so that a positive value goes the paper's way.

Verdict rules (stated in the report next to each claim):
- strict claims ("A beats B"): reproduced when the CI of the difference excludes 0 on the positive
  side; not reproduced when it excludes 0 on the negative side; inconclusive when it covers 0.
- "A matches or beats B" / "A is not better than B": reproduced when the CI excludes 0 on the
  positive side; a tie when it covers 0 (consistent with "matches"); not reproduced when it
  excludes 0 on the negative side.
- With one seed there is no interval: inconclusive.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTED = "reproduced", "not reproduced", "inconclusive", "not tested"
TIE = "tie"


def mean_ci(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% Student-t interval (None for fewer than two values)."""
    from scipy import stats  # scipy comes with seaborn / lm-eval

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None
    sem = float(stats.sem(values))
    if sem == 0.0:  # equal values (scipy's interval would be nan)
        return mean, 0.0
    low, _ = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    return mean, mean - float(low)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float | None]:
    """Mean and CI half-width of a - b over paired seeds."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal counts, got {len(a)} and {len(b)}")
    return mean_ci([x - y for x, y in zip(a, b)])


def verdict_strict(diff: float, half: float | None) -> str:
    """Claim: diff > 0."""
    if half is None:
        return INCONCLUSIVE
    if diff - half > 0:
        return REPRODUCED
    if diff + half < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_at_least(diff: float, half: float | None) -> str:
    """Claim: diff >= 0. A tie (the interval covers 0) is consistent with the claim, and says so."""
    if half is None:
        return INCONCLUSIVE
    if diff - half > 0:
        return REPRODUCED
    return NOT_REPRODUCED if diff + half < 0 else TIE


def value_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Linear interpolation of a curve (e.g. validation loss against FLOPs) at x; refuses to
    extrapolate beyond the curve's range."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(xs) == 0 or x < xs.min() or x > xs.max():
        raise ValueError(f"x={x:.3g} is outside the curve's range [{xs.min() if len(xs) else 'empty'}, "
                         f"{xs.max() if len(xs) else 'empty'}]")
    return float(np.interp(x, xs, ys))


def fmt(mean: float, half: float | None = None, digits: int = 3) -> str:
    """`mean ± half`, the half-width rounded to the mean's last shown decimal (`plots.format_value`)."""
    from distill_lib.plots import format_value

    return format_value(mean, half, digits)


