"""The Enrollment API and named, scoped API tokens, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

import cli
from campaigns.planning.conversions import RowsBusy
from campaigns.planning.enroll import enroll
from campaigns.planning.enrollment_state import _cancel, cancel_enrollment
from campaigns.planning.signups import Signup
from campaigns.storage.store import Store
from campaigns.storage.tables import api_tokens, deliveries
from campaigns.web.api_tokens import add_token, revoke_token
from campaigns.web.app import create_app
from tests.helpers import utc
from tests.test_logs import serving

SHARED = "shared-env-token-for-tests"
NOW = utc("2026-03-02T12:00")
PAT = "pat.jones@example.com"
SIGNUP = {
    "email": PAT,
    "first_name": "Pat",
    "timezone": "Europe/London",
    "campaign": "ketamine-and-sleep",
    "signed_up_at": "2026-03-02T11:45",
    "consent": {"source": "clinic website form", "text": "Yes, email me the sleep series"},
}
STEPS = [
    "welcome",
    "how-mental-health-affects-sleep",
    "what-about-physical-health",
    "how-ketamine-therapy-can-help",
    "can-ketamine-make-my-sleep-issues-worse",
    "all-patients-are-different",
]


class Clock:
    """The app's real clock, moved by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):
        return self.now


@pytest.fixture
def api(store, clinic):
    """(client, clock, tokens by scope name), the campaign published, no shared token."""
    enroll(store, clinic, Signup("staff@example.com", None, None, None, "staff"), now=NOW)
    tokens = {
        "read": add_token(store, "crm-read", "read", now=NOW),
        "enroll": add_token(store, "booking", "enroll", now=NOW),
        "events": add_token(store, "events-feed", "events", now=NOW),
    }
    clock = Clock()
    app = create_app(store, clock=clock, environ={"DRIPMAIL_API_TOKEN": SHARED})
    with TestClient(app) as client:
        yield client, clock, tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_up(client, token: str) -> dict:
    answer = client.post("/api/v1/enrollments", json=SIGNUP, headers=auth(token))
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_each_route_works_with_its_scope(api, store):
    client, _clock, tokens = api
    created = sign_up(client, tokens["enroll"])
    enrollment_id = created["enrollment_id"]

    # Look up by the exact address, however the caller spells its case.
    found = client.get(
        "/api/v1/enrollments",
        params={"email": "Pat.Jones@EXAMPLE.com"},
        headers=auth(tokens["read"]),
    )
    assert found.status_code == 200, found.text
    [entry] = found.json()["enrollments"]
    assert entry["enrollment_id"] == enrollment_id
    assert entry["campaign"] == "ketamine-and-sleep" and entry["status"] == "active"
    contact_id = entry["contact_id"]
    # No search: an unknown address, a neighbour, a pattern find nothing.
    for other in ("nobody@example.com", "pat.jone@example.com", "%@example.com"):
        answer = client.get(
            "/api/v1/enrollments", params={"email": other}, headers=auth(tokens["read"])
        )
        assert answer.status_code == 200 and answer.json() == {"enrollments": []}, other
    assert (
        client.get(
            "/api/v1/enrollments", params={"email": "pat.jones@"}, headers=auth(tokens["read"])
        ).json()["field"]
        == "email"
    )

    shown = client.get(f"/api/v1/enrollments/{enrollment_id}", headers=auth(tokens["read"]))
    assert shown.status_code == 200
    state = shown.json()
    assert state["status"] == "active" and state["timezone"] == "Europe/London"
    assert [c["step"] for c in state["calendar"]] == STEPS
    assert {c["status"] for c in state["calendar"]} == {"scheduled"}
    assert all(
        set(c) == {"step", "status", "due_utc", "due_local", "sent_at"} for c in state["calendar"]
    )
    assert "subject" not in shown.text and "body" not in shown.text

    tagged = client.post(
        f"/api/v1/contacts/{contact_id}/tags",
        json={"add": ["Patients", "waiting-list"]},
        headers=auth(tokens["enroll"]),
    )
    assert tagged.status_code == 200 and tagged.json() == {
        "contact_id": contact_id,
        "tags": ["patients", "waiting-list"],
    }
    tagged = client.post(
        f"/api/v1/contacts/{contact_id}/tags",
        json={"add": ["booked"], "remove": ["waiting-list"]},
        headers=auth(tokens["enroll"]),
    )
    assert tagged.json()["tags"] == ["booked", "patients"]

    event = client.post(
        "/api/v1/events",
        json={"contact_id": contact_id, "event": "booked"},
        headers=auth(tokens["events"]),
    )
    assert event.status_code in (202, 422), event.text  # the clinic campaign sets no goal

    cancelled = client.delete(
        f"/api/v1/enrollments/{enrollment_id}", headers=auth(tokens["enroll"])
    )
    assert cancelled.status_code == 200
    assert cancelled.json() == {
        "enrollment_id": enrollment_id,
        "status": "cancelled",
        "cancelled": 6,
        "left_to_finish": 0,
    }
    again = client.delete(f"/api/v1/enrollments/{enrollment_id}", headers=auth(tokens["enroll"]))
    assert again.status_code == 200 and again.json()["cancelled"] == 0
    after = client.get(f"/api/v1/enrollments/{enrollment_id}", headers=auth(tokens["read"])).json()
    assert after["status"] == "cancelled"
    assert {c["status"] for c in after["calendar"]} == {"cancelled"}
    # A repeat sign-up says no more than before, and plans nothing again.
    repeat = client.post("/api/v1/enrollments", json=SIGNUP, headers=auth(tokens["enroll"]))
    assert repeat.status_code == 200
    with store.connect() as conn:
        statuses = set(
            conn.scalars(
                select(deliveries.c.status).where(deliveries.c.enrollment_id == enrollment_id)
            )
        )
    assert statuses == {"cancelled"}


def test_cancel_leaves_an_email_already_handed_off_to_finish(api, store):
    client, _clock, tokens = api
    enrollment_id = sign_up(client, tokens["enroll"])["enrollment_id"]
    with store.begin() as conn:  # a worker has just handed the welcome email to the sender
        conn.execute(
            deliveries.update()
            .where(deliveries.c.enrollment_id == enrollment_id, deliveries.c.step_key == "welcome")
            .values(status="sending")
        )
    answer = client.delete(f"/api/v1/enrollments/{enrollment_id}", headers=auth(tokens["enroll"]))
    assert answer.json()["cancelled"] == 5 and answer.json()["left_to_finish"] == 1


def test_cancel_takes_back_an_email_a_worker_has_claimed(api, store):
    client, _clock, tokens = api
    enrollment_id = sign_up(client, tokens["enroll"])["enrollment_id"]
    with store.begin() as conn:  # a worker has leased the welcome email, not handed it off
        conn.execute(
            deliveries.update()
            .where(deliveries.c.enrollment_id == enrollment_id, deliveries.c.step_key == "welcome")
            .values(status="claimed", lease_owner="worker-1", lease_expires_at=NOW)
        )
    answer = client.delete(f"/api/v1/enrollments/{enrollment_id}", headers=auth(tokens["enroll"]))
    assert answer.json()["cancelled"] == 6 and answer.json()["left_to_finish"] == 0
    with store.connect() as conn:
        welcome = conn.execute(
            select(deliveries.c.status, deliveries.c.lease_owner).where(
                deliveries.c.enrollment_id == enrollment_id, deliveries.c.step_key == "welcome"
            )
        ).one()
    # The lease is cleared: the worker's hand-off, fenced on its lease, can no longer send it.
    assert tuple(welcome) == ("cancelled", None)


ROUTES = [
    ("post", "/api/v1/enrollments", {"json": SIGNUP}, "enroll"),
    ("get", "/api/v1/enrollments", {"params": {"email": PAT}}, "read"),
    ("get", "/api/v1/enrollments/1", {}, "read"),
    ("delete", "/api/v1/enrollments/1", {}, "enroll"),
    ("post", "/api/v1/contacts/1/tags", {"json": {"add": ["x"]}}, "enroll"),
    ("post", "/api/v1/events", {"json": {"email": PAT, "event": "booked"}}, "events"),
]


def test_a_token_without_the_scope_is_403_revoked_or_unknown_401(api, store):
    client, _clock, tokens = api
    for method, path, kwargs, scope in ROUTES:
        for held, token in tokens.items():
            if held == scope:
                continue
            answer = getattr(client, method)(path, headers=auth(token), **kwargs)
            assert answer.status_code == 403, (method, path, held)
            assert answer.json() == {"error": f"this token does not have the {scope} scope"}
    revoke_token(store, "crm-read", now=NOW)
    for token in (tokens["read"], "dm_not-a-token", SHARED + "x", ""):
        answer = client.get("/api/v1/enrollments", params={"email": PAT}, headers=auth(token))
        assert answer.status_code == 401, token
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json() == {"error": "a valid bearer token is required"}
    assert client.get("/api/v1/enrollments/1").status_code == 401  # no header at all


def test_the_shared_environment_token_has_every_scope(api):
    client, _clock, _tokens = api
    for method, path, kwargs, _scope in ROUTES:
        answer = getattr(client, method)(path, headers=auth(SHARED), **kwargs)
        assert answer.status_code not in (401, 403), (method, path, answer.text)


def test_unknown_and_malformed_ids_are_404(api):
    client, _clock, tokens = api
    for bad in ("999999", "0", "-1", str(2**31), "99999999999999999999", "abc", "1.5", "٣"):
        for method, path, kwargs, scope in ROUTES[2:5]:
            target = path.replace("/1", f"/{bad}")
            answer = getattr(client, method)(target, headers=auth(tokens[scope]), **kwargs)
            assert answer.status_code == 404, (method, target)
            assert "error" in answer.json()


def test_bad_bodies_and_queries_answer_in_the_signup_apis_style(api):
    client, _clock, tokens = api
    sign_up(client, tokens["enroll"])
    token = auth(tokens["enroll"])
    tags = "/api/v1/contacts/2/tags"
    cases = [
        ({"json": {"add": ["no spaces"]}}, 422, "add.0"),
        ({"json": {"remove": ["ok", "bad!"]}}, 422, "remove.1"),
        ({"json": {"add": "patients"}}, 422, "add"),
        ({"json": {"add": ["x"], "colour": "red"}}, 422, "colour"),
        ({"json": {}}, 422, "add"),
        ({"json": ["x"]}, 422, "body"),
        ({"content": b"{not json"}, 400, "body"),
        ({"content": b"[" * 5000}, 400, "body"),
    ]
    for kwargs, status, field in cases:
        answer = client.post(tags, headers=token, **kwargs)
        assert answer.status_code == status, (kwargs, answer.text)
        assert answer.json()["field"] == field
    big = client.post(tags, headers=token, content=b'{"add": ["' + b"a" * 20_000 + b'"]}')
    assert big.status_code == 413
    reader = auth(tokens["read"])
    for params, field in (
        ({}, "email"),
        ({"email": ["a@example.com", "b@example.com"]}, "email"),
        ({"email": PAT, "like": "%"}, "like"),
        ({"email": "a\x00@example.com"}, "email"),
    ):
        answer = client.get("/api/v1/enrollments", params=params, headers=reader)
        assert answer.status_code == 422 and answer.json()["field"] == field, params


def test_without_any_token_the_api_is_503_and_one_token_turns_it_on(store, clinic):
    app = create_app(store, clock=lambda: NOW, environ={})
    with TestClient(app) as client:
        assert client.get("/api/v1/enrollments/1").status_code == 503
        token = add_token(store, "crm", "read", now=NOW)
        assert client.get("/api/v1/enrollments/1").status_code == 401
        assert client.get("/api/v1/enrollments/1", headers=auth(token)).status_code == 404


def test_last_use_is_recorded_at_most_once_a_minute(api, store):
    client, clock, tokens = api

    def last_used():
        with store.connect() as conn:
            return conn.scalar(
                select(api_tokens.c.last_used_at).where(api_tokens.c.name == "crm-read")
            )

    assert last_used() is None
    client.get("/api/v1/enrollments/1", headers=auth(tokens["read"]))
    assert last_used() == NOW
    clock.now = NOW + timedelta(seconds=59)
    client.get("/api/v1/enrollments/1", headers=auth(tokens["read"]))
    assert last_used() == NOW
    clock.now = NOW + timedelta(seconds=61)
    client.get("/api/v1/enrollments/1", headers=auth(tokens["read"]))
    assert last_used() == NOW + timedelta(seconds=61)


def test_no_address_reaches_the_logs_at_debug(api, store, caplog, monkeypatch):
    monkeypatch.setenv("DRIPMAIL_LOG_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    client, _clock, tokens = api
    enrollment_id = sign_up(client, tokens["enroll"])["enrollment_id"]
    client.get("/api/v1/enrollments", params={"email": PAT}, headers=auth(tokens["read"]))
    client.get("/api/v1/enrollments", params={"email": "pat.jones@"}, headers=auth(tokens["read"]))
    client.get(f"/api/v1/enrollments/{enrollment_id}", headers=auth(tokens["read"]))
    client.post("/api/v1/contacts/2/tags", json={"add": ["x"]}, headers=auth(tokens["enroll"]))
    client.delete(f"/api/v1/enrollments/{enrollment_id}", headers=auth(tokens["enroll"]))
    client.get("/api/v1/enrollments", params={"email": PAT}, headers=auth(tokens["events"]))
    # The test's own HTTP client (httpx) logs the URL it asked for: that is the caller's
    # log, not dripmail's.
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(caplog.handler.format(r) for r in ours).lower()
    assert "enrollment lookup" in logged  # the routes did log
    assert "pat.jones" not in logged and "pat jones" not in logged
    for token in tokens.values():
        assert token.lower() not in logged


def test_the_cli_shows_a_token_once_and_keeps_only_its_hash(tmp_path, clinic):
    database = tmp_path / "dripmail.db"
    runner = CliRunner()
    made = runner.invoke(
        cli.app, ["tokens", "add", "Booking", "--scope", "enroll,read", "--db", str(database)]
    )
    assert made.exit_code == 0, made.output
    lines = made.output.strip().splitlines()
    token = lines[-1]
    assert token.startswith("dm_") and len(token) > 40 and " " not in token
    assert made.output.count(token) == 1
    assert "enroll, read" in lines[0]

    listed = runner.invoke(cli.app, ["tokens", "list", "--db", str(database)])
    assert listed.exit_code == 0
    assert token not in listed.output
    header, row = listed.output.strip().splitlines()
    assert header.split() == ["NAME", "SCOPES", "CREATED", "LAST", "USED", "REVOKED"]
    assert row.split()[:2] == ["booking", "enroll,read"] and "never" in row

    taken = runner.invoke(
        cli.app, ["tokens", "add", "booking", "--scope", "read", "--db", str(database)]
    )
    assert taken.exit_code == 2 and "exists already" in taken.output
    unknown = runner.invoke(
        cli.app, ["tokens", "add", "crm", "--scope", "write", "--db", str(database)]
    )
    assert unknown.exit_code == 2 and "unknown scope 'write'" in unknown.output

    # The database and its write-ahead log (the row may not be checkpointed yet).
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("dripmail.db*"))
    assert token.encode() not in raw and token[3:].encode() not in raw
    assert hashlib.sha256(token.encode()).hexdigest().encode() in raw

    # The token works, with its scopes only, and is refused once revoked.
    store = Store(f"sqlite:///{database}")
    enroll(store, clinic, Signup("staff@example.com", None, None, None, "staff"), now=NOW)
    with TestClient(create_app(store, clock=lambda: NOW, environ={})) as client:
        assert client.get("/api/v1/enrollments/1", headers=auth(token)).status_code == 200
        event = client.post(
            "/api/v1/events", json={"email": PAT, "event": "booked"}, headers=auth(token)
        )
        assert event.status_code == 403
        revoked = runner.invoke(cli.app, ["tokens", "revoke", "booking", "--db", str(database)])
        assert revoked.exit_code == 0 and revoked.output.strip() == "token booking revoked"
        assert client.get("/api/v1/enrollments/1", headers=auth(token)).status_code == 401
    listed = runner.invoke(cli.app, ["tokens", "list", "--db", str(database)])
    row = listed.output.strip().splitlines()[1]
    assert row.split()[-2:] != ["-", "-"] and token not in listed.output
    store.close()


def test_on_postgresql_a_row_a_worker_holds_makes_cancel_roll_back_and_try_again(
    postgres_url, clinic
):
    store = Store(postgres_url)
    enroll(store, clinic, Signup(PAT, None, None, None, "front desk"), now=NOW)
    with store.connect() as conn:
        enrollment_id = conn.scalar(select(deliveries.c.enrollment_id).limit(1))
    with store.begin() as worker:  # a worker's hand-off transaction holds the welcome row
        worker.execute(
            select(deliveries.c.id)
            .where(deliveries.c.enrollment_id == enrollment_id, deliveries.c.step_key == "welcome")
            .with_for_update()
        ).all()
        with pytest.raises(RowsBusy):
            _cancel(store, enrollment_id, now=NOW)
        with store.connect() as conn:  # rolled back: nothing changed
            assert set(conn.scalars(select(deliveries.c.status))) == {"scheduled"}
    result = cancel_enrollment(store, enrollment_id, now=NOW)  # the worker is done
    assert (result.status, result.cancelled, result.left_to_finish) == ("cancelled", 6, 0)
    store.close()


def test_under_uvicorn_at_debug_the_api_logs_no_address(store, clinic, caplog, monkeypatch):
    """`serve`'s app under uvicorn as `serve` runs it, every logger at DEBUG (SQLAlchemy's
    statements and rows included): the Enrollment API's requests leave no address."""
    monkeypatch.setenv("DRIPMAIL_LOG_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    enroll(store, clinic, Signup("staff@example.com", None, None, None, "staff"), now=NOW)
    token = add_token(store, "crm", "enroll,read", now=NOW)
    headers = auth(token)
    with serving(store, {}) as url, httpx.Client(base_url=url, headers=headers) as http:
        created = http.post("/api/v1/enrollments", json=SIGNUP)
        assert created.status_code == 201
        enrollment_id = created.json()["enrollment_id"]
        assert http.get("/api/v1/enrollments", params={"email": PAT}).status_code == 200
        assert http.get(f"/api/v1/enrollments/{enrollment_id}").status_code == 200
        assert http.post("/api/v1/contacts/2/tags", json={"add": ["x"]}).status_code == 200
        assert http.delete(f"/api/v1/enrollments/{enrollment_id}").status_code == 200
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(caplog.handler.format(r) for r in ours).lower()
    assert f"enrollment {enrollment_id} cancelled" in logged
    assert "from contacts" in logged  # SQLAlchemy's statements were logged too
    assert "pat.jones" not in logged and token.lower() not in logged
