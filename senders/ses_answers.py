"""How an SES SendEmail call ended, read as what to do next (see senders.ses).

Every way a call can end (an answer, an error code, a connection refused before the
request was written, an answer lost after it) becomes an Answer: sent, retry,
permanent, ambiguous or config. Error texts from SES can quote addresses (the
identities that failed a check); they are cleaned before they reach a row or a log.

Error codes are SES API v2's for SendEmail
(https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html) and AWS's
common errors; throttling is described at
https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as ConnectError

log = logging.getLogger("dripmail.ses")

# SES refuses rather than queues: a call over the sending rate is answered with one of
# these, and "you should ... wait ... and then retry the send request".
THROTTLED = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
# The daily quota is spent: trying again within this run cannot help.
DAILY_QUOTA = "daily message quota exceeded"
# The caller's credentials or rights, for every message alike.
CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "AccessDeniedException",
        "AccessDenied",
        "AuthFailure",
        "OptInRequired",
        "NotAuthorized",
    }
)
# The account or its settings, for every message alike.
_NO_CONFIGURATION_SET = "SES does not know the configuration set named in sender.configuration_set"
ACCOUNT = {
    "AccountSuspendedException": "SES has suspended this account's sending",
    "SendingPausedException": "sending is paused for this account or configuration set",
    "MailFromDomainNotVerifiedException": "the MAIL FROM domain is not verified in SES",
    "NotFoundException": _NO_CONFIGURATION_SET,
    "ConfigurationSetDoesNotExist": _NO_CONFIGURATION_SET,
}
_ADDRESS = re.compile(r"[^\s<>(),;:\"']+@[^\s<>(),;:\"']+")
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")


@dataclass(frozen=True)
class Answer:
    """How one call ended, before the retry policy decides what to do next."""

    kind: str  # "sent", "retry", "permanent", "ambiguous", "config"
    error: str | None = None
    provider_id: str | None = None
    final: bool = False  # a retry that cannot help within this run (the daily quota)


def call(send: Callable[[], dict[str, Any]], *, from_address: str, hint: str) -> Answer:
    """Make one SendEmail call; every way it can end becomes an Answer (never raises).

    `from_address` tells an unverified sender (every message) from an unverified
    recipient in the SES sandbox (this message only); `hint` names where credentials
    and region come from, for the configuration errors.
    """
    try:
        response = send()
    except ClientError as exc:
        return _client_error(exc, from_address, hint)
    except ConnectError as exc:
        # Raised while connecting (refused, DNS, connect timeout, a proxy): SES has not
        # got the request, so it cannot have accepted it. Safe to retry.
        return Answer("retry", error=f"could not reach SES ({_reason(exc)})")
    except (ReadTimeoutError, ConnectionClosedError) as exc:
        # The request was written and may have been accepted. SendEmail has no
        # idempotency key, so it is not sent again; SES events settle it.
        return Answer(
            "ambiguous",
            error=f"the request was sent but its answer was lost ({type(exc).__name__}); "
            "not re-sent",
        )
    except (NoCredentialsError, PartialCredentialsError, NoRegionError) as exc:
        return Answer("config", error=f"SES cannot be called: {_reason(exc)}; {hint}")
    except ParamValidationError:
        # botocore checked the request before sending it: this message's own data.
        return Answer("permanent", error="the request for this email is not valid for SES")
    except BotoCoreError as exc:
        # Any other botocore failure may come after the request went: do not re-send.
        log.error("unexpected %s from botocore", type(exc).__name__)
        return Answer("ambiguous", error=f"unexpected error ({type(exc).__name__}); not re-sent")
    except Exception as exc:  # a per-message failure must never raise
        # Its text could quote the request: log the type only.
        log.error("unexpected %s from the SES client", type(exc).__name__)
        return Answer("ambiguous", error=f"unexpected error ({type(exc).__name__}); not re-sent")
    message_id = response.get("MessageId") if isinstance(response, dict) else None
    return Answer("sent", provider_id=str(message_id) if message_id else None)


def _client_error(exc: ClientError, from_address: str, hint: str) -> Answer:
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    text = str(error.get("Message") or "")
    status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    said = f": {clean(text)}" if text else ""
    if code in THROTTLED or status == 429:
        return Answer(
            "retry",
            error=f"SES throttled the request ({code or status}){said}",
            final=DAILY_QUOTA in text.lower(),
        )
    if code in CREDENTIALS or status in (401, 403):
        return Answer(
            "config",
            error=f"SES refused the credentials ({code or status}){said}; {hint}",
        )
    if code in ACCOUNT:
        return Answer("config", error=f"{ACCOUNT[code]} ({code}){said}")
    if code == "MessageRejected" and _sender_unverified(text, from_address):
        return Answer(
            "config",
            error=f"SES has not verified the sender identity (MessageRejected){said}: "
            "verify the from address or its domain in this region",
        )
    if status >= 500 or code in ("InternalFailure", "ServiceUnavailable", "InternalError"):
        return Answer("retry", error=f"SES answered {status or code}{said}")
    # MessageRejected, BadRequestException, LimitExceededException and any other 4xx:
    # this email will not be accepted as it is.
    if code == "MessageRejected" and "not verified" in text.lower():
        said += " (in the SES sandbox every recipient must be verified)"
    return Answer("permanent", error=f"SES rejected the email ({code or status}){said}")


def _sender_unverified(text: str, from_address: str) -> bool:
    """SES's "not verified" names the identities that failed: the sender's means every
    message fails (the recipient's, in the sandbox, only this one)."""
    lowered = text.lower()
    if "not verified" not in lowered and "authority to send from" not in lowered:
        return False
    address = from_address.lower()
    domain = address.rpartition("@")[2]
    named = {a.lower().strip(".") for a in _ADDRESS.findall(text)}
    return address in named or (bool(domain) and not named and domain in lowered)


def clean(text: str) -> str:
    """SES's message on one line, short, any address (and access key id) replaced."""
    text = _ACCESS_KEY_ID.sub("[access key id]", _ADDRESS.sub("[address]", text))
    return " ".join(text.split())[:300]


def _reason(exc: BaseException) -> str:
    return clean(str(exc)) or type(exc).__name__
