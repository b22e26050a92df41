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

The API key never reaches a log line, an error message or a repr.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import re
import threading
import time
import urllib.error
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import python_http_client.exceptions as http_errors
import sendgrid

from campaigns.authoring.sender_settings import SendGridSenderSettings
from campaigns.settings import SENDGRID_HOST_ENV, SENDGRID_KEY_ENV, Settings

from .base import BatchForm, Message, Outcome, SenderConfigurationError, SendResult

log = logging.getLogger("dripmail.sendgrid")

DEFAULT_HOST = "https://api.sendgrid.com"
BACKOFF_CAP = 30.0  # seconds: the longest single backoff wait
STOPPED = "the run stopped on a SendGrid configuration error"

# SendGrid answers 400 when a request tries to set these ("You may not override the
# following headers", Mail Send schema) ...
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)
# ... and writes these itself. Message-ID is not on SendGrid's reserved list, but
# SendGrid uses it for its own smtp-id, which does not reliably follow a custom one
# (django-anymail #108, whose fix stopped sending it). We track a message by the
# delivery id in custom_args and by X-Message-Id, so ours would only mislead.
DROPPED_HEADERS = RESERVED_HEADERS | {"message-id", "date", "mime-version"}

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII, no colon
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A display name holding any of these must be quoted to stay one mailbox.
_SPECIALS = re.compile(r'[,;"<>()\[\]:@\\]')

# "The personalization block is limited to 1000 personalizations per API request", and
# "the total collective size of your substitutions may not exceed 10,000 bytes per
# personalization object" (Mail Send errors and schema). Bytes are counted as JSON.
MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTION_BYTES = 10_000

# status -> what it means for the message (see the module docstring)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_KEY_REFUSED = frozenset({401, 403})
_NOT_SENDGRID = frozenset({404, 405})


class _DropClientDebug(logging.Filter):
    """python_http_client logs every request at DEBUG: its headers (the Authorization
    bearer key) and its JSON payload (addresses, names). Neither may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_client_log = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _DropClientDebug) for f in _client_log.filters):
    # A logger filter, not a level: it still holds when a test or an app sets DEBUG.
    _client_log.addFilter(_DropClientDebug())


@dataclass(frozen=True)
class _Answer:
    """How one request ended, before the retry policy decides what to do next."""

    kind: str  # "sent", "retry", "permanent", "ambiguous", "config"
    error: str | None = None
    provider_id: str | None = None
    reset_at: float | None = None  # a 429's X-RateLimit-Reset (epoch seconds)


class _KeyRefused(Exception):
    """Raised inside a worker thread: SendGrid refused the key or is not SendGrid."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts  # requests this message made before the stop


class SendGridSender:
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
        self._key = api_key  # kept only to scrub it from any text we pass on
        self._random = random.Random()
        self._api = sendgrid.SendGridAPIClient(api_key=api_key, host=self.host)
        # The client takes no timeout in its constructor; python_http_client reads
        # `timeout` from this Client and copies it to each per-path Client it builds.
        self._api.client.timeout = self.timeout
        # python_http_client does request_headers.setdefault("Content-Type", ...) on
        # the dict shared by every request; set it now so no thread grows that dict
        # while another copies it ("dictionary changed size during iteration").
        self._api.client.request_headers["Content-Type"] = "application/json"
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
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
        body = self._common(message, message.text, message.html)
        body["personalizations"] = [self._personalization(message)]
        body["subject"] = _one_line(message.subject)
        headers = self._headers(message)
        if headers:
            body["headers"] = headers
        return body

    def batch_payload(self, messages: Sequence[Message]) -> dict[str, Any]:
        """The JSON body for messages of one step (see _requests): the tagged content once,
        and per message a personalization with its subject, headers and tag values."""
        forms = [message.batch for message in messages if message.batch is not None]
        if not messages or len(forms) < len(messages):
            raise ValueError("every message of a batch needs its batch form")
        content = forms[0].content
        if any(form.content != content for form in forms):
            raise ValueError("a batch is messages of one tagged content")
        body = self._common(messages[0], content.text, content.html)
        personalizations = []
        for message, form in zip(messages, forms, strict=True):
            personalization = self._personalization(message)
            # No top-level subject: "you can get around this requirement if every
            # personalization has a subject defined" (Mail Send errors).
            personalization["subject"] = _one_line(message.subject)
            headers = self._headers(message)
            if headers:
                personalization["headers"] = headers
            personalization["substitutions"] = dict(form.substitutions)
            personalizations.append(personalization)
        body["personalizations"] = personalizations
        return body

    def _personalization(self, message: Message) -> dict[str, Any]:
        to = {"email": message.to_address}
        if message.to_name and (name := _recipient_name(message.to_name)):
            to["name"] = name
        return {
            "to": [to],
            # Per personalization: the schema types a top-level custom_args as a
            # string, and this is what SendGrid attaches to every event of the email.
            # Only the opaque delivery id: nothing about the person or their health.
            "custom_args": {"delivery_id": str(message.delivery_id)},
        }

    def _common(self, message: Message, text: str, html: str) -> dict[str, Any]:
        """What is the same for every recipient: sender, content, settings."""
        sender = {"email": message.from_address}
        if from_name := _one_line(message.from_name):
            sender["name"] = from_name
        body: dict[str, Any] = {
            "from": sender,
            # RFC 2046 and SendGrid both want text/plain first, then text/html.
            "content": [
                {"type": kind, "value": value}
                for kind, value in (("text/plain", text), ("text/html", html))
                if value
            ],
        }
        if message.reply_to:
            name, address = email.utils.parseaddr(_one_line(message.reply_to))
            reply_to = {"email": address or _one_line(message.reply_to)}
            if name:
                reply_to["name"] = name
            body["reply_to"] = reply_to
        if self.categories and message.categories:
            # Opaque campaign/step ids; SendGrid allows 10 unique names of <= 255 chars.
            unique = dict.fromkeys(c[:255] for c in message.categories if c)
            body["categories"] = list(unique)[:10]
        if self.asm_group_id is not None:
            body["asm"] = {"group_id": int(self.asm_group_id)}
        # Said explicitly: otherwise the account's defaults apply, and they usually
        # rewrite links and add a pixel. Subscription tracking would add SendGrid's
        # own unsubscribe link next to ours.
        body["tracking_settings"] = {
            "click_tracking": {"enable": self.track_clicks, "enable_text": False},
            "open_tracking": {"enable": self.track_opens},
            "subscription_tracking": {"enable": False},
        }
        if self.sandbox_mode:
            # Validated and answered 200, never delivered.
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return body

    def _headers(self, message: Message) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in message.headers.items():
            name = str(name).strip()
            if name.lower() in DROPPED_HEADERS:
                continue
            if not _HEADER_NAME.match(name):
                log.warning(
                    "delivery %s: header name %r is not valid; left out",
                    message.delivery_id,
                    name[:40],
                )
                continue
            # SendGrid wants string values, and a CR/LF would start a header of its own.
            text = _one_line(str(value))
            if text:
                headers[name] = text
        return headers

    # -- sending ---------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        """One result per message, in order. Raises SenderConfigurationError if
        SendGrid refuses the key before any message of this call went out."""
        if self._refused:
            raise SenderConfigurationError(self._refused)
        if not messages:
            return []
        stop = threading.Event()
        pool = self._executor()
        requests = self._requests(messages)
        futures = [pool.submit(self._deliver, [messages[i] for i in r], stop) for r in requests]
        outcomes: dict[int, SendResult | _KeyRefused] = {}
        refused: str | None = None
        for request, future in zip(requests, futures, strict=True):
            try:
                outcomes.update(zip(request, future.result(), strict=True))
            except _KeyRefused as exc:
                # A request's answer is every message's in it.
                outcomes.update((index, exc) for index in request)
                if refused is None or refused == STOPPED:
                    refused = exc.reason
        # Every message that met the refusal, or was stopped by it, waits for a later run.
        results = [
            r
            if isinstance(r, SendResult)
            else SendResult(
                m.delivery_id, Outcome.TRANSIENT, error=f"not sent: {refused}", attempts=r.attempts
            )
            for m, r in zip(messages, [outcomes[i] for i in range(len(messages))], strict=True)
        ]
        if refused is None:
            return results
        self._refused = refused
        gone = sum(r.outcome in (Outcome.SENT, Outcome.AMBIGUOUS) for r in results)
        if not gone:
            log.error("SendGrid configuration error; stopping before anything is marked")
            raise SenderConfigurationError(refused)
        # Some emails of this call already went out: raising now would put them back
        # in the queue and send them twice. Report every result instead (the rest are
        # transient, for a later run); the next call raises at once.
        log.error("SendGrid configuration error after %d emails went out", gone)
        return results

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix="dripmail-sendgrid"
                )
            return self._pool

    def _requests(self, messages: Sequence[Message]) -> list[list[int]]:
        """The requests to make, as indexes into `messages`, in the order of their first.

        Messages of one tagged content (and the same sender, reply-to and categories,
        which the body shares) go together, up to MAX_PERSONALIZATIONS a request; every
        other message goes alone, as does one left alone in its group.
        """
        requests: list[list[int]] = []
        # group -> its requests still open, each with the addresses already in it
        groups: dict[tuple, list[tuple[list[int], set[str]]]] = defaultdict(list)
        for index, message in enumerate(messages):
            form = message.batch
            if self.batch_limit < 2 or form is None or _unbatchable(message, form):
                requests.append([index])
                continue
            group = groups[
                form.content.key,
                message.from_name,
                message.from_address,
                message.reply_to,
                message.categories,
            ]
            address = message.to_address.lower()
            # SendGrid answers 400 when an address is in two personalizations of one
            # request ("Each unique email address ... should only be included once").
            for request, addresses in group:
                if len(request) < self.batch_limit and address not in addresses:
                    break
            else:
                request, addresses = [], set()
                group.append((request, addresses))
                requests.append(request)
            request.append(index)
            addresses.add(address)
        return requests

    def _deliver(self, messages: Sequence[Message], stop: threading.Event) -> list[SendResult]:
        """Make one request, for one message or a batch, with in-run retries; its outcome
        is every message's (raises _KeyRefused to stop them all)."""
        if len(messages) == 1:
            label = f"delivery {messages[0].delivery_id}"
            problem = _unsendable(messages[0])
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
                raise _KeyRefused(STOPPED, attempts)
            attempts += 1
            answer = self._post(body)
            log.debug("%s: attempt %d: %s", label, attempts, answer.kind)
            if answer.kind == "config":
                stop.set()
                raise _KeyRefused(answer.error or "SendGrid refused the API key", attempts)
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
            wait = self._wait_for(answer, attempts)
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

    def _wait_for(self, answer: _Answer, attempts: int) -> float:
        """Seconds before the next attempt: until a 429's reset, else backoff."""
        if answer.reset_at is not None:
            # Until the reset, plus a little jitter so the waiting threads do not all
            # retry in the same instant.
            return max(answer.reset_at - self._clock(), 0.0) + self._random.uniform(0, self.backoff)
        ceiling = min(self.backoff * 2 ** (attempts - 1), BACKOFF_CAP)
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)  # "equal jitter"

    def _post(self, body: dict[str, Any]) -> _Answer:
        """One request; every way it can end becomes an _Answer (never raises)."""
        try:
            response = self._api.client.mail.send.post(request_body=body)
        except http_errors.HTTPError as exc:
            return self._http_error(exc)
        except urllib.error.URLError as exc:
            # urllib wraps exactly the errors raised while connecting or writing the
            # request (refused, DNS, connect timeout, reset mid-write): SendGrid has
            # not got a whole request, so it cannot have accepted it. Safe to retry.
            return _Answer(
                "retry",
                error=f"could not reach SendGrid at {self.host}: "
                f"{self._scrub(_reason(exc.reason))}",
            )
        except (OSError, http.client.HTTPException) as exc:
            # Raised while waiting for or reading the answer: the request was written
            # and may have been accepted. SendGrid has no idempotency key, so do not
            # retry; provider events settle it.
            return _Answer(
                "ambiguous",
                error=f"the request was sent but its answer was lost ({_reason(exc)}); not re-sent",
            )
        except Exception as exc:  # a per-message failure must never raise
            # Its text could quote the payload: log the type only.
            log.error("unexpected %s from the SendGrid client", type(exc).__name__)
            return _Answer(
                "ambiguous", error=f"unexpected error ({type(exc).__name__}); not re-sent"
            )
        status = response.status_code
        if 200 <= status < 300:
            # 202 Accepted; 200 when sandbox mode validated it without sending.
            provider_id = response.headers.get("X-Message-Id")
            return _Answer("sent", provider_id=provider_id or None)
        return _Answer("ambiguous", error=f"SendGrid answered {status}; not re-sent")

    def _http_error(self, exc: http_errors.HTTPError) -> _Answer:
        status = int(exc.status_code)
        messages = self._scrub(_error_messages(exc.body))
        said = f": {messages}" if messages else ""
        if status == 429:
            reset_at = _reset_time(exc.headers)
            return _Answer("retry", error="SendGrid rate limit (429)", reset_at=reset_at)
        if status in _RETRY_STATUSES or status >= 500:
            return _Answer("retry", error=f"SendGrid answered {status}{said}")
        if status in _KEY_REFUSED:
            return _Answer(
                "config",
                error=f"SendGrid refused the API key ({status}){said}; check that "
                f"{self.api_key_env} holds a current key with Mail Send permission"
                + (" and that the from address is a verified sender" if status == 403 else ""),
            )
        if status in _NOT_SENDGRID or status < 400:
            return _Answer(
                "config",
                error=f"SendGrid answered {status} at {self.host}/v3/mail/send: "
                "is api_host (or SENDGRID_API_HOST) SendGrid's API address?",
            )
        # 400, 413 and any other 4xx: this email will never be accepted as it is.
        return _Answer("permanent", error=f"SendGrid rejected the email ({status}){said}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "[api key]") if self._key else text

    def close(self) -> None:
        """Wait for requests in flight, then stop the threads."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# -- helpers -----------------------------------------------------------------------


def _valid_host(host: str) -> str:
    """An http(s) URL with a host name, without a trailing slash."""
    text = str(host or "").strip()
    problem = re.search(r"\s", text) is not None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        problem = True
    else:
        problem = (
            problem
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or bool(parts.query or parts.fragment or parts.username)
        )
    if problem:
        raise SenderConfigurationError(
            f"sendgrid: {text!r} is not an API address (like https://api.sendgrid.com); "
            f"check api_host or {SENDGRID_HOST_ENV}"
        )
    return text.rstrip("/")


def _one_line(value: str | None) -> str:
    """Control characters (CR/LF above all) become spaces; runs of space collapse."""
    return " ".join(_CONTROL.sub(" ", str(value or "")).split())


def _recipient_name(name: str) -> str:
    """A display name SendGrid cannot split into two mailboxes.

    SendGrid does not quote display names in personalizations: "Smith, Pat" becomes
    two addresses and a ';' ends the list (sendgrid-python #291; django-anymail
    quotes them for the same reason). We quote such names ourselves, RFC 5322 style.
    From and reply_to names are quoted correctly by SendGrid and go as they are.
    """
    text = _one_line(name)
    if not _SPECIALS.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unbatchable(message: Message, form: BatchForm) -> bool:
    """Whether the message must go rendered in full, alone: it would be rejected, or
    its values are over SendGrid's limit, or could be read as a tag."""
    if _unsendable(message):
        return True  # alone, it gets its own PERMANENT result without a request
    size = len(json.dumps(dict(form.substitutions), ensure_ascii=False).encode())
    # SendGrid substitutes in the subject and reply-to too (Mail Send schema).
    return size > MAX_SUBSTITUTION_BYTES or form.clashes(message.subject, message.reply_to)


def _unsendable(message: Message) -> str | None:
    if not message.to_address:
        return "the message has no recipient address"
    if not _one_line(message.subject):
        return "the subject is empty"
    if not (message.text or message.html):
        return "the message has no content"
    return None


def _error_messages(body: bytes | str | None) -> str:
    """SendGrid's `errors[].message` texts from a JSON error body, joined."""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        return _one_line(text)[:300]
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    texts = []
    for item in errors:
        if isinstance(item, dict) and item.get("message"):
            field = item.get("field")
            text = _one_line(str(item["message"]))
            texts.append(f"{text} ({field})" if field and field != "null" else text)
    return "; ".join(texts)[:1000]


def _reset_time(headers: Any) -> float | None:
    """X-RateLimit-Reset: the real-clock time (epoch seconds) the limit lifts."""
    try:
        value = headers.get("X-RateLimit-Reset") if headers is not None else None
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        return str(reason) or type(reason).__name__
    return str(reason)
