"""Cut a row of weights (words per paragraph) into contiguous runs of balanced size.

Pure arithmetic: no article, no text. `split` uses it to pack paragraphs into emails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def balanced(weights: Sequence[int], parts: int) -> list[int]:
    """Start indexes of `parts` contiguous parts: smallest longest part, then most even."""
    return partition(weights, parts, min_max(weights, parts), [False] * len(weights))


def fewest_parts(weights: Sequence[int], limit: int) -> int:
    """The fewest contiguous runs of `weights` each at most `limit` (no weight is over it).

    Greedy is exact here: filling each run as far as it goes never needs more runs.
    """
    used, total = 1, 0
    for weight in weights:
        if total + weight > limit:
            used, total = used + 1, 0
        total += weight
    return used


def min_max(weights: Sequence[int], parts: int) -> int:
    """The smallest possible longest part when cutting `weights` into `parts` runs."""

    def fits(limit: int) -> bool:
        used, total = 1, 0
        for weight in weights:
            if total + weight > limit:
                used, total = used + 1, 0
            total += weight
        return used <= parts

    low, high = max(weights, default=0), sum(weights)
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return low


def partition(
    weights: Sequence[int], parts: int, bound: int, penalised: Sequence[bool]
) -> list[int]:
    """Exactly `parts` runs each ≤ `bound`, fewest penalised cuts, then least sum of squares.

    Dynamic programming over prefixes; both costs add up, so the optimum is exact.
    """
    n = len(weights)
    prefix = [0]
    for weight in weights:
        prefix.append(prefix[-1] + weight)
    inf = (math.inf, math.inf)
    # cost[j][i]: best cost of the first i units in j runs; back[j][i]: where run j starts.
    cost = [[inf] * (n + 1) for _ in range(parts + 1)]
    back = [[0] * (n + 1) for _ in range(parts + 1)]
    cost[0][0] = (0, 0)
    for j in range(1, parts + 1):
        for i in range(j, n - (parts - j) + 1):
            best, where = inf, 0
            for start in range(i - 1, j - 2, -1):
                size = prefix[i] - prefix[start]
                if size > bound:
                    break
                before = cost[j - 1][start]
                if before == inf:
                    continue
                cut = 1 if start > 0 and penalised[start] else 0
                total = (before[0] + cut, before[1] + size * size)
                if total < best:
                    best, where = total, start
            cost[j][i], back[j][i] = best, where
    if cost[parts][n] == inf:  # cannot happen with bound >= the min-max; kept for safety
        raise ValueError("no partition within the bound")
    cuts, i = [], n
    for j in range(parts, 0, -1):
        i = back[j][i]
        cuts.append(i)
    return cuts[::-1]
