"""The Postmark sender: real HTTP to a local stand-in that checks Postmark's documented API.

Real SQLite store, real dispatcher; the sender's sleep and clock are injected (waits are
recorded and return at once), so nothing waits on the wall clock but the client's own
read timeout where a test makes an answer slow. The refused token, header injection and
a 30 % fault run of one email per request are in the suite every adapter shares
(tests/test_adapters.py); the fault run here sends batches.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from campaigns.authoring.sender_settings import PostmarkSenderSettings
from campaigns.authoring.spec import load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.settings import Settings
from senders.base import Outcome, SenderConfigurationError
from senders.postmark import PostmarkSender
from senders.registry import make_sender
from tests.postmark_server import TOKEN, Fault, PostmarkServer
from tests.test_sendgrid import (
    NOW,
    PUBLIC_URL,
    FakeTime,
    all_rows,
    enroll_many,
    enroll_one,
    first_steps,
    message,
)
from tests.unit.test_cli import assert_one_line_error, dripmail

pytestmark = pytest.mark.sqlite_only  # the sender does not depend on the database


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", PUBLIC_URL)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[PostmarkServer]:
    with PostmarkServer() as running:
        yield running


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@contextmanager
def sender_factory() -> Iterator[Callable[..., PostmarkSender]]:
    made: list[PostmarkSender] = []

    def build(
        server: PostmarkServer, fake: FakeTime, *, token: str = TOKEN, **settings: Any
    ) -> PostmarkSender:
        host = settings.pop("host", server.url)
        environ = {"POSTMARK_SERVER_TOKEN": token, "POSTMARK_API_HOST": host}
        sender = PostmarkSender.from_settings(
            PostmarkSenderSettings(**settings),
            Settings.from_env(environ),
            sleep=fake.sleep,
            clock=fake.clock,
        )
        made.append(sender)
        return sender

    try:
        yield build
    finally:
        for sender in made:
            sender.close()


@pytest.fixture
def senders() -> Iterator[Callable[..., PostmarkSender]]:
    with sender_factory() as build:
        yield build


def run(store, sender, now=NOW, **options):
    return Dispatcher(store, lambda _campaign: sender, **options).run(now=now)


# -- the acceptance runs --------------------------------------------------------------


def test_the_clinic_campaign_reaches_200_contacts_in_one_request(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 200)

    report = run(store, senders(server, fake))

    assert report.sent == 200 and server.requests == 1 and server.problems == []
    rows = first_steps(store)
    by_delivery = {a.delivery_id: a for a in server.accepted}
    assert {r.status for r in rows} == {"sent"}
    for row in rows:
        assert by_delivery[str(row.id)].message_id == row.provider_message_id
    assert len({r.provider_message_id for r in rows}) == 200
    assert {r.status for r in all_rows(store) if r.position > 1} == {"scheduled"}


def test_a_batch_in_which_one_address_is_refused_marks_only_that_delivery_failed(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 200)
    server.refuse["patient042@example.com"] = 406  # inactive recipient at Postmark
    server.refuse["patient117@example.com"] = 300  # invalid email request

    report = run(store, senders(server, fake))

    assert (report.sent, report.failed, server.requests) == (198, 2, 1)
    failed = {r.id: r.error for r in first_steps(store) if r.status == "failed"}
    assert len(failed) == 2 and {r.status for r in first_steps(store)} == {"sent", "failed"}
    errors = sorted(failed.values())
    assert "Postmark rejected the email (300)" in errors[0]
    assert "Postmark rejected the email (406)" in errors[1] and "inactive" in errors[1]
    assert not any("@" in error for error in errors)  # Postmark quotes the address
    assert sorted(server.accepted_ids()) == sorted(
        str(r.id) for r in first_steps(store) if r.status == "sent"
    )
    assert fake.waits == []  # nothing was retried


def test_faults_on_30_percent_of_requests_lose_nothing_and_send_nothing_twice(
    store, clinic_folder, tmp_path, server, fake, senders
):
    # What the faults do to each row, not the automatic pause the unknown ones would set
    # off (tests/test_alerts.py): a limit of 100 % never pauses.
    with (clinic_folder / "campaign.yaml").open("a") as handle:
        handle.write("max_error_rate: 100%\n")
    clinic = load_folder(clinic_folder)
    enroll_many(store, clinic, tmp_path, 200)
    server.fault_rate, server.seed = 0.3, 7
    sender = senders(server, fake, max_attempts=2, timeout=0.5)
    sender.batch_limit = 5  # smaller batches, so the faults land on many requests
    dispatcher = Dispatcher(store, lambda _campaign: sender, max_attempts=10)
    refusals = random.Random(11)

    per_run: list[Counter] = []
    now = NOW
    with server.refusing(lambda: refusals.random() < 0.06):
        for _ in range(20):
            start = len(server.log)
            dispatcher.run(now=now)
            per_run.append(Counter(d for r in server.log[start:] for d in r.delivery_ids))
            pending = [r.due_at for r in first_steps(store) if r.status == "scheduled"]
            if not pending:
                break
            now = max(now, min(pending))

    rows = first_steps(store)
    answers = server.answers()
    # The faults really happened: throttling, server errors, drops, slow answers.
    assert answers["429"] and answers["500"] + answers["503"] and answers["drop"]
    assert answers["slow"] and server.refused_connections and server.problems == []
    # None lost: every delivery ended sent or unknown.
    assert {r.status for r in rows} <= {"sent", "unknown"}
    # Sent exactly once at the server, or unknown (at most once).
    accepted = Counter(server.accepted_ids())
    assert max(accepted.values()) == 1
    message_ids = {a.delivery_id: a.message_id for a in server.accepted}
    for row in rows:
        if row.status == "sent":
            assert message_ids[str(row.id)] == row.provider_message_id
        else:
            assert row.provider_message_id is None and "not re-sent" in row.error
    assert sum(r.status == "unknown" for r in rows) > 0
    # Requests per delivery stay bounded: at most max_attempts a run, and overall.
    assert len(per_run) > 1  # some waited for a later run
    assert all(max(c.values(), default=0) <= 2 for c in per_run)
    assert max(r.attempts for r in rows) <= 10 - 1 + 2
    assert all(w <= 30 for w in fake.waits)


def test_an_account_refusal_inside_a_batch_keeps_what_went_and_stops_the_next_run(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 3)
    server.refuse["patient001@example.com"] = 405  # "Not allowed to send": out of credits
    sender = senders(server, fake)

    report = run(store, sender)

    assert (report.sent, report.retrying) == (2, 1)
    with pytest.raises(SenderConfigurationError, match=r"Postmark refused to send \(405\)"):
        run(store, sender, now=max(r.due_at for r in first_steps(store)))
    assert len(server.accepted) == 2


def test_without_a_token_run_stops_before_anything_is_claimed(tmp_path, clinic_folder):
    db = f"sqlite:///{tmp_path / 'clinic.db'}"
    enrolled = dripmail(
        "enroll", str(clinic_folder), "--email", "ana@example.com", "--timezone", "UTC",
        "--signed-up-at", "2026-03-02T10:00", "--db", db,
    )  # fmt: skip
    assert enrolled.exit_code == 0, enrolled.output

    result = dripmail("run", "--once", "--sender", "postmark", "--db", db, "--now", "2026-03-03")

    assert_one_line_error(result, "postmark sender needs a server token", "POSTMARK_SERVER_TOKEN")
    from campaigns.storage.store import Store

    store = Store(db)
    assert {r.status for r in all_rows(store)} == {"scheduled"}
    store.close()


def test_send_test_goes_through_postmark(tmp_path, clinic_folder, server, monkeypatch):
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", TOKEN)
    monkeypatch.setenv("POSTMARK_API_HOST", server.url)
    db = f"sqlite:///{tmp_path / 'clinic.db'}"

    result = dripmail(
        "send-test", str(clinic_folder), "--step", "welcome", "--to", "staff@clinic.example",
        "--sender", "postmark", "--db", db,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    [sent] = server.accepted
    assert sent.recipient == "staff@clinic.example" and server.problems == []
    assert sent.headers["Subject"].startswith("[TEST] ")
    assert sent.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert TOKEN not in result.output


# -- one answer at a time -----------------------------------------------------------


def test_a_429_backs_off_then_sends(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script(Fault.error(429, 429))

    run(store, senders(server, fake))

    row = first_steps(store)[0]
    assert row.status == "sent" and row.attempts == 2 and len(fake.waits) == 1
    assert server.answers() == {"429": 1, "200": 1}


def test_server_errors_back_off_then_go_to_a_later_run(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script(Fault.error(503, 100), Fault.error(500), Fault.error(503, 100))
    sender = senders(server, fake, max_attempts=3)

    run(store, sender)

    row = first_steps(store)[0]
    assert row.status == "scheduled" and row.attempts == 3 and "503" in row.error
    first, second = fake.waits  # exponential, with jitter
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0
    run(store, sender, now=row.due_at)
    assert first_steps(store)[0].status == "sent" and server.requests == 4


def test_only_the_entries_postmark_could_not_take_now_are_retried(server, fake, senders):
    server.script(None)  # the first request answers normally ...
    sender = senders(server, fake)
    original = server._take

    def busy_once(entries):  # ... but says "maintenance" for the second entry, once
        answers = original(entries)
        if len(entries) == 3:
            server.accepted[:] = [a for a in server.accepted if a.delivery_id != "1"]
            answers[1] = {"ErrorCode": 100, "Message": "Maintenance"}
        return answers

    server._take = busy_once
    results = sender.send([message(str(i)) for i in range(3)])

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.attempts for r in results] == [1, 2, 1]
    assert [len(r.delivery_ids) for r in server.log] == [3, 1]


def test_a_refused_connection_is_retried_then_goes_to_a_later_run(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)

    run(store, senders(server, fake, host=server.closed_url))

    row = first_steps(store)[0]
    assert row.status == "scheduled" and row.attempts == 3 and "refused" in row.error.lower()
    assert server.requests == 0
    run(store, senders(server, fake), now=row.due_at)
    assert first_steps(store)[0].status == "sent"


@pytest.mark.parametrize("fault", [Fault.drop(), Fault.drop(accepted=False), Fault.slow(5.0)])
def test_an_answer_lost_after_sending_is_unknown_and_never_re_sent(
    store, clinic, server, fake, senders, fault
):
    enroll_one(store, clinic)
    server.script(fault)
    sender = senders(server, fake, timeout=0.5)

    report = run(store, sender)
    run(store, sender, now=NOW + timedelta(days=1))

    row = first_steps(store)[0]
    assert report.unknown == 1 and row.status == "unknown" and "answer was lost" in row.error
    assert server.requests == 1 and fake.waits == []


# -- what goes in the request ---------------------------------------------------------


def test_the_request_carries_dripmails_headers_and_opaque_ids_only(
    store, clinic, server, fake, senders
):
    enroll_one(store, clinic)

    run(store, senders(server, fake))

    row = first_steps(store)[0]
    [sent] = server.accepted
    assert sent.entry["Metadata"] == {"delivery_id": str(row.id)}
    assert sent.entry["MessageStream"] == "broadcast"
    assert (sent.entry["TrackOpens"], sent.entry["TrackLinks"]) == (False, "None")
    assert "Tag" not in sent.entry
    assert sent.headers["List-Unsubscribe"].startswith(f"<{PUBLIC_URL}/u/")
    assert sent.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent.headers["Message-ID"].startswith("<")
    for telling in [clinic.name, "ketamine", "sleep", *(step.key for step in clinic.steps)]:
        assert telling not in str(sent.entry["Metadata"])
    assert server.problems == []


def test_the_stand_in_refuses_what_postmark_would(server, fake, senders):
    sender = senders(server, fake)
    entry = sender.entry(message("9"))
    bad = [
        {**entry, "To": "Smith, Pat <patient9@example.com>"},  # an unescaped comma: two
        {key: value for key, value in entry.items() if key not in ("HtmlBody", "TextBody")},
        {**entry, "Headers": [{"Name": "X-A", "Value": "1\r\nBcc: eve@evil.example"}]},
    ]
    answer = sender._endpoint.post(
        ("[" + ",".join(__import__("json").dumps(e) for e in bad) + "]").encode(), 3
    )

    assert [e.kind for e in answer.entries] == ["permanent"] * 3
    assert len(server.problems) == 3 and server.accepted == []


def test_the_host_comes_from_the_environment_then_the_campaign_file(server):
    settings = PostmarkSenderSettings(api_host="https://api.postmark.example")
    token_only = Settings.from_env({"POSTMARK_SERVER_TOKEN": TOKEN})
    chosen = make_sender("postmark", settings, token_only)
    local = make_sender(
        "postmark",
        settings,
        Settings.from_env({"POSTMARK_SERVER_TOKEN": TOKEN, "POSTMARK_API_HOST": server.url}),
    )
    assert chosen.host == "https://api.postmark.example" and local.host == server.url
    assert TOKEN not in repr(chosen)
    with pytest.raises(SenderConfigurationError, match="POSTMARK_SERVER_TOKEN"):
        make_sender("postmark", settings, Settings.from_env({}))
    with pytest.raises(SenderConfigurationError, match="CLINIC_PM"):
        make_sender("postmark", PostmarkSenderSettings(server_token_env="CLINIC_PM"), token_only)
    for sender in (chosen, local):
        sender.close()
