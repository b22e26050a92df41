"""Is one rate really higher than another: a two-proportion z-test and a sample size. Pure.

`two_proportion_test` is the pooled two-sided z-test (no continuity correction; the
same as R's `prop.test(..., correct = FALSE)`, whose X-squared is z squared).
`sample_size` is the number per group that test needs to find a difference as large
as the one observed, with 80 % power at the 95 % level (the normal approximation of
Fleiss, without continuity correction):

    n = (z_{1-a/2} * sqrt(2 p q) + z_{1-b} * sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2,

where p is the mean of p1 and p2. "Need about N more per variant" is that n less
the smaller group's size so far: how many more sends each variant needs before a
difference of the size seen now would, four times in five, be called meaningful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

__all__ = ["LEVEL", "POWER", "TestResult", "sample_size", "two_proportion_test"]

LEVEL = 0.95  # confidence: a difference is "meaningful" when p < 1 - LEVEL
POWER = 0.80


@dataclass(frozen=True)
class TestResult:
    """The test of p1 = x1/n1 against p2 = x2/n2."""

    z: float
    p_value: float

    @property
    def meaningful(self) -> bool:
        return self.p_value < 1 - LEVEL


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> TestResult:
    """Pooled two-sided z-test of x1/n1 against x2/n2 (a z of 0, p of 1 when undefined)."""
    if n1 <= 0 or n2 <= 0:
        return TestResult(0.0, 1.0)
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:  # no successes at all, or all successes: nothing differs
        return TestResult(0.0, 1.0)
    z = (x1 / n1 - x2 / n2) / math.sqrt(variance)
    return TestResult(z, math.erfc(abs(z) / math.sqrt(2)))


def sample_size(p1: float, p2: float, *, level: float = LEVEL, power: float = POWER) -> int | None:
    """Per-group size at which a difference p1 - p2 is found with `power`; None when the
    rates are equal (no difference to find)."""
    if p1 == p2:
        return None
    normal = NormalDist()
    z_alpha = normal.inv_cdf(1 - (1 - level) / 2)
    z_beta = normal.inv_cdf(power)
    mean = (p1 + p2) / 2
    spread = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_beta * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return math.ceil(spread**2 / (p1 - p2) ** 2)
