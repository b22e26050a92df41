"""Alerts and the automatic pause, with real parts: the `dripmail` commands, the store,
the real `sendgrid` client against its local stand-in failing 30 % of emails for good,
the file sender, and an aiosmtpd server receiving the alert emails.

The hourly limit is on the real clock; where an hour must pass, the time is passed in
(`now=`), never slept on.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from campaigns.compliance.event_model import EventKind, ProviderEvent
from campaigns.compliance.events import apply_provider_events
from campaigns.delivery.alerts import Alerter, paused_alert
from campaigns.delivery.autopause import record_handoff
from campaigns.delivery.health_rules import PauseKind, PauseReason
from campaigns.delivery.heartbeats import HeartbeatRecorder, heartbeats, unknown_alert, watch
from campaigns.errors import InputError
from campaigns.planning.enroll import import_csv
from campaigns.settings import Settings
from campaigns.storage.publish import open_campaign
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import alerts, campaigns, deliveries, enrollments
from cli import app
from tests.conftest import write_clinic_campaign
from tests.helpers import utc
from tests.sendgrid_server import Fault, SendGridServer
from tests.smtp_server import SmtpTestServer
from tests.unit.test_sendgrid import KEY

FAILING = "sleep-sendgrid"  # sends through SendGrid, 30 % of its emails refused for good
HEALTHY = "ketamine-and-sleep"  # the file sender
NOW = "2026-03-02T15:00Z"  # 10:00 in New York: every step 1 is due, inside the window
ALERT_TO = "it-desk@clinic.example"


def patient(campaign: str, i: int) -> str:
    return f"{campaign.split('-')[0]}.quill{i:03d}@example.org"


def enroll(store: Store, folder: Path, count: int) -> None:
    campaign = open_campaign(store, folder)
    lines = ["email,first_name,timezone,signed_up_at,consent"]
    lines += [
        f"{patient(campaign.name, i)},Philippa{i:03d},America/New_York,2026-03-02T10:00,form"
        for i in range(count)
    ]
    path = folder / "signups.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_csv(store, campaign, path, now=utc("2026-03-02T12:00"))
    assert report.enrolled == count


def failing_folder(tmp_path: Path) -> Path:
    folder = write_clinic_campaign(tmp_path / "failing")
    path = folder / "campaign.yaml"
    text = path.read_text()
    text = text.replace(f"name: {HEALTHY}", f"name: {FAILING}")
    text = text.replace(
        "sender:\n  type: file\n  outbox: outbox\n", "sender:\n  type: sendgrid\n  batch: false\n"
    )
    path.write_text(text)
    return folder


@pytest.fixture
def smtp():
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def sendgrid():
    with SendGridServer(KEY) as server:
        # 30 % of the contacts (by their place in the list) are refused for good: 400.
        server.fault_for = lambda delivery_id, nth: (
            Fault.error(400, "Does not contain a valid address.", "personalizations.0.to")
            if (int(delivery_id) - 1) // 6 % 10 < 3
            else None
        )
        yield server


@pytest.fixture
def env(monkeypatch, sendgrid, smtp, tmp_path) -> dict[str, str]:
    values = {
        "DRIPMAIL_PUBLIC_URL": "https://mail.clinic.example",
        "SENDGRID_API_KEY": KEY,
        "SENDGRID_API_HOST": sendgrid.url,
        "DRIPMAIL_ALERT_TO": ALERT_TO,
        "DRIPMAIL_ALERT_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
        "DRIPMAIL_ALERT_FROM": "dripmail@clinic.example",
        "DRIPMAIL_OUTBOX": str(tmp_path / "outbox"),
        "no_proxy": "127.0.0.1,localhost",
    }
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def dripmail(*args: str):
    return CliRunner().invoke(app, list(args))


def first_steps(store: Store, campaign: str) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.status)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .where(enrollments.c.campaign == campaign, deliveries.c.position == 1)
        ).scalars()
        counts: dict[str, int] = {}
        for status in rows:
            counts[status] = counts.get(status, 0) + 1
    return counts


def test_a_campaign_failing_30_percent_pauses_itself_others_send_one_alert_an_hour(
    store, tmp_path, env, sendgrid, smtp
):
    failing = failing_folder(tmp_path)
    healthy = write_clinic_campaign(tmp_path / "healthy")
    enroll(store, failing, 200)
    enroll(store, healthy, 100)

    run = dripmail("run", "--once", "--now", NOW, "--batch-size", "50", "--db", store.url)
    assert run.exit_code == 0, run.output
    reason = "15 failed of its last 50 emails handed to the sender (30%, above max_error_rate 10%)"
    assert f"warning: campaign {FAILING} paused itself: {reason}" in run.stderr

    # It paused after its first hand-off of 50: the other 150 were never handed off.
    assert first_steps(store, FAILING) == {"sent": 35, "failed": 15, "scheduled": 150}
    # The other campaign kept sending: every email of its first step is in its outbox.
    assert first_steps(store, HEALTHY) == {"sent": 100}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 100
    assert sendgrid.requests and len(sendgrid.requests) == 50

    # One alert email reached the clinic's SMTP server: counts, the campaign, what to do.
    assert len(smtp.received) == 1
    alert = smtp.received[0].message
    assert smtp.received[0].rcpt_tos == (ALERT_TO,)
    assert alert["Subject"] == f"[dripmail] campaign {FAILING} paused itself: error rate too high"
    assert alert["Auto-Submitted"] == "auto-generated"
    text = alert.get_content()
    assert f"Why: {reason}." in text
    assert f"Resume: dripmail resume {FAILING}" in text
    assert "@example.org" not in text and "Philippa" not in text  # no patient data

    # `status` and `stats` say why; the worker's heartbeat is there, stopped cleanly.
    status = dripmail("status", "--db", store.url)
    assert status.exit_code == 0, status.output
    assert (
        f"campaign {FAILING}: paused by dripmail since 2026-03-02 15:00 UTC: {reason}; "
        f"only a person resumes it: dripmail resume {FAILING}"
    ) in status.output
    assert re.search(
        r"workers:\n  \S+ \(pid \d+\): last tick .* UTC \(\d+ s ago\), 1 tick since", status.output
    )
    assert "135 sent, 15 failed, 0 unknown; stopped" in status.output
    stats = dripmail("stats", FAILING, "--db", store.url)
    assert f"paused by dripmail since 2026-03-02 15:00 UTC: {reason}" in stats.output

    # The engine never resumes it: later runs leave it paused.
    dripmail("run", "--once", "--now", "2026-03-02T16:00Z", "--db", store.url)
    assert first_steps(store, FAILING)["scheduled"] == 150

    # A person resumes it (the reason goes); it fails again and pauses again, and the
    # second alert of the kind within the hour is logged, not emailed.
    resumed = dripmail("resume", FAILING, "--now", "2026-03-02T16:30Z", "--db", store.url)
    assert resumed.exit_code == 0, resumed.output
    assert "paused by dripmail" not in dripmail("status", "--db", store.url).output
    again = dripmail(
        "run", "--once", "--now", "2026-03-02T16:30Z", "--batch-size", "50", "--db", store.url
    )
    assert f"warning: campaign {FAILING} paused itself: 30 failed of its last 100" in again.stderr
    assert len(smtp.received) == 1

    # An hour after the first email (time passed in, not slept on), the next one goes,
    # and says how many were only logged meanwhile.
    with store.connect() as conn:
        first_sent = conn.scalar(select(alerts.c.sent_at))
    alerter = Alerter(store, Settings.from_env(env))
    why = PauseReason(PauseKind.ERROR_RATE, "test")
    assert not alerter.raise_(
        paused_alert(FAILING, why, first_sent), now=first_sent + timedelta(minutes=59)
    )
    assert len(smtp.received) == 1
    assert alerter.raise_(
        paused_alert(FAILING, why, first_sent), now=first_sent + timedelta(minutes=60)
    )
    assert len(smtp.received) == 2
    assert "2 more alerts of this kind were raised in the last hour" in (
        smtp.received[1].message.get_content()
    )


def test_a_refused_key_holds_its_campaign_and_is_alerted(store, tmp_path, env, monkeypatch, smtp):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.revoked")
    enroll(store, failing_folder(tmp_path), 5)
    enroll(store, write_clinic_campaign(tmp_path / "healthy"), 5)
    run = dripmail("run", "--once", "--now", NOW, "--db", store.url)
    assert run.exit_code == 1, run.output  # a campaign kept back
    assert first_steps(store, HEALTHY) == {"sent": 5}
    assert len(smtp.received) == 1
    alert = smtp.received[0].message
    assert alert["Subject"] == f"[dripmail] the sender of campaign {FAILING} cannot send"
    assert "check the key or password" in alert.get_content()
    assert "SG.revoked" not in alert.get_content()


def test_a_silent_worker_and_piling_unknown_deliveries_are_alerted(store, tmp_path, env, smtp):
    enroll(store, write_clinic_campaign(tmp_path / "healthy"), 25)
    settings = Settings.from_env(env)
    started = utcnow() - timedelta(minutes=7)
    gone = HeartbeatRecorder(store, "db1:4242:abcd", interval=30, clock=lambda: started)
    gone.start()
    alerter = Alerter(store, settings)
    # Another worker's tick, one minute after it fell silent: nothing yet.
    watch(store, alerter, me="db2:77:ef01", now=started + timedelta(minutes=5))
    assert smtp.received == []
    watch(store, alerter, me="db2:77:ef01", now=started + timedelta(minutes=7))
    assert len(smtp.received) == 1
    assert "has been silent for 7 min" in smtp.received[0].message["Subject"]

    status = dripmail("status", "--db", store.url)
    assert re.search(r"db1:4242:abcd \(pid \d+\): last tick .*; silent for 7 min", status.output)
    assert [beat.worker for beat in heartbeats(store)] == ["db1:4242:abcd"]

    with store.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.position == 1).values(status="unknown"))
    watch(store, alerter, me="db2:77:ef01", now=started + timedelta(minutes=8))
    assert len(smtp.received) == 2
    assert smtp.received[1].message["Subject"] == "[dripmail] 25 deliveries are unknown"
    assert "dripmail retry --unknown" in smtp.received[1].message.get_content()


def test_without_an_smtp_url_the_alert_goes_through_the_campaigns_own_sender(
    store, tmp_path, env, monkeypatch
):
    monkeypatch.delenv("DRIPMAIL_ALERT_SMTP_URL")
    enroll(store, write_clinic_campaign(tmp_path / "healthy"), 1)
    alerter = Alerter(store, Settings.from_env({**env, "DRIPMAIL_ALERT_SMTP_URL": ""}))
    why = PauseReason(PauseKind.BOUNCE_RATE, "11 hard bounces for 200 emails sent")
    assert alerter.raise_(paused_alert(HEALTHY, why, utcnow()))
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    text = eml.read_text()
    assert f"To: {ALERT_TO}" in text and 'From: "dripmail (Balanced Ketamine' in text


def test_an_alert_that_cannot_be_sent_is_logged_and_sending_goes_on(store, tmp_path, env, caplog):
    enroll(store, write_clinic_campaign(tmp_path / "healthy"), 1)
    closed = {**env, "DRIPMAIL_ALERT_SMTP_URL": "smtp://127.0.0.1:9"}  # nobody listens
    alerter = Alerter(store, Settings.from_env(closed))
    why = PauseReason(PauseKind.ERROR_RATE, "test")
    assert not alerter.raise_(paused_alert(HEALTHY, why, utcnow()))
    assert "alert auto_pause: could not be emailed (ConnectionRefusedError" in caplog.text


def test_complaints_past_gmails_limit_pause_the_campaign_from_the_events(
    store, tmp_path, env, smtp
):
    enroll(store, write_clinic_campaign(tmp_path / "healthy"), 10)
    with store.begin() as conn:
        record_handoff(conn, HEALTHY, sent=1000, failed=0, unknown=0, real_now=utcnow())
        ids = list(conn.scalars(select(deliveries.c.id).where(deliveries.c.position == 1)))
    complaint = [
        ProviderEvent("sendgrid", f"evt-{i}", EventKind.COMPLAINED, delivery_id=ids[i])
        for i in range(3)
    ]
    # As `dripmail serve` opens it: with the settings of its environment.
    served = Store(store.url, settings=Settings.from_env(env))
    report = apply_provider_events(served, complaint, now=utc(NOW))
    assert report.paused == []  # 3 of 1000: 0.3 %, not above
    report = apply_provider_events(
        served,
        [*complaint, ProviderEvent("sendgrid", "evt-3", EventKind.COMPLAINED, delivery_id=ids[3])],
        now=utc(NOW),
    )
    assert report.stored == 1 and report.paused == [HEALTHY]  # a replay counts once
    with store.connect() as conn:
        row = conn.execute(select(campaigns).where(campaigns.c.name == HEALTHY)).one()
    assert (row.status, row.pause_kind) == ("paused", "complaint_rate")
    assert row.pause_reason.startswith("4 spam complaints for 1000 emails sent in the last 7 days")
    assert len(smtp.received) == 1
    assert "complaint rate too high" in smtp.received[0].message["Subject"]
    served.close()


def test_max_error_rate_in_the_campaign_file(tmp_path):
    folder = write_clinic_campaign(tmp_path / "c")
    path = folder / "campaign.yaml"
    path.write_text(path.read_text() + "max_error_rate: 5%\n")
    assert (
        open_campaign(Store(f"sqlite:///{tmp_path / 'x.db'}"), folder).spec.max_error_rate == 0.05
    )
    path.write_text(path.read_text().replace("max_error_rate: 5%", "max_error_rate: 150%"))
    with pytest.raises(InputError, match=r"campaign.yaml:\d+: max_error_rate: .*at most 1"):
        open_campaign(Store(f"sqlite:///{tmp_path / 'x.db'}"), folder)


def test_two_workers_raising_one_kind_at_once_send_one_email(store, tmp_path, env, smtp):
    enroll(store, write_clinic_campaign(tmp_path / "healthy"), 1)
    settings = Settings.from_env(env)
    now = utcnow()
    stores = [Store(store.url, settings=settings) for _ in range(4)]
    start = threading.Barrier(len(stores))
    results: list[bool] = []

    def worker(own: Store) -> None:
        alerter = Alerter(own, settings)
        start.wait()
        results.append(alerter.raise_(unknown_alert(25), now=now))

    threads = [threading.Thread(target=worker, args=(own,)) for own in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for own in stores:
        own.close()
    assert sorted(results) == [False, False, False, True]
    assert len(smtp.received) == 1
    with store.connect() as conn:
        assert conn.execute(select(alerts.c.kind, alerts.c.held_back)).all() == [
            ("unknown_piling", 3)
        ]
