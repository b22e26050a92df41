"""What a known contact's double opt-in sign-up would change, held until they confirm.

A single opt-in sign-up of a known contact adds its tags and attributes and sets its
language at once (planning/enroll.py). With double opt-in anyone can post an address,
so nothing changes before the patient confirms: the sign-up's tags, attributes and
language are held on its confirmation request (`confirmations.held_changes`, migration
0025, JSON text) and `confirmations.confirm` applies them, the single opt-in way,
before planning the enrollment. A repeated sign-up while the request waits replaces
them with the newest sign-up's. A new contact holds nothing: it is made with its fields.
They are the patient's data: `contacts export` shows them; expiry, an ended request,
a confirmation and erasure clear them; no log line or webhook payload carries them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from campaigns.planning.signups import Contact


@dataclass(frozen=True)
class Held:
    """A sign-up's changes to a known contact, as held."""

    tags: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    language: str | None = None


def attributes_json(attributes: Mapping[str, str]) -> str | None:
    """Attributes as stored on a contact: a JSON object of strings; None for none."""
    return json.dumps(dict(sorted(attributes.items())), ensure_ascii=False) if attributes else None


def hold(contact: Contact) -> str | None:
    """The JSON text to hold for a known contact's sign-up; None when it changes nothing."""
    held: dict[str, Any] = {}
    if contact.tags:
        held["tags"] = list(contact.tags)
    if contact.attributes:
        held["attributes"] = dict(sorted(contact.attributes.items()))
    if contact.language:
        held["language"] = contact.language
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
    return Held(
        tuple(str(tag) for tag in tags) if isinstance(tags, list) else (),
        {str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {},
        str(language) if language else None,
    )


def held_for_export(stored: str | None) -> dict[str, Any] | None:
    """What `contacts export` shows of a request's held changes (None: none held)."""
    if not stored:
        return None
    held = read_held(stored)
    return {"tags": list(held.tags), "attributes": held.attributes, "language": held.language}
