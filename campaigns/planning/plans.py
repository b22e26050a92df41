"""A contact's due times, planned from a sign-up: for one contact, or in bulk for a campaign."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache

from campaigns.authoring.spec import Campaign
from campaigns.planning import schedule
from campaigns.planning.pace import NO_PACE, Pace
from campaigns.storage.store import Store


def plan(
    campaign: Campaign,
    signed_up_at: datetime,
    timezone: str,
    *,
    now: datetime | None = None,
    previous: datetime | None = None,
    pace: Pace = NO_PACE,
) -> list[datetime]:
    """The due time of every step for a contact who signed up at `signed_up_at`.

    With `now`, overdue steps start at `now` and go one per window opening (never a
    burst); `previous` is the contact's last email from any campaign, kept `min_gap`
    away. Enrollment plans from the sign-up alone: `now` there is the wall clock unless
    `--now` is given, and the dispatcher already sends overdue steps one per opening,
    in order, at whatever engine time it runs. A contact's own `pace` (planning/pace.py)
    starts nothing before their pause ends and keeps their gap when it is the larger.
    """
    return schedule.plan_due_times(
        signed_up_at,
        [step.delay for step in campaign.steps],
        campaign.window,
        schedule.zone(timezone),
        min_gap=pace.gap(campaign.min_gap),
        not_before=pace.not_before(now),
        previous=previous,
    )


# (sign-up, zone name, the contact's last email) -> due times as the driver takes them.
DriverPlan = Callable[[datetime, str, datetime | None], tuple[object, ...]]


def planner(store: Store, campaign: Campaign) -> DriverPlan:
    """`plan` for new sign-ups, remembered, in the store's driver form (for bulk_insert).

    Contacts with the same plan share one conversion as well as one planning.
    """
    planned = schedule.planner(
        [step.delay for step in campaign.steps], campaign.window, min_gap=campaign.min_gap
    )

    # Plans are in UTC, so equal tuples are equal instants (no fold or zone to tell apart).
    @lru_cache(maxsize=1 << 16)
    def driver_times(due_times: tuple[datetime, ...]) -> tuple[object, ...]:
        return tuple(map(store.driver_time, due_times))

    def plan_for(
        signed_up_at: datetime, timezone: str, previous: datetime | None
    ) -> tuple[object, ...]:
        return driver_times(planned(signed_up_at, schedule.zone(timezone), previous))

    return plan_for
