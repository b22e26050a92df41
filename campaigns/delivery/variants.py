"""A/B variants at hand-off: each row's variant, and a `winner:` rule's one-time choice.

A row's variant is chosen when it is handed to its sender (planning/variants.py: a
keyed hash of contact and step onto the weights) and written on the row in the
transaction that makes it `sending`, so the column says what went. Choosing at
hand-off rather than at enrollment means a live edit to the variants, and a winner,
apply to every email not yet gone, with nothing to re-plan.

A step with `winner: {metric, after}` splits until every variant has `after` sent
emails; at the next hand-off of that step the variant with the best rate of the
metric (distinct deliveries clicked, or contacts converted, over sent) is chosen and
written once in `variant_winners` (its primary key: whichever worker inserts first
decides, the others read that row). From then on every email of the step goes as the
winner. A tie for the best (no clicks yet, say) chooses nothing: the split goes on
until one variant is ahead. The choice holds while the step keeps its `winner:` rule
and the chosen variant; removing either resumes the split (the row stays, for stats).
Sends that cross the threshold in one hand-off all go split, so a variant may have up
to one hand-off (`--batch-size`) more than `after` when the choice is made.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Subquery

from campaigns.authoring.spec import Campaign, Step
from campaigns.authoring.variant_spec import Winner
from campaigns.planning.variant_plan import chosen_winner
from campaigns.planning.variants import Choice, Rates, choose, pick_winner
from campaigns.storage.statuses import DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries, enrollments, events, variant_winners

__all__ = [
    "CLICKED",
    "VariantChooser",
    "by_variant",
    "record_choice",
    "variant_rates",
    "variant_sends",
]

log = logging.getLogger("dripmail.dispatch")

# The stored event type of a click: compliance.event_model.EventKind.CLICKED's value
# (a later stage; tests/unit/test_variants.py checks they agree).
CLICKED = "clicked"


def _sent_of_step(campaign: str, step_key: str) -> Subquery:
    """The step's sent deliveries that went as a variant: id, variant, enrollment."""
    return (
        select(deliveries.c.id, deliveries.c.variant, deliveries.c.enrollment_id)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(
            enrollments.c.campaign == campaign,
            deliveries.c.step_key == step_key,
            deliveries.c.status == DeliveryStatus.SENT,
            deliveries.c.variant.is_not(None),
        )
        .subquery()
    )


def variant_sends(conn: Connection, campaign: str, step_key: str) -> dict[str, int]:
    """Per variant of a step: its sent emails."""
    of_step = _sent_of_step(campaign, step_key)
    query = select(of_step.c.variant, func.count()).group_by(of_step.c.variant)
    return {name: count for name, count in conn.execute(query).all()}


def variant_rates(conn: Connection, campaign: str, step_key: str, metric: str) -> dict[str, Rates]:
    """Per variant of a step: sent emails, and of them those clicked (distinct
    deliveries) or whose contact converted (`metric`)."""
    of_step = _sent_of_step(campaign, step_key)
    sent = variant_sends(conn, campaign, step_key)
    if metric == "clicked":
        hits_query = (
            select(of_step.c.variant, func.count(events.c.delivery_id.distinct()))
            .join(events, events.c.delivery_id == of_step.c.id)
            .where(events.c.type == CLICKED)
            .group_by(of_step.c.variant)
        )
    else:
        hits_query = (
            select(of_step.c.variant, func.count())
            .join(enrollments, enrollments.c.id == of_step.c.enrollment_id)
            .where(enrollments.c.status == EnrollmentStatus.CONVERTED)
            .group_by(of_step.c.variant)
        )
    hits = dict(conn.execute(hits_query).all())
    return {name: Rates(count, hits.get(name, 0)) for name, count in sent.items()}


def record_choice(
    store: Store, campaign: str, step_key: str, rule: Winner, choice: Choice, *, now: datetime
) -> str:
    """Write the choice once; the variant chosen by whoever wrote first."""
    figures = {
        name: {"sent": r.sent, rule.metric: r.hits, "rate": r.rate}
        for name, r in choice.rates.items()
    }
    with store.begin() as conn:
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(variant_winners).values(
                        campaign=campaign,
                        step_key=step_key,
                        variant=choice.variant,
                        metric=rule.metric,
                        after=rule.after,
                        figures=json.dumps(figures, sort_keys=True),
                        decided_at=now,
                    )
                )
        except IntegrityError:  # another worker chose first: theirs stands
            pass
        return chosen_winner(conn, campaign, step_key) or choice.variant


class VariantChooser:
    """Chooses each handed-off row's variant: the winner once chosen, else the keyed split.

    Winners are remembered once read (a choice is never unmade while its rule stands);
    a step still splitting is asked of the database at each hand-off, so a choice made
    by another worker applies from this worker's next hand-off.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._key = store.variant_key()
        self._winners: dict[tuple[str, str, str], str] = {}  # (campaign, version, step)

    def choose(
        self, campaign: Campaign, rows: Iterable[tuple[int, int, str]], *, now: datetime
    ) -> dict[int, str]:
        """Row id -> variant, for rows (id, contact id, step key) of steps with variants."""
        winners: dict[str, str | None] = {}
        chosen: dict[int, str] = {}
        for row_id, contact_id, step_key in rows:
            step = _step(campaign, step_key)
            if step is None or not step.variants:
                continue
            if step_key not in winners:
                winners[step_key] = self._winner(campaign, step, now=now)
            winner = winners[step_key]
            chosen[row_id] = winner or choose(self._key, contact_id, step_key, step.variants)
        return chosen

    def _winner(self, campaign: Campaign, step: Step, *, now: datetime) -> str | None:
        rule = step.winner
        if rule is None:
            return None
        names = [variant.name for variant in step.variants]
        cached = self._winners.get((campaign.name, campaign.version, step.key))
        if cached is not None:
            return cached
        with self.store.connect() as conn:
            stored = chosen_winner(conn, campaign.name, step.key)
            rates: dict[str, Rates] = {}
            # The sends alone first (one query): the successes only once each has `after`.
            if stored is None:
                sends = variant_sends(conn, campaign.name, step.key)
                if all(sends.get(name, 0) >= rule.after for name in names):
                    rates = variant_rates(conn, campaign.name, step.key, rule.metric)
        if stored is None:
            choice = pick_winner(rates, names, rule.after)
            if choice is None:
                return None
            stored = record_choice(self.store, campaign.name, step.key, rule, choice, now=now)
            log.info(
                "campaign %s step %s: variant %s chosen by %s", campaign.name, step.key, stored,
                rule.metric,
            )  # fmt: skip
        if stored not in names:  # the chosen variant was edited away: split again
            return None
        self._winners[campaign.name, campaign.version, step.key] = stored
        return stored


def _step(campaign: Campaign, key: str) -> Step | None:
    try:
        return campaign.step(key)
    except KeyError:
        return None


def by_variant(chosen: Mapping[int, str], ids: Iterable[int]) -> dict[str, list[int]]:
    """The ids of each variant, among `ids` (for one UPDATE per variant)."""
    groups: dict[str, list[int]] = {}
    for row_id in ids:
        if row_id in chosen:
            groups.setdefault(chosen[row_id], []).append(row_id)
    return groups
