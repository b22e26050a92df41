"""The fault, privacy and header-injection tests every sending adapter passes the same way.

One parametrised suite over tests/adapters.py's CASES (how to add an adapter is there):
a real store, the real dispatcher, the real sender over the network to the adapter's
local stand-in; the sender's sleeps and clock are injected, so nothing waits on the
wall clock.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from dataclasses import replace
from email import message_from_string
from email import policy as email_policy
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import import_csv
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries
from senders.base import Message, Outcome, SenderConfigurationError
from tests.adapters import CASES, AdapterCase, Time, read_accepted, running
from tests.helpers import utc

# The senders do not depend on the database: one backend keeps this file fast.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.parametrize("case", CASES, ids=str)]

NOW = utc("2026-03-02T15:00")  # 10:00 in New York: inside the send window
PUBLIC_URL = "https://mail.clinic.example"
CLINIC_FROM = "care@balancedketamine.example.com"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, case: AdapterCase) -> None:
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", PUBLIC_URL)
    # urllib would send 127.0.0.1 through a configured proxy.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    if case.environment is not None:
        case.environment(monkeypatch)


def person(i: int) -> tuple[str, str]:
    """A contact whose address and name are unlike anything else in the logs."""
    return f"zebulon.quill{i:03d}@example.org", f"Philippa{i:03d}"


def enroll(store: Store, campaign: Campaign, folder: Path, count: int) -> None:
    """`count` contacts from a CSV, all signed up at one instant: step 1 is due at NOW."""
    lines = ["email,first_name,timezone,signed_up_at,consent"]
    for address, name in map(person, range(count)):
        lines.append(f"{address},{name},America/New_York,2026-03-02T10:00,clinic form")
    path = folder / "signups.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_csv(store, campaign, path, now=utc("2026-03-02T12:00"))
    assert report.enrolled == count and not report.rejected


def first_steps(store: Store) -> list:
    with store.connect() as conn:
        return conn.execute(
            select(deliveries).where(deliveries.c.position == 1).order_by(deliveries.c.id)
        ).all()


def run_until_settled(store: Store, dispatcher: Dispatcher, runs: int = 20) -> int:
    """`run --once` again and again, the engine's `now` moving to the next due row."""
    now = NOW
    for done in range(1, runs + 1):
        dispatcher.run(now=now)
        pending = [r.due_at for r in first_steps(store) if r.status == "scheduled"]
        if not pending:
            return done
        now = max(now, min(pending))
    return runs


# -- faults ---------------------------------------------------------------------------------


def test_30_percent_faults_over_several_runs_lose_nothing_and_send_nothing_twice(
    store, clinic_folder, tmp_path, case: AdapterCase
):
    # What the faults do to each row, not the automatic pause they would set off after
    # the first hand-off (tests/test_alerts.py): a limit of 100 % never pauses.
    with (clinic_folder / "campaign.yaml").open("a") as handle:
        handle.write("max_error_rate: 100%\n")
    clinic = load_folder(clinic_folder)
    enroll(store, clinic, tmp_path, 200)
    time = Time()
    with running(case, tmp_path) as server:
        server.seed, server.fault_rate = 7, 0.3
        sender = case.sender(server, time)
        runs = run_until_settled(store, Dispatcher(store, lambda _c: sender, max_attempts=10))
        sender.close()
        kept = [read_accepted(entry) for entry in server.accepted]

        rows = first_steps(store)
        assert runs > 1, "the faults sent nothing to a later run"
        # None lost: every delivery went, or may have (its answer was lost).
        assert {r.status for r in rows} <= {"sent", "unknown"}
        # Nothing twice: each delivery kept at most once; each sent one kept exactly once,
        # under the message id the row holds.
        by_delivery = Counter(k.delivery_id for k in kept)
        assert set(by_delivery.values()) == {1}
        assert set(by_delivery) <= {str(r.id) for r in rows}
        ids = {k.delivery_id: k.message_id for k in kept}
        for row in rows:
            if row.status == "sent":
                assert str(row.id) in ids
                assert ids[str(row.id)] in (None, row.provider_message_id)
        # Bounded: every request is counted on its row (a row the sender held back
        # untried counts one too), and no row goes past the two bounds.
        assert len(rows) < server.requests <= sum(r.attempts for r in rows)
        assert max(r.attempts for r in rows) <= 10 - 1 + 3
        assert case.problems(server) == []
        if case.after_faults is not None:
            case.after_faults(server, time, rows)


# -- privacy --------------------------------------------------------------------------------


def test_at_debug_a_run_with_faults_logs_no_address_name_or_secret(
    store, clinic, tmp_path, case: AdapterCase, caplog
):
    caplog.set_level(logging.DEBUG)
    enroll(store, clinic, tmp_path, 20)
    with running(case, tmp_path) as server:
        server.seed, server.fault_rate = 3, 0.3
        sender = case.sender(server, Time())
        run_until_settled(store, Dispatcher(store, lambda _c: sender, max_attempts=10))
        sender.close()
        assert server.accepted, "nothing was sent: there was nothing to leak"

    ours = [r for r in caplog.records if r.name.startswith("dripmail")]
    assert ours, "DEBUG logging was on and something logged"
    theirs = case.server_loggers
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r}"
        for r in caplog.records
        if not (theirs and r.name.startswith(theirs))
    )
    for address, name in map(person, range(20)):
        for needle in (address, address.split("@")[0], name):
            assert needle not in logged
    assert case.secret not in logged
    assert base64.b64encode(case.secret.encode()).decode() not in logged


def test_a_refused_credential_stops_the_run_and_marks_nothing(
    store, clinic, tmp_path, case: AdapterCase, caplog
):
    caplog.set_level(logging.DEBUG)
    enroll(store, clinic, tmp_path, 5)
    wrong = f"revoked-{case.secret[::-1]}"
    with running(case, tmp_path) as server:
        sender = case.sender(server, Time(), secret=wrong)
        with pytest.raises(SenderConfigurationError, match=case.refused) as raised:
            Dispatcher(store, lambda _c: sender).run(now=NOW)
        sender.close()
        assert server.accepted == []

    text = str(raised.value)
    assert "\n" not in text
    assert all((r.status, r.attempts) == ("scheduled", 0) for r in first_steps(store))
    assert caplog.records  # logging was on, at DEBUG
    encoded = base64.b64encode(wrong.encode()).decode()
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("dripmail"))
    for shown in (text, repr(raised.value), caplog.text, repr(sender)):
        assert wrong not in shown
    assert encoded not in ours


# -- header injection -------------------------------------------------------------------------


def evil_message(delivery_id: str, to: str) -> Message:
    """A display name, subject and header value that would each add a header if written
    as given (a header name that would: the last test)."""
    return Message(
        delivery_id=delivery_id,
        from_name="Care Team; Bcc: thief@attacker.example\r\nX-Injected-From: 1",
        from_address=CLINIC_FROM,
        to_address=to,
        to_name='Smith, Pat; "Jr"\r\nBcc: thief@attacker.example',
        subject="Sleep tips\r\nBcc: thief@attacker.example\nX-Injected-Subject: 1",
        preheader=None,
        html="<p>Hello</p>",
        text="Hello",
        reply_to=CLINIC_FROM,
        date=NOW,  # as every message the engine hands over has
        headers={
            "Message-ID": f"<dripmail.{delivery_id}.v1@balancedketamine.example.com>",
            "List-Unsubscribe": f"<{PUBLIC_URL}/u/t>,\r\nX-Injected-List: 1",
        },
    )


# Every header a sender writes for evil_message (dripmail's MIME, or what SendGrid and
# Postmark write from their JSON), with the case's `own_headers`; anything else was
# injected.
BUILT_HEADERS = {"from", "to", "subject", "message-id", "list-unsubscribe", "reply-to"} | {
    "mime-version",
    "content-type",
    "date",
}


def test_names_and_subjects_with_separators_or_cr_lf_never_add_a_header(
    store, clinic, tmp_path, case: AdapterCase
):
    recipients = ["pat01@example.com", "pat02@example.com"]
    with running(case, tmp_path) as server:
        sender = case.sender(server, Time())
        results = sender.send([evil_message(str(i), to) for i, to in enumerate(recipients, 1)])
        assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
        kept = [read_accepted(entry) for entry in server.accepted]

        assert sorted(k.recipient for k in kept) == recipients
        for message in kept:
            names = [name.lower() for name, _value in message.headers]
            assert set(names) <= BUILT_HEADERS | case.own_headers, names
            assert not any("\r" in v or "\n" in v for pair in message.headers for v in pair)
            [to] = message.all("To")
            addresses = message_from_string(f"To: {to}\n\n", policy=email_policy.default)["To"]
            assert [a.addr_spec for a in addresses.addresses] == [message.recipient]
            [sender_line] = message.all("From")
            parsed = message_from_string(f"From: {sender_line}\n\n", policy=email_policy.default)
            assert [a.addr_spec for a in parsed["From"].addresses] == [CLINIC_FROM]
            [subject] = message.all("Subject")
            assert subject.startswith("Sleep tips")
        assert case.problems(server) == []

        # And through the engine: a first name with a comma and a semicolon.
        (tmp_path / "one").mkdir()
        lines = "email,first_name,timezone,signed_up_at,consent\n"
        lines += 'pat@example.com,"Smith, Pat; Jr.",America/New_York,2026-03-02T10:00,form\n'
        (tmp_path / "one" / "signups.csv").write_text(lines, encoding="utf-8")
        import_csv(store, clinic, tmp_path / "one" / "signups.csv", now=utc("2026-03-02T12:00"))
        Dispatcher(store, lambda _c: sender).run(now=NOW)
        sender.close()
        assert [r.status for r in first_steps(store)] == ["sent"]
        assert case.problems(server) == []
        [kept] = [
            k for k in map(read_accepted, server.accepted) if k.recipient == "pat@example.com"
        ]
        [to] = kept.all("To")
        parsed = message_from_string(f"To: {to}\n\n", policy=email_policy.default)["To"]
        # One mailbox, its name whole.
        assert [(a.display_name, a.addr_spec) for a in parsed.addresses] == [
            ("Smith, Pat; Jr.", "pat@example.com")
        ]


def test_a_header_name_with_cr_lf_never_adds_a_header(tmp_path, case: AdapterCase):
    message = evil_message("1", "pat01@example.com")
    split = replace(message, headers={**message.headers, "X-Split\r\nBcc": "thief@x.example"})
    with running(case, tmp_path) as server:
        sender = case.sender(server, Time())
        [result] = sender.send([split])
        sender.close()
        # Sent without that header, or failed alone: never sent with it, nor refused by
        # the provider for a broken message.
        assert result.outcome in (Outcome.SENT, Outcome.PERMANENT)
        assert case.problems(server) == []
        for kept in map(read_accepted, server.accepted):
            names = [name.lower() for name, _value in kept.headers]
            assert set(names) <= BUILT_HEADERS | case.own_headers, names
