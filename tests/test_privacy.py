"""`dripmail contacts export` and `forget`: what is held on a person, and erasing it for good."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from campaigns.authoring.spec import load_folder
from campaigns.compliance.privacy import export_contact, forget_contact
from campaigns.compliance.sendgrid_events import apply_sendgrid_events
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.signups import Signup
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import contacts, deliveries, enrollments, suppressions
from cli import app as cli_app
from senders.file import FileSender
from tests.conftest import write_clinic_campaign
from tests.helpers import utc

ADDRESS = "zebulon.quill@example.org"
NAME = "Philippa"
NOW = utc("2026-03-02T12:00")
runner = CliRunner()


def dripmail(*args: str):
    return runner.invoke(cli_app, list(args), env={"COLUMNS": "200"})


def enroll_person(store, campaign, address=ADDRESS, name=NAME) -> int:
    signup = Signup(address, name, "Europe/London", "2026-03-02T10:00", "clinic sign-up form")
    return enroll(store, campaign, signup, now=NOW).enrollment_ids[0]


# Attribute values a known contact's double opt-in sign-ups held (the second replaced
# the first), not yet confirmed: the patient's data, erased with them.
HELD = ("Dr Zanzibar-Hollowell", "Dr Quimby-Farthingale")


def hold_sign_ups(store, tmp_path: Path, address: str = ADDRESS) -> None:
    """Two double opt-in sign-ups of a known contact for a second campaign, each holding
    an attribute value on the waiting request (planning/held_changes.py)."""
    spec = write_clinic_campaign(tmp_path / "second") / "campaign.yaml"
    spec.write_text(spec.read_text().replace("name: ketamine-and-sleep", "name: second", 1))
    second = load_folder(spec.parent)
    for value in HELD:
        signup = Signup(address, consent="clinic sign-up form", attributes={"referrer": value})
        assert enroll(store, second, signup, now=NOW, double=True).pending <= 1
    assert HELD[1].encode() in database_bytes(store)


def database_bytes(store: Store) -> bytes:
    """The SQLite file and its -wal and -shm files, as they are on disk."""
    path = Path(store.path)
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


@pytest.fixture
def person(store, clinic, tmp_path):
    """Someone enrolled, sent their first email, with provider events about it."""
    enrollment_id = enroll_person(store, clinic)
    enroll_person(store, clinic, "kim.other@example.org", "Kimberley")
    sender = FileSender(tmp_path / "outbox")
    Dispatcher(store, lambda _c: sender).run(now=utc("2026-03-02T15:00"))
    with store.connect() as conn:
        first = conn.scalar(
            select(deliveries.c.id).where(
                deliveries.c.enrollment_id == enrollment_id, deliveries.c.status == "sent"
            )
        )
    apply_sendgrid_events(
        store,
        [
            {
                "event": "delivered",
                "delivery_id": str(first),
                "sg_event_id": "e1",
                "email": ADDRESS,
            },
            {"event": "open", "delivery_id": str(first), "sg_event_id": "e2", "email": ADDRESS},
        ],
        now=utcnow(),
    )
    return enrollment_id, first


def test_export_prints_everything_held_on_the_person(store, clinic, person):
    enrollment_id, first = person
    result = dripmail("contacts", "export", ADDRESS.upper(), "--db", store.url)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["contact"]["email"] == ADDRESS
    assert data["contact"]["first_name"] == NAME
    assert data["contact"]["consent_source"] == "clinic sign-up form"
    assert data["contact"]["consent_at"].startswith("2026-03-02T12:00")
    assert [e["id"] for e in data["enrollments"]] == [enrollment_id]
    assert len(data["deliveries"]) == len(clinic.steps)
    assert {d["campaign"] for d in data["deliveries"]} == {"ketamine-and-sleep"}
    assert [e["type"] for e in data["events_by_delivery"][str(first)]] == ["delivered", "opened"]
    assert data["suppressed"] is False
    assert "Kimberley" not in result.stdout  # only this person


def test_export_of_someone_we_hold_nothing_on(store):
    data = export_contact(store, "nobody@example.org")
    assert data["contact"] is None
    assert data["enrollments"] == data["deliveries"] == []
    assert data["suppressed"] is False


@pytest.mark.sqlite_only
def test_forget_leaves_nothing_of_the_person_in_the_database_files(store, clinic, person, tmp_path):
    enrollment_id, first = person
    hold_sign_ups(store, tmp_path)
    assert ADDRESS.encode() in database_bytes(store)
    assert NAME.encode() in database_bytes(store)
    with store.connect() as conn:
        rows_before = len(conn.execute(select(deliveries)).all())

    result = dripmail("contacts", "forget", ADDRESS, "--db", store.url)

    assert result.exit_code == 0, result.output
    assert ADDRESS not in result.output and NAME not in result.output
    assert "pending emails cancelled" in result.stdout
    held = database_bytes(store)
    assert ADDRESS.encode() not in held
    assert NAME.encode() not in held
    assert b"zebulon" not in held.lower()
    assert not [value for value in HELD if value.encode() in held]
    assert b"Kimberley" in held  # others are untouched
    # Opaque rows stay for statistics; the person's pending emails are cancelled.
    with store.connect() as conn:
        kept = conn.execute(
            select(deliveries.c.id, deliveries.c.status).where(
                deliveries.c.enrollment_id == enrollment_id
            )
        ).all()
        assert len(conn.execute(select(deliveries)).all()) == rows_before
        tombstone = conn.execute(
            select(contacts).join(enrollments, enrollments.c.contact_id == contacts.c.id)
            .where(enrollments.c.id == enrollment_id)
        ).first()  # fmt: skip
        assert conn.execute(select(suppressions.c.address_hash)).scalars().all() == [
            store.address_hash(ADDRESS)
        ]
    assert dict(kept)[first] == "sent"
    assert {status for id_, status in kept if id_ != first} == {"cancelled"}
    assert (tombstone.email, tombstone.first_name, tombstone.consent_source) == (None, None, None)


def test_a_forgotten_address_is_never_enrolled_again(store, clinic, person, tmp_path):
    forget_contact(store, ADDRESS, now=utcnow())
    csv_file = tmp_path / "again.csv"
    csv_file.write_text(
        f"email,first_name,timezone,signed_up_at,consent\n{ADDRESS.title()},{NAME},UTC,,form\n"
    )
    report = import_csv(store, clinic, csv_file, now=utc("2026-04-01T12:00"))
    assert (report.enrolled, report.suppressed) == (0, 1)
    with store.connect() as conn:
        assert conn.scalar(select(contacts.c.id).where(contacts.c.email == ADDRESS)) is None
    assert export_contact(store, ADDRESS)["suppressed"] is True


def test_forgetting_an_address_we_do_not_hold_still_keeps_it_out(store, clinic):
    report = forget_contact(store, "someone.new@example.org", now=utcnow())
    assert report.contact_id is None
    outcome = enroll(
        store, clinic, Signup("someone.new@example.org", None, "UTC", None, "form"), now=NOW
    )
    assert outcome.suppressed == 1


def test_forget_twice_is_harmless(store, clinic, person):
    first = forget_contact(store, ADDRESS, now=utcnow())
    second = forget_contact(store, ADDRESS, now=utcnow())
    assert first.contact_id is not None and first.newly_suppressed
    assert second.contact_id is None and not second.newly_suppressed


def test_a_malformed_address_is_one_line_and_exit_2(store):
    result = dripmail("contacts", "forget", "not an address", "--db", store.url)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "EMAIL:" in result.stderr


def test_forget_clears_the_rows_and_vacuums(store, clinic, backend):
    enroll_person(store, clinic)
    report = forget_contact(store, ADDRESS, now=utcnow())
    assert report.scrubbed
    with store.connect() as conn:
        held = conn.execute(select(contacts.c.email, contacts.c.first_name)).all()
        assert held == [(None, None)]
        if backend == "postgresql":  # old row versions are gone: VACUUM ran on the table
            vacuumed = conn.execute(
                text(
                    "select last_vacuum from pg_stat_user_tables "
                    "where relname = 'contacts' and schemaname = current_schema()"
                )
            ).scalar()
            assert vacuumed is not None
    outcome = enroll(store, clinic, Signup(ADDRESS, NAME, "UTC", None, "form"), now=NOW)
    assert outcome.suppressed == 1


def test_an_erased_contact_keeps_none_of_their_choices(store, clinic):
    """Review 1, finding 8: the tombstone is an id and a creation time, nothing chosen."""
    enroll_person(store, clinic)
    with store.begin() as conn:
        conn.execute(
            update(contacts)
            .where(contacts.c.email == ADDRESS)
            .values(
                language="es",
                tags=";ketamine;",
                attributes='{"Phone": "555 0100"}',
                newsletter_unsubscribed_at=NOW,
                discreet=True,  # the preference centre's choices (migration 0022)
                paused_until=utc("2026-04-01T12:00"),
                min_gap_days=7,
            )
        )

    report = forget_contact(store, ADDRESS, now=NOW)

    with store.connect() as conn:
        tombstone = (
            conn.execute(select(contacts).where(contacts.c.id == report.contact_id)).one()._asdict()
        )
    kept = {column: value for column, value in tombstone.items() if value is not None}
    assert kept == {"id": report.contact_id, "timezone": "UTC", "created_at": NOW}
