"""Mailgun's signed webhooks: `POST /webhooks/mailgun`.

Mailgun posts each event as JSON: `{"signature": {"timestamp", "token", "signature"},
"event-data": {...}}`. The signature is the hex HMAC-SHA256 of timestamp + token (no
separator) under the domain's HTTP webhook signing key
(https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks),
read from MAILGUN_WEBHOOK_SIGNING_KEY (several keys, comma-separated, while one is
being rotated). A subaccount's event also carries `parent-signature`, the same HMAC
under the primary account's key: either may verify.

The signature covers the timestamp and token only, not the events, so a captured
signature could carry other events. Hence, as Mailgun's documentation advises:

- the timestamp must be recent on the real clock (not the engine's `--now`): at most
  5 minutes old, at most 1 minute ahead (clock skew);
- a token is honoured once: its SHA-256 is stored in `webhook_tokens` (migration
  0010), in the database so every worker and every restart refuses it again. Mailgun
  signs each attempt anew, so its own retries (after a non-200 answer) pass.

Refused requests change nothing: 401 without a signature, 403 for a signature that
does not verify, a stale or future timestamp, or a used token; 400 for a body that is
not a Mailgun event; 413 over the size cap; 503 while no key is set (Mailgun retries
for 8 hours, so nothing is lost while it is being configured).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from campaigns import boundedjson
from campaigns.compliance.events import apply_provider_events
from campaigns.compliance.mailgun_events import PROVIDER, parse_mailgun_payload
from campaigns.compliance.suppressions import insert_new
from campaigns.errors import InputError
from campaigns.settings import MAILGUN_SIGNING_KEY_ENV, Settings
from campaigns.storage.store import Store
from campaigns.storage.tables import webhook_tokens
from campaigns.web.webhooks import WebhookRejected, read_body

log = logging.getLogger("dripmail.webhooks")

MAX_BODY = 256 * 1024  # one event per request; a real one is a few kB
MAX_AGE = timedelta(minutes=5)
MAX_AHEAD = timedelta(minutes=1)  # clock skew between Mailgun and us
KEEP_TOKENS = 2 * MAX_AGE  # older tokens are refused for their age: no need to keep them
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_KEY_SEPARATORS = re.compile(r"[,\s]+")


class MailgunVerifier:
    """Checks a Mailgun signature block against the signing keys and the clock."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = tuple(key.encode("utf-8") for key in keys if key)
        if not self._keys:
            raise ValueError("no signing key")

    @classmethod
    def from_settings(cls, settings: Settings) -> MailgunVerifier | None:
        """The verifier for MAILGUN_WEBHOOK_SIGNING_KEY, or None when it is not set."""
        secret = settings.mailgun_webhook_signing_key
        keys = _KEY_SEPARATORS.split(secret.get_secret_value()) if secret else []
        keys = [key for key in keys if key]
        return cls(keys) if keys else None

    def verify(self, block: Any, *, now: datetime) -> tuple[str, datetime]:
        """(token, signing time) of a block signed by Mailgun recently; else WebhookRejected."""
        if not isinstance(block, Mapping) or not all(
            block.get(name) not in (None, "") for name in ("timestamp", "token", "signature")
        ):
            raise WebhookRejected(401, "the body has no signature (signature.timestamp, token)")
        timestamp, token = block["timestamp"], block["token"]
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            timestamp = str(timestamp)
        if not isinstance(timestamp, str) or not timestamp.isascii() or not timestamp.isdigit():
            raise WebhookRejected(400, "signature.timestamp is not a Unix time")
        if len(timestamp) > 12:
            raise WebhookRejected(400, "signature.timestamp is not a Unix time")
        if not isinstance(token, str) or not 0 < len(token) <= 256:
            raise WebhookRejected(400, "signature.token is not a token")
        signed = (timestamp + token).encode("utf-8")
        offered = [block.get("signature"), block.get("parent-signature")]
        if not any(self._matches(signed, value) for value in offered):
            raise WebhookRejected(403, "the signature does not match")
        signed_at = datetime.fromtimestamp(int(timestamp), UTC)
        if signed_at < now - MAX_AGE:
            raise WebhookRejected(403, "the signature timestamp is too old")
        if signed_at > now + MAX_AHEAD:
            raise WebhookRejected(403, "the signature timestamp is in the future")
        return token, signed_at

    def _matches(self, signed: bytes, signature: Any) -> bool:
        if not isinstance(signature, str) or not _HEX.fullmatch(signature):
            return False
        offered = signature.lower().encode("ascii")
        found = False
        for key in self._keys:  # every key, always: the time does not tell which matched
            expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode("ascii")
            found |= hmac.compare_digest(expected, offered)
        return found


def claim_token(
    store: Store, provider: str, token: str, signed_at: datetime, *, now: datetime
) -> bool:
    """Record a signature's token; False when it was recorded before (a replay).

    One insert under the table's primary key, so two workers given the same request at
    once cannot both succeed. Tokens too old to be honoured anyway are deleted first.
    """
    with store.begin() as conn:
        conn.execute(
            delete(webhook_tokens).where(
                webhook_tokens.c.provider == provider,
                webhook_tokens.c.signed_at < now - KEEP_TOKENS,
            )
        )
        return insert_new(
            conn,
            webhook_tokens,
            {"provider": provider, "token_hash": _token_hash(token), "signed_at": signed_at},
        )


def release_token(store: Store, provider: str, token: str) -> None:
    """Forget a token whose request was not applied, so the same request may come again."""
    with store.begin() as conn:
        conn.execute(
            delete(webhook_tokens).where(
                webhook_tokens.c.provider == provider,
                webhook_tokens.c.token_hash == _token_hash(token),
            )
        )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def mailgun_endpoint(
    store: Store,
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    max_body: int = MAX_BODY,
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for Mailgun's webhooks."""
    verifier = MailgunVerifier.from_settings(settings)

    async def endpoint(request: Request) -> Response:
        if verifier is None:
            return _refuse(503, f"{MAILGUN_SIGNING_KEY_ENV} is not set; events cannot be verified")
        now = clock()
        try:
            body = await read_body(request, max_body)
            payload = _parse(body)
            token, signed_at = verifier.verify(payload.get("signature"), now=now)
            found = parse_mailgun_payload(payload)
        except WebhookRejected as exc:
            return _refuse(exc.status, exc.message)
        except InputError as exc:
            return _refuse(400, exc.message)
        try:
            fresh = await run_in_threadpool(claim_token, store, PROVIDER, token, signed_at, now=now)
            if not fresh:
                return _refuse(403, "the signature's token was used before (a replay)")
            try:
                report = await run_in_threadpool(apply_provider_events, store, found, now=now)
            except SQLAlchemyError:
                # Nothing was applied (one transaction): let the same request come again.
                await run_in_threadpool(release_token, store, PROVIDER, token)
                raise
        except DataError:
            # A value the database cannot store (a NUL in an id on PostgreSQL). The error
            # names no value: the engine hides parameters.
            return _refuse(400, "the event holds a value the database cannot store")
        except SQLAlchemyError as exc:
            log.error("mailgun webhook: the database failed (%s)", type(exc).__name__)
            # Not 406: Mailgun retries anything else, with a new signature.
            return _refuse(503, "the event could not be stored; try again")
        return JSONResponse(
            {"stored": report.stored, "duplicates": report.duplicates, "ignored": 1 - len(found)}
        )

    return endpoint


def _parse(body: bytes) -> dict[str, Any]:
    try:
        # Depth-capped: a signed body could nest brackets until json recursed too deep.
        payload = boundedjson.loads(body)
    except InputError as exc:
        raise WebhookRejected(400, f"the body is {exc.message}") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "the body is not a JSON object (signature, event-data)")
    return payload


def _refuse(status: int, message: str) -> Response:
    log.warning("mailgun webhook refused (%d): %s", status, message)
    return JSONResponse({"error": message}, status_code=status)
