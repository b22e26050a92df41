"""Per-variant statistics of a step with A/B variants, whether the gap is real, and the winner.

Each variant's counts are of its sent deliveries (the `variant` each was recorded
with at hand-off): delivered, opened, clicked and unsubscribed as in stats.py
(deliveries with at least one such event), and converted (deliveries whose contact's
enrollment is `converted`). Rates are over sent, so every variant is on the same
footing whatever events arrived. The comparison uses the winner rule's metric, else
clicks when they are tracked, else conversions: the leader against every other
variant, by the two-proportion z-test at 95 % (significance.py); when it is not
meaningful yet, "need about N more per variant" is the sample size at which a gap
as large as the one seen would be found with 80 % power, less the smaller variant's
sends so far.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, case, func, select

from campaigns.authoring.spec import Campaign
from campaigns.authoring.variant_spec import label
from campaigns.reporting import counts
from campaigns.reporting.significance import LEVEL, sample_size, two_proportion_test
from campaigns.storage.statuses import DeliveryStatus, EnrollmentStatus
from campaigns.storage.tables import (
    deliveries,
    enrollments,
    events,
    variant_winners,
)

__all__ = ["METRIC_NOUN", "StepVariants", "VariantCounts", "WinnerRecord", "step_variants"]

COLUMNS = ("delivered", "opened", "clicked", "unsubscribed")
# The column of contacts whose enrollment reached its goal: named as their status is.
CONVERTED = EnrollmentStatus.CONVERTED.value
METRIC_NOUN = {"clicked": "click rate", "converted": "conversion rate", "opened": "open rate"}


def percent(rate: float) -> str:
    return f"{rate * 100:.1f} %"


@dataclass
class VariantCounts:
    """One variant's sent emails and what came of them."""

    name: str
    subject: str
    weight: float | None  # None: a variant since removed from the step
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    converted: int = 0

    @property
    def label(self) -> str:
        return label(self.name)

    def rate(self, column: str) -> float | None:
        """`column` over sent; None before any send, and for `delivered` before any
        delivery event (the file and SMTP senders report none: 0 % would mislead)."""
        if not self.sent or (column == "delivered" and not self.delivered):
            return None
        return getattr(self, column) / self.sent

    def as_dict(self, untracked: Collection[str]) -> dict[str, Any]:
        columns = (*COLUMNS, CONVERTED)
        return {
            "variant": self.name,
            "subject": self.subject,
            "weight": self.weight,
            "sent": self.sent,
            **{c: None if c in untracked else getattr(self, c) for c in columns},
            "rates": {c: None if c in untracked else self.rate(c) for c in columns},
        }


@dataclass(frozen=True)
class WinnerRecord:
    """A winner rule's choice, as stored: what, when, and the figures it was made on."""

    variant: str
    metric: str
    after: int
    decided_at: datetime
    figures: dict[str, dict[str, float]]

    def sentence(self) -> str:
        """`chose B on 2026-03-04 10:00 UTC because 4.1 % > 2.9 % clicked after 500 sends each`"""
        mine = self.figures.get(self.variant, {})
        others = sorted(
            (name for name in self.figures if name != self.variant),
            key=lambda name: -self.figures[name].get("rate", 0.0),
        )
        beaten = ", ".join(
            f"{label(name)} {percent(self.figures[name].get('rate', 0.0))}" for name in others
        )
        sends = ", ".join(
            f"{label(name)} {int(self.figures[name].get('sent', 0))}" for name in self.figures
        )
        when = self.decided_at.strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"chose {label(self.variant)} on {when} because {label(self.variant)} "
            f"{percent(mine.get('rate', 0.0))} > {beaten} {self.metric} after "
            f"{self.after} sends each (sent then: {sends})"
        )


@dataclass
class StepVariants:
    """A step's variants, the comparison in words, and the winner if one was chosen."""

    position: int | None
    key: str
    metric: str
    variants: list[VariantCounts] = field(default_factory=list)
    verdict: str = ""
    meaningful: bool = False
    more_per_variant: int | None = None
    winner: WinnerRecord | None = None

    def as_dict(self, untracked: Collection[str] = ()) -> dict[str, Any]:
        winner = None
        if self.winner is not None:
            winner = {
                "variant": self.winner.variant,
                "metric": self.winner.metric,
                "after": self.winner.after,
                "decided_at": self.winner.decided_at.isoformat(),
                "figures": self.winner.figures,
                "said": self.winner.sentence(),
            }
        return {
            "position": self.position,
            "step": self.key,
            "metric": self.metric,
            "variants": [v.as_dict(untracked) for v in self.variants],
            "verdict": self.verdict,
            "meaningful": self.meaningful,
            "more_per_variant": self.more_per_variant,
            "winner": winner,
        }


def step_variants(
    conn: Connection,
    campaign: Campaign,
    types: Mapping[str, tuple[str, ...]],
    untracked: Collection[str] = (),
) -> list[StepVariants]:
    """Every step that has variants now, or has deliveries recorded with one.

    `types` is which stored event types feed each column (stats.COLUMNS).
    """
    name = campaign.name
    of_campaign = (
        select(
            deliveries.c.id,
            deliveries.c.step_key,
            deliveries.c.variant,
            enrollments.c.status.label("enrollment_status"),
        )
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(
            enrollments.c.campaign == name,
            deliveries.c.status == DeliveryStatus.SENT,
            deliveries.c.variant.is_not(None),
        )
        .subquery()
    )
    converted = func.sum(
        case((of_campaign.c.enrollment_status == EnrollmentStatus.CONVERTED, 1), else_=0)
    )
    sent: Sequence[Row] = []
    counted: Sequence[Row] = []
    if _may_have_variants(conn, name):
        sent = conn.execute(
            select(of_campaign.c.step_key, of_campaign.c.variant, func.count(), converted).group_by(
                of_campaign.c.step_key, of_campaign.c.variant
            )
        ).all()
        column = case(*((events.c.type.in_(types[c]), c) for c in COLUMNS), else_=None).label(
            "column"
        )
        counted = conn.execute(
            select(
                of_campaign.c.step_key,
                of_campaign.c.variant,
                column,
                func.count(events.c.delivery_id.distinct()),
            )
            .join(events, events.c.delivery_id == of_campaign.c.id)
            .where(column.is_not(None))
            .group_by(of_campaign.c.step_key, of_campaign.c.variant, column)
        ).all()
    winners = {
        row.step_key: WinnerRecord(
            row.variant, row.metric, row.after, row.decided_at, json.loads(row.figures)
        )
        for row in conn.execute(select(variant_winners).where(variant_winners.c.campaign == name))
    }
    steps: dict[str, StepVariants] = {}
    for step in campaign.steps:
        if step.variants:
            metric = step.winner.metric if step.winner else _default_metric(untracked)
            found = StepVariants(step.position, step.key, metric)
            found.variants = [VariantCounts(v.name, v.subject, v.weight) for v in step.variants]
            steps[step.key] = found

    def variant(step_key: str, variant_name: str) -> VariantCounts:
        if step_key not in steps:  # variants since removed from the step (or the step)
            steps[step_key] = StepVariants(None, step_key, _default_metric(untracked))
        for item in steps[step_key].variants:
            if item.name == variant_name:
                return item
        item = VariantCounts(variant_name, "(removed from the step)", None)
        steps[step_key].variants.append(item)
        return item

    for step_key, variant_name, count, conversions in sent:
        found = variant(step_key, variant_name)
        found.sent, found.converted = count, int(conversions or 0)
    for step_key, variant_name, column_name, count in counted:
        setattr(variant(step_key, variant_name), column_name, count)
    for key, found in steps.items():
        found.winner = winners.get(key)
        _compare(found)
    return sorted(steps.values(), key=lambda s: (s.position is None, s.position or 0, s.key))


def _may_have_variants(conn: Connection, name: str) -> bool:
    """Whether any sent delivery of a step key the campaign sent on went as a variant.

    The step keys come from the counts (count_deliveries), the probe from the partial
    index ix_deliveries_variant (rows with a variant only), so a campaign without
    variants is told apart without walking its deliveries; with variants, the counting
    queries above run as they are.
    """
    keys = list(counts.deliveries_by_status(conn, name, DeliveryStatus.SENT))
    if not keys:
        return False
    probe = (
        select(deliveries.c.id)
        .where(
            deliveries.c.variant.is_not(None),
            deliveries.c.status == DeliveryStatus.SENT,
            deliveries.c.step_key.in_(keys),
        )
        .limit(1)
    )
    return conn.scalar(probe) is not None


def _default_metric(untracked: Collection[str]) -> str:
    return "clicked" if "clicked" not in untracked else "converted"


def _compare(step: StepVariants) -> None:
    """The verdict in words: the leader against each other variant, at 95 %."""
    metric, noun = step.metric, METRIC_NOUN[step.metric]
    sent = [v for v in step.variants if v.sent]
    if len(sent) < 2:
        step.verdict = "not yet: fewer than two variants have been sent"
        return
    ranked = sorted(sent, key=lambda v: v.rate(metric) or 0.0, reverse=True)
    leader, others = ranked[0], ranked[1:]
    tests = [
        two_proportion_test(getattr(leader, metric), leader.sent, getattr(o, metric), o.sent)
        for o in others
    ]
    runner = others[0]
    lead, second = leader.rate(metric) or 0.0, runner.rate(metric) or 0.0
    figures = f"{percent(lead)} vs {percent(second)}"
    level = f"{LEVEL:.0%}".replace("%", " %")
    if lead > second and all(t.meaningful for t in tests):
        step.meaningful = True
        step.verdict = f"{leader.label}'s {noun} is higher ({figures}), meaningful at {level}"
        return
    needed = sample_size(lead, second)
    if needed is None:
        step.verdict = f"not yet: no difference so far ({noun} {percent(lead)} for each)"
        return
    more = max(needed - min(leader.sent, runner.sent), 0)
    step.more_per_variant = more
    if more == 0:
        step.verdict = (
            f"not meaningful at {level} ({leader.label} {figures} {runner.label}): "
            "a gap this small is what chance gives"
        )
        return
    step.verdict = (
        f"not yet: need about {more:,} more per variant "
        f"({leader.label}'s {noun} {percent(lead)} vs {runner.label}'s {percent(second)})"
    )
