"""Amazon SES events through SNS: `POST /webhooks/ses`.

Subscribe this URL (https) to the SNS topic that a configuration set's event
destination (or an identity's notifications) publishes to, and list the topic in
DRIPMAIL_SES_TOPIC_ARNS. Each message is checked first (campaigns/web/sns.py: a
configured topic, a recent Timestamp, SNS's signature with a certificate from SNS
itself), then:

- SubscriptionConfirmation: confirmed by fetching its SubscribeURL, only when that is
  SNS's own address confirming this very topic;
- Notification: its Message, an SES event record, becomes ProviderEvents
  (campaigns/compliance/ses_events.py), applied by apply_provider_events. A replay
  (same MessageId) is stored and applied once; a signed Notification that is not an
  SES event is acknowledged and ignored (an error would only make SNS retry it);
- UnsubscribeConfirmation: acknowledged.

Refused requests change nothing: 400 malformed, 403 not believed (wrong topic, stale,
bad signature, a certificate URL that is not SNS's), 413 too big, 503 when no topic is
configured. The certificate fetcher is `app.state.sns_fetch` when set (tests give one
that serves their own certificate), else an HTTPS GET.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial

from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns import boundedjson
from campaigns.compliance.events import apply_provider_events
from campaigns.compliance.ses_events import parse_ses_event
from campaigns.errors import InputError
from campaigns.settings import SES_TOPICS_ENV, Settings
from campaigns.storage.store import Store
from campaigns.web.sns import Fetch, SnsVerifier, fetch_https
from campaigns.web.webhooks import WebhookRejected, read_body

log = logging.getLogger("dripmail.webhooks")

PATH = "/webhooks/ses"
MAX_BODY = 1024 * 1024  # an SNS message is at most 256 KB, its JSON escaping included


def ses_routes(store: Store, *, settings: Settings, clock: Callable[[], datetime]) -> list[Route]:
    """The route for SES's events through SNS."""
    return [Route(PATH, ses_endpoint(store, settings, clock), methods=["POST"])]


def ses_endpoint(
    store: Store, settings: Settings, clock: Callable[[], datetime], *, max_body: int = MAX_BODY
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for SNS's HTTPS deliveries."""
    topics = settings.ses_topics
    verifier = SnsVerifier(topics)

    async def endpoint(request: Request) -> Response:
        if not topics:
            # 503 rather than 4xx: SNS retries, so nothing is lost while it is unset.
            return _refuse(503, f"{SES_TOPICS_ENV} is not set; SNS messages cannot be checked")
        fetch: Fetch = getattr(request.app.state, "sns_fetch", None) or fetch_https
        try:
            body = await read_body(request, max_body)
            message = _parse(body)
            declared = request.headers.get("x-amz-sns-message-type")
            if declared is not None and declared != message.get("Type"):
                raise WebhookRejected(400, "x-amz-sns-message-type does not match the body")
            # Fetching a certificate blocks: off the event loop.
            await run_in_threadpool(partial(verifier.verify, message, now=clock(), fetch=fetch))
            kind = message["Type"]
            if kind == "SubscriptionConfirmation":
                url = verifier.subscribe_url(message)
                await run_in_threadpool(fetch, url)
                log.info("ses webhook: confirmed the SNS subscription")
                return JSONResponse({"confirmed": True})
            if kind == "UnsubscribeConfirmation":
                return JSONResponse({"unsubscribed": True})
        except WebhookRejected as exc:
            return _refuse(exc.status, exc.message)
        try:
            record = boundedjson.loads(message["Message"].encode("utf-8"))
        except InputError:
            record = None
        found = parse_ses_event(record, key=message["MessageId"])
        if not found:
            return JSONResponse({"stored": 0, "duplicates": 0, "ignored": 1})
        try:
            report = await run_in_threadpool(
                partial(apply_provider_events, store, found, now=clock())
            )
        except DataError:
            # A value PostgreSQL cannot store: the batch is one transaction, rolled back.
            return _refuse(400, "an event holds a value the database cannot store")
        return JSONResponse({"stored": report.stored, "duplicates": report.duplicates})

    return endpoint


def _parse(body: bytes) -> dict:
    try:
        message = boundedjson.loads(body)
    except InputError as exc:
        raise WebhookRejected(400, f"the body is {exc.message}") from None
    if not isinstance(message, dict):
        raise WebhookRejected(400, "the body is not an SNS message")
    return message


def _refuse(status: int, message: str) -> Response:
    log.warning("ses webhook refused (%d): %s", status, message)
    return JSONResponse({"error": message}, status_code=status)
