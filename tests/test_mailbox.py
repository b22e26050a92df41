"""`dripmail mailbox read` on a Maildir and .eml files, against a real store (both backends)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from campaigns.authoring.spec import load_folder
from campaigns.compliance.mailbox import read_mailbox
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.tables import deliveries, enrollments, events, suppressions
from campaigns.web.app import create_app
from cli import app as cli_app
from tests.helpers import utc
from tests.mailbox_helpers import about, deliver, filled, make_maildir, token_of

NOW = utc("2026-03-02T12:00")
LATER = utc("2026-03-03T12:00")


def second_campaign(clinic_folder: Path, tmp_path: Path):
    """The clinic campaign under another name: a second series from the same sender."""
    folder = tmp_path / "second"
    shutil.copytree(clinic_folder, folder)
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-tips", 1))
    return load_folder(folder)


def enroll_one(store, campaign, address="pat@example.com", name="Pat") -> int:
    signup = Signup(address, name, "America/New_York", "2026-03-02T10:00", "clinic form")
    return enroll(store, campaign, signup, now=NOW).enrollment_ids[0]


def rows(store, enrollment_id):
    with store.connect() as conn:
        return conn.execute(
            select(deliveries)
            .where(deliveries.c.enrollment_id == enrollment_id)
            .order_by(deliveries.c.position)
        ).all()


def snapshot(store) -> dict[str, list]:
    meta = MetaData()
    meta.reflect(store.engine)
    with store.connect() as conn:
        return {name: conn.execute(select(t)).all() for name, t in meta.tables.items()}


def read(store, *paths):
    return read_mailbox(store, list(paths), clock=lambda: LATER)


@pytest.fixture
def pat(store, clinic, tmp_path):
    """Pat in two campaigns and Kim in one: (Pat's first delivery id, Pat's enrollments,
    Kim's enrollment)."""
    first = enroll_one(store, clinic)
    other = enroll_one(store, second_campaign(Path(clinic.origin), tmp_path))
    kim = enroll_one(store, clinic, "kim@example.com", "Kim")
    return rows(store, first)[0].id, (first, other), kim


def test_a_hard_bounce_in_a_maildir_suppresses_across_campaigns_and_is_marked_read(
    store, tmp_path, pat
):
    delivery_id, pats, kim = pat
    maildir = make_maildir(tmp_path / "Maildir")
    arrived = deliver(maildir, "bounce", about(store, "postfix-hard.eml", delivery_id))

    report = read(store, maildir)

    assert report.read == 1 and dict(report.kinds) == {"bounced_hard": 1}
    assert (report.suppressed, report.cancelled) == (1, 12)
    with store.connect() as conn:
        held = conn.execute(select(suppressions)).all()
        recorded = conn.execute(select(events)).all()
    assert [(s.address_hash, s.reason) for s in held] == [
        (store.address_hash("pat@example.com"), "bounced_hard")
    ]
    for enrollment_id in pats:
        assert {r.status for r in rows(store, enrollment_id)} == {"cancelled"}
    assert {r.status for r in rows(store, kim)} == {"scheduled"}
    assert [(e.provider, e.type, e.delivery_id) for e in recorded] == [
        ("mailbox", "bounced_hard", delivery_id)
    ]
    assert "pat@example.com" not in repr(recorded)
    # Marked read: moved to cur/ with the seen flag, as a mail client would.
    assert not arrived.exists()
    assert [p.name for p in (maildir / "cur").iterdir()] == [arrived.name + ":2,S"]


def test_reading_the_same_mail_twice_changes_nothing_more(store, tmp_path, pat):
    delivery_id, _, _ = pat
    maildir = make_maildir(tmp_path / "Maildir")
    raw = about(store, "exim-hard.eml", delivery_id)
    deliver(maildir, "bounce", raw)
    eml = tmp_path / "bounce.eml"
    eml.write_bytes(raw)
    read(store, maildir)
    after_first = snapshot(store)

    again = read(store, maildir, eml)  # the Maildir has nothing new; the file is a replay

    assert snapshot(store) == after_first
    assert (again.read, again.duplicates, again.suppressed) == (1, 1, 0)
    assert eml.exists()  # a file named on the command line is never moved


@pytest.mark.parametrize("name", ["gmail-mailbox-full.eml", "postfix-delayed.eml"])
def test_a_soft_bounce_or_a_delay_is_recorded_and_suppresses_nothing(store, tmp_path, pat, name):
    delivery_id, pats, _ = pat
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "soft", about(store, name, delivery_id))

    report = read(store, maildir)

    assert report.suppressed == 0 and report.cancelled == 0
    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []
        kinds = conn.scalars(select(events.c.type)).all()
    assert kinds == ["bounced_soft" if "full" in name else "deferred"]
    for enrollment_id in pats:
        assert {r.status for r in rows(store, enrollment_id)} == {"scheduled"}


@pytest.mark.parametrize("name", ["yahoo-arf.eml", "jmrp.eml"])
def test_a_complaint_suppresses_across_campaigns(store, tmp_path, pat, name):
    delivery_id, pats, _ = pat
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "arf", about(store, name, delivery_id))

    report = read(store, maildir)

    assert dict(report.kinds) == {"complained": 1} and report.suppressed == 1
    with store.connect() as conn:
        assert conn.scalars(select(suppressions.c.reason)).all() == ["complained"]
    for enrollment_id in pats:
        assert {r.status for r in rows(store, enrollment_id)} == {"cancelled"}


def test_an_unsubscribe_mail_does_exactly_what_one_click_does(store, clinic, tmp_path, pat):
    """Pat unsubscribes by mail, Kim by the one-click POST: the same rows change the same way."""
    delivery_id, pats, kim = pat
    kim_other = enroll_one(store, load_folder(tmp_path / "second"), "kim@example.com", "Kim")
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "unsub", about(store, "gmail-unsubscribe.eml", delivery_id))
    kim_token = token_of(store, rows(store, kim)[0].id)

    report = read(store, maildir)
    with TestClient(create_app(store, environ={}), base_url="https://mail.clinic.test") as web:
        answer = web.post(
            f"/u/{kim_token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )

    assert answer.status_code == 200 and report.unsubscribed == 1
    with store.connect() as conn:
        held = dict(conn.execute(select(suppressions.c.address_hash, suppressions.c.reason)).all())
        statuses = dict(conn.execute(select(enrollments.c.id, enrollments.c.status)).all())
        recorded = conn.execute(
            select(events.c.provider, events.c.type, events.c.delivery_id)
        ).all()

    def effect(enrollment_ids, address, first):
        return (
            held.get(store.address_hash(address)),
            [statuses[e] for e in enrollment_ids],
            [{r.status for r in rows(store, e)} for e in enrollment_ids],
            [(p, t) for p, t, d in recorded if d == first],
        )

    assert effect(pats, "pat@example.com", delivery_id) == effect(
        (kim, kim_other), "kim@example.com", rows(store, kim)[0].id
    )
    assert effect(pats, "pat@example.com", delivery_id) == (
        "unsubscribe",
        ["unsubscribed", "unsubscribed"],
        [{"cancelled"}, {"cancelled"}],
        [("dripmail", "unsubscribe")],
    )


def test_a_tampered_token_or_a_patients_reply_changes_nothing_and_stays_unread(
    store, tmp_path, pat
):
    delivery_id, _, _ = pat
    token = token_of(store, delivery_id)
    payload, _, signature = token.rpartition(".")
    tampered = f"{payload}.{'Q' if signature[0] != 'Q' else 'g'}{signature[1:]}"
    maildir = make_maildir(tmp_path / "Maildir")
    left = [
        deliver(maildir, "forged", filled("gmail-unsubscribe.eml", token=tampered)),
        deliver(maildir, "reply", about(store, "patient-reply.eml", delivery_id)),
        deliver(maildir, "foreign", filled("postfix-hard.eml")),  # not a return path of ours
    ]
    before = snapshot(store)

    report = read(store, maildir)

    assert snapshot(store) == before
    assert report.read == 3 and not report.kinds
    assert [why for _, why in report.left] == [
        "unsubscribe: its token does not verify",
        "other: not a bounce, complaint or unsubscribe",
        "bounce: names no email of ours (no signed return path)",
    ]
    assert all(path.exists() for path in left)  # still new, for a person to read


def test_the_command_reads_a_maildir_and_says_what_it_did(store, tmp_path, pat, monkeypatch):
    delivery_id, _, _ = pat
    maildir = make_maildir(tmp_path / "Maildir")
    deliver(maildir, "bounce", about(store, "gmail-hard.eml", delivery_id))
    deliver(maildir, "reply", about(store, "patient-reply.eml", delivery_id))
    url = store.engine.url.render_as_string(hide_password=False)

    result = CliRunner().invoke(cli_app, ["mailbox", "read", str(maildir), "--db", url])

    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"left for a person: {maildir}/new/")
    assert lines[-1] == (
        "2 mails read: 1 bounced_hard; 1 left for a person; 1 addresses suppressed, "
        "12 pending emails cancelled"
    )
    assert "pat@example.com" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "nowhere: no such Maildir or file"),
        ([], "name a Maildir or .eml files, or --imap URL"),
        (["--watch", "x.eml"], "--watch keeps reading an IMAP mailbox: give --imap URL"),
        (
            ["--imap", "pop3://x@y"],
            "--imap: 'pop3://x@y': start it with imaps:// (or imap:// for STARTTLS)",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.eml").write_bytes(b"Subject: hi\n\nhello\n")
    result = CliRunner().invoke(cli_app, ["mailbox", "read", *args])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}"


def test_no_imap_password_stops_before_anything_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli_app, ["mailbox", "read", "--imap", "imap://bounces@127.0.0.1:1/INBOX"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: no IMAP password: set DRIPMAIL_IMAP_PASSWORD for bounces at 127.0.0.1"
    )
