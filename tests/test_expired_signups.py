"""Expired double opt-in sign-ups leave no address behind (issue 18, point 1), on a
SQLite file and on PostgreSQL.

Sign-ups go through the real sign-up API, confirmations through a worker's tick and the
file sender, patients confirm on the real `serve` app; 7 days pass by the engine's `now`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

import campaigns.storage.store as store_module
from campaigns.authoring.spec import load_folder
from campaigns.compliance.privacy import forget_contact
from campaigns.planning.confirmations import confirmation_counts
from campaigns.planning.conversions import ContactEvent, record_event
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.publish import publish
from campaigns.storage.store import Store
from campaigns.storage.tables import confirmations, contacts, enrollments, suppressions
from campaigns.web.app import create_app
from tests.conftest import write_clinic_campaign
from tests.test_double_optin import PUBLIC, T0, TOKEN, Clock, confirm_path, emails, tick
from tests.test_privacy import database_bytes

CAMPAIGN = "ketamine-and-sleep"
OTHER = "sleep-tips"
EXPIRED = T0 + timedelta(days=7, minutes=1)
HELD = ("Dr Quimby-Farthingale", "Dr Zanzibar-Hollowell")  # held attribute values


@pytest.fixture
def signups(store, tmp_path: Path):
    """(client, clock, outbox): the clinic campaign with `confirm: double` behind the
    real app, and a second, single opt-in campaign (`sleep-tips`, its goal `booked`)."""
    folder = write_clinic_campaign(tmp_path / "clinic")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + "confirm: double\nconfirm_within: 7d\n")
    other = write_clinic_campaign(tmp_path / "other") / "campaign.yaml"
    text = other.read_text().replace(f"name: {CAMPAIGN}", f"name: {OTHER}", 1)
    other.write_text(text + "goal: {event: booked, within: 30d}\n")
    with store.begin() as conn:
        publish(conn, load_folder(folder), now=T0)
    outbox = tmp_path / "outbox"
    store.settings = store.settings.model_copy(update={"public_url": PUBLIC, "outbox": str(outbox)})
    clock = Clock()
    app = create_app(store, clock=clock, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app, base_url=PUBLIC) as client:
        yield client, clock, outbox, load_folder(other.parent)


def sign_up(client, address: str, name: str, **extra):
    body = {
        "email": address,
        "first_name": name,
        "timezone": "Europe/London",
        "campaign": CAMPAIGN,
        "consent": {"source": "clinic website form", "text": "Yes, email me the sleep series"},
        **extra,
    }
    return client.post(
        "/api/v1/enrollments", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )


def held(store, address: str) -> int:
    """How many contact rows hold this address."""
    with store.connect() as conn:
        return conn.scalar(select(func.count()).where(contacts.c.email == address))


def test_ten_sign_ups_four_confirm_six_expired_addresses_leave_no_byte(store, signups):
    client, clock, outbox, other = signups
    people = [(f"reader.{i}@clinic-mail.example", f"Quennell{i}") for i in range(10)]
    # Enrolled in the other campaign first; signs up for this one and never confirms.
    elsewhere = ("enrolled.elsewhere@clinic-mail.example", "Wilhelmina")
    enroll(store, other, Signup(*elsewhere, "Europe/London", None, "front desk"), now=T0)
    for address, name in [*people, elsewhere]:
        answer = sign_up(client, address, name)
        assert answer.status_code == 202, answer.text
    # Known contacts signing up (again): what they would change is held, unconfirmed.
    for address, name, value in ((*elsewhere, HELD[0]), (*people[-1], HELD[1])):
        answer = sign_up(client, address, name, attributes={"referrer": value}, language="es")
        assert answer.status_code == 202, answer.text
    tick(store, T0)
    mail = emails(outbox)
    confirmed, strangers = people[:4], people[4:]
    for i, (address, _name) in enumerate(confirmed):
        clock.now = T0 + timedelta(hours=1 + i)
        assert client.post(confirm_path(mail[address][0])).status_code == 200

    report = tick(store, EXPIRED)

    assert report.expired_signups == 7
    for address, _name in [*confirmed, elsewhere]:
        assert held(store, address) == 1
    for address, _name in strangers:
        assert held(store, address) == 0
    with store.connect() as conn:
        # The 6 expired requests stay counted (ids and times only, on tombstones); the
        # request of the contact kept for their other enrollment is gone.
        counts = confirmation_counts(conn)[CAMPAIGN]
        assert (counts.confirmed, counts.expired, counts.waiting) == (4, 6, 0)
        kept_id = conn.scalar(select(contacts.c.id).where(contacts.c.email == elsewhere[0]))
        assert conn.scalar(select(func.count()).where(confirmations.c.contact_id == kept_id)) == 0
        assert (
            conn.scalar(select(enrollments.c.campaign).where(enrollments.c.contact_id == kept_id))
            == OTHER
        )
        # Nobody opted out: no address was suppressed.
        assert conn.scalar(select(func.count()).select_from(suppressions)) == 0
    if store.is_sqlite:
        scanned = database_bytes(store)
        for address, name in strangers:
            assert address.encode() not in scanned
            assert name.encode() not in scanned
        for value in HELD:  # the held changes of the erased and of the kept contact
            assert value.encode() not in scanned
        for address, name in [*confirmed, elsewhere]:  # the scan does see what is kept
            assert address.encode() in scanned and name.encode() in scanned

    # The old link says expired; a later genuine sign-up of an erased address works.
    assert client.post(confirm_path(mail[strangers[0][0]][0])).status_code == 410
    clock.now = EXPIRED + timedelta(days=2)
    assert sign_up(client, *strangers[0]).status_code == 202
    tick(store, clock.now)
    again = emails(outbox)[strangers[0][0]]
    assert len(again) == 2 and confirm_path(again[1]) != confirm_path(again[0])
    answer = client.post(confirm_path(again[1]))
    assert answer.status_code == 200 and "your email is confirmed" in answer.text
    with store.connect() as conn:
        enrolled = conn.scalar(
            select(func.count())
            .select_from(enrollments)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(contacts.c.email == strangers[0][0], enrollments.c.campaign == CAMPAIGN)
        )
    assert enrolled == 1


def test_tags_given_with_the_sign_up_keep_nothing_and_a_recorded_event_keeps_the_contact(
    store, signups
):
    _client, _clock, _outbox, other = signups
    tagged = ("tagged.stranger@clinic-mail.example", "Ottoline")
    booked = ("booked.patient@clinic-mail.example", "Bartholomew")
    for address, name in (tagged, booked):
        signup = Signup(address, name, "Europe/London", None, "front desk", tags="newsletter")
        assert enroll(store, other, signup, now=T0, double=True).pending == 1
    # The clinic's booking system says the second one booked: a real patient.
    record_event(store, ContactEvent("booked"), email=booked[0], source="booking system", now=T0)
    tick(store, T0)

    report = tick(store, EXPIRED)

    assert report.expired_signups == 2
    assert held(store, tagged[0]) == 0
    assert held(store, booked[0]) == 1
    with store.connect() as conn:
        booked_id = conn.scalar(select(contacts.c.id).where(contacts.c.email == booked[0]))
        assert conn.scalar(select(func.count()).where(confirmations.c.contact_id == booked_id)) == 0
        assert conn.scalar(select(func.count()).select_from(suppressions)) == 0
    if store.is_sqlite:
        scanned = database_bytes(store)
        assert tagged[0].encode() not in scanned and tagged[1].encode() not in scanned


@pytest.fixture
def built_without_secure_delete(monkeypatch):
    """SQLite as built without SECURE_DELETE (not Debian's): an updated row's old copy
    stays in the page's free space unless dripmail turns secure_delete on."""
    pragmas = store_module._sqlite_pragmas

    def off_first(dbapi_connection, record):
        dbapi_connection.execute("PRAGMA secure_delete=OFF")
        pragmas(dbapi_connection, record)

    monkeypatch.setattr(store_module, "_sqlite_pragmas", off_first)


@pytest.mark.sqlite_only
def test_held_changes_replaced_then_expired_leave_no_byte_on_any_sqlite_build(
    built_without_secure_delete, tmp_path
):
    store = Store(f"sqlite:///{tmp_path / 'plain.db'}")
    store.settings = store.settings.model_copy(update={"outbox": str(tmp_path / "outbox")})
    try:
        folder = write_clinic_campaign(tmp_path / "clinic")
        campaign = load_folder(folder)
        people = [f"reader.{i}@clinic-mail.example" for i in range(40)]
        for address in people:  # new contacts: made at once, nothing held
            enroll(store, campaign, Signup(address, consent="front desk"), now=T0, double=True)
        for round_, at in enumerate((T0, T0 + timedelta(days=2))):
            for i, address in enumerate(people):  # known now: held, then replaced
                value = f"Held{round_}x{i:03d}" + "z" * (i * 7 % 40)
                signup = Signup(address, consent="front desk", attributes={"referrer": value})
                enroll(store, campaign, signup, now=at, double=True)
            tick(store, at)
        assert b"Held1x000" in database_bytes(store)  # the scan sees a held value
        tick(store, EXPIRED + timedelta(days=2))
        assert re.findall(rb"Held\dx\d{3}", database_bytes(store)) == []
    finally:
        store.close()


def big_notes(round_: int, count: int) -> dict[str, str]:
    """Attributes too big for one page (30 x 190 chars): the held JSON spills into
    overflow pages, which a freed row returns to the freelist whole."""
    return {f"note{k:02d}": f"Big{round_}x{k:02d}" + "q" * 180 for k in range(count)}


@pytest.mark.sqlite_only
def test_big_held_changes_replaced_then_expired_leave_no_byte_on_any_sqlite_build(
    built_without_secure_delete, tmp_path
):
    store = Store(f"sqlite:///{tmp_path / 'plain.db'}")
    store.settings = store.settings.model_copy(update={"outbox": str(tmp_path / "outbox")})
    try:
        campaign = load_folder(write_clinic_campaign(tmp_path / "clinic"))
        address = "reader@clinic-mail.example"
        enroll(store, campaign, Signup(address, consent="front desk"), now=T0, double=True)
        for round_, at in enumerate((T0, T0 + timedelta(days=2))):
            signup = Signup(address, consent="front desk", attributes=big_notes(round_, 30))
            enroll(store, campaign, signup, now=at, double=True)
            tick(store, at)
        assert b"Big1x00" in database_bytes(store)  # the scan sees a held value
        tick(store, EXPIRED + timedelta(days=2))
        assert re.findall(rb"Big\dx\d\d", database_bytes(store)) == []
    finally:
        store.close()


@pytest.mark.sqlite_only
def test_big_held_changes_replaced_then_erase_me_leave_no_byte_on_any_sqlite_build(
    built_without_secure_delete, tmp_path
):
    store = Store(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        campaign = load_folder(write_clinic_campaign(tmp_path / "clinic"))
        address = "reader@clinic-mail.example"
        enroll(store, campaign, Signup(address, consent="front desk"), now=T0, double=True)
        for round_, count in enumerate((30, 1, 1)):  # big, then replaced by small ones
            signup = Signup(address, consent="front desk", attributes=big_notes(round_, count))
            enroll(store, campaign, signup, now=T0 + timedelta(hours=round_), double=True)
        assert b"Big2x00" in database_bytes(store)
        forget_contact(store, address, now=T0 + timedelta(days=1), rewrite=False)  # Erase me
        assert re.findall(rb"Big\dx\d\d", database_bytes(store)) == []
    finally:
        store.close()
