"""What a known contact's double opt-in sign-up would change, held until they confirm.

A single opt-in sign-up of a known contact adds its tags and attributes and sets its
language at once (planning/enroll.py). With double opt-in anyone can post an address,
so nothing changes before the patient confirms: the sign-up's tags, attributes and
language are held on its confirmation request (`confirmations.held_changes`, migration
0025, JSON text) and `confirmations.confirm` applies them, the single opt-in way,
before planning the enrollment. A repeated sign-up while the request waits replaces
them with the newest sign-up's. A new contact holds nothing: it is made with its fields.

A held value never overwrites a newer one: the sign-up also holds what those fields
were when it came in ("before": the contact's language, and the value, or null, of
each attribute key it holds). At confirm a language or attribute is set only if the
contact's is still that; so a later single opt-in sign-up, or the patient's own choice
on the preference centre, wins. Tags are only ever added. A held text without "before"
(written by the first version of this code) applies as it is.
They are the patient's data: `contacts export` shows them; expiry, an ended request,
a confirmation and erasure clear them; no log line or webhook payload carries them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, select

from campaigns.planning.conditions import parse_attributes
from campaigns.planning.signups import Contact
from campaigns.storage.tables import contacts

# A known contact's language and attributes, as a sign-up found them.
Current = tuple[str | None, dict[str, str]]


@dataclass(frozen=True)
class Held:
    """A sign-up's changes to a known contact, as held."""

    tags: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    language: str | None = None
    # What the held fields were when the sign-up came in; not recorded: apply them all.
    checks_language: bool = False
    language_before: str | None = None
    attributes_before: dict[str, str | None] | None = None


def attributes_json(attributes: Mapping[str, str]) -> str | None:
    """Attributes as stored on a contact: a JSON object of strings; None for none."""
    return json.dumps(dict(sorted(attributes.items())), ensure_ascii=False) if attributes else None


def current_values(conn: Connection, contact_ids: list[int]) -> dict[int, Current]:
    """The contacts' language and attributes now, to hold beside a sign-up's changes."""
    if not contact_ids:
        return {}
    rows = conn.execute(
        select(contacts.c.id, contacts.c.language, contacts.c.attributes).where(
            contacts.c.id.in_(bindparam("ids", expanding=True))
        ),
        {"ids": contact_ids},
    )
    return {row.id: (row.language, parse_attributes(row.attributes)) for row in rows}


def hold(contact: Contact, current: Current | None = None) -> str | None:
    """The JSON text to hold for a known contact's sign-up; None when it changes nothing.
    `current`: the contact's language and attributes now, held as "before"."""
    held: dict[str, Any] = {}
    if contact.tags:
        held["tags"] = list(contact.tags)
    if contact.attributes:
        held["attributes"] = dict(sorted(contact.attributes.items()))
    if contact.language:
        held["language"] = contact.language
    if current is not None and (contact.attributes or contact.language):
        language, attributes = current
        before: dict[str, Any] = {}
        if contact.language:
            before["language"] = language
        if contact.attributes:
            before["attributes"] = {k: attributes.get(k) for k in sorted(contact.attributes)}
        held["before"] = before
    return json.dumps(held, ensure_ascii=False) if held else None


def read_held(stored: str | None) -> Held:
    """Held changes as stored; NULL (or anything unreadable) holds nothing, as
    conditions.parse_attributes reads a contact's attributes."""
    try:
        value = json.loads(stored) if stored else {}
    except ValueError:
        value = {}
    if not isinstance(value, dict):
        return Held()
    tags, attributes = value.get("tags"), value.get("attributes")
    language = value.get("language")
    before = value.get("before")
    before = before if isinstance(before, dict) else {}
    was = before.get("attributes")
    return Held(
        tuple(str(tag) for tag in tags) if isinstance(tags, list) else (),
        {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {},
        str(language) if language else None,
        "language" in before,
        _text(before.get("language")),
        {str(k): _text(v) for k, v in was.items()} if isinstance(was, dict) else None,
    )


def still_current(held: Held, current: Current) -> Held:
    """What of `held` to apply at confirm: a language or attribute only where the
    contact's is still what it was at the sign-up (a newer value wins); every tag."""
    language, attributes = current
    keep_language = held.language
    if held.checks_language and language != held.language_before:
        keep_language = None  # changed since the sign-up: a later choice stands
    kept = {
        key: value
        for key, value in held.attributes.items()
        if held.attributes_before is None
        or attributes.get(key) == held.attributes_before.get(key, attributes.get(key))
    }
    return Held(held.tags, kept, keep_language)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def held_for_export(stored: str | None) -> dict[str, Any] | None:
    """What `contacts export` shows of a request's held changes (None: none held)."""
    if not stored:
        return None
    held = read_held(stored)
    return {"tags": list(held.tags), "attributes": held.attributes, "language": held.language}
