"""The JSON bodies of SendGrid's v3 Mail Send requests, and which messages share one.

Messages of one tagged content go up to 1,000 per request, one personalization each
with its own subject, headers and substitutions, the content once (`plan_requests`);
the rest go alone, rendered in full. Everything here is pure: no request is made.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from senders import json_fields
from senders.addresses import wire_address
from senders.base import BatchForm, Message
from senders.json_fields import custom_headers, one_line, quoted_name, wire_or_given

log = logging.getLogger("dripmail.sendgrid")

# SendGrid answers 400 when a request tries to set these ("You may not override the
# following headers", Mail Send schema) ...
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
# ... and writes these itself. Message-ID is not on SendGrid's reserved list, but
# SendGrid uses it for its own smtp-id, which does not reliably follow a custom one
# (django-anymail #108, whose fix stopped sending it). We track a message by the
# delivery id in custom_args and by X-Message-Id, so ours would only mislead.
DROPPED_HEADERS = RESERVED_HEADERS | {"message-id", "date", "mime-version"}


# "The personalization block is limited to 1000 personalizations per API request", and
# "the total collective size of your substitutions may not exceed 10,000 bytes per
# personalization object" (Mail Send errors and schema). Bytes are counted as JSON.
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000


@dataclass(frozen=True)
class PayloadWriter:
    """Writes request bodies with the settings every body of one sender shares."""

    sandbox_mode: bool = False
    track_opens: bool = False
    track_clicks: bool = False
    categories: bool = False
    asm_group_id: int | None = None

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON body of POST /v3/mail/send for one message."""
        body = self._common(message, message.text, message.html)
        body["personalizations"] = [self._personalization(message)]
        body["subject"] = one_line(message.subject)
        headers = self._headers(message)
        if headers:
            body["headers"] = headers
        return body

    def batch_payload(self, messages: Sequence[Message]) -> dict[str, Any]:
        """The JSON body for messages of one step (see plan_requests): the tagged content once,
        and per message a personalization with its subject, headers and tag values."""
        forms = [message.batch for message in messages if message.batch is not None]
        if not messages or len(forms) < len(messages):
            raise ValueError("every message of a batch needs its batch form")
        content = forms[0].content
        if any(form.content != content for form in forms):
            raise ValueError("a batch is messages of one tagged content")
        body = self._common(messages[0], content.text, content.html)
        personalizations = []
        for message, form in zip(messages, forms, strict=True):
            personalization = self._personalization(message)
            # No top-level subject: "you can get around this requirement if every
            # personalization has a subject defined" (Mail Send errors).
            personalization["subject"] = one_line(message.subject)
            headers = self._headers(message)
            if headers:
                personalization["headers"] = headers
            personalization["substitutions"] = dict(form.substitutions)
            personalizations.append(personalization)
        body["personalizations"] = personalizations
        return body

    def _personalization(self, message: Message) -> dict[str, Any]:
        to = {"email": wire_address(message.to_address)[0]}
        # SendGrid does not quote display names in personalizations: "Smith, Pat" would
        # be two addresses (sendgrid-python #291). From and reply_to names it quotes.
        if message.to_name and (name := quoted_name(message.to_name)):
            to["name"] = name
        return {
            "to": [to],
            # Per personalization: the schema types a top-level custom_args as a
            # string, and this is what SendGrid attaches to every event of the email.
            # Only the opaque delivery id: nothing about the person or their health.
            "custom_args": {"delivery_id": str(message.delivery_id)},
        }

    def _common(self, message: Message, text: str, html: str) -> dict[str, Any]:
        """What is the same for every recipient: sender, content, settings."""
        sender = {"email": wire_address(message.from_address)[0]}
        if from_name := one_line(message.from_name):
            sender["name"] = from_name
        body: dict[str, Any] = {
            "from": sender,
            # RFC 2046 and SendGrid both want text/plain first, then text/html.
            "content": [
                {"type": kind, "value": value}
                for kind, value in (("text/plain", text), ("text/html", html))
                if value
            ],
        }
        if message.attachments:
            body["attachments"] = [
                {
                    "content": base64.b64encode(a.data).decode("ascii"),
                    "filename": a.filename,
                    "type": a.content_type,
                    "disposition": "attachment",
                }
                for a in message.attachments
            ]
        if message.reply_to:
            name, address = email.utils.parseaddr(one_line(message.reply_to))
            reply_to = {"email": wire_or_given(address or one_line(message.reply_to))}
            if name:
                reply_to["name"] = name
            body["reply_to"] = reply_to
        if self.categories and message.categories:
            # Opaque campaign/step ids; SendGrid allows 10 unique names of <= 255 chars.
            unique = dict.fromkeys(c[:255] for c in message.categories if c)
            body["categories"] = list(unique)[:10]
        if self.asm_group_id is not None:
            body["asm"] = {"group_id": int(self.asm_group_id)}
        # Said explicitly: otherwise the account's defaults apply, and they usually
        # rewrite links and add a pixel. Subscription tracking would add SendGrid's
        # own unsubscribe link next to ours.
        body["tracking_settings"] = {
            "click_tracking": {"enable": self.track_clicks, "enable_text": False},
            "open_tracking": {"enable": self.track_opens},
            "subscription_tracking": {"enable": False},
        }
        if self.sandbox_mode:
            # Validated and answered 200, never delivered.
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return body

    def _headers(self, message: Message) -> dict[str, str]:
        # SendGrid wants string values: one_line gives them (json_fields.custom_headers).
        return dict(custom_headers(message, DROPPED_HEADERS, log))


def plan_requests(messages: Sequence[Message], batch_limit: int) -> list[list[int]]:
    """The requests to make, as indexes into `messages`, in the order of their first.

    Messages of one tagged content (and the same sender, reply-to and categories,
    which the body shares) go together, up to MAX_PERSONALIZATIONS a request; every
    other message goes alone, as does one left alone in its group.
    """
    requests: list[list[int]] = []
    # group -> its requests still open, each with the addresses already in it
    groups: dict[tuple, list[tuple[list[int], set[str]]]] = defaultdict(list)
    for index, message in enumerate(messages):
        form = message.batch
        if batch_limit < 2 or form is None or _unbatchable(message, form):
            requests.append([index])
            continue
        group = groups[
            form.content.key,
            message.from_name,
            message.from_address,
            message.reply_to,
            message.categories,
        ]
        address = message.to_address.lower()
        # SendGrid answers 400 when an address is in two personalizations of one
        # request ("Each unique email address ... should only be included once").
        for request, addresses in group:
            if len(request) < batch_limit and address not in addresses:
                break
        else:
            request, addresses = [], set()
            group.append((request, addresses))
            requests.append(request)
        request.append(index)
        addresses.add(address)
    return requests


def _unbatchable(message: Message, form: BatchForm) -> bool:
    """Whether the message must go rendered in full, alone: it would be rejected, or
    its values are over SendGrid's limit, or could be read as a tag."""
    if unsendable(message):
        return True  # alone, it gets its own PERMANENT result without a request
    size = len(json.dumps(dict(form.substitutions), ensure_ascii=False).encode())
    # SendGrid substitutes in the subject and reply-to too (Mail Send schema).
    return size > MAX_SUBSTITUTION_BYTES or form.clashes(message.subject, message.reply_to)


def unsendable(message: Message) -> str | None:
    """Why SendGrid would refuse the message whatever it carries; None if it would not."""
    return json_fields.unsendable(message, "SendGrid's Mail Send API")
