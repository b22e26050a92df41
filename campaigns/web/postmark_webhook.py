"""Postmark's webhooks: `POST /webhooks/postmark`, authenticated by HTTP basic credentials.

Postmark signs nothing: a webhook is protected by the basic-auth user and password put
in its URL (`https://user:pass@mail.clinic.example/webhooks/postmark`) or in its HttpAuth
settings, which Postmark sends as `Authorization: Basic ...`. The pairs we accept come
from POSTMARK_WEBHOOK_CREDENTIALS ("user:pass,user2:pass2"): a list, so a new pair can
be set at Postmark before the old one is dropped here. Each is compared in constant
time, all of them every time. A request without a matching pair is refused with 401 and
nothing changed. Without a signed timestamp a captured request cannot be told stale,
but replaying one changes nothing: its event is stored once (campaigns/compliance/
postmark_events.py).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns import boundedjson
from campaigns.compliance.events import apply_provider_events
from campaigns.compliance.postmark_events import parse_postmark_event
from campaigns.errors import ConfigurationError, InputError
from campaigns.settings import POSTMARK_WEBHOOK_ENV, Settings
from campaigns.storage.store import Store
from campaigns.web.webhooks import WebhookRejected, read_body

log = logging.getLogger("dripmail.webhooks")

PATH = "/webhooks/postmark"
MAX_BODY = 256 * 1024  # one record per request; a bounce with its Content is far below


def credentials(value: str | None) -> list[tuple[bytes, bytes]]:
    """The (user, password) pairs in POSTMARK_WEBHOOK_CREDENTIALS; none when unset.

    Raises ConfigurationError, naming the variable but never its value, when a pair is
    not `user:password` with both parts set.
    """
    pairs = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        user, colon, password = item.partition(":")
        if not (colon and user and password):
            raise ConfigurationError(
                f"{POSTMARK_WEBHOOK_ENV} must be user:password pairs separated by commas "
                "(user:pass,user2:pass2)"
            )
        pairs.append((user.encode(), password.encode()))
    return pairs


def authorised(header: str | None, pairs: list[tuple[bytes, bytes]]) -> bool:
    """Whether an `Authorization: Basic` header names one of `pairs`, compared in
    constant time against every pair (no early exit that would time the match)."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return False
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    if not colon:
        return False
    found = False
    for good_user, good_password in pairs:
        same_user = hmac.compare_digest(user, good_user)
        same_password = hmac.compare_digest(password, good_password)
        found |= same_user & same_password
    return found


def postmark_routes(
    store: Store,
    *,
    settings: Settings,
    clock: Callable[[], datetime],
    max_body: int = MAX_BODY,
) -> list[Route]:
    """The webhook's route; a set but malformed POSTMARK_WEBHOOK_CREDENTIALS raises
    ConfigurationError here, so `serve` stops at start rather than refuse every event."""
    secret = settings.postmark_webhook_credentials
    pairs = credentials(secret.get_secret_value() if secret else None)
    return [Route(PATH, _endpoint(store, pairs, clock, max_body), methods=["POST"])]


def _endpoint(
    store: Store,
    pairs: list[tuple[bytes, bytes]],
    clock: Callable[[], datetime],
    max_body: int,
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if not pairs:
            # 503 rather than 4xx: Postmark retries, so nothing is lost while unset.
            return _refuse(503, f"{POSTMARK_WEBHOOK_ENV} is not set; events cannot be checked")
        if not authorised(request.headers.get("authorization"), pairs):
            return _refuse(401, "the webhook credentials do not match")
        try:
            body = await read_body(request, max_body)
            record = _parse(body)
        except WebhookRejected as exc:
            return _refuse(exc.status, exc.message)
        found = parse_postmark_event(record)
        try:
            report = await run_in_threadpool(apply_provider_events, store, found, now=clock())
        except DataError:
            # A value PostgreSQL cannot store (a NUL in an id): one transaction, rolled back.
            return _refuse(400, "the event holds a value the database cannot store")
        return JSONResponse(
            {
                "stored": report.stored,
                "duplicates": report.duplicates,
                "ignored": 0 if found else 1,
            }
        )

    return endpoint


def _parse(body: bytes) -> dict:
    try:
        record = boundedjson.loads(body)  # depth-capped before it is parsed
    except InputError as exc:
        raise WebhookRejected(400, f"the body is {exc.message}") from None
    if not isinstance(record, dict):
        raise WebhookRejected(400, "the body is not a JSON object (one Postmark record)")
    return record


def _refuse(status: int, message: str) -> Response:
    log.warning("postmark webhook refused (%d): %s", status, message)
    headers = {"WWW-Authenticate": 'Basic realm="dripmail webhooks"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)
