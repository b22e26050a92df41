"""The JSON bodies of Postmark's `POST /email/batch` requests, and which messages share one.

Postmark's batch is an array of complete messages, one entry each (there is no shared
content as in SendGrid's personalizations): From, To, Subject, HtmlBody, TextBody,
ReplyTo, Headers, MessageStream, TrackOpens, TrackLinks and Metadata
(https://postmarkapp.com/developer/api/email-api). Postmark takes JSON fields, not MIME,
so dripmail's own headers (Message-ID, List-Unsubscribe, List-Unsubscribe-Post) ride in
`Headers`; Metadata carries the opaque delivery id and nothing else. Everything here is
pure: no request is made.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from senders import json_fields
from senders.base import Message
from senders.json_fields import custom_headers, one_line, quoted_name, wire_or_given

log = logging.getLogger("dripmail.postmark")

# "The batch endpoint accepts up to 500 messages per API call, and up to 50 MB payload
# size"; one message is at most 10 MB (Email API; API overview, HTTP 413).
MAX_BATCH = 500
MAX_BATCH_BYTES = 50 * 1024 * 1024
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
METADATA_KEY = "delivery_id"  # events carry Metadata back: this is how they are matched

# Postmark writes these from the entry's own fields (or itself); a header of the same
# name in `Headers` would be a second copy or be refused.
DROPPED_HEADERS = frozenset(
    {
        "to",
        "from",
        "cc",
        "bcc",
        "subject",
        "reply-to",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "received",
        "dkim-signature",
        "return-path",
    }
)


@dataclass(frozen=True)
class EntryWriter:
    """Writes batch entries with the settings every entry of one sender shares."""

    message_stream: str = "broadcast"
    track_opens: bool = False
    track_clicks: bool = False

    def entry(self, message: Message) -> dict[str, Any]:
        """The message as one element of the batch array."""
        entry: dict[str, Any] = {
            "From": mailbox(message.from_name, message.from_address),
            "To": mailbox(message.to_name, message.to_address),
            "Subject": one_line(message.subject),
            "MessageStream": self.message_stream,
            # Only the opaque delivery id: nothing about the person or their health.
            "Metadata": {METADATA_KEY: str(message.delivery_id)},
            # Said explicitly: otherwise the server's defaults apply, which may add a
            # pixel and rewrite every link.
            "TrackOpens": self.track_opens,
            "TrackLinks": "HtmlAndText" if self.track_clicks else "None",
        }
        # Text first, as dripmail's MIME puts it; Postmark needs at least one of them.
        if message.text:
            entry["TextBody"] = message.text
        if message.html:
            entry["HtmlBody"] = message.html
        if message.attachments:
            entry["Attachments"] = [
                {
                    "Name": a.filename,
                    "Content": base64.b64encode(a.data).decode("ascii"),
                    "ContentType": a.content_type,
                }
                for a in message.attachments
            ]
        if message.reply_to:
            name, address = email.utils.parseaddr(one_line(message.reply_to))
            entry["ReplyTo"] = mailbox(name, address or one_line(message.reply_to))
        headers = [
            {"Name": name, "Value": value}
            for name, value in custom_headers(message, DROPPED_HEADERS, log)
        ]
        if headers:
            entry["Headers"] = headers
        return entry

    def encoded(self, message: Message) -> bytes:
        """The entry as the JSON bytes it will have in the request body."""
        return json.dumps(self.entry(message), ensure_ascii=False).encode()


def mailbox(name: str | None, address: str) -> str:
    """`Name <address>`, the name quoted when it holds punctuation ("Punctuation in the
    name would need to be escaped", Email API `From`), the domain as A-label."""
    wire = wire_or_given(one_line(address))
    text = quoted_name(name) if name else ""
    return f"{text} <{wire}>" if text else wire


def body(entries: Sequence[bytes]) -> bytes:
    """The request body: the JSON array of encoded entries."""
    return b"[" + b",".join(entries) + b"]"


def plan_batches(sizes: Sequence[int], limit: int) -> list[list[int]]:
    """Requests to make, as indexes into `sizes` (each entry's encoded bytes), in order:
    at most `limit` entries and MAX_BATCH_BYTES of body each."""
    batches: list[list[int]] = []
    current: list[int] = []
    total = 2  # the brackets
    for index, size in enumerate(sizes):
        if current and (len(current) >= limit or total + size + 1 > MAX_BATCH_BYTES):
            batches.append(current)
            current, total = [], 2
        current.append(index)
        total += size + 1
    if current:
        batches.append(current)
    return batches


def unsendable(message: Message, size: int | None = None) -> str | None:
    """Why Postmark would refuse the message whatever it carries; None if it would not."""
    problem = json_fields.unsendable(message, "Postmark's Email API")
    if problem:
        return problem
    if size is not None and size > MAX_MESSAGE_BYTES:
        return f"the email is over Postmark's {MAX_MESSAGE_BYTES // (1024 * 1024)} MB limit"
    return None
