"""How a SendGrid Mail Send request ended, read as what to do next (see senders.sendgrid).

Every way a request can end (an HTTP status, a connection refused before the request
was written, an answer lost after it) becomes an Answer: sent, retry, permanent,
ambiguous or config. A 429 waits until its X-RateLimit-Reset; other retries back off.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import python_http_client.exceptions as http_errors
import sendgrid

from senders.retry import backoff
from senders.sendgrid_body import one_line

log = logging.getLogger("dripmail.sendgrid")

# status -> what it means for the message (see the module docstring)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_KEY_REFUSED = frozenset({401, 403})
_NOT_SENDGRID = frozenset({404, 405})


@dataclass(frozen=True)
class Answer:
    """How one request ended, before the retry policy decides what to do next."""

    kind: str  # "sent", "retry", "permanent", "ambiguous", "config"
    error: str | None = None
    provider_id: str | None = None
    reset_at: float | None = None  # a 429's X-RateLimit-Reset (epoch seconds)


@dataclass(frozen=True)
class MailSend:
    """POST /v3/mail/send at one host through the official client."""

    api: sendgrid.SendGridAPIClient = field(repr=False)
    host: str
    api_key_env: str
    key: str = field(repr=False)  # kept only to scrub it from any text we pass on

    def post(self, body: dict[str, Any]) -> Answer:
        """One request; every way it can end becomes an Answer (never raises)."""
        try:
            response = self.api.client.mail.send.post(request_body=body)
        except http_errors.HTTPError as exc:
            return self._http_error(exc)
        except urllib.error.URLError as exc:
            # urllib wraps exactly the errors raised while connecting or writing the
            # request (refused, DNS, connect timeout, reset mid-write): SendGrid has
            # not got a whole request, so it cannot have accepted it. Safe to retry.
            return Answer(
                "retry",
                error=f"could not reach SendGrid at {self.host}: "
                f"{self._scrub(_reason(exc.reason))}",
            )
        except (OSError, http.client.HTTPException) as exc:
            # Raised while waiting for or reading the answer: the request was written
            # and may have been accepted. SendGrid has no idempotency key, so do not
            # retry; provider events settle it.
            return Answer(
                "ambiguous",
                error=f"the request was sent but its answer was lost ({_reason(exc)}); not re-sent",
            )
        except Exception as exc:  # a per-message failure must never raise
            # Its text could quote the payload: log the type only.
            log.error("unexpected %s from the SendGrid client", type(exc).__name__)
            return Answer(
                "ambiguous", error=f"unexpected error ({type(exc).__name__}); not re-sent"
            )
        status = response.status_code
        if 200 <= status < 300:
            # 202 Accepted; 200 when sandbox mode validated it without sending.
            provider_id = response.headers.get("X-Message-Id")
            return Answer("sent", provider_id=provider_id or None)
        return Answer("ambiguous", error=f"SendGrid answered {status}; not re-sent")

    def _http_error(self, exc: http_errors.HTTPError) -> Answer:
        status = int(exc.status_code)
        messages = self._scrub(_error_messages(exc.body))
        said = f": {messages}" if messages else ""
        if status == 429:
            reset_at = _reset_time(exc.headers)
            return Answer("retry", error="SendGrid rate limit (429)", reset_at=reset_at)
        if status in _RETRY_STATUSES or status >= 500:
            return Answer("retry", error=f"SendGrid answered {status}{said}")
        if status in _KEY_REFUSED:
            return Answer(
                "config",
                error=f"SendGrid refused the API key ({status}){said}; check that "
                f"{self.api_key_env} holds a current key with Mail Send permission"
                + (" and that the from address is a verified sender" if status == 403 else ""),
            )
        if status in _NOT_SENDGRID or status < 400:
            return Answer(
                "config",
                error=f"SendGrid answered {status} at {self.host}/v3/mail/send: "
                "is api_host (or SENDGRID_API_HOST) SendGrid's API address?",
            )
        # 400, 413 and any other 4xx: this email will never be accepted as it is.
        return Answer("permanent", error=f"SendGrid rejected the email ({status}){said}")

    def _scrub(self, text: str) -> str:
        return text.replace(self.key, "[api key]") if self.key else text


def wait_for(
    answer: Answer,
    attempts: int,
    *,
    base: float,
    clock: Callable[[], float],
    uniform: Callable[[float, float], float],
) -> float:
    """Seconds before the next attempt: until a 429's reset, else backoff from `base`."""
    if answer.reset_at is not None:
        # Until the reset, plus a little jitter so the waiting threads do not all
        # retry in the same instant.
        return max(answer.reset_at - clock(), 0.0) + uniform(0, base)
    return backoff(attempts, base, uniform)


def _error_messages(body: bytes | str | None) -> str:
    """SendGrid's `errors[].message` texts from a JSON error body, joined."""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        return one_line(text)[:300]
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    texts = []
    for item in errors:
        if isinstance(item, dict) and item.get("message"):
            field = item.get("field")
            text = one_line(str(item["message"]))
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
