"""The dispatcher's rules: which due emails go now, and where the others move.

Pure functions over plain data: the rows a worker claimed, what it read of the same
contacts' other deliveries, and the window openings at `now`. The dispatcher does the
reading and the writing (see docs/architecture.md, "Dispatch"). The rules:

- one email per contact per window opening: a contact's earliest claimed step goes,
  unless one of theirs went already in this opening;
- overdue steps go one per opening, in order: the rest move on from the next opening;
- with `min_gap`, nothing goes to a contact within the gap after another email to
  them, from any campaign; a contact's own "fewer emails" gap counts as well (the
  larger wins, planning/pace.py);
- nothing goes to a contact paused by their own choice: their steps move to the
  first opening at or after the pause's end, one per opening; after a pause, one email
  per opening across all their campaigns;
- an email found blocked at hand-off (another went in this opening, an earlier step
  is due or in another worker's hands) moves on to the next opening, its contact's
  later steps after it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from campaigns.authoring.spec import Campaign
from campaigns.planning import schedule
from campaigns.planning.pace import NO_PACE, Pace
from campaigns.storage.statuses import IN_FLIGHT, DeliveryStatus

S = DeliveryStatus


@dataclass(frozen=True)
class DueRow:
    """A claimed delivery, with what sending it needs of its contact and enrollment."""

    id: int
    enrollment_id: int
    step_key: str
    position: int
    due_at: datetime
    attempts: int
    contact_id: int
    email: str | None  # None once the contact is erased
    first_name: str | None
    timezone: str
    campaign: str
    # The contact's tags (`;a;b;`) and attributes (JSON), as stored when claimed: what
    # a step's `when:` and its `{{ attributes.x }}` read.
    tags: str | None = None
    attributes: str | None = None
    language: str | None = None  # the contact's (BCP 47); None: the campaign's default
    discreet: bool | None = None  # the contact chose discreet emails (contacts.discreet)
    # The contact's own pace (planning/pace.py), as stored when claimed.
    paused_until: datetime | None = None
    min_gap_days: int | None = None

    @property
    def pace(self) -> Pace:
        if self.paused_until is None and not self.min_gap_days:
            return NO_PACE
        return Pace(self.paused_until, self.min_gap_days)

    @property
    def zone_key(self) -> tuple[str, str]:
        """The rows that share window openings: one campaign's window, one time zone."""
        return self.campaign, self.timezone


class Sibling(NamedTuple):
    """One of a contact's deliveries in a campaign, as the rules read it."""

    enrollment_id: int
    id: int
    position: int
    status: str
    due_at: datetime
    sent_at: datetime | None
    lease_owner: str | None


@dataclass(frozen=True)
class Rules:
    """What the rules need of a campaign: its window, its step keys, its min_gap."""

    window: schedule.Window
    steps: frozenset[str]
    min_gap: timedelta = timedelta(0)

    @classmethod
    def of(cls, campaign: Campaign) -> Rules:
        return cls(
            campaign.window, frozenset(step.key for step in campaign.steps), campaign.min_gap
        )


@dataclass(frozen=True)
class Openings:
    """For one campaign window and time zone: the opening `now` is in, and the next."""

    current: datetime | None
    next: datetime
    tz: ZoneInfo

    @classmethod
    def at(cls, now: datetime, window: schedule.Window, timezone: str) -> Openings:
        tz = schedule.zone(timezone)
        return cls(
            schedule.opening_containing(now, window, tz),
            schedule.next_opening(now, window, tz),
            tz,
        )


@dataclass(frozen=True)
class Going:
    """A row chosen to go now, in the window opening that started at `opening`."""

    row: DueRow
    opening: datetime
    start: datetime  # the next opening: where it moves, should the hand-off check say no


@dataclass
class Decision:
    """What becomes of a batch: rows going now, rows skipped (and why), new due times."""

    going: list[Going] = field(default_factory=list)
    skips: list[tuple[DueRow, str]] = field(default_factory=list)
    moves: dict[int, datetime] = field(default_factory=dict)  # delivery id -> new due time
    # Contacts whose steps must move, decided on part of their rows: read all of them and
    # decide again (enrollment id -> the rows still live).
    unsure: dict[int, list[DueRow]] = field(default_factory=dict)


def skip_reason(row: DueRow, suppressed: Collection[str], steps: Collection[str]) -> str | None:
    """Why a due row is not sent at all, or None when nothing stops it."""
    if row.email is None:
        return "the contact was erased"
    if row.email in suppressed:
        return "the address is suppressed"
    if row.step_key not in steps:
        return "the step was removed from the campaign"
    return None


def decide(
    rows: Sequence[DueRow],
    history: Mapping[int, Sequence[Sibling]],
    openings: Mapping[tuple[str, str], Openings],
    rules: Mapping[str, Rules],
    *,
    now: datetime,
    suppressed: Collection[str] = frozenset(),
    unmet: Mapping[int, str] | None = None,
    complete: bool = True,
) -> Decision:
    """Contact by contact: which claimed rows are skipped, which goes now, where the rest move.

    `history` holds each enrollment's deliveries; `openings` is keyed by
    `DueRow.zone_key`, `rules` by campaign name; a contact paused at `now` gets
    nothing, their steps moved past the pause. With `complete=False`, `history` may
    hold only the rows that bear on the choice (gone since the opening, claimed by this
    worker, due before the next opening): a contact whose steps must move is then left
    in `Decision.unsure`, to be decided again with all its rows.
    """
    decision = Decision()
    by_enrollment: dict[int, list[DueRow]] = defaultdict(list)
    for row in rows:
        by_enrollment[row.enrollment_id].append(row)
    for enrollment_id, contact_rows in by_enrollment.items():
        contact_rows.sort(key=lambda r: r.position)
        campaign = rules[contact_rows[0].campaign]
        live = []
        for row in contact_rows:
            reason = skip_reason(row, suppressed, campaign.steps) or (unmet or {}).get(row.id)
            if reason is not None:
                decision.skips.append((row, reason))
            else:
                live.append(row)
        if not live:
            continue
        siblings = history.get(enrollment_id, ())
        window = openings[live[0].zone_key]
        pace = live[0].pace
        if pace.paused(now):
            # The patient paused all email: every step moves past the pause, in order.
            if complete:
                decision.moves.update(moved_on(live, siblings, None, campaign, window, pace))
            else:
                decision.unsure[enrollment_id] = live
            continue
        first = first_to_go(live, siblings, window)
        # Steps waiting for a later opening were placed by these same rules when
        # planned (or re-planned by an edit); only a contact with another step
        # claimed or overdue, or none going now, needs its steps moved.
        if first is not None and len(live) == 1 and all(r.status != S.SCHEDULED for r in siblings):
            decision.going.append(first)
        elif not complete:
            decision.unsure[enrollment_id] = live
        else:
            decision.moves.update(moved_on(live, siblings, first, campaign, window, pace))
            if first is not None:
                decision.going.append(first)
    return decision


def first_to_go(
    live: Sequence[DueRow], history: Sequence[Sibling], openings: Openings
) -> Going | None:
    """The contact's earliest claimed step, unless the window is shut or one went already
    in this opening (one email per contact per opening)."""
    opening = openings.current
    if opening is None or any(
        r.status in IN_FLIGHT and r.sent_at is not None and r.sent_at >= opening for r in history
    ):
        return None
    return Going(live[0], opening, openings.next)


def moved_on(
    live: Sequence[DueRow],
    history: Sequence[Sibling],
    first: Going | None,
    rules: Rules,
    openings: Openings,
    pace: Pace = NO_PACE,
) -> dict[int, datetime]:
    """New due times for the contact's claimed and pending steps after the one going now
    (all of them when none goes): from the next opening (or the end of the contact's
    pause, if later), one per opening, in order, the contact's gap apart."""
    claimed = {r.id for r in live}
    after = first.row.position if first is not None else -1
    pending = sorted(
        (r.position, r.id, r.due_at)
        for r in history
        if (r.status == S.SCHEDULED or r.id in claimed) and r.position > after
    )
    start = pace.not_before(openings.next)
    assert start is not None
    new_due = schedule.replan_in_order(
        start,
        [due for _, _, due in pending],
        rules.window,
        openings.tz,
        min_gap=pace.gap(rules.min_gap),
    )
    return {
        delivery_id: due
        for (_, delivery_id, old_due), due in zip(pending, new_due, strict=True)
        if due != old_due or delivery_id in claimed
    }


@dataclass
class Admission:
    """A chunk checked again at hand-off: what may go, and what waits."""

    allowed: list[Going] = field(default_factory=list)
    # Moved on to the next opening; with a time, not before it (too soon after an email).
    waiting: list[tuple[Going, datetime | None]] = field(default_factory=list)


def admit(
    chunk: Sequence[Going],
    siblings: Mapping[int, Sequence[Sibling]],
    last_sent: Mapping[int, datetime],
    *,
    owner: str,
    min_gap: timedelta,
    now: datetime,
) -> Admission:
    """The rows that may still go: no other email of the contact went in this opening,
    no earlier step of theirs is due or in another worker's hands, and (with `min_gap`,
    the campaign's or the contact's own, the larger) no email from any campaign went to
    them within the gap. After a pause of their own, a contact gets one email per
    opening across all campaigns.

    `siblings` are the contacts' deliveries by enrollment (those that could block one);
    `last_sent` each contact's latest email handed off, from any campaign (needed when
    `needs_last_sent` says so); `owner` the lease owner id of the worker asking.
    """
    last = dict(last_sent)
    admission = Admission()
    for item in chunk:
        row = item.row
        blocked = any(
            (other.status in IN_FLIGHT and other.sent_at and other.sent_at >= item.opening)
            or (
                other.position < row.position
                and (
                    (other.status == S.CLAIMED and other.lease_owner != owner)
                    or (other.status == S.SCHEDULED and other.due_at <= now)
                )
            )
            for other in siblings.get(row.enrollment_id, ())
            if other.id != row.id
        )
        previous = last.get(row.contact_id)
        pace = row.pace
        gap = pace.gap(min_gap)
        if blocked or (pace.returned() and previous is not None and previous >= item.opening):
            admission.waiting.append((item, None))
        elif gap and previous is not None and now < previous + gap:
            # Too soon after another email to this contact (any campaign).
            admission.waiting.append((item, previous + gap))
        else:
            admission.allowed.append(item)
            last[row.contact_id] = now
    return admission


def needs_last_sent(chunk: Sequence[Going], min_gap: timedelta) -> bool:
    """Whether `admit` must know the contacts' latest emails: a gap, or a pace, applies."""
    return bool(min_gap) or any(item.row.pace.chosen for item in chunk)


def postpone(
    waiting: Sequence[tuple[Going, datetime | None]],
    later: Mapping[int, Sequence[Sibling]],
    rules: Rules,
) -> dict[int, datetime]:
    """These rows and their contacts' later scheduled steps (`later`, by enrollment), moved
    on in order: to the next opening, and (too soon after another email) to the first
    after the gap."""
    moves: dict[int, datetime] = {}
    for item, not_before in waiting:
        row = item.row
        steps = sorted(
            [(row.position, row.id, row.due_at)]
            + [
                (r.position, r.id, r.due_at)
                for r in later.get(row.enrollment_id, ())
                if r.position > row.position
            ]
        )
        tz = schedule.zone(row.timezone)
        gap = row.pace.gap(rules.min_gap)
        due = schedule.replan_in_order(
            item.start, [d for _, _, d in steps], rules.window, tz, min_gap=gap
        )
        if not_before is not None:
            due = schedule.replan_in_order(not_before, due, rules.window, tz, min_gap=gap)
        moves.update(zip([i for _, i, _ in steps], due, strict=True))
    return moves
