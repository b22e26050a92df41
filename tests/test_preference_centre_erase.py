"""The preference centre's "Erase me" on SQLite: the person's bytes go without rewriting the
whole file inside the web request (review 1, finding 7), while `contacts forget` still
rewrites it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, update
from starlette.testclient import TestClient

from campaigns.compliance.privacy import forget_contact
from campaigns.storage.tables import contacts, events
from campaigns.web.app import create_app
from senders.file import NullSender
from tests.test_preference_centre import choose
from tests.test_privacy import HELD, database_bytes, hold_sign_ups
from tests.test_unsubscribe import NOW, enroll_pat, token_for

pytestmark = pytest.mark.sqlite_only

ADDRESS = "zebulon.quill@example.org"


@pytest.fixture
def client(store):
    app = create_app(store, environ={}, clock=lambda: NOW, sender_for=lambda _c: NullSender())
    with TestClient(app, base_url="https://mail.clinic.test") as c:
        yield c


def free_pages(store) -> int:
    """Pages on SQLite's freelist: VACUUM, which rewrites the file, leaves none."""
    with sqlite3.connect(Path(store.path)) as db:
        return db.execute("PRAGMA freelist_count").fetchone()[0]


def with_free_space(store) -> None:
    """Rows written and deleted, as unsubscribes and expired events come and go."""
    rows = [
        {
            "provider": "test",
            "provider_event_id": f"e{i}",
            "type": "delivered",
            "occurred_at": NOW,
            "created_at": NOW,
        }
        for i in range(3000)
    ]
    with store.begin() as conn:
        conn.execute(insert(events), rows)
    with store.begin() as conn:
        conn.execute(delete(events).where(events.c.provider == "test"))


def test_erase_me_zeroes_the_person_without_rewriting_the_file(store, clinic, client, tmp_path):
    token, claim = token_for(store, enroll_pat(store, clinic, ADDRESS, "Philippa"))
    hold_sign_ups(store, tmp_path)
    enroll_pat(store, clinic, "kim.other@example.org", "Kimberley")
    # Choices and an attribute written and cleared: the row was rewritten in other sizes.
    for choice in ("discreet", "fewer"):
        choose(client, token, "p", choice=choice, value="on")
    choose(client, token, "p", choice="pause", **{"for": "1m"})
    with store.begin() as conn:
        conn.execute(
            update(contacts)
            .where(contacts.c.id == claim.contact_id)
            .values(attributes='{"Phone": "555 0100"}', tags=";sleep;")
        )
    with_free_space(store)
    assert free_pages(store) > 0

    done = choose(client, token, "p", choice="erase", confirm="yes")

    assert "Your data is erased" in done.text
    held = database_bytes(store)
    assert b"zebulon" not in held.lower() and b"Philippa" not in held
    assert not [value for value in HELD if value.encode() in held]
    assert b"Kimberley" in held
    assert free_pages(store) > 0  # not vacuumed: the web request never rewrote the file


def test_contacts_forget_still_rewrites_the_file(store, clinic):
    enroll_pat(store, clinic, ADDRESS, "Philippa")
    with_free_space(store)
    assert free_pages(store) > 0

    report = forget_contact(store, ADDRESS, now=NOW)

    assert report.scrubbed
    assert free_pages(store) == 0
    assert b"zebulon" not in database_bytes(store).lower()
