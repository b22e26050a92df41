"""Staff suppressions: stop email to a person without erasing them (`dripmail suppress`).

A patient who phones, or a suppression list exported from another email service, adds
the address's keyed hash to `suppressions` (never the address) and cancels that
contact's pending emails in every campaign, in one transaction, as a bounce or a
one-click unsubscribe does. Removing a suppression needs a reason; it cancels nothing,
brings nothing back, and is recorded as an event (provider "dripmail", type
`suppression_removed`) holding the hash, the time and the reason.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, delete, select

from campaigns.compliance.suppressions import (
    DRIPMAIL_PROVIDER,
    insert_new,
    suppress_contacts,
    suppression_of,
)
from campaigns.errors import InputError
from campaigns.planning.contacts import normalise_email
from campaigns.storage.store import Store
from campaigns.storage.tables import events, suppressions

log = logging.getLogger("dripmail.suppress")

STAFF_REASON = "added by staff"
IMPORT_REASON = "imported list"
REMOVED = "suppression_removed"  # the event type of a removal
REASON_LIMIT = 32  # the suppressions.reason column
# Header cells that name the address column in exports (Mailchimp "Email Address",
# SendGrid "email", HubSpot "Email"), compared without case, spaces or punctuation.
EMAIL_HEADERS = frozenset({"email", "emailaddress", "e-mail", "e-mailaddress", "mail"})


def _reason(text: str | None, *, default: str | None = STAFF_REASON) -> str:
    """The reason as kept: spaces collapsed, at most REASON_LIMIT characters."""
    value = " ".join((text or "").split())
    if not value:
        if default is None:
            raise InputError("say why, like --reason 'patient asked again'", field="--reason")
        return default
    if len(value) > REASON_LIMIT:
        raise InputError(
            f"at most {REASON_LIMIT} characters (it is kept with the suppression), "
            f"like 'patient phoned'; this one has {len(value)}",
            field="--reason",
        )
    return value


def _address(email: str) -> str:
    try:
        return normalise_email(email)
    except ValueError as exc:
        raise InputError(str(exc), field="EMAIL") from None


@dataclass
class SuppressReport:
    """What adding suppressions did."""

    new: int = 0
    already: int = 0
    cancelled: int = 0  # pending emails cancelled
    unreadable: list[int] = field(default_factory=list)  # line numbers (import)


def suppress_addresses(
    store: Store, emails: Sequence[str], *, reason: str | None = None, now: datetime
) -> SuppressReport:
    """Suppress each address and cancel its pending emails, all in one transaction.

    Every address is checked before anything is written: one bad address changes nothing.
    """
    why = _reason(reason)
    addresses = [_address(email) for email in emails]
    report = SuppressReport()
    with store.begin() as conn:
        _suppress(conn, store, addresses, why, report, now=now)
    log.info(
        "suppress: %d new, %d already, %d pending emails cancelled",
        report.new,
        report.already,
        report.cancelled,
    )
    return report


def _suppress(
    conn: Connection,
    store: Store,
    addresses: Iterable[str],
    reason: str,
    report: SuppressReport,
    *,
    now: datetime,
) -> None:
    for address in addresses:
        new, cancelled = suppress_contacts(conn, store, address, reason, now=now)
        report.new += int(new)
        report.already += int(not new)
        report.cancelled += cancelled


def read_suppression_list(path: Path) -> tuple[list[tuple[int, str]], list[int]]:
    """Addresses of a suppression list, by line: ([(line, address)], [unreadable lines]).

    One address a line, or a CSV (comma, semicolon or tab; a UTF-8 BOM is fine) whose
    header has an email column, as Mailchimp, SendGrid and HubSpot export them. Blank
    lines are skipped; a line or row holding no valid address is unreadable.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError("no such file", source=path) from None
    except UnicodeDecodeError:
        raise InputError(
            "not UTF-8 text: export the list again as CSV UTF-8", source=path
        ) from None
    lines = text.splitlines()
    column = _email_column(lines[0]) if lines else None
    found: list[tuple[int, str]] = []
    unreadable: list[int] = []
    if column is None:
        # A list without a header: the address is the line, or its first cell.
        rows: Iterable[tuple[int, str]] = (
            (number, re.split(r"[,;\t]", line, maxsplit=1)[0])
            for number, line in enumerate(lines, start=1)
        )
    else:
        index, delimiter = column
        rows = (
            (number, cells[index] if index < len(cells) else "")
            for number, cells in _csv_rows(lines, delimiter)
        )
    for number, value in rows:
        if not lines[number - 1].strip():  # a blank line: no row at all
            continue
        try:
            found.append((number, normalise_email(value.strip().strip('"'))))
        except ValueError:
            unreadable.append(number)
    return found, unreadable


def _csv_rows(lines: list[str], delimiter: str) -> Iterable[tuple[int, list[str]]]:
    """Data rows after the header, by line number (one line a row in these exports)."""
    for number, line in enumerate(lines[1:], start=2):
        try:
            yield number, next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
        except csv.Error:
            yield number, []


def _email_column(header: str) -> tuple[int, str] | None:
    """(index, delimiter) of a CSV header's email column; None when it is no CSV header."""
    for delimiter in (",", ";", "\t"):
        if delimiter not in header:
            continue
        cells = next(csv.reader(io.StringIO(header), delimiter=delimiter), [])
        for index, cell in enumerate(cells):
            if re.sub(r"[^a-z-]", "", cell.lower()) in EMAIL_HEADERS:
                return index, delimiter
    if re.sub(r"[^a-z-]", "", header.lower()) in EMAIL_HEADERS:
        return 0, ","  # a one-column CSV: its header is just "email"
    return None


def import_suppressions(
    store: Store,
    path: Path,
    *,
    reason: str | None = None,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> SuppressReport:
    """Suppress every address of a list in one transaction; unreadable lines are reported."""
    why = _reason(reason, default=IMPORT_REASON)
    found, unreadable = read_suppression_list(path)
    report = SuppressReport(unreadable=unreadable)
    with store.begin() as conn:
        for done, (_line, address) in enumerate(found, start=1):
            _suppress(conn, store, [address], why, report, now=now)
            if progress is not None and (done % 100 == 0 or done == len(found)):
                progress(done, len(found))
    log.info(
        "suppress import: %d new, %d already, %d unreadable lines, %d pending emails cancelled",
        report.new,
        report.already,
        len(report.unreadable),
        report.cancelled,
    )
    return report


@dataclass(frozen=True)
class SuppressionState:
    """`suppress check`: whether the address is suppressed, since when and why; else the
    last removal of its suppression, if any."""

    suppressed: bool
    since: datetime | None = None
    reason: str | None = None
    removed_at: datetime | None = None
    removed_because: str | None = None


def _removal_key(address_hash: str, now: datetime, reason: str) -> str:
    # The event id holds the reason: the events table has no text column, and the id
    # is where an event says what made it unique.
    return f"dripmail:{REMOVED}:{address_hash}:{now.astimezone(UTC).isoformat()}|{reason}"


def check_suppression(store: Store, email: str) -> SuppressionState:
    """Whether an address is suppressed (by its keyed hash), with when and why."""
    address_hash = store.address_hash(_address(email))
    with store.connect() as conn:
        found = suppression_of(conn, address_hash)
        if found is not None:
            return SuppressionState(True, since=found[1], reason=found[0])
        removal = conn.execute(
            select(events.c.provider_event_id, events.c.occurred_at)
            .where(
                events.c.provider == DRIPMAIL_PROVIDER,
                events.c.type == REMOVED,
                events.c.provider_event_id.like(f"dripmail:{REMOVED}:{address_hash}:%"),
            )
            .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        ).first()
    if removal is None:
        return SuppressionState(False)
    because = removal.provider_event_id.partition("|")[2] or None
    return SuppressionState(False, removed_at=removal.occurred_at, removed_because=because)


def remove_suppression(store: Store, email: str, *, reason: str | None, now: datetime) -> bool:
    """Lift an address's suppression, recording why; False when it was not suppressed.

    Nothing is cancelled or brought back: emails cancelled when it was added stay
    cancelled (`dripmail enroll --restart` plans the sequence again).
    """
    why = _reason(reason, default=None)
    address_hash = store.address_hash(_address(email))
    with store.begin() as conn:
        removed = (
            conn.execute(
                delete(suppressions).where(suppressions.c.address_hash == address_hash)
            ).rowcount
            > 0
        )
        if removed:
            insert_new(
                conn,
                events,
                {
                    "provider": DRIPMAIL_PROVIDER,
                    "provider_event_id": _removal_key(address_hash, now, why),
                    "delivery_id": None,
                    "type": REMOVED,
                    "occurred_at": now,
                    "created_at": now,
                },
            )
    log.info("suppress remove: %s", "removed" if removed else "was not suppressed")
    return removed
