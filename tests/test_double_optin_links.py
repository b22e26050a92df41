"""Double opt-in links name one request and one round; every request owed gets its email.

On a SQLite file and on PostgreSQL, through the real sign-up API, worker tick and
`serve` app (review 2 of issue 18, point 1).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.errors import InputError
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.publish import load_version, publish
from campaigns.storage.tables import confirmations, contacts, enrollments
from campaigns.web.app import create_app
from tests.conftest import write_clinic_campaign
from tests.test_double_optin import PUBLIC, T0, TOKEN, Clock, confirm_path, emails, sign_up, tick


@pytest.fixture
def two(store, tmp_path: Path):
    """(client, clock, outbox): 'ketamine-and-sleep' (single opt-in) and 'sleep-two'
    (`confirm: double`, 7 days) published, sign-ups through the API."""
    folder = write_clinic_campaign(tmp_path / "clinic")
    with store.begin() as conn:
        publish(conn, load_folder(folder), now=T0)
    other = write_clinic_campaign(tmp_path / "other")
    spec = other / "campaign.yaml"
    text = spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-two", 1)
    spec.write_text(text + "confirm: double\nconfirm_within: 7d\n")
    with store.begin() as conn:
        publish(conn, load_folder(other), now=T0)
    outbox = tmp_path / "outbox"
    store.settings = store.settings.model_copy(update={"public_url": PUBLIC, "outbox": str(outbox)})
    clock = Clock()
    app = create_app(store, clock=clock, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app, base_url=PUBLIC) as client:
        yield client, clock, outbox


def enrolled(store) -> list[tuple[str, str]]:
    with store.connect() as conn:
        return sorted(
            conn.execute(
                select(contacts.c.email, enrollments.c.campaign).join(
                    enrollments, enrollments.c.contact_id == contacts.c.id
                )
            ).all()
        )


def test_an_old_link_does_not_confirm_the_sign_up_that_got_its_id(store, two):
    client, clock, outbox = two
    # Alex is held by the single opt-in campaign, so the expired request's row is deleted.
    assert sign_up(client, "alex@example.com").status_code == 201
    assert sign_up(client, "alex@example.com", campaign="sleep-two").status_code == 202
    tick(store, T0)
    (old,) = {confirm_path(m) for m in emails(outbox)["alex@example.com"] if "/c/" in str(m)}
    with store.connect() as conn:
        alex_request = conn.scalar(select(confirmations.c.id))
    clock.now = T0 + timedelta(days=8)
    tick(store, clock.now)
    assert sign_up(client, "robin@example.com", campaign="sleep-two").status_code == 202
    with store.connect() as conn:
        ids = list(conn.scalars(select(confirmations.c.id)))
    if store.is_sqlite:
        assert ids == [alex_request]  # SQLite gave Robin's request Alex's old id
    page = client.get(old)
    assert page.status_code == 200 and "expired" in page.text.lower()
    answer = client.post(old)
    assert answer.status_code == 410
    assert enrolled(store) == [("alex@example.com", "ketamine-and-sleep")]
    with store.connect() as conn:
        (robin,) = conn.execute(select(confirmations)).all()
    assert robin.confirmed_at is None and robin.expired_at is None  # still Robin's to confirm


def test_a_link_of_an_earlier_round_does_not_confirm_the_new_round(store, two):
    client, clock, outbox = two
    assert sign_up(client, "pat@example.com", campaign="sleep-two").status_code == 202
    tick(store, T0)
    clock.now = T0 + timedelta(days=8)
    tick(store, clock.now)  # expired: Pat had nothing else, the address is gone
    assert sign_up(client, "pat@example.com", campaign="sleep-two").status_code == 202
    tick(store, clock.now)
    first, second = emails(outbox)["pat@example.com"]
    assert client.post(confirm_path(first)).status_code == 410
    assert enrolled(store) == []
    assert client.post(confirm_path(second)).status_code == 200
    assert enrolled(store) == [("pat@example.com", "sleep-two")]


def test_two_requests_of_one_contact_due_in_one_tick_both_get_their_email(store, two):
    client, _clock, outbox = two
    assert sign_up(client, "pat@example.com", confirm="double").status_code == 202
    assert sign_up(client, "pat@example.com", campaign="sleep-two").status_code == 202
    tick(store, T0)
    mail = emails(outbox)["pat@example.com"]
    assert len(mail) == 2
    with store.connect() as conn:
        rows = conn.execute(select(confirmations.c.send_due_at, confirmations.c.sent_at)).all()
    assert [(due, sent) for due, sent in rows] == [(None, T0), (None, T0)]
    for message in mail:
        assert client.post(confirm_path(message)).status_code == 200
    assert enrolled(store) == [
        ("pat@example.com", "ketamine-and-sleep"),
        ("pat@example.com", "sleep-two"),
    ]


def test_a_known_patients_sign_up_changes_them_only_once_confirmed(store, two):
    client, _clock, outbox = two
    assert sign_up(client, "pat@example.com", attributes={"patient_type": "new"}).status_code == 201
    with store.connect() as conn:
        before = conn.execute(select(contacts).where(contacts.c.email == "pat@example.com")).one()
    # Anyone can post Pat's address to the public form: nothing of Pat's changes...
    stranger = sign_up(
        client,
        "pat@example.com",
        campaign="sleep-two",
        first_name="Someone Else",
        attributes={"patient_type": "returning", "clinic": "north"},
        language="es",
    )
    assert stranger.status_code == 202
    sleep_two = store_campaign(store, "sleep-two")
    library = Signup("pat@example.com", "Pat", None, None, "form", tags="anxiety", language="es")
    assert enroll(store, sleep_two, library, now=T0).awaiting == 1
    with store.connect() as conn:
        after = conn.execute(select(contacts).where(contacts.c.email == "pat@example.com")).one()
    assert after == before
    # ...until Pat confirms: then the newest sign-up's tags and language apply (it
    # replaced what the first one held), and the name stays Pat's.
    tick(store, T0)
    (link,) = {confirm_path(m) for m in emails(outbox)["pat@example.com"] if "/c/" in str(m)}
    assert client.post(link).status_code == 200
    with store.connect() as conn:
        confirmed = conn.execute(
            select(contacts).where(contacts.c.email == "pat@example.com")
        ).one()
    assert (confirmed.tags, confirmed.attributes, confirmed.language, confirmed.first_name) == (
        ";anxiety;",
        before.attributes,
        "es",
        before.first_name,
    )
    assert enrolled(store) == [
        ("pat@example.com", "ketamine-and-sleep"),
        ("pat@example.com", "sleep-two"),
    ]


@pytest.mark.parametrize("option", ["restart", "force"])
def test_restart_and_force_are_refused_with_double_opt_in(store, two, option):
    client, _clock, _outbox = two
    assert sign_up(client, "pat@example.com", campaign="sleep-two").status_code == 202
    signup = Signup("pat@example.com", "Pat", None, None, "front desk")
    for campaign, double in (
        (store_campaign(store, "sleep-two"), None),
        (store_campaign(store, "ketamine-and-sleep"), True),
    ):
        with pytest.raises(InputError, match="cannot be used with double opt-in") as raised:
            enroll(store, campaign, signup, now=T0, double=double, **{option: True})
        assert raised.value.field == f"--{option}"
    assert enrolled(store) == []


def store_campaign(store, name: str):
    with store.connect() as conn:
        return load_version(conn, name)
