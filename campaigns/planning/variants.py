"""Which A/B variant a contact gets: a keyed hash of contact and step onto the weights. Pure.

Weighted rendezvous hashing: for each variant v of a step, a keyed hash (HMAC-SHA256
under the installation's variant key) of (contact id, step key, v's name) becomes a
uniform u in (0, 1); the contact gets the variant with the smallest -ln(u) / weight.
That minimum is an exponential race, so variant v wins with probability exactly
weight(v) / sum of the weights, and the choice depends only on the key, the contact,
the step key and each variant's name and weight:

- re-runs, restarts and every worker on every machine choose the same (the key is in
  the database, not in a process);
- an edit to anything else (copy, another step, delays, the order of the variants)
  changes nobody's variant;
- adding a variant moves to it only the share it takes, each contact from whichever
  variant they had; removing one moves only its own contacts; changing a weight moves
  contacts only to or from that variant (as few as the new shares need);
- renaming a variant is removing it and adding another.

A winner, once chosen (delivery/winner.py), replaces the choice for everyone.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Protocol

__all__ = ["Choice", "Rates", "Weighted", "choose", "pick_winner"]

_SCALE = 2.0**64


class Weighted(Protocol):
    """What assignment reads of a variant (authoring.variant_spec.Variant has it)."""

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...


def choose(key: bytes, contact_id: int, step_key: str, variants: Sequence[Weighted]) -> str:
    """The name of the variant `contact_id` gets for step `step_key` (see the module)."""
    best_name, best_score = "", math.inf
    for variant in variants:
        message = f"{contact_id}\x1f{step_key}\x1f{variant.name}".encode()
        digest = hmac.digest(key, message, sha256)
        # 64 bits, moved off 0 so the logarithm is finite: u in (0, 1).
        uniform = (int.from_bytes(digest[:8], "big") + 0.5) / _SCALE
        score = -math.log(uniform) / variant.weight
        if score < best_score:
            best_name, best_score = variant.name, score
    return best_name


@dataclass(frozen=True)
class Rates:
    """One variant's sends and successes (clicks or conversions) for a winner rule."""

    sent: int
    hits: int

    @property
    def rate(self) -> float:
        return self.hits / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Choice:
    """A winner chosen: the variant, and every variant's figures when it was chosen."""

    variant: str
    rates: Mapping[str, Rates]


def pick_winner(rates: Mapping[str, Rates], names: Sequence[str], after: int) -> Choice | None:
    """The variant with the best rate once every one of `names` has `after` sends; None
    before, and None on a tie for the best (no variant is better yet: the split goes on
    until one is ahead)."""
    if not names or any(rates.get(name, Rates(0, 0)).sent < after for name in names):
        return None
    ranked = sorted(names, key=lambda name: rates[name].rate, reverse=True)
    if len(ranked) > 1 and rates[ranked[0]].rate == rates[ranked[1]].rate:
        return None
    return Choice(ranked[0], {name: rates[name] for name in names})
