"""A local stand-in for Amazon SES: moto's server mode behind a fault-injecting proxy.

moto (`ThreadedMotoServer`) is a real emulation of the SES v2 API: it checks that the
sender identity is verified, parses the raw message and keeps what it accepted. In
front of it a small HTTP proxy checks each SendEmail request against SES's documented
contract, which moto does not enforce, and injects faults at a seeded rate:

- SendEmail, POST /v2/email/outbound-emails:
  https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html
- RawMessage (header and body split by a blank line, no line over 1,000 characters,
  base64 over HTTPS): https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_RawMessage.html
- MessageTag (name and value: ASCII letters, digits, `_`, `-`; 256 at most):
  https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_MessageTag.html
- throttling (ThrottlingException, "Maximum sending rate exceeded"):
  https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html

A request that breaks the contract is answered 400 BadRequestException, as SES
would, and recorded in `problems`. A request signed with another access key id than
the server's is answered 403 UnrecognizedClientException (moto accepts any).

Faults (`fault_rate`, `seed`; or `script(...)` for the next requests): "throttle"
(429 TooManyRequestsException or 400 ThrottlingException, not forwarded), "5xx" (500
InternalFailure or 503 ServiceUnavailable, not forwarded), "drop" (forwarded, so SES
accepted it, then the connection closed without an answer) and "slow" (forwarded,
answered only after `slow_seconds`); and, scripted only, "reject" (400 MessageRejected
for an unverified recipient, as the SES sandbox answers). The choice for a request is seeded by the
delivery id and how many requests that delivery has made, so it does not depend on
the order threads arrive in.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.policy
import http.client
import json
import logging
import random
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends

SEND_EMAIL = "/v2/email/outbound-emails"
REGION = "eu-west-1"
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key pair
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
MAX_RAW = 40 * 1024 * 1024
MAX_LINE = 1000
MAX_RECIPIENTS = 50
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
FAULTS = ("throttle", "5xx", "drop", "slow")
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs each request


@dataclass(frozen=True)
class Accepted:
    """One message SES (moto) accepted."""

    delivery_id: str | None
    recipient: str
    raw: bytes = field(repr=False)
    message_id: str
    tags: dict[str, str] = field(default_factory=dict)
    configuration_set: str | None = None

    @property
    def headers(self) -> email.message.EmailMessage:
        """The raw message parsed: its headers (and parts) as a mail client reads them."""
        return email.message_from_bytes(self.raw, policy=email.policy.default)


@dataclass(frozen=True)
class Request:
    """One request as the proxy saw it, and how it was answered."""

    delivery_id: str | None
    answer: str  # "200", "429", "400", "403", "500", "503", "drop", "slow"


class SesServer:
    """moto on one free loopback port, the proxy on another; point boto3 at `url`."""

    def __init__(
        self,
        *,
        region: str = REGION,
        access_key_id: str = ACCESS_KEY_ID,
        fault_rate: float = 0.0,
        seed: int = 0,
        slow_seconds: float = 3.0,
    ) -> None:
        self.region = region
        self.access_key_id = access_key_id
        self.fault_rate = fault_rate
        self.seed = seed
        self.fault_kinds: tuple[str, ...] = FAULTS
        self.slow_seconds = slow_seconds
        self.latency = 0.0  # seconds added to every SendEmail answer (a network's round trip)
        self.accepted: list[Accepted] = []
        self.log: list[Request] = []
        self.problems: list[str] = []
        self.requests_per_delivery: Counter[str] = Counter()
        self._script: list[str | None] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.stand_in = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- life ---------------------------------------------------------------------

    def start(self) -> SesServer:
        self._moto.start()
        self.moto_host, self.moto_port = self._moto.get_host_and_port()
        # moto's backends are process-wide: start from nothing.
        connection = http.client.HTTPConnection(self.moto_host, self.moto_port, timeout=10)
        connection.request("POST", "/moto-api/reset")
        connection.getresponse().read()
        connection.close()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        self._moto.stop()

    def __enter__(self) -> SesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint to give boto3 (DRIPMAIL_SES_ENDPOINT_URL)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def moto_url(self) -> str:
        return f"http://{self.moto_host}:{self.moto_port}"

    # -- set-up and scripting ---------------------------------------------------------

    def verify(self, identity: str) -> None:
        """Verify an address or domain identity in moto, as the SES console would."""
        client = boto3.client(
            "sesv2",
            region_name=self.region,
            endpoint_url=self.moto_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        client.create_email_identity(EmailIdentity=identity)
        client.close()

    def script(self, *faults: str | None) -> None:
        """Faults for the next requests, in arrival order (None: answer normally)."""
        with self._lock:
            self._script.extend(faults)

    # -- what tests read ----------------------------------------------------------------

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.log)

    def answers(self) -> Counter[str]:
        with self._lock:
            return Counter(r.answer for r in self.log)

    def accepted_ids(self) -> list[str | None]:
        with self._lock:
            return [a.delivery_id for a in self.accepted]

    def moto_sent(self) -> int:
        """How many messages moto's own SES backend holds as sent."""
        return len(ses_backends[DEFAULT_ACCOUNT_ID][self.region].sent_messages)

    # -- used by the handler --------------------------------------------------------------

    def _fault(self, delivery_id: str | None) -> str | None:
        with self._lock:
            self.requests_per_delivery[delivery_id or "?"] += 1
            nth = self.requests_per_delivery[delivery_id or "?"]
            if self._script:
                return self._script.pop(0)
        roll = random.Random(f"{self.seed}:{delivery_id}:{nth}")
        if roll.random() < self.fault_rate and self.fault_kinds:
            return roll.choice(self.fault_kinds)
        return None

    def _record(self, delivery_id: str | None, answer: str) -> None:
        with self._lock:
            self.log.append(Request(delivery_id, answer))

    def _accept(self, body: dict[str, Any], raw: bytes, message_id: str) -> None:
        tags = {t["Name"]: t["Value"] for t in body.get("EmailTags") or []}
        [recipient] = body["Destination"]["ToAddresses"]
        with self._lock:
            self.accepted.append(
                Accepted(
                    tags.get("delivery_id"),
                    recipient,
                    raw,
                    message_id,
                    tags,
                    body.get("ConfigurationSetName"),
                )
            )


def aws_environment(
    monkeypatch: Any, *, credentials: bool = True, region: str | None = REGION
) -> None:
    """The process environment for a test: no AWS setting of the developer's (no profile,
    no ~/.aws file, no instance metadata), and the stand-in's key pair unless not wanted."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if credentials:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    if region:
        monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    # urllib3 would send 127.0.0.1 through a configured proxy.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def check_request(body: Any, raw: bytes | None) -> list[str]:
    """What SES would answer 400 for in a SendEmail body (raw: Content.Raw.Data decoded)."""
    problems: list[str] = []
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    content = body.get("Content")
    if not isinstance(content, dict) or set(content) != {"Raw"}:
        problems.append("Content must hold exactly one of Simple, Raw, Template: Raw expected")
    if raw is None:
        problems.append("Content.Raw.Data is not base64")
        return problems
    if len(raw) > MAX_RAW:
        problems.append("the message is over 40 MB")
    _head, blank, _body = raw.partition(b"\r\n\r\n")
    if not blank:
        problems.append("the message has no blank line between header and body")
    for number, line in enumerate(raw.split(b"\r\n"), 1):
        if len(line) > MAX_LINE:
            problems.append(f"line {number} is over {MAX_LINE} characters")
            break
    if b"\n" in raw.replace(b"\r\n", b"") or b"\r" in raw.replace(b"\r\n", b""):
        problems.append("a bare CR or LF in the message")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("From", "Subject"):
        if len(message.get_all(name) or []) != 1:
            problems.append(f"the message must have exactly one {name} header")
    if message.defects:
        problems.append(f"the message has defects: {message.defects}")
    destination = body.get("Destination") or {}
    recipients = sum(
        len(destination.get(k) or []) for k in ("ToAddresses", "CcAddresses", "BccAddresses")
    )
    if recipients > MAX_RECIPIENTS:
        problems.append("more than 50 recipients")
    for tag in body.get("EmailTags") or []:
        if not (
            isinstance(tag, dict)
            and _TAG.match(str(tag.get("Name", "")))
            and _TAG.match(str(tag.get("Value", "")))
        ):
            problems.append(f"EmailTags: {tag!r} is not a valid tag")
    name = body.get("ConfigurationSetName")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(name)):
        problems.append("ConfigurationSetName is not a valid name")
    return problems


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        stand_in: SesServer = self.server.stand_in  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if self.path != SEND_EMAIL:
            self._forward(stand_in, data)  # set-up calls and anything else: moto answers
            return
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        raw: bytes | None = None
        with contextlib.suppress(AttributeError, KeyError, TypeError, binascii.Error, ValueError):
            raw = base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
        delivery_id = None
        with contextlib.suppress(AttributeError, KeyError, TypeError):
            delivery_id = {t["Name"]: t["Value"] for t in body["EmailTags"]}.get("delivery_id")
        authorization = self.headers.get("Authorization") or ""
        if f"Credential={stand_in.access_key_id}/" not in authorization:
            stand_in._fault(delivery_id)
            stand_in._record(delivery_id, "403")
            self._error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
            return
        problems = check_request(body, raw)
        if problems:
            with stand_in._lock:
                stand_in.problems += problems
            stand_in._fault(delivery_id)
            stand_in._record(delivery_id, "400")
            self._error(400, "BadRequestException", "; ".join(problems))
            return
        fault = stand_in._fault(delivery_id)
        if stand_in.latency:
            stand_in._stopping.wait(stand_in.latency)
        rng = random.Random(f"{stand_in.seed}:{delivery_id}:{fault}")
        if fault == "throttle":
            if rng.random() < 0.5:
                stand_in._record(delivery_id, "429")
                self._error(429, "TooManyRequestsException", "Too many requests")
            else:
                stand_in._record(delivery_id, "400")
                self._error(400, "ThrottlingException", "Maximum sending rate exceeded.")
            return
        if fault == "reject":  # scripted only: the SES sandbox refusing an unverified recipient
            stand_in._record(delivery_id, "400")
            recipient = (body.get("Destination") or {}).get("ToAddresses") or ["?"]
            self._error(
                400,
                "MessageRejected",
                "Email address is not verified. The following identities failed the check "
                f"in region {stand_in.region.upper()}: {recipient[0]}",
            )
            return
        if fault == "5xx":
            status, code = rng.choice(((500, "InternalFailure"), (503, "ServiceUnavailable")))
            stand_in._record(delivery_id, str(status))
            self._error(status, code, "")
            return
        status, headers, answer = self._to_moto(stand_in, data)
        if status == 200:
            stand_in._accept(body, raw or b"", json.loads(answer)["MessageId"])
        if fault == "drop":
            stand_in._record(delivery_id, "drop")
            self.close_connection = True  # write nothing: the client sees the connection close
            return
        if fault == "slow":
            stand_in._record(delivery_id, "slow")
            stand_in._stopping.wait(stand_in.slow_seconds)
        else:
            stand_in._record(delivery_id, str(status))
        with contextlib.suppress(OSError):  # a slow answer's client has gone
            self._answer(status, headers, answer)

    def do_GET(self) -> None:
        stand_in: SesServer = self.server.stand_in  # type: ignore[attr-defined]
        # GetEmailIdentity and the other reads: another key is refused, as SES would.
        if f"Credential={stand_in.access_key_id}/" not in (self.headers.get("Authorization") or ""):
            self._error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
            return
        self._forward(stand_in, b"")

    # -- helpers ----------------------------------------------------------------------

    def _to_moto(
        self, stand_in: SesServer, data: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(stand_in.moto_host, stand_in.moto_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(self.command, self.path, body=data or None, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        connection.close()
        kept = [
            (k, v)
            for k, v in response.getheaders()
            if k.lower()
            not in ("content-length", "connection", "transfer-encoding", "server", "date")
        ]
        return response.status, kept, answer

    def _forward(self, stand_in: SesServer, data: bytes) -> None:
        self._answer(*self._to_moto(stand_in, data))

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        data = json.dumps({"message": message}).encode()
        self._answer(
            status,
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)],
            data,
        )
