"""Amazon SES through boto3: API v2 SendEmail with raw content, one message per call.

The MIME message is dripmail's own (senders.mime: List-Unsubscribe, Message-ID, the
text part first), sent as `Content.Raw`; the envelope (FromEmailAddress, one
Destination address) is given explicitly, so no header can add a recipient. Each
message's delivery id rides as the SES message tag `delivery_id` (returned in the
events of a configuration set's event destination) and in the header
X-Dripmail-Delivery (returned when identity notifications include the original
headers); the campaign's and step's opaque ids go as the tags `campaign` and `step`.
Nothing else about the recipient goes to SES beyond the message itself.

SES has no batch call for raw mail, so messages go one per call, a few at a time in a
bounded pool of threads (`concurrency`; boto3 clients are thread-safe). Credentials
and the default region come from the standard AWS chain (environment, ~/.aws files,
SSO, container and instance roles), resolved when the sender is made: none found
stops the run before anything is claimed.

How each call ends (senders.ses_answers): a MessageId -> sent; throttling (SES refuses
rather than queues) and 5xx -> retried with capped exponential back-off within
`max_attempts` calls and `max_wait` seconds, then rescheduled; a refused connection ->
retried likewise; an answer lost after the request went (read timeout, connection
dropped) -> AMBIGUOUS, never re-sent (SendEmail has no idempotency key); a message
SES refuses for itself (MessageRejected, a bad address) -> PERMANENT; refused
credentials, an unverified sender identity, a paused or suspended account or an
unknown configuration set -> SenderConfigurationError, before anything is marked when
nothing went yet. botocore's own retries are off: they would re-send after a lost answer.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError

from campaigns.authoring.sender_settings import SesSenderSettings
from campaigns.settings import SES_ENDPOINT_ENV, Settings
from senders.addresses import wire_address
from senders.base import (
    Message,
    Outcome,
    Sender,
    SenderConfigurationError,
    SendResult,
    is_loopback,
)
from senders.calls import Refused, Threads, after_refusal, each, in_order
from senders.mime import to_bytes
from senders.retry import backoff
from senders.ses_answers import call

log = logging.getLogger("dripmail.ses")

DELIVERY_HEADER = "X-Dripmail-Delivery"
DELIVERY_TAG = "delivery_id"
MAX_RAW_BYTES = 40 * 1024 * 1024  # SES v2: "The maximum message size ... is 40 MB"
STOPPED = "the run stopped on an SES configuration error"
CHAIN = (
    "AWS credentials come from the standard AWS chain: AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the instance or container role"
)
_TAG_VALUE = re.compile(r"[^A-Za-z0-9_-]")  # SES MessageTag: letters, digits, _ and - only


class _DropBotocoreDebug(logging.Filter):
    """botocore logs every request at DEBUG: its parameters (the raw message, with the
    patient's address and name), the string it signs and the response body. None of
    it may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_FILTER = _DropBotocoreDebug()


def quiet_botocore() -> None:
    """Put the filter on every botocore and boto3 logger that exists now.

    A logger's filters see only records logged on that logger, not its children's,
    so each module's logger gets one; botocore imports some modules lazily, so this
    runs again whenever a client is made or a batch sent.
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            isinstance(logger, logging.Logger)
            and name.split(".", 1)[0] in ("botocore", "boto3")
            and _FILTER not in logger.filters
        ):
            logger.addFilter(_FILTER)


quiet_botocore()


class SesSender(Sender):
    """Sends Messages through Amazon SES API v2 SendEmail (raw MIME) with boto3."""

    name = "ses"
    batch_limit = 1  # SES has no batch call for raw mail

    def __init__(
        self,
        *,
        region: str | None = None,
        configuration_set: str | None = None,
        endpoint_url: str | None = None,
        session: boto3.session.Session | None = None,
        timeout: float = 10.0,
        concurrency: int = 4,
        max_attempts: int = 3,
        max_wait: float = 60.0,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if timeout <= 0 or concurrency < 1 or max_attempts < 1 or max_wait < 0 or backoff < 0:
            raise SenderConfigurationError(
                "ses: timeout must be > 0, concurrency and max_attempts >= 1, "
                "max_wait and backoff >= 0"
            )
        self.endpoint_url = _valid_endpoint(endpoint_url) if endpoint_url else None
        try:
            session = session or boto3.session.Session(region_name=region)
            self.region = region or session.region_name
            credentials = session.get_credentials()
        except BotoCoreError as exc:  # a broken ~/.aws/config, an unknown profile
            raise SenderConfigurationError(
                f"the ses sender cannot read the AWS settings ({type(exc).__name__}): {CHAIN}"
            ) from None
        if not self.region:
            raise SenderConfigurationError(
                "the ses sender needs a region: set sender.region in campaign.yaml "
                "(like eu-west-1), or AWS_DEFAULT_REGION"
            )
        if credentials is None:
            raise SenderConfigurationError(f"the ses sender found no AWS credentials: {CHAIN}")
        self.configuration_set = configuration_set
        self.timeout = float(timeout)
        self.concurrency = int(concurrency)
        self.max_attempts = int(max_attempts)
        self.max_wait = float(max_wait)
        self.backoff = float(backoff)
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        config = botocore.config.Config(
            region_name=self.region,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            # One call per attempt: botocore would retry a lost answer, sending twice.
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=self.concurrency,
            user_agent_extra="dripmail",
        )
        self._client = session.client("sesv2", endpoint_url=self.endpoint_url, config=config)
        quiet_botocore()
        self._hint = CHAIN + (f"; the endpoint is {SES_ENDPOINT_ENV}" if endpoint_url else "")
        self._threads = Threads(self.concurrency, "dripmail-ses")
        self._refused: str | None = None

    @classmethod
    def from_settings(
        cls, config: SesSenderSettings, settings: Settings, **overrides: Any
    ) -> SesSender:
        """Build from the campaign's `sender:` settings and the installation's.

        The endpoint is DRIPMAIL_SES_ENDPOINT_URL when set (a VPC endpoint, tests),
        else SES's own for the region. `overrides` (sleep, clock, backoff, session) go to
        the constructor.
        """
        options: dict[str, Any] = {
            "region": config.region,
            "configuration_set": config.configuration_set,
            "endpoint_url": settings.ses_endpoint_url,
            "timeout": config.timeout,
            "concurrency": config.concurrency,
            "max_attempts": config.max_attempts,
            "max_wait": config.max_wait,
        }
        options.update(overrides)
        return cls(**options)

    def email_identity(self, identity: str) -> dict[str, Any]:
        """SES's GetEmailIdentity answer for a domain or address: a read-only call, what
        `dripmail doctor` asks (botocore's ClientError when SES refuses it)."""
        return self._client.get_email_identity(EmailIdentity=identity)

    def __repr__(self) -> str:
        return f"SesSender(region={self.region!r}, configuration_set={self.configuration_set!r})"

    # -- building ----------------------------------------------------------------

    def build(self, message: Message) -> Message:
        """The message with its delivery header and its raw MIME; raises if it cannot go.

        SES takes no SMTPUTF8, so an address with a non-ASCII local part fails here
        (NeedsSmtpUtf8), alone.
        """
        headers = {**message.headers, DELIVERY_HEADER: tag_value(message.delivery_id)}
        built = replace(message, headers=headers)
        raw = to_bytes(built)
        if len(raw) > MAX_RAW_BYTES:
            raise ValueError(f"the email is {len(raw):,} bytes; SES takes at most 40 MB")
        # The raw bytes are all `send` needs: a hand-off holds up to 500 of these, so the
        # html and text they were made from are not kept twice.
        return replace(built, prepared=raw, html="", text="")

    def request(self, message: Message) -> dict[str, Any]:
        """The SendEmail parameters for a built message."""
        raw = message.prepared if message.prepared is not None else self.build(message).prepared
        tags = [{"Name": DELIVERY_TAG, "Value": tag_value(message.delivery_id)}]
        for name, prefix in (("campaign", "c-"), ("step", "s-")):
            found = next((c for c in message.categories if c.startswith(prefix)), None)
            if found:
                tags.append({"Name": name, "Value": tag_value(found)})
        params: dict[str, Any] = {
            "FromEmailAddress": wire_address(message.from_address)[0],
            "Destination": {"ToAddresses": [wire_address(message.to_address)[0]]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": tags,
        }
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        return params

    # -- sending -----------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        """One result per message, in order. Raises SenderConfigurationError if SES
        refuses the credentials or the setup before any message of this call went out."""
        if self._refused:
            raise SenderConfigurationError(self._refused)
        if not messages:
            return []
        quiet_botocore()
        stop = threading.Event()
        pool = self._threads.pool()
        futures = [pool.submit(self._deliver, message, stop) for message in messages]
        final, refused = in_order(messages, each(futures), STOPPED)
        if refused is None:
            return final
        self._refused = refused
        return after_refusal(final, refused, "SES", log)

    def _deliver(self, message: Message, stop: threading.Event) -> SendResult:
        """One message, with in-run retries (raises Refused to stop them all)."""
        label = f"delivery {message.delivery_id}"
        try:
            params = self.request(message)
        except Exception as exc:  # this message's own data: it fails alone
            log.warning("%s: not sent: could not build it (%s)", label, type(exc).__name__)
            return _result(
                message, Outcome.PERMANENT, error=f"could not build it: {exc}", attempts=0
            )
        attempts = 0
        waited = 0.0
        while True:
            if stop.is_set():
                raise Refused(STOPPED, attempts)
            attempts += 1
            answer = call(
                lambda: self._client.send_email(**params),
                from_address=message.from_address,
                hint=self._hint,
            )
            log.debug("%s: attempt %d: %s", label, attempts, answer.kind)
            if answer.kind == "config":
                stop.set()
                raise Refused(answer.error or "SES refused the request", attempts)
            if answer.kind == "sent":
                return _result(
                    message, Outcome.SENT, provider_id=answer.provider_id, attempts=attempts
                )
            if answer.kind == "permanent":
                log.warning("%s: SES rejected the email", label)
                return _result(message, Outcome.PERMANENT, error=answer.error, attempts=attempts)
            if answer.kind == "ambiguous":
                log.warning("%s: the answer was lost after sending; not retried", label)
                return _result(message, Outcome.AMBIGUOUS, error=answer.error, attempts=attempts)
            wait = backoff(attempts, self.backoff, self._random.uniform)
            if answer.final or attempts >= self.max_attempts or waited + wait > self.max_wait:
                log.info("%s: giving up for this run after %d attempts", label, attempts)
                return _result(
                    message,
                    Outcome.TRANSIENT,
                    error=f"{answer.error} (after {attempts} attempt{'s' * (attempts > 1)})",
                    attempts=attempts,
                )
            self._sleep(wait)
            waited += wait

    def close(self) -> None:
        """Wait for calls in flight, then stop the threads and the client's connections."""
        self._threads.close()
        self._client.close()


def _result(message: Message, outcome: Outcome, **details: Any) -> SendResult:
    return SendResult(message.delivery_id, outcome, **details)


def tag_value(value: str) -> str:
    """`value` as an SES tag value can hold it: ASCII letters, digits, `_` and `-`."""
    return _TAG_VALUE.sub("-", str(value))[:256] or "-"


def _valid_endpoint(url: str) -> str:
    """An https URL with a host (http only to this machine), without a trailing slash."""
    text = str(url).strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    ok = (
        parts is not None
        and not re.search(r"\s", text)
        and parts.hostname
        and not (parts.query or parts.fragment or parts.username)
        and (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)))
    )
    if not ok:
        raise SenderConfigurationError(
            f"ses: {text!r} is not an SES endpoint: {SES_ENDPOINT_ENV} must be an https "
            "address (http only on this machine, for tests)"
        )
    return text.rstrip("/")
