"""Statistics and verdict rules for the claims table (`distill_lib.claims`), declared once here and
printed in the report (`RULES`).

Seeds pair runs across methods (same seed = same data order), so differences are paired over seeds;
every interval is a 95% Student-t interval with n - 1 degrees of freedom. Every difference is signed
so that a positive value goes the paper's way.

- **Unit.** Perplexities are compared in nats: the paired difference of log perplexities, i.e. the
  log of the perplexity ratio (a difference in mean per-token loss). A 4-ppl gap means something
  else at 30 ppl than at 300; a difference in nats does not. Perplexities stay beside it.
- **Three kinds of test**, each a one-sided t-test (or two) at `ALPHA` = 0.025, i.e. read off the
  95% interval shown:
  - *superiority* ("A beats B"): reproduced when the interval lies above 0, not reproduced when it
    lies below 0, else inconclusive.
  - *non-inferiority* ("A matches or beats B", "B does not help"): reproduced when the interval lies
    above -margin (A is not worse by more than the margin); not reproduced when it lies below
    -margin; else inconclusive.
  - *equivalence* ("A ~ B", "converges"): two one-sided tests (TOST) against the margin: reproduced
    when the interval lies inside (-margin, +margin); not reproduced when it lies wholly beyond one
    margin; else inconclusive. No verdict of equality is drawn from a non-significant difference.
- **Outcome words** say what the interval shows, whatever the claim: `equivalent` (inside the
  margin), `better` (above 0: the paper's side), `worse` (below 0), `inconclusive` (too wide for
  either).
- **Power.** Each test prints its minimum detectable difference: the true difference a one-sided
  test at `ALPHA` would detect with 80% power, given its seeds and their observed spread.
- **Multiplicity.** The claims are one family: Holm's step-down adjustment at `ALPHA` over the
  p-values that support each raw verdict; a verdict that does not survive it reads 'inconclusive'.
- With one seed there is no interval: inconclusive, and outside the Holm family.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTED = "reproduced", "not reproduced", "inconclusive", "not tested"
EQUIVALENT, BETTER, WORSE = "equivalent", "better", "worse"
SUPERIORITY, NON_INFERIORITY, EQUIVALENCE = "superiority", "non-inferiority", "equivalence"

#: One-sided level of every test: the 95% interval shown is the test (a TOST at this level is the
#: two one-sided tests reading the same interval, a little stricter than the usual 90% interval).
ALPHA = 0.025
POWER = 0.8

#: The equivalence / non-inferiority margin for perplexities, in nats: +-0.05 nats is +-5% in
#: perplexity. The paper treats its Table 6 configurations within 4% of each other (300M: max-gap
#: 23.0, middle 24.0) as alike and calls the output-side one (+11%) worst; 5% sits between them.
MARGIN_NATS = 0.05

#: C3: KD costs "~1.5x" per token: reproduced when the measured KD/TF time ratio lies above 1.3
#: (the paper's 1.5x less a margin for the timing; the analytic FLOPs ratio is ~1.5-1.7x).
C3_MIN_RATIO = 1.3
#: C7: width pruning is "~2x" costlier: reproduced when width's time per token over depth's lies
#: above 1.5 (a cost at least halfway to the paper's 2x).
C7_MIN_RATIO = 1.5

RULES = {
    "unit": "Perplexities are compared in nats: the paired difference of log perplexities (the log of their "
            "ratio), with perplexities beside it.",
    "margin": f"Equivalence and non-inferiority margin ±{MARGIN_NATS} nats (±{math.expm1(MARGIN_NATS):.0%} in "
              "perplexity): the paper treats configurations within 4% of each other as alike (Table 6, 300M: "
              "max-gap 23.0, middle 24.0) and calls one 11% behind worst (output, 25.6).",
    "tests": "Superiority: the 95% interval lies above 0. Non-inferiority: it lies above -margin. Equivalence "
             "(two one-sided tests): it lies inside ±margin. Each one-sided test at α = 0.025, read off the 95% "
             "interval; a non-significant difference is never read as equality.",
    "power": "Minimum detectable difference: the true difference a one-sided test at α = 0.025 detects with "
             "80% power, given the verdict's seeds and their observed spread.",
    "holm": "The claims form one family: Holm's step-down adjustment at α = 0.025 over the p-value behind each "
            "raw verdict; a verdict that does not survive it reads 'inconclusive' in the Holm column.",
    "costs": f"C3 and C7's cost half judge the interval of the time ratio against {C3_MIN_RATIO}x and "
             f"{C7_MIN_RATIO}x. Their rounds alternate the methods on one machine in one process: they share "
             "that machine's state, so the interval is of the rounds, not of independent replicates.",
}


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


def log_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """log(a / b) seed by seed, in nats: the primary unit of a perplexity comparison."""
    return [math.log(x) - math.log(y) for x, y in zip(a, b, strict=True)]


@dataclasses.dataclass
class ClaimTest:
    """One test of a claim on paired differences (positive = the paper's way)."""
    kind: str  # SUPERIORITY, NON_INFERIORITY or EQUIVALENCE
    diffs: list[float]
    margin: float = 0.0  # in the differences' unit; 0 for superiority

    def __post_init__(self):
        if self.kind not in (SUPERIORITY, NON_INFERIORITY, EQUIVALENCE):
            raise ValueError(f"kind: {self.kind!r} is not one of {SUPERIORITY}, {NON_INFERIORITY}, {EQUIVALENCE}")
        if self.kind != SUPERIORITY and not self.margin > 0:
            raise ValueError(f"margin: a {self.kind} test needs a margin > 0, got {self.margin}")

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return float(np.mean(self.diffs))

    @property
    def half(self) -> float | None:
        return mean_ci(self.diffs)[1]

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.half is None else (self.mean - self.half, self.mean + self.half)

    def _p_above(self, bound: float) -> float:
        """One-sided p of 'the true difference is <= bound' (small: it lies above)."""
        return self._p_below(bound, above=True)

    def _p_below(self, bound: float, above: bool = False) -> float:
        """One-sided p of 'the true difference is >= bound' (small: it lies below); `above` flips it."""
        from scipy import stats

        se = float(np.std(self.diffs, ddof=1)) / math.sqrt(self.n)
        sign = -1.0 if above else 1.0  # P(T <= t) for 'below', P(T >= t) = P(-T <= -t) for 'above'
        if se == 0.0:
            return 0.0 if sign * (self.mean - bound) < 0 else 1.0
        return float(stats.t.cdf(sign * (self.mean - bound) / se, self.n - 1))

    def p_values(self) -> tuple[float, float]:
        """(p for 'reproduced', p for 'not reproduced'): each the largest of the one-sided tests
        that verdict needs."""
        m = self.margin
        if self.kind == SUPERIORITY:
            return self._p_above(0.0), self._p_below(0.0)
        if self.kind == NON_INFERIORITY:
            return self._p_above(-m), self._p_below(-m)
        return max(self._p_above(-m), self._p_below(m)), min(self._p_above(m), self._p_below(-m))

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return INCONCLUSIVE
        p_yes, p_no = self.p_values()
        return REPRODUCED if p_yes < ALPHA else NOT_REPRODUCED if p_no < ALPHA else INCONCLUSIVE

    @property
    def p(self) -> float:
        """The p-value behind the verdict (for an inconclusive one, the smaller of the two)."""
        if self.n < 2:
            return math.nan
        p_yes, p_no = self.p_values()
        return p_yes if self.verdict == REPRODUCED else p_no if self.verdict == NOT_REPRODUCED else min(p_yes, p_no)

    @property
    def outcome(self) -> str:
        """What the interval shows, whatever the claim: equivalent / better / worse / inconclusive."""
        return outcome(self.mean, self.half, self.margin)

    @property
    def mdd(self) -> float:
        """Minimum detectable difference (80% power, one-sided at ALPHA) for these seeds and spread."""
        return minimum_detectable_difference(self.diffs)


def outcome(mean: float, half: float | None, margin: float = 0.0) -> str:
    """The interval `mean ± half` read against 0 and ±margin."""
    if half is None or half != half:
        return INCONCLUSIVE
    lo, hi = mean - half, mean + half
    if margin > 0 and -margin < lo and hi < margin:
        return EQUIVALENT
    return BETTER if lo > 0 else WORSE if hi < 0 else INCONCLUSIVE


def minimum_detectable_difference(diffs: Sequence[float], alpha: float = ALPHA, power: float = POWER) -> float:
    """(t_{1-alpha} + t_{power}) · sd / sqrt(n) with n - 1 degrees of freedom; NaN below two values."""
    from scipy import stats

    n = len(diffs)
    if n < 2:
        return math.nan
    df = n - 1
    return float((stats.t.ppf(1 - alpha, df) + stats.t.ppf(power, df)) * np.std(diffs, ddof=1) / math.sqrt(n))


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is outside the family)."""
    p = np.asarray(p_values, dtype=float)
    family = [i for i in range(len(p)) if not math.isnan(p[i])]
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(sorted(family, key=lambda i: p[i])):
        running = max(running, min(1.0, (len(family) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def holm_verdicts(verdicts: Sequence[str], p_values: Sequence[float], alpha: float = ALPHA) -> tuple[list, list]:
    """(Holm-adjusted p-values, verdicts): a reproduced / not reproduced verdict whose adjusted p is
    not below `alpha` becomes inconclusive; others are kept."""
    adjusted = holm(p_values, alpha)
    out = [v if v not in (REPRODUCED, NOT_REPRODUCED) or (a == a and a < alpha) else INCONCLUSIVE
           for v, a in zip(verdicts, adjusted)]
    return adjusted, out


def format_value(mean: float, half: float | None = None, digits: int = 3) -> str:
    """`mean ± half`: the mean to `digits` significant digits, both rounded to the same decimal,
    which is never finer than two significant digits of the half-width (`47.8 ± 0.6`, `0.3 ± 1.9`,
    no `0.973 ± 3.4e-16`: a half-width that rounds to zero is shown as `± 0`)."""
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "–"
    if half is not None and np.isnan(half):
        half = None
    decimals = max(0, digits - 1 - int(np.floor(np.log10(abs(mean))))) if mean else digits - 1
    if half:
        decimals = min(decimals, max(0, 1 - int(np.floor(np.log10(abs(half))))))
    text = f"{mean:,.{decimals}f}"
    if half is None:
        return text
    return f"{text} ± {half:,.{decimals}f}" if round(half, decimals) else f"{text} ± 0"


def fmt(mean: float, half: float | None = None, digits: int = 3) -> str:
    """`mean ± half`, the half-width rounded to the mean's last shown decimal (`format_value`)."""
    return format_value(mean, half, digits)
