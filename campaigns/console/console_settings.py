"""The console's settings kept once in the database: clinic details and the approval rule.

The clinic details are what `dripmail split --defaults FILE` reads from a file today
(organisation, sender, postal address, links, disclaimer, time zone): a new campaign made
in the console starts from them. `approval` is "required" (the default: only a version a
reviewer approved is published from the console) or "none". Only admins change either,
and each change is written to the audit trail by the page that makes it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from campaigns.authoring.defaults import CampaignDefaults, check_defaults
from campaigns.errors import InputError
from campaigns.storage.store import Store
from campaigns.storage.tables import console_settings

__all__ = [
    "APPROVAL_NONE",
    "APPROVAL_REQUIRED",
    "CLINIC_FIELDS",
    "approval",
    "clinic_details",
    "save_approval",
    "save_clinic_details",
]

APPROVAL_REQUIRED = "required"
APPROVAL_NONE = "none"
CLINIC_FIELDS = tuple(f.name for f in fields(CampaignDefaults))
_CLINIC = "clinic"
_APPROVAL = "approval"


def _get(store: Store, key: str) -> object:
    with store.connect() as conn:
        value = conn.scalar(select(console_settings.c.value).where(console_settings.c.key == key))
    return None if value is None else json.loads(value)


def _put(conn: Connection, key: str, value: object, now: datetime) -> None:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    changed = conn.execute(
        update(console_settings)
        .where(console_settings.c.key == key)
        .values(value=text, updated_at=now)
    ).rowcount
    if not changed:
        conn.execute(insert(console_settings).values(key=key, value=text, updated_at=now))


def clinic_details(store: Store) -> CampaignDefaults:
    """The clinic details kept in the console (all empty until an admin sets them)."""
    value = _get(store, _CLINIC)
    if not isinstance(value, dict):
        return CampaignDefaults()
    return CampaignDefaults(**{k: v for k, v in value.items() if k in CLINIC_FIELDS})


def save_clinic_details(
    conn: Connection, values: dict[str, str], *, now: datetime
) -> CampaignDefaults:
    """Check and keep the clinic details (InputError naming the field; nothing kept then)."""
    details = CampaignDefaults(
        **{key: (values.get(key) or "").strip() or None for key in CLINIC_FIELDS}
    )
    check_defaults(details)
    _put(conn, _CLINIC, asdict(details), now)
    return details


def approval(store: Store) -> str:
    """ "required" (default) or "none"."""
    value = _get(store, _APPROVAL)
    return APPROVAL_NONE if value == APPROVAL_NONE else APPROVAL_REQUIRED


def save_approval(conn: Connection, value: str, *, now: datetime) -> None:
    if value not in (APPROVAL_REQUIRED, APPROVAL_NONE):
        raise InputError(f"{value!r}: approval is 'required' or 'none'", field="approval")
    _put(conn, _APPROVAL, value, now)
