"""What a worker tells whoever watches it: each hand-off's answers and time, each tick.

The delivery stage knows nothing of Prometheus: it calls an `Observer` (the metrics in
campaigns/monitoring/metrics.py are one) once per hand-off and once per tick, never per
row. The events are small picklable values, so a worker process of `run --workers N`
can pass them to its parent, which keeps the one set of metrics (delivery/workers.py).
An event carries a campaign name, a sender name and counts: nothing about a contact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class HandedOff:
    """One hand-off to a sender: how long the sender took and what it answered."""

    campaign: str
    sender: str  # the sender's name: file, smtp, sendgrid, ...
    seconds: float  # the sender's `send` call, on a monotonic clock
    answers: Mapping[str, int] = field(default_factory=dict)  # outcomes.Answer -> messages


@dataclass(frozen=True)
class Ticked:
    """A worker started or finished a tick: a sign of life, at `at` (real clock, epoch s)."""

    at: float


Event = HandedOff | Ticked


class Observer(Protocol):
    """Told about a worker's hand-offs and ticks; it must be quick and never raise."""

    def handed_off(self, event: HandedOff) -> None: ...

    def ticked(self, event: Ticked) -> None: ...


class NoObserver:
    """Nobody is watching (the default)."""

    def handed_off(self, event: HandedOff) -> None:
        pass

    def ticked(self, event: Ticked) -> None:
        pass


def tell(observer: Observer, event: Event) -> None:
    """Pass an event on to `observer` by its kind (events that crossed a process boundary)."""
    if isinstance(event, HandedOff):
        observer.handed_off(event)
    else:
        observer.ticked(event)
