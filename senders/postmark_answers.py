"""How a Postmark `/email/batch` request ended, read as what to do next (see senders.postmark).

Postmark answers a batch with HTTP 200 "even when validation for individual messages
may fail": the body is an array, in the order of the request's entries, each with its
own `ErrorCode` (0: accepted, with its `MessageID`). So one refused address fails that
entry alone. A status other than 200 is the whole request's answer. Codes from
https://postmarkapp.com/developer/api/overview (HTTP response codes, API error codes).
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message as HttpHeaders

from senders.json_fields import one_line

log = logging.getLogger("dripmail.postmark")

BATCH_PATH = "/email/batch"
TOKEN_HEADER = "X-Postmark-Server-Token"
BAD_TOKEN = 10  # "Bad or missing API token" (HTTP 401, or 422 with this code)
# Codes about the account or the sender, not the message: every message would meet them.
# 400 Sender Signature not found, 401 Sender signature not confirmed, 405 Not allowed to
# send (out of credits), 412 Account is pending, 413 Account may not send.
CONFIG_CODES = frozenset({BAD_TOKEN, 400, 401, 405, 412, 413})
# 100 Maintenance; 429 Rate limit exceeded: the same message may go later.
RETRY_CODES = frozenset({100, 429})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_NOT_POSTMARK = frozenset({404, 405})
_ADDRESS = re.compile(r"[^\s'\"<>(),;:]+@[^\s'\"<>(),;:]*[^\s'\"<>(),;:.]")


@dataclass(frozen=True)
class Entry:
    """Postmark's answer for one entry of an answered batch."""

    kind: str  # "sent", "permanent", "retry", "config"
    provider_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Answer:
    """How one request ended: "answered" (per entry), or one kind for all of it."""

    kind: str  # "answered", "retry", "permanent", "ambiguous", "config"
    error: str | None = None
    entries: list[Entry] = field(default_factory=list)
    retry_after: float | None = None  # seconds, when a 429 said (Retry-After)


@dataclass(frozen=True)
class BatchEndpoint:
    """POST /email/batch at one host, with the server token."""

    host: str
    token_env: str
    token: str = field(repr=False)
    timeout: float = 10.0

    def post(self, body: bytes, count: int) -> Answer:
        """One request of `count` entries; every way it can end becomes an Answer."""
        request = urllib.request.Request(
            self.host + BATCH_PATH,
            data=body,
            method="POST",
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json",
                TOKEN_HEADER: self.token,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:  # a status other than 2xx: read it below
            status, data, headers = exc.code, _read(exc), exc.headers
            return self._status(status, data, headers)
        except urllib.error.URLError as exc:
            # urllib wraps exactly the errors raised while connecting or writing the
            # request (refused, DNS, connect timeout, reset mid-write): Postmark has not
            # got a whole request, so it cannot have accepted it. Safe to retry.
            return Answer(
                "retry", error=f"could not reach Postmark at {self.host}: {_reason(exc.reason)}"
            )
        except (OSError, http.client.HTTPException) as exc:
            # Raised while waiting for or reading the answer: the request was written
            # and may have been accepted. Postmark has no idempotency key: not re-sent.
            return Answer(
                "ambiguous",
                error=f"the request was sent but its answer was lost ({_reason(exc)}); not re-sent",
            )
        if status != 200:
            return Answer("ambiguous", error=f"Postmark answered {status}; not re-sent")
        return _entries(data, count)

    def _status(self, status: int, data: bytes, headers: HttpHeaders | None) -> Answer:
        code, message = _error(data)
        said = f": {self._scrub(message)}" if message else ""
        if status == 401 or code == BAD_TOKEN:
            return Answer(
                "config",
                error=f"Postmark refused the server token ({status}){said}; check that "
                f"{self.token_env} holds the Server API token of your Postmark server",
            )
        if status in _RETRY_STATUSES or status >= 500:
            return Answer(
                "retry",
                error=f"Postmark answered {status}{said}",
                retry_after=_retry_after(headers) if status == 429 else None,
            )
        if code in CONFIG_CODES:
            return Answer("config", error=f"Postmark refused to send ({code}){said}")
        if status in _NOT_POSTMARK or status < 400:
            return Answer(
                "config",
                error=f"Postmark answered {status} at {self.host}{BATCH_PATH}: is api_host "
                "(or POSTMARK_API_HOST) Postmark's API address?",
            )
        # 422 (invalid JSON, too many messages) and 413: never accepted as they are.
        return Answer("permanent", error=f"Postmark rejected the request ({status}){said}")

    def _scrub(self, text: str) -> str:
        return text.replace(self.token, "[server token]") if self.token else text


def _entries(data: bytes, count: int) -> Answer:
    """A 200's array, one Entry per request entry; a body we cannot read is ambiguous
    (Postmark took the request, and some entries may have gone)."""
    try:
        items = json.loads(data)
    except ValueError:
        items = None
    if not isinstance(items, list) or len(items) != count:
        return Answer("ambiguous", error="Postmark's answer could not be read; not re-sent")
    entries = []
    for item in items:
        code = item.get("ErrorCode") if isinstance(item, dict) else None
        message = scrub_addresses(str(item.get("Message") or "")) if isinstance(item, dict) else ""
        said = f": {message}" if message else ""
        if code == 0:
            provider_id = item.get("MessageID")
            entries.append(Entry("sent", provider_id=str(provider_id) if provider_id else None))
        elif code in CONFIG_CODES:
            entries.append(Entry("config", error=f"Postmark refused to send ({code}){said}"))
        elif code in RETRY_CODES:
            entries.append(Entry("retry", error=f"Postmark could not take it now ({code}){said}"))
        elif isinstance(code, int) and not isinstance(code, bool):
            # 300 Invalid email request, 406 Inactive recipient, ...: this email alone.
            entries.append(Entry("permanent", error=f"Postmark rejected the email ({code}){said}"))
        else:
            entries.append(Entry("permanent", error="Postmark's answer for it had no ErrorCode"))
    return Answer("answered", entries=entries)


def scrub_addresses(text: str) -> str:
    """Postmark's message without the addresses it quotes ("Found inactive addresses:
    pat@example.com"): the reason is stored on the row and may be logged."""
    return _ADDRESS.sub("[address]", one_line(text))[:300]


def _error(data: bytes) -> tuple[int | None, str]:
    """`ErrorCode` and `Message` of a JSON error body (Postmark's error format)."""
    try:
        item = json.loads(data)
    except ValueError:
        return None, scrub_addresses(data.decode("utf-8", "replace"))[:200]
    if not isinstance(item, dict):
        return None, ""
    code = item.get("ErrorCode")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    return code, scrub_addresses(str(item.get("Message") or ""))


def _read(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""


def _retry_after(headers: HttpHeaders | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 3600 else None


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        return str(reason) or type(reason).__name__
    return str(reason)
