"""A contact's identity: the address as stored, its keyed hash, and tags.

Every stage that meets an address (enrollment, suppressions, unsubscribes, privacy,
newsletters) normalises and hashes it here, so one mailbox is one contact everywhere.
"""

from __future__ import annotations

import contextlib
import hmac
import re
from collections.abc import Sequence
from hashlib import sha256
from typing import TYPE_CHECKING, Any

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from sqlalchemy import select, update

from campaigns.errors import InputError, NotFoundError
from campaigns.storage.tables import contacts

if TYPE_CHECKING:
    from campaigns.storage.store import Store

_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


# Plain ASCII addresses (nearly all of them) are checked here; anything else goes to
# email-validator, which is exact but costs ~100 us an address.
_PLAIN_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,64}(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,64})*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)
# RFC 5321 4.5.3.1.1: a local part is at most 64 octets (UTF-8 octets for an RFC 6531
# address). email-validator checks it only in strict mode, so it is checked here.
MAX_LOCAL_PART = 64
# RFC 5321 4.5.3.1.3: a path is at most 256 octets, the angle brackets included.
MAX_ADDRESS = 254


def normalise_email(value: str) -> str:
    """The address as stored and compared: validated (no DNS), one form per mailbox.

    The local part is lower-cased (as dripmail always has), the domain is its IDNA
    A-label: `Pat@Bücher.de` and `pat@xn--bcher-kva.de` are one contact, and the form
    stored is the one every sender puts on the wire. A non-ASCII local part stays as
    given (NFC, lower case): it can only go by SMTPUTF8 (RFC 6531).
    """
    candidate = value.strip().lower()
    if (
        len(candidate) <= MAX_ADDRESS
        and _PLAIN_EMAIL.fullmatch(candidate)
        and len(candidate.partition("@")[0]) <= MAX_LOCAL_PART
        and candidate.rpartition(".")[2] not in _SPECIAL_USE
        and ".xn--" not in candidate
        and "@xn--" not in candidate  # an A-label is checked by email-validator, below
    ):
        return candidate
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        # The address itself stays out of the message: import reports go to logs and terminals.
        raise ValueError(f"not a valid email address: {exc}") from None
    local = checked.local_part.lower()
    octets = len(local.encode("utf-8"))
    if octets > MAX_LOCAL_PART:
        raise ValueError(
            f"not a valid email address: the part before the @-sign is {octets} octets "
            f"long, and mail servers take at most {MAX_LOCAL_PART} (RFC 5321)"
        )
    address = f"{local}@{checked.ascii_domain.lower()}"
    if len(address.encode("utf-8")) > MAX_ADDRESS:
        raise ValueError(f"not a valid email address: longer than {MAX_ADDRESS} octets (RFC 5321)")
    return address


def display_address(stored: str) -> str:
    """A stored address as a person reads it: an IDNA A-label domain in Unicode again
    (`pat@xn--bcher-kva.de` -> `pat@bücher.de`). Only for showing; matching, the HMAC
    and the wire use the stored form."""
    local, at, domain = stored.rpartition("@")
    if not at or "xn--" not in domain:
        return stored
    try:
        return f"{local}@{idna.decode(domain)}"
    except idna.IDNAError:
        return stored


def address_hash(key: str, email: str) -> str:
    """Keyed hash (HMAC-SHA256) of a normalised address: recognises it without keeping it.

    `email` is normalise_email's form (domain as A-label), so both spellings of an
    internationalised domain are one hash.

    The key is the installation's suppression key, never rotated: a rotated key would
    let erased or bounced addresses back in.
    """
    address = email.strip().lower()
    if not address.isascii():
        # A Unicode domain given by a caller that did not normalise: its A-label form,
        # or the same hash would not recognise the same mailbox.
        with contextlib.suppress(ValueError):
            address = normalise_email(address)
    return hmac.digest(key.encode(), address.encode(), sha256).hex()


# ---------------------------------------------------------------- tags


def normalise_tag(tag: str) -> str:
    """A tag as stored: lower case; ValueError naming it when it cannot be one."""
    value = tag.strip().lower()
    if not _TAG.match(value):
        raise ValueError(f"{tag!r} is not a tag: use letters, digits, '-', '_' or '.'")
    return value


def parse_tags(text: str | None) -> list[str]:
    """`a; b` (the CSV column) -> ["a", "b"]; ValueError on a bad one."""
    return sorted({normalise_tag(t) for t in (text or "").split(";") if t.strip()})


def join_tags(tags: Sequence[str]) -> str | None:
    """Stored form `;a;b;` so that membership is `LIKE '%;a;%'`; None for no tags."""
    return f";{';'.join(sorted(set(tags)))};" if tags else None


def split_tags(stored: str | None) -> list[str]:
    return [t for t in (stored or "").split(";") if t]


def retag(
    store: Store, email: str, add: Sequence[str] = (), remove: Sequence[str] = ()
) -> list[str]:
    """Add and remove tags on one contact; returns its tags after."""
    try:
        address = normalise_email(email)
    except ValueError as exc:
        raise InputError(str(exc), field="tag") from None
    return _retag(store, contacts.c.email == address, "no contact with that address", add, remove)


def retag_contact(
    store: Store, contact_id: int, add: Sequence[str] = (), remove: Sequence[str] = ()
) -> list[str]:
    """retag for the contact with this id (the API's `/contacts/{id}/tags`); an erased
    contact (no address) is not found."""
    where = (contacts.c.id == contact_id) & contacts.c.email.is_not(None)
    return _retag(store, where, "no such contact", add, remove)


def _retag(
    store: Store, where: Any, missing: str, add: Sequence[str], remove: Sequence[str]
) -> list[str]:
    try:
        plus = [normalise_tag(t) for t in add]
        minus = {normalise_tag(t) for t in remove}
    except ValueError as exc:
        raise InputError(str(exc), field="tag") from None
    with store.begin() as conn:
        row = conn.execute(select(contacts.c.id, contacts.c.tags).where(where)).first()
        if row is None:
            raise NotFoundError(missing)
        tags = (set(split_tags(row.tags)) | set(plus)) - minus
        conn.execute(
            update(contacts).where(contacts.c.id == row.id).values(tags=join_tags(sorted(tags)))
        )
    return sorted(tags)
