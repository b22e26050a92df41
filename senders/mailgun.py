"""Mailgun through its messages.mime endpoint, with dripmail's own MIME message.

Each email is the message senders.mime writes (List-Unsubscribe and its one-click
POST, Message-ID, the text part first), posted as the `message` file part of
POST /v3/<domain>/messages.mime (multipart/form-data, HTTP basic auth `api:<key>`),
with `to` naming its one recipient. The sending domain is `sender.domain`, else the
domain of the email's From address; the host is the region's (US `api.mailgun.net`,
EU `api.eu.mailgun.net`: a domain lives in one region only), or MAILGUN_API_HOST.

The delivery id goes as `v:delivery_id`: Mailgun adds it to the message as
X-Mailgun-Variables and returns it in every event's `user-variables`, which is how
campaigns/web/mailgun_webhook.py finds the delivery. It is the only thing about the
recipient a request carries besides the message itself: no tags, no other variables.

One email per request (Mailgun's batch sending substitutes `%recipient.x%` into one
body, but every dripmail email has its own signed unsubscribe link, Message-ID and
headers, so each is its own MIME message). Requests run in a bounded pool of
`concurrency` threads sharing one connection pool. How each answer is read is
senders.mailgun_answers'; the retry bounds are SendGrid's: `max_attempts` requests and
`max_wait` seconds of waiting per email in a run, then TRANSIENT for a later run. An
answer lost after the request went (read timeout, dropped connection) is AMBIGUOUS:
Mailgun has no idempotency key, so a retry could deliver twice. A refused key stops
the run before anything is marked, as for SendGrid.

The API key never reaches a log line, an error message or a repr.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from campaigns.authoring.sender_settings import DOMAIN, MailgunSenderSettings
from campaigns.settings import MAILGUN_HOST_ENV, MAILGUN_KEY_ENV, Settings
from senders.addresses import NO_SMTPUTF8, NeedsSmtpUtf8, wire_address
from senders.base import (
    Message,
    Outcome,
    Sender,
    SenderConfigurationError,
    SendResult,
    api_host,
)
from senders.calls import Refused, Threads, after_refusal, each, in_order
from senders.mailgun_answers import Answer, MessagesMime
from senders.mime import to_bytes
from senders.retry import backoff

log = logging.getLogger("dripmail.mailgun")

HOSTS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
STOPPED = "the run stopped on a Mailgun configuration error"
DELIVERY_VARIABLE = "v:delivery_id"


class MailgunSender(Sender):
    """Sends Messages through Mailgun's messages.mime endpoint, one request per email."""

    name = "mailgun"
    batch_limit = 1

    def __init__(
        self,
        api_key: str,
        *,
        domain: str | None = None,
        host: str = HOSTS["us"],
        api_key_env: str = MAILGUN_KEY_ENV,
        test_mode: bool = False,
        track_opens: bool = False,
        track_clicks: bool = False,
        timeout: float = 10.0,
        concurrency: int = 8,
        max_attempts: int = 3,
        max_wait: float = 60.0,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise SenderConfigurationError(f"the Mailgun API key is empty: set {api_key_env}")
        if timeout <= 0 or concurrency < 1 or max_attempts < 1 or max_wait < 0 or backoff < 0:
            raise SenderConfigurationError(
                "mailgun: timeout must be > 0, concurrency and max_attempts >= 1, "
                "max_wait and backoff >= 0"
            )
        if domain is not None and not DOMAIN.fullmatch(domain):
            raise SenderConfigurationError(f"mailgun: {domain!r} is not a domain name")
        self.domain = domain
        self.host = _valid_host(host)
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.concurrency = int(concurrency)
        self.max_attempts = int(max_attempts)
        self.max_wait = float(max_wait)
        self.backoff = float(backoff)
        # Options every request carries. Tracking is set either way, per message, so the
        # domain's own tracking settings (which rewrite links) apply only when asked for.
        self.options = {
            "o:tracking-opens": "yes" if track_opens else "no",
            "o:tracking-clicks": "yes" if track_clicks else "no",
        }
        if test_mode:
            self.options["o:testmode"] = "yes"
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        client = httpx.Client(
            auth=("api", api_key),
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            ),
            # Mailgun answers on its own host; a redirect would only be a wrong host.
            follow_redirects=False,
            # Proxies come from the environment only through campaigns/settings.py.
            trust_env=False,
            headers={"User-Agent": "dripmail"},
        )
        self._api = MessagesMime(client, self.host, api_key_env, api_key)
        self._threads = Threads(self.concurrency, "dripmail-mailgun")
        self._refused: str | None = None  # set once Mailgun refuses the key (or the host)

    @classmethod
    def from_settings(
        cls, config: MailgunSenderSettings, settings: Settings, **overrides: Any
    ) -> MailgunSender:
        """Build from the campaign's `sender:` settings and the installation's.

        The key comes from the variable named by `api_key_env`; the host from
        MAILGUN_API_HOST, else the region's. `overrides` (e.g. sleep, clock, backoff)
        go to the constructor.
        """
        key = settings.secret(config.api_key_env)
        api_key = key.get_secret_value().strip() if key else ""
        if not api_key:
            raise SenderConfigurationError(
                "the mailgun sender needs an API key: set the environment variable "
                f"{config.api_key_env}"
            )
        options: dict[str, Any] = {
            "domain": config.domain,
            "host": settings.mailgun_api_host or HOSTS[config.region],
            "api_key_env": config.api_key_env,
            "test_mode": config.test_mode,
            "track_opens": config.track_opens,
            "track_clicks": config.track_clicks,
            "timeout": config.timeout,
            "concurrency": config.concurrency,
            "max_attempts": config.max_attempts,
            "max_wait": config.max_wait,
            **overrides,
        }
        return cls(api_key, **options)

    def __repr__(self) -> str:
        return f"MailgunSender(host={self.host!r}, key from {self.api_key_env})"

    # -- the request -------------------------------------------------------------

    def build(self, message: Message) -> Message:
        """The message with its MIME bytes, built now: one that cannot be fails alone.

        Without SMTPUTF8 headers: Mailgun's API checks addresses against RFC 5321/5322
        and writes its own headers in ASCII, so a non-ASCII local part cannot go.
        """
        self.sending_domain(message)  # a From domain Mailgun cannot take stops the run now
        return replace(message, prepared=to_bytes(message))

    def form(self, message: Message) -> dict[str, str]:
        """The form fields beside the `message` file: the recipient and the options."""
        # The bare address: the display name is in the MIME's To header, and a name
        # with a comma would make this field two recipients.
        to, _ = wire_address(message.to_address)
        return {"to": to, **self.options, DELIVERY_VARIABLE: message.delivery_id}

    def sending_domain(self, message: Message) -> str:
        """`sender.domain`, else the From address's domain (as its A-label)."""
        if self.domain:
            return self.domain
        domain = wire_address(message.from_address)[0].rpartition("@")[2].lower()
        if not DOMAIN.fullmatch(domain):
            raise SenderConfigurationError(
                f"mailgun: the From address has no domain Mailgun could send for ({domain!r}); "
                "set sender.domain"
            )
        return domain

    # -- sending ---------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        """One result per message, in order. Raises SenderConfigurationError if
        Mailgun refuses the key before any message of this call went out."""
        if self._refused:
            raise SenderConfigurationError(self._refused)
        if not messages:
            return []
        stop = threading.Event()
        pool = self._threads.pool()
        futures = [pool.submit(self._deliver, message, stop) for message in messages]
        results, refused = in_order(messages, each(futures), STOPPED)
        if refused is None:
            return results
        self._refused = refused
        return after_refusal(results, refused, "Mailgun", log)

    def _deliver(self, message: Message, stop: threading.Event) -> SendResult:
        """One email, with in-run retries (raises Refused to stop them all)."""
        label = f"delivery {message.delivery_id}"
        try:
            # Built ahead by the dispatcher (`build`); `send-test` hands a bare Message.
            mime = message.prepared if message.prepared is not None else to_bytes(message)
            domain = self.sending_domain(message)
            form = self.form(message)
        except SenderConfigurationError as exc:
            stop.set()
            raise Refused(str(exc), 0) from None
        except Exception as exc:  # this message's own data: it fails alone
            log.warning("%s: could not be built (%s)", label, type(exc).__name__)
            return SendResult(message.delivery_id, Outcome.PERMANENT, error=_why(exc), attempts=0)
        attempts = 0
        waited = 0.0
        while True:
            if stop.is_set():
                # Another thread met a configuration error: make no further request.
                raise Refused(STOPPED, attempts)
            attempts += 1
            answer = self._api.post(domain, form, mime)
            log.debug("%s: attempt %d: %s", label, attempts, answer.kind)
            if answer.kind == "config":
                stop.set()
                raise Refused(answer.error or "Mailgun refused the API key", attempts)
            if answer.kind == "sent":
                return SendResult(
                    message.delivery_id,
                    Outcome.SENT,
                    provider_id=answer.provider_id,
                    attempts=attempts,
                )
            if answer.kind == "permanent":
                log.warning("%s: Mailgun rejected the email", label)
                return SendResult(
                    message.delivery_id, Outcome.PERMANENT, error=answer.error, attempts=attempts
                )
            if answer.kind == "ambiguous":
                log.warning("%s: the answer was lost after sending; not retried", label)
                return SendResult(
                    message.delivery_id, Outcome.AMBIGUOUS, error=answer.error, attempts=attempts
                )
            wait = self._wait(answer, attempts)
            if attempts >= self.max_attempts or waited + wait > self.max_wait:
                log.info("%s: giving up for this run after %d attempts", label, attempts)
                return SendResult(
                    message.delivery_id,
                    Outcome.TRANSIENT,
                    error=f"{answer.error} (after {attempts} attempt{'s' * (attempts > 1)})",
                    retry_at=self._retry_at(answer),
                    attempts=attempts,
                )
            self._sleep(wait)
            waited += wait

    def _wait(self, answer: Answer, attempts: int) -> float:
        """Seconds before the next try: a 429's Retry-After (plus jitter), else backoff."""
        if answer.retry_after is not None:
            # A little jitter, so the waiting threads do not all retry in the same instant.
            return answer.retry_after + self._random.uniform(0, self.backoff)
        return backoff(attempts, self.backoff, self._random.uniform)

    def _retry_at(self, answer: Answer) -> datetime | None:
        """When Mailgun said to come back (real clock), for the dispatcher's reschedule."""
        if answer.retry_after is None:
            return None
        return datetime.fromtimestamp(self._clock() + answer.retry_after, UTC)

    def close(self) -> None:
        """Wait for requests in flight, then stop the threads and the connections."""
        self._threads.close()
        self._api.client.close()


# -- helpers -----------------------------------------------------------------------


def _why(exc: Exception) -> str:
    if isinstance(exc, NeedsSmtpUtf8):
        return f"not sent: {NO_SMTPUTF8}, which Mailgun's API does not take"
    # The type only: an exception's text may quote an address.
    return f"could not build it ({type(exc).__name__})"


def _valid_host(host: str) -> str:
    # Mailgun's host comes from the region; only MAILGUN_API_HOST overrides it.
    return api_host(
        host,
        provider="mailgun",
        example="https://api.eu.mailgun.net",
        variable=MAILGUN_HOST_ENV,
        key=None,
    )
