"""How a Mailgun messages.mime request ended, read as what to do next (see senders.mailgun).

Every way a request can end (an HTTP status, a connection refused before the request
was written, an answer lost after it) becomes an Answer: sent, retry, permanent,
ambiguous or config. The statuses and their texts are Mailgun's documented ones
("Error codes" of the Messages API, and the API introduction's status table):

- 200 `{"id": "<...>", "message": "Queued. Thank you."}`: sent; the id is Mailgun's
  Message-Id, which its events carry (without the angle brackets) as `message-id`.
- 429 "Too many requests", 500/502/503/504: retry. A 429's Retry-After, when Mailgun
  sends one, says how long to wait (RFC 9110 section 10.2.3).
- 401 "Forbidden" and 403: the key (or the account) is refused: config.
- 404 "Domain not found: x", 405, 3xx: wrong domain, region or host: config.
- 400 "Domain x is not allowed to send: the domain is unverified" (or the account not
  activated) would refuse every email the same way: config. Any other 400 (a bad
  address, a message Mailgun cannot take), 413 and other 4xx: this email only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx

log = logging.getLogger("dripmail.mailgun")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_KEY_REFUSED = frozenset({401, 403})
_NOT_MAILGUN = frozenset({404, 405})
# 400s about the sending domain or the account, not the email: every email would get them.
_DOMAIN_REFUSED = re.compile(
    r"is not allowed to send: .*(unverified|activate your Mailgun account)", re.I | re.S
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Answer:
    """How one request ended, before the retry policy decides what to do next."""

    kind: str  # "sent", "retry", "permanent", "ambiguous", "config"
    error: str | None = None
    provider_id: str | None = None
    retry_after: float | None = None  # a 429's Retry-After, in seconds from now


@dataclass(frozen=True)
class MessagesMime:
    """POST /v3/<domain>/messages.mime at one host, through one httpx client."""

    client: httpx.Client = field(repr=False)
    host: str
    api_key_env: str
    key: str = field(repr=False)  # kept only to scrub it from any text we pass on

    def url(self, domain: str) -> str:
        return f"{self.host}/v3/{quote(domain, safe='')}/messages.mime"

    def post(self, domain: str, form: Mapping[str, str], mime: bytes) -> Answer:
        """One request; every way it can end becomes an Answer (never raises)."""
        url = self.url(domain)
        try:
            response = self.client.post(
                url,
                data=dict(form),
                # A file part, as the documentation asks ("send this as a file upload"),
                # typed as its curl sample's `-F message=@file` types it.
                files={"message": ("message.mime", mime, "application/octet-stream")},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection, so no request: Mailgun cannot have it. Safe to retry.
            return Answer("retry", error=f"could not reach Mailgun at {self.host}: {_reason(exc)}")
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The request was not written whole: Mailgun cannot have accepted it.
            return Answer("retry", error=f"the request to Mailgun broke off: {_reason(exc)}")
        except httpx.TransportError as exc:
            # Raised while waiting for or reading the answer (a read timeout, a dropped
            # connection): the request was written and may have been accepted. Mailgun
            # has no idempotency key, so do not retry; its events settle it.
            return Answer(
                "ambiguous",
                error=f"the request was sent but its answer was lost ({_reason(exc)}); not re-sent",
            )
        except Exception as exc:  # a per-message failure must never raise
            # Its text could quote the request: log the type only.
            log.error("unexpected %s from the HTTP client", type(exc).__name__)
            return Answer(
                "ambiguous", error=f"unexpected error ({type(exc).__name__}); not re-sent"
            )
        return self.read(response, domain)

    def read(self, response: httpx.Response, domain: str) -> Answer:
        """The Answer an HTTP response means."""
        status = response.status_code
        said = self._scrub(_message(response))
        if 200 <= status < 300:
            return Answer("sent", provider_id=_message_id(response))
        if status in _RETRY_STATUSES or status >= 500:
            detail = f": {said}" if said else ""
            return Answer(
                "retry",
                error=f"Mailgun answered {status}{detail}",
                retry_after=_retry_after(response.headers) if status == 429 else None,
            )
        if status in _KEY_REFUSED:
            return Answer(
                "config",
                error=f"Mailgun refused the API key ({status}{': ' + said if said else ''}); "
                f"check that {self.api_key_env} holds a current key for domain {domain}",
            )
        if status in _NOT_MAILGUN or status < 400:
            return Answer(
                "config",
                error=f"Mailgun answered {status} at {self.url(domain)}"
                f"{' (' + said + ')' if said else ''}: check sender.domain and sender.region "
                "(or MAILGUN_API_HOST)",
            )
        if status == 400 and _DOMAIN_REFUSED.search(said):
            return Answer("config", error=f"Mailgun will not send for {domain}: {said}")
        # 400, 413 and any other 4xx: this email will never be accepted as it is.
        return Answer(
            "permanent", error=f"Mailgun rejected the email ({status}){': ' + said if said else ''}"
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self.key, "[api key]") if self.key else text


def _message(response: httpx.Response) -> str:
    """Mailgun's own words: the JSON body's `message`, else the text (e.g. "Forbidden")."""
    try:
        text = response.text
    except Exception:  # an undecodable body says nothing we could show
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        return one_line(text)[:300]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return one_line(data["message"])[:300]
    return ""


def _message_id(response: httpx.Response) -> str | None:
    """The `id` of a 200's JSON body, without its angle brackets (as events carry it)."""
    try:
        data = response.json()
    except ValueError:
        return None
    found = data.get("id") if isinstance(data, dict) else None
    if not isinstance(found, str):
        return None
    found = found.strip().strip("<>").strip()
    return found[:200] or None


def _retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds from now: delta-seconds, or an HTTP date (from the Date header)."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
        sent = parsedate_to_datetime(headers.get("date") or value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None or sent.tzinfo is None:
        return None
    return max((when - sent).total_seconds(), 0.0)


def one_line(text: str) -> str:
    """Control characters (CR, LF, ...) folded to one space: a value that cannot split a line."""
    return _CONTROL.sub(" ", text).strip()


def _reason(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__
