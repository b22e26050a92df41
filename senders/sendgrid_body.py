"""The JSON bodies of SendGrid's v3 Mail Send requests, and which messages share one.

Messages of one tagged content go up to 1,000 per request, one personalization each
with its own subject, headers and substitutions, the content once (`plan_requests`);
the rest go alone, rendered in full. Everything here is pure: no request is made.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from senders.addresses import NO_SMTPUTF8, AddressError, wire_address
from senders.base import BatchForm, Message

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

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII, no colon
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A display name holding any of these must be quoted to stay one mailbox.
_SPECIALS = re.compile(r'[,;"<>()\[\]:@\\]')

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
        if message.to_name and (name := _recipient_name(message.to_name)):
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
        if message.reply_to:
            name, address = email.utils.parseaddr(one_line(message.reply_to))
            reply_to = {"email": _wire(address or one_line(message.reply_to))}
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
        headers: dict[str, str] = {}
        for name, value in message.headers.items():
            name = str(name).strip()
            if name.lower() in DROPPED_HEADERS:
                continue
            if not _HEADER_NAME.match(name):
                log.warning(
                    "delivery %s: header name %r is not valid; left out",
                    message.delivery_id,
                    name[:40],
                )
                continue
            # SendGrid wants string values, and a CR/LF would start a header of its own.
            text = one_line(str(value))
            if text:
                headers[name] = text
        return headers


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


def one_line(value: str | None) -> str:
    """Control characters (CR/LF above all) become spaces; runs of space collapse."""
    return " ".join(_CONTROL.sub(" ", str(value or "")).split())


def _wire(address: str) -> str:
    """An address with its domain as A-label; as given if it has none to encode."""
    try:
        return wire_address(address)[0]
    except AddressError:
        return address


def _recipient_name(name: str) -> str:
    """A display name SendGrid cannot split into two mailboxes.

    SendGrid does not quote display names in personalizations: "Smith, Pat" becomes
    two addresses and a ';' ends the list (sendgrid-python #291; django-anymail
    quotes them for the same reason). We quote such names ourselves, RFC 5322 style.
    From and reply_to names are quoted correctly by SendGrid and go as they are.
    """
    text = one_line(name)
    if not _SPECIALS.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
    if not message.to_address:
        return "the message has no recipient address"
    try:
        if any(wire_address(a)[1] for a in (message.to_address, message.from_address)):
            # The Mail Send schema types addresses as "email" (RFC 5321), not "idn-email"
            # (RFC 6531), and SendGrid documents no SMTPUTF8: such a message fails alone.
            return f"not sent: {NO_SMTPUTF8}, which SendGrid's Mail Send API does not take"
    except AddressError as exc:
        return str(exc)
    if not one_line(message.subject):
        return "the subject is empty"
    if not (message.text or message.html):
        return "the message has no content"
    return None
