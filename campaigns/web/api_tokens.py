"""Named, scoped API tokens: made, listed, revoked, and recognised (the api_tokens table).

`dripmail tokens add NAME --scope enroll,events,read` makes a random token, shows it
once, and keeps only its SHA-256: whoever reads the database (or a backup) cannot
use a token. A presented token is hashed and looked up by that hash, then compared
in constant time; a revoked token stays in the table (its name stays taken, and
`tokens list` shows when it was revoked). Its last use is written at most once a
minute, so a busy client does not turn every request into a write.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from campaigns.errors import InputError, NotFoundError
from campaigns.storage.store import Store
from campaigns.storage.tables import api_tokens


class ApiScope(enum.StrEnum):
    """What a token may do."""

    ENROLL = "enroll"  # POST/DELETE /api/v1/enrollments, POST /api/v1/contacts/{id}/tags
    EVENTS = "events"  # POST /api/v1/events
    READ = "read"  # GET /api/v1/enrollments (by address, by id)


EVERY_SCOPE = frozenset(ApiScope)
TOKEN_PREFIX = "dm_"  # recognisable in a secret scanner's rules and in a config file
LAST_USE_EVERY = timedelta(minutes=1)  # the finest last-use time worth a write
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class TokenInfo:
    """A token as `tokens list` shows it (the token itself is never kept)."""

    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Holder:
    """Who presented a valid token: its name (None for DRIPMAIL_API_TOKEN) and scopes."""

    name: str | None
    scopes: frozenset[str]


def token_hash(token: str) -> str:
    """The SHA-256 of a token, hex: what the table keeps. A token holds 256 random bits,
    so a plain (unsalted, fast) hash is safe: there is nothing to guess."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """`enroll,read` -> ("enroll", "read"); InputError (field `--scope`) for an unknown one."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    chosen = {part.strip().lower() for part in parts if part.strip()}
    if not chosen:
        raise InputError("give at least one scope: enroll, events, read", field="--scope")
    unknown = sorted(chosen - set(EVERY_SCOPE))
    if unknown:
        raise InputError(
            f"unknown scope {unknown[0]!r}: use enroll, events or read", field="--scope"
        )
    return tuple(scope for scope in ApiScope if scope in chosen)


def check_name(name: str) -> str:
    """A token's name as stored: lower case letters, digits, '-', '_', '.', up to 64."""
    value = name.strip().lower()
    if not _NAME.fullmatch(value):
        raise InputError(
            f"{name!r} is not a token name: use letters, digits, '-', '_' or '.' "
            "(up to 64 characters)",
            field="NAME",
        )
    return value


def add_token(store: Store, name: str, scopes: str | Iterable[str], *, now: datetime) -> str:
    """Make a token named `name` with these scopes; returns the token (shown once).
    InputError when the name is taken (even by a revoked token) or a scope is unknown."""
    name = check_name(name)
    chosen = parse_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        with store.begin() as conn:
            conn.execute(
                api_tokens.insert().values(
                    name=name,
                    token_hash=token_hash(token),
                    scopes=",".join(chosen),
                    created_at=now,
                )
            )
    except IntegrityError:
        raise InputError(f"a token named {name!r} exists already", field="NAME") from None
    return token


def list_tokens(store: Store) -> list[TokenInfo]:
    """Every token, revoked ones included, by name."""
    with store.connect() as conn:
        rows = conn.execute(
            select(
                api_tokens.c.name,
                api_tokens.c.scopes,
                api_tokens.c.created_at,
                api_tokens.c.last_used_at,
                api_tokens.c.revoked_at,
            ).order_by(api_tokens.c.name)
        ).all()
    return [
        TokenInfo(r.name, tuple(r.scopes.split(",")), r.created_at, r.last_used_at, r.revoked_at)
        for r in rows
    ]


def revoke_token(store: Store, name: str, *, now: datetime) -> bool:
    """Revoke the token named `name`: True, or False when it was revoked already;
    NotFoundError for no such token."""
    name = name.strip().lower()
    with store.begin() as conn:
        revoked = conn.execute(
            select(api_tokens.c.revoked_at).where(api_tokens.c.name == name)
        ).first()
        if revoked is None:
            raise NotFoundError(f"no token named {name!r}")
        if revoked.revoked_at is not None:
            return False
        conn.execute(update(api_tokens).where(api_tokens.c.name == name).values(revoked_at=now))
    return True


def any_tokens(store: Store) -> bool:
    """Whether any token was ever made (the API is off with none and no DRIPMAIL_API_TOKEN)."""
    with store.connect() as conn:
        return bool(conn.scalar(select(func.count()).select_from(api_tokens)))


def holder_of(store: Store, token: str, *, now: datetime) -> Holder | None:
    """The holder of a presented token, or None for an unknown or revoked one; records
    its use (at most once a minute)."""
    wanted = token_hash(token)
    with store.connect() as conn:
        row = conn.execute(
            select(
                api_tokens.c.id,
                api_tokens.c.name,
                api_tokens.c.token_hash,
                api_tokens.c.scopes,
                api_tokens.c.last_used_at,
                api_tokens.c.revoked_at,
            ).where(api_tokens.c.token_hash == wanted)
        ).first()
    # The lookup is by index; comparing the hashes again in constant time costs nothing
    # and keeps the decision itself free of early exits.
    if row is None or not hmac.compare_digest(row.token_hash, wanted):
        return None
    if row.revoked_at is not None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USE_EVERY:
        _record_use(store, row.id, now=now)
    return Holder(row.name, frozenset(row.scopes.split(",")))


def _record_use(store: Store, token_id: int, *, now: datetime) -> None:
    # Conditional, so that of the requests arriving together in one minute one writes.
    with store.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(
                api_tokens.c.id == token_id,
                or_(
                    api_tokens.c.last_used_at.is_(None),
                    api_tokens.c.last_used_at <= now - LAST_USE_EVERY,
                ),
            )
            .values(last_used_at=now)
        )
