"""SendGrid's signed Event Webhook: `POST /webhooks/sendgrid`.

SendGrid signs `timestamp + raw body` with ECDSA P-256 / SHA-256 and sends the
base64 DER signature in X-Twilio-Email-Event-Webhook-Signature and the Unix time in
X-Twilio-Email-Event-Webhook-Timestamp. The signature covers the exact bytes sent,
so it is checked before the body is parsed (a re-serialised JSON would not verify).
The verification key is the one SendGrid shows under Mail Settings -> Signed Event
Webhook: base64 of the DER public key, read from SENDGRID_WEBHOOK_PUBLIC_KEY.

The timestamp must be recent on the real clock (not the engine's `--now`): a captured
request replayed later is refused even though its signature is good.
"""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from campaigns import boundedjson
from campaigns.compliance.sendgrid_events import apply_sendgrid_events
from campaigns.errors import ConfigurationError, InputError
from campaigns.settings import WEBHOOK_KEY_ENV, Settings
from campaigns.storage.store import Store

log = logging.getLogger("dripmail.webhooks")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_BODY = 1024 * 1024  # SendGrid batches events; a real batch is far below this
MAX_AGE = timedelta(minutes=10)
MAX_AHEAD = timedelta(minutes=5)  # clock skew between SendGrid and us
_PEM_ARMOUR = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")


class WebhookRejected(Exception):
    """A request refused before anything was stored; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SendGridVerifier:
    """Checks SendGrid's signature and timestamp over a request's raw body."""

    def __init__(self, public_key: str) -> None:
        # SendGrid shows the key as one base64 line; a pasted PEM block works too.
        key_text = "".join(_PEM_ARMOUR.sub("", public_key).split())
        self._helper = EventWebhook()
        try:
            key = self._helper.convert_public_key_to_ecdsa(key_text)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            # The key itself is never echoed: it stays out of every log and message.
            raise ConfigurationError(
                f"{WEBHOOK_KEY_ENV} is not an ECDSA public key: paste the verification key "
                "exactly as SendGrid shows it under Mail Settings -> Signed Event Webhook"
            )
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridVerifier | None:
        """The verifier for SENDGRID_WEBHOOK_PUBLIC_KEY, or None when it is not set."""
        value = (settings.sendgrid_webhook_public_key or "").strip()
        return cls(value) if value else None

    def verify(
        self, body: bytes, signature: str | None, timestamp: str | None, *, now: datetime
    ) -> None:
        """Raise WebhookRejected unless the request is signed by SendGrid, recently."""
        if not signature or not timestamp:
            raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise WebhookRejected(400, f"{TIMESTAMP_HEADER} is not a Unix time")
        signed_at = datetime.fromtimestamp(int(timestamp), UTC)
        if signed_at < now - MAX_AGE:
            raise WebhookRejected(403, "the signature timestamp is too old")
        if signed_at > now + MAX_AHEAD:
            raise WebhookRejected(403, "the signature timestamp is in the future")
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected(400, "the body is not UTF-8") from None
        try:
            good = self._helper.verify_signature(payload, signature, timestamp, self._key)
        except (binascii.Error, ValueError, InvalidSignature):
            good = False
        if not good:
            raise WebhookRejected(403, "the signature does not match the body")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise WebhookRejected(413, f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a chunked body without Content-Length: stop reading at once
            raise WebhookRejected(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def sendgrid_endpoint(
    store: Store,
    verifier: SendGridVerifier | None,
    clock: Callable[[], datetime],
    *,
    max_body: int = MAX_BODY,
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for SendGrid's Event Webhook."""

    async def endpoint(request: Request) -> Response:
        if verifier is None:
            # 503 rather than 4xx: SendGrid keeps retrying, so nothing is lost while unset.
            return _refuse(503, f"{WEBHOOK_KEY_ENV} is not set; events cannot be verified")
        try:
            body = await read_body(request, max_body)
            verifier.verify(
                body,
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get(TIMESTAMP_HEADER),
                now=clock(),
            )
            items = _parse(body)
        except WebhookRejected as exc:
            return _refuse(exc.status, exc.message)
        try:
            report = await run_in_threadpool(apply_sendgrid_events, store, items, now=clock())
        except DataError:
            # A value PostgreSQL cannot store (a NUL in an event id or address): the batch
            # is one transaction, rolled back, so nothing changed. The error names no
            # value: the engine hides parameters.
            return _refuse(400, "an event holds a value the database cannot store")
        return JSONResponse(
            {"stored": report.stored, "duplicates": report.duplicates, "ignored": report.ignored}
        )

    return endpoint


def _parse(body: bytes) -> list:
    try:
        # Depth-capped: a signed body of 100,000 brackets made json raise RecursionError.
        items = boundedjson.loads(body)
    except InputError as exc:
        raise WebhookRejected(400, f"the body is {exc.message}") from None
    if not isinstance(items, list):
        raise WebhookRejected(400, "the body is not a JSON array of events")
    return items


def _refuse(status: int, message: str) -> Response:
    log.warning("sendgrid webhook refused (%d): %s", status, message)
    return JSONResponse({"error": message}, status_code=status)
