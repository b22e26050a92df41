"""The local default: one .eml per message in an outbox folder, plus an index."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from campaigns import csv_cells
from senders.base import Message, Outcome, SendResult
from senders.mime import to_bytes

INDEX = "index.csv"


class FileSender:
    """Writes RFC 5322 files; nothing leaves the machine."""

    name = "file"
    batch_limit = 1

    def __init__(self, outbox: Path | str = "outbox") -> None:
        self.outbox = Path(outbox)

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        self.outbox.mkdir(parents=True, exist_ok=True)
        index = self.outbox / INDEX
        new_index = not index.exists()
        results = []
        with index.open("a", newline="", encoding="utf-8") as handle:
            writer = csv_cells.writer(handle)  # a subject may start with `=`
            if new_index:
                writer.writerow(["sent_at", "to", "subject", "file", "delivery_id"])
            for message in messages:
                results.append(self._write(message, writer))
        return results

    def _write(self, message: Message, writer: csv_cells.SafeWriter) -> SendResult:
        when = (message.date or datetime.now(UTC)).astimezone(UTC)
        prefix = "test-" if message.is_test else ""
        name = f"{when:%Y%m%dT%H%M%SZ}-{prefix}d{message.delivery_id}.eml"
        try:
            (self.outbox / name).write_bytes(to_bytes(message, linesep="\n"))
        except OSError as exc:
            return SendResult(message.delivery_id, Outcome.TRANSIENT, error=f"outbox: {exc}")
        writer.writerow(
            [when.isoformat(), message.to_address, message.subject, name, message.delivery_id]
        )
        return SendResult(message.delivery_id, Outcome.SENT, provider_id=name)

    def close(self) -> None:
        pass


class NullSender:
    """Builds every message in full and discards it: measures everything but the provider."""

    name = "null"
    batch_limit = 1

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        for message in messages:
            to_bytes(message)  # built in full, as SMTP and the outbox would
        return [SendResult(m.delivery_id, Outcome.SENT) for m in messages]

    def close(self) -> None:
        pass
