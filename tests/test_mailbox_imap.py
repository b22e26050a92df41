"""`dripmail mailbox read --imap` against a real IMAP server (Dovecot), and a bounce of an
email the SMTP sender really sent (aiosmtpd), read back from a Maildir."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import MetaData, select
from typer.testing import CliRunner

from campaigns.authoring.spec import load_folder
from campaigns.compliance.mailbox import Watch, read_mailbox
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.errors import ConfigurationError
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.rendering.verp import ReturnPaths
from campaigns.settings import Settings
from campaigns.storage.tables import deliveries, enrollments, suppressions
from cli import app as cli_app
from senders.smtp import SmtpSender
from tests.dovecot_server import PASSWORD, DovecotServer
from tests.helpers import utc
from tests.mailbox_helpers import RETURN_PATH, about, deliver, filled, make_maildir
from tests.smtp_server import SmtpTestServer, make_certificate

NOW = utc("2026-03-02T12:00")
LATER = utc("2026-03-03T12:00")
WAIT = 60  # seconds at most for the watch to answer; it answers as soon as Dovecot does
WITH_PASSWORD = Settings.from_env({"DRIPMAIL_IMAP_PASSWORD": PASSWORD})


@pytest.fixture(scope="module")
def dovecot():
    with DovecotServer() as server:
        yield server


@pytest.fixture
def imap(dovecot):
    """The server's mailbox, emptied for each test."""
    with dovecot.connect() as conn:
        _, count = conn.select("INBOX")
        if int(count[0]):
            conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            conn.expunge()
    return dovecot


def enroll_one(store, campaign, address, name) -> int:
    signup = Signup(address, name, "America/New_York", "2026-03-02T10:00", "clinic form")
    return enroll(store, campaign, signup, now=NOW).enrollment_ids[0]


def statuses(store, enrollment_id) -> set[str]:
    with store.connect() as conn:
        return set(
            conn.scalars(
                select(deliveries.c.status).where(deliveries.c.enrollment_id == enrollment_id)
            )
        )


def first_delivery(store, enrollment_id) -> int:
    with store.connect() as conn:
        return conn.scalar(
            select(deliveries.c.id)
            .where(deliveries.c.enrollment_id == enrollment_id)
            .order_by(deliveries.c.position)
        )


def snapshot(store) -> dict[str, list]:
    meta = MetaData()
    meta.reflect(store.engine)
    with store.connect() as conn:
        return {name: conn.execute(select(t)).all() for name, t in meta.tables.items()}


def suppressed(store) -> dict[str, str]:
    with store.connect() as conn:
        return dict(conn.execute(select(suppressions.c.address_hash, suppressions.c.reason)).all())


def test_a_hard_bounce_over_imap_suppresses_a_soft_one_does_not(store, clinic, imap):
    pat = enroll_one(store, clinic, "pat@example.com", "Pat")
    kim = enroll_one(store, clinic, "kim@example.com", "Kim")
    imap.append(about(store, "postfix-hard.eml", first_delivery(store, pat)))
    imap.append(about(store, "gmail-mailbox-full.eml", first_delivery(store, kim)))
    imap.append(about(store, "patient-reply.eml", first_delivery(store, kim)))

    report = read_mailbox(store, imap=imap.url, clock=lambda: LATER, settings=WITH_PASSWORD)

    assert dict(report.kinds) == {"bounced_hard": 1, "bounced_soft": 1}
    assert suppressed(store) == {store.address_hash("pat@example.com"): "bounced_hard"}
    assert statuses(store, pat) == {"cancelled"} and statuses(store, kim) == {"scheduled"}
    # Acted on: \Seen. The reply is a person's to read: still unseen.
    assert imap.flags() == [
        ("Undelivered Mail Returned to Sender", True),
        ("Delivery Status Notification (Failure)", True),
        ("Re: Welcome: sleep after your session", False),
    ]
    after = snapshot(store)
    again = read_mailbox(store, imap=imap.url, clock=lambda: LATER, settings=WITH_PASSWORD)
    assert snapshot(store) == after
    assert again.read == 1 and not again.kinds  # only the reply, left again


def test_the_command_reads_imap_with_the_password_from_the_environment(
    store, clinic, imap, monkeypatch
):
    pat = enroll_one(store, clinic, "pat@example.com", "Pat")
    imap.append(about(store, "yahoo-arf.eml", first_delivery(store, pat)))
    monkeypatch.setenv("DRIPMAIL_IMAP_PASSWORD", PASSWORD)
    url = store.engine.url.render_as_string(hide_password=False)

    result = CliRunner().invoke(cli_app, ["mailbox", "read", "--imap", imap.url, "--db", url])

    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == (
        "1 mail read: 1 complained; 0 left for a person; 1 addresses suppressed, "
        "6 pending emails cancelled"
    )
    assert PASSWORD not in result.output


def test_a_wrong_password_is_one_line_and_reads_nothing(store, imap):
    imap.append(filled("postfix-hard.eml"))
    wrong = Settings.from_env({"DRIPMAIL_IMAP_PASSWORD": "not-the-password"})
    with pytest.raises(ConfigurationError) as caught:
        read_mailbox(store, imap=imap.url, settings=wrong)
    assert str(caught.value) == (
        f"the IMAP server 127.0.0.1:{imap.port} refused the login of bounces: "
        "check DRIPMAIL_IMAP_PASSWORD"
    )
    assert imap.flags() == [("Undelivered Mail Returned to Sender", False)]


def test_watch_reads_a_bounce_as_soon_as_the_server_announces_it(store, clinic, imap):
    pat = enroll_one(store, clinic, "pat@example.com", "Pat")
    watch = Watch()
    done: dict[str, object] = {}

    def run() -> None:
        done["report"] = read_mailbox(
            store, imap=imap.url, watch=watch, clock=lambda: LATER, settings=WITH_PASSWORD
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert watch.wait_idle(1, WAIT), "the watch never went idle"
        imap.append(about(store, "exim-hard.eml", first_delivery(store, pat)))
        # Dovecot's EXISTS wakes the watch; it reads the bounce, then idles again.
        assert watch.wait_idle(2, WAIT), "the watch did not come back to IDLE"
        assert suppressed(store) == {store.address_hash("pat@example.com"): "bounced_hard"}
        assert statuses(store, pat) == {"cancelled"}
    finally:
        watch.stop()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert dict(done["report"].kinds) == {"bounced_hard": 1}
    assert imap.flags() == [("Mail delivery failed: returning message to sender", True)]


def test_a_bounce_of_an_email_sent_over_smtp_comes_back_to_its_return_path(
    store, clinic_folder, tmp_path
):
    """Sent by the SMTP sender with `sender.return_path`: MAIL FROM is the signed VERP
    address; the DSN sent to that address, read from a Maildir, suppresses."""
    spec = clinic_folder / "campaign.yaml"
    text = spec.read_text()
    spec.write_text(
        text.replace(
            "  type: file\n  outbox: outbox\n", f"  type: smtp\n  return_path: {RETURN_PATH}\n"
        )
    )
    campaign = load_folder(clinic_folder)
    pat = enroll_one(store, campaign, "pat@example.com", "Pat")
    with SmtpTestServer() as server:
        environ = {"DRIPMAIL_SMTP_HOST": "127.0.0.1", "DRIPMAIL_SMTP_PORT": str(server.port)}
        sender = SmtpSender.from_settings(
            campaign.spec.sender, Settings.from_env(environ | {"DRIPMAIL_SMTP_SECURITY": "none"})
        )
        report = Dispatcher(store, lambda _c: sender).run(now=utc("2026-03-02T15:00"))
        sender.close()
    assert report.sent == 1
    (received,) = server.received
    delivery_id = first_delivery(store, pat)
    assert received.mail_from == ReturnPaths(store.secret_key()).address(RETURN_PATH, delivery_id)
    assert received.mail_from.startswith("bounces+") and "pat" not in received.mail_from
    assert received.message["From"].addresses[0].addr_spec == campaign.spec.from_.address
    # The bounce goes to the envelope sender: fill the fixture with what was really sent.
    token = received.message["List-Unsubscribe"].split("/u/", 1)[1].split(">", 1)[0]
    dsn = filled(
        "postfix-hard.eml",
        verp=received.mail_from,
        token=token,
        message_id=str(received.message["Message-ID"]),
    )
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "dsn", dsn)

    found = read_mailbox(store, [maildir], clock=lambda: LATER)

    assert dict(found.kinds) == {"bounced_hard": 1} and found.suppressed == 1
    assert suppressed(store) == {store.address_hash("pat@example.com"): "bounced_hard"}
    with store.connect() as conn:
        assert set(conn.scalars(select(enrollments.c.status))) == {"active"}
    assert statuses(store, pat) == {"sent", "cancelled"}


def test_imaps_reads_over_tls_and_refuses_a_server_it_cannot_verify(
    store, clinic, tmp_path, monkeypatch
):
    certificate = make_certificate(tmp_path)
    pat = enroll_one(store, clinic, "pat@example.com", "Pat")
    with DovecotServer(tls=(certificate.cert, certificate.key)) as server:
        server.append(about(store, "postfix-hard.eml", first_delivery(store, pat)))
        before = snapshot(store)

        # A certificate no authority this machine trusts signed: one line, nothing read.
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-authorities.pem"))
        (tmp_path / "no-authorities.pem").write_text("")
        with pytest.raises(ConfigurationError) as refused:
            read_mailbox(store, imap=server.tls_url, clock=lambda: LATER, settings=WITH_PASSWORD)
        assert "cannot reach the IMAP server localhost:" in str(refused.value)
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        assert "\n" not in str(refused.value) and snapshot(store) == before

        # The clinic's own authority trusted (as an operator would for a private CA).
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
        report = read_mailbox(
            store, imap=server.tls_url, clock=lambda: LATER, settings=WITH_PASSWORD
        )
    assert dict(report.kinds) == {"bounced_hard": 1}
    assert suppressed(store) == {store.address_hash("pat@example.com"): "bounced_hard"}
