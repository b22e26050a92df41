"""A local stand-in for Postmark's `POST /email/batch`, checking what Postmark documents.

Checked against Postmark's documentation (looked up 2026-12-06):
- https://postmarkapp.com/developer/api/email-api (the fields of a message, From and To
  required, HtmlBody or TextBody, To at most 50, Tag at most 1000 characters, Headers as
  [{"Name", "Value"}], TrackLinks' values; "the batch endpoint accepts up to 500 messages
  per API call, and up to 50 MB payload size"; "Punctuation in the name would need to be
  escaped");
- https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails and the
  postmark-php wiki's Sending Batches: HTTP 200 "even when validation for individual
  messages may fail", one answer per message in the order sent;
- https://postmarkapp.com/developer/api/overview (Accept and Content-Type
  application/json, X-Postmark-Server-Token, 401, 422 with {ErrorCode, Message}, the
  API error codes: 10 bad token, 300 invalid email request, 402 invalid JSON, 406
  inactive recipient, 410 too many batch messages, 429 rate limit).
An entry Postmark would refuse is answered ErrorCode 300 in its place and recorded in
`problems`, so a test can assert there were none.

Faults: `fault_rate` (with `seed`) picks, per request, one of 429, 500, 503, a dropped
connection (after or before Postmark took the batch) or a slow answer; `script(...)`
queues faults for the next requests first. `refuse` maps an address to the ErrorCode
its entry gets (406 inactive recipient, 300 invalid), while the rest of its batch goes.
A refused connection is the kernel's answer to `closed_url`, as in sendgrid_server.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_string
from email import policy as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BATCH = "/email/batch"
TOKEN = "pm-server-token-0000"
MAX_BATCH = 500
MAX_BYTES = 50 * 1024 * 1024
FIELDS = {
    "From": str,
    "To": str,
    "Cc": str,
    "Bcc": str,
    "Subject": str,
    "Tag": str,
    "HtmlBody": str,
    "TextBody": str,
    "ReplyTo": str,
    "Metadata": dict,
    "Headers": list,
    "TrackOpens": bool,
    "TrackLinks": str,
    "Attachments": list,
    "MessageStream": str,
    "InlineCss": bool,
}
TRACK_LINKS = {"None", "HtmlAndText", "HtmlOnly", "TextOnly"}
INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
    "addresses: {address}. Inactive recipients are ones that have generated a hard bounce, "
    "a spam complaint, or a manual suppression."
)


@dataclass(frozen=True)
class Fault:
    """What to do with one request instead of answering it normally."""

    kind: str  # "status", "drop", "slow"
    status: int = 0
    code: int = 0
    accepted: bool = True  # drop/slow: Postmark took the batch before the answer was lost
    delay: float = 0.0

    @classmethod
    def error(cls, status: int, code: int = 0) -> Fault:
        return cls("status", status, code)

    @classmethod
    def drop(cls, *, accepted: bool = True) -> Fault:
        return cls("drop", accepted=accepted)

    @classmethod
    def slow(cls, seconds: float, *, accepted: bool = True) -> Fault:
        return cls("slow", accepted=accepted, delay=seconds)


@dataclass(frozen=True)
class Accepted:
    """One email Postmark took: what its recipient would get."""

    delivery_id: str | None
    recipient: str
    message_id: str
    headers: dict[str, str]  # From, To, Subject, Reply-To and the entry's own Headers
    entry: dict[str, Any] = field(repr=False)

    @property
    def raw(self) -> str:
        """The headers as they would start the message (for header-injection tests)."""
        return "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())


@dataclass(frozen=True)
class Request:
    """One request as the server saw it, and how it answered."""

    delivery_ids: tuple[str | None, ...]
    answer: str  # "200", "401", "422", "429", "500", "503", "drop", "slow", ...
    codes: tuple[int, ...] = ()  # each entry's ErrorCode, for a 200


class PostmarkServer:
    """The stand-in on 127.0.0.1 (a free port), served from a thread."""

    def __init__(self, token: str = TOKEN, *, fault_rate: float = 0.0, seed: int = 0) -> None:
        self.token = token
        self.fault_rate = fault_rate
        self.seed = seed
        self.refuse: dict[str, int] = {}  # address -> the ErrorCode its entry gets
        self.accepted: list[Accepted] = []
        self.log: list[Request] = []
        self.problems: list[str] = []  # documented rules a request broke
        self.refused_connections = 0
        self._script: list[Fault | None] = []
        self._nth: Counter[str | None] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self.host, self.port = self._httpd.server_address[:2]
        self._closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._closed.bind(("127.0.0.1", 0))  # bound, never listening: connections refused
        self._closed_address = self._closed.getsockname()[:2]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- life -------------------------------------------------------------------

    def start(self) -> PostmarkServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        self._closed.close()

    def __enter__(self) -> PostmarkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def closed_url(self) -> str:
        return "http://{}:{}".format(*self._closed_address)

    # -- what tests read and set ----------------------------------------------------

    @property
    def requests(self) -> int:
        """Requests that reached the server."""
        with self._lock:
            return len(self.log)

    def accepted_ids(self) -> list[str | None]:
        with self._lock:
            return [a.delivery_id for a in self.accepted]

    def answers(self) -> Counter[str]:
        with self._lock:
            return Counter(r.answer for r in self.log)

    def script(self, *faults: Fault | None) -> None:
        """Queue faults for the next requests (None: answer normally)."""
        with self._lock:
            self._script.extend(faults)

    @contextlib.contextmanager
    def refusing(self, decide: Callable[[], bool]) -> Iterator[None]:
        """Refuse the connections to this server for which `decide()` is true."""
        original = socket.create_connection

        def connect(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            if tuple(address[:2]) == (self.host, self.port) and decide():
                with self._lock:
                    self.refused_connections += 1
                return original(self._closed_address, *args, **kwargs)
            return original(address, *args, **kwargs)

        socket.create_connection = connect
        try:
            yield
        finally:
            socket.create_connection = original

    # -- used by the handler ------------------------------------------------------

    def _fault(self, first: str | None) -> Fault | None:
        with self._lock:
            if self._script:
                return self._script.pop(0)
            self._nth[first] += 1
            nth = self._nth[first]
        if not self.fault_rate:
            return None
        # Seeded per batch (its first delivery) and try, so thread order does not matter.
        roll = random.Random(f"{self.seed}:{first}:{nth}")
        if roll.random() >= self.fault_rate:
            return None
        return roll.choice(
            (
                Fault.error(429, 429),
                Fault.error(500),
                Fault.error(503, 100),
                Fault.drop(),
                Fault.drop(accepted=False),
                Fault.slow(5.0),
            )
        )

    def _take(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each entry's answer; the accepted ones recorded."""
        answers = []
        for entry in entries:
            problems = entry_problems(entry)
            to = str(entry.get("To", ""))
            address = _address(to)
            if problems:
                with self._lock:
                    self.problems += problems
                message = "Invalid email request: " + problems[0]
                answers.append({"ErrorCode": 300, "Message": message})
                continue
            code = self.refuse.get(address.lower())
            if code:
                message = INACTIVE.format(address=address) if code == 406 else "Invalid request"
                answers.append({"ErrorCode": code, "Message": message})
                continue
            message_id = str(uuid.uuid4())
            headers = {"From": entry["From"], "To": to, "Subject": entry.get("Subject", "")}
            if "ReplyTo" in entry:
                headers["Reply-To"] = entry["ReplyTo"]
            headers.update({h["Name"]: h["Value"] for h in entry.get("Headers", [])})
            delivery_id = (entry.get("Metadata") or {}).get("delivery_id")
            with self._lock:
                self.accepted.append(Accepted(delivery_id, address, message_id, headers, entry))
            answers.append(
                {
                    "ErrorCode": 0,
                    "Message": "OK",
                    "MessageID": message_id,
                    "SubmittedAt": "2026-12-06T10:00:00.0000000-05:00",
                    "To": to,
                }
            )
        return answers


def entry_problems(entry: Any) -> list[str]:
    """What Postmark's documentation says it refuses in one message of a batch."""
    if not isinstance(entry, dict):
        return ["a message is not a JSON object"]
    problems = [f"{key}: not a field of the Email API" for key in entry if key not in FIELDS]
    problems += [
        f"{key}: should be {kind.__name__}"
        for key, kind in FIELDS.items()
        if key in entry and entry[key] is not None and not isinstance(entry[key], kind)
    ]
    if problems:
        return problems
    for key in ("From", "To"):
        if not entry.get(key):
            problems.append(f"{key}: required")
    if not (entry.get("HtmlBody") or entry.get("TextBody")):
        problems.append("Provide either email TextBody or HtmlBody or both.")
    if len(entry.get("Tag") or "") > 1000:
        problems.append("Tag: at most 1000 characters")
    if entry.get("TrackLinks", "None") not in TRACK_LINKS:
        problems.append(f"TrackLinks: one of {sorted(TRACK_LINKS)}")
    for key in ("From", "To", "ReplyTo", "Subject"):
        value = entry.get(key) or ""
        if "\r" in value or "\n" in value:
            problems.append(f"{key}: a header would be split by CR/LF")
    for key in ("From", "To"):
        # One mailbox each as we send them; a name with unescaped punctuation is two.
        value = entry.get(key) or ""
        parsed = message_from_string(f"To: {value}\n\n", policy=email_policy.default)["To"]
        if len(parsed.addresses) != 1 or parsed.defects:
            problems.append(f"{key}: Illegal email address")
    if len([a for a in (entry.get("To") or "").split(",") if a.strip()]) > 50:
        problems.append("To: at most 50 recipients")
    for header in entry.get("Headers") or []:
        if not (isinstance(header, dict) and set(header) == {"Name", "Value"}):
            problems.append('Headers: each is {"Name": ..., "Value": ...}')
            continue
        name, value = header["Name"], header["Value"]
        if not (isinstance(name, str) and isinstance(value, str)):
            problems.append("Headers: names and values are strings")
        elif any(c in name + value for c in "\r\n") or ":" in name:
            problems.append(f"Headers.{name}: a header would be split by CR/LF")
    metadata = entry.get("Metadata") or {}
    if not all(isinstance(v, str) for v in metadata.values()):
        problems.append("Metadata: values are strings")
    return problems


def _address(to: str) -> str:
    parsed = message_from_string(f"To: {to}\n\n", policy=email_policy.default)["To"]
    addresses = parsed.addresses if parsed is not None else ()
    return addresses[0].addr_spec if len(addresses) == 1 else to


class _Handler(BaseHTTPRequestHandler):
    server_version = "Postmark"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        # GET /server, "Get the server" (https://postmarkapp.com/developer/api/server-api):
        # the server the token belongs to. `dripmail doctor` asks it, a read-only call.
        fake: PostmarkServer = self.server.fake  # type: ignore[attr-defined]
        if self.path != "/server":
            fake.log.append(Request((), "404"))
            self._answer(404, {"ErrorCode": 404, "Message": "Not found"})
            return
        if self.headers.get("X-Postmark-Server-Token") != fake.token:
            fake.log.append(Request((), "401"))
            self._answer(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
            return
        fake.log.append(Request((), "200"))
        self._answer(
            200,
            {"ID": 1, "Name": "Clinic", "ApiTokens": [fake.token], "DeliveryType": "Live"},
        )

    def do_POST(self) -> None:
        fake: PostmarkServer = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)  # always read all of it: a real server would
        if self.path != BATCH:
            fake.log.append(Request((), "404"))
            self._answer(404, {"ErrorCode": 404, "Message": "Not found"})
            return
        if self.headers.get("X-Postmark-Server-Token") != fake.token:
            fake.log.append(Request((), "401"))
            self._answer(
                401,
                {
                    "ErrorCode": 10,
                    "Message": "No Account or Server API tokens were supplied in the HTTP "
                    "headers. Please add a header for either X-Postmark-Server-Token or "
                    "X-Postmark-Account-Token.",
                },
            )
            return
        for name in ("Accept", "Content-Type"):
            if (self.headers.get(name) or "").split(";")[0].strip() != "application/json":
                fake.problems.append(f"{name}: application/json is required")
        try:
            entries = json.loads(raw)
        except ValueError:
            entries = None
        if not isinstance(entries, list) or len(raw) > MAX_BYTES:
            fake.problems.append("the body is not a JSON array within 50 MB")
            fake.log.append(Request((), "422"))
            self._answer(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
            return
        ids = tuple(
            (e.get("Metadata") or {}).get("delivery_id") if isinstance(e, dict) else None
            for e in entries
        )
        if len(entries) > MAX_BATCH:
            fake.problems.append(f"{len(entries)} messages in one batch")
            fake.log.append(Request(ids, "422"))
            self._answer(422, {"ErrorCode": 410, "Message": "Too many batch messages."})
            return
        fault = fake._fault(ids[0] if ids else None)
        if fault is not None and fault.kind == "status":
            fake.log.append(Request(ids, str(fault.status)))
            body = {"ErrorCode": fault.code, "Message": "fault"} if fault.code else None
            self._answer(fault.status, body)
            return
        if fault is not None and fault.kind == "drop":
            if fault.accepted:
                fake._take(entries)
            fake.log.append(Request(ids, "drop"))
            self.close_connection = True  # and write nothing: the client sees EOF
            return
        answers = fake._take(entries) if fault is None or fault.accepted else []
        codes = tuple(a["ErrorCode"] for a in answers)
        if fault is not None and fault.kind == "slow":
            fake.log.append(Request(ids, "slow", codes))
            fake._stopping.wait(fault.delay)
            with contextlib.suppress(OSError):  # the client has long gone
                self._answer(200, answers)
            return
        fake.log.append(Request(ids, "200", codes))
        self._answer(200, answers)

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
