"""The campaign file's `max_error_rate`: the share of failed sends that pauses a campaign.

Written as a fraction (`0.1`) or a percentage (`10%`); 0 < rate <= 1, and `1` (100 %)
never pauses. The rule that reads it is campaigns/delivery/health_rules.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

DEFAULT_MAX_ERROR_RATE = 0.10


def parse_error_rate(value: Any) -> float:
    """`0.1`, `10%` or `10 %` -> 0.1; anything else, or outside (0, 1], is refused."""
    if isinstance(value, bool):
        raise ValueError("write a share of failed sends, like 0.1 or 10%")
    if isinstance(value, str):
        text = value.strip()
        try:
            rate = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"{value!r}: write a share of failed sends, like 0.1 or 10%") from None
    elif isinstance(value, int | float):
        rate = float(value)
    else:
        raise ValueError("write a share of failed sends, like 0.1 or 10%")
    if not 0 < rate <= 1:
        raise ValueError(f"{value!r}: must be above 0 and at most 1 (100%)")
    return rate


ErrorRate = Annotated[float, BeforeValidator(parse_error_rate)]
