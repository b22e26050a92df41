"""A known contact's double opt-in sign-up changes them only once they confirm (issue 18),
on a SQLite file and on PostgreSQL.

Patients sign up through the real sign-up API or `dripmail import --double-opt-in`,
confirmation emails go through a worker's tick and the file sender, the patient
confirms on the real `serve` app; time moves by the engine's `now`.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from campaigns.authoring.spec import load_folder
from campaigns.compliance.privacy import export_contact
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.sender_pool import SenderPool
from campaigns.delivery.webhook_endpoints import add_endpoint
from campaigns.planning.contacts import split_tags
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.publish import publish
from campaigns.storage.tables import (
    confirmations,
    contacts,
    deliveries,
    enrollments,
    webhook_messages,
)
from campaigns.web.app import create_app
from cli import app as cli_app
from tests.languages import write_spanish_clinic
from tests.test_conditions import add_conditions
from tests.test_double_optin import PUBLIC, T0, TOKEN, Clock, confirm_path, emails, tick, urls

CAMPAIGN = "ketamine-and-sleep"  # double opt-in, in English and Spanish
OTHER = "sleep-tips"  # single opt-in, English: the patient's running campaign
ADDRESS = "returning.patient@clinic-mail.example"
REFERRER = "Dr Quimby-Farthingale"  # a held attribute value nothing else holds
SPANISH_FIRST = "La ketamina y el sueño"
CONFIRM_SUBJECT = "Please confirm your email for Balanced Ketamine"
HELD = {"patient_type": "returning", "referrer": REFERRER}
# Step 1 goes only to a returning patient: by tag (import) or by attribute (the API).
CONDITION = {"api": "attributes: {patient_type: returning}", "import": "tags_any: [returning]"}


@pytest.fixture
def held(store, tmp_path: Path, request):
    """(client, clock, outbox, campaign, other): ketamine-and-sleep with `confirm:
    double`, its Spanish copy and a condition on its first step (by the test's
    parameter), and sleep-tips, single opt-in, into which the patient is enrolled
    two days before T0 (English, no tags, one attribute)."""
    folder = write_spanish_clinic(tmp_path / "clinic")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + "confirm: double\nconfirm_within: 7d\n")
    campaign = add_conditions(folder, {0: CONDITION[request.param]})
    other_spec = write_spanish_clinic(tmp_path / "other") / "campaign.yaml"
    other_spec.write_text(other_spec.read_text().replace(f"name: {CAMPAIGN}", f"name: {OTHER}", 1))
    other = load_folder(other_spec.parent)
    with store.begin() as conn:
        publish(conn, campaign, now=T0)
    outbox = tmp_path / "outbox"
    store.settings = store.settings.model_copy(update={"public_url": PUBLIC, "outbox": str(outbox)})
    before = T0 - timedelta(days=2)
    signup = Signup(
        ADDRESS, "Araminta", "Europe/London", None, "front desk",
        attributes={"clinic": "Leeds"}, language="en",
    )  # fmt: skip
    enroll(store, other, signup, now=before)
    tick(store, before)  # sleep-tips' welcome goes
    clock = Clock()
    app = create_app(store, clock=clock, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app, base_url=PUBLIC) as client:
        yield client, clock, outbox, campaign, other


def api_sign_up(client, status: int = 202, **extra):
    body = {
        "email": ADDRESS,
        "first_name": "Araminta",
        "timezone": "Europe/London",
        "campaign": CAMPAIGN,
        "consent": {"source": "booking system", "text": "Yes, email me the sleep series"},
        **extra,
    }
    answer = client.post(
        "/api/v1/enrollments", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == status, answer.text


def import_sign_up(store, tmp_path: Path, tags: str, attributes: dict, language: str):
    path = tmp_path / "booking.csv"
    names = ",".join(attributes)
    path.write_text(
        f"email,first_name,timezone,tags,language,{names}\n"
        f"{ADDRESS},Araminta,Europe/London,{tags},{language},{','.join(attributes.values())}\n"
    )
    result = CliRunner().invoke(
        cli_app,
        ["import", CAMPAIGN, str(path), "--consent", "booking system", "--double-opt-in",
         "--now", T0.isoformat(), "--db", store.url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "awaiting confirmation 1" in result.stdout


def the_contact(store):
    with store.connect() as conn:
        row = conn.execute(
            select(contacts.c.tags, contacts.c.attributes, contacts.c.language).where(
                contacts.c.email == ADDRESS
            )
        ).one()
    return split_tags(row.tags), json.loads(row.attributes or "{}"), row.language


def first_email_of(store, campaign: str):
    """(step position, status, due time) of the campaign's first step for the patient."""
    with store.connect() as conn:
        return conn.execute(
            select(deliveries.c.position, deliveries.c.status, deliveries.c.due_at)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(enrollments.c.campaign == campaign)
            .order_by(deliveries.c.position)
        ).first()


def received(outbox: Path, subject: str):
    """The patient's one email with this subject, or None."""
    found = [m for m in emails(outbox)[ADDRESS] if m["Subject"] == subject]
    assert len(found) <= 1
    return found[0] if found else None


UNCHANGED = ([], {"clinic": "Leeds"}, "en")


@pytest.mark.parametrize("held", ["api", "import"], indirect=True)
def test_a_known_patient_is_changed_when_they_confirm_and_not_before(
    store, held, tmp_path, request, caplog
):
    client, clock, outbox, _campaign, other = held
    via = request.node.callspec.params["held"]
    add_endpoint(store, "http://127.0.0.1:9/hook", ["enrolled", "confirmed"],
                 include_email=True, now=T0)  # fmt: skip
    # An earlier sign-up's changes are replaced by the newest one's.
    if via == "api":
        api_sign_up(client, attributes={"patient_type": "new"}, language="fr")
        api_sign_up(client, attributes=HELD, language="es", confirm="double")
        expected = ([], {"clinic": "Leeds", **HELD}, "es")
    else:
        import_sign_up(store, tmp_path, "first-try", {"patient_type": "new"}, "fr")
        import_sign_up(store, tmp_path, "returning", HELD, "es")
        expected = (["returning"], {"clinic": "Leeds", **HELD}, "es")
    assert the_contact(store) == UNCHANGED
    waiting = export_contact(store, ADDRESS)["confirmations"]
    assert [c["held_changes"] for c in waiting] == [
        {
            "tags": ["returning"] if via == "import" else [],
            "attributes": HELD,
            "language": "es",
        }
    ]

    with caplog.at_level(logging.DEBUG):
        tick(store, T0)  # the confirmation, and sleep-tips' next email as it was planned
        confirmation = received(outbox, CONFIRM_SUBJECT)
        assert received(outbox, other.steps[1].subject)  # sleep-tips' next, in English
        page = client.get(confirm_path(confirmation))  # a link scanner, or the patient
        assert page.status_code == 200
        assert the_contact(store) == UNCHANGED

        clock.now = T0 + timedelta(hours=1)
        answer = client.post(confirm_path(confirmation))
        assert answer.status_code == 200 and "your email is confirmed" in answer.text
        assert the_contact(store) == expected
        assert export_contact(store, ADDRESS)["confirmations"][0]["held_changes"] is None
        tick(store, first_email_of(store, CAMPAIGN).due_at)  # min_gap after sleep-tips'

    # The first step, guarded by the held tag or attribute, in its Spanish copy.
    assert received(outbox, SPANISH_FIRST)
    assert first_email_of(store, CAMPAIGN)[:2] == (1, "sent")
    # Nothing held reached a log line or a webhook payload.
    assert REFERRER not in caplog.text and ADDRESS not in caplog.text
    with store.connect() as conn:
        payloads = [json.loads(p) for p in conn.scalars(select(webhook_messages.c.payload))]
    assert sorted(p["type"] for p in payloads) == ["confirmed", "enrolled"]
    assert not any(REFERRER in json.dumps(p) or "returning" in json.dumps(p) for p in payloads)


@pytest.mark.parametrize("held", ["api"], indirect=True)
def test_an_expired_request_applies_nothing(store, held):
    client, _clock, outbox, _campaign, _other = held
    api_sign_up(client, attributes=HELD, language="es")
    tick(store, T0)
    confirmation = received(outbox, CONFIRM_SUBJECT)
    report = tick(store, T0 + timedelta(days=7, minutes=1))
    assert report.expired_signups == 1
    assert client.post(confirm_path(confirmation)).status_code == 410
    assert the_contact(store) == UNCHANGED
    assert export_contact(store, ADDRESS)["confirmations"] == []  # kept for sleep-tips


def booking_import(store, tmp_path: Path, attributes: dict, language: str):
    """The booking system's nightly import into sleep-tips, single opt-in: applied at once."""
    path = tmp_path / "nightly.csv"
    path.write_text(
        f"email,language,{','.join(attributes)}\n{ADDRESS},{language},{','.join(attributes.values())}\n"
    )
    result = CliRunner().invoke(
        cli_app,
        ["import", OTHER, str(path), "--consent", "booking system",
         "--now", (T0 + timedelta(minutes=5)).isoformat(), "--db", store.url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def confirm_when_sent(store, client, clock, outbox):
    """The patient presses the confirmation email's button, an hour after T0."""
    tick(store, T0)
    clock.now = T0 + timedelta(hours=1)
    # In the contact's language now (Spanish): found by its link, not its subject.
    (confirmation,) = [m for m in emails(outbox)[ADDRESS] if any("/c/" in u for u in urls(m))]
    answer = client.post(confirm_path(confirmation))
    assert answer.status_code == 200 and "su correo está confirmado" in answer.text


@pytest.mark.parametrize("held", ["api"], indirect=True)
def test_a_later_single_opt_in_sign_up_wins_over_the_older_held_one(store, held, tmp_path):
    client, clock, outbox, _campaign, _other = held
    # The web form, double opt-in: held. Then the booking system, single opt-in: at once.
    api_sign_up(client, attributes={"patient_type": "new", "referrer": REFERRER}, language="fr")
    booking_import(store, tmp_path, {"patient_type": "returning"}, "es")
    newer = ([], {"clinic": "Leeds", "patient_type": "returning"}, "es")
    assert the_contact(store) == newer

    confirm_when_sent(store, client, clock, outbox)

    # The newer language and patient_type stand; the referrer nobody changed since is added.
    assert the_contact(store) == ([], {**newer[1], "referrer": REFERRER}, "es")


@pytest.mark.parametrize("held", ["api"], indirect=True)
def test_the_patients_own_language_choice_wins_over_the_older_held_one(store, held):
    client, clock, outbox, _campaign, _other = held
    api_sign_up(client, attributes=HELD, language="fr")
    # On the preference centre of sleep-tips' welcome email, the patient picks Spanish.
    (welcome,) = emails(outbox)[ADDRESS]
    (link,) = {u for u in urls(welcome) if "/u/" in u}
    token = link.rsplit("/u/", 1)[1]
    page = client.post(f"/p/{token}", data={"choice": "language", "language": "es"})
    assert page.status_code == 200 and "Se ha guardado su idioma." in page.text

    confirm_when_sent(store, client, clock, outbox)

    assert the_contact(store) == ([], {"clinic": "Leeds", **HELD}, "es")


@pytest.mark.parametrize("held", ["api"], indirect=True)
def test_changes_held_without_what_they_replace_apply_as_held(store, held, tmp_path):
    """A request held by the first version of this code (no "before") applies as it is."""
    client, clock, outbox, _campaign, _other = held
    api_sign_up(client, attributes={"patient_type": "new"}, language="fr")
    booking_import(store, tmp_path, {"patient_type": "returning"}, "es")
    with store.begin() as conn:
        conn.execute(
            update(confirmations).values(
                held_changes='{"attributes": {"patient_type": "new"}, "language": "fr"}'
            )
        )
    confirm_when_sent(store, client, clock, outbox)
    assert the_contact(store) == ([], {"clinic": "Leeds", "patient_type": "new"}, "fr")


@pytest.mark.parametrize("held", ["api"], indirect=True)
def test_held_changes_an_older_version_left_behind_are_cleared_by_the_worker(store, held):
    """During a rolling upgrade an old `serve` confirms, or an old worker expires, and
    leaves what the request held; this version's worker clears it (hourly: a scan)."""
    client, _clock, _outbox, _campaign, _other = held
    api_sign_up(client, attributes=HELD, language="es")
    with store.connect() as conn:
        left = conn.scalar(select(confirmations.c.held_changes))

    def shown():
        return [c["held_changes"] for c in export_contact(store, ADDRESS)["confirmations"]]

    def old_code_leaves(**values):
        with store.begin() as conn:
            conn.execute(
                update(confirmations).values(held_changes=left, send_due_at=None, **values)
            )

    old_code_leaves(confirmed_at=T0)  # an old `serve`'s confirm
    assert shown() == [{"tags": [], "attributes": HELD, "language": "es"}]
    pool = SenderPool(None, store.settings)
    try:
        worker = Dispatcher(store, pool)
        worker.run(now=T0)
        assert shown() == [None]
        old_code_leaves(confirmed_at=None, expired_at=T0 + timedelta(minutes=5))  # old expiry
        worker.run(now=T0 + timedelta(minutes=30))
        assert shown()[0] is not None  # not every tick: at most once an hour
        worker.run(now=T0 + timedelta(minutes=61))
        assert shown() == [None]
    finally:
        pool.close()
