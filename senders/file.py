"""The local default: one .eml per message in an outbox folder, plus an index.

A crash (SIGKILL, a power cut) never leaves half an email: each .eml is written under
a temporary name in the same folder, flushed to disk, then renamed into place
(os.replace: atomic within one filesystem, POSIX rename(2)), so a file either exists
whole or not at all. That makes the outbox its own record of what went: `settle`
tells a stopped run's rows apart by whether their file exists, and `index.csv` is
repaired from the .eml files the first time a sender uses the folder (rows missing
added, a torn last line dropped, duplicates removed). Workers sharing one outbox
take turns at the index through a lock file.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

from campaigns import csv_cells
from senders.base import Message, Outcome, Sender, SendResult
from senders.mime import to_bytes

try:  # POSIX; elsewhere one worker per outbox is assumed
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("dripmail.outbox")

INDEX = "index.csv"
INDEX_HEADER = ("sent_at", "to", "subject", "file", "delivery_id")
LOCK = ".index.lock"
TEMPORARY = ".tmp"  # ".<name>.<pid>-<random>.tmp": hidden, and never read as an email
# A delivery's file: its hand-off time (UTC) and its delivery id; test emails say so.
_FILE = re.compile(r"^(?P<when>\d{8}T\d{6}Z)-(?P<test>test-)?d(?P<id>[^/]+)\.eml$")


class FileSender(Sender):
    """Writes RFC 5322 files; nothing leaves the machine."""

    name = "file"
    batch_limit = 1

    def __init__(self, outbox: Path | str = "outbox") -> None:
        self.outbox = Path(outbox)
        self._repaired = False  # the index checked against the files, once per sender

    def build(self, message: Message) -> Message:
        """The message with its file's bytes: a message that cannot be built fails alone."""
        # A file takes UTF-8 headers (RFC 6532), so an address with a non-ASCII local
        # part is written as it is, as SMTPUTF8 would carry it.
        data = to_bytes(message, linesep="\n", utf8=True)
        # The file's bytes are all `send` needs: a hand-off holds up to 500 of these, so
        # the html and text they were made from are not kept twice.
        return replace(message, prepared=data, html="", text="")

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        self.outbox.mkdir(parents=True, exist_ok=True)
        self._repair()
        return [self._write(message) for message in messages]

    def settle(self, delivery_ids: Sequence[str]) -> list[SendResult]:
        """A delivery whose file exists went; one whose file does not never went."""
        if not delivery_ids:
            return []
        files: dict[str, str] = {}
        leftovers: dict[str, list[Path]] = {}
        if self.outbox.is_dir():
            self._repair()
            for entry in os.scandir(self.outbox):
                found = _FILE.match(entry.name)
                if found and not found["test"]:
                    files[found["id"]] = entry.name
                elif entry.name.startswith(".") and entry.name.endswith(TEMPORARY):
                    leftovers.setdefault(_temporary_id(entry.name), []).append(Path(entry.path))
        results = []
        for delivery_id in delivery_ids:
            # The writer of a temporary file of a delivery being settled has stopped.
            for path in leftovers.get(delivery_id, ()):
                path.unlink(missing_ok=True)
            if delivery_id in files:
                results.append(
                    SendResult(delivery_id, Outcome.SENT, provider_id=files[delivery_id])
                )
            else:
                error = "the run stopped before its file was written; it goes again"
                results.append(SendResult(delivery_id, Outcome.TRANSIENT, error=error))
        return results

    def close(self) -> None:
        pass

    # -- one file ------------------------------------------------------------------

    def _write(self, message: Message) -> SendResult:
        when = (message.date or datetime.now(UTC)).astimezone(UTC)
        prefix = "test-" if message.is_test else ""
        name = f"{when:%Y%m%dT%H%M%SZ}-{prefix}d{message.delivery_id}.eml"
        try:
            data = message.prepared or to_bytes(message, linesep="\n", utf8=True)
        except Exception as exc:  # this message's own data: it fails alone
            reason = f"could not build it: {type(exc).__name__}: {exc}"
            return SendResult(message.delivery_id, Outcome.PERMANENT, error=reason)
        temporary = self.outbox / f".{name}.{os.getpid()}-{secrets.token_hex(4)}{TEMPORARY}"
        try:
            with temporary.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # on disk before the name says it is complete
            os.replace(temporary, self.outbox / name)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            return SendResult(message.delivery_id, Outcome.TRANSIENT, error=f"outbox: {exc}")
        row = (when.isoformat(), message.to_address, message.subject, name, message.delivery_id)
        try:
            with self._locked():
                _append(self.outbox / INDEX, [row])
        except OSError:
            # The email is written, so it went; the next repair adds its index row.
            log.exception("outbox: could not add %s to the index", name)
            self._repaired = False
        return SendResult(message.delivery_id, Outcome.SENT, provider_id=name)

    # -- the index -----------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Workers sharing the outbox take turns at the index."""
        if fcntl is None:
            yield
            return
        with (self.outbox / LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _repair(self) -> None:
        """Make index.csv list every .eml of the folder once (after a crash, say)."""
        if self._repaired:
            return
        try:
            with self._locked():
                repair_index(self.outbox)
        except (OSError, ValueError):  # the emails still go; the next sender tries again
            log.exception("outbox: could not repair %s", INDEX)
            return
        self._repaired = True


def repair_index(outbox: Path) -> int:
    """Make `outbox`/index.csv list every .eml in it exactly once; returns rows added.

    A torn last line (a writer stopped mid-line) and rows repeated are dropped; a file
    with no row gets one, read from its own headers. Call it under the index lock.
    """
    index = outbox / INDEX
    raw = index.read_bytes() if index.exists() else b""
    complete = raw[: raw.rfind(b"\n") + 1]  # a line counts once its newline is written
    rows = list(csv.reader(io.StringIO(complete.decode("utf-8", errors="replace"))))
    kept, listed = [], set()
    for row in rows[1:] if rows and tuple(rows[0]) == INDEX_HEADER else rows:
        if len(row) == len(INDEX_HEADER) and row[3] not in listed:
            listed.add(row[3])
            kept.append(row)
    missing = sorted(
        entry.name
        for entry in os.scandir(outbox)
        if _FILE.match(entry.name) and entry.name not in listed
    )
    added = [_row_of(outbox / name) for name in missing]
    header_ok = not rows or tuple(rows[0]) == INDEX_HEADER
    if complete == raw and header_ok and len(kept) == max(len(rows) - 1, 0):
        if added:  # the index is sound: only rows to add
            _append(index, added)
    else:  # a torn line, a repeated row or no header: rewrite it whole, atomically
        temporary = outbox / f".{INDEX}.{os.getpid()}-{secrets.token_hex(4)}{TEMPORARY}"
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            csv_cells.writer(handle).writerows([INDEX_HEADER, *kept, *added])
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, index)
    for entry in os.scandir(outbox):  # another repair's, stopped midway (we hold the lock)
        if entry.name.startswith(f".{INDEX}.") and entry.name.endswith(TEMPORARY):
            Path(entry.path).unlink(missing_ok=True)
    if added:
        log.warning("outbox: %d emails were missing from %s; added", len(added), INDEX)
    return len(added)


def _append(index: Path, rows: list[Sequence[str]]) -> None:
    """Whole lines, one write, flushed: a crash leaves at most a torn last line."""
    text = io.StringIO()
    writer = csv_cells.writer(text)  # a subject may start with `=`
    if not index.exists() or index.stat().st_size == 0:
        writer.writerow(INDEX_HEADER)
    writer.writerows(rows)
    with index.open("a", newline="", encoding="utf-8") as handle:
        handle.write(text.getvalue())
        handle.flush()


def _row_of(path: Path) -> tuple[str, str, str, str, str]:
    """An index row read back from an .eml's own headers and name."""
    found = _FILE.match(path.name)
    assert found is not None
    when = datetime.strptime(found["when"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    with path.open("rb") as handle:
        headers = BytesHeaderParser(policy=policy.default).parse(handle)
    try:
        to = headers["To"].addresses if headers["To"] is not None else ()
        address = to[0].addr_spec if to else ""
    except (IndexError, ValueError, AttributeError):  # a header the parser cannot take apart
        address = str(headers["To"] or "")
    return when.isoformat(), address, str(headers["Subject"] or ""), path.name, found["id"]


def _temporary_id(name: str) -> str:
    """The delivery id in a temporary file's name, '' if none."""
    found = _FILE.match(name[1:].rsplit(".", 2)[0]) if name.count(".") >= 3 else None
    return found["id"] if found and not found["test"] else ""


class NullSender(Sender):
    """Builds every message in full and discards it: measures everything but the provider."""

    name = "null"
    batch_limit = 1

    def __init__(self) -> None:
        self._built: set[str] = set()  # delivery ids `build` made in full, not yet sent

    def build(self, message: Message) -> Message:
        # Built in full, as SMTP and the outbox would, and discarded.
        to_bytes(message, utf8=True)
        self._built.add(message.delivery_id)
        return message

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        for message in messages:
            if message.delivery_id in self._built:
                self._built.discard(message.delivery_id)
            else:  # handed over without `build`
                to_bytes(message, utf8=True)
        return [SendResult(m.delivery_id, Outcome.SENT) for m in messages]

    def close(self) -> None:
        pass
