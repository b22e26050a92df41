"""The opaque ids a provider sees for a campaign and a step (their names may be about health)."""

from __future__ import annotations

import hashlib
from functools import lru_cache

__all__ = ["campaign_category", "step_category"]


def campaign_category(name: str) -> str:
    """The opaque id a provider sees for a campaign (its name may be about health)."""
    return f"c-{_short_hash(name)}"


def step_category(key: str) -> str:
    """The opaque id a provider sees for a step."""
    return f"s-{_short_hash(key)}"


@lru_cache(maxsize=1024)  # per message: a few campaign and step names, again and again
def _short_hash(value: str) -> str:
    """An opaque id: providers see this, never a campaign or step name about health."""
    return hashlib.sha256(value.encode()).hexdigest()[:10]
