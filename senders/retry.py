"""The in-run back-off both network senders wait between tries of one message."""

from __future__ import annotations

import random
from collections.abc import Callable

BACKOFF_CAP = 30.0  # seconds: the longest single backoff wait


def backoff(
    attempt: int, base: float, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Seconds to wait after try `attempt` (1 = the first): exponential from `base`, capped.

    "Equal jitter": half the wait is fixed, half random, so several workers (or a
    sender's threads) do not retry in step.
    """
    ceiling = min(base * 2 ** (attempt - 1), BACKOFF_CAP)
    return ceiling / 2 + uniform(0, ceiling / 2)
