"""What a sender's results mean for the rows: sent, failed, unknown, or tried again later.

Pure: results and the rows they answer in, outcomes out; recording.py writes them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from campaigns.delivery.decide import DueRow
from campaigns.planning import schedule
from senders.base import Outcome, SendResult

RETRY_BASE = timedelta(minutes=5)


class Ended(NamedTuple):
    """How one email's hand-off ended, as it is recorded."""

    id: int  # the delivery
    more: int  # requests made beyond the one `sending` counted (in-run retries)
    provider_id: str | None = None  # sent
    error: str | None = None  # failed, unknown, retry
    due: datetime | None = None  # retry: when it goes again


class Answer(enum.StrEnum):
    """What a provider's answer to one message came to, as the metrics count it."""

    SENT = "sent"  # accepted
    RETRIED = "retried"  # not sent, goes again later
    RATE_LIMITED = "rate_limited"  # not sent, goes again when the provider said (429)
    FAILED = "failed"  # never goes: refused, or out of attempts
    UNKNOWN = "unknown"  # the answer was lost: never re-sent by itself


@dataclass
class Outcomes:
    """A chunk's results by what must be recorded."""

    sent: list[Ended] = field(default_factory=list)
    failed: list[Ended] = field(default_factory=list)
    unknown: list[Ended] = field(default_factory=list)
    retry: list[Ended] = field(default_factory=list)
    # Of `retry`, those whose provider named when to come back (a rate limit's reset).
    rate_limited: int = 0

    def answers(self) -> dict[str, int]:
        """Messages by Answer (the classes that occurred); they add up to the results."""
        counts = {
            Answer.SENT: len(self.sent),
            Answer.RETRIED: len(self.retry) - self.rate_limited,
            Answer.RATE_LIMITED: self.rate_limited,
            Answer.FAILED: len(self.failed),
            Answer.UNKNOWN: len(self.unknown),
        }
        return {str(answer): count for answer, count in counts.items() if count}


def classify(
    results: Sequence[SendResult],
    rows: Mapping[str, DueRow],
    *,
    window: schedule.Window,
    max_attempts: int,
    now: datetime,
    real_now: datetime,
) -> Outcomes:
    """Each result by outcome; `rows` by delivery id (as the sender saw it).

    A transient failure goes again later until `max_attempts` is reached, then fails;
    an ambiguous one (the answer was lost) is unknown, never sent again by itself.
    `now` is engine time, `real_now` the real clock (a provider's retry time is real).
    """
    outcomes = Outcomes()
    for result in results:
        row = rows[result.delivery_id]
        # `sending` already counted one attempt; in-run retries add the rest.
        more = max(result.attempts - 1, 0)
        attempts = row.attempts + max(result.attempts, 1)
        if result.outcome is Outcome.SENT:
            outcomes.sent.append(Ended(row.id, more, provider_id=result.provider_id))
        elif result.outcome is Outcome.AMBIGUOUS:
            outcomes.unknown.append(Ended(row.id, more, error=result.error))
        elif result.outcome is Outcome.TRANSIENT and attempts < max_attempts:
            due = retry_due(
                attempts,
                result.retry_at,
                window=window,
                timezone=row.timezone,
                now=now,
                real_now=real_now,
            )
            outcomes.retry.append(Ended(row.id, more, error=result.error, due=due))
            outcomes.rate_limited += result.retry_at is not None
        else:
            outcomes.failed.append(Ended(row.id, more, error=result.error))
    return outcomes


def retry_due(
    attempts: int,
    retry_at: datetime | None,
    *,
    window: schedule.Window,
    timezone: str,
    now: datetime,
    real_now: datetime,
) -> datetime:
    """Exponential backoff in engine time, at least what the provider asked; in the window."""
    wait = RETRY_BASE * (2 ** (attempts - 1))
    if retry_at is not None:  # a real-clock time, e.g. a 429's X-RateLimit-Reset
        wait = max(wait, retry_at - real_now)
    return schedule.into_window(now + wait, window, schedule.zone(timezone))
