"""`dripmail mailbox read`: bounces, complaints and emailed unsubscribes from a mailbox.

Sources: a Maildir (Postfix, Exim, Dovecot's `~/Maildir`), single .eml files, or an
IMAP mailbox (campaigns/compliance/imap.py), once or `watch`ed with IDLE. Each mail is
read by campaigns/compliance/inbound.py; what a signature of ours verifies is applied:

- bounces and complaints become ProviderEvents (provider "mailbox") through
  `apply_provider_events`, as every provider's webhook does: a hard bounce or a
  complaint suppresses the address across campaigns and cancels its pending emails;
  a soft bounce or a delay is recorded and changes nothing else;
- an unsubscribe mail is carried out by the very function the one-click POST uses
  (compliance/suppressions.py `unsubscribe`, scope all).

Reading twice changes nothing more: event ids come from the mail's Message-ID (or its
bytes), and an unsubscribe counts once per link. A mail acted on is marked read: in a
Maildir it moves to cur/ with the S (seen) flag, over IMAP it is flagged \\Seen. A
mail that is not ours, or whose signature does not verify, is left as it was, unread,
for a person. Files named on the command line are read, never moved.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path

from sqlalchemy import select

from campaigns.compliance.event_model import EventKind, ProviderEvent
from campaigns.compliance.events import apply_provider_events
from campaigns.compliance.imap import IDLE_SECONDS, MAX_MAIL_BYTES, ImapMailbox, parse_imap_url
from campaigns.compliance.inbound import Keys, MailKind, Reading, read_mail
from campaigns.compliance.suppressions import Scope, unsubscribe
from campaigns.errors import InputError
from campaigns.settings import Settings
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts, deliveries, enrollments

log = logging.getLogger("dripmail.mailbox")

PROVIDER = "mailbox"
SEEN = "S"  # Maildir's "seen" flag (the IMAP \Seen), in the `:2,FLAGS` info


@dataclass
class MailboxReport:
    """What one reading did, in counts; `left` names each mail left for a person."""

    read: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # event kinds recorded
    unsubscribed: int = 0
    duplicates: int = 0  # already acted on in an earlier reading
    suppressed: int = 0
    cancelled: int = 0
    left: list[tuple[str, str]] = field(default_factory=list)  # (where, why)

    def add(self, other: MailboxReport) -> None:
        self.read += other.read
        self.kinds.update(other.kinds)
        self.unsubscribed += other.unsubscribed
        self.duplicates += other.duplicates
        self.suppressed += other.suppressed
        self.cancelled += other.cancelled
        self.left.extend(other.left)


@dataclass(frozen=True)
class Mail:
    """One mail as a source gives it: where (for the report), its bytes, how to mark it."""

    where: str
    raw: bytes | None  # None: too big to read
    mark_read: Callable[[], None]


# ----------------------------------------------------------------------------- applying


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _occurred_at(message: Message) -> datetime | None:
    try:
        when = parsedate_to_datetime(str(message.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _addresses(store: Store, reading: Reading) -> dict[tuple[int | None, int | None], str]:
    """(delivery id, contact id) -> the contact's stored address, for the suppression."""
    wanted = {(f.delivery_id, f.contact_id) for f in reading.findings}
    found: dict[tuple[int | None, int | None], str] = {}
    with store.connect() as conn:
        for delivery_id, contact_id in wanted:
            query = select(contacts.c.email)
            if delivery_id is not None:
                query = (
                    query.join(enrollments, enrollments.c.contact_id == contacts.c.id)
                    .join(deliveries, deliveries.c.enrollment_id == enrollments.c.id)
                    .where(deliveries.c.id == delivery_id)
                )
                if contact_id is not None:
                    query = query.where(contacts.c.id == contact_id)
            elif contact_id is not None:
                query = query.where(contacts.c.id == contact_id)
            else:
                continue
            address = conn.scalar(query)
            if address:  # an erased contact has none, and is suppressed already
                found[(delivery_id, contact_id)] = address
    return found


def apply_mail(
    store: Store, raw: bytes, keys: Keys, *, now: datetime
) -> tuple[Reading, MailboxReport]:
    """Read one mail and apply what it verifiably says; (the reading, what it did)."""
    report = MailboxReport(read=1)
    try:
        message = _parse(raw)
        reading = read_mail(message, raw, keys)
    except Exception as exc:  # a malformed mail is a person's to look at, not a crash
        log.warning("a mail could not be read (%s)", type(exc).__name__)
        return Reading(MailKind.OTHER, why="could not be parsed"), report
    if reading.claim is not None:
        done = unsubscribe(store, reading.claim, Scope.ALL, now=now)
        report.kinds[EventKind.UNSUBSCRIBED] += 1
        report.unsubscribed += int(done.changed)
        report.duplicates += int(not done.changed)
        report.cancelled += done.cancelled
    elif reading.findings:
        addresses = _addresses(store, reading)
        occurred = _occurred_at(message)
        events = [
            ProviderEvent(
                provider=PROVIDER,
                event_id=f.event_id,
                kind=f.kind,
                occurred_at=occurred,
                delivery_id=f.delivery_id,
                address=addresses.get((f.delivery_id, f.contact_id)),
                reason=f.reason,
            )
            for f in reading.findings
        ]
        applied = apply_provider_events(store, events, now=now)
        report.kinds.update(str(f.kind) for f in reading.findings)
        report.duplicates += applied.duplicates
        report.suppressed += applied.suppressed
        report.cancelled += applied.cancelled
    return reading, report


def read_mails(store: Store, mails: Iterator[Mail], *, now: datetime) -> MailboxReport:
    """Apply every mail; mark read those a signature of ours verified."""
    keys = Keys.of(store.secret_key())
    total = MailboxReport()
    for mail in mails:
        if mail.raw is None:
            total.read += 1
            total.left.append((mail.where, f"over {MAX_MAIL_BYTES // 2**20} MiB: not read"))
            continue
        reading, report = apply_mail(store, mail.raw, keys, now=now)
        total.add(report)
        if reading.verified:
            mail.mark_read()
        else:
            total.left.append((mail.where, f"{reading.what}: {reading.why}"))
    _log(total)
    return total


def _log(report: MailboxReport) -> None:
    log.info(
        "mailbox: %d mails read, %s; %d left for a person; %d addresses suppressed",
        report.read,
        ", ".join(f"{n} {kind}" for kind, n in sorted(report.kinds.items())) or "nothing to act on",
        len(report.left),
        report.suppressed,
    )


# ------------------------------------------------------------------------------ sources


def _is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def _flags(name: str) -> str:
    return name.partition(":2,")[2] if ":2," in name else ""


def maildir_mails(path: Path) -> Iterator[Mail]:
    """Mails in new/ and unseen ones in cur/ (Maildir spec: cr.yp.to/proto/maildir.html)."""
    for sub in ("new", "cur"):
        for entry in sorted((path / sub).iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if sub == "cur" and SEEN in _flags(entry.name):
                continue
            yield Mail(str(entry), _read_capped(entry), _maildir_marker(path, entry))


def _maildir_marker(maildir: Path, entry: Path) -> Callable[[], None]:
    def mark() -> None:
        base, _, flags = entry.name.partition(":2,")
        # Flags in ASCII order, as the Maildir spec asks.
        target = maildir / "cur" / f"{base}:2,{''.join(sorted(set(flags + SEEN)))}"
        os.replace(entry, target)

    return mark


def _read_capped(path: Path) -> bytes | None:
    if path.stat().st_size > MAX_MAIL_BYTES:
        return None
    return path.read_bytes()


def _file_mails(paths: Sequence[Path]) -> Iterator[Mail]:
    for path in paths:
        if _is_maildir(path):
            yield from maildir_mails(path)
        else:
            yield Mail(str(path), _read_capped(path), lambda: None)


def check_paths(paths: Sequence[Path]) -> None:
    """Every path a Maildir or a readable file, before anything is read."""
    for path in paths:
        if path.is_dir() and not _is_maildir(path):
            raise InputError("a folder that is not a Maildir (no cur/, new/ and tmp/)", source=path)
        if not path.is_dir() and not path.is_file():
            raise InputError("no such Maildir or file", source=path)


def imap_mails(mailbox: ImapMailbox) -> Iterator[Mail]:
    """Every unseen mail of the IMAP mailbox; marking one read flags it \\Seen."""
    for uid in mailbox.unseen():
        yield Mail(
            f"{mailbox.address} UID {uid}",
            mailbox.fetch(uid),
            lambda uid=uid: mailbox.mark_seen(uid),
        )


# --------------------------------------------------------------------------------- entry


@dataclass
class Watch:
    """Stops `read_mailbox(watch=...)` from another thread, and counts the times it has
    started waiting in IDLE (a test waits on that count, never on the clock)."""

    idles: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pair: tuple[socket.socket, socket.socket] = field(default_factory=socket.socketpair)

    @property
    def wake(self) -> socket.socket:
        """Readable once `stop` is called: ends the IDLE wait at once."""
        return self._pair[0]

    def idling(self) -> None:
        """Called each time the server has accepted an IDLE."""
        with self._changed:
            self.idles += 1
            self._changed.notify_all()

    def wait_idle(self, count: int, timeout: float) -> bool:
        """Wait until the watch has gone idle `count` times (at most `timeout` seconds)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.idles >= count, timeout)

    def stop(self) -> None:
        self._stop.set()
        self._pair[1].send(b"x")

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` unless stopped; whether it was stopped."""
        return self._stop.wait(seconds)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()


def read_mailbox(
    store: Store,
    paths: Sequence[Path] = (),
    *,
    imap: str | None = None,
    watch: Watch | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    idle_seconds: float = IDLE_SECONDS,
    settings: Settings | None = None,
) -> MailboxReport:
    """Read Maildirs and files, and the `imap` mailbox; with `watch`, keep reading the
    IMAP mailbox as mail arrives (IDLE) until `watch.stop()` or Ctrl-C."""
    if watch is not None and imap is None:
        raise InputError("--watch keeps reading an IMAP mailbox: give --imap URL")
    if not paths and imap is None:
        raise InputError("name a Maildir or .eml files, or --imap URL")
    check_paths(paths)
    address = parse_imap_url(imap) if imap is not None else None
    report = read_mails(store, _file_mails(paths), now=clock())
    if address is None:
        return report
    password = (settings or store.settings).imap_password
    secret = password.get_secret_value() if password else None
    mailbox = ImapMailbox(address, secret)
    try:
        report.add(read_mails(store, imap_mails(mailbox), now=clock()))
        backoff = 1.0
        while watch is not None and not watch.stopped:
            try:
                mailbox.idle(idle_seconds, watch.wake, on_waiting=watch.idling)
                if watch.stopped:
                    break
                # New mail, or IDLE's time is up: a fresh look either way (RFC 2177).
                report.add(read_mails(store, imap_mails(mailbox), now=clock()))
                backoff = 1.0
            except (imaplib.IMAP4.abort, OSError) as exc:
                # A dropped connection: reconnect after a capped back-off, unless stopped.
                log.warning("IMAP connection lost (%s); reconnecting", type(exc).__name__)
                mailbox.close()
                if watch.wait(backoff):
                    break
                backoff = min(backoff * 2, 60.0)
                mailbox = ImapMailbox(address, secret)
    finally:
        mailbox.close()
    return report
