"""Helpers for console tests: a movable clock, people of each role set up, signed-in clients.

clock = Clock(NOW)
app = create_app(store, clock=clock)            # host 127.0.0.1: plain cookies
admin = add_person(store, "admin", clock)       # password + TOTP set up, like a person would
client = console_client(app)                    # TestClient on http://127.0.0.1
sign_in(client, admin, clock)                   # password, then the TOTP code
client.post("/people", data={"csrf_token": csrf_of(client.get("/people").text), ...})
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from starlette.applications import Starlette
from starlette.testclient import TestClient

from campaigns.console.accounts import add_user
from campaigns.console.setup import complete_setup, open_setup
from campaigns.storage.store import Store

PASSWORD = "violet kettle harbour 42"
BASE_URL = "http://127.0.0.1"
_numbers = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """The console's clock, moved by the test (nothing sleeps)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


@dataclass(frozen=True)
class Person:
    id: int
    email: str
    role: str
    password: str
    secret: str | None  # the TOTP secret (None: set up without an authenticator)
    recovery_codes: tuple[str, ...]

    def code(self, at: datetime) -> str:
        assert self.secret is not None
        return pyotp.TOTP(self.secret).at(at)


def add_person(
    store: Store,
    role: str,
    clock: Clock,
    *,
    email: str | None = None,
    name: str | None = None,
    password: str = PASSWORD,
    totp: bool = True,
) -> Person:
    """A person of `role` who has used their set-up link (through the library)."""
    email = email or f"{role}-{next(_numbers)}@clinic.example"
    made = add_user(store, email, role, name=name, now=clock())
    enrolment = open_setup(store, made.token, now=clock())
    assert enrolment is not None
    code = pyotp.TOTP(enrolment.secret).at(clock()) if totp else ""
    codes = complete_setup(
        store, made.token, password, password, code, now=clock(), code_required=totp
    )
    assert codes is not None
    clock.advance(seconds=31)  # the set-up code's time step is used up
    return Person(
        made.user.id,
        made.user.email,
        role,
        password,
        enrolment.secret if totp else None,
        tuple(codes),
    )


def console_client(app: Starlette) -> TestClient:
    return TestClient(app, base_url=BASE_URL, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, person: Person, clock: Clock) -> None:
    """Sign in through the pages: the form, the password, then the TOTP code."""
    token = csrf_of(client.get("/sign-in").text)
    answer = client.post(
        "/sign-in",
        data={"csrf_token": token, "email": person.email, "password": person.password},
    )
    assert answer.status_code == 303, answer.text
    if person.secret is None:
        return
    page = client.get(answer.headers["location"])
    answer = client.post(
        "/sign-in/code", data={"csrf_token": csrf_of(page.text), "code": person.code(clock())}
    )
    assert answer.status_code == 303, answer.text
    clock.advance(seconds=31)  # the next sign-in needs the next code


def signed_in(app: Starlette, store: Store, role: str, clock: Clock) -> tuple[TestClient, Person]:
    """A client signed in as a new person of `role`."""
    person = add_person(store, role, clock)
    client = console_client(app)
    sign_in(client, person, clock)
    return client, person
