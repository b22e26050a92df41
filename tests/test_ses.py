"""The SES sender: boto3 against moto's SES v2 emulation behind a fault-injecting proxy.

Real SQLite store, real dispatcher, real boto3 over HTTP; the sender's sleep and clock
are injected (waits are recorded and return at once), so nothing waits on the wall
clock but the client's own read timeout for a slow answer. The 30 % fault run, the
refused secret and header injection are in the suite every adapter shares
(tests/test_adapters.py, with SES's own checks in tests/adapters.py).
"""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.authoring.sender_settings import SesSenderSettings
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.settings import Settings
from senders.base import Outcome, SenderConfigurationError
from senders.ses import DELIVERY_HEADER, SesSender
from tests.ses_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SesServer, aws_environment
from tests.test_cli import snapshot
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

pytestmark = pytest.mark.sqlite_only
SENDER_DOMAIN = "balancedketamine.example.com"  # the clinic campaign's from address's


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_environment(monkeypatch)
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", PUBLIC_URL)


@pytest.fixture
def server() -> Iterator[SesServer]:
    with SesServer(slow_seconds=2.0) as running:
        running.verify(SENDER_DOMAIN)
        yield running


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def senders() -> Iterator[Callable[..., SesSender]]:
    """Builds senders on the stand-in (campaign settings as keywords); closes them after."""
    made: list[SesSender] = []

    def build(server: SesServer, fake: FakeTime, **settings: Any) -> SesSender:
        config = SesSenderSettings(**{"region": server.region, **settings})
        environ = {"DRIPMAIL_SES_ENDPOINT_URL": server.url}
        sender = SesSender.from_settings(
            config, Settings.from_env(environ), sleep=fake.sleep, clock=fake.clock
        )
        made.append(sender)
        return sender

    yield build
    for sender in made:
        sender.close()


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


# -- the acceptance runs --------------------------------------------------------------


def test_the_clinic_campaign_reaches_200_contacts(store, clinic, tmp_path, server, fake, senders):
    enroll_many(store, clinic, tmp_path, 200)
    sender = senders(server, fake, configuration_set="clinic-events")

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert report.sent == 200
    assert server.problems == [] and server.moto_sent() == 200
    rows = first_steps(store)
    assert {r.status for r in rows} == {"sent"}
    by_delivery = {a.delivery_id: a for a in server.accepted}
    assert sorted(by_delivery) == sorted(str(r.id) for r in rows)
    for row in rows:
        accepted = by_delivery[str(row.id)]
        assert row.provider_message_id == accepted.message_id
        assert accepted.configuration_set == "clinic-events"
        # Only opaque ids travel as tags and in our header.
        assert accepted.tags["delivery_id"] == str(row.id)
        assert set(accepted.tags) == {"delivery_id", "campaign", "step"}
        assert accepted.tags["campaign"].startswith("c-") and clinic.name not in str(accepted.tags)
        mime = parsed(accepted.raw)
        assert mime[DELIVERY_HEADER] == str(row.id)
        # dripmail's own MIME: one-click unsubscribe, our Message-ID, the text part first.
        assert mime["List-Unsubscribe"].startswith(f"<{PUBLIC_URL}/u/")
        assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mime["Message-ID"].startswith("<dripmail.")
        assert [p.get_content_type() for p in mime.iter_parts()] == ["text/plain", "text/html"]
        assert accepted.recipient == mime["To"].addresses[0].addr_spec
    assert len({r.provider_message_id for r in rows}) == 200
    assert {r.status for r in all_rows(store) if r.position > 1} == {"scheduled"}


# -- one answer at a time -----------------------------------------------------------


def test_throttling_waits_then_sends(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script("throttle")
    sender = senders(server, fake)

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "sent" and row.attempts == 2
    assert len(fake.waits) == 1 and server.accepted_ids() == [str(row.id)]


def test_a_throttle_beyond_max_attempts_goes_to_a_later_run(store, clinic, server, fake, senders):
    enroll_one(store, clinic)
    server.script("throttle", "5xx", "throttle")
    sender = senders(server, fake, max_attempts=3)
    dispatcher = Dispatcher(store, lambda _campaign: sender)

    dispatcher.run(now=NOW)

    row = first_steps(store)[0]
    assert row.status == "scheduled" and row.attempts == 3 and row.due_at > NOW
    assert "throttled" in row.error and "after 3 attempts" in row.error
    dispatcher.run(now=row.due_at)
    row = first_steps(store)[0]
    assert row.status == "sent" and server.accepted_ids() == [str(row.id)]


@pytest.mark.parametrize("fault", ["drop", "slow"])
def test_an_answer_lost_after_sending_is_unknown_and_never_re_sent(
    store, clinic, server, fake, senders, fault
):
    enroll_one(store, clinic)
    server.script(fault)
    sender = senders(server, fake, timeout=0.5)
    dispatcher = Dispatcher(store, lambda _campaign: sender)

    report = dispatcher.run(now=NOW)
    dispatcher.run(now=NOW.replace(day=NOW.day + 1))

    row = first_steps(store)[0]
    assert report.unknown == 1 and row.status == "unknown" and "answer was lost" in row.error
    assert server.accepted_ids() == [str(row.id)] and server.requests == 1 and fake.waits == []


def test_a_message_ses_refuses_fails_alone_and_names_no_address(
    store, clinic, tmp_path, server, fake, senders
):
    enroll_many(store, clinic, tmp_path, 3)
    server.script(None, "reject", None)
    sender = senders(server, fake, concurrency=1)

    report = Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    rows = first_steps(store)
    assert (report.sent, report.failed) == (2, 1)
    [failed] = [r for r in rows if r.status == "failed"]
    assert "MessageRejected" in failed.error and "sandbox" in failed.error
    assert "@" not in failed.error and "[address]" in failed.error
    assert server.requests == 3 and fake.waits == []


def test_results_come_back_in_the_order_of_the_messages(server, fake, senders):
    server.script("reject", None, "drop")  # arrival order, one thread
    sender = senders(server, fake, concurrency=1)

    results = sender.send([message(str(i)) for i in range(5)])

    assert [r.delivery_id for r in results] == ["0", "1", "2", "3", "4"]
    assert [r.outcome for r in results] == [
        Outcome.PERMANENT,
        Outcome.SENT,
        Outcome.AMBIGUOUS,
        Outcome.SENT,
        Outcome.SENT,
    ]


def test_logs_carry_opaque_ids_only(store, clinic, tmp_path, server, fake, senders, caplog):
    caplog.set_level(logging.DEBUG)
    enroll_many(store, clinic, tmp_path, 3)
    server.script(None, "reject", "throttle")
    sender = senders(server, fake, concurrency=1)

    Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    assert any(r.name == "dripmail.ses" for r in caplog.records)  # logging was on
    for text in ("patient0", "@example.com", "Pat0", "Ketamine", SECRET_ACCESS_KEY):
        assert text not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("botocore") and r.levelno < 30]


# -- configuration ---------------------------------------------------------------------


def test_an_unverified_sender_stops_the_run_and_marks_nothing(
    store, clinic, tmp_path, fake, senders
):
    enroll_many(store, clinic, tmp_path, 5)
    with SesServer() as unverified:  # no identity verified
        sender = senders(unverified, fake)

        with pytest.raises(SenderConfigurationError) as raised:
            Dispatcher(store, lambda _campaign: sender).run(now=NOW)

        assert "has not verified the sender identity" in str(raised.value)
        assert unverified.accepted == []
    rows = all_rows(store)
    assert {r.status for r in rows} == {"scheduled"} and {r.attempts for r in rows} == {0}


def test_refused_credentials_show_no_key_id_and_refuse_the_next_call_at_once(
    store, clinic, tmp_path, server, fake, senders, caplog, monkeypatch
):
    # The refused secret is the shared suite's (tests/test_adapters.py); an AWS
    # credential has a key id too, and a refusal is kept.
    caplog.set_level(logging.DEBUG)
    enroll_many(store, clinic, tmp_path, 5)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREVOKEDKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "revoked-secret-do-not-print")
    sender = senders(server, fake)

    with pytest.raises(SenderConfigurationError) as raised:
        Dispatcher(store, lambda _campaign: sender).run(now=NOW)

    for text in (str(raised.value), caplog.text, repr(sender)):
        assert "AKIAREVOKEDKEY000000" not in text
    requests = server.requests
    with pytest.raises(SenderConfigurationError, match="refused the credentials"):
        sender.send([message("9")])
    assert server.requests == requests  # at once: no request


def write_ses_campaign(folder: Path, region: str = "eu-west-1") -> None:
    spec = folder / "campaign.yaml"
    text = spec.read_text(encoding="utf-8")
    old = "sender:\n  type: file\n  outbox: outbox\n"
    assert old in text
    new = f"sender:\n  type: ses\n  region: {region}\n  configuration_set: clinic\n"
    spec.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def db(tmp_path: Path, clinic_folder: Path) -> str:
    """A SQLite database with one contact enrolled in the clinic campaign, sent by SES."""
    write_ses_campaign(clinic_folder)
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    result = dripmail(
        "enroll", str(clinic_folder), "--email", "ana@example.com",
        "--timezone", "America/New_York", "--signed-up-at", "2026-03-02T10:00", "--db", url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return url


def test_run_without_aws_credentials_stops_before_anything_is_claimed(db, monkeypatch):
    aws_environment(monkeypatch, credentials=False)
    before = snapshot(db)

    result = dripmail("run", "--once", "--now", "2026-03-02T15:00Z", "--db", db)

    assert_one_line_error(result, "no AWS credentials", "AWS_ACCESS_KEY_ID")
    assert snapshot(db) == before


def test_run_sends_with_the_campaign_files_ses_settings(db, server, monkeypatch):
    monkeypatch.setenv("DRIPMAIL_SES_ENDPOINT_URL", server.url)

    result = dripmail("run", "--once", "--now", "2026-03-02T15:00Z", "--db", db)

    assert result.exit_code == 0, result.output
    assert "sent 1," in result.stdout
    [accepted] = server.accepted
    assert accepted.recipient == "ana@example.com" and accepted.configuration_set == "clinic"


def test_send_test_goes_through_ses(clinic_folder, db, server, monkeypatch):
    monkeypatch.setenv("DRIPMAIL_SES_ENDPOINT_URL", server.url)
    before = snapshot(db)

    result = dripmail(
        "send-test", str(clinic_folder), "--step", "welcome",
        "--to", "staff@clinic.example", "--sender", "ses", "--db", db,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    [accepted] = server.accepted
    mime = parsed(accepted.raw)
    assert mime["Subject"].startswith("[TEST] ") and mime["X-Dripmail-Test"] == "yes"
    assert accepted.recipient == "staff@clinic.example"
    assert accepted.tags["delivery_id"].startswith("test-")
    assert snapshot(db) == before


def test_the_stand_in_refuses_what_ses_would(server):
    import boto3

    client = boto3.client(
        "sesv2",
        region_name=server.region,
        endpoint_url=server.url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    long_line = b"From: care@" + SENDER_DOMAIN.encode() + b"\r\nSubject: x\r\n\r\n" + b"x" * 1200
    with pytest.raises(client.exceptions.BadRequestException):
        client.send_email(
            Destination={"ToAddresses": ["a@example.com"]},
            Content={"Raw": {"Data": long_line}},
            EmailTags=[{"Name": "delivery_id", "Value": "a b"}],
        )
    client.close()
    assert any("over 1000 characters" in p for p in server.problems)
    assert any("not a valid tag" in p for p in server.problems)
    assert server.accepted == []
