"""Per-step statistics of a campaign: what was sent, and what providers and patients did.

Counts per step are of deliveries: `opened` is how many emails were opened at least
once, not how many open events arrived (one patient opening an email five times is
one open), so every rate stays between 0 and 1. Rates are over delivered emails, or
over sent ones for a step that no delivery event reached (the file and SMTP senders
report none); the bounce rate is always over sent, since a bounced email was never
delivered. Events that name no delivery (a send-test, a provider event without our
delivery id) count at campaign level only.

Every provider's events count the same way: the columns are the event model's kinds
(compliance/event_model.py). `bounced` is hard bounces, the addresses lost;
`soft_bounced` (a mailbox full, a block the provider retries) is shown apart and rated
against nothing, since the email may still arrive. `rejected` (the provider would not
send it) is in no column: the delivery shows it, as `failed` or `unknown`.

Opens and clicks are only known when the provider tracks them (SendGrid's
`track_opens`/`track_clicks`) and reports events; the file and SMTP senders never do.
A column nobody could have counted is "not tracked" (None), never a 0% that reads as
"nobody opened it".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from campaigns.compliance.event_model import EventKind
from campaigns.compliance.suppressions import EVENT_TYPES
from campaigns.planning.confirmations import ConfirmationCounts, confirmation_counts
from campaigns.reporting import counts
from campaigns.reporting.conversions import Conversions, campaign_conversions
from campaigns.reporting.reports import CampaignPause, campaign_pauses
from campaigns.reporting.variant_stats import StepVariants, step_variants
from campaigns.storage.publish import open_campaign
from campaigns.storage.statuses import DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import events

# Which stored event types feed which column: the model's kinds, for every provider, and
# dripmail's own unsubscribes (one per scope, compliance/suppressions.py).
COLUMNS: dict[str, tuple[str, ...]] = {
    "delivered": (EventKind.DELIVERED.value,),
    "bounced": (EventKind.BOUNCED_HARD.value,),
    "opened": (EventKind.OPENED.value,),
    "clicked": (EventKind.CLICKED.value,),
    "unsubscribed": (EventKind.UNSUBSCRIBED.value, *EVENT_TYPES.values()),
    "complaints": (EventKind.COMPLAINED.value,),
    "soft_bounced": (EventKind.BOUNCED_SOFT.value,),
}
RATED = ("bounced", "opened", "clicked", "unsubscribed", "complaints")
# Columns that exist only when the provider tracks them, and the sender key turning it on.
TRACKING = {"opened": "track_opens", "clicked": "track_clicks"}
# Columns only a provider's events fill (dripmail records unsubscribes itself).
PROVIDER_REPORTED = ("delivered", "bounced", "opened", "clicked", "complaints", "soft_bounced")


@dataclass
class Counts:
    """Sent deliveries and, per column, deliveries that had at least one such event."""

    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    complaints: int = 0
    soft_bounced: int = 0  # not rated: the email may still arrive
    # Goals reached with this as the last email sent before (reporting/conversions.py).
    converted: int = 0

    def add(self, other: Counts) -> None:
        for name in asdict(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def basis(self) -> str:
        """What rates are taken over: delivered once any delivery event arrived, else sent."""
        return "delivered" if self.delivered else "sent"

    def rates(self, untracked: Collection[str] = ()) -> dict[str, float | None]:
        """Each rated column over its denominator; None when that is zero or the column
        is `untracked`."""
        over = self.delivered if self.delivered else self.sent
        result: dict[str, float | None] = {
            "delivered": self.delivered / self.sent if self.sent and self.delivered else None
        }
        for name in RATED:
            denominator = self.sent if name == "bounced" else over
            known = denominator and name not in untracked
            result[name] = getattr(self, name) / denominator if known else None
        return result

    def as_dict(self, untracked: Collection[str] = ()) -> dict[str, Any]:
        """Counts (None for an untracked column), the rates' basis, and the rates."""
        counts = {k: None if k in untracked else v for k, v in asdict(self).items()}
        return {**counts, "basis": self.basis, "rates": self.rates(untracked)}


@dataclass
class StepStats:
    """One step's counts and rates."""

    position: int | None
    key: str
    subject: str
    counts: Counts = field(default_factory=Counts)

    def as_dict(self, untracked: Collection[str] = ()) -> dict[str, Any]:
        return {
            "position": self.position,
            "step": self.key,
            "subject": self.subject,
            **self.counts.as_dict(untracked),
        }


@dataclass
class CampaignStats:
    """Every step of a campaign, events that name no delivery, and the totals."""

    campaign: str
    steps: list[StepStats]
    campaign_level: dict[str, int]  # column -> events naming no delivery
    total: Counts
    untracked: tuple[str, ...] = ()  # columns no sender could count ("not tracked")
    paused: CampaignPause | None = None  # when the campaign is paused: since when, why
    goals: tuple[str, ...] = ()  # the events of the campaign's `goal:`
    conversions: Conversions = field(default_factory=Conversions)
    variants: list[StepVariants] = field(default_factory=list)  # steps with A/B variants
    # Double opt-in sign-ups (planning/confirmations.py): waiting, confirmed, expired.
    confirmations: ConfirmationCounts = field(default_factory=ConfirmationCounts)

    def as_dict(self) -> dict[str, Any]:
        level = {k: None if k in self.untracked else v for k, v in self.campaign_level.items()}
        return {
            "campaign": self.campaign,
            "paused": self.paused.as_dict() if self.paused else None,
            "goals": list(self.goals),
            "conversions": self.conversions.as_dict(),
            "not_tracked": list(self.untracked),
            "steps": [step.as_dict(self.untracked) for step in self.steps],
            "campaign_level": level,
            "total": self.total.as_dict(self.untracked),
            "variants": [step.as_dict(self.untracked) for step in self.variants],
            "confirmations": asdict(self.confirmations),
        }


def untracked_columns(total: Counts, tracking: Mapping[str, bool]) -> tuple[str, ...]:
    """Columns of TRACKING that nobody counted: no such event arrived, and either the
    sender does not track it or it reported no event at all (no webhook set up).

    `tracking` is the campaign sender's setting per column (False for file and SMTP).
    """
    reported = any(getattr(total, name) for name in PROVIDER_REPORTED)
    return tuple(
        column
        for column in TRACKING
        if not getattr(total, column) and not (tracking.get(column) and reported)
    )


def _column_of(event_type: str) -> str | None:
    for column, types in COLUMNS.items():
        if event_type in types:
            return column
    return None


def campaign_stats(store: Store, ref: str) -> CampaignStats:
    """Statistics of a published campaign (by name, or the folder it was published from)."""
    campaign = open_campaign(store, ref)
    name = campaign.name
    steps = {step.key: StepStats(step.position, step.key, step.subject) for step in campaign.steps}
    with store.connect() as conn:
        # From the counts the database keeps (reporting/counts.py, migration 0024): sent
        # deliveries per step, and per step and column the deliveries with at least one
        # such event (five opens of one email are one open, and an unsubscribe from the
        # campaign and then from everything is one unsubscribe).
        sent = counts.deliveries_by_status(conn, name, DeliveryStatus.SENT).items()
        by_step = [
            (key, kind, n)
            for (key, kind), n in counts.events_by_kind(conn, name).items()
            if kind in COLUMNS
        ]
        loose: list[tuple[str, int]] = []
        if "campaign" in events.c:  # attribution of delivery-less events needs the column
            loose = conn.execute(
                select(events.c.type, func.count())
                .where(events.c.delivery_id.is_(None), events.c.campaign == name)
                .group_by(events.c.type)
            ).all()
        conversions = campaign_conversions(conn, name)

    def step(key: str) -> StepStats:
        if key not in steps:  # a step since removed from the campaign
            steps[key] = StepStats(None, key, "(removed from the campaign)")
        return steps[key]

    for key, count in sent:
        step(key).counts.sent = count
    for key, column_name, count in by_step:
        setattr(step(key).counts, column_name, count)
    for key, count in conversions.by_step.items():
        step(key).counts.converted = count
    campaign_level = dict.fromkeys(COLUMNS, 0)
    for event_type, count in loose:
        column = _column_of(event_type)
        if column is not None:
            campaign_level[column] += count
    ordered = sorted(steps.values(), key=lambda s: (s.position is None, s.position or 0, s.key))
    total = Counts()
    for item in ordered:
        total.add(item.counts)
    for column, count in campaign_level.items():
        setattr(total, column, getattr(total, column) + count)
    total.converted = conversions.converted  # with those before any email
    tracking = {
        column: bool(getattr(campaign.spec.sender, key, False)) for column, key in TRACKING.items()
    }
    untracked = untracked_columns(total, tracking)
    paused = next(iter(campaign_pauses(store, name)), None)
    goals = tuple(goal.event for goal in campaign.spec.goal)
    with store.connect() as conn:
        variants = step_variants(conn, campaign, COLUMNS, untracked)
        confirmed = confirmation_counts(conn, name).get(name, ConfirmationCounts())
    return CampaignStats(
        name,
        ordered,
        campaign_level,
        total,
        untracked,
        paused,
        goals,
        conversions,
        variants,
        confirmed,
    )
