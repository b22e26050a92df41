"""The rules that pause a campaign by itself and raise alerts: pure, counts in, a decision out.

No I/O and no clock: delivery/autopause.py, delivery/heartbeats.py and delivery/alerts.py
read the counts and pass `now`. The thresholds, and why:

- **Send errors** (`max_error_rate` in campaign.yaml, default 10 %): over the campaign's
  last 200 *decided* hand-offs, an email handed to its sender whose outcome is recorded
  as `sent`, `failed` (a permanent refusal, or out of attempts) or `unknown` (the answer
  was lost). Failed and unknown count as errors: neither is an email the clinic can vouch
  for, and both mean the provider or the list is in trouble. Emails tried again later
  (a 429, a 5xx) are not decided yet and count when they end. At least 50 decided ones
  are needed, so three failures in the first ten never pause a campaign.
- **Complaints**: above 0.3 % of sent emails, Gmail's limit for bulk senders (its
  sender guidelines, February 2024), counted over the last 7 days and only from 1,000
  sent emails on: one complaint out of three sends never pauses.
- **Hard bounces**: above 5 % of sent emails over the last 7 days, from 200 sent on.
  Gmail publishes no bounce limit; 5 % is where Amazon SES puts an account under review
  (and pauses it at 10 %), and list-hygiene guides put a healthy list under 2 %. A list
  bouncing this much is stale or bought, and keeps hurting the domain's reputation.
- **Unknown deliveries piling up**: 20 or more `unknown` deliveries, waiting for a
  person (`dripmail retry --unknown`) or a provider's events.
- **A silent worker**: no tick for 5 minutes beyond its own interval between ticks.
- **Alerts**: at most one email per kind per hour (`ALERT_EVERY`); the rest are logged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

ERROR_WINDOW = 200  # the last decided hand-offs the error rate is over
MIN_ERROR_SAMPLE = 50
COMPLAINT_LIMIT = 0.003  # Gmail: keep spam complaints below 0.3 %
MIN_COMPLAINT_SAMPLE = 1000
BOUNCE_LIMIT = 0.05
MIN_BOUNCE_SAMPLE = 200
EVENT_WINDOW = timedelta(days=7)  # complaints and bounces are counted over this
UNKNOWN_LIMIT = 20
SILENT_AFTER = timedelta(minutes=5)
ALERT_EVERY = timedelta(hours=1)

# One letter per decided hand-off in `health_records.outcomes`.
SENT, FAILED, UNKNOWN = "s", "f", "u"


class PauseKind(enum.StrEnum):
    """Which rule paused a campaign (`campaigns.pause_kind`)."""

    ERROR_RATE = "error_rate"
    BOUNCE_RATE = "bounce_rate"
    COMPLAINT_RATE = "complaint_rate"


@dataclass(frozen=True)
class PauseReason:
    """Why a campaign must pause: the rule, and a sentence with the counts (no address)."""

    kind: PauseKind
    reason: str


def last_outcomes(newest_first: Iterable[str | None], size: int = ERROR_WINDOW) -> str:
    """The `size` newest outcome letters, from hand-offs' letters given newest first."""
    taken: list[str] = []
    count = 0
    for letters in newest_first:
        if not letters:
            continue
        taken.append(letters[: size - count])
        count += len(taken[-1])
        if count >= size:
            break
    return "".join(taken)


def error_verdict(outcomes: str, max_error_rate: float) -> PauseReason | None:
    """Pause when failed + unknown are above `max_error_rate` of the decided hand-offs
    given (the last ERROR_WINDOW), from MIN_ERROR_SAMPLE on."""
    decided = len(outcomes)
    if decided < MIN_ERROR_SAMPLE:
        return None
    failed, unknown = outcomes.count(FAILED), outcomes.count(UNKNOWN)
    rate = (failed + unknown) / decided
    if rate <= max_error_rate:
        return None
    lost = f" and {unknown} unknown" if unknown else ""
    return PauseReason(
        PauseKind.ERROR_RATE,
        f"{failed} failed{lost} of its last {decided} emails handed to the sender "
        f"({rate:.0%}, above max_error_rate {max_error_rate:.0%})",
    )


def events_verdict(sent: int, bounced: int, complained: int) -> PauseReason | None:
    """Pause when complaints or hard bounces over `sent` (the same days) pass their limits."""
    if sent >= MIN_COMPLAINT_SAMPLE and complained / sent > COMPLAINT_LIMIT:
        return PauseReason(
            PauseKind.COMPLAINT_RATE,
            f"{complained} spam complaints for {sent} emails sent in the last 7 days "
            f"({complained / sent:.2%}, above Gmail's limit of {COMPLAINT_LIMIT:.1%})",
        )
    if sent >= MIN_BOUNCE_SAMPLE and bounced / sent > BOUNCE_LIMIT:
        return PauseReason(
            PauseKind.BOUNCE_RATE,
            f"{bounced} hard bounces for {sent} emails sent in the last 7 days "
            f"({bounced / sent:.1%}, above {BOUNCE_LIMIT:.0%})",
        )
    return None


def unknown_piling(count: int) -> bool:
    """Whether this many `unknown` deliveries call for a person."""
    return count >= UNKNOWN_LIMIT


def silent_for(last_tick_at: datetime, interval: timedelta, now: datetime) -> timedelta | None:
    """How long a running worker has been silent, when that is past its interval plus
    SILENT_AFTER; None while it is ticking."""
    quiet = now - last_tick_at
    return quiet if quiet > interval + SILENT_AFTER else None


def alert_due(last_sent_at: datetime | None, now: datetime) -> bool:
    """Whether an alert of a kind last emailed at `last_sent_at` may be emailed at `now`."""
    return last_sent_at is None or now - last_sent_at >= ALERT_EVERY
