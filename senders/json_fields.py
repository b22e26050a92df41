"""A Message's fields as JSON mail APIs take them (SendGrid, Postmark): one line each.

These APIs build the headers themselves from JSON strings, so what we hand them must
not be able to start a header of its own (a CR/LF in a subject or a display name) or
turn one mailbox into two (an unquoted `,` or `;` in a display name). Everything here
is pure: no request is made.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from senders.addresses import NO_SMTPUTF8, AddressError, wire_address
from senders.base import Message, own_headers

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A display name holding any of these must be quoted to stay one mailbox (RFC 5322 specials).
_SPECIALS = re.compile(r'[,;"<>()\[\]:@\\]')


def one_line(value: str | None) -> str:
    """Control characters (CR/LF above all) become spaces; runs of space collapse."""
    return " ".join(_CONTROL.sub(" ", str(value or "")).split())


def quoted_name(name: str) -> str:
    """A display name that stays one mailbox where it is written before `<address>`.

    Quoted RFC 5322 style when it holds a special (`"Smith, Pat"`), as is: SendGrid
    writes a personalization's name into To: unquoted (sendgrid-python #291), and
    Postmark asks that "punctuation in the name" be escaped (its Email API, `From`).
    """
    text = one_line(name)
    if not _SPECIALS.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wire_or_given(address: str) -> str:
    """An address with its domain as A-label; as given if it has none to encode."""
    try:
        return wire_address(address)[0]
    except AddressError:
        return address


def custom_headers(
    message: Message, dropped: frozenset[str], log: logging.Logger
) -> Iterator[tuple[str, str]]:
    """The message's own headers (Message-ID, List-Unsubscribe, ...) an API may carry:
    names it writes itself (`dropped`, lower case) left out, values on one line."""
    for name, value in own_headers(message, log):
        if name.lower() in dropped:
            continue
        # A CR/LF in a value would start a header of its own.
        text = one_line(str(value))
        if text:
            yield name, text


def unsendable(message: Message, api: str) -> str | None:
    """Why a JSON mail API (named `api` in the reason) would refuse the message whatever
    it carries; None if it would not."""
    if not message.to_address:
        return "the message has no recipient address"
    try:
        if any(wire_address(a)[1] for a in (message.to_address, message.from_address)):
            # The APIs type addresses as RFC 5321 "email", not RFC 6531 "idn-email", and
            # document no SMTPUTF8: such a message fails alone.
            return f"not sent: {NO_SMTPUTF8}, which {api} does not take"
    except AddressError as exc:
        return str(exc)
    if not one_line(message.subject):
        return "the subject is empty"
    if not (message.text or message.html):
        return "the message has no content"
    return None
