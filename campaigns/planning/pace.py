"""A patient's own pace (issue 18): a pause until an instant, and "fewer emails".

Pure rules over two facts of a contact (`contacts.paused_until`, `contacts.min_gap_days`,
migration 0022), which the preference centre sets and the engine honours everywhere:

- nothing goes to a paused contact before `paused_until`: rows due earlier move to the
  first window opening at or after it, new sign-ups are planned from it, newsletters
  scheduled during it go after it; on return, one email per window opening;
- `min_gap_days` is a gap between any two of the contact's emails, across campaigns
  (drip and newsletter), on top of each campaign's own `min_gap`: the larger wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Pace:
    """What a contact chose: paused until an instant (UTC), at least some days apart."""

    paused_until: datetime | None = None
    min_gap_days: int | None = None

    @property
    def chosen(self) -> bool:
        """Whether the contact set anything (else the campaigns' own timing applies)."""
        return self.paused_until is not None or bool(self.min_gap_days)

    def gap(self, campaign_gap: timedelta = timedelta(0)) -> timedelta:
        """The gap between two emails to this contact: the campaign's or theirs, the larger."""
        return max(campaign_gap, timedelta(days=max(self.min_gap_days or 0, 0)))

    def paused(self, now: datetime) -> bool:
        """Whether nothing may go to the contact at `now`."""
        return self.paused_until is not None and now < self.paused_until

    def returned(self) -> bool:
        """A pause on record (over or not): the return is spread, one email per opening
        across every campaign, so the backlog never arrives together."""
        return self.paused_until is not None

    def not_before(self, at: datetime | None = None) -> datetime | None:
        """The earliest instant an email may be planned: `at`, or the pause's end if later."""
        if self.paused_until is None:
            return at
        return self.paused_until if at is None else max(at, self.paused_until)

    def notes(self, now: datetime) -> list[str]:
        """Why the contact's pending emails wait, as `schedule --email` shows it."""
        notes = []
        if self.paused(now):
            assert self.paused_until is not None
            notes.append(f"paused by the patient until {_shown(self.paused_until)}")
        if self.min_gap_days:
            days = self.min_gap_days
            notes.append(f"fewer emails: {days} day{'s' if days != 1 else ''} between emails")
        return notes


NO_PACE = Pace()


def _shown(instant: datetime) -> str:
    return f"{instant.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
