"""What an SMTP server's replies mean for a message (RFC 5321 section 4.2.1).

2yz accepted, 4yz "not now" (transient), 5yz "never" (permanent, for that message
only); a 421 at any point means the server is closing the connection (section 3.8).
A refusal that would fail every message the same way (the sender address, relaying)
is the configuration's, not the message's. Pure: nothing here talks to a server.
"""

from __future__ import annotations

import smtplib
from typing import NoReturn

from campaigns.settings import SMTP_PASSWORD_ENV, SMTP_USERNAME_ENV


class Misconfigured(Exception):
    """Every message would fail the same way: becomes SenderConfigurationError."""


class Trouble(Exception):
    """The connection could not be made or was lost: reconnect and try again.

    `reason` goes on the delivery row; `brief` (no server text, which may echo an
    address) goes to the log; `dropped` says a working connection was lost.
    """

    def __init__(self, reason: str, *, brief: str | None = None, dropped: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.brief = brief or reason
        self.dropped = dropped


class Reply(Exception):
    """The server answered this message with a 4yz or 5yz reply."""

    def __init__(self, command: str, code: int, text: str) -> None:
        super().__init__(text)
        self.command = command
        self.code = code
        self.text = text


def closing(code: int, reply: bytes) -> None:
    """Raises Trouble when the reply says the server is closing the connection."""
    # RFC 5321 3.8: 421 "service not available, closing transmission channel".
    if code == 421:
        raise Trouble(
            f"the server is closing the connection ({reply_text(code, reply)})",
            brief="the server is closing the connection (421)",
            dropped=True,
        )


def refused_sender(code: int, reply: bytes, where: str) -> NoReturn:
    """A refused MAIL FROM: this message's refusal (Reply), or every message's (Misconfigured)."""
    text = reply_text(code, reply)
    if 400 <= code < 500 or code == 552:
        # 4yz: try later; 552: this message is too big (RFC 1870), the next may not be.
        raise Reply("MAIL", code, text)
    if code == 530:  # RFC 4954: authentication required
        raise Misconfigured(
            f"the SMTP server {where} wants a login: set {SMTP_USERNAME_ENV} and "
            f"{SMTP_PASSWORD_ENV} ({text})"
        )
    # Every message of the batch has the same sender address: refusing it is not
    # about one message.
    raise Misconfigured(f"the SMTP server {where} refused the sender address ({text})")


def refused_recipient(code: int, reply: bytes, where: str) -> NoReturn:
    """A refused RCPT TO: this recipient's refusal (Reply), or a relay refusal (Misconfigured)."""
    text = reply_text(code, reply)
    # "Relay access denied" arrives as a recipient refusal but means the server
    # does not accept mail from us at all (usually: no login); it would fail
    # every recipient the same way.
    if code == 530 or (code >= 500 and "relay" in text.lower()):
        raise Misconfigured(
            f"the SMTP server {where} will not relay mail for this sender; "
            f"check {SMTP_USERNAME_ENV}/{SMTP_PASSWORD_ENV} ({first_code(text)})"
        )
    raise Reply("RCPT", code, text)


def reply_text(code: int, reply: bytes | str) -> str:
    """The server's reply on one line, for the delivery row."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(f"{code} {reply}".split())[:300]


def first_code(text: str) -> str:
    """The reply code (and enhanced code) only: enough to act on, nothing echoed back."""
    return " ".join(text.split()[:2])


def reason(exc: BaseException) -> str:
    """An error from smtplib or the socket, on one line."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return reply_text(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return " ".join(str(exc).split()) or type(exc).__name__
