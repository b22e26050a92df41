"""Complaint reports (feedback loops): RFC 5965 ARF, and Microsoft's JMRP shape.

A mailbox provider's feedback loop tells the sender that a recipient marked a message
as spam. Two shapes arrive:

- ARF (RFC 5965; Yahoo's Complaint Feedback Loop, AOL, Fastmail, Amazon SES's
  forwarding): `multipart/report; report-type=feedback-report`, a human part, a
  `message/feedback-report` part whose `Feedback-Type` says what it is (`abuse`,
  `fraud`, `virus`, `other`; `not-spam` is the opposite), then the original message
  as `message/rfc822` or only its headers as `text/rfc822-headers`.
- Microsoft's JMRP (Outlook.com, Hotmail): `multipart/mixed` from staff@hotmail.com,
  "complaint about message from <ip>", whose `message/rfc822` part is the original with
  `X-HmXmrOriginalRecipient` added by Microsoft. That header is what tells it from a
  person forwarding an email as an attachment.

The recipient's address is often redacted in both, so the original's headers are what
name the delivery: its signed List-Unsubscribe token and return path (see mailbox.py).

Pure: a parsed email message in, plain data out.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from campaigns.compliance.dsn import is_report, returned_headers
from campaigns.compliance.event_model import EventKind

# Feedback-Type values (RFC 5965 section 7.3 registry) that are complaints about us.
COMPLAINTS = frozenset({"abuse", "fraud", "virus", "other"})
JMRP_MARKER = "X-HmXmrOriginalRecipient"


@dataclass(frozen=True)
class Feedback:
    """A complaint report: what kind, and the headers of the message complained about."""

    feedback_type: str
    original: Message | None  # the original's headers (None when the report had none)
    arrival_date: str | None = None
    mail_from: str | None = None  # Original-Mail-From: the original's return path

    @property
    def kind(self) -> EventKind | None:
        return EventKind.COMPLAINED if self.feedback_type in COMPLAINTS else None


def _report_fields(message: Message) -> Message | None:
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        # The email package parses message/* as a message: the fields are its headers.
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
    return None


def _jmrp_original(message: Message) -> Message | None:
    if message.get_content_type() != "multipart/mixed":
        return None
    for part in message.get_payload():
        if not isinstance(part, Message) or part.get_content_type() != "message/rfc822":
            continue
        inner = part.get_payload()
        found = inner[0] if isinstance(inner, list) and inner else None
        if isinstance(found, Message) and found.get(JMRP_MARKER) is not None:
            return found
    return None


def feedback(message: Message) -> Feedback | None:
    """The complaint report `message` is, or None when it is not one."""
    if is_report(message, "feedback-report"):
        fields = _report_fields(message)
        if fields is None:
            return None
        kind = " ".join(str(fields.get("Feedback-Type", "")).split()).lower()
        arrival = fields.get("Arrival-Date") or fields.get("Received-Date")
        mail_from = fields.get("Original-Mail-From")
        return Feedback(
            kind,
            returned_headers(message),
            str(arrival) if arrival else None,
            str(mail_from) if mail_from else None,
        )
    original = _jmrp_original(message)
    if original is not None:
        return Feedback("abuse", original, None)
    return None
