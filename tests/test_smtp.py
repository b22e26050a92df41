"""The SMTP sender against a real aiosmtpd server, a real SQLite store and the dispatcher."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import socket
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.authoring.sender_settings import SmtpSenderSettings
from campaigns.authoring.spec import Campaign, load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.delivery.sender_pool import SenderPool
from campaigns.delivery.workers import run_worker
from campaigns.planning.enroll import import_csv
from campaigns.reporting.reports import status_counts
from campaigns.settings import Settings
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries
from senders.base import Message, SenderConfigurationError
from senders.smtp import SmtpSender
from tests.helpers import utc
from tests.smtp_server import Certificate, Faults, Received, SmtpTestServer, make_certificate

PUBLIC_URL = "https://mail.clinic.example"
CLINIC_FROM = "care@balancedketamine.example.com"
ENROLLED_AT = utc("2026-03-02T12:00")
FIRST_RUN = utc("2026-03-02T15:00")  # 10:00 in New York: every first step is due
LOGIN = ("clinic", "correct-horse-battery-staple")
WRONG_PASSWORD = "Tr0ub4dor&3-wrong"


@pytest.fixture(autouse=True)
def _public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", PUBLIC_URL)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


class Sleeps(list):
    """An injected sleep: records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def address(i: int) -> str:
    return f"patient{i:02d}@example.com"


def enroll_contacts(store: Store, campaign: Campaign, folder: Path, count: int) -> None:
    rows = "".join(
        f"{address(i)},Pat{i},America/New_York,2026-03-02T10:00,clinic form\n" for i in range(count)
    )
    csv = folder / "contacts.csv"
    csv.write_text("email,first_name,timezone,signed_up_at,consent\n" + rows, encoding="utf-8")
    report = import_csv(store, campaign, csv, now=ENROLLED_AT)
    assert report.enrolled == count and not report.rejected


def sender_for(
    server: SmtpTestServer,
    security: str = "none",
    *,
    certificate: Certificate | None = None,
    password: str | None = None,
    sleep: Sleeps | None = None,
    **settings: object,
) -> SmtpSender:
    environ = {
        "DRIPMAIL_SMTP_HOST": "127.0.0.1",
        "DRIPMAIL_SMTP_PORT": str(server.port),
        "DRIPMAIL_SMTP_SECURITY": security,
    }
    if password is not None:
        environ |= {"DRIPMAIL_SMTP_USERNAME": LOGIN[0], "DRIPMAIL_SMTP_PASSWORD": password}
    return SmtpSender.from_settings(
        SmtpSenderSettings(**settings),
        Settings.from_env(environ),
        ssl_context=certificate.client_context() if certificate else None,
        sleep=sleep if sleep is not None else Sleeps(),
    )


def run(store: Store, sender: SmtpSender, now=FIRST_RUN, **options):
    return Dispatcher(store, lambda _campaign: sender, **options).run(now=now)


def first_steps(store: Store) -> dict[str, object]:
    """Delivery rows of step 1, by delivery id."""
    with store.connect() as conn:
        rows = conn.execute(select(deliveries).where(deliveries.c.position == 1)).all()
    return {str(row.id): row for row in rows}


def by_delivery(received: list[Received]) -> Counter[str]:
    return Counter(r.delivery_id for r in received)


def assert_well_formed(received: Received) -> None:
    raw = received.data
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF in the message"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998  # RFC 5322 2.1.1
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert not [d for part in message.walk() for d in part.defects]
    assert [a.addr_spec for a in message["To"].addresses] == list(received.rcpt_tos)
    assert message["From"].addresses[0].addr_spec == received.mail_from == CLINIC_FROM
    # The header as mail clients read it: two URIs, no RFC 2047 encoded word.
    raw_header = email.message_from_bytes(raw, policy=email.policy.compat32)["List-Unsubscribe"]
    assert "=?" not in raw_header
    uris = [part.strip() for part in " ".join(raw_header.split()).split(",")]
    assert len(uris) == 2 and all(re.fullmatch(r"<[^<>\s]+>", uri) for uri in uris)
    assert uris[0].startswith(f"<{PUBLIC_URL}/") and uris[1].startswith("<mailto:")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# -- the happy path -------------------------------------------------------------------


@pytest.mark.parametrize("security", ["none", "starttls", "ssl"])
# aiosmtpd cannot see implicit TLS and warns that AUTH is allowed without it.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_fifty_contacts_arrive_as_well_formed_messages(
    store, clinic, tmp_path, certificate, security
):
    enroll_contacts(store, clinic, tmp_path, 50)
    tls = certificate.server_context()
    server = SmtpTestServer(
        starttls=tls if security == "starttls" else None,
        implicit_tls=tls if security == "ssl" else None,
        credentials=None if security == "none" else LOGIN,
    )
    with server:
        sender = sender_for(
            server,
            security,
            certificate=certificate,
            password=None if security == "none" else LOGIN[1],
        )
        report = run(store, sender, batch_size=20)  # three batches, one connection
        sender.close()

    assert report.sent == 50 and status_counts(store)[clinic.name]["sent"] == 50
    assert sorted(r.rcpt_tos[0] for r in server.received) == [address(i) for i in range(50)]
    for received in server.received:
        assert_well_formed(received)
    rows = first_steps(store)
    assert by_delivery(server.received) == Counter(list(rows))  # each delivery exactly once
    for received in server.received:
        assert rows[received.delivery_id].provider_message_id == received.message["Message-ID"]
    assert len({r.peer for r in server.received}) == 1, "the connection was not reused"
    assert server.handler.quits == 1
    assert server.logins == ([] if security == "none" else [True])


# -- per-recipient replies ------------------------------------------------------------


def no_address_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return not any("@" in r.getMessage() for r in caplog.records if r.name == "dripmail.smtp")


def test_a_recipient_refused_with_550_fails_alone(store, clinic, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="dripmail")
    enroll_contacts(store, clinic, tmp_path, 50)
    with SmtpTestServer(Faults(refuse={address(7)})) as server:
        report = run(store, sender_for(server))

    assert (report.sent, report.failed) == (49, 1)
    refused = [row for row in first_steps(store).values() if row.status == "failed"]
    assert len(refused) == 1
    assert "550 5.1.1" in refused[0].error and "User unknown" in refused[0].error
    assert len(server.received) == 49
    assert address(7) not in {r.rcpt_tos[0] for r in server.received}
    assert no_address_logged(caplog)


def test_a_451_is_rescheduled_and_delivered_on_a_later_run(store, clinic, tmp_path):
    enroll_contacts(store, clinic, tmp_path, 50)
    with SmtpTestServer(Faults(defer={address(7)})) as server:
        sender = sender_for(server)
        first = run(store, sender)
        deferred = [row for row in first_steps(store).values() if row.status == "scheduled"]
        assert (first.sent, first.retrying) == (49, 1) and len(deferred) == 1
        row = deferred[0]
        assert row.due_at > FIRST_RUN and "451 4.7.1" in row.error
        assert len(server.received) == 49

        later = run(store, sender, now=row.due_at)

    assert later.sent == 1
    assert status_counts(store)[clinic.name]["sent"] == 50
    assert [r.rcpt_tos[0] for r in server.received].count(address(7)) == 1
    assert set(by_delivery(server.received).values()) == {1}


# -- dropped connections --------------------------------------------------------------


def test_a_server_that_hangs_up_mid_batch_loses_nothing_and_sends_nothing_twice(
    store, clinic, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG, logger="dripmail")
    enroll_contacts(store, clinic, tmp_path, 50)
    # After 20 messages the server cuts the 21st off after its final "." and keeps nothing.
    with SmtpTestServer(Faults(drop_after=20)) as server:
        sleeps = Sleeps()
        report = run(store, sender_for(server, sleep=sleeps))

    assert report.sent == 50 and server.handler.dropped == 1
    assert by_delivery(server.received) == Counter(list(first_steps(store)))
    assert len({r.peer for r in server.received}) == 2  # reconnected once
    assert sleeps == []  # a dropped connection is reopened at once
    assert "same Message-ID" in caplog.text and no_address_logged(caplog)


def test_a_server_that_keeps_dropping_is_retried_within_bounds_then_later(store, clinic, tmp_path):
    enroll_contacts(store, clinic, tmp_path, 30)
    with SmtpTestServer(Faults(drop_after=10, drops=3)) as server:
        sleeps = Sleeps()
        sender = sender_for(server, sleep=sleeps, max_attempts=3, max_wait=20)
        first = run(store, sender)
        # The 11th message is tried three times (the bound), the rest are held back.
        assert (first.sent, first.retrying) == (10, 20)
        assert server.handler.dropped == 3
        assert len(sleeps) == 1 and 0 < sleeps[0] <= 20  # reconnect at once, then back off
        rows = first_steps(store).values()
        assert all(r.due_at > FIRST_RUN for r in rows if r.status == "scheduled")
        assert [r.attempts for r in rows if r.status == "scheduled"].count(3) == 1

        while pending := [r.due_at for r in first_steps(store).values() if r.status == "scheduled"]:
            run(store, sender, now=min(pending))

    assert status_counts(store)[clinic.name]["sent"] == 30
    assert by_delivery(server.received) == Counter(list(first_steps(store)))


def test_credentials_refused_after_a_reconnect_stop_the_run_without_double_sends(
    store, clinic, tmp_path, certificate
):
    enroll_contacts(store, clinic, tmp_path, 30)
    server = SmtpTestServer(starttls=certificate.server_context(), credentials=LOGIN)

    def rotate_password() -> None:
        server.credentials = (LOGIN[0], "rotated-by-the-provider")

    server.faults.drop_after, server.faults.on_drop = 10, rotate_password
    with server:
        sender = sender_for(server, "starttls", certificate=certificate, password=LOGIN[1])
        first = run(store, sender)
        # What went before the drop stays sent; nothing after it is marked failed.
        assert (first.sent, first.failed, first.retrying) == (10, 0, 20)
        later = min(r.due_at for r in first_steps(store).values() if r.status == "scheduled")
        with pytest.raises(SenderConfigurationError, match="username/password"):
            run(store, sender, now=later)

    assert status_counts(store)[clinic.name]["sent"] == 10
    assert len(server.received) == 10 and set(by_delivery(server.received).values()) == {1}


# -- a hostile message (header injection itself: tests/test_adapters.py) ----------------


def evil_message(delivery_id: str, to: str) -> Message:
    return Message(
        delivery_id=delivery_id,
        from_name="Care Team; Bcc: thief@attacker.example\r\nX-Injected-From: 1",
        from_address=CLINIC_FROM,
        to_address=to,
        to_name="Pat;\r\nBcc: thief@attacker.example",
        subject="Sleep tips\r\nBcc: thief@attacker.example\nX-Injected-Subject: 1",
        preheader=None,
        html="<p>Hello</p>",
        text="Hello",
        headers={
            "Message-ID": f"<dripmail.{delivery_id}.v1@balancedketamine.example.com>",
            "List-Unsubscribe": f"<{PUBLIC_URL}/u/t>,\r\nX-Injected-List: 1",
        },
    )


# -- configuration --------------------------------------------------------------------


def test_an_untrusted_certificate_stops_the_run(store, clinic, tmp_path, certificate):
    enroll_contacts(store, clinic, tmp_path, 3)
    with SmtpTestServer(starttls=certificate.server_context()) as server:
        sender = sender_for(server, "starttls")  # the system trust store only
        with pytest.raises(SenderConfigurationError, match=r"certificate .* is not trusted"):
            run(store, sender)
    assert all(r.status == "scheduled" for r in first_steps(store).values())


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DRIPMAIL_SMTP_HOST": "127.0.0.1", "DRIPMAIL_SMTP_PORT": "abc"}, "DRIPMAIL_SMTP_PORT"),
        ({"DRIPMAIL_SMTP_HOST": "127.0.0.1", "DRIPMAIL_SMTP_PORT": "70000"}, "not a port"),
        ({}, "no host: set DRIPMAIL_SMTP_HOST"),
        ({"DRIPMAIL_SMTP_HOST": "smtp.example.com:587"}, "give the port in"),
        ({"DRIPMAIL_SMTP_HOST": "https://smtp.example.com"}, "not a URL"),
        ({"DRIPMAIL_SMTP_HOST": "smtp.example.com", "DRIPMAIL_SMTP_SECURITY": "tls1"}, "'tls1'"),
        (
            {"DRIPMAIL_SMTP_HOST": "smtp.example.com", "DRIPMAIL_SMTP_USERNAME": "clinic"},
            "DRIPMAIL_SMTP_PASSWORD is not",
        ),
        (
            {
                "DRIPMAIL_SMTP_HOST": "smtp.example.com",
                "DRIPMAIL_SMTP_SECURITY": "none",
                "DRIPMAIL_SMTP_USERNAME": "clinic",
                "DRIPMAIL_SMTP_PASSWORD": WRONG_PASSWORD,
            },
            "unencrypted",
        ),
    ],
)
def test_a_misconfigured_sender_fails_before_anything_is_claimed(
    store, clinic, tmp_path, monkeypatch, environ, expected
):
    enroll_contacts(store, clinic, tmp_path, 2)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SenderConfigurationError) as caught:
        SenderPool("smtp").check(store)
    text = str(caught.value)
    assert expected in text and "\n" not in text and WRONG_PASSWORD not in text
    assert all((r.status, r.attempts) == ("scheduled", 0) for r in first_steps(store).values())


def test_a_host_that_does_not_exist_is_a_configuration_error(monkeypatch):
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    sender = SmtpSender("smtp.no-such-host.example", 587, sleep=Sleeps())
    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)  # the answer DNS would give
    with pytest.raises(SenderConfigurationError, match="does not exist"):
        sender.send([evil_message("1", address(1))])


def test_a_refused_connection_is_transient_and_bounded(store, clinic, tmp_path):
    enroll_contacts(store, clinic, tmp_path, 5)
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    sender = SmtpSender.from_settings(
        SmtpSenderSettings(host="127.0.0.1", port=port, security="none", max_attempts=3),
        Settings.from_env({}),
        sleep=sleeps,
    )
    report = run(store, sender)

    assert (report.sent, report.failed, report.retrying) == (0, 0, 5)
    rows = first_steps(store).values()
    assert all(r.status == "scheduled" and r.due_at > FIRST_RUN for r in rows)
    assert all("could not connect" in r.error for r in rows)
    assert len(sleeps) == 2 and sum(sleeps) <= 60  # three tries for the first, none for the rest


def test_environment_variables_override_the_campaign_file(
    store, clinic_folder, tmp_path, monkeypatch
):
    spec = clinic_folder / "campaign.yaml"
    spec.write_text(
        spec.read_text().replace(
            "sender:\n  type: file\n  outbox: outbox\n",
            "sender:\n  type: smtp\n  host: smtp.campaign-file.example\n  port: 2525\n"
            "  security: starttls\n",
        )
    )
    campaign = load_folder(clinic_folder)
    from_file = SmtpSender.from_settings(campaign.spec.sender, Settings.from_env({}))
    assert (from_file.host, from_file.port, from_file.security) == (
        "smtp.campaign-file.example",
        2525,
        "starttls",
    )
    enroll_contacts(store, campaign, tmp_path, 3)
    with SmtpTestServer() as server:
        monkeypatch.setenv("DRIPMAIL_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DRIPMAIL_SMTP_PORT", str(server.port))
        monkeypatch.setenv("DRIPMAIL_SMTP_SECURITY", "none")
        (report,) = run_worker(store, now=FIRST_RUN, once=True)

    assert report.sent == 3
    assert sorted(r.rcpt_tos[0] for r in server.received) == [address(i) for i in range(3)]
