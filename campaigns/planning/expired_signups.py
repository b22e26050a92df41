"""Erasing the addresses of double opt-in sign-ups that were never confirmed.

Double opt-in exists because a mistyped address belongs to a stranger, so keeping the
address of a sign-up nobody confirmed would keep a stranger's address forever. When the
worker's tick expires requests (planning/confirmations.expire), `forget_expired` looks
at each of their contacts:

- nothing else holds them (no enrollment in any campaign, no other request waiting or
  confirmed, never confirmed an address, no `contact_events`, and no newsletter
  membership from before the sign-up, i.e. tags on a contact that existed before the
  request and has not left the newsletter): the contact is erased as `contacts forget`
  erases (a tombstone with its id only, storage/erasure.py), but the address is NOT
  suppressed: the stranger never opted out, and a later genuine sign-up must work. The
  expired request stays, holding ids and times only, so `status` keeps counting it.
- something else holds them: the contact stays, and the expired request (which campaign
  they were asked about, and when) is deleted.

Either way the rows go with SQLite's `secure_delete` on and the write-ahead log is
checkpointed and truncated, so no byte of an erased address stays in the file or its
log. Each erasure is logged with the contact's id only, as `forget` logs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, exists, func, or_, select

from campaigns.storage.erasure import clear_contacts, erasing, scrub
from campaigns.storage.store import Store
from campaigns.storage.tables import confirmations, contact_events, contacts, enrollments

log = logging.getLogger("dripmail.privacy")

_MANY = bindparam("many", expanding=True)
CHUNK = 500  # contacts per transaction (SQLite's limit on bound values is far above)


@dataclass(frozen=True)
class Forgotten:
    """What became of the contacts of the requests that expired in one tick."""

    erased: int = 0  # nothing else held them: the address is gone
    kept: int = 0  # held for something else: only the expired requests went


def forget_expired(store: Store, contact_ids: Sequence[int], *, now: datetime) -> Forgotten:
    """Erase or trim the contacts whose requests expired at `now` (`expire`'s answer)."""
    ids = sorted(set(contact_ids))
    if not ids:
        return Forgotten()
    erased, kept = [], []
    with erasing(store) as conn:
        # A chunk per transaction: a big import's requests all expire in the same tick.
        for start in range(0, len(ids), CHUNK):
            with conn.begin():
                gone, held = _forget_chunk(conn, ids[start : start + CHUNK], now=now)
            erased += gone
            kept += held
        if erased or kept:
            # secure_delete zeroed the freed cells; the log still holds old page images.
            scrub(store, conn, vacuum=False)
    for contact_id in erased:
        log.info("expired sign-up: contact %d erased (never confirmed), not suppressed", contact_id)
    if kept:
        log.info("expired sign-ups: %d contacts kept for other reasons", len(kept))
    return Forgotten(len(erased), len(kept))


def _forget_chunk(
    conn: Connection, contact_ids: list[int], *, now: datetime
) -> tuple[list[int], list[int]]:
    """(erased, kept) of these contacts, in the caller's transaction."""
    # Still expired and unconfirmed: a sign-up since restarts the request (kept).
    expired = dict(
        conn.execute(
            select(confirmations.c.contact_id, func.min(confirmations.c.requested_at))
            .where(
                confirmations.c.contact_id.in_(_MANY),
                confirmations.c.expired_at == now,
                confirmations.c.confirmed_at.is_(None),
            )
            .group_by(confirmations.c.contact_id),
            {"many": contact_ids},
        ).all()
    )
    held = _held(conn, expired)
    erase = sorted(set(expired) - held)
    kept = sorted(held)
    if erase:
        clear_contacts(conn, erase)
    if kept:
        conn.execute(
            delete(confirmations).where(
                confirmations.c.contact_id.in_(_MANY),
                confirmations.c.expired_at == now,
                confirmations.c.confirmed_at.is_(None),
            ),
            {"many": kept},
        )
    return erase, kept


def _held(conn: Connection, requested: dict[int, datetime]) -> set[int]:
    """Which of these contacts something else holds (the module docstring's list).

    A contact already erased (no address) counts as held: there is nothing to erase."""
    if not requested:
        return set()
    c = contacts.c
    other = or_(
        c.email.is_(None),
        c.confirmed_at.is_not(None),
        exists().where(enrollments.c.contact_id == c.id),
        exists().where(contact_events.c.contact_id == c.id),
        exists().where(confirmations.c.contact_id == c.id, confirmations.c.expired_at.is_(None)),
    )
    rows = conn.execute(
        select(c.id, other, c.tags, c.newsletter_unsubscribed_at, c.created_at).where(
            c.id.in_(_MANY)
        ),
        {"many": list(requested)},
    ).all()
    held = set()
    for contact_id, has_other, tags, left_newsletter, created_at in rows:
        # Tags on a contact made before the sign-up: a newsletter membership of its own.
        member = bool(tags and tags.strip(";")) and left_newsletter is None
        if has_other or (member and created_at < requested[contact_id]):
            held.add(contact_id)
    return held
