"""What every sender shares: the Message it is given, the result it returns, its errors.

A sender never raises for a single message: each message gets a SendResult whose
outcome says what the dispatcher must record. Only a problem that makes every
message fail the same way (bad credentials, a missing setting) raises
SenderConfigurationError, which stops the run before anything is marked.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class SenderError(Exception):
    """Base of the sender error family."""


class SenderConfigurationError(SenderError):
    """The sender cannot work at all (missing variable, refused credentials): stop the run."""


class Outcome(enum.StrEnum):
    """What became of one message at the provider."""

    SENT = "sent"  # accepted by the provider
    TRANSIENT = "transient"  # not sent; try again later (429, 5xx, refused connection, 4xx SMTP)
    PERMANENT = "permanent"  # never goes (400, 413, 5xx SMTP for that recipient)
    AMBIGUOUS = "ambiguous"  # the request went out but its answer was lost: do not re-send


@dataclass(frozen=True)
class Message:
    """One personalised email, ready to hand to a provider."""

    delivery_id: str  # opaque; the only thing about the recipient a provider gets as metadata
    from_name: str
    from_address: str
    to_address: str
    to_name: str | None
    subject: str
    preheader: str | None
    html: str
    text: str
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # Message-ID, List-Unsubscribe, ...
    date: datetime | None = None
    categories: tuple[str, ...] = ()  # opaque campaign/step ids only
    is_test: bool = False


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message; `retry_at` is a real-clock time when a provider named one."""

    delivery_id: str
    outcome: Outcome
    provider_id: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    attempts: int = 1  # requests made for this message in this run (in-run retries included)


class Sender(Protocol):
    """A provider adapter. `send` returns one result per message, in order."""

    name: str

    def send(self, messages: Sequence[Message]) -> list[SendResult]: ...

    def close(self) -> None: ...
