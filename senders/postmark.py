"""Postmark through its Email API: `POST /email/batch`, up to 500 emails per request.

Each email is one entry of the batch, complete (senders.postmark_body), sent through the
campaign's message stream; its delivery id rides in the entry's Metadata. Postmark
answers a batch entry by entry (senders.postmark_answers), and each entry's answer is
honoured: an address Postmark refuses (300 invalid, 406 inactive recipient) fails that
delivery alone while the rest go.

How the other answers are read (docs/architecture.md, Senders):

- 429, 5xx, a refused connection or a failure before the request was fully written,
  and entries answered 100 (maintenance) or 429: retried with senders.retry's backoff
  (a 429's Retry-After when it names one), bounded per batch by `max_attempts` requests
  and `max_wait` seconds of waiting; then TRANSIENT, for a later run. A retry carries
  only the entries still waiting.
- The request was written but its answer was lost (read timeout, dropped connection,
  an unreadable 200): AMBIGUOUS for every entry of it. Postmark has no idempotency key;
  its Delivery and Bounce webhooks settle them by delivery id.
- 401, ErrorCode 10 (bad token), and the account's or sender's own refusals (400, 401,
  405, 412, 413): SenderConfigurationError, which stops the run before anything is
  marked (or, when some emails of the call already went, ends the call with the rest
  TRANSIENT and stops the next one).

The server token never reaches a log line, an error message or a repr.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from campaigns.authoring.sender_settings import PostmarkSenderSettings
from campaigns.settings import POSTMARK_HOST_ENV, POSTMARK_TOKEN_ENV, Settings
from senders.base import (
    Message,
    Outcome,
    Sender,
    SenderConfigurationError,
    SendResult,
    api_host,
)
from senders.calls import Threads, after_refusal
from senders.postmark_answers import Answer, BatchEndpoint
from senders.postmark_body import MAX_BATCH, EntryWriter, body, plan_batches, unsendable
from senders.retry import backoff

log = logging.getLogger("dripmail.postmark")

DEFAULT_HOST = "https://api.postmarkapp.com"
STOPPED = "the run stopped on a Postmark configuration error"


class PostmarkSender(Sender):
    """Sends Messages through Postmark's batch endpoint."""

    name = "postmark"

    def __init__(
        self,
        server_token: str,
        *,
        host: str = DEFAULT_HOST,
        server_token_env: str = POSTMARK_TOKEN_ENV,
        message_stream: str = "broadcast",
        track_opens: bool = False,
        track_clicks: bool = False,
        batch: bool = True,
        timeout: float = 10.0,
        concurrency: int = 8,
        max_attempts: int = 3,
        max_wait: float = 60.0,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not server_token:
            raise SenderConfigurationError(
                f"the Postmark server token is empty: set {server_token_env}"
            )
        if timeout <= 0 or concurrency < 1 or max_attempts < 1 or max_wait < 0 or backoff < 0:
            raise SenderConfigurationError(
                "postmark: timeout must be > 0, concurrency and max_attempts >= 1, "
                "max_wait and backoff >= 0"
            )
        self.host = _valid_host(host)
        self.server_token_env = server_token_env
        self.message_stream = message_stream
        self.concurrency = int(concurrency)
        self.max_attempts = int(max_attempts)
        self.max_wait = float(max_wait)
        self.backoff = float(backoff)
        # Sender protocol: the dispatcher hands over at least this many per call.
        self.batch_limit = MAX_BATCH if batch else 1
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        self._writer = EntryWriter(message_stream, track_opens, track_clicks)
        self._endpoint = BatchEndpoint(self.host, server_token_env, server_token, float(timeout))
        self._threads = Threads(self.concurrency, "dripmail-postmark")
        self._refused: str | None = None  # set once Postmark refuses the token or account

    @classmethod
    def from_settings(
        cls, config: PostmarkSenderSettings, settings: Settings, **overrides: Any
    ) -> PostmarkSender:
        """Build from the campaign's `sender:` settings and the installation's.

        The token comes from the variable named by `server_token_env`; the host from
        POSTMARK_API_HOST, else `api_host`, else Postmark's. `overrides` (e.g. sleep,
        clock, backoff) go to the constructor.
        """
        secret = settings.secret(config.server_token_env)
        token = secret.get_secret_value().strip() if secret else ""
        if not token:
            raise SenderConfigurationError(
                "the postmark sender needs a server token: set the environment variable "
                f"{config.server_token_env}"
            )
        options: dict[str, Any] = {
            "host": settings.postmark_api_host or config.api_host or DEFAULT_HOST,
            "server_token_env": config.server_token_env,
            "message_stream": config.message_stream,
            "track_opens": config.track_opens,
            "track_clicks": config.track_clicks,
            "batch": config.batch,
            "timeout": config.timeout,
            "concurrency": config.concurrency,
            "max_attempts": config.max_attempts,
            "max_wait": config.max_wait,
            **overrides,
        }
        return cls(token, **options)

    def __repr__(self) -> str:
        return f"PostmarkSender(host={self.host!r}, token from {self.server_token_env})"

    def entry(self, message: Message) -> dict[str, Any]:
        """The message as one entry of a batch request's JSON array."""
        return self._writer.entry(message)

    # -- sending ---------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        """One result per message, in order. Raises SenderConfigurationError if
        Postmark refuses the token or account before any message of this call went out."""
        if self._refused:
            raise SenderConfigurationError(self._refused)
        if not messages:
            return []
        results: list[SendResult | None] = [None] * len(messages)
        encoded: list[bytes] = []
        sendable: list[int] = []
        for index, message in enumerate(messages):
            data = self._writer.encoded(message)
            problem = unsendable(message, len(data))
            if problem:
                log.warning("delivery %s: not sent: %s", message.delivery_id, problem)
                results[index] = SendResult(
                    message.delivery_id, Outcome.PERMANENT, error=problem, attempts=0
                )
                continue
            sendable.append(index)
            encoded.append(data)
        stop = threading.Event()
        batches = [
            [sendable[i] for i in batch]
            for batch in plan_batches([len(e) for e in encoded], self.batch_limit)
        ]
        by_index = dict(zip(sendable, encoded, strict=True))
        pool = self._threads.pool()
        futures = [
            pool.submit(self._deliver, [messages[i] for i in b], [by_index[i] for i in b], stop)
            for b in batches
        ]
        refused: str | None = None
        for batch, future in zip(batches, futures, strict=True):
            done, reason = future.result()
            for index, result in zip(batch, done, strict=True):
                results[index] = result
            if reason and (refused is None or refused == STOPPED):
                refused = reason
        final = [r for r in results if r is not None]
        if refused is None:
            return final
        self._refused = refused
        return after_refusal(final, refused, "Postmark", log)

    def _deliver(
        self, messages: Sequence[Message], entries: Sequence[bytes], stop: threading.Event
    ) -> tuple[list[SendResult], str | None]:
        """One batch, with in-run retries of the entries still waiting: a result per
        message, and the configuration error met (if any)."""
        label = f"batch of {len(messages)} from delivery {messages[0].delivery_id}"
        results: list[SendResult | None] = [None] * len(messages)
        attempts = [0] * len(messages)
        pending = list(range(len(messages)))
        refused: str | None = None
        tries = 0
        waited = 0.0

        def end(indexes: Sequence[int], outcome: Outcome, **details: Any) -> None:
            for i in indexes:
                results[i] = SendResult(
                    messages[i].delivery_id, outcome, attempts=attempts[i], **details
                )

        while pending:
            if stop.is_set():
                # Another batch met a configuration error: make no further request.
                end(pending, Outcome.TRANSIENT, error=f"not sent: {STOPPED}")
                return _done(results), refused or STOPPED
            tries += 1
            for i in pending:
                attempts[i] += 1
            answer = self._endpoint.post(body([entries[i] for i in pending]), len(pending))
            log.debug("%s: attempt %d: %s", label, tries, answer.kind)
            if answer.kind == "config":
                stop.set()
                refused = answer.error or "Postmark refused the server token"
                end(pending, Outcome.TRANSIENT, error=f"not sent: {refused}")
                return _done(results), refused
            if answer.kind == "ambiguous":
                log.warning("%s: the answer was lost after sending; not retried", label)
                end(pending, Outcome.AMBIGUOUS, error=answer.error)
                break
            if answer.kind == "permanent":
                log.warning("%s: Postmark rejected the request", label)
                end(pending, Outcome.PERMANENT, error=answer.error)
                break
            if answer.kind == "answered":
                pending, refusal = self._entries(messages, pending, answer, end)
                if refusal:
                    stop.set()
                    refused = refusal
                    end(pending, Outcome.TRANSIENT, error=f"not sent: {refusal}")
                    return _done(results), refused
                if not pending:
                    break
            # Transient: wait and retry what is still waiting while both bounds allow it.
            wait = self._wait(answer, tries)
            if tries >= self.max_attempts or waited + wait > self.max_wait:
                error = answer.error or _first_error(answer) or "Postmark could not take it now"
                log.info("%s: giving up for this run after %d attempts", label, tries)
                end(
                    pending,
                    Outcome.TRANSIENT,
                    error=f"{error} (after {tries} attempt{'s' * (tries > 1)})",
                )
                break
            self._sleep(wait)
            waited += wait
        return _done(results), refused

    @staticmethod
    def _entries(
        messages: Sequence[Message],
        pending: list[int],
        answer: Answer,
        end: Callable[..., None],
    ) -> tuple[list[int], str | None]:
        """Each entry's own answer: (those to retry, a configuration refusal if any)."""
        retry: list[int] = []
        refusal: str | None = None
        for i, entry in zip(pending, answer.entries, strict=True):
            if entry.kind == "sent":
                end([i], Outcome.SENT, provider_id=entry.provider_id)
            elif entry.kind == "permanent":
                log.warning("delivery %s: Postmark rejected it", messages[i].delivery_id)
                end([i], Outcome.PERMANENT, error=entry.error)
            elif entry.kind == "config":
                refusal = refusal or entry.error
                retry.append(i)
            else:
                retry.append(i)
        return retry, refusal

    def _wait(self, answer: Answer, tries: int) -> float:
        if answer.retry_after is not None:
            # Plus a little jitter, so batches waiting together do not retry in step.
            return answer.retry_after + self._random.uniform(0, self.backoff)
        return backoff(tries, self.backoff, self._random.uniform)

    def close(self) -> None:
        """Wait for requests in flight, then stop the threads."""
        self._threads.close()


def _done(results: list[SendResult | None]) -> list[SendResult]:
    return [r for r in results if r is not None]


def _first_error(answer: Answer) -> str | None:
    return next((e.error for e in answer.entries if e.kind == "retry" and e.error), None)


def _valid_host(host: str) -> str:
    return api_host(host, provider="postmark", example=DEFAULT_HOST, variable=POSTMARK_HOST_ENV)
