"""SendGrid batches: many messages of one step in one request, as personalizations.

The real `sendgrid` client talks HTTP to the local endpoint, which checks every body
against SendGrid's OpenAPI contract. Sleep and clock are injected: nothing waits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import import_csv
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.personalise import Recipient
from campaigns.storage.tables import deliveries
from senders.base import Message, Outcome, Sender, SenderConfigurationError, SendResult
from senders.sendgrid import MAX_PERSONALIZATIONS, SendGridSender
from tests.sendgrid_server import Fault, SendGridServer
from tests.test_sendgrid import (
    CONSENT,
    KEY,
    NOW,
    PUBLIC_URL,
    SIGNED_UP,
    FakeTime,
    all_rows,
    enroll_many,
    first_steps,
    sender_factory,
)

LINKS = {
    "unsubscribe_url": f"{PUBLIC_URL}/u/token",
    "unsubscribe_mailto": "mailto:unsubscribe@balancedketamine.example.com",
    "preferences_url": f"{PUBLIC_URL}/p/token",
}


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
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def senders() -> Iterator[Any]:
    """Builds senders, batching on unless told; closes them after."""
    with sender_factory() as build:
        yield build


class Recording(Sender):
    """A sender that keeps every message the dispatcher hands over, then sends it."""

    def __init__(self, sender: SendGridSender) -> None:
        self.sender = sender
        self.name = sender.name
        self.batch_limit = sender.batch_limit
        self.messages: list[Message] = []

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        self.messages += messages
        return self.sender.send(messages)

    def close(self) -> None:
        self.sender.close()


def enroll_names(store, campaign: Campaign, folder: Path, names: Sequence[str]) -> None:
    """One contact per first name (an empty name is none), all with step 1 due at NOW."""
    path = folder / "names.csv"
    lines = ["email,first_name,timezone,signed_up_at,consent"]
    for i, name in enumerate(names):
        quoted = '"' + name.replace('"', '""') + '"'
        lines.append(f"p{i}@example.com,{quoted},America/New_York,{SIGNED_UP},{CONSENT}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_csv(store, campaign, path, now=NOW)
    assert report.enrolled == len(names) and not report.rejected


def substitute_once(text: str, substitutions: dict[str, str]) -> str:
    """Every tag replaced by its value in one pass: a value is never read again."""
    if not substitutions:
        return text
    tags = re.compile("|".join(map(re.escape, substitutions)))
    return tags.sub(lambda match: substitutions[match.group(0)], text)


def substitute_in_turn(text: str, substitutions: dict[str, str]) -> str:
    """Tag after tag over the whole text, so a value may be read again by later tags."""
    for tag, value in substitutions.items():
        text = text.replace(tag, value)
    return text


def received(bodies: Sequence[dict[str, Any]], substitute=substitute_once) -> dict[str, tuple]:
    """delivery id -> what its recipient gets from the requests: to, from, reply-to,
    subject, text, HTML and headers, with the personalization's substitutions applied
    where SendGrid applies them (subject, reply-to and content)."""
    emails: dict[str, tuple] = {}
    for body in bodies:
        content = {part["type"]: part["value"] for part in body["content"]}
        for personalization in body["personalizations"]:
            values = personalization.get("substitutions", {})
            reply_to = dict(body.get("reply_to") or {})
            if "name" in reply_to:
                reply_to["name"] = substitute(reply_to["name"], values)
            delivery_id = personalization["custom_args"]["delivery_id"]
            assert delivery_id not in emails
            emails[delivery_id] = (
                personalization["to"],
                body["from"],
                reply_to,
                substitute(personalization.get("subject", body.get("subject", "")), values),
                substitute(content.get("text/plain", ""), values),
                substitute(content.get("text/html", ""), values),
                {**body.get("headers", {}), **personalization.get("headers", {})},
            )
    return emails


def assert_clean(server: SendGridServer) -> None:
    assert server.validated == len(server.requests)
    assert server.schema_failures == [] and server.problems == []


# -- requests per message ---------------------------------------------------------------


def test_a_thousand_contacts_of_one_step_go_in_two_requests(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 1000)
    sender = senders(server, fake)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert report.sent == 1000
    # The dispatcher claims 500 at a time and hands a batching sender all of them.
    assert len(server.requests) <= 2
    assert sum(len(body["personalizations"]) for body in server.bodies()) == 1000
    assert_clean(server)
    rows = first_steps(store)
    assert {r.status for r in rows} == {"sent"} and {r.attempts for r in rows} == {1}
    for row in rows:
        # One X-Message-Id per request: every delivery of it records that one.
        assert server.accepted[str(row.id)] == [row.provider_message_id]
    assert {r.status for r in all_rows(store) if r.position > 1} == {"scheduled"}


def test_one_request_holds_at_most_1000_personalizations(clinic, server, fake, senders):
    step = compile_campaign(clinic)
    messages = [
        step.message(
            "welcome",
            Recipient(f"patient{i}@example.com", f"Pat{i}"),
            delivery_id=str(i),
            date=NOW,
            **LINKS,
        )
        for i in range(MAX_PERSONALIZATIONS + 2)
    ]
    sender = senders(server, fake)

    results = sender.send(messages)

    assert [r.delivery_id for r in results] == [m.delivery_id for m in messages]
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert sorted(len(body["personalizations"]) for body in server.bodies()) == [2, 1000]
    assert_clean(server)


# -- the same email either way ------------------------------------------------------------


def test_batched_and_one_by_one_requests_give_every_recipient_the_same_email(
    store, clinic_folder, tmp_path, server, fake, senders
):
    welcome = clinic_folder / "01-welcome.md"
    text = welcome.read_text(encoding="utf-8")
    # A subject and a link that use the first name too (the link URL-encodes it).
    text = text.replace(
        "---\npreheader:", "---\nsubject: Sleep tips for {{ first_name }}\npreheader:"
    )
    text += "\nBook [your visit](https://balancedketamine.example.com/book?for={{ first_name }}).\n"
    welcome.write_text(text, encoding="utf-8")
    campaign = load_folder(clinic_folder)
    tagged = compile_campaign(campaign).step("welcome").tagged
    assert tagged is not None
    tag = next(t for t in re.findall(r"-dm[0-9a-f]+h\d+-", tagged.html))
    names = [
        "Ann & Bob",
        "<b>Bold</b>",
        'Pat "PJ" O\'Neil',
        "Zoë 李 Ñandú",
        "",  # the step's default ("there")
        "Smith, Pat; Jr.",
        "-first_name- %name% {{ first_name }}",  # tags of other systems: plain text here
        tag,  # exactly one of the step's own tags
        f"x{tagged.marker}y",
    ]
    enroll_names(store, campaign, tmp_path, names)
    recording = Recording(senders(server, fake))

    report = Dispatcher(store, lambda _campaign: recording).run(now=NOW)

    assert report.sent == len(names)
    assert_clean(server)
    # The tag-like names go alone, rendered in full; all the others share one request.
    sizes = sorted(len(body["personalizations"]) for body in server.bodies())
    assert sizes == [1, 1, len(names) - 2]
    [batch] = [body for body in server.bodies() if len(body["personalizations"]) > 1]
    assert "subject" not in batch and "headers" not in batch
    assert all(p["substitutions"] for p in batch["personalizations"])
    # What the one-request-per-message path would send for each of the same messages.
    one_by_one = senders(server, fake, batch=False)
    expected = received([one_by_one.payload(m) for m in recording.messages])
    for substitute in (substitute_once, substitute_in_turn):
        assert received(server.bodies(), substitute) == expected
    by_name = {m.to_name: received([one_by_one.payload(m)]) for m in recording.messages}
    [(_, _, _, subject, text, html, headers)] = by_name["Ann & Bob"].values()
    assert subject == "Sleep tips for Ann & Bob"
    assert "Hi Ann & Bob," in text and "Hi Ann &amp; Bob," in html
    assert "book?for=Ann%20%26%20Bob" in text and "book?for=Ann%20%26%20Bob" in html
    assert headers["List-Unsubscribe"].startswith(f"<{PUBLIC_URL}/u/")
    [(_, _, _, subject, text, html, _)] = by_name[None].values()
    assert "Hi there," in text and "Hi there," in html and subject == "Sleep tips for"
    [(_, _, _, _, text, html, _)] = by_name[tag].values()
    assert f"Hi {tag}," in text and f"Hi {tag}," in html


def test_a_step_with_if_goes_one_request_per_message(
    store, clinic_folder, tmp_path, server, fake, senders
):
    welcome = clinic_folder / "01-welcome.md"
    # The step's own greeting, in place of the layout's (which it recognises as one).
    text = welcome.read_text(encoding="utf-8").replace(
        "# Ketamine and Sleep\n",
        "# Ketamine and Sleep\n\n"
        "{% if first_name %}Hi {{ first_name }},{% else %}Hello,{% endif %}\n",
    )
    welcome.write_text(text, encoding="utf-8")
    campaign = load_folder(clinic_folder)
    steps = compile_campaign(campaign).steps
    assert steps["welcome"].tagged is None
    assert all(step.tagged is not None for key, step in steps.items() if key != "welcome")
    enroll_names(store, campaign, tmp_path, ["Ann", "", "Bo"])
    sender = senders(server, fake)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert report.sent == 3
    bodies = server.bodies()
    assert [len(body["personalizations"]) for body in bodies] == [1, 1, 1]
    assert not any("substitutions" in body["personalizations"][0] for body in bodies)
    greetings = [re.findall(r"^(?:Hi \w+|Hello),$", b["content"][0]["value"], re.M) for b in bodies]
    assert sorted(greetings) == [["Hello,"], ["Hi Ann,"], ["Hi Bo,"]]
    assert_clean(server)


def test_messages_over_sendgrids_limits_go_alone(clinic, server, fake, senders):
    compiled = compile_campaign(clinic)

    def message(number: int, address: str, **links: str) -> Message:
        return compiled.message(
            "welcome",
            Recipient(address, f"Pat{number}"),
            delivery_id=str(number),
            date=NOW,
            **{**LINKS, **links},
        )

    messages = [
        message(0, "pat@example.com"),
        message(1, "PAT@example.com"),  # one address twice in a request: SendGrid says 400
        message(2, "sam@example.com"),
        # Substitutions over 10,000 bytes: SendGrid says 400.
        message(3, "kim@example.com", unsubscribe_url=f"{PUBLIC_URL}/u/{'x' * 6000}"),
    ]
    sender = senders(server, fake)

    results = sender.send(messages)

    assert [r.outcome for r in results] == [Outcome.SENT] * 4
    groups = [
        [p["custom_args"]["delivery_id"] for p in b["personalizations"]] for b in server.bodies()
    ]
    assert sorted(groups) == [["0", "2"], ["1"], ["3"]]
    assert_clean(server)


# -- faults on a batch ----------------------------------------------------------------------


def test_a_rejected_batch_fails_every_message_with_sendgrids_message(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 5)
    server.script(Fault.error(400, "The from email does not contain a valid address.", "from"))
    sender = senders(server, fake)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    rows = first_steps(store)
    assert report.failed == 5 and len(server.requests) == 1 and fake.waits == []
    assert {r.status for r in rows} == {"failed"}
    assert all("The from email does not contain a valid address." in r.error for r in rows)


def test_a_batch_retried_after_a_server_error_is_sent_once(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 5)
    server.script(Fault.error(503))
    sender = senders(server, fake)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    rows = first_steps(store)
    assert report.sent == 5 and server.answers() == {"503": 1, "202": 1}
    assert len(fake.waits) == 1
    assert {r.status for r in rows} == {"sent"} and {r.attempts for r in rows} == {2}
    assert all(server.accepted[str(r.id)] == [r.provider_message_id] for r in rows)
    assert_clean(server)


def test_a_batch_whose_answer_is_lost_is_unknown_for_all_and_never_re_sent(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 5)
    server.script(Fault.drop())
    sender = senders(server, fake)
    dispatcher = Dispatcher(store, lambda _campaign: sender)

    report = dispatcher.run(now=NOW)
    dispatcher.run(now=NOW)

    rows = first_steps(store)
    assert report.unknown == 5 and {r.status for r in rows} == {"unknown"}
    assert all("answer was lost" in r.error for r in rows)
    assert len(server.requests) == 1 and fake.waits == []
    assert sorted(server.accepted_ids) == sorted(str(r.id) for r in rows)


def test_a_refused_key_on_a_batch_stops_the_run_and_marks_nothing(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 5)
    sender = senders(server, fake, key="SG.revoked-key.0b1c2d3e4f")

    with pytest.raises(SenderConfigurationError, match=r"refused the API key \(401\)"):
        Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    rows = all_rows(store)
    assert {r.status for r in rows} == {"scheduled"} and {r.attempts for r in rows} == {0}
    assert server.answers() == {"401": 1} and server.accepted_ids == []
    assert len(server.bodies()[0]["personalizations"]) == 5


def test_batching_can_be_turned_off(store, clinic, tmp_path, server, fake, senders):
    enroll_many(store, clinic, tmp_path, 5)
    sender = senders(server, fake, batch=False)

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert sender.batch_limit == 1
    assert [len(body["personalizations"]) for body in server.bodies()] == [1] * 5
    with store.connect() as conn:
        assert set(conn.scalars(select(deliveries.c.status))) == {"sent", "scheduled"}
