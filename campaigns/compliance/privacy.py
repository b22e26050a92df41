"""What is held on a person (`contacts export`) and erasing it (`contacts forget`).

Erasure keeps the opaque rows and drops the person. The contact row stays as a
tombstone with its id and creation time only (address, name, consent, time zone, tags,
attributes, language and every preference-centre choice cleared), so
enrollment and delivery rows, which carry ids, step keys, times and states but nothing
about the person, keep statistics right; delivery errors are cleared too, since a
provider's refusal may quote the address. An HMAC of the address goes into
suppressions, so the address is recognised and refused if it is imported again, and
pending deliveries are cancelled in the same transaction.

Deleted bytes can linger in a database file, so on SQLite the erasing connection turns
on `secure_delete` (the space the erasure frees is overwritten with zeros, in the pages
it writes), then the write-ahead log is checkpointed and truncated: the log held the old
page images, and the checkpoint writes the zeroed pages over the file's. Afterwards the
address and name are in neither the database file nor its -wal file. `contacts forget`
(CLI and console) also vacuums (rewrites) the file between two checkpoints, which drops
any copy older changes may have left in free space; the preference centre's "Erase me"
does not (`rewrite=False`): VACUUM holds the write lock for as long as rewriting the
whole file takes, and a patient's click must not stop every worker and sign-up for it.

On PostgreSQL the old row versions are removed by VACUUM (which blocks no writer); bytes
may stay in unused space of the data files until reused, and backups and archived WAL
keep the person until they expire (the README says so).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, select, update

from campaigns.compliance.suppressions import add_suppression, cancel_pending, suppression_of
from campaigns.errors import InputError
from campaigns.planning.contacts import display_address, normalise_email
from campaigns.planning.held_changes import held_for_export
from campaigns.storage.erasure import clear_contacts, erasing, scrub
from campaigns.storage.store import Store
from campaigns.storage.tables import (
    confirmations,
    contact_events,
    contacts,
    deliveries,
    enrollments,
    events,
)

log = logging.getLogger("dripmail.privacy")

ERASED = "erased"


def _address(email: str) -> str:
    try:
        return normalise_email(email)
    except ValueError as exc:
        raise InputError(str(exc), field="EMAIL") from None


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _of_contact(conn: Connection, table: Table, contact_id: int) -> list[dict[str, Any]]:
    """Every row of `table` that names this contact, oldest first."""
    query = select(table).where(table.c.contact_id == contact_id).order_by(table.c.id)
    return [_row(r) for r in conn.execute(query)]


def _row(row: Any) -> dict[str, Any]:
    return {key: _iso(value) for key, value in row._mapping.items()}


def export_contact(store: Store, email: str) -> dict[str, Any]:
    """Everything held on the person with this address, as JSON-ready data.

    The contact row, their enrollments and deliveries, provider events by delivery id,
    and whether the address is suppressed. A person we hold nothing on gets
    `"contact": null` and empty lists: that is the answer to their request, not an error.
    """
    address = _address(email)
    with store.connect() as conn:
        contact = conn.execute(select(contacts).where(contacts.c.email == address)).first()
        suppression = suppression_of(conn, store.address_hash(address))
        held_enrollments: list[dict[str, Any]] = []
        held_deliveries: list[dict[str, Any]] = []
        held_events: dict[str, list[dict[str, Any]]] = {}
        held_contact_events: list[dict[str, Any]] = []
        held_confirmations: list[dict[str, Any]] = []
        if contact is not None:
            # Double opt-in requests: asked, sent, confirmed or expired, per campaign.
            held_confirmations = _of_contact(conn, confirmations, contact.id)
            for request in held_confirmations:  # what a waiting sign-up would change
                request["held_changes"] = held_for_export(request.get("held_changes"))
            # What they did that a goal may name (booked): planning/conversions.py.
            held_contact_events = _of_contact(conn, contact_events, contact.id)
            held_enrollments = _of_contact(conn, enrollments, contact.id)
            held_deliveries = [
                _row(r)
                for r in conn.execute(
                    select(deliveries, enrollments.c.campaign)
                    .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                    .where(enrollments.c.contact_id == contact.id)
                    .order_by(deliveries.c.enrollment_id, deliveries.c.position)
                )
            ]
            for event in conn.execute(
                select(events)
                .where(events.c.delivery_id.in_([d["id"] for d in held_deliveries]))
                .order_by(events.c.id)
            ):
                held_events.setdefault(str(event.delivery_id), []).append(_row(event))
    held_contact = _row(contact) if contact is not None else None
    if held_contact and held_contact.get("attributes"):  # an import's other columns, as given
        held_contact["attributes"] = json.loads(held_contact["attributes"])
    if held_contact and held_contact.get("email"):
        # Stored with its domain as A-label (how it is matched and sent); shown as read.
        held_contact["email_display"] = display_address(held_contact["email"])
    return {
        "contact": held_contact,
        "suppressed": suppression is not None,
        "suppression": (
            {"reason": suppression[0], "created_at": _iso(suppression[1])} if suppression else None
        ),
        "enrollments": held_enrollments,
        "deliveries": held_deliveries,
        "events_by_delivery": held_events,
        "contact_events": held_contact_events,
        "confirmations": held_confirmations,
    }


@dataclass(frozen=True)
class ForgetReport:
    """What an erasure did. `contact_id` is None when no contact held the address."""

    contact_id: int | None
    cancelled: int
    newly_suppressed: bool
    scrubbed: bool  # SQLite: the log was emptied into the file; PostgreSQL: VACUUM ran


def forget_contact(
    store: Store, email: str, *, now: datetime, rewrite: bool = True
) -> ForgetReport:
    """Erase the person with this address, suppress the address, scrub the database.

    `rewrite=False` (a web request): on SQLite, zero and checkpoint but do not VACUUM.
    """
    address = _address(email)
    address_hash = store.address_hash(address)
    with erasing(store) as conn:
        with conn.begin():
            contact_id, cancelled, new = _erase(conn, address, address_hash, now=now)
        scrubbed = scrub(store, conn, vacuum=rewrite)
    log.info(
        "forget: contact %s erased, %d pending deliveries cancelled, address %s",
        contact_id if contact_id is not None else "(none held)",
        cancelled,
        "suppressed" if new else "already suppressed",
    )
    return ForgetReport(contact_id, cancelled, new, scrubbed)


def _erase(
    conn: Connection, address: str, address_hash: str, *, now: datetime
) -> tuple[int | None, int, bool]:
    new = add_suppression(conn, address_hash, "erased", now=now)
    contact_id = conn.scalar(select(contacts.c.id).where(contacts.c.email == address))
    if contact_id is None:  # nothing held; the suppression still keeps the address out
        return None, 0, new
    enrollment_ids = list(
        conn.scalars(select(enrollments.c.id).where(enrollments.c.contact_id == contact_id))
    )
    cancelled = cancel_pending(
        conn, enrollment_ids=enrollment_ids, reason="the contact was erased", now=now
    )
    if enrollment_ids:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.enrollment_id.in_(enrollment_ids))
            .values(error=None)
        )
        conn.execute(
            update(enrollments).where(enrollments.c.id.in_(enrollment_ids)).values(status=ERASED)
        )
    # Their events (a booking, its id in the clinic's system) go; a conversion stays
    # counted on the enrollment (converted_at) without them.
    conn.execute(delete(contact_events).where(contact_events.c.contact_id == contact_id))
    conn.execute(delete(confirmations).where(confirmations.c.contact_id == contact_id))
    clear_contacts(conn, [contact_id])
    return contact_id, cancelled, new
