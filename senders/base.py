"""What every sender shares: the Message it is given, the result it returns, its errors.

A sender never raises for a single message: each message gets a SendResult whose
outcome says what the dispatcher must record. Only a problem that makes every
message fail the same way (bad credentials, a missing setting) raises
SenderConfigurationError, which stops the run before anything is marked.

Two more steps have defaults that keep a provider's behaviour as it was: `build`
(the dispatcher builds every message of a hand-off before any row becomes `sending`,
so one message that cannot be built fails alone) and `settle` (a sender that can
tell by itself what became of a message a stopped run left `sending` or `unknown`
says so; the file sender can, a provider whose answer was lost cannot).
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

from campaigns.errors import DripmailError


class SenderError(DripmailError):
    """Base of the sender errors: one of dripmail's errors (exit code 2)."""


class SenderConfigurationError(SenderError):
    """The sender cannot work at all (missing variable, refused credentials): stop the run."""


class Outcome(enum.StrEnum):
    """What became of one message at the provider."""

    SENT = "sent"  # accepted by the provider
    TRANSIENT = "transient"  # not sent; try again later (429, 5xx, refused connection, 4xx SMTP)
    PERMANENT = "permanent"  # never goes (400, 413, 5xx SMTP for that recipient)
    AMBIGUOUS = "ambiguous"  # the request went out but its answer was lost: do not re-send


@dataclass(frozen=True)
class TaggedContent:
    """A step's HTML and text with a substitution tag wherever a per-contact value goes.

    Built once per compiled step and shared by all its messages. A provider that can
    send one body to many recipients with per-recipient substitutions (SendGrid's
    personalizations) sends this once and each contact's tag values with them.
    """

    key: str  # campaign version, layout and step: equal keys mean equal content
    html: str
    text: str
    marker: str  # in every tag and nowhere else in the content (see BatchForm.clashes)


@dataclass(frozen=True)
class BatchForm:
    """A message as its step's tagged content plus this contact's value for each tag.

    Replacing every tag in `content` by its value gives exactly the message's html and
    text (the HTML tags take HTML-escaped values, the text tags raw ones).
    """

    content: TaggedContent
    substitutions: Mapping[str, str]

    def clashes(self, *texts: str | None) -> bool:
        """Whether a value, or one of `texts`, holds the tag marker.

        Such a text could be read as a tag (or break one) when the provider
        substitutes, so the message must go with its content rendered in full.
        """
        marker = self.content.marker
        return any(marker in value for value in self.substitutions.values()) or any(
            marker in text for text in texts if text
        )

    def render(self) -> tuple[str, str]:
        """(html, text): every tag replaced by its value, in one pass."""
        if not self.substitutions:
            return self.content.html, self.content.text
        tags = re.compile("|".join(map(re.escape, self.substitutions)))

        def fill(text: str) -> str:
            return tags.sub(lambda match: self.substitutions[match.group(0)], text)

        return fill(self.content.html), fill(self.content.text)


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message (a patient's own data export): never part of a step."""

    filename: str
    content_type: str  # maintype/subtype, e.g. application/json
    data: bytes


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
    # The envelope sender (SMTP MAIL FROM), where bounces go: a per-delivery VERP address
    # (campaigns/rendering/verp.py) when the campaign names a return path; None: From.
    return_path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # Message-ID, List-Unsubscribe, ...
    date: datetime | None = None
    categories: tuple[str, ...] = ()  # opaque campaign/step ids only
    is_test: bool = False
    # Set when the html and text are tagged content plus plain per-contact values, so a
    # provider may send many such messages in one request; senders may ignore it.
    batch: BatchForm | None = field(default=None, repr=False)
    # The bytes the sender will hand over, when its `build` made them ahead (the file
    # sender's RFC 5322 file); None: the sender builds them when it sends.
    prepared: bytes | None = field(default=None, repr=False, compare=False)
    # Files that go with it (multipart/mixed); campaign emails have none.
    attachments: tuple[Attachment, ...] = field(default=(), repr=False)


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
    """A provider adapter. `send` returns one result per message, in order.

    `batch_limit` is how many messages one request may carry (1: one message per
    request); the dispatcher hands a sender at least that many per call. Subclass it
    to inherit the defaults of `build` and `settle`.
    """

    name: str
    batch_limit: int

    def send(self, messages: Sequence[Message]) -> list[SendResult]: ...

    def close(self) -> None: ...

    def build(self, message: Message) -> Message:
        """The message as it will be handed over, built now; raises if it cannot be.

        Called for every message of a hand-off before any of its rows is marked
        `sending`, so an exception fails that message alone. Default: a Message is all
        this sender needs (it builds its request when it sends, and answers per message).
        """
        return message

    def settle(self, delivery_ids: Sequence[str]) -> list[SendResult]:
        """What became of messages a stopped run left `sending` or `unknown`, if known.

        One result for each id this sender can tell about by itself: SENT (it went;
        `provider_id` as `send` would give it) or TRANSIENT (it never went: it goes back
        to the queue). Ids it cannot tell about are left out and stay `unknown`.
        Default: none (a provider's lost answer can only be settled by its events).
        """
        return []


HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII, no colon


def own_headers(message: Message, log: logging.Logger) -> Iterator[tuple[str, str]]:
    """The message's own headers (Message-ID, List-Unsubscribe, ...) whose names are field
    names: a name with CR/LF would start a header of its own, so it is left out, logged."""
    for name, value in message.headers.items():
        name = str(name).strip()
        if HEADER_NAME.match(name):
            yield name, value
        else:
            log.warning(
                "delivery %s: header name %r is not valid; left out", message.delivery_id, name[:40]
            )


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine."""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_host(
    host: str, *, provider: str, example: str, variable: str, key: str | None = "api_host"
) -> str:
    """`host` as an http(s) URL with a host name and no trailing slash, or the one-line
    SenderConfigurationError naming `provider`'s campaign-file `key` (if it has one) and
    its `variable`."""
    text = str(host or "").strip()
    problem = re.search(r"\s", text) is not None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        problem = True
    else:
        problem = (
            problem
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or bool(parts.query or parts.fragment or parts.username)
        )
    if problem:
        raise SenderConfigurationError(
            f"{provider}: {text!r} is not an API address (like {example}); "
            f"check {f'{key} or ' if key else ''}{variable}"
        )
    return text.rstrip("/")
