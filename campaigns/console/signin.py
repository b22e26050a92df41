"""Signing in: password, then the authenticator's code (or a recovery code), with lockout.

Five failed attempts within 15 minutes make an address typed wait 15 minutes, whether
or not it has an account; a client address waits after twenty (staff behind one office
router share it). While waiting even the right password fails. Every answer to a failed
attempt is the same, after the same work: an unknown address has its password checked
against a dummy argon2 hash, so neither the words nor the time tell whether an address
has an account. Failures and sign-ins go to the audit trail.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update

from campaigns.console import passwords, sessions, twofactor
from campaigns.console.accounts import recovery_hashes
from campaigns.console.permissions import Role
from campaigns.planning.contacts import normalise_email
from campaigns.storage import audit
from campaigns.storage.store import Store
from campaigns.storage.tables import console_failures, console_users

__all__ = [
    "ACCOUNT_LIMIT",
    "ADDRESS_LIMIT",
    "LOCK_WINDOW",
    "Outcome",
    "Result",
    "code_step",
    "password_step",
    "two_factor_required",
]

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
LOCK_WINDOW = timedelta(minutes=15)
ANONYMOUS = "-"  # the audit actor of a failed sign-in naming no account
_SECOND_FACTOR_ROLES = (Role.ADMIN, Role.EDITOR, Role.REVIEWER)


class Outcome(enum.Enum):
    FAILED = "failed"
    SIGNED_IN = "signed-in"
    NEEDS_CODE = "needs-code"  # password right; the session waits for the code
    NEEDS_SETUP = "needs-setup"  # password right, but the required second factor is missing


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    session_id: str | None = None
    user_id: int | None = None


def two_factor_required(role: str, mode: str | None) -> bool:
    """TOTP is required of admins, editors and reviewers unless DRIPMAIL_CONSOLE_2FA=optional."""
    return (mode or "required").strip().lower() != "optional" and role in _SECOND_FACTOR_ROLES


def _account_key(email: str) -> str:
    try:
        typed = normalise_email(email)
    except ValueError:
        typed = email.strip().lower()
    return "account:" + hashlib.sha256(typed.encode()).hexdigest()[:40]


def _address_key(client: str) -> str:
    return f"address:{client[:80]}"


def _locked(conn: Connection, keys: dict[str, int], now: datetime) -> bool:
    for key, limit in keys.items():
        count = conn.scalar(
            select(func.count())
            .select_from(console_failures)
            .where(console_failures.c.key == key, console_failures.c.failed_at > now - LOCK_WINDOW)
        )
        if count >= limit:
            return True
    return False


def _fail(conn: Connection, keys: dict[str, int], user_id: int | None, now: datetime) -> None:
    for key in keys:
        conn.execute(insert(console_failures).values(key=key, failed_at=now))
    # Old failures say nothing any more: dropped as new ones come in.
    conn.execute(delete(console_failures).where(console_failures.c.failed_at <= now - LOCK_WINDOW))
    actor = ANONYMOUS if user_id is None else user_id
    audit.record(conn, actor, "sign-in.failed", "user", user_id, at=now)


def password_step(
    store: Store, email: str, password: str, client: str, *, now: datetime, two_factor: str | None
) -> Result:
    """Check the address and password; a session (full, or waiting for the code) when right."""
    keys = {_account_key(email): ACCOUNT_LIMIT, _address_key(client): ADDRESS_LIMIT}
    try:
        address = normalise_email(email)
    except ValueError:
        address = None
    with store.connect() as conn:
        row = conn.execute(select(console_users).where(console_users.c.email == address)).first()
        locked = _locked(conn, keys, now)
    usable = row is not None and row.disabled_at is None
    matched = passwords.verify(row.password_hash if usable else None, password)
    with store.begin() as conn:
        if locked or not matched or row is None:
            if not locked:
                _fail(conn, keys, row.id if row is not None else None, now)
            return Result(Outcome.FAILED)
        conn.execute(delete(console_failures).where(console_failures.c.key == _account_key(email)))
        if row.totp_enabled_at is not None:
            session_id = sessions.start(conn, row.id, now, mfa_pending=True)
            return Result(Outcome.NEEDS_CODE, session_id, row.id)
        if two_factor_required(row.role, two_factor):
            audit.record(conn, row.id, "sign-in.refused", "user", row.id, detail="no 2FA", at=now)
            return Result(Outcome.NEEDS_SETUP, None, row.id)
        return Result(Outcome.SIGNED_IN, _signed_in(conn, row.id, now), row.id)


def _signed_in(conn: Connection, user_id: int, now: datetime) -> str:
    conn.execute(
        update(console_users).where(console_users.c.id == user_id).values(last_sign_in_at=now)
    )
    audit.record(conn, user_id, "sign-in", "user", user_id, at=now)
    return sessions.start(conn, user_id, now)


def code_step(
    store: Store, pending: sessions.Session, code: str, client: str, *, now: datetime
) -> Result:
    """The second step: a TOTP code or an unused recovery code. The waiting session is
    ended either way when it succeeds, and a new one (a new id) begins."""
    user = pending.user
    keys = {_account_key(user.email): ACCOUNT_LIMIT, _address_key(client): ADDRESS_LIMIT}
    with store.begin() as conn:
        if _locked(conn, keys, now):
            return Result(Outcome.FAILED)
        row = conn.execute(select(console_users).where(console_users.c.id == user.id)).one()
        step = twofactor.verify_code(row.totp_secret or "", code, now, row.totp_last_step)
        if step is not None:
            conn.execute(
                update(console_users)
                .where(console_users.c.id == user.id)
                .values(totp_last_step=step)
            )
        else:
            left = recovery_hashes(row)
            hashed = twofactor.hash_recovery(code)
            if not code.strip() or hashed not in left:
                _fail(conn, keys, user.id, now)
                return Result(Outcome.FAILED)
            left.remove(hashed)
            conn.execute(
                update(console_users)
                .where(console_users.c.id == user.id)
                .values(recovery_codes=json.dumps(left))
            )
            audit.record(conn, user.id, "recovery-code.used", "user", user.id, at=now)
        sessions.revoke(conn, pending.id_hash, now)
        return Result(Outcome.SIGNED_IN, _signed_in(conn, user.id, now), user.id)
