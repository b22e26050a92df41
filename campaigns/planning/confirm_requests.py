"""Double opt-in requests: a sign-up that waits for the patient to confirm their address.

`request_confirmations` runs inside the sign-up's (or import chunk's) transaction, for
contacts not yet enrolled in the campaign: each gets one `confirmations` row whose
`send_due_at` tells the worker a confirmation email is owed now, and the transaction
announces it (storage/wakeup.py) so a listening worker sends it at once. A repeated
sign-up while unconfirmed owes the email again, at most once a day (RESEND_AFTER,
counted from when the repeat was owed, so even while it is being sent); one
after the request expired (or was confirmed and its enrollment since removed) starts
over. A known contact's tags, attributes and language are held on the request until
confirmed (planning/held_changes.py); a repeat replaces them with its own. Confirming,
expiring and the worker's probe are campaigns/planning/confirmations.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, insert, select, update

from campaigns.authoring.spec import Campaign
from campaigns.planning import schedule
from campaigns.storage.tables import confirmations
from campaigns.storage.wakeup import announce_due

RESEND_AFTER = timedelta(days=1)  # a repeated sign-up sends the email again at most this often


@dataclass(frozen=True)
class Requested:
    """What a batch of double opt-in sign-ups did."""

    new: int = 0  # confirmation emails owed for the first time (or after an expiry)
    resent: int = 0  # owed again: a repeated sign-up, over a day since the last one went
    waiting: int = 0  # repeated within the day (or already owed): nothing more to send


def confirm_window(campaign: Campaign) -> timedelta:
    """How long a confirmation link stays good: the campaign's `confirm_within`, elapsed."""
    return schedule.parse_delay(campaign.spec.confirm_within).as_timedelta()


def request_confirmations(
    conn: Connection,
    campaign: Campaign,
    contact_ids: Sequence[int],
    *,
    now: datetime,
    held: Mapping[int, str | None] | None = None,
) -> Requested:
    """Owe each contact a confirmation email for `campaign`, in the caller's transaction.

    `held`: contact id -> what the sign-up would change on a known contact (JSON text,
    planning/held_changes.py), kept on the request until confirmed; it replaces what
    an earlier sign-up held (a contact missing from it holds nothing now)."""
    if not contact_ids:
        return Requested()
    held = held or {}
    expires = now + confirm_window(campaign)
    found = {
        row.contact_id: row
        for row in conn.execute(
            select(confirmations).where(
                confirmations.c.campaign == campaign.name,
                confirmations.c.contact_id.in_(bindparam("many", expanding=True)),
            ),
            {"many": list(contact_ids)},
        )
    }
    fresh = [c for c in contact_ids if c not in found]
    if fresh:
        conn.execute(
            insert(confirmations),
            [
                {
                    "contact_id": contact_id,
                    "campaign": campaign.name,
                    "requested_at": now,
                    "send_due_at": now,
                    "expires_at": expires,
                    "held_changes": held.get(contact_id),
                }
                for contact_id in fresh
            ],
        )
    restart, resend, waiting = [], [], 0
    for row in found.values():
        if row.confirmed_at is not None or row.expired_at is not None or row.expires_at <= now:
            restart.append(row.id)  # a new request: the old one is over
        elif row.send_due_at is None and _last_asked(row) <= now - RESEND_AFTER:
            resend.append(row.id)
        else:
            waiting += 1
    if restart:
        conn.execute(
            update(confirmations)
            .where(confirmations.c.id.in_(restart))
            .values(
                requested_at=now,
                send_due_at=now,
                sent_at=None,
                resent_at=None,
                confirmed_at=None,
                expired_at=None,
                expires_at=expires,
            )
        )
    if resend:
        # A fresh request: the email goes again, and the patient has the whole window.
        # `resent_at` is stamped now, when it is owed, not when the provider answers: a
        # sign-up repeated while this one is being sent must not owe a third at once.
        conn.execute(
            update(confirmations)
            .where(confirmations.c.id.in_(resend), confirmations.c.send_due_at.is_(None))
            .values(send_due_at=now, expires_at=expires, resent_at=now)
        )
    changed = [
        {"b_id": row.id, "b_held": held.get(row.contact_id)}
        for row in found.values()
        if row.held_changes != held.get(row.contact_id)
    ]
    if changed:
        # The newest sign-up's changes replace the held ones. Never onto a request that
        # was confirmed or expired meanwhile (its changes are applied, or must go).
        conn.execute(
            update(confirmations)
            .where(
                confirmations.c.id == bindparam("b_id"),
                confirmations.c.confirmed_at.is_(None),
                confirmations.c.expired_at.is_(None),
            )
            .values(held_changes=bindparam("b_held")),
            changed,
        )
    if fresh or restart or resend:
        announce_due(conn)
    return Requested(len(fresh) + len(restart), len(resend), waiting)


def end_requests(conn: Connection, contact_id: int, campaign: str | None, *, now: datetime) -> int:
    """End the contact's unconfirmed requests (of `campaign`, or all): they unsubscribed
    from a confirmation email, so it is not sent again and its link confirms nothing."""
    query = update(confirmations).where(
        confirmations.c.contact_id == contact_id,
        confirmations.c.confirmed_at.is_(None),
        confirmations.c.expired_at.is_(None),
    )
    if campaign is not None:
        query = query.where(confirmations.c.campaign == campaign)
    # What the sign-up held for them goes with it (planning/held_changes.py).
    values = {"expired_at": now, "send_due_at": None, "held_changes": None}
    return conn.execute(query.values(**values)).rowcount or 0


def _last_asked(row) -> datetime:
    """When a confirmation was last owed again (`resent_at`, stamped when owed, so it
    counts while the email is in flight), else first sent, else first asked for."""
    return row.resent_at or row.sent_at or row.requested_at
