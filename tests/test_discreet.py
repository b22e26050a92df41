"""A patient's own choice of discreet emails (contacts.discreet, set between two sends)
applies from their next email, while everyone else keeps the normal subject: real
dispatch through the file sender and through the SendGrid stand-in (batches), on SQLite
and PostgreSQL."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import import_csv
from campaigns.storage.tables import contacts
from campaigns.web.app import create_app
from senders.file import FileSender
from senders.mime import to_bytes
from tests.helpers import spamassassin
from tests.test_languages import outbox_messages, part

# The SendGrid stand-in, a sender on it, and the environment they need (autouse).
from tests.test_languages_sendgrid import _environment, senders, server  # noqa: F401
from tests.test_sendgrid import CONSENT, NOW, SIGNED_UP, FakeTime
from tests.test_sendgrid_batch import assert_clean, received
from tests.unit.test_clinic import HEADINGS, PAT, messages

NEUTRAL = "A note from Balanced"
SUBJECTS = ["Ketamine and Sleep", *HEADINGS]


def choose_discreet(store, *addresses: str) -> None:
    """What the preference centre writes when a patient chooses discreet emails."""
    with store.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.email.in_(addresses)).values(discreet=True))


def import_people(store, campaign, tmp_path: Path, addresses: list[str]) -> None:
    lines = ["email,first_name,timezone,signed_up_at,consent"]
    lines += [f"{a},P{i},America/New_York,{SIGNED_UP},{CONSENT}" for i, a in enumerate(addresses)]
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert import_csv(store, campaign, path, now=NOW).enrolled == len(addresses)


def test_a_patients_choice_applies_from_their_next_email(store, clinic, tmp_path):
    import_people(store, clinic, tmp_path, ["pat@example.com", "sam@example.com"])
    outbox = tmp_path / "outbox"
    dispatcher = Dispatcher(store, lambda _campaign: FileSender(outbox))
    assert dispatcher.run(now=NOW).sent == 2  # the welcome emails

    choose_discreet(store, "pat@example.com")
    for hour in range(3, 24 * 20, 3):
        dispatcher.run(now=NOW + timedelta(hours=hour))

    sent = outbox_messages(outbox)
    pat, sam = sent["pat@example.com"], sent["sam@example.com"]
    assert [str(m["Subject"]) for m in sam] == SUBJECTS
    assert [str(m["Subject"]) for m in pat] == [SUBJECTS[0]] + [NEUTRAL] * 5
    assert pat[0]["From"].addresses[0].display_name == "Balanced Ketamine Care Team"
    assert {m["From"].addresses[0].display_name for m in pat[1:]} == {"Balanced"}
    assert {m["From"].addresses[0].display_name for m in sam} == {"Balanced Ketamine Care Team"}
    # The body is the same email: the heading and the article's words (each contact's own
    # links in the footer differ).
    for quiet, plain, heading in zip(pat[1:], sam[1:], HEADINGS, strict=True):
        text = part(quiet, "plain").split("\n-- \n")[0]
        assert heading in text
        body = part(plain, "plain").split("\n-- \n")[0].split(heading, 1)[1]
        assert text.split(heading, 1)[1] == body.replace("Hi P1,", "Hi P0,")
        assert f"<title>{NEUTRAL}</title>" in part(quiet, "html")


def test_sendgrid_batches_keep_discreet_contacts_apart(
    store,
    clinic_folder,
    tmp_path,
    server,  # noqa: F811
    senders,  # noqa: F811
):
    spec = clinic_folder / "campaign.yaml"  # no condition in the greeting: every email batches
    spec.write_text(spec.read_text(encoding="utf-8") + "greeting: false\n", encoding="utf-8")
    campaign = load_folder(clinic_folder)
    addresses = [f"p{i:02d}@example.com" for i in range(40)]
    import_people(store, campaign, tmp_path, addresses)
    sender = senders(server, FakeTime())
    dispatcher = Dispatcher(store, lambda _campaign: sender)
    assert dispatcher.run(now=NOW).sent == 40
    first = len(server.bodies())

    quiet = set(addresses[::2])
    choose_discreet(store, *quiet)
    assert dispatcher.run(now=NOW + timedelta(days=2)).sent == 40  # the second email

    assert_clean(server)
    bodies = server.bodies()[first:]
    assert len(bodies) == 2  # one shared body each: discreet and normal
    for body in bodies:
        discreet = body["from"].get("name") == "Balanced"
        assert len(body["personalizations"]) == 20
        html = next(p["value"] for p in body["content"] if p["type"] == "text/html")
        assert (f"<title>{NEUTRAL}</title>" in html) == discreet
        for personalization in body["personalizations"]:
            address = personalization["to"][0]["email"]
            assert (address in quiet) == discreet, address
    subjects = {e[0][0]["email"]: e[3] for e in received(bodies).values()}
    for address in addresses:
        expected = NEUTRAL if address in quiet else HEADINGS[0]
        assert subjects[address] == expected, address


def test_spamassassin_scores_every_discreet_clinic_email_below_one(clinic, tmp_path):
    # The padded hidden preview line and the neutral subject are not spam signals.
    files = []
    for message in messages(clinic, replace(PAT, discreet=True), date=datetime.now(UTC)):
        path = tmp_path / f"{message.delivery_id}.eml"
        path.write_bytes(to_bytes(message))
        files.append(path)
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        results = list(pool.map(spamassassin, files))
    for path, (score, report) in zip(files, results, strict=True):
        assert score < 1.0, f"{path.name}: {score}\n{report[report.find('Content analysis') :]}"


def test_discreet_chosen_on_the_preference_centre_quiets_the_next_email(store, clinic, tmp_path):
    """The whole path a patient takes: the link in an email, the button, the next email."""
    import_people(store, clinic, tmp_path, ["pat@example.com"])
    outbox = tmp_path / "outbox"
    dispatcher = Dispatcher(store, lambda _campaign: FileSender(outbox))
    assert dispatcher.run(now=NOW).sent == 1
    [welcome] = outbox_messages(outbox)["pat@example.com"]
    link = re.search(r"https?://\S+/p/([\w.-]+)", part(welcome, "plain"))
    assert link, "no preferences link in the email"

    app = create_app(store, environ={}, clock=lambda: NOW, sender_for=lambda _c: None)
    with TestClient(app, base_url="https://mail.clinic.test") as client:
        page = client.post(f"/p/{link.group(1)}", data={"choice": "discreet", "value": "on"})
    assert page.status_code == 200
    assert "Your emails will be discreet, from the next one." in page.text

    for hour in range(3, 24 * 20, 3):
        dispatcher.run(now=NOW + timedelta(hours=hour))
    pat = outbox_messages(outbox)["pat@example.com"]
    assert [str(m["Subject"]) for m in pat] == [SUBJECTS[0]] + [NEUTRAL] * 5
