"""What one mail that came back to the clinic says: a bounce, a complaint, an unsubscribe.

Anyone can send a mail that looks like a bounce, a complaint or an unsubscribe, so a
mail is acted on only when a signature of ours names the email it is about:

- a bounce (RFC 3464 DSN, campaigns/compliance/dsn.py) goes to the email's return path,
  `bounces+<id>-<signature>@domain` (rendering/verp.py): the address it was delivered
  to (To, Delivered-To, X-Original-To, ...) names the delivery;
- the original's headers, returned in a bounce or a complaint (ARF or JMRP,
  campaigns/compliance/arf.py), carry our signed List-Unsubscribe token, which names the
  contact and the delivery even when the report redacts the recipient;
- an unsubscribe mail is what the List-Unsubscribe mailto asks a mail client to send:
  subject `unsubscribe <token>`. Only the subject counts: a patient's reply quotes the
  email's footer, with its link, and must never unsubscribe them.

Anything else (a reply, an auto-reply, a bounce of someone else's mail, a token that
does not verify) is left for a person. Pure: a parsed message and the keys in, plain
data out; campaigns/compliance/mailbox.py reads mailboxes and applies it.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from campaigns.compliance.arf import feedback
from campaigns.compliance.dsn import delivery_statuses, returned_headers
from campaigns.compliance.event_model import EventKind
from campaigns.rendering.tokens import Signer, TokenError, UnsubscribeClaim
from campaigns.rendering.verp import ReturnPaths

# Where the receiving system writes the address a mail was delivered to.
_ENVELOPE_HEADERS = (
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "X-Envelope-To",
    "X-Delivered-To",
    "To",
)
# An itsdangerous token: [.]payload.timestamp.signature, URL-safe base64.
_TOKEN = r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
_UNSUBSCRIBE_SUBJECT = re.compile(rf"^\s*unsubscribe(?:\s|%20)+({_TOKEN})\s*$", re.IGNORECASE)
_LINK_TOKEN = re.compile(rf"/u/({_TOKEN})>|subject=unsubscribe%20({_TOKEN})>", re.IGNORECASE)


class MailKind(enum.StrEnum):
    """What a mail is, as `dripmail mailbox read` counts it."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    OTHER = "other"  # not a report nor an unsubscribe: left for a person


@dataclass(frozen=True)
class Finding:
    """One thing a report says about one email of ours."""

    event_id: str  # stable across readings of the same mail: a replay counts once
    kind: EventKind
    delivery_id: int | None
    contact_id: int | None  # from a token, when no delivery is named
    reason: str | None  # the status code or feedback type: never an address


@dataclass(frozen=True)
class Reading:
    """What one mail says. `verified`: a signature of ours names what it is about."""

    what: MailKind
    findings: tuple[Finding, ...] = ()
    claim: UnsubscribeClaim | None = None  # an unsubscribe mail's verified token
    why: str | None = None  # why nothing is done, when nothing is

    @property
    def verified(self) -> bool:
        return bool(self.findings) or self.claim is not None


@dataclass(frozen=True)
class Keys:
    """The installation's signers: return paths and unsubscribe tokens."""

    return_paths: ReturnPaths
    tokens: Signer

    @classmethod
    def of(cls, secret_key: str) -> Keys:
        return cls(ReturnPaths(secret_key), Signer(secret_key))


def mail_key(message: Message, raw: bytes) -> str:
    """A stable key for a mail: its Message-ID, else its bytes, hashed (ids can be anything)."""
    message_id = " ".join(str(message.get("Message-ID", "")).split())
    basis = message_id.encode() if message_id else raw
    return hashlib.sha256(basis).hexdigest()[:32]


def _addresses(message: Message, names: tuple[str, ...]) -> list[str]:
    values = [str(v) for name in names for v in (message.get_all(name) or [])]
    return [address for _name, address in getaddresses(values) if address]


def _verp_delivery(keys: Keys, addresses: list[str]) -> int | None:
    """The delivery the first signed return path among `addresses` names."""
    for address in addresses:
        found = keys.return_paths.delivery_id(address)
        if found is not None:
            return found
    return None


def _original_return_path(original: Message | None) -> list[str]:
    # The original as its last hop received it: Return-Path is its envelope sender.
    return _addresses(original, ("Return-Path",)) if original is not None else []


def _token_claim(original: Message | None, keys: Keys) -> UnsubscribeClaim | None:
    """The signed token in the original's List-Unsubscribe header, when it verifies."""
    if original is None:
        return None
    header = " ".join(str(original.get("List-Unsubscribe", "")).split())
    for match in _LINK_TOKEN.finditer(header):
        try:
            claim = keys.tokens.read(match.group(1) or match.group(2))
        except TokenError:
            continue
        if claim.contact_id:  # contact 0 is a send-test's: nobody to act on
            return claim
    return None


def _subject(message: Message) -> str:
    return " ".join(str(message.get("Subject", "")).split())


def read_mail(message: Message, raw: bytes, keys: Keys) -> Reading:
    """What `message` (whose bytes are `raw`) says, verified by `keys`."""
    key = mail_key(message, raw)
    statuses = delivery_statuses(message)
    if statuses is not None:
        original = returned_headers(message)
        delivery_id = _verp_delivery(
            keys, _addresses(message, _ENVELOPE_HEADERS) + _original_return_path(original)
        )
        claim = _token_claim(original, keys)
        if delivery_id is None and claim is None:
            return Reading(MailKind.BOUNCE, why="names no email of ours (no signed return path)")
        # The return path names the delivery; only without one does the token speak.
        contact_id = None
        if delivery_id is None and claim is not None:
            delivery_id, contact_id = claim.delivery_id, claim.contact_id
        findings = tuple(
            Finding(f"dsn:{key}:{i}", status.kind, delivery_id, contact_id, status.status or None)
            for i, status in enumerate(statuses)
            if status.kind is not None
        )
        if not findings:
            return Reading(MailKind.BOUNCE, why="reports no failure, delay or delivery")
        return Reading(MailKind.BOUNCE, findings)
    report = feedback(message)
    if report is not None:
        kind = report.kind
        if kind is None:
            return Reading(MailKind.COMPLAINT, why=f"feedback type {report.feedback_type!r}")
        claim = _token_claim(report.original, keys)
        mail_from = [address for _, address in getaddresses([report.mail_from or ""]) if address]
        delivery_id = _verp_delivery(keys, mail_from + _original_return_path(report.original))
        if claim is None and delivery_id is None:
            return Reading(MailKind.COMPLAINT, why="names no email of ours (no signed token)")
        contact_id = None
        if delivery_id is None and claim is not None:
            delivery_id, contact_id = claim.delivery_id, claim.contact_id
        finding = Finding(f"arf:{key}", kind, delivery_id, contact_id, report.feedback_type)
        return Reading(MailKind.COMPLAINT, (finding,))
    subject = _UNSUBSCRIBE_SUBJECT.match(_subject(message))
    if subject is not None:
        try:
            claim = keys.tokens.read(subject.group(1))
        except TokenError:
            return Reading(MailKind.UNSUBSCRIBE, why="its token does not verify")
        if not claim.contact_id:
            return Reading(MailKind.UNSUBSCRIBE, why="a test email's token names nobody")
        return Reading(MailKind.UNSUBSCRIBE, claim=claim)
    return Reading(MailKind.OTHER, why="not a bounce, complaint or unsubscribe")
