"""Double opt-in from the command line: `import`/`enroll --double-opt-in`, `run`, `status`,
`stats`, `contacts export`, the `confirmed` webhook event, and the campaign file's keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from campaigns.authoring.spec import load_folder
from campaigns.delivery.webhook_endpoints import add_endpoint
from campaigns.errors import InputError
from campaigns.planning.confirmations import claim_of
from campaigns.rendering.confirm_email import confirmation_message
from campaigns.rendering.personalise import Recipient
from campaigns.rendering.tokens import ConfirmSigner, contact_links
from campaigns.storage.store import Store
from campaigns.storage.tables import confirmations, webhook_messages
from campaigns.web.app import create_app
from cli import app
from tests.conftest import write_clinic_campaign
from tests.helpers import utc
from tests.languages import write_spanish_clinic

T0 = utc("2026-03-02T12:00")


def dripmail(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", "http://127.0.0.1:8026")
    folder = write_clinic_campaign(tmp_path / "clinic")
    rows = "email,first_name,timezone\n" + "".join(
        f"p{i}@example.com,P{i},Europe/Madrid\n" for i in range(3)
    )
    (tmp_path / "contacts.csv").write_text(rows)
    return folder, tmp_path / "contacts.csv", f"sqlite:///{tmp_path / 'd.db'}", tmp_path


def test_import_and_enroll_flags_then_confirm(setup):
    folder, csv_file, db, tmp = setup
    imported = dripmail(
        "import", folder, csv_file, "--consent", "clinic form", "--double-opt-in",
        "--now", "2026-03-02T12:00Z", "--db", db,
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    assert "imported 0, already enrolled 0, suppressed 0, rejected 0" in imported.stdout
    assert "awaiting confirmation 3: each is enrolled when they confirm by email" in imported.stdout
    one = dripmail(
        "enroll", folder, "--email", "solo@example.com", "--double-opt-in",
        "--now", "2026-03-02T12:00Z", "--db", db,
    )  # fmt: skip
    assert one.exit_code == 0, one.output
    assert "confirmation email owed for ketamine-and-sleep" in one.stdout
    held = dripmail(
        "enroll", folder, "--email", "solo@example.com", "--double-opt-in",
        "--attribute", "patient_type=returning", "--now", "2026-03-02T15:00Z", "--db", db,
    )  # fmt: skip
    waiting = (
        "already awaiting confirmation in ketamine-and-sleep (asked less than a day ago); "
        "the details it holds are now this sign-up's\n"
    )
    assert held.stdout == waiting
    assert '"patient_type": "returning"' in dripmail("contacts", "export", "solo@example.com",
                                                      "--db", db).stdout  # fmt: skip
    repeat = dripmail(
        "enroll", folder, "--email", "solo@example.com", "--double-opt-in",
        "--now", "2026-03-02T18:00Z", "--db", db,
    )  # fmt: skip
    assert repeat.stdout == waiting  # what it held (patient_type) is gone: not "nothing changed"
    assert '"held_changes": null' in dripmail("contacts", "export", "solo@example.com",
                                              "--db", db).stdout  # fmt: skip

    store = Store(db)
    add_endpoint(store, "http://127.0.0.1:9/hook", ["confirmed"], include_email=False, now=T0)
    ran = dripmail(
        "run", "--once", "--now", "2026-03-02T12:00Z", "--outbox", tmp / "out", "--db", db
    )
    assert ran.exit_code == 0, ran.output
    assert "confirmation emails 4, expired sign-ups 0" in ran.stdout
    assert len(list((tmp / "out").glob("*.eml"))) == 4

    with store.connect() as conn:
        first = conn.execute(select(confirmations).order_by(confirmations.c.id)).first()
    token = ConfirmSigner(store.secret_key()).token(claim_of(first))
    clock = utc("2026-03-03T08:30")
    with TestClient(create_app(store, clock=lambda: clock)) as client:
        assert "your email is confirmed" in client.post(f"/c/{token}").text
    with store.connect() as conn:
        (event,) = conn.execute(select(webhook_messages)).all()
    assert event.event == "confirmed"
    assert json.loads(event.payload)["data"]["campaign"] == "ketamine-and-sleep"

    status = dripmail("status", "--db", db)
    assert (
        "ketamine-and-sleep: double opt-in sign-ups 3 awaiting confirmation, 1 confirmed, "
        "0 expired" in status.stdout
    )
    stats = dripmail("stats", "ketamine-and-sleep", "--json", "--db", db)
    assert json.loads(stats.stdout)["confirmations"] == {"waiting": 3, "confirmed": 1, "expired": 0}
    exported = json.loads(dripmail("contacts", "export", "p0@example.com", "--db", db).stdout)
    assert exported["contact"]["consent_at"] == "2026-03-02T12:00:00+00:00"
    assert exported["contact"]["confirmed_at"] == "2026-03-03T08:30:00+00:00"
    assert exported["confirmations"][0]["confirmed_at"] == "2026-03-03T08:30:00+00:00"
    store.close()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("confirm: triple", r"write double \(confirm by email first\) or single"),
        ("confirm: double\nconfirm_within: soon", "is not a delay"),
        ("confirm: double\nconfirm_within: 10m", "at least an hour"),
    ],
)
def test_campaign_file_keys_are_checked(tmp_path: Path, line: str, message: str):
    folder = write_clinic_campaign(tmp_path / "clinic")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + line + "\n")
    with pytest.raises(InputError, match=message) as raised:
        load_folder(folder)
    assert "campaign.yaml" in str(raised.value) and "confirm" in str(raised.value)


def test_the_confirmation_email_speaks_the_patients_language(tmp_path: Path):
    campaign = load_folder(write_spanish_clinic(tmp_path / "clinic"))
    links = contact_links("https://mail.clinic.test", "TOKEN", "care@example.com")

    def message(language: str | None):
        return confirmation_message(
            campaign,
            Recipient("ana@example.com", "Ana", language=language),
            links,
            confirm_url="https://mail.clinic.test/c/CONFIRM",
            message_id="confirm-1",
            date=None,
        )

    spanish, english = message("es-MX"), message(None)
    assert spanish.subject == "Confirme su correo para Balanced Ketamine"
    assert "Confirmar mi correo: https://mail.clinic.test/c/CONFIRM" in spanish.text
    assert english.subject == "Please confirm your email for Balanced Ketamine"
    assert 'href="https://mail.clinic.test/c/CONFIRM"' in english.html
    assert english.headers["List-Unsubscribe"].startswith("<https://mail.clinic.test/u/TOKEN>")
    assert english.batch is None


def test_a_discreet_confirmation_keeps_the_health_word_off_the_lock_screen(tmp_path: Path):
    folder = write_clinic_campaign(tmp_path / "clinic")
    plain = load_folder(folder)
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + "privacy: discreet\n")
    discreet = load_folder(folder)
    links = contact_links("https://mail.clinic.test", "TOKEN", "care@example.com")
    shown = []
    for campaign, chose in ((plain, False), (plain, True), (discreet, False)):
        message = confirmation_message(
            campaign,
            Recipient("ana@example.com", "Ana", discreet=chose),
            links,
            confirm_url="https://mail.clinic.test/c/CONFIRM",
            message_id="confirm-1",
            date=None,
        )
        shown.append((message.from_name, message.subject))
    assert shown == [
        ("Balanced Ketamine Care Team", "Please confirm your email for Balanced Ketamine"),
        ("Balanced", "Please confirm your email for Balanced"),  # the patient's own choice
        ("Balanced", "Please confirm your email for Balanced"),  # privacy: discreet
    ]
