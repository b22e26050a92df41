"""Sending double opt-in confirmation emails: each worker tick, through the campaign's sender.

Each tick first marks expired the requests past their `expires_at` (and erases the
contacts nothing else holds, planning/expired_signups.py); at most once an hour it also
clears held changes an older version left on expired or confirmed requests (a scan of
the table: about 3 ms for 40,000 requests); then it takes the
confirmations owed (`send_due_at` at or before `now`, planning/confirm_requests.py),
each by a conditional update that only one worker can win, so two workers never send
the same one. The email (rendering/confirm_email.py) goes through the campaign's own
sender, with its unsubscribe link and List-Unsubscribe headers; its id at the provider
is `confirm-<id>` (never a delivery id). Sent: `sent_at` (or `resent_at` for a repeat)
is written. A transient refusal owes it again after RETRY_AFTER; a permanent one or a
lost answer owes nothing more (a repeated sign-up asks again); a request confirmed,
ended or expired meanwhile is not owed again. A suppressed address is never written to,
nor an ended or expired request. These are not delivery rows: they are not in the delivery counts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select, update

from campaigns.delivery.handoff import SenderFor
from campaigns.errors import DripmailError
from campaigns.planning.conditions import parse_attributes
from campaigns.planning.confirmations import claim_of, clear_left_held, expire
from campaigns.planning.expired_signups import forget_expired
from campaigns.rendering.confirm_email import confirmation_message
from campaigns.rendering.links import LinkBase
from campaigns.rendering.personalise import Recipient
from campaigns.rendering.tokens import ConfirmSigner, Signer, UnsubscribeClaim
from campaigns.storage.publish import load_version
from campaigns.storage.store import Store
from campaigns.storage.tables import confirmations, contacts, suppressions
from senders.base import Outcome

log = logging.getLogger("dripmail.confirm")

BATCH = 200  # confirmations taken per round
RETRY_AFTER = timedelta(minutes=5)
ID_PREFIX = "confirm-"
CLEAR_LEFT_EVERY = timedelta(hours=1)  # clear_left_held scans every request: not each tick


@dataclass
class ConfirmReport:
    """What one round did."""

    sent: int = 0
    failed: int = 0
    expired: int = 0


def confirm_url(base_url: str, token: str) -> str:
    """The patient's confirm page."""
    return f"{base_url}/c/{token}"


class ConfirmationSender:
    """Sends the confirmation emails owed at `now`, through each campaign's sender."""

    def __init__(self, store: Store, sender_for: SenderFor) -> None:
        self.store = store
        self.sender_for = sender_for
        self._confirm = ConfirmSigner(store.secret_key())
        self._unsubscribe = Signer(store.secret_key())
        self._cleared_at: datetime | None = None  # the engine's now of the last clear_left_held

    def run(self, *, now: datetime) -> ConfirmReport:
        """Expire what ran out, then send everything owed, a batch at a time."""
        report = ConfirmReport()
        first = True
        while True:
            # One transaction when nothing is owed (every tick pays for this check).
            with self.store.begin() as conn:
                expired = expire(conn, now=now) if first else []
                if first and self._clear_due(now):
                    clear_left_held(conn)  # left by a rolling upgrade's old code
                rows = self._take(conn, now)
            if first:
                # The never confirmed: their addresses go (planning/expired_signups.py).
                report.expired, first = len(expired), False
                forget_expired(self.store, expired, now=now)
            if not rows:
                return report
            self._send(rows, now=now, report=report)
            if len(rows) < BATCH:
                return report

    def _clear_due(self, now: datetime) -> bool:
        """Whether to clear left held changes now: first tick, then hourly (engine time;
        a clock moved back counts as due)."""
        last = self._cleared_at
        if last is not None and last <= now < last + CLEAR_LEFT_EVERY:
            return False
        self._cleared_at = now
        return True

    def _take(self, conn: Connection, now: datetime) -> list:
        """Up to BATCH owed confirmations, each won by one conditional update."""
        candidates = conn.execute(
            select(
                confirmations.c.id,
                confirmations.c.contact_id,
                confirmations.c.campaign,
                confirmations.c.sent_at,
                confirmations.c.requested_at,
                contacts.c.email,
                contacts.c.first_name,
                contacts.c.timezone,
                contacts.c.language,
                contacts.c.attributes,
                contacts.c.discreet,
            )
            .join(contacts, contacts.c.id == confirmations.c.contact_id)
            .where(confirmations.c.send_due_at <= now, confirmations.c.expired_at.is_(None))
            .order_by(confirmations.c.send_due_at, confirmations.c.id)
            .limit(BATCH)
        ).all()
        taken = []
        for row in candidates:
            won = conn.execute(
                update(confirmations)
                .where(confirmations.c.id == row.id, confirmations.c.send_due_at.is_not(None))
                .values(send_due_at=None)
            ).rowcount
            if won and row.email is not None:  # an erased contact gets nothing
                taken.append(row)
        # Per row, not per address: one contact may have requests in several campaigns.
        hashes = [(self.store.address_hash(r.email), r) for r in taken]
        blocked = (
            set(
                conn.scalars(
                    select(suppressions.c.address_hash).where(
                        suppressions.c.address_hash.in_(bindparam("many", expanding=True))
                    ),
                    {"many": sorted({hashed for hashed, _ in hashes})},
                )
            )
            if hashes
            else set()
        )
        return [row for hashed, row in hashes if hashed not in blocked]

    def _send(self, rows: list, *, now: datetime, report: ConfirmReport) -> None:
        by_campaign = defaultdict(list)
        for row in rows:
            by_campaign[row.campaign].append(row)
        sent, again = [], []
        for name, group in by_campaign.items():
            try:
                with self.store.connect() as conn:
                    campaign = load_version(conn, name)
                sender = self.sender_for(campaign)
                base = LinkBase.of(campaign, self.store.settings.public_url)
                messages = [
                    sender.build(
                        confirmation_message(
                            campaign,
                            Recipient(
                                row.email,
                                row.first_name,
                                row.timezone,
                                attributes=parse_attributes(row.attributes),
                                language=row.language,
                                discreet=bool(row.discreet),
                            ),
                            base.signed(
                                self._unsubscribe.token(
                                    UnsubscribeClaim(row.contact_id, name, None)
                                )
                            ),
                            confirm_url=confirm_url(base.url, self._confirm.token(claim_of(row))),
                            message_id=f"{ID_PREFIX}{row.id}",
                            date=now,
                        )
                    )
                    for row in group
                ]
                results = sender.send(messages)
            except DripmailError as exc:
                # The campaign's own problem (its sender refused, it is gone): owed again
                # later, and the rest of the round goes on.
                # The error's type only: a sender's message can quote the recipient.
                log.warning(
                    "confirmations %s of campaign %s kept back: %s",
                    ",".join(str(row.id) for row in group),
                    name,
                    type(exc).__name__,
                )
                again.extend(row.id for row in group)
                report.failed += len(group)
                continue
            for row, result in zip(group, results, strict=True):
                if result.outcome == Outcome.SENT:
                    sent.append(row)
                elif result.outcome == Outcome.TRANSIENT:
                    again.append(row.id)
                    report.failed += 1
                else:
                    log.warning("confirmation %d not sent: %s", row.id, result.outcome)
                    report.failed += 1
        with self.store.begin() as conn:
            for row in sent:
                stamp = {"sent_at": now} if row.sent_at is None else {"resent_at": now}
                conn.execute(
                    update(confirmations).where(confirmations.c.id == row.id).values(**stamp)
                )
            if again:
                conn.execute(
                    update(confirmations)
                    .where(
                        confirmations.c.id.in_(again),
                        # Not if confirmed, ended (unsubscribed) or expired meanwhile.
                        confirmations.c.confirmed_at.is_(None),
                        confirmations.c.expired_at.is_(None),
                        confirmations.c.expires_at > now,
                    )
                    .values(send_due_at=now + RETRY_AFTER)
                )
        report.sent += len(sent)
        if sent:
            log.info("confirmation emails sent: %d", len(sent))
