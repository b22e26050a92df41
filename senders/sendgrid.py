"""SendGrid through the official `sendgrid` client and the v3 Mail Send endpoint.

Requests run in a bounded pool of threads, because the client opens a fresh
connection per request. Each message's delivery id rides in its own personalization's
custom_args. What one request carries:

- a batch: messages of one step whose content is the step's tagged content plus plain
  per-contact values (Message.batch) go up to 1,000 per request, one personalization
  each with its own subject, headers and substitutions, the content once;
- otherwise one message, rendered in full (a step with `{% if %}`, values over
  SendGrid's limits, a message alone in its group, or `batch: false`).

A request's answer is the answer for every message in it.

How each answer is read (docs/architecture.md, Senders):

- 202 (200 in sandbox mode): sent; X-Message-Id is SendGrid's id for it.
- 429: wait until X-RateLimit-Reset, then retry. 500/502/503/504, a refused
  connection or a failure before the request was fully written: retry with
  exponential backoff and jitter. Retries are bounded per message by
  `max_attempts` requests and `max_wait` seconds of waiting; then the message is
  TRANSIENT and the dispatcher reschedules it for a later run.
- The request was written but its answer was lost (read timeout, connection
  dropped): AMBIGUOUS. SendGrid has no idempotency key, so a retry could deliver
  the email twice; provider events reconcile it by delivery id instead.
- 400/413 and other 4xx: PERMANENT, with SendGrid's own error messages.
- 401/403 (and 404/405/3xx, which mean the host is not SendGrid's API): raise
  SenderConfigurationError, which stops the run before anything is marked.

The API key never reaches a log line, an error message or a repr. The request
bodies are written in senders.sendgrid_body, the answers read in senders.sendgrid_answers;
this module holds the sender: its settings, its threads and the retry loop.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sendgrid

from campaigns.authoring.sender_settings import SendGridSenderSettings
from campaigns.settings import SENDGRID_HOST_ENV, SENDGRID_KEY_ENV, Settings
from senders.base import (
    Message,
    Outcome,
    Sender,
    SenderConfigurationError,
    SendResult,
    api_host,
)
from senders.calls import Refused, Threads, after_refusal, in_order
from senders.sendgrid_answers import MailSend, wait_for
from senders.sendgrid_body import MAX_PERSONALIZATIONS, PayloadWriter, plan_requests, unsendable

log = logging.getLogger("dripmail.sendgrid")

DEFAULT_HOST = "https://api.sendgrid.com"
STOPPED = "the run stopped on a SendGrid configuration error"


class _DropClientDebug(logging.Filter):
    """python_http_client logs every request at DEBUG: its headers (the Authorization
    bearer key) and its JSON payload (addresses, names). Neither may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_client_log = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _DropClientDebug) for f in _client_log.filters):
    # A logger filter, not a level: it still holds when a test or an app sets DEBUG.
    _client_log.addFilter(_DropClientDebug())


class SendGridSender(Sender):
    """Sends Messages through SendGrid's v3 Mail Send API with the official client."""

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        *,
        host: str = DEFAULT_HOST,
        api_key_env: str = SENDGRID_KEY_ENV,
        sandbox_mode: bool = False,
        track_opens: bool = False,
        track_clicks: bool = False,
        categories: bool = False,
        asm_group_id: int | None = None,
        timeout: float = 10.0,
        concurrency: int = 8,
        max_attempts: int = 3,
        max_wait: float = 60.0,
        backoff: float = 0.5,
        batch: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise SenderConfigurationError(f"the SendGrid API key is empty: set {api_key_env}")
        if timeout <= 0 or concurrency < 1 or max_attempts < 1 or max_wait < 0 or backoff < 0:
            raise SenderConfigurationError(
                "sendgrid: timeout must be > 0, concurrency and max_attempts >= 1, "
                "max_wait and backoff >= 0"
            )
        self.host = _valid_host(host)
        self.api_key_env = api_key_env
        self.sandbox_mode = sandbox_mode
        self.track_opens = track_opens
        self.track_clicks = track_clicks
        self.categories = categories
        self.asm_group_id = asm_group_id
        self.timeout = float(timeout)
        self.concurrency = int(concurrency)
        self.max_attempts = int(max_attempts)
        self.max_wait = float(max_wait)
        self.backoff = float(backoff)
        # How many messages one request may carry (Sender protocol: the dispatcher
        # hands over at least as many per call, so a claimed batch can go as one).
        self.batch_limit = MAX_PERSONALIZATIONS if batch else 1
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        self._payloads = PayloadWriter(
            sandbox_mode=sandbox_mode,
            track_opens=track_opens,
            track_clicks=track_clicks,
            categories=categories,
            asm_group_id=asm_group_id,
        )
        api = sendgrid.SendGridAPIClient(api_key=api_key, host=self.host)
        # The client takes no timeout in its constructor; python_http_client reads
        # `timeout` from this Client and copies it to each per-path Client it builds.
        api.client.timeout = self.timeout
        # python_http_client does request_headers.setdefault("Content-Type", ...) on
        # the dict shared by every request; set it now so no thread grows that dict
        # while another copies it ("dictionary changed size during iteration").
        api.client.request_headers["Content-Type"] = "application/json"
        self._mail_send = MailSend(api, self.host, api_key_env, api_key)
        self._threads = Threads(self.concurrency, "dripmail-sendgrid")
        self._refused: str | None = None  # set once SendGrid refuses the key (or the host)

    @classmethod
    def from_settings(
        cls, config: SendGridSenderSettings, settings: Settings, **overrides: Any
    ) -> SendGridSender:
        """Build from the campaign's `sender:` settings and the installation's.

        The key comes from the variable named by `api_key_env`; the host from
        SENDGRID_API_HOST, else `api_host`, else SendGrid's global host. `overrides`
        (e.g. sleep, clock, backoff) go to the constructor.
        """
        key = settings.secret(config.api_key_env)
        api_key = key.get_secret_value().strip() if key else ""
        if not api_key:
            raise SenderConfigurationError(
                "the sendgrid sender needs an API key: set the environment variable "
                f"{config.api_key_env}"
            )
        options: dict[str, Any] = {
            "host": settings.sendgrid_api_host or config.api_host or DEFAULT_HOST,
            "api_key_env": config.api_key_env,
            "sandbox_mode": config.sandbox_mode,
            "track_opens": config.track_opens,
            "track_clicks": config.track_clicks,
            "categories": config.categories,
            "asm_group_id": config.asm_group_id,
            "batch": config.batch,
            "timeout": config.timeout,
            "concurrency": config.concurrency,
            "max_attempts": config.max_attempts,
            "max_wait": config.max_wait,
            **overrides,
        }
        return cls(api_key, **options)

    def __repr__(self) -> str:
        return f"SendGridSender(host={self.host!r}, key from {self.api_key_env})"

    # -- the payload -------------------------------------------------------------

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON body of POST /v3/mail/send for one message."""
        return self._payloads.payload(message)

    def batch_payload(self, messages: Sequence[Message]) -> dict[str, Any]:
        """The JSON body for messages of one step, one personalization each."""
        return self._payloads.batch_payload(messages)

    # -- sending ---------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        """One result per message, in order. Raises SenderConfigurationError if
        SendGrid refuses the key before any message of this call went out."""
        if self._refused:
            raise SenderConfigurationError(self._refused)
        if not messages:
            return []
        stop = threading.Event()
        pool = self._threads.pool()
        requests = plan_requests(messages, self.batch_limit)
        futures = [pool.submit(self._deliver, [messages[i] for i in r], stop) for r in requests]
        outcomes: dict[int, SendResult | Refused] = {}
        for request, future in zip(requests, futures, strict=True):
            try:
                outcomes.update(zip(request, future.result(), strict=True))
            except Refused as exc:
                # A request's answer is every message's in it.
                outcomes.update((index, exc) for index in request)
        ordered = [outcomes[i] for i in range(len(messages))]
        results, refused = in_order(messages, ordered, STOPPED)
        if refused is None:
            return results
        self._refused = refused
        return after_refusal(results, refused, "SendGrid", log)

    def _deliver(self, messages: Sequence[Message], stop: threading.Event) -> list[SendResult]:
        """Make one request, for one message or a batch, with in-run retries; its outcome
        is every message's (raises Refused to stop them all)."""
        if len(messages) == 1:
            label = f"delivery {messages[0].delivery_id}"
            problem = unsendable(messages[0])
            if problem:
                log.warning("%s: not sent: %s", label, problem)
                return self._results(messages, Outcome.PERMANENT, error=problem, attempts=0)
            body = self.payload(messages[0])
        else:
            label = f"batch of {len(messages)} from delivery {messages[0].delivery_id}"
            body = self.batch_payload(messages)
        attempts = 0
        waited = 0.0
        while True:
            if stop.is_set():
                # Another thread met a configuration error: make no further request.
                raise Refused(STOPPED, attempts)
            attempts += 1
            answer = self._mail_send.post(body)
            log.debug("%s: attempt %d: %s", label, attempts, answer.kind)
            if answer.kind == "config":
                stop.set()
                raise Refused(answer.error or "SendGrid refused the API key", attempts)
            if answer.kind == "sent":
                # One X-Message-Id per request; SendGrid's events add a per-recipient
                # suffix and carry each delivery id, which is how they are matched.
                return self._results(
                    messages, Outcome.SENT, provider_id=answer.provider_id, attempts=attempts
                )
            if answer.kind == "permanent":
                log.warning("%s: SendGrid rejected the email", label)
                return self._results(
                    messages, Outcome.PERMANENT, error=answer.error, attempts=attempts
                )
            if answer.kind == "ambiguous":
                log.warning("%s: the answer was lost after sending; not retried", label)
                return self._results(
                    messages, Outcome.AMBIGUOUS, error=answer.error, attempts=attempts
                )
            # Transient: wait and retry while both bounds allow it.
            wait = wait_for(
                answer,
                attempts,
                base=self.backoff,
                clock=self._clock,
                uniform=self._random.uniform,
            )
            if attempts >= self.max_attempts or waited + wait > self.max_wait:
                retry_at = (
                    datetime.fromtimestamp(answer.reset_at, UTC)
                    if answer.reset_at is not None
                    else None
                )
                log.info("%s: giving up for this run after %d attempts", label, attempts)
                return self._results(
                    messages,
                    Outcome.TRANSIENT,
                    error=f"{answer.error} (after {attempts} attempt{'s' * (attempts > 1)})",
                    retry_at=retry_at,
                    attempts=attempts,
                )
            self._sleep(wait)
            waited += wait

    @staticmethod
    def _results(messages: Sequence[Message], outcome: Outcome, **details: Any) -> list[SendResult]:
        return [SendResult(m.delivery_id, outcome, **details) for m in messages]

    def close(self) -> None:
        """Wait for requests in flight, then stop the threads."""
        self._threads.close()


# -- helpers -----------------------------------------------------------------------


def _valid_host(host: str) -> str:
    return api_host(host, provider="sendgrid", example=DEFAULT_HOST, variable=SENDGRID_HOST_ENV)
