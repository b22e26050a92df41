"""Sign-ups: validate contacts, enroll them, and plan one delivery per step.

Single sign-ups and CSV imports share one bulk path, so 100,000 rows cost a few
queries per chunk rather than several per row.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from sqlalchemy import Connection, insert, select

from . import schedule
from .errors import InputError
from .publish import open_campaign, publish
from .spec import Campaign
from .store import DeliveryStatus, Store, contacts, deliveries, enrollments, suppressions

CSV_COLUMNS = ("email", "first_name", "timezone", "signed_up_at", "consent")
CHUNK = 1000
_ROW_ERROR = "__error__"


@dataclass(frozen=True)
class Signup:
    """A sign-up as given: free text, to be validated."""

    email: str
    first_name: str | None = None
    timezone: str | None = None
    signed_up_at: str | datetime | None = None
    consent: str | None = None


@dataclass(frozen=True)
class Contact:
    """A validated sign-up: normalised address, known zone, UTC sign-up time."""

    email: str
    first_name: str | None
    timezone: str
    signed_up_at: datetime
    consent: str


@dataclass
class EnrollReport:
    """What an enrollment or import did; `rejected` holds (line, message) pairs."""

    enrolled: int = 0
    already: int = 0
    suppressed: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    enrollment_ids: list[int] = field(default_factory=list)
    campaign: str = ""
    steps: int = 0


# Plain ASCII addresses (nearly all of them) are checked here; anything else goes to
# email-validator, which is exact but costs ~100 us an address.
_PLAIN_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,64}(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,64})*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def normalise_email(value: str) -> str:
    """The address as stored and compared: validated (no DNS), lower-cased."""
    candidate = value.strip().lower()
    if (
        len(candidate) <= 254
        and _PLAIN_EMAIL.fullmatch(candidate)
        and len(candidate.partition("@")[0]) <= 64
        and candidate.rpartition(".")[2] not in _SPECIAL_USE
    ):
        return candidate
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        # The address itself stays out of the message: import reports go to logs and terminals.
        raise ValueError(f"not a valid email address: {exc}") from None


def validate(signup: Signup, campaign: Campaign, *, now: datetime) -> Contact:
    """One sign-up checked against the campaign; ValueError names the field."""
    try:
        email = normalise_email(signup.email or "")
    except ValueError as exc:
        raise ValueError(f"email: {exc}") from None
    zone_name = (signup.timezone or "").strip() or campaign.spec.timezone
    try:
        tz = schedule.zone(zone_name)
    except ValueError as exc:
        raise ValueError(f"timezone: {exc}") from None
    if isinstance(signup.signed_up_at, datetime):
        signed_up_at = schedule.to_utc(signup.signed_up_at)
    elif signup.signed_up_at and str(signup.signed_up_at).strip():
        try:
            signed_up_at = schedule.parse_instant(str(signup.signed_up_at), tz)
        except ValueError:
            raise ValueError(
                f"signed_up_at: {signup.signed_up_at!r} is not an ISO date-time "
                "(like 2026-03-08T14:30 or 2026-03-08T14:30-05:00)"
            ) from None
    else:
        signed_up_at = now
    first_name = " ".join((signup.first_name or "").split()) or None
    if first_name and len(first_name) > 200:
        raise ValueError("first_name: longer than 200 characters")
    consent = " ".join((signup.consent or "").split())
    if not consent:
        raise ValueError("consent: required (where and how this person agreed to be emailed)")
    return Contact(email, first_name, zone_name, signed_up_at, consent)


def plan(campaign: Campaign, signed_up_at: datetime, timezone: str) -> list[datetime]:
    """The due time of every step for a contact who signed up at `signed_up_at`."""
    return schedule.plan_due_times(
        signed_up_at,
        [step.delay for step in campaign.steps],
        campaign.window,
        schedule.zone(timezone),
    )


def enroll(store: Store, campaign: Campaign, signup: Signup, *, now: datetime) -> EnrollReport:
    """Enroll one contact (publishing the campaign); bad input raises InputError."""
    try:
        contact = validate(signup, campaign, now=now)
    except ValueError as exc:
        field_name, _, message = str(exc).partition(": ")
        raise InputError(message, field=field_name) from None
    with store.begin() as conn:
        publish(conn, campaign, now=now)
        report = _enroll_chunk(conn, store, campaign, [contact], now=now)
    report.campaign, report.steps = campaign.name, len(campaign.steps)
    return report


def enroll_ref(store: Store, ref: str, signup: Signup, *, now: datetime) -> EnrollReport:
    """Enroll into a campaign folder or a published campaign named `ref`."""
    return enroll(store, open_campaign(store, ref), signup, now=now)


def import_ref(store: Store, ref: str, path: Path, **options) -> EnrollReport:
    """Import a CSV into a campaign folder or a published campaign named `ref`."""
    return import_csv(store, open_campaign(store, ref), path, **options)


def import_csv(
    store: Store,
    campaign: Campaign,
    path: Path,
    *,
    now: datetime,
    consent: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EnrollReport:
    """Import a CSV of sign-ups. Bad rows are reported by line and left out; the rest go in.

    An unusable file (not UTF-8, no header, missing columns) raises InputError and
    imports nothing.
    """
    rows = read_csv(path)
    report = EnrollReport()
    valid: list[tuple[int, Contact]] = []
    seen: dict[str, int] = {}
    for line, record in rows:
        if _ROW_ERROR in record:
            report.rejected.append((line, record[_ROW_ERROR]))
            continue
        signup = Signup(
            email=record.get("email") or "",
            first_name=record.get("first_name"),
            timezone=record.get("timezone"),
            signed_up_at=record.get("signed_up_at"),
            consent=(record.get("consent") or "").strip() or consent,
        )
        try:
            contact = validate(signup, campaign, now=now)
        except ValueError as exc:
            report.rejected.append((line, str(exc)))
            continue
        if contact.email in seen:
            report.rejected.append((line, f"email: the same address as line {seen[contact.email]}"))
            continue
        seen[contact.email] = line
        valid.append((line, contact))
    with store.begin() as conn:
        publish(conn, campaign, now=now)
    done = 0
    for start in range(0, len(valid), CHUNK):
        chunk = [contact for _, contact in valid[start : start + CHUNK]]
        with store.begin() as conn:
            part = _enroll_chunk(conn, store, campaign, chunk, now=now)
        report.enrolled += part.enrolled
        report.already += part.already
        report.suppressed += part.suppressed
        done += len(chunk)
        if progress:
            progress(done, len(valid))
    report.rejected.sort()
    report.campaign, report.steps = campaign.name, len(campaign.steps)
    return report


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
        if not extra and not any((value or "").strip() for value in record.values()):
            continue
        record = {k: (v or "") for k, v in record.items()}
        if extra:
            record[_ROW_ERROR] = f"{len(header) + len(extra)} fields, the header has {len(header)}"
        rows.append((reader.line_num, record))
    return rows


def _enroll_chunk(
    conn: Connection, store: Store, campaign: Campaign, batch: Sequence[Contact], *, now: datetime
) -> EnrollReport:
    report = EnrollReport()
    hashes = {contact.email: store.address_hash(contact.email) for contact in batch}
    suppressed = set(
        conn.scalars(
            select(suppressions.c.address_hash).where(
                suppressions.c.address_hash.in_(list(hashes.values()))
            )
        )
    )
    batch = [c for c in batch if hashes[c.email] not in suppressed]
    report.suppressed = len(hashes) - len(batch)
    ids = _contact_ids(conn, [c.email for c in batch])
    new = [c for c in batch if c.email not in ids]
    if new:
        conn.execute(
            insert(contacts),
            [
                {
                    "email": c.email,
                    "first_name": c.first_name,
                    "timezone": c.timezone,
                    "consent_source": c.consent,
                    "consent_at": now,
                    "created_at": now,
                }
                for c in new
            ],
        )
        ids.update(_contact_ids(conn, [c.email for c in new]))
    enrolled = set(
        conn.scalars(
            select(enrollments.c.contact_id).where(
                enrollments.c.campaign == campaign.name,
                enrollments.c.contact_id.in_(list(ids.values())),
            )
        )
    )
    fresh = [c for c in batch if ids[c.email] not in enrolled]
    report.already = len(batch) - len(fresh)
    if not fresh:
        return report
    conn.execute(
        insert(enrollments),
        [
            {
                "contact_id": ids[c.email],
                "campaign": campaign.name,
                "signed_up_at": c.signed_up_at,
                "status": "active",
                "created_at": now,
            }
            for c in fresh
        ],
    )
    enrollment_ids = dict(
        conn.execute(
            select(enrollments.c.contact_id, enrollments.c.id).where(
                enrollments.c.campaign == campaign.name,
                enrollments.c.contact_id.in_([ids[c.email] for c in fresh]),
            )
        ).all()
    )
    rows = []
    for contact in fresh:
        enrollment_id = enrollment_ids[ids[contact.email]]
        report.enrollment_ids.append(enrollment_id)
        for step, due in zip(
            campaign.steps, plan(campaign, contact.signed_up_at, contact.timezone), strict=True
        ):
            rows.append(
                {
                    "enrollment_id": enrollment_id,
                    "step_key": step.key,
                    "position": step.position,
                    "due_at": due,
                    "status": DeliveryStatus.SCHEDULED,
                    "attempts": 0,
                    "updated_at": now,
                }
            )
    conn.execute(insert(deliveries), rows)
    report.enrolled = len(fresh)
    return report


def _contact_ids(conn: Connection, emails: Iterable[str]) -> dict[str, int]:
    emails = list(emails)
    if not emails:
        return {}
    return dict(
        conn.execute(
            select(contacts.c.email, contacts.c.id).where(contacts.c.email.in_(emails))
        ).all()
    )
