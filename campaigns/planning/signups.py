"""Sign-ups as given (a command, the sign-up API, a CSV row), validated into Contacts.

A CSV file is read whole before anything is imported: an unusable file (not UTF-8, no
header, unknown columns) is refused, and a bad row is marked with its line number.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from campaigns.authoring.spec import Campaign
from campaigns.errors import InputError
from campaigns.planning import schedule
from campaigns.planning.contacts import normalise_email, parse_tags

CSV_COLUMNS = ("email", "first_name", "timezone", "signed_up_at", "consent", "tags")
# The key a row carries when it is broken: what is wrong with it, for the report.
_ROW_ERROR = "__error__"


@dataclass(frozen=True)
class Signup:
    """A sign-up as given: free text, to be validated."""

    email: str
    first_name: str | None = None
    timezone: str | None = None
    signed_up_at: str | datetime | None = None
    consent: str | None = None
    tags: str | None = None  # `a;b` (for newsletters)


@dataclass(frozen=True)
class Contact:
    """A validated sign-up: normalised address, known zone, UTC sign-up time."""

    email: str
    first_name: str | None
    timezone: str
    signed_up_at: datetime
    consent: str
    tags: tuple[str, ...] = ()


def validate(signup: Signup, campaign: Campaign, *, now: datetime) -> Contact:
    """One sign-up checked against the campaign; InputError names the field."""
    try:
        email = normalise_email(signup.email or "")
    except ValueError as exc:
        raise InputError(str(exc), field="email") from None
    zone_name = (signup.timezone or "").strip() or campaign.spec.timezone
    try:
        tz = schedule.zone(zone_name)
    except ValueError as exc:
        raise InputError(str(exc), field="timezone") from None
    if isinstance(signup.signed_up_at, datetime):
        signed_up_at = schedule.to_utc(signup.signed_up_at)
    elif signup.signed_up_at and str(signup.signed_up_at).strip():
        try:
            signed_up_at = schedule.parse_instant(str(signup.signed_up_at), tz)
        except ValueError:
            raise InputError(
                f"{signup.signed_up_at!r} is not an ISO date-time "
                "(like 2026-03-08T14:30 or 2026-03-08T14:30-05:00)",
                field="signed_up_at",
            ) from None
    else:
        signed_up_at = now
    first_name = " ".join((signup.first_name or "").split()) or None
    if first_name and len(first_name) > 200:
        raise InputError("longer than 200 characters", field="first_name")
    consent = " ".join((signup.consent or "").split())
    if not consent:
        raise InputError(
            "required (where and how this person agreed to be emailed)", field="consent"
        )
    try:
        tags = tuple(parse_tags(signup.tags)) if signup.tags else ()
    except ValueError as exc:
        raise InputError(str(exc), field="tags") from None
    return Contact(email, first_name, zone_name, signed_up_at, consent, tags)


def read_signups(
    path: Path, campaign: Campaign, *, now: datetime, consent: str | None = None
) -> tuple[list[tuple[int, Contact]], list[tuple[int, str]]]:
    """A CSV's valid contacts and its rejected rows, by line; a repeated address is rejected.

    `consent` is for rows that leave their consent column empty.
    """
    rows = read_csv(path)
    rejected: list[tuple[int, str]] = []
    valid: list[tuple[int, Contact]] = []
    seen: dict[str, int] = {}
    for line, record in rows:
        if _ROW_ERROR in record:
            rejected.append((line, record[_ROW_ERROR]))
            continue
        signup = Signup(
            email=record.get("email") or "",
            first_name=record.get("first_name"),
            timezone=record.get("timezone"),
            signed_up_at=record.get("signed_up_at"),
            consent=(record.get("consent") or "").strip() or consent,
            tags=record.get("tags"),
        )
        try:
            contact = validate(signup, campaign, now=now)
        except InputError as exc:  # "field: message", the line's reason
            rejected.append((line, str(exc)))
            continue
        if contact.email in seen:
            rejected.append((line, f"email: the same address as line {seen[contact.email]}"))
            continue
        seen[contact.email] = line
        valid.append((line, contact))
    return valid, rejected


def read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; InputError when the file itself is unusable."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(exc.strerror or "cannot read", source=path) from None
    if b"\0" in raw:
        raise InputError("not a CSV file (binary content)", source=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", source=path) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    if not header:
        raise InputError("empty file: expected a header row " + ",".join(CSV_COLUMNS), source=path)
    if "email" not in header:
        raise InputError(
            f"no email column in the header (expected {','.join(CSV_COLUMNS)})", source=path, line=1
        )
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        raise InputError(
            f"unknown column {unknown[0]!r} (expected {','.join(CSV_COLUMNS)})", source=path, line=1
        )
    reader.fieldnames = header
    rows = []
    for record in reader:
        extra = record.pop(None, None)  # a row with more fields than the header
        if not extra and not "".join(filter(None, record.values())).strip():
            continue  # a blank line, or only commas
        record = {k: (v or "") for k, v in record.items()}
        if extra:
            record[_ROW_ERROR] = f"{len(header) + len(extra)} fields, the header has {len(header)}"
        rows.append((reader.line_num, record))
    return rows
