"""SendGrid batches group messages by language: one shared body per (step, language), so
a Spanish patient never gets the English body with their substitutions, nor the reverse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from campaigns.authoring.spec import load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import import_csv
from tests.languages import write_spanish_clinic
from tests.sendgrid_server import SendGridServer
from tests.test_sendgrid import CONSENT, KEY, NOW, PUBLIC_URL, SIGNED_UP, FakeTime, sender_factory
from tests.test_sendgrid_batch import assert_clean, received


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", PUBLIC_URL)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer(KEY) as running:
        yield running


@pytest.fixture
def senders() -> Iterator[Any]:
    with sender_factory() as build:
        yield build


def test_a_batch_of_two_languages_goes_as_one_body_per_language(store, tmp_path, server, senders):
    folder = write_spanish_clinic(tmp_path / "clinic")
    # A greeting with no condition in it, so every email has a batch form.
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + "greeting: false\n", encoding="utf-8")
    campaign = load_folder(folder)
    lines = ["email,first_name,timezone,signed_up_at,consent,language"]
    languages = {}
    for i in range(400):
        language = ("es", "en", "es-MX", "")[i % 4]
        lines.append(f"p{i:03d}@example.com,P{i},America/New_York,{SIGNED_UP},{CONSENT},{language}")
        languages[f"p{i:03d}@example.com"] = "es" if language.startswith("es") else "en"
    path = tmp_path / "signups.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert import_csv(store, campaign, path, now=NOW).enrolled == 400
    sender = senders(server, FakeTime())

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert report.sent == 400
    assert_clean(server)
    bodies = server.bodies()
    assert len(bodies) <= 4  # batched: a body per language per hand-off
    for body in bodies:
        text = next(part["value"] for part in body["content"] if part["type"] == "text/plain")
        spanish = "Darse de baja" in text
        assert spanish != ("Unsubscribe:" in text)
        assert len(body["personalizations"]) > 1
        for personalization in body["personalizations"]:
            address = personalization["to"][0]["email"]
            assert languages[address] == ("es" if spanish else "en"), address
    emails = received(bodies)
    subjects = {email[0][0]["email"]: email[3] for email in emails.values()}
    for address, language in languages.items():
        expected = "La ketamina y el sueño" if language == "es" else "Ketamine and Sleep"
        assert subjects[address] == expected
