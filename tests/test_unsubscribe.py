"""Unsubscribe links as a patient and Gmail use them, against the real app and a SQLite file."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from sqlalchemy import MetaData, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from campaigns.authoring.spec import load_folder
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.rendering.tokens import UNSUBSCRIBE_SALT, Signer, UnsubscribeClaim
from campaigns.storage.store import utcnow
from campaigns.storage.tables import deliveries, enrollments, events, suppressions
from campaigns.web.app import create_app
from cli import app as cli_app
from senders.file import FileSender
from tests.helpers import utc

NOW = utc("2026-03-02T12:00")
GMAIL_ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}


def second_campaign(clinic_folder: Path, tmp_path: Path):
    """The clinic campaign under another name: a second series from the same sender."""
    folder = tmp_path / "second"
    folder.mkdir()
    for path in clinic_folder.iterdir():
        (folder / path.name).write_text(path.read_text())
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("name: ketamine-and-sleep", "name: sleep-tips", 1))
    return load_folder(folder)


def enroll_pat(store, campaign, address="pat@example.com", name="Pat"):
    signup = Signup(address, name, "America/New_York", "2026-03-02T10:00", "clinic form")
    return enroll(store, campaign, signup, now=NOW).enrollment_ids[0]


def delivery_rows(store, enrollment_id=None):
    query = select(deliveries).order_by(deliveries.c.id)
    if enrollment_id is not None:
        query = query.where(deliveries.c.enrollment_id == enrollment_id)
    with store.connect() as conn:
        return conn.execute(query).all()


def token_for(store, enrollment_id, campaign="ketamine-and-sleep"):
    first = delivery_rows(store, enrollment_id)[0]
    with store.connect() as conn:
        contact_id = conn.scalar(
            select(enrollments.c.contact_id).where(enrollments.c.id == enrollment_id)
        )
    claim = UnsubscribeClaim(contact_id, campaign, first.id)
    return Signer(store.secret_key()).token(claim), claim


def snapshot(store) -> dict[str, list]:
    """Every row of every table: "nothing changed" made checkable."""
    meta = MetaData()
    meta.reflect(store.engine)
    with store.connect() as conn:
        return {name: conn.execute(select(t)).all() for name, t in meta.tables.items()}


@pytest.fixture
def client(store):
    with TestClient(create_app(store, environ={}), base_url="https://mail.clinic.test") as c:
        yield c


def test_the_link_shows_a_confirmation_page_and_changes_nothing(store, clinic, client):
    enrollment_id = enroll_pat(store, clinic)
    token, _ = token_for(store, enrollment_id)
    before = snapshot(store)
    for path in (f"/u/{token}", f"/p/{token}"):
        page = client.get(path)
        assert page.status_code == 200
        assert "Unsubscribe from all email from Balanced Ketamine" in page.text
        assert "Stop only “Ketamine and Sleep”" in page.text
        assert f'action="../u/{token}"' in page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "pat@example.com" not in page.text
    # A link scanner fetching the URL (GET, HEAD) unsubscribes nobody.
    client.head(f"/u/{token}")
    assert snapshot(store) == before


def test_one_click_post_as_gmail_sends_it_leaves_all_email(store, clinic, client, tmp_path):
    clinic_enrollment = enroll_pat(store, clinic)
    other = second_campaign(Path(clinic.origin), tmp_path)
    other_enrollment = enroll_pat(store, other)
    bystander = enroll_pat(store, clinic, "kim@example.com", "Kim")
    token, claim = token_for(store, clinic_enrollment)

    answer = client.post(
        f"/u/{token}", content=b"List-Unsubscribe=One-Click", headers=GMAIL_ONE_CLICK
    )

    assert answer.status_code == 200
    assert "You are unsubscribed" in answer.text
    assert not client.cookies
    with store.connect() as conn:
        held = conn.execute(select(suppressions)).all()
        statuses = dict(conn.execute(select(enrollments.c.id, enrollments.c.status)).all())
        recorded = conn.execute(select(events)).all()
    assert [(s.address_hash, s.reason) for s in held] == [
        (store.address_hash("pat@example.com"), "unsubscribe")
    ]
    assert "pat@example.com" not in repr(held)
    for enrollment_id in (clinic_enrollment, other_enrollment):
        assert {r.status for r in delivery_rows(store, enrollment_id)} == {"cancelled"}
        assert statuses[enrollment_id] == "unsubscribed"
    assert {r.status for r in delivery_rows(store, bystander)} == {"scheduled"}
    assert [(e.provider, e.type, e.delivery_id) for e in recorded] == [
        ("dripmail", "unsubscribe", claim.delivery_id)
    ]


def test_after_one_click_a_run_sends_that_contact_nothing_even_when_due(
    store, clinic, client, tmp_path
):
    pat = enroll_pat(store, clinic)
    kim = enroll_pat(store, clinic, "kim@example.com", "Kim")
    token, _ = token_for(store, pat)
    client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click", headers=GMAIL_ONE_CLICK)
    outbox = tmp_path / "outbox"
    sender = FileSender(outbox)
    report = Dispatcher(store, lambda _c: sender).run(now=utc("2026-03-02T15:00"))
    assert report.sent == 1  # Kim's welcome email only
    sent_to = (outbox / "index.csv").read_text()
    assert "kim@example.com" in sent_to
    assert "pat@example.com" not in sent_to
    assert delivery_rows(store, kim)[0].status == "sent"


def test_unsubscribing_twice_is_idempotent(store, clinic, client):
    token, _ = token_for(store, enroll_pat(store, clinic))
    first = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    after_first = snapshot(store)
    second = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    also_page = client.post(f"/u/{token}", data={"choice": "all"})
    assert (first.status_code, second.status_code, also_page.status_code) == (200, 200, 200)
    assert snapshot(store) == after_first
    assert len(after_first["events"]) == 1
    assert len(after_first["suppressions"]) == 1


def test_the_campaign_only_choice_keeps_other_email(store, clinic, client, tmp_path):
    clinic_enrollment = enroll_pat(store, clinic)
    other = second_campaign(Path(clinic.origin), tmp_path)
    other_enrollment = enroll_pat(store, other)
    token, claim = token_for(store, clinic_enrollment)

    answer = client.post(f"/u/{token}", data={"choice": "campaign"})

    assert answer.status_code == 200
    assert "no more emails of the series “Ketamine and Sleep”" in answer.text
    assert {r.status for r in delivery_rows(store, clinic_enrollment)} == {"cancelled"}
    assert {r.status for r in delivery_rows(store, other_enrollment)} == {"scheduled"}
    with store.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []
        statuses = dict(conn.execute(select(enrollments.c.id, enrollments.c.status)).all())
        recorded = conn.execute(select(events.c.type, events.c.delivery_id)).all()
    assert statuses == {clinic_enrollment: "unsubscribed", other_enrollment: "active"}
    assert recorded == [("campaign_unsubscribe", claim.delivery_id)]
    # The page now says so, and still offers leaving everything.
    page = client.get(f"/p/{token}")
    assert "You no longer receive the series" in page.text
    assert 'value="all"' in page.text
    assert 'value="campaign"' not in page.text


def test_a_claimed_delivery_is_cancelled_and_its_lease_cleared(store, clinic, client):
    enrollment_id = enroll_pat(store, clinic)
    first = delivery_rows(store, enrollment_id)[0]
    with store.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == first.id)
            .values(status="claimed", lease_owner="worker-1", lease_expires_at=utcnow())
        )
    token, _ = token_for(store, enrollment_id)
    client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    row = delivery_rows(store, enrollment_id)[0]
    assert (row.status, row.lease_owner, row.lease_expires_at) == ("cancelled", None, None)


def test_multipart_one_click_is_accepted_too(store, clinic, client):
    # RFC 8058 lets the receiver send multipart/form-data as well.
    token, _ = token_for(store, enroll_pat(store, clinic))
    answer = client.post(f"/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200
    assert {r.status for r in delivery_rows(store)} == {"cancelled"}


def flip(token: str) -> str:
    """The token with the first character of its signature changed.

    Not the last one: the last base64 character of the signature carries padding bits,
    so some changes to it decode to the same bytes.
    """
    payload, _, signature = token.rpartition(".")
    first = "Q" if signature[0] != "Q" else "g"
    return f"{payload}.{first}{signature[1:]}"


def test_tampered_foreign_and_expired_tokens_get_400_and_change_nothing(
    store, clinic, client, monkeypatch
):
    enrollment_id = enroll_pat(store, clinic)
    token, claim = token_for(store, enrollment_id)
    payload, _, _ = token.partition(".")
    forged_payload = Signer(store.secret_key()).token(
        UnsubscribeClaim(claim.contact_id + 1, claim.campaign, None)
    )
    with monkeypatch.context() as m:  # made 401 days ago (the limit is 400)
        m.setattr("itsdangerous.timed.time.time", lambda: utcnow().timestamp() - 401 * 86400)
        expired = Signer(store.secret_key()).token(claim)
    bad = [
        flip(token),
        forged_payload.partition(".")[0] + token[len(payload) :],  # another contact, our signature
        Signer("another installation's secret").token(claim),
        expired,
        "not-a-token",
    ]
    before = snapshot(store)
    for candidate in bad:
        for answer in (
            client.get(f"/u/{candidate}"),
            client.post(f"/u/{candidate}", data={"List-Unsubscribe": "One-Click"}),
        ):
            assert answer.status_code == 400, candidate
            assert "This link is not valid" in answer.text
    assert snapshot(store) == before


def signed_over(store, payload: bytes) -> str:
    """A token our key signs over any payload bytes (as a leaked key or a bug would)."""
    compressed = zlib.compress(payload, 9)  # itsdangerous's "." form, when it is shorter
    short = len(compressed) < len(payload)
    value = b"." + base64_encode(compressed) if short else base64_encode(payload)
    serializer = URLSafeTimedSerializer(store.secret_key(), salt=UNSUBSCRIBE_SALT)
    return serializer.make_signer().sign(value).decode()


@pytest.mark.parametrize(
    "payload",
    [
        b'["pat", "ketamine-and-sleep", null]',  # not an id
        b'[1, ["ketamine-and-sleep"], {"x": 1}]',  # a list for a name, an object for an id
        b'[1, "ketamine-and-sleep", "7"]',
        b'[true, "ketamine-and-sleep", null]',
        b'[10000000000000000000000000000, "ketamine-and-sleep", null]',  # past INTEGER
        b'[1, "ketamine-and-sleep", 99999999999]',
        b'[1, "", null]',
        b"[1, 2]",
        b'{"contact": 1}',
        b"not json",
        b"[" * 100_000 + b"]" * 100_000,  # compresses to a few hundred bytes
    ],
    ids=lambda p: p[:24].decode(),
)
def test_a_validly_signed_malformed_token_gets_400_and_changes_nothing(
    store, clinic, client, payload
):
    enroll_pat(store, clinic)
    token = signed_over(store, payload)
    before = snapshot(store)
    for answer in (
        client.get(f"/u/{token}"),
        client.get(f"/p/{token}"),
        client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}),
    ):
        assert answer.status_code == 400, answer.text
        assert "This link is not valid" in answer.text
    assert snapshot(store) == before


def test_a_token_from_almost_a_year_ago_still_works(store, clinic, client):
    enrollment_id = enroll_pat(store, clinic)
    _, claim = token_for(store, enrollment_id)
    issued = int(utcnow().timestamp() - 364 * 86400)
    old = Signer(store.secret_key()).token(claim, issued_at=issued)
    answer = client.post(f"/u/{old}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert {r.status for r in delivery_rows(store)} == {"cancelled"}


@pytest.mark.parametrize(
    "body", [b"", b"List-Unsubscribe=Maybe", b"choice=newsletters", b"choice=everything"]
)
def test_a_post_that_says_nothing_clear_changes_nothing(store, clinic, client, body):
    token, _ = token_for(store, enroll_pat(store, clinic))
    before = snapshot(store)
    answer = client.post(f"/u/{token}", content=body, headers=GMAIL_ONE_CLICK)
    assert answer.status_code == 400
    assert snapshot(store) == before


def test_an_oversized_form_is_refused(store, clinic, client):
    token, _ = token_for(store, enroll_pat(store, clinic))
    answer = client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click&" + b"x" * 20000,
        headers=GMAIL_ONE_CLICK,
    )
    assert answer.status_code == 413
    assert {r.status for r in delivery_rows(store)} == {"scheduled"}


def test_a_test_send_link_answers_without_changing_anything(store, clinic, client):
    enroll_pat(store, clinic)
    token = Signer(store.secret_key()).token(UnsubscribeClaim(0, "ketamine-and-sleep", None))
    before = snapshot(store)
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert snapshot(store) == before


def test_serve_refuses_to_start_on_a_plain_http_public_url(tmp_path):
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--db", str(tmp_path / "x.db")],
        env={"DRIPMAIL_PUBLIC_URL": "http://mail.clinic.example", "COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.output
    assert re.search(r"error: DRIPMAIL_PUBLIC_URL must be an https address", result.stderr)
    assert "Traceback" not in result.output


def test_serve_refuses_an_unusable_webhook_key(tmp_path):
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--db", str(tmp_path / "x.db")],
        env={"SENDGRID_WEBHOOK_PUBLIC_KEY": "bm90IGEga2V5", "COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.output
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA public key" in result.stderr
    assert "bm90IGEga2V5" not in result.output
