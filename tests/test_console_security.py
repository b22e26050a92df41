"""The console's security over HTTP: roles on every route, CSRF, sessions, lockout, escaping.

The app runs in-process (Starlette's TestClient on http://127.0.0.1) on each backend;
people are set up through the library and sign in through the pages with their password
and a TOTP code computed from their secret. Time is the app's clock, moved by the test.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from starlette.routing import Route

from campaigns.authoring.spec import Campaign
from campaigns.console import passwords
from campaigns.console.app import create_app
from campaigns.console.guard import PUBLIC
from campaigns.console.permissions import PERMISSIONS, Permission, Role
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.settings import Settings
from campaigns.storage import audit
from campaigns.storage.store import Store
from campaigns.storage.tables import audit_log, console_sessions, console_users
from campaigns.web.app import create_app as create_public_app
from tests.console_support import (
    PASSWORD,
    Clock,
    add_person,
    console_client,
    csrf_of,
    sign_in,
    signed_in,
)
from tests.helpers import utc

NOW = utc("2026-03-09T14:00")
PATIENT = "pat.patient@example.com"
PATIENT_NAME = "Patricia Quill"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def app(store: Store, clock: Clock):
    return create_app(store, clock=clock)


def user_rows(store: Store) -> list:
    with store.connect() as conn:
        return conn.execute(select(console_users).order_by(console_users.c.id)).all()


def audit_count(store: Store) -> int:
    with store.connect() as conn:
        return conn.scalar(select(func.count()).select_from(audit_log))


def console_routes(app) -> list[tuple[str, str, object]]:
    """(method, path with dummy parameters, permission) of every console route."""
    found = []
    for route in app.routes:
        assert isinstance(route, Route)
        permission = getattr(route.endpoint, "permission", None)
        assert permission is not None, f"{route.path} declares no permission"
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in sorted(route.methods - {"HEAD"}):
            found.append((method, path, permission))
    return found


# -- every route: refused signed out, and to every role without its permission -------------


def test_every_console_route_declares_a_permission_and_refuses_those_without_it(
    store: Store, app, clock: Clock
):
    routes = console_routes(app)
    guarded = [(m, p, perm) for m, p, perm in routes if perm != PUBLIC]
    assert {p for _, p, _ in guarded} >= {"/", "/people", "/audit", "/sign-out"}
    public_paths = {p for _, p, perm in routes if perm == PUBLIC}
    assert public_paths == {"/sign-in", "/sign-in/code", "/setup/1", "/_console/1", "/healthz"}

    anonymous = console_client(app)
    for method, path, _ in guarded:
        answer = anonymous.request(method, path, data={"csrf_token": "x"})
        if method == "GET":
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/sign-in?next=")
        else:
            assert answer.status_code == 403, (method, path)

    before_users, before_audit = user_rows(store), audit_count(store)
    for role in Role:
        client, _person = signed_in(app, store, role.value, clock)
        token = csrf_of(client.get("/").text)
        for method, path, permission in guarded:
            if Permission(permission) in PERMISSIONS[role]:
                continue
            answer = client.request(method, path, data={"csrf_token": token})
            assert answer.status_code == 403, (role, method, path)
    # Nothing changed but the sign-ins themselves (people set up, their sign-ins audited).
    assert len(user_rows(store)) == len(before_users) + len(Role)
    with store.connect() as conn:
        actions = set(conn.scalars(select(audit_log.c.action).where(audit_log.c.id > before_audit)))
    assert actions <= {"user.add", "user.setup", "sign-in"}


def test_a_console_route_on_the_public_serve_app_is_404(store: Store, clinic: Campaign):
    public = console_client(create_public_app(store))
    for path in (
        "/sign-in",
        "/sign-in/code",
        "/people",
        "/audit",
        "/setup/abc",
        "/_console/console.css",
    ):
        assert public.get(path).status_code == 404, path
    assert public.post("/sign-in", data={"email": "a@b.example"}).status_code in (404, 405)


# -- CSRF ------------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(store: Store, app, clock: Clock):
    client, admin = signed_in(app, store, "admin", clock)
    before_users, before_audit = user_rows(store), audit_count(store)
    form = {"email": "new@clinic.example", "role": "admin"}
    assert client.post("/people", data=form).status_code == 403
    assert client.post("/people", data={**form, "csrf_token": "forged"}).status_code == 403
    other, _ = signed_in(app, store, "admin", clock)
    someone_elses = csrf_of(other.get("/").text)
    before_users, before_audit = user_rows(store), audit_count(store)
    assert client.post("/people", data={**form, "csrf_token": someone_elses}).status_code == 403
    assert client.post(f"/people/{admin.id}/reset", data={}).status_code == 403
    assert client.post("/sign-out", data={}).status_code == 403
    token = csrf_of(client.get("/").text)
    cross = client.post(
        "/people", data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    fetched = client.post(
        "/people", data={**form, "csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert fetched.status_code == 403
    assert user_rows(store) == before_users and audit_count(store) == before_audit
    assert client.get("/").status_code == 200  # still signed in: the refusals signed nobody out
    # With the token (in the field or the header) the same request works.
    ok = client.post(
        "/people", data={**form, "csrf_token": token}, headers={"Origin": "http://127.0.0.1"}
    )
    assert ok.status_code == 200 and "new@clinic.example" in ok.text
    by_header = client.post(
        "/people",
        data={"email": "two@clinic.example", "role": "viewer"},
        headers={"X-CSRF-Token": token},
    )
    assert by_header.status_code == 200 and "two@clinic.example" in by_header.text


def test_the_sign_in_form_needs_its_token_too(store: Store, app, clock: Clock):
    admin = add_person(store, "admin", clock)
    client = console_client(app)
    answer = client.post("/sign-in", data={"email": admin.email, "password": admin.password})
    assert answer.status_code == 403
    assert "dripmail_console" not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize("role", ["viewer", "editor", "reviewer"])
def test_a_crafted_post_to_manage_people_is_403_and_changes_nothing(
    store: Store, app, clock: Clock, role: str
):
    target = add_person(store, "admin", clock)
    client, _ = signed_in(app, store, role, clock)
    token = csrf_of(client.get("/").text)
    before_users, before_audit = user_rows(store), audit_count(store)
    for path, form in (
        ("/people", {"email": "mallory@clinic.example", "role": "admin"}),
        (f"/people/{target.id}/disable", {}),
        (f"/people/{target.id}/reset", {}),
    ):
        answer = client.post(path, data={**form, "csrf_token": token})
        assert answer.status_code == 403, path
        assert "Not allowed" in answer.text and "set-up link" not in answer.text.lower()
    assert client.get("/people").status_code == 403
    assert client.get("/audit").status_code == 403
    assert user_rows(store) == before_users and audit_count(store) == before_audit


# -- sessions --------------------------------------------------------------------------------


def test_the_session_id_changes_at_sign_in_and_a_signed_out_cookie_no_longer_works(
    store: Store, app, clock: Clock
):
    admin = add_person(store, "admin", clock)
    client = console_client(app)
    first = client.post(
        "/sign-in",
        data={
            "csrf_token": csrf_of(client.get("/sign-in").text),
            "email": admin.email,
            "password": PASSWORD,
        },
    )
    pending = client.cookies["dripmail_console"]
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert client.get("/").status_code == 303  # the password alone is not a sign-in
    page = client.get("/sign-in/code")
    client.post(
        "/sign-in/code", data={"csrf_token": csrf_of(page.text), "code": admin.code(clock())}
    )
    full = client.cookies["dripmail_console"]
    assert full != pending
    assert client.get("/").status_code == 200
    # The half-way session is over; its cookie opens nothing.
    stale = console_client(app)
    stale.cookies.set("dripmail_console", pending)
    assert stale.get("/").status_code == 303
    # Only hashes are stored.
    with store.connect() as conn:
        stored = set(conn.scalars(select(console_sessions.c.id_hash)))
    assert full not in stored and pending not in stored
    clock.advance(seconds=31)  # the next code
    # Signing in again (another browser) gives yet another id; signing out ends it for
    # every copy of the cookie.
    client = console_client(app)
    sign_in(client, admin, clock)
    again = client.cookies["dripmail_console"]
    assert again not in (full, pending)
    copy = console_client(app)
    copy.cookies.set("dripmail_console", again)
    assert copy.get("/").status_code == 200
    out = client.post("/sign-out", data={"csrf_token": csrf_of(client.get("/").text)})
    assert out.status_code == 303 and out.headers["location"] == "/sign-in"
    assert copy.get("/").status_code == 303
    assert copy.get("/people").status_code == 303
    assert (
        copy.post("/people", data={"email": "x@clinic.example", "role": "admin"}).status_code == 403
    )


def test_sessions_end_after_30_idle_minutes_and_12_hours_and_when_disabled(
    store: Store, app, clock: Clock
):
    client, _admin = signed_in(app, store, "admin", clock)
    clock.advance(minutes=29)
    assert client.get("/").status_code == 200
    clock.advance(minutes=30)
    assert client.get("/").status_code == 303  # idle for 30 minutes
    client, _admin = signed_in(app, store, "admin", clock)
    for _ in range(36):  # active every 20 minutes: 12 hours
        clock.advance(minutes=20)
        if client.get("/").status_code != 200:
            break
    assert clock() - NOW >= timedelta(hours=12)
    assert client.get("/").status_code == 303
    client, viewer = signed_in(app, store, "viewer", clock)
    from campaigns.console.accounts import disable_user

    disable_user(store, viewer.id, now=clock())
    assert client.get("/").status_code == 303


def test_cookies_are_secure_unless_the_console_is_on_loopback(store: Store, clock: Clock):
    app = create_app(store, clock=clock, host="0.0.0.0")
    from starlette.testclient import TestClient

    client = TestClient(app, base_url="https://console.clinic.example", follow_redirects=False)
    page = client.get("/sign-in")
    assert "Secure" in page.headers["set-cookie"]
    assert "__Host-dripmail_console_pre" in page.headers["set-cookie"]
    # On loopback the Host header must name this machine (no DNS rebinding).
    loopback = create_app(store, clock=clock)
    rebound = TestClient(loopback, base_url="http://attacker.example")
    assert rebound.get("/sign-in").status_code == 400


# -- lockout and what sign-in says ------------------------------------------------------------


def test_the_sixth_attempt_is_refused_even_with_the_right_password_until_15_minutes_pass(
    store: Store, app, clock: Clock
):
    admin = add_person(store, "admin", clock)
    client = console_client(app)
    token = csrf_of(client.get("/sign-in").text)

    def attempt(password: str) -> int:
        answer = client.post(
            "/sign-in", data={"csrf_token": token, "email": admin.email, "password": password}
        )
        return answer.status_code

    for _ in range(5):
        assert attempt("wrong password, nearly") == 200
        clock.advance(seconds=10)
    assert attempt(PASSWORD) == 200  # locked: the right password fails
    clock.advance(minutes=14)
    assert attempt(PASSWORD) == 200
    clock.advance(minutes=1, seconds=1)
    assert attempt(PASSWORD) == 303  # the wait is over
    with store.connect() as conn:
        actions = list(conn.scalars(select(audit_log.c.action).order_by(audit_log.c.id)))
    assert actions.count("sign-in.failed") == 5


def test_failures_are_counted_per_client_address_too(store: Store, app, clock: Clock):
    victim = add_person(store, "admin", clock)
    client = console_client(app)
    token = csrf_of(client.get("/sign-in").text)
    for n in range(20):  # many addresses, each under its own limit
        client.post(
            "/sign-in",
            data={"csrf_token": token, "email": f"guess{n}@clinic.example", "password": "x" * 12},
        )
    answer = client.post(
        "/sign-in", data={"csrf_token": token, "email": victim.email, "password": PASSWORD}
    )
    assert answer.status_code == 200  # this client waits
    clock.advance(minutes=15, seconds=1)
    answer = client.post(
        "/sign-in", data={"csrf_token": token, "email": victim.email, "password": PASSWORD}
    )
    assert answer.status_code == 303


def test_sign_in_answers_a_known_and_an_unknown_address_alike(
    store: Store, app, clock: Clock, monkeypatch: pytest.MonkeyPatch
):
    known = add_person(store, "editor", clock, email="known@clinic.example")
    disabled = add_person(store, "editor", clock, email="gone@clinic.example")
    from campaigns.console.accounts import disable_user

    disable_user(store, disabled.id, now=clock())
    checks: list[str] = []
    real = passwords._HASHER

    class Counting:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, stored: str, password: str) -> bool:
            checks.append(stored)
            return real.verify(stored, password)

    monkeypatch.setattr(passwords, "_HASHER", Counting())
    client = console_client(app)
    token = csrf_of(client.get("/sign-in").text)

    def answer(email: str, password: str):
        response = client.post(
            "/sign-in", data={"csrf_token": token, "email": email, "password": password}
        )
        body = response.text.replace(email, "EMAIL")
        headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "date")}
        return response.status_code, headers, body

    wrong = answer(known.email, "not the password 1")
    unknown = answer("nobody@clinic.example", "not the password 1")
    gone = answer(disabled.email, PASSWORD)
    assert wrong == unknown == gone
    assert wrong[0] == 200 and "Sign-in failed" in wrong[2]
    assert len(checks) == 3  # argon2 ran for each, a dummy hash for the unknown address


def test_a_recovery_code_signs_in_once_and_a_totp_code_works_once(store: Store, app, clock: Clock):
    admin = add_person(store, "admin", clock)

    def password_then(code: str) -> int:
        client = console_client(app)  # a fresh browser each time
        token = csrf_of(client.get("/sign-in").text)
        client.post(
            "/sign-in", data={"csrf_token": token, "email": admin.email, "password": PASSWORD}
        )
        page = client.get("/sign-in/code")
        return client.post(
            "/sign-in/code", data={"csrf_token": csrf_of(page.text), "code": code}
        ).status_code

    code = admin.code(clock())
    assert password_then(code) == 303
    assert password_then(code) == 200  # the same code again: refused
    recovery = admin.recovery_codes[0]
    assert password_then(recovery.upper()) == 303
    assert password_then(recovery) == 200


# -- set-up links and the second factor -------------------------------------------------------


def test_a_set_up_link_works_once_and_for_24_hours(store: Store, app, clock: Clock):
    from campaigns.console.accounts import add_user

    made = add_user(store, "new@clinic.example", "editor", now=clock())
    client = console_client(app)
    clock.advance(hours=24)
    assert client.get(f"/setup/{made.token}").status_code == 404
    made = add_user(store, "new2@clinic.example", "editor", now=clock())
    page = client.get(f"/setup/{made.token}")
    assert page.status_code == 200
    for attr in ('autocomplete="new-password"', 'autocomplete="one-time-code"', "<svg"):
        assert attr in page.text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    token = csrf_of(page.text)
    form = {"csrf_token": token, "password": PASSWORD, "confirm": PASSWORD}
    # The editor's role needs the authenticator: no code, no account.
    assert client.post(f"/setup/{made.token}", data={**form, "code": ""}).status_code == 422
    short = client.post(
        f"/setup/{made.token}", data={**form, "password": "short", "confirm": "short", "code": ""}
    )
    assert "at least 12 characters" in short.text
    common = client.post(
        f"/setup/{made.token}",
        data={**form, "password": "Password1234", "confirm": "Password1234", "code": ""},
    )
    assert "common passwords" in common.text
    import pyotp

    done = client.post(
        f"/setup/{made.token}", data={**form, "code": pyotp.TOTP(secret).at(clock())}
    )
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.text)
    assert len(codes) == 10
    row = next(r for r in user_rows(store) if r.email == "new2@clinic.example")
    assert row.password_hash.startswith("$argon2id$")
    assert not any(code in (row.recovery_codes or "") for code in codes)
    assert client.get(f"/setup/{made.token}").status_code == 404  # used


def test_two_factor_is_optional_when_the_setting_says_so(store: Store, clock: Clock):
    settings = Settings.from_env({"DRIPMAIL_CONSOLE_2FA": "optional"})
    app = create_app(store, clock=clock, settings=settings)
    from campaigns.console.accounts import add_user

    made = add_user(store, "ed@clinic.example", "editor", now=clock())
    client = console_client(app)
    page = client.get(f"/setup/{made.token}")
    assert "(optional)" in page.text
    form = {"csrf_token": csrf_of(page.text), "password": PASSWORD, "confirm": PASSWORD, "code": ""}
    assert client.post(f"/setup/{made.token}", data=form).status_code == 200
    token = csrf_of(client.get("/sign-in").text)
    answer = client.post(
        "/sign-in", data={"csrf_token": token, "email": "ed@clinic.example", "password": PASSWORD}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    # With the setting back to required, an editor with no authenticator cannot sign in.
    strict = console_client(create_app(store, clock=clock))
    token = csrf_of(strict.get("/sign-in").text)
    refused = strict.post(
        "/sign-in", data={"csrf_token": token, "email": "ed@clinic.example", "password": PASSWORD}
    )
    assert refused.status_code == 200 and "new set-up link" in refused.text


# -- what pages show ---------------------------------------------------------------------------


def test_names_holding_markup_or_template_syntax_show_exactly_as_typed(
    store: Store, app, clock: Clock
):
    name = "<script>alert(1)</script> {{ 7*7 }} {% if 1 %}x{% endif %}"
    client, _admin = signed_in(app, store, "admin", clock)
    token = csrf_of(client.get("/people").text)
    added = client.post(
        "/people",
        data={"csrf_token": token, "email": "odd@clinic.example", "role": "viewer", "name": name},
    )
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }} {% if 1 %}x{% endif %}"
    assert escaped in added.text
    # 49 as a word of its own: the set-up link's random token may hold "49" by chance.
    assert "<script>" not in added.text and not re.search(r"(?<![\w-])49(?![\w-])", added.text)
    person = add_person(store, "admin", clock, email="odd2@clinic.example", name=name)
    own = console_client(app)
    sign_in(own, person, clock)
    for path in ("/", "/people", "/audit"):
        page = own.get(path)
        assert escaped in page.text, path
        assert "<script>" not in page.text


def test_the_dashboard_lists_campaigns_and_nothing_logged_names_a_patient(
    store: Store, app, clock: Clock, clinic: Campaign, caplog: pytest.LogCaptureFixture
):
    signup = Signup(PATIENT, PATIENT_NAME, "America/New_York", "2026-03-02T10:00", "clinic form")
    enroll(store, clinic, signup, now=NOW)
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "dripmail", "dripmail.console", "uvicorn", "httpx"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        client, _admin = signed_in(app, store, "admin", clock)
        page = client.get("/")
        viewer, _ = signed_in(app, store, "viewer", clock)
        viewer.get("/")
        viewer.post("/people", data={"csrf_token": csrf_of(viewer.get("/").text), "email": PATIENT})
        client.get("/people")
        client.get("/audit")
    finally:
        for name in ("sqlalchemy.engine", "dripmail", "dripmail.console", "uvicorn", "httpx"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert clinic.name in page.text and "published" in page.text
    cells = re.findall(r'data-label="(?:Enrolled|Pending)" class="num">([\d,]+)<', page.text)
    assert cells[0] == "1" and int(cells[1]) == len(clinic.steps)
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert caplog.records, "nothing was logged at DEBUG"
    assert PATIENT not in logged and PATIENT_NAME not in logged
    assert PATIENT not in page.text and PATIENT_NAME not in page.text


# -- the audit trail -----------------------------------------------------------------------------


def test_the_audit_trail_is_append_only(store: Store, clock: Clock):
    with store.begin() as conn:
        audit.record(conn, audit.CLI, "test", "thing", "1", "abc123", at=clock())
    assert not any(hasattr(audit, name) for name in ("update", "delete", "remove", "erase"))
    if store.is_sqlite:
        return
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), store.begin() as conn:
            conn.execute(text(statement))
    with store.connect() as conn:
        assert conn.scalar(select(audit_log.c.actor)) == "cli"


def test_an_admin_cannot_disable_themselves(store: Store, app, clock: Clock):
    client, admin = signed_in(app, store, "admin", clock)
    token = csrf_of(client.get("/people").text)
    answer = client.post(f"/people/{admin.id}/disable", data={"csrf_token": token})
    assert answer.status_code == 422
    assert client.get("/").status_code == 200
    with store.connect() as conn:
        assert (
            conn.scalar(select(console_users.c.disabled_at).where(console_users.c.id == admin.id))
            is None
        )


def test_an_unknown_role_holds_nothing(store: Store, app, clock: Clock):
    client, person = signed_in(app, store, "viewer", clock)
    with store.begin() as conn:
        conn.execute(
            update(console_users).where(console_users.c.id == person.id).values(role="owner")
        )
    assert client.get("/").status_code == 403


def test_behind_an_https_proxy_the_public_name_is_accepted_and_cookies_are_secure(
    store: Store, clock: Clock
):
    from starlette.testclient import TestClient

    settings = Settings.from_env({"DRIPMAIL_CONSOLE_URL": "https://console.clinic.example"})
    app = create_app(store, clock=clock, settings=settings)  # bound to 127.0.0.1, proxied
    admin = add_person(store, "admin", clock)
    client = TestClient(app, base_url="https://console.clinic.example", follow_redirects=False)
    page = client.get("/sign-in")
    assert page.status_code == 200
    assert "__Host-dripmail_console_pre" in page.headers["set-cookie"]
    assert "Secure" in page.headers["set-cookie"]
    answer = client.post(
        "/sign-in",
        data={"csrf_token": csrf_of(page.text), "email": admin.email, "password": PASSWORD},
        headers={"Origin": "https://console.clinic.example"},
    )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("__Host-dripmail_console=") and "Secure" in cookie
    other = TestClient(app, base_url="http://attacker.example")
    assert other.get("/sign-in").status_code == 400


def test_multipart_forms_carry_fields_and_files_and_still_need_the_token(
    store: Store, app, clock: Clock
):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse

    from campaigns.console.guard import Call, requires

    @requires(Permission.EDIT_CAMPAIGNS)
    def upload(call: Call) -> PlainTextResponse:
        got = call.files["article"]
        return PlainTextResponse(f"{call.form['title']}|{got.filename}|{got.content.decode()}")

    uploads = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
    uploads.state.console = app.state.console
    client, _editor = signed_in(app, store, "editor", clock)
    token = csrf_of(client.get("/").text)
    other = console_client(uploads)
    other.cookies = client.cookies
    article = ("sleep.md", "# Sleep\n\nKetamine and sleep: é ✓".encode(), "text/markdown")
    sent = other.post(
        "/upload", data={"csrf_token": token, "title": "Søvn"}, files={"article": article}
    )
    assert sent.status_code == 200
    assert sent.text == "Søvn|sleep.md|# Sleep\n\nKetamine and sleep: é ✓"
    assert other.post("/upload", data={"title": "x"}, files={"article": article}).status_code == 403
    too_big = ("big.md", b"x" * (5 * 1024 * 1024 + 1), "text/markdown")
    assert (
        other.post("/upload", data={"csrf_token": token}, files={"article": too_big}).status_code
        == 400
    )
    viewer, _ = signed_in(app, store, "viewer", clock)
    other.cookies = viewer.cookies
    vtoken = csrf_of(viewer.get("/").text)
    assert (
        other.post("/upload", data={"csrf_token": vtoken}, files={"article": article}).status_code
        == 403
    )


@pytest.mark.sqlite_only
def test_healthz_says_whether_the_database_answers(store: Store, clock: Clock, tmp_path):
    """Issue 21: every server's /healthz checks its database; the console's too."""
    client = console_client(create_app(store, clock=clock))
    answer = client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok")
    assert answer.headers["cache-control"] == "no-store"
    # A console whose database file has gone: 503 and why, no path, no empty file made.
    gone = tmp_path / "gone.db"
    other = Store(f"sqlite:///{gone}")
    other.close()
    gone.rename(tmp_path / "moved.db")
    answer = console_client(create_app(other, clock=clock)).get("/healthz")
    assert (answer.status_code, answer.text) == (503, "the database file is missing")
    assert not gone.exists()
