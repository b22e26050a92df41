"""A local stand-in for Mailgun's messages.mime endpoint, with seeded faults.

Every request is checked against Mailgun's documented API, "Send an email in MIME
format" (https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages/post-v3--domain-name--messages-mime,
and its "Error codes" table in the Messages API reference, as kept in
github.com/mailgun/documentation source/api-sending.rst):

- POST /v3/<domain>/messages.mime, HTTP basic auth `api:<key>` (else 401 "Forbidden");
  another domain is 404 "Domain not found: <domain>";
- multipart/form-data only (else 400 "Invalid request content type ...");
- `to` present ("to parameter is missing") and `message` present and sent as a file
  upload ("message parameter is missing", "'message' parameter is not a file");
- `to` a bare address that the MIME's To (or Cc) header names: "Make sure to include
  all To, Cc and Bcc recipients of the message";
- the MIME parses with no defects, with From, To, Subject, Date, Message-ID and
  MIME-Version, and no Bcc header;
- send options (o:, h:, v:) under 16 kB in total, o: values yes/no.

A request that breaks a rule is answered 400 with Mailgun's `{"message": ...}`, and the
rule is recorded in `problems`, so a test can assert there were none. An accepted one
is answered 200 `{"id": "<...@domain>", "message": "Queued. Thank you."}`.

Faults, the same surface as every provider's stand-in: a queue (`script(...)`), a
callable `fault_for(delivery_id, nth_request)`, or `fault_rate`: that share of requests,
chosen by `seed`, the delivery id and the request's number (so not by thread order),
gets one of 429, 500, 502, 503, a connection dropped after the request was read, or an
answer slower than the client waits. A refused connection is the kernel's answer to a
port nobody listens on: `refusing(...)` routes chosen connections there (see
tests/sendgrid_server.py for why a listening socket cannot refuse).
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import json
import random
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OPTIONS_LIMIT = 16 * 1024  # "Send options ... are limited to 16 kB total"
_REQUIRED_HEADERS = ("from", "to", "subject", "date", "message-id", "mime-version")


@dataclass(frozen=True)
class Fault:
    """What to do with one request instead of accepting it."""

    kind: str  # "status", "slow", "drop"
    status: int = 0
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    accepted: bool = True  # slow/drop: Mailgun queued the email before the answer was lost

    @classmethod
    def error(cls, status: int, message: str = "", **headers: str) -> Fault:
        text = message or {
            429: "Too many requests",
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
        }.get(status, "error")
        return cls(
            "status", status, text, tuple((k.replace("_", "-"), v) for k, v in headers.items())
        )

    @classmethod
    def slow(cls, seconds: float, *, accepted: bool = True) -> Fault:
        """Answer 200 only after `seconds` (longer than the client waits)."""
        return cls("slow", delay=seconds, accepted=accepted)

    @classmethod
    def drop(cls, *, accepted: bool = True) -> Fault:
        """Read the whole request, then close the connection without answering."""
        return cls("drop", accepted=accepted)


@dataclass(frozen=True)
class Accepted:
    """One email Mailgun queued: what the request carried."""

    delivery_id: str | None
    recipient: str
    mime: bytes = field(repr=False)
    message_id: str
    form: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.mime, policy=email.policy.default)  # type: ignore[return-value]


@dataclass(frozen=True)
class Request:
    """One request as the stand-in saw it, and how it answered."""

    delivery_id: str | None
    answer: str  # "200", "400", "401", "404", "429", "500", "drop", "slow" ...


class MailgunServer:
    """The stand-in on 127.0.0.1 (a free port), served from a thread."""

    def __init__(
        self,
        api_key: str = "key-clinic-test",
        domain: str = "mg.clinic.example",
        *,
        fault_rate: float = 0.0,
        seed: int = 0,
        slow_seconds: float = 2.0,
    ) -> None:
        self.api_key = api_key
        self.domain = domain
        self.domain_state = "active"  # what GET /v4/domains/<domain> says of it
        self.fault_rate = fault_rate
        self.seed = seed
        self.slow_seconds = slow_seconds  # how long a "slow" fault keeps the answer back
        self.fault_for: Callable[[str | None, int], Fault | None] | None = None
        self.accepted: list[Accepted] = []
        self.history: list[Request] = []
        self.requests_per_delivery: Counter[str] = Counter()
        self.problems: list[str] = []  # rules of Mailgun's API a request broke
        self.refused = 0
        self._script: list[Fault | None] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self.host, self.port = self._httpd.server_address[:2]
        # Bound, never listening: the kernel refuses every connection to this port.
        self._closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._closed.bind(("127.0.0.1", 0))
        self._closed_address = self._closed.getsockname()[:2]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- life -------------------------------------------------------------------

    def start(self) -> MailgunServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # slow answers give up at once
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        self._closed.close()

    def __enter__(self) -> MailgunServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def closed_url(self) -> str:
        """An address where every connection is refused."""
        return "http://{}:{}".format(*self._closed_address)

    # -- scripting --------------------------------------------------------------

    def script(self, *faults: Fault | None) -> None:
        """Queue faults for the next requests that pass the checks (None: answer normally)."""
        with self._lock:
            self._script.extend(faults)

    @contextlib.contextmanager
    def refusing(self, decide: Callable[[], bool]) -> Iterator[None]:
        """Refuse the connections to this server for which `decide()` is true (the HTTP
        client opens each with socket.create_connection: a chosen one goes to a port
        nobody listens on, so the client gets a real ECONNREFUSED)."""
        original = socket.create_connection

        def connect(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            if tuple(address[:2]) == (self.host, self.port) and decide():
                with self._lock:
                    self.refused += 1
                return original(self._closed_address, *args, **kwargs)
            return original(address, *args, **kwargs)

        socket.create_connection = connect
        try:
            yield
        finally:
            socket.create_connection = original

    # -- what tests read ----------------------------------------------------------

    @property
    def requests(self) -> int:
        """Requests received (refused connections are not requests)."""
        with self._lock:
            return len(self.history)

    @property
    def accepted_ids(self) -> list[str | None]:
        """Delivery ids of accepted emails, once per acceptance."""
        with self._lock:
            return [a.delivery_id for a in self.accepted]

    def answers(self) -> Counter[str]:
        with self._lock:
            return Counter(r.answer for r in self.history)

    # -- used by the handler ------------------------------------------------------

    def _next_fault(self, delivery_id: str | None, nth: int) -> Fault | None:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        if self.fault_for is not None:
            return self.fault_for(delivery_id, nth)
        if self.fault_rate <= 0:
            return None
        # Seeded per delivery and request, so the choice does not depend on thread order.
        roll = random.Random(f"{self.seed}:{delivery_id}:{nth}")
        if roll.random() >= self.fault_rate:
            return None
        return roll.choice(
            (
                Fault.error(429, Retry_After="2"),
                Fault.error(429),
                Fault.error(500),
                Fault.error(502),
                Fault.error(503),
                Fault.drop(),
                Fault.drop(accepted=False),
                Fault.slow(self.slow_seconds),
            )
        )

    def _record(self, delivery_id: str | None, answer: str) -> None:
        with self._lock:
            self.history.append(Request(delivery_id, answer))

    def _accept(self, delivery_id: str | None, recipient: str, mime: bytes, form: dict) -> str:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        message_id = f"{stamp}.{secrets.token_hex(8)}@{self.domain}"
        with self._lock:
            self.accepted.append(Accepted(delivery_id, recipient, mime, message_id, form))
        return f"<{message_id}>"

    def _problem(self, text: str) -> str:
        with self._lock:
            self.problems.append(text)
        return text


def check_form(fields: dict[str, list[tuple[str, bytes, str | None]]]) -> list[str]:
    """What Mailgun would answer 400 for, in a messages.mime form: [] when it is fine.

    `fields`: name -> [(text, raw bytes, file name or None)], in order.
    """
    problems: list[str] = []
    if "to" not in fields:
        return ["to parameter is missing"]
    if "message" not in fields:
        return ["message parameter is missing"]
    if fields["message"][0][2] is None:
        return ["'message' parameter is not a file"]
    options = sum(
        len(name) + len(raw)
        for name, values in fields.items()
        for _text, raw, _file in values
        if name[:2] in ("o:", "h:", "v:")
    )
    if options > OPTIONS_LIMIT:
        problems.append(
            "Send options (parameters starting with o:, h:, or v:) are limited to 16 kB total"
        )
    for name, values in fields.items():
        if name.startswith("o:") and values[0][0] not in ("yes", "no", "true", "false"):
            problems.append(f"{name} must be yes or no")
        if name not in ("to", "message") and name[:2] not in ("o:", "h:", "v:"):
            problems.append(f"{name} is not a parameter of messages.mime")
    recipients = [text for text, _raw, _file in fields["to"]]
    if len(recipients) != 1 or "," in recipients[0] or "<" in recipients[0]:
        problems.append("to parameter is not a valid address. please check documentation")
        return problems
    mime = fields["message"][0][1]
    parsed = message_from_bytes(mime, policy=email.policy.default)
    defects = [type(d).__name__ for d in parsed.defects]
    for part in parsed.walk():
        defects += [type(d).__name__ for d in part.defects]
    if defects:
        problems.append(f"the MIME message does not parse cleanly: {', '.join(defects)}")
    names = [name.lower() for name in parsed]
    for required in _REQUIRED_HEADERS:
        if names.count(required) != 1:
            problems.append(f"the MIME message needs exactly one {required} header")
    if "bcc" in names:
        problems.append("the MIME message carries a Bcc header")
    named = [
        address.addr_spec.lower()
        for header in ("to", "cc")
        for value in parsed.get_all(header) or ()
        for address in getattr(value, "addresses", ())
        if isinstance(address, Address)
    ]
    if recipients[0].lower() not in named:
        problems.append("to names an address the MIME message's To and Cc headers do not")
    if len(parsed.get("to").addresses if parsed.get("to") is not None else ()) != 1:
        problems.append("the MIME message's To header does not hold exactly one mailbox")
    return problems


def parse_form(content_type: str, body: bytes) -> dict[str, list[tuple[str, bytes, str | None]]]:
    """A multipart/form-data body (RFC 7578): name -> [(text, raw bytes, file name or None)].

    Split by hand rather than with the `email` parser, which would parse a file part
    that is itself a message instead of keeping its bytes as they came.
    """
    header = email.policy.HTTP.header_factory("content-type", content_type)
    boundary = header.params.get("boundary")
    if not boundary:
        raise ValueError("malformed multipart/form-data request")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    if not first.startswith(delimiter) or not chunks[-1].startswith(b"--"):
        raise ValueError("malformed multipart/form-data request")
    chunks[0] = first[len(delimiter) :]
    fields: dict[str, list[tuple[str, bytes, str | None]]] = {}
    for chunk in chunks[:-1]:
        if not chunk.startswith(b"\r\n") or b"\r\n\r\n" not in chunk:
            raise ValueError("malformed multipart/form-data request")
        head, _, raw = chunk[2:].partition(b"\r\n\r\n")
        part = message_from_bytes(head + b"\r\n\r\n", policy=email.policy.HTTP)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("malformed multipart/form-data request")
        fields.setdefault(name, []).append(
            (raw.decode("utf-8", "replace"), raw, part.get_filename())
        )
    return fields


class _Server(ThreadingHTTPServer):
    # A deep listen backlog: with the default 5, a burst of the sender's threads could
    # wait in SYN retries past a short connect timeout, a fault nobody asked for.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows stderr of failing tests

    def do_GET(self) -> None:
        # GET /v4/domains/<name>, "Retrieves single domain" (Mailgun's Domains API): its
        # state (active, unverified, disabled). `dripmail doctor` asks it, a read-only call.
        fake: MailgunServer = self.server.fake  # type: ignore[attr-defined]
        parts = self.path.split("/")
        if len(parts) != 4 or parts[:3] != ["", "v4", "domains"]:
            fake._record(None, "404")
            self._answer(404, "Not Found")
            return
        if not self._authorised(fake):
            fake._record(None, "401")
            self._answer(401, "Forbidden", plain=True)
            return
        if parts[3] != fake.domain:
            fake._record(None, "404")
            self._answer(404, "Domain not found")
            return
        fake._record(None, "200")
        body = {"domain": {"name": fake.domain, "state": fake.domain_state}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        fake: MailgunServer = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)  # always read all of it: a real server would
        parts = self.path.split("/")
        if len(parts) != 4 or parts[:2] != ["", "v3"] or parts[3] != "messages.mime":
            fake._record(None, "404")
            self._answer(404, "Not Found")
            return
        if not self._authorised(fake):
            fake._record(None, "401")
            self._answer(401, "Forbidden", plain=True)
            return
        if parts[2] != fake.domain:
            fake._record(None, "404")
            self._answer(404, f"Domain not found: {parts[2]}")
            return
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            got = content_type.split(";")[0] or "nothing"
            fake._record(None, "400")
            self._answer(
                400,
                fake._problem(
                    f"Invalid request content type. Expecting 'multipart/form-data' but got '{got}'"
                ),
            )
            return
        try:
            fields = parse_form(content_type, raw)
        except ValueError as exc:
            fake._record(None, "400")
            self._answer(400, fake._problem(str(exc)))
            return
        delivery_id = fields["v:delivery_id"][0][0] if "v:delivery_id" in fields else None
        problems = check_form(fields)
        if problems:
            for problem in problems:
                fake._problem(problem)
            fake._record(delivery_id, "400")
            self._answer(400, problems[0])
            return
        with fake._lock:
            if delivery_id is not None:
                fake.requests_per_delivery[delivery_id] += 1
            nth = fake.requests_per_delivery[delivery_id] if delivery_id else 0
        fault = fake._next_fault(delivery_id, nth)
        recipient = fields["to"][0][0]
        mime = fields["message"][0][1]
        form = {name: values[0][0] for name, values in fields.items() if name != "message"}
        if fault is not None and fault.kind == "status":
            fake._record(delivery_id, str(fault.status))
            self._answer(fault.status, fault.message, headers=fault.headers)
            return
        if fault is not None and fault.kind == "drop":
            if fault.accepted:
                fake._accept(delivery_id, recipient, mime, form)
            fake._record(delivery_id, "drop")
            self.close_connection = True  # and write nothing: the client sees EOF
            return
        if fault is not None and fault.kind == "slow":
            message_id = fake._accept(delivery_id, recipient, mime, form) if fault.accepted else ""
            fake._record(delivery_id, "slow")
            fake._stopping.wait(fault.delay)
            with contextlib.suppress(OSError):  # the client has long gone
                self._answer(200, "Queued. Thank you.", message_id=message_id)
            return
        message_id = fake._accept(delivery_id, recipient, mime, form)
        fake._record(delivery_id, "200")
        self._answer(200, "Queued. Thank you.", message_id=message_id)

    def _authorised(self, fake: MailgunServer) -> bool:
        expected = base64.b64encode(f"api:{fake.api_key}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def _answer(
        self,
        status: int,
        message: str,
        *,
        message_id: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        plain: bool = False,
    ) -> None:
        if plain:
            data, kind = message.encode(), "text/plain; charset=utf-8"
        else:
            body: dict[str, str] = {"message": message}
            if message_id is not None:
                body = {"id": message_id, "message": message}
            data, kind = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
