"""Console people: add, list, disable and reset them, and their one-time set-up links.

A person is added with a role and gets a set-up link (valid 24 hours, one use): it opens
the page where they choose a password and enrol their authenticator. Only a SHA-256 of
the link's token is kept. Every change is written to the audit trail by its actor (a
console user's id, or "cli").
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Row, insert, select, update

from campaigns.console.permissions import Role
from campaigns.errors import InputError, NotFoundError
from campaigns.planning.contacts import normalise_email
from campaigns.storage import audit
from campaigns.storage.store import Store
from campaigns.storage.tables import console_sessions, console_users

__all__ = [
    "SETUP_VALID",
    "SetupLink",
    "User",
    "add_user",
    "disable_user",
    "find_by_email",
    "get_user",
    "list_users",
    "reset_user",
    "setup_url",
    "token_hash",
]

SETUP_VALID = timedelta(hours=24)
DEFAULT_CONSOLE_URL = "http://127.0.0.1:8030"


class UserState:
    """How a person's account stands, as `users list` and the people page say it."""

    SETUP = "set-up pending"
    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True)
class User:
    """A console user as pages and commands show them (no secret in it)."""

    id: int
    email: str
    name: str | None
    role: str
    state: str
    two_factor: bool
    created_at: datetime
    last_sign_in_at: datetime | None

    @property
    def label(self) -> str:
        """The display name, else the address."""
        return self.name or self.email


@dataclass(frozen=True)
class SetupLink:
    user: User
    token: str
    expires_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def setup_url(base: str | None, token: str) -> str:
    """The set-up page's address under the console's own (DRIPMAIL_CONSOLE_URL)."""
    return f"{(base or DEFAULT_CONSOLE_URL).rstrip('/')}/setup/{token}"


def user_from_row(row: Row) -> User:
    if row.disabled_at is not None:
        state = UserState.DISABLED
    elif row.password_hash is None:
        state = UserState.SETUP
    else:
        state = UserState.ACTIVE
    return User(
        row.id,
        row.email,
        row.name,
        row.role,
        state,
        row.totp_enabled_at is not None,
        row.created_at,
        row.last_sign_in_at,
    )


def _email(value: str) -> str:
    try:
        return normalise_email(value)
    except ValueError as exc:
        raise InputError(str(exc), field="email") from None


def _role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        choices = "|".join(role.value for role in Role)
        raise InputError(f"{value!r} is not a role: use {choices}", field="--role") from None


def _new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def add_user(
    store: Store,
    email: str,
    role: str,
    *,
    now: datetime,
    actor: str | int = audit.CLI,
    name: str | None = None,
) -> SetupLink:
    """A new person with `role` and their set-up link; InputError when the address has one."""
    address, chosen = _email(email), _role(role)
    name = (name or "").strip()[:200] or None
    token, hashed = _new_token()
    with store.begin() as conn:
        if conn.scalar(select(console_users.c.id).where(console_users.c.email == address)):
            raise InputError("this address already has an account", field="email")
        user_id = conn.execute(
            insert(console_users)
            .values(
                email=address,
                name=name,
                role=chosen.value,
                setup_token_hash=hashed,
                setup_expires_at=now + SETUP_VALID,
                created_at=now,
            )
            .returning(console_users.c.id)
        ).scalar_one()
        audit.record(
            conn, actor, "user.add", "user", user_id, detail=f"role={chosen.value}", at=now
        )
        row = conn.execute(select(console_users).where(console_users.c.id == user_id)).one()
    return SetupLink(user_from_row(row), token, now + SETUP_VALID)


def list_users(store: Store) -> list[User]:
    with store.connect() as conn:
        rows = conn.execute(select(console_users).order_by(console_users.c.email)).all()
    return [user_from_row(row) for row in rows]


def get_user(conn: Connection, user_id: int) -> Row | None:
    return conn.execute(select(console_users).where(console_users.c.id == user_id)).first()


def find_by_email(store: Store, email: str) -> User:
    """The person with this address; NotFoundError otherwise."""
    try:
        address = normalise_email(email)
    except ValueError:
        address = None
    with store.connect() as conn:
        row = conn.execute(select(console_users).where(console_users.c.email == address)).first()
    if row is None:
        raise NotFoundError("no console user has this address (see `dripmail users list`)")
    return user_from_row(row)


def revoke_sessions(conn: Connection, user_id: int, now: datetime) -> None:
    conn.execute(
        update(console_sessions)
        .where(console_sessions.c.user_id == user_id, console_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def disable_user(
    store: Store, user_id: int, *, now: datetime, actor: str | int = audit.CLI
) -> User:
    """Disable the account and end its sessions; its set-up link stops working too."""
    with store.begin() as conn:
        conn.execute(
            update(console_users)
            .where(console_users.c.id == user_id)
            .values(disabled_at=now, setup_token_hash=None, setup_expires_at=None)
        )
        revoke_sessions(conn, user_id, now)
        audit.record(conn, actor, "user.disable", "user", user_id, at=now)
        row = get_user(conn, user_id)
    if row is None:
        raise NotFoundError(f"no console user {user_id}")
    return user_from_row(row)


def reset_user(
    store: Store, user_id: int, *, now: datetime, actor: str | int = audit.CLI
) -> SetupLink:
    """A new set-up link: password, authenticator and recovery codes are cleared, sessions
    ended, and a disabled account can be set up again (the way back after a lost phone)."""
    token, hashed = _new_token()
    with store.begin() as conn:
        if get_user(conn, user_id) is None:
            raise NotFoundError(f"no console user {user_id}")
        conn.execute(
            update(console_users)
            .where(console_users.c.id == user_id)
            .values(
                password_hash=None,
                totp_secret=None,
                totp_enabled_at=None,
                totp_last_step=None,
                recovery_codes=None,
                disabled_at=None,
                setup_token_hash=hashed,
                setup_expires_at=now + SETUP_VALID,
            )
        )
        revoke_sessions(conn, user_id, now)
        audit.record(conn, actor, "user.reset", "user", user_id, at=now)
        row = get_user(conn, user_id)
    assert row is not None
    return SetupLink(user_from_row(row), token, now + SETUP_VALID)


def recovery_hashes(row: Row) -> list[str]:
    return json.loads(row.recovery_codes) if row.recovery_codes else []
