"""The set-up link's page: choose a password and enrol an authenticator, once.

The link's token is looked up by its hash; it works until it is used, 24 hours pass, the
account is disabled, or a reset makes a new one. The TOTP secret is made when the page
is first opened and kept, so the QR code stays the same while the person retries.
Recovery codes are made on success, shown once, and kept hashed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, select, update

from campaigns.console import passwords, twofactor
from campaigns.console.accounts import token_hash
from campaigns.errors import InputError
from campaigns.storage import audit
from campaigns.storage.store import Store
from campaigns.storage.tables import console_users

__all__ = ["Enrolment", "complete_setup", "open_setup"]


@dataclass(frozen=True)
class Enrolment:
    """What the set-up page shows: who, and the authenticator's secret and QR code."""

    user: Row
    secret: str
    uri: str
    qr_svg: str


def _row(store: Store, token: str, now: datetime) -> Row | None:
    if not token or len(token) > 100:
        return None
    with store.connect() as conn:
        row = conn.execute(
            select(console_users).where(console_users.c.setup_token_hash == token_hash(token))
        ).first()
    if row is None or row.disabled_at is not None or row.setup_expires_at is None:
        return None
    return row if now < row.setup_expires_at else None


def open_setup(store: Store, token: str, *, now: datetime) -> Enrolment | None:
    """The enrolment for a valid link (its secret made now if it has none); else None."""
    row = _row(store, token, now)
    if row is None:
        return None
    secret = row.totp_secret
    if secret is None:
        secret = twofactor.new_secret()
        with store.begin() as conn:
            conn.execute(
                update(console_users)
                .where(console_users.c.id == row.id, console_users.c.totp_secret.is_(None))
                .values(totp_secret=secret)
            )
            secret = conn.scalar(
                select(console_users.c.totp_secret).where(console_users.c.id == row.id)
            )
    uri = twofactor.provisioning_uri(secret, row.email)
    return Enrolment(row, secret, uri, twofactor.qr_svg(uri))


def complete_setup(
    store: Store,
    token: str,
    password: str,
    confirm: str,
    code: str,
    *,
    now: datetime,
    code_required: bool,
) -> list[str] | None:
    """Set the password (and the authenticator, when a code is given or required).

    None when the link is no longer valid; InputError (naming the field) when the
    password or code is refused; else the recovery codes to show once (empty without TOTP).
    """
    row = _row(store, token, now)
    if row is None:
        return None
    passwords.check_new_password(password, confirm)
    code = code.strip()
    step = None
    if code or code_required:
        if not code:
            raise InputError("enter the 6-digit code your authenticator app shows", field="code")
        step = twofactor.verify_code(row.totp_secret or "", code, now, None)
        if step is None:
            raise InputError(
                "that code is not the one your authenticator shows now; check the time on "
                "your phone and try the newest code",
                field="code",
            )
    codes = twofactor.new_recovery_codes() if step is not None else []
    values = {
        "password_hash": passwords.hash_password(password),
        "setup_token_hash": None,
        "setup_expires_at": None,
    }
    if step is not None:
        hashes = [twofactor.hash_recovery(c) for c in codes]
        values |= {
            "totp_enabled_at": now,
            "totp_last_step": step,
            "recovery_codes": json.dumps(hashes),
        }
    else:
        values |= {"totp_secret": None}
    with store.begin() as conn:
        done = conn.execute(
            update(console_users)
            .where(
                console_users.c.id == row.id, console_users.c.setup_token_hash == token_hash(token)
            )
            .values(**values)
        ).rowcount
        if not done:  # used in another tab meanwhile
            return None
        audit.record(
            conn, row.id, "user.setup", "user", row.id, detail="2fa" if step else "no 2fa", at=now
        )
    return codes
