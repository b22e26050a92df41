"""The sign-up API: POST /api/v1/enrollments behind a bearer token."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.tables import enrollments
from campaigns.web.app import create_app
from tests.helpers import utc

TOKEN = "s3cret-token-for-tests"
NOW = utc("2026-03-02T12:00")
BODY = {
    "email": "pat@example.com",
    "first_name": "Pat",
    "timezone": "Asia/Kolkata",
    "campaign": "ketamine-and-sleep",
    "signed_up_at": "2026-03-02T16:45",
    "consent": {"source": "clinic website form", "text": "Yes, email me the sleep series"},
}


@pytest.fixture
def client(store, clinic):
    # Publish the campaign: the API enrolls only into published campaigns.
    enroll(store, clinic, Signup("staff@example.com", None, None, None, "staff"), now=NOW)
    app = create_app(store, clock=lambda: NOW, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app) as test_client:
        yield test_client


def post(client, body=BODY, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/v1/enrollments", json=body, headers=headers, **kwargs)


def count(store) -> int:
    with store.connect() as conn:
        return conn.scalar(select(func.count()).select_from(enrollments))


def test_a_new_signup_is_201_with_its_calendar_and_a_repeat_is_200_saying_no_more(
    client, store, caplog
):
    caplog.set_level(logging.DEBUG)
    first = post(client)
    assert first.status_code == 201, first.text
    data = first.json()
    assert [e["step"] for e in data["calendar"]][:2] == [
        "welcome",
        "how-mental-health-affects-sleep",
    ]
    # 16:45 IST is 11:15 UTC, inside the 09:00-17:00 window: the first email is due then
    # (already overdue at 12:00 UTC: the dispatcher sends it at the next opening).
    assert data["calendar"][0]["due_utc"] == "2026-03-02T11:15:00Z"
    assert data["calendar"][0]["due_local"] == "2026-03-02T16:45:00+05:30"
    assert data["calendar"][1]["due_local"] == "2026-03-04T16:45:00+05:30"
    assert data["calendar"][0]["subject"]
    # Posted again by anyone holding the address (another zone, another time): 200, the
    # enrollment's id and campaign, and nothing the first caller gave or has happened since.
    again = post(
        client,
        {**BODY, "email": "PAT@example.com", "timezone": "Europe/London", "signed_up_at": None},
    )
    assert again.status_code == 200, again.text
    assert again.json() == {"enrollment_id": data["enrollment_id"], "campaign": BODY["campaign"]}
    assert "Kolkata" not in again.text and "16:45" not in again.text
    assert count(store) == 2  # the staff sign-up and Pat, once
    assert "pat@example.com" not in caplog.text.lower()


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x"])
def test_a_missing_or_wrong_token_is_401(client, store, token):
    assert post(client, token=token).status_code == 401
    assert count(store) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"signed_up_at": "yesterday"}, "signed_up_at"),
        ({"campaign": "no-such-campaign"}, "campaign"),
        ({"consent": {"source": "form"}}, "consent.text"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_fields_are_422_naming_the_field(client, store, change, field):
    answer = post(client, {**BODY, **change})
    assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert count(store) == 1


def test_a_body_over_64_kib_is_413(client, store):
    big = {**BODY, "first_name": "x" * (65 * 1024)}
    assert post(client, big).status_code == 413
    # Without Content-Length (chunked), the stream is cut off as it passes the limit.
    chunks = (b"{" + b" " * 1024 for _ in range(80))
    answer = client.post(
        "/api/v1/enrollments",
        content=chunks,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert count(store) == 1


def test_without_a_token_setting_the_api_is_503_and_the_rest_works(store, clinic):
    app = create_app(store, clock=lambda: NOW, environ={})
    with TestClient(app) as test_client:
        assert post(test_client).status_code == 503
        assert test_client.get("/healthz").text == "ok"


def test_a_campaign_still_holding_placeholders_is_422_and_enrolls_no_one(
    store, tmp_path, monkeypatch
):
    from campaigns.authoring.folder import write_campaign
    from campaigns.authoring.readers import read_article
    from campaigns.authoring.spec import load_folder
    from campaigns.authoring.split import split_article
    from campaigns.storage import publish
    from examples import ARTICLE

    article = read_article(ARTICLE)
    write_campaign(article, split_article(article), tmp_path / "draft")
    draft = load_folder(tmp_path / "draft")
    # Published (with a first sign-up) by a dripmail from before the refusal.
    with monkeypatch.context() as older:
        older.setattr(publish, "check_publishable", lambda _conn, _campaign: None, raising=False)
        enroll(store, draft, Signup("staff@example.com", None, None, None, "staff"), now=NOW)
    app = create_app(store, clock=lambda: NOW, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app) as client:
        answer = post(client, {**BODY, "campaign": draft.name})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "campaign"
    lines = answer.json()["error"].splitlines()
    assert len(lines) == 4 and all("still a placeholder (TODO)" in line for line in lines)
    assert lines[0].startswith(f"campaign {draft.name}, campaign.yaml:")
    assert count(store) == 1


def _unsubscribe_pat(store, client, scope):
    from campaigns.compliance.suppressions import unsubscribe
    from campaigns.rendering.tokens import UnsubscribeClaim
    from campaigns.storage.tables import contacts

    first = post(client)
    assert first.status_code == 201
    with store.connect() as conn:
        pat = conn.scalar(select(contacts.c.id).where(contacts.c.email == BODY["email"]))
    unsubscribe(store, UnsubscribeClaim(pat, BODY["campaign"], None), scope, now=NOW)


@pytest.mark.parametrize(
    ("scope", "reason"),
    [("campaign", "unsubscribed from this campaign"), ("all", "suppressed")],
)
def test_an_unsubscribed_or_suppressed_address_is_409_and_nothing_changes(
    client, store, scope, reason
):
    from campaigns.compliance.suppressions import Scope

    _unsubscribe_pat(store, client, Scope(scope))
    with store.connect() as conn:
        before = conn.execute(select(enrollments)).all()
    again = post(client)
    assert again.status_code == 409, again.text
    assert reason in again.json()["error"]
    assert "calendar" not in again.json() and "status" not in again.json()
    with store.connect() as conn:
        assert conn.execute(select(enrollments)).all() == before


def test_a_bounced_address_with_an_active_enrollment_is_409(client, store):
    from campaigns.compliance.suppressions import suppress_contacts

    assert post(client).status_code == 201
    with store.begin() as conn:
        suppress_contacts(conn, store, BODY["email"], "bounce", now=NOW)
    assert post(client).status_code == 409


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"\xff\xfe", b"[" * 60_000, b'{"a":' * 10_000],
    ids=["not-json", "not-utf8", "60k-brackets", "10k-objects"],
)
def test_a_malformed_or_deeply_nested_body_is_400_not_500(client, store, raw):
    answer = client.post(
        "/api/v1/enrollments",
        content=raw,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "body"
    assert count(store) == 1


def test_a_body_nested_just_within_the_cap_is_read(client, store):
    # 32 levels is the cap (the body, consent, then 30 lists): a bad value (422, naming
    # the field), not a malformed body.
    text: object = "x"
    for _ in range(30):
        text = [text]
    answer = post(client, {**BODY, "consent": {"source": "form", "text": text}})
    assert answer.status_code == 422 and answer.json()["field"] == "consent.text"
