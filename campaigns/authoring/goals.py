"""The campaign file's `goal:`: the events that end a contact's sequence, and for how long.

```yaml
goal: {event: booked, within: 30d}        # one goal
goal:                                     # or several: any one of them converts
  - {event: booked, within: 30d}
  - {event: consultation-attended}
```

An event name is lower-case letters, digits and dashes (`booked`, `consult-2`), as a
booking system sends it. `within` (optional, a delay as steps write theirs: `30d`, `6w`,
`72h`) bounds how long after sign-up the event still counts; an event before sign-up
never counts. What a counted event does (the enrollment becomes `converted`, its pending
emails `cancelled`) is campaigns/planning/conversions.py.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, field_validator

from campaigns.authoring.fields import FileModel
from campaigns.planning import schedule

EVENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$", re.ASCII)
EVENT_NAME_RULE = "lower-case letters, digits and dashes, at most 64, like booked"
MAX_GOALS = 20


def check_event_name(value: Any) -> str:
    """An event name as campaign files and events give it; ValueError saying the rule."""
    if not isinstance(value, str) or not EVENT_NAME.match(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else "the name"
        raise ValueError(f"{shown} is not an event name: use {EVENT_NAME_RULE}")
    return value


class Goal(FileModel):
    """One goal: the event that converts, and how long after sign-up it counts."""

    event: str
    within: str | None = None

    @field_validator("event", mode="before")
    @classmethod
    def _event(cls, value: Any) -> str:
        return check_event_name(value)

    @field_validator("within", mode="before")
    @classmethod
    def _within(cls, value: Any) -> str | None:
        if value is None:
            return None
        return str(schedule.parse_delay(str(value)))

    def counts(self, signed_up_at: datetime, at: datetime, tz: ZoneInfo) -> bool:
        """Whether an event at `at` counts for a sign-up at `signed_up_at` (zone `tz`:
        `d` and `w` are calendar days in the contact's zone, as for delays)."""
        if at < signed_up_at:
            return False
        if self.within is None:
            return True
        return at <= schedule.add_delay(signed_up_at, schedule.parse_delay(self.within), tz)


def _as_list(value: Any) -> Any:
    """`goal:` as one mapping or a list of them; always a list from here on."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        if len(value) > MAX_GOALS:
            raise ValueError(f"{len(value)} goals: a campaign has at most {MAX_GOALS}")
        events = [item.get("event") for item in value if isinstance(item, dict)]
        repeated = sorted({e for e in events if isinstance(e, str) and events.count(e) > 1})
        if repeated:
            raise ValueError(f"the event {repeated[0]!r} has two goals: keep one")
        return value
    raise ValueError("write a goal as {event: booked, within: 30d}, or a list of them")


# The spec's field type: `goal: {event: ...}` or `goal: [{event: ...}, ...]`.
Goals = Annotated[tuple[Goal, ...], BeforeValidator(_as_list)]


def goal_for(goals: tuple[Goal, ...], event: str) -> Goal | None:
    """The goal of `goals` that names `event`, if any."""
    return next((goal for goal in goals if goal.event == event), None)
