"""International addresses end to end (issue 16, points 1 and 3), on SQLite and PostgreSQL.

`run --once` with the file sender sends an IDN domain as its A-label; an SMTP server
without SMTPUTF8 fails a non-ASCII local part alone while the rest of the batch goes;
both spellings of an IDN address are one contact for enrollment, suppression, export
and erasure; control characters are refused at the CLI, the CSV import and the API.
"""

from __future__ import annotations

import email
import email.policy
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from campaigns.authoring.spec import Campaign
from campaigns.compliance.privacy import export_contact, forget_contact
from campaigns.compliance.staff import check_suppression, suppress_addresses
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import enroll, import_csv
from campaigns.planning.signups import Signup
from campaigns.reporting.reports import calendar
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts, deliveries, enrollments
from campaigns.web.app import create_app
from senders.smtp import SmtpSender
from tests.helpers import utc
from tests.smtp_server import SmtpTestServer
from tests.test_cli import snapshot
from tests.test_smtp import sender_for
from tests.unit.test_cli import assert_one_line_error, dripmail

ENROLLED_AT = utc("2026-03-02T12:00")
FIRST_RUN = utc("2026-03-02T15:00")  # 10:00 in New York: every first step is due
PUBLIC_URL = "https://mail.clinic.example"


@pytest.fixture(autouse=True)
def _public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", PUBLIC_URL)


def url_of(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def enroll_csv(store: Store, campaign: Campaign, folder: Path, *addresses: str) -> None:
    rows = "".join(
        f"{address},Pat,America/New_York,2026-03-02T10:00,clinic form\n" for address in addresses
    )
    path = folder / "contacts.csv"
    path.write_text("email,first_name,timezone,signed_up_at,consent\n" + rows, encoding="utf-8")
    report = import_csv(store, campaign, path, now=ENROLLED_AT)
    assert report.enrolled == len(addresses) and not report.rejected, report.rejected


def first_steps(store: Store) -> dict[str, object]:
    """Step 1's delivery rows, by the contact's stored address."""
    with store.connect() as conn:
        rows = conn.execute(
            select(contacts.c.email, deliveries.c.status, deliveries.c.error)
            .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(deliveries.c.position == 1)
        ).all()
    return {row.email: row for row in rows}


def parsed(raw: bytes) -> email.message.EmailMessage:
    # Read as text: the bytes parser takes UTF-8 headers (RFC 6532) for undecodable bytes.
    return email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)  # type: ignore[return-value]


# -- acceptance: a batch with an IDN domain, and one with a non-ASCII local part -------------


def test_run_once_with_the_file_sender_sends_an_idn_domain_as_its_a_label(
    store, clinic, tmp_path, monkeypatch
):
    enroll_csv(store, clinic, tmp_path, "ok1@example.com", "pat@bücher.de", "ok2@example.com")
    monkeypatch.chdir(tmp_path)

    result = dripmail("run", "--once", "--now", "2026-03-02T15:00Z", "--db", url_of(store))

    assert result.exit_code == 0, result.output
    assert "sent 3, failed 0, unknown 0" in result.stdout
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    recipients = {parsed(f.read_bytes())["To"].addresses[0].addr_spec for f in files}
    assert recipients == {"ok1@example.com", "pat@xn--bcher-kva.de", "ok2@example.com"}
    assert all(f.read_bytes().isascii() for f in files)
    assert {row.status for row in first_steps(store).values()} == {"sent"}


def run_smtp(store: Store, sender: SmtpSender):
    return Dispatcher(store, lambda _campaign: sender).run(now=FIRST_RUN)


def test_without_smtputf8_a_non_ascii_local_part_fails_alone_and_the_batch_goes(
    store, clinic, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG, logger="dripmail")
    enroll_csv(store, clinic, tmp_path, "ok1@example.com", "üser@example.com", "ok2@example.com")
    with SmtpTestServer(smtputf8=False) as server:
        report = run_smtp(store, sender_for(server))

    assert (report.sent, report.failed, report.unknown) == (2, 1, 0)
    rows = first_steps(store)
    assert rows["üser@example.com"].status == "failed"
    assert "does not offer SMTPUTF8" in rows["üser@example.com"].error
    assert {rows["ok1@example.com"].status, rows["ok2@example.com"].status} == {"sent"}
    assert sorted(r.rcpt_tos[0] for r in server.received) == ["ok1@example.com", "ok2@example.com"]
    assert not any("@" in r.getMessage() for r in caplog.records)


def test_with_smtputf8_the_address_goes_as_given_and_an_idn_domain_as_its_a_label(
    store, clinic, tmp_path
):
    enroll_csv(store, clinic, tmp_path, "üser@example.com", "pat@bücher.de", "ok@example.com")
    with SmtpTestServer(smtputf8=True) as server:
        report = run_smtp(store, sender_for(server))

    assert (report.sent, report.failed) == (3, 0)
    got = {r.rcpt_tos[0]: r for r in server.received}
    assert set(got) == {"üser@example.com", "pat@xn--bcher-kva.de", "ok@example.com"}
    # RFC 6531: SMTPUTF8 only for the message that needs it.
    assert "SMTPUTF8" in got["üser@example.com"].mail_options
    assert "SMTPUTF8" not in got["pat@xn--bcher-kva.de"].mail_options
    utf8 = parsed(got["üser@example.com"].data)
    assert utf8["To"].addresses[0].addr_spec == "üser@example.com"
    assert parsed(got["pat@xn--bcher-kva.de"].data)["To"].addresses[0].addr_spec == (
        "pat@xn--bcher-kva.de"
    )


# -- one contact per mailbox ----------------------------------------------------------------


def test_both_spellings_are_one_contact_for_enrollment_suppression_export_and_erasure(
    store, clinic
):
    first = enroll(store, clinic, Signup("Pat@Bücher.de", consent="form"), now=ENROLLED_AT)
    again = enroll(store, clinic, Signup("pat@xn--bcher-kva.de", consent="form"), now=ENROLLED_AT)
    assert (first.enrolled, again.enrolled, again.already) == (1, 0, 1)
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(contacts)) == 1
        assert conn.scalar(select(contacts.c.email)) == "pat@xn--bcher-kva.de"

    exported = export_contact(store, "PAT@XN--BCHER-KVA.DE")["contact"]
    assert exported["email"] == "pat@xn--bcher-kva.de"
    assert exported["email_display"] == "pat@bücher.de"  # as a person reads it
    shown = calendar(store, clinic, email="pat@xn--bcher-kva.de")
    assert {entry.contact for entry in shown} == {"pat@bücher.de"}
    suppress_addresses(store, ["pat@xn--bcher-kva.de"], now=ENROLLED_AT)
    assert check_suppression(store, "pat@bücher.de").suppressed
    later = enroll(store, clinic, Signup("pat@bücher.de", consent="form"), now=ENROLLED_AT)
    assert later.enrolled == 0

    erased = forget_contact(store, "pat@bücher.de", now=ENROLLED_AT)
    assert erased.contact_id is not None
    with store.connect() as conn:
        assert conn.scalar(select(contacts.c.email)) is None


# -- control characters at every boundary -------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--first-name", "Pa\x00t", "first_name"),
        ("--consent", "web\x07 form", "consent"),
        ("--email", "pat\x00@example.com", "email"),
    ],
)
def test_the_cli_refuses_a_control_character_in_one_line(
    store, clinic, clinic_folder, option, value, field
):
    enroll(store, clinic, Signup("a@example.com", consent="x"), now=ENROLLED_AT)
    before = snapshot(url_of(store))
    args = {"--email": "pat@example.com", "--first-name": "Pat", "--consent": "web form"}
    args[option] = value
    result = dripmail(
        "enroll", str(clinic_folder), *[x for pair in args.items() for x in pair],
        "--db", url_of(store),
    )  # fmt: skip
    assert_one_line_error(result, f"{field}:")
    assert snapshot(url_of(store)) == before


def test_a_csv_import_reports_a_row_with_a_nul_by_its_line(store, clinic_folder, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(
        b"email,first_name,consent\n"
        b"ok1@example.com,Ana,form\n"
        b"bo@example.com,B\x00o,form\n"
        b"ok2@example.com,Ed,form\n"
    )
    result = dripmail("import", str(clinic_folder), str(path), "--db", url_of(store))
    assert result.exit_code == 1, result.output
    assert f"{path}:3: first_name: holds the control character U+0000" in result.stderr
    assert "imported 2" in result.stdout


TOKEN = "s3cret-token-for-tests"
BODY = {
    "email": "pat@example.com",
    "first_name": "Pat",
    "timezone": "Asia/Kolkata",
    "campaign": "ketamine-and-sleep",
    "signed_up_at": "2026-03-02T16:45",
    "consent": {"source": "clinic website form", "text": "Yes, email me the sleep series"},
}


@pytest.mark.parametrize(
    "field",
    [
        "email",
        "first_name",
        "timezone",
        "campaign",
        "signed_up_at",
        "consent.source",
        "consent.text",
    ],
)
def test_the_signup_api_answers_422_for_a_nul_in_any_field(store, clinic, field, caplog):
    enroll(store, clinic, Signup("staff@example.com", consent="staff"), now=ENROLLED_AT)
    body = {**BODY, "consent": dict(BODY["consent"])}
    if field.startswith("consent."):
        body["consent"][field.split(".")[1]] += "\x00"
    else:
        body[field] += "\x00"
    app = create_app(store, clock=lambda: ENROLLED_AT, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app) as client:
        answer = client.post(
            "/api/v1/enrollments", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert answer.status_code == 422, answer.text
    assert answer.json() == {"error": "holds the control character U+0000: remove it",
                             "field": field}  # fmt: skip
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(enrollments)) == 1


# -- existing rows ------------------------------------------------------------------------------


def test_migration_0009_rewrites_stored_idn_domains_and_keeps_their_suppressions(tmp_path, request):
    """A database at 0008 with addresses stored the old way (Unicode domain)."""
    from alembic import command
    from sqlalchemy import create_engine, insert

    from campaigns.planning.contacts import address_hash
    from campaigns.storage.store import _alembic_config
    from campaigns.storage.tables import meta, suppressions

    for url in (f"sqlite:///{tmp_path / 'old.db'}", request.getfixturevalue("postgres_url")):
        engine = create_engine(url)
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0008")
            conn.execute(insert(meta).values(key="suppression_key", value="k"))
            conn.execute(
                insert(contacts),
                [
                    {"id": i, "email": email, "timezone": "UTC", "created_at": ENROLLED_AT}
                    for i, email in (
                        (1, "pat@bücher.de"),  # stored by the old normalise_email
                        (2, "üser@example.com"),  # no domain to rewrite
                        (3, "ana@müller.example"),
                        (4, "ana@xn--mller-kva.example"),  # the same mailbox, typed apart
                        (5, None),  # erased
                    )
                ],
            )
            # The old hash was over the address as stored: the Unicode domain.
            old_hash = hmac_of("pat@bücher.de")
            conn.execute(
                insert(suppressions),
                [
                    {"address_hash": old_hash, "reason": "unsubscribe", "created_at": ENROLLED_AT},
                    {"address_hash": hmac_of("ana@müller.example"), "reason": "bounce",
                     "created_at": ENROLLED_AT},
                ],
            )  # fmt: skip
            command.upgrade(_alembic_config(conn), "head")
            emails = dict(conn.execute(select(contacts.c.id, contacts.c.email)).all())
            hashes = set(conn.scalars(select(suppressions.c.address_hash)))
        engine.dispose()
        assert emails == {
            1: "pat@xn--bcher-kva.de",
            2: "üser@example.com",
            3: "ana@müller.example",  # its A-label form is contact 4's: left for staff
            4: "ana@xn--mller-kva.example",
            5: None,
        }
        assert address_hash("k", "pat@bücher.de") in hashes
        assert address_hash("k", "ana@müller.example") in hashes


def hmac_of(address: str) -> str:
    import hmac
    from hashlib import sha256

    return hmac.digest(b"k", address.encode(), sha256).hex()
