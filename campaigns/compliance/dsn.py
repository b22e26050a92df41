"""Delivery status notifications (RFC 3464 bounces), read into what happened per recipient.

A DSN is `multipart/report; report-type=delivery-status` whose `message/delivery-status`
part holds one block of per-message fields, then one block per recipient with
`Action` (failed, delayed, delivered, relayed, expanded) and `Status` (an RFC 3463
enhanced code, class.subject.detail). Postfix, Exim, Gmail and Microsoft 365 all send
this shape; what differs is around it (a human-readable part first, Gmail's nested
multipart/related, the original as `message/rfc822` or `text/rfc822-headers`).

Which failures suppress the address: a 5.x.x about the address or its mailbox (5.1.x
bad mailbox or domain, 5.2.1 mailbox disabled, 5.4.x unroutable, 5.0.0 with nothing
more specific). A 5.x.x about the message or the sender is not about the address, so
the address stays (bounced_soft): 5.2.2 mailbox full and 5.2.3 / 5.3.4 message too big
(RFC 3463 calls them persistent transient), and 5.7.x (policy, spam blocks, SPF/DMARC:
Gmail's 5.7.26, Microsoft 365's 5.7.1 / 5.7.509), which SendGrid does not suppress
either (its `blocked` bounces). Exim often says Status 5.0.0 and gives the real code
in Diagnostic-Code ("smtp; 550 5.1.1 ..."): the more specific code is used.

Pure: a parsed email message in, plain data out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from campaigns.compliance.event_model import EventKind

_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# 5.x.x codes about the message or the sender rather than the address (see above).
_NOT_THE_ADDRESS = {"5.2.2", "5.2.3", "5.3.4"}
_NOT_THE_ADDRESS_SUBJECTS = {"7"}  # security or policy
# RFC 6533's message/global-delivery-status is the same, in UTF-8.
_STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a DSN."""

    action: str  # lower case: failed, delayed, delivered, relayed, expanded
    status: str  # the enhanced code used: d.d.d
    final_recipient: str | None  # the address, as the report gives it (for hashing only)

    @property
    def kind(self) -> EventKind | None:
        """What this block means in the one event model (None: nothing to record)."""
        return kind_of(self.action, self.status)


def is_report(message: Message, report_type: str) -> bool:
    """Whether `message` is a multipart/report of this report-type."""
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == report_type
    )


def kind_of(action: str, status: str) -> EventKind | None:
    """Action + Status -> the event kind (RFC 3464 2.3.3; RFC 3463 classes)."""
    action = action.lower()
    if action == "delayed":
        return EventKind.DEFERRED
    if action in ("delivered", "relayed", "expanded"):
        return EventKind.DELIVERED
    if action != "failed":
        return None
    if status.startswith("4."):
        return EventKind.BOUNCED_SOFT
    if not status.startswith("5."):
        return None
    subject = status.split(".")[1]
    if status in _NOT_THE_ADDRESS or subject in _NOT_THE_ADDRESS_SUBJECTS:
        return EventKind.BOUNCED_SOFT
    return EventKind.BOUNCED_HARD


def _walk_parts(message: Message) -> list[Message]:
    """Every part, nested multiparts included, but not inside an attached message."""
    found = [message]
    if message.is_multipart() and message.get_content_maintype() == "multipart":
        for part in message.get_payload():
            if isinstance(part, Message):
                found.extend(_walk_parts(part))
    return found


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status part (the email package parses it
    into a list of blocks; a lenient writer's text/plain copy is parsed here)."""
    payload = part.get_payload()
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, list):  # another message/* type: parsed as one message
        text = b"".join(p.as_bytes() for p in payload if isinstance(p, Message))
    else:
        text = part.get_payload(decode=True) or b""
    blocks = re.split(rb"\r?\n[ \t]*\r?\n", text.strip())
    return [HeaderParser().parsestr(block.decode("utf-8", "replace")) for block in blocks]


def _value(block: Message, name: str) -> str | None:
    value = block.get(name)
    if value is None:
        return None
    text = " ".join(str(value).split())
    # "rfc822; pat@example.com", "smtp; 550 5.1.1 ...": the part after the type.
    return text.split(";", 1)[1].strip() if ";" in text else text


def _status(block: Message, diagnostic: str | None) -> str:
    status = _value(block, "Status") or ""
    found = _CODE.search(status)
    code = ".".join(found.groups()) if found else ""
    if diagnostic and (not code or code.endswith(".0.0")):
        # Exim's "Status: 5.0.0" with "Diagnostic-Code: smtp; 550 5.1.1 ...".
        better = _CODE.search(diagnostic)
        if better and (not code or better.group(1) == code[0]):
            code = ".".join(better.groups())
    return code


def delivery_statuses(message: Message) -> list[RecipientStatus] | None:
    """The per-recipient statuses of a DSN, or None when `message` is not one."""
    if not is_report(message, "delivery-status"):
        return None
    found: list[RecipientStatus] = []
    for part in _walk_parts(message):
        if part.get_content_type() not in _STATUS_PARTS:
            continue
        for block in _blocks(part)[1:]:  # the first block is per-message
            action = _value(block, "Action")
            if not action:
                continue
            diagnostic = _value(block, "Diagnostic-Code")
            found.append(
                RecipientStatus(
                    action=action.lower(),
                    status=_status(block, diagnostic),
                    final_recipient=_value(block, "Final-Recipient")
                    or _value(block, "Original-Recipient"),
                )
            )
    return found


def returned_headers(message: Message) -> Message | None:
    """The returned original's headers (message/rfc822 or text/rfc822-headers), if any."""
    for part in _walk_parts(message):
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in ("text/rfc822-headers", "message/global-headers"):
            text = part.get_payload(decode=True) or b""
            return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return None
