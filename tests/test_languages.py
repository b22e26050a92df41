"""Each patient's language: a contact with `language: es` gets the Spanish steps, footer and
unsubscribe page; a language the campaign lacks falls back to its default without error;
`check` names a missing translation by its file. On SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from campaigns.authoring.checks import check_ref
from campaigns.authoring.spec import load_folder
from campaigns.compliance.privacy import export_contact, forget_contact
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.send_test import send_test
from campaigns.errors import InputError
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.signups import Signup
from campaigns.reporting.export import export_for
from campaigns.storage.tables import contacts
from campaigns.web.app import create_app
from senders.file import FileSender
from tests.helpers import utc
from tests.languages import SPANISH, write_spanish_clinic

NOW = utc("2026-03-02T12:00")
SPANISH_SUBJECTS = [
    "La ketamina y el sueño",
    "Cómo afecta la salud mental al sueño",
    "¿Y la salud física?",
    "Cómo puede ayudar la terapia con ketamina",
    "¿Puede la ketamina empeorar mis problemas de sueño?",
    "Cada paciente es diferente",
]

CSV = (
    "email,first_name,timezone,language,consent\n"
    "ana@example.com,Ana,America/Mexico_City,es,clinic form\n"
    "luis@example.com,Luis,America/Mexico_City,ES-mx,clinic form\n"
    "marie@example.com,Marie,Europe/Paris,fr,clinic form\n"
    "pat@example.com,Pat,America/New_York,,clinic form\n"
    "bad@example.com,Bad,America/New_York,spanish,clinic form\n"
)


def outbox_messages(outbox: Path) -> dict[str, list[email.message.EmailMessage]]:
    """Every .eml the file sender wrote, by recipient, in the order they went."""
    found: dict[str, list] = {}
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.setdefault(str(message["To"]).split("<")[-1].strip(">"), []).append(message)
    return found


def part(message: email.message.EmailMessage, kind: str) -> str:
    return message.get_body(preferencelist=(kind,)).get_content()


def run_days(store, outbox: Path, days: int = 30) -> None:
    sender = FileSender(outbox)
    dispatcher = Dispatcher(store, lambda _campaign: sender)
    for day in range(days + 1):
        for hour in range(0, 24, 3):
            dispatcher.run(now=NOW + timedelta(days=day, hours=hour))


def test_a_spanish_contact_gets_the_spanish_steps_footer_and_unsubscribe_page(
    store, tmp_path: Path
):
    campaign = load_folder(write_spanish_clinic(tmp_path / "clinic"))
    contacts_file = tmp_path / "contacts.csv"
    contacts_file.write_text(CSV, encoding="utf-8")
    report = import_csv(store, campaign, contacts_file, now=NOW)
    assert report.enrolled == 4
    assert report.rejected == [
        (6, "language: 'spanish' is not a language tag: write one like es, en or pt-BR")
    ]
    with store.connect() as conn:
        stored = dict(conn.execute(select(contacts.c.email, contacts.c.language)).all())
    assert stored == {
        "ana@example.com": "es",
        "luis@example.com": "es-MX",  # normalised case
        "marie@example.com": "fr",
        "pat@example.com": None,
    }

    outbox = tmp_path / "outbox"
    run_days(store, outbox)
    sent = outbox_messages(outbox)
    english = [step.subject for step in campaign.steps]
    assert [str(m["Subject"]) for m in sent["ana@example.com"]] == SPANISH_SUBJECTS
    assert [str(m["Subject"]) for m in sent["luis@example.com"]] == SPANISH_SUBJECTS  # es-MX
    assert [str(m["Subject"]) for m in sent["marie@example.com"]] == english  # no French
    assert [str(m["Subject"]) for m in sent["pat@example.com"]] == english

    second = sent["ana@example.com"][1]
    assert "Equipo de Balanced Ketamine" in str(second["From"])
    html, text = part(second, "html"), part(second, "plain")
    assert re.search(r'<html lang="es"', html)
    for words in (
        "Parte 2 de 6",
        "Hola, Ana:",
        "Muchos pacientes con problemas de salud mental",
        "Darse de baja",
        "Preferencias de correo",
        "Visite nuestro sitio web",
        "Recibe estos correos porque se registró en Balanced Ketamine.",
        "El próximo correo llega dentro de 2 días: ¿Y la salud física?",
        "Este correo es informativo y no sustituye al consejo médico.",
    ):
        assert words in text, words
        assert html.encode("ascii", "xmlcharrefreplace").decode() == html  # ASCII, as before
    assert "Unsubscribe" not in text and "Part 2" not in text
    last = sent["ana@example.com"][-1]
    assert "Contacte con el equipo de Balanced Ketamine" in part(last, "plain")  # the button
    french = sent["marie@example.com"][1]
    assert '<html lang="en"' in part(french, "html")
    assert "Part 2 of 6" in part(french, "plain") and "Unsubscribe:" in part(french, "plain")

    # The unsubscribe page from Ana's email, as her browser gets it from `dripmail serve`.
    url = re.search(r"<(https?://[^>]+/u/[^>]+)>", str(second["List-Unsubscribe"])).group(1)
    path = "/u/" + url.rsplit("/u/", 1)[1]
    app = create_app(store, environ={}, clock=lambda: NOW + timedelta(days=3))
    with TestClient(app, base_url="https://mail.clinic.test") as client:
        page = client.get(path)
        assert page.status_code == 200
        assert '<html lang="es">' in page.text
        assert page.headers["content-language"] == "es"
        assert "Preferencias de correo · Balanced Ketamine" in page.text
        assert "Darse de baja de todos los correos de Balanced Ketamine" in page.text
        assert "Dejar solo «La ketamina y el sueño»" in page.text
        done = client.post(path, data={"choice": "campaign"})
        assert done.status_code == 200
        assert "Se ha dado de baja" in done.text
        assert "No recibirá más correos de la serie «La ketamina y el sueño»" in done.text
        assert "He cambiado de opinión" in done.text
        back = client.post(path, data={"choice": "undo"})
        assert "Ha vuelto a suscribirse" in back.text
        # Pat reads English pages, as before.
        pat_eml = sent["pat@example.com"][0]
        pat_url = re.search(r"<(https?://[^>]+/u/[^>]+)>", str(pat_eml["List-Unsubscribe"]))
        pat_page = client.get("/u/" + pat_url.group(1).rsplit("/u/", 1)[1])
        assert '<html lang="en">' in pat_page.text and "Email preferences" in pat_page.text
        # A link that names nobody follows the browser's language.
        bad = client.get("/u/not-a-token", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
        assert bad.status_code == 400 and "Este enlace no es válido" in bad.text
        assert "El enlace está dañado" in bad.text


def test_enroll_and_the_sign_up_api_take_a_language(store, tmp_path: Path):
    campaign = load_folder(write_spanish_clinic(tmp_path / "clinic"))
    enroll(
        store, campaign, Signup("ana@example.com", "Ana", language="pt-br", consent="form"), now=NOW
    )
    with pytest.raises(InputError, match="not a language tag") as caught:
        enroll(
            store, campaign, Signup("bo@example.com", "Bo", language="xx-YY", consent="f"), now=NOW
        )
    assert caught.value.field == "language"
    app = create_app(store, environ={"DRIPMAIL_API_TOKEN": "t0ken"}, clock=lambda: NOW)
    body = {
        "email": "sofia@example.com",
        "campaign": campaign.name,
        "language": "es-419",
        "consent": {"source": "web form", "text": "Yes, email me"},
    }
    with TestClient(app, base_url="https://mail.clinic.test") as client:
        headers = {"Authorization": "Bearer t0ken"}
        assert client.post("/api/v1/enrollments", json=body, headers=headers).status_code == 201
        bad = client.post(
            "/api/v1/enrollments",
            json={**body, "email": "x@example.com", "language": "klingon"},
            headers=headers,
        )
        assert bad.status_code == 422 and bad.json()["field"] == "language"
    with store.connect() as conn:
        stored = dict(conn.execute(select(contacts.c.email, contacts.c.language)).all())
    assert stored == {"ana@example.com": "pt-BR", "sofia@example.com": "es-419"}


def test_check_names_a_missing_translation_and_a_translation_without_its_step(tmp_path: Path):
    folder = write_spanish_clinic(tmp_path / "sleep")
    (folder / "03-what-about-physical-health.es.md").unlink()
    (folder / "07-bonus.es.md").write_text((SPANISH / "01-welcome.es.md").read_text("utf-8"))
    report = check_ref(folder)
    lines = [str(finding) for finding in report.findings]
    assert (
        f"warning: {folder / '03-what-about-physical-health.es.md'}: step "
        "03-what-about-physical-health has no Spanish (es) translation: Spanish speakers get "
        "it in English"
    ) in lines
    assert (
        f"error: {folder / '07-bonus.es.md'}: has no step in the default language: "
        "07-bonus.md is not among campaign.yaml's steps, so this translation is never sent"
    ) in lines
    # The Spanish emails went through every email check too: nothing else is wrong.
    assert len(report.errors) == 1, lines


def test_two_workers_send_each_contact_their_language_once(store, tmp_path: Path):
    campaign = load_folder(write_spanish_clinic(tmp_path / "clinic"))
    lines = ["email,first_name,timezone,language,consent"]
    for i in range(60):
        lines.append(f"p{i:02d}@example.com,P{i},America/New_York,{('es', 'en')[i % 2]},form")
    path = tmp_path / "contacts.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert import_csv(store, campaign, path, now=NOW).enrolled == 60
    outbox = tmp_path / "outbox"
    sender = FileSender(outbox)
    workers = [
        Dispatcher(store, lambda _campaign: sender, owner=f"w{n}", batch_size=7) for n in (1, 2)
    ]
    at = NOW + timedelta(hours=2)
    threads = [threading.Thread(target=worker.run, kwargs={"now": at}) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    sent = outbox_messages(outbox)
    assert len(sent) == 60
    for address, messages in sent.items():
        spanish = int(address[1:3]) % 2 == 0
        assert [str(m["Subject"]) for m in messages] == [
            SPANISH_SUBJECTS[0] if spanish else campaign.steps[0].subject
        ]


def test_a_translation_that_does_not_read_is_refused_before_anyone_is_enrolled(store, tmp_path):
    folder = write_spanish_clinic(tmp_path / "clinic")
    (folder / "02-how-mental-health-affects-sleep.es.md").write_text("---\nsubject: x\n")
    campaign = load_folder(folder)
    with pytest.raises(InputError) as caught:
        enroll(store, campaign, Signup("ana@example.com", "Ana", consent="form"), now=NOW)
    assert str(caught.value) == (
        f"{folder / '02-how-mental-health-affects-sleep.es.md'}:1: "
        "front matter opened with --- is never closed"
    )
    with store.connect() as conn:
        assert conn.execute(select(contacts.c.id)).all() == []


def test_render_and_send_test_take_a_language(store, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the file sender's outbox is ./outbox
    folder = write_spanish_clinic(tmp_path / "clinic")
    index = export_for(None, folder, tmp_path / "previews", language="es-MX")
    assert '<html lang="es"' in index.read_text(encoding="utf-8")
    text = (tmp_path / "previews" / "02-how-mental-health-affects-sleep.txt").read_text("utf-8")
    assert "Parte 2 de 6" in text and SPANISH_SUBJECTS[1] in text
    campaign = load_folder(folder)
    result = send_test(
        store, campaign, "welcome", "staff@clinic.example", sender=None, now=NOW, language="es"
    )
    assert result.outcome == "sent"
    eml = next((tmp_path / "outbox").glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert str(message["Subject"]) == f"[TEST] {SPANISH_SUBJECTS[0]}"


def test_a_contacts_language_is_in_their_export_and_gone_when_they_are_forgotten(store, tmp_path):
    campaign = load_folder(write_spanish_clinic(tmp_path / "clinic"))
    enroll(store, campaign, Signup("ana@example.com", "Ana", language="es", consent="f"), now=NOW)
    held = export_contact(store, "ana@example.com")
    assert held["contact"]["language"] == "es"
    forget_contact(store, "ana@example.com", now=NOW)
    with store.connect() as conn:
        assert conn.execute(select(contacts.c.language)).all() == [(None,)]
