"""A local stand-in for SendGrid's v3 Mail Send endpoint, with scripted faults.

The real `sendgrid` client talks HTTP to it (host=server.url). Every body is checked
against the request-body schema of POST /v3/mail/send in the official OpenAPI file,
plus a few rules SendGrid applies beyond the schema (reserved headers, CR/LF in a
header, a display name its To header would split). A failure answers 400, as
SendGrid would, and is recorded so a test can assert there were none.

Faults come from a queue (`script(...)`, one per accepted-for-processing request,
in arrival order) or a callable `fault_for(delivery_id, nth_request)`. A request with
several personalizations (a batch) is named by its first delivery id there; it counts
as a request for each of its deliveries, and its X-Message-Id is accepted for each.

A refused connection cannot be scripted on a listening socket: the kernel has
completed the handshake before the server sees anything, so "close before reading"
looks to the client like a drop after sending, which is a different fault. A refusal
is the kernel's answer to a port nobody listens on: `closed_url` is such a port, and
`refusing(...)` routes chosen connections of this process there.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_string
from email import policy as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# In CI the repo is a fresh clone with a copy of shared/ beside it: <repo>/../shared/.
CONTRACT = (
    Path(__file__).resolve().parents[2] / "shared" / "contracts" / "sendgrid-mail-v3.openapi.json"
)
MAIL_SEND = "/v3/mail/send"
# GET /v3/scopes, "Retrieve a list of scopes for which this user has access"
# (https://www.twilio.com/docs/sendgrid/api-reference/api-key-permissions/retrieve-a-list-of-scopes-for-which-this-user-has-access):
# 200 {"scopes": [...]}, 401 for a key SendGrid does not know. `dripmail doctor` asks it.
SCOPES = "/v3/scopes"
_DOC_URI = "urn:sendgrid:mail-v3-openapi"

# "You may not override the following headers" (Mail Send schema, headers).
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


def request_body_validator(document: dict[str, Any], path: str = MAIL_SEND) -> Draft202012Validator:
    """A validator for the JSON request body of POST `path`, $refs resolved in the document."""
    target: dict[str, Any] = document["paths"][path]["post"]["requestBody"]
    pointer = f"/paths/{_escape(path)}/post/requestBody"
    while "$ref" in target:  # components/requestBodies/...: follow it to the real object
        ref = target["$ref"]
        pointer = ref.removeprefix("#")
        target = _resolve(document, pointer)
    pointer += "/content/application~1json/schema"
    registry = Registry().with_resource(_DOC_URI, Resource(document, specification=DRAFT202012))
    return Draft202012Validator(
        {"$ref": f"{_DOC_URI}#{pointer}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.lstrip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


@dataclass(frozen=True)
class Fault:
    """What to do with one request instead of accepting it."""

    kind: str  # "status", "slow", "drop"
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: dict[str, Any] | None = None
    delay: float = 0.0
    accepted: bool = True  # for slow/drop: SendGrid took the email before the answer was lost

    @classmethod
    def rate_limited(cls, reset: int) -> Fault:
        """429 with X-RateLimit-Reset at `reset` (epoch seconds)."""
        return cls(
            "status",
            429,
            headers=(
                ("X-RateLimit-Limit", "600"),
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", str(int(reset))),
            ),
            body={"errors": [{"field": None, "message": "too many requests"}]},
        )

    @classmethod
    def error(cls, status: int, message: str = "", field_name: str | None = None) -> Fault:
        """An error status with SendGrid's JSON error body."""
        text = message or {500: "internal server error", 503: "service unavailable"}.get(
            status, "error"
        )
        return cls("status", status, body={"errors": [{"field": field_name, "message": text}]})

    @classmethod
    def slow(cls, seconds: float, *, accepted: bool = True) -> Fault:
        """Answer 202 only after `seconds` (longer than the client's timeout)."""
        return cls("slow", delay=seconds, accepted=accepted)

    @classmethod
    def drop(cls, *, accepted: bool = True) -> Fault:
        """Read the whole request, then close the connection without answering."""
        return cls("drop", accepted=accepted)


@dataclass(frozen=True)
class Request:
    """One request as the server saw it, and how it answered."""

    delivery_id: str | None  # the first personalization's
    answer: str  # "202", "200", "429", "500", "drop", "slow", "400", "401" ...
    body: dict[str, Any] | None = field(repr=False, default=None)
    delivery_ids: tuple[str, ...] = ()  # every personalization's, in order


class SendGridServer:
    """The fake endpoint on 127.0.0.1 (a free port), served from a thread."""

    def __init__(self, api_key: str = "SG.test-key", *, contract: Path = CONTRACT) -> None:
        self.api_key = api_key
        self.scopes = ["mail.send", "alerts.read", "stats.read"]  # the key's, for GET /v3/scopes
        self.validator = request_body_validator(json.loads(contract.read_text(encoding="utf-8")))
        self.fault_for: Callable[[str | None, int], Fault | None] | None = None
        self.requests: list[Request] = []
        self.requests_per_delivery: Counter[str] = Counter()
        self.accepted: dict[str, list[str]] = defaultdict(list)  # delivery id -> message ids
        self.schema_failures: list[str] = []
        self.problems: list[str] = []  # SendGrid's own rules beyond the schema
        self.validated = 0
        self.refused = 0
        self._script: list[Fault | None] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
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

    def start(self) -> SendGridServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # slow answers give up at once
        if self._thread.is_alive():  # shutdown() would wait forever for a loop never run
            self._httpd.shutdown()
        self._httpd.server_close()
        self._closed.close()

    def __enter__(self) -> SendGridServer:
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
        """Queue faults for the next requests (None: answer normally)."""
        with self._lock:
            self._script.extend(faults)

    @contextlib.contextmanager
    def refusing(self, decide: Callable[[], bool]) -> Iterator[None]:
        """Refuse the connections to this server for which `decide()` is true.

        http.client opens each connection with socket.create_connection; a chosen one
        goes to `closed_url` instead, so the client gets a real ECONNREFUSED.
        """
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
    def accepted_ids(self) -> list[str]:
        """Delivery ids of accepted emails, once per acceptance."""
        with self._lock:
            return [d for d, ids in self.accepted.items() for _ in ids]

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.requests if r.body is not None]

    def answers(self) -> Counter[str]:
        with self._lock:
            return Counter(r.answer for r in self.requests)

    # -- used by the handler ------------------------------------------------------

    def _check(self, raw: bytes) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The parsed body and the errors SendGrid would answer 400 with."""
        try:
            body = json.loads(raw)
        except ValueError as exc:
            with self._lock:
                self.validated += 1
                self.schema_failures.append(f"not JSON: {exc}")
            return None, [{"field": None, "message": "Bad Request"}]
        schema_errors = [
            {"field": ".".join(map(str, e.absolute_path)) or None, "message": e.message}
            for e in self.validator.iter_errors(body)
        ]
        # SendGrid's further rules assume the schema's shapes.
        rule_errors = _sendgrid_rules(body) if isinstance(body, dict) and not schema_errors else []
        with self._lock:
            self.validated += 1
            self.schema_failures += [f"{e['field']}: {e['message']}" for e in schema_errors]
            self.problems += [f"{e['field']}: {e['message']}" for e in rule_errors]
        return (body if isinstance(body, dict) else None), schema_errors + rule_errors

    def _next_fault(self, delivery_id: str | None, nth: int) -> Fault | None:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        return self.fault_for(delivery_id, nth) if self.fault_for else None

    def _record(self, delivery_ids: tuple[str, ...], answer: str, body: Any) -> None:
        first = delivery_ids[0] if delivery_ids else None
        with self._lock:
            self.requests.append(Request(first, answer, body, delivery_ids))

    def _accept(self, delivery_ids: tuple[str, ...]) -> str:
        message_id = secrets.token_urlsafe(16)[:22]  # SendGrid's ids look like this
        with self._lock:
            for delivery_id in delivery_ids or ("?",):
                self.accepted[delivery_id].append(message_id)
        return message_id


def _sendgrid_rules(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What SendGrid rejects or mangles beyond the schema."""
    errors: list[dict[str, Any]] = []

    def flag(where: str, message: str) -> None:
        errors.append({"field": where, "message": message})

    def check_headers(where: str, headers: Any) -> None:
        for name, value in headers.items() if isinstance(headers, dict) else ():
            if name.lower() in RESERVED_HEADERS:
                flag(f"{where}.{name}", "this header is reserved and cannot be set")
            if not isinstance(value, str):
                flag(f"{where}.{name}", "header values must be strings")
            elif "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                flag(f"{where}.{name}", "a header would be split by CR/LF")

    check_headers("headers", body.get("headers") or {})
    for where, text in (
        ("subject", body.get("subject")),
        ("from.name", (body.get("from") or {}).get("name")),
        ("reply_to.name", (body.get("reply_to") or {}).get("name")),
    ):
        if isinstance(text, str) and ("\r" in text or "\n" in text):
            flag(where, "a header would be split by CR/LF")
    personalizations = body.get("personalizations") or []
    if not body.get("subject") and not all(p.get("subject") for p in personalizations):
        flag("subject", "The subject is required.")
    if not body.get("content"):
        flag(
            "content", "Unless a valid template_id is provided, the content parameter is required."
        )
    addresses: set[str] = set()
    for i, personalization in enumerate(personalizations):
        for key, value in (personalization.get("custom_args") or {}).items():
            if not isinstance(value, str):
                flag(f"personalizations.{i}.custom_args.{key}", "Bad Request")
        check_headers(f"personalizations.{i}.headers", personalization.get("headers") or {})
        subject = personalization.get("subject")
        if isinstance(subject, str) and ("\r" in subject or "\n" in subject):
            flag(f"personalizations.{i}.subject", "a header would be split by CR/LF")
        substitutions = personalization.get("substitutions") or {}
        if len(json.dumps(substitutions, ensure_ascii=False).encode()) > 10_000:
            flag(
                f"personalizations.{i}.substitutions",
                "The total collective size of your substitutions may not exceed 10,000 bytes "
                "per personalization object.",
            )
        for to in personalization.get("to") or []:
            address = str(to.get("email", "")).lower()
            if address in addresses:
                flag(
                    f"personalizations.{i}.to",
                    "Each unique email address in the personalizations array should only be "
                    "included once.",
                )
            addresses.add(address)
        for j, to in enumerate(personalization.get("to") or []):
            name = to.get("name")
            if name is None:
                continue
            where = f"personalizations.{i}.to.{j}.name"
            if "\r" in name or "\n" in name:
                flag(where, "a header would be split by CR/LF")
                continue
            # SendGrid writes a personalization's name into To: without quoting it
            # (sendgrid-python #291): the header must still hold exactly one mailbox.
            parsed = message_from_string(
                f"To: {name} <{to.get('email')}>\n\n", policy=email_policy.default
            )["To"]
            if len(parsed.addresses) != 1 or parsed.defects:
                flag(where, "the To header would not hold exactly one mailbox")
    return errors


class _Handler(BaseHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows stderr of failing tests

    def do_GET(self) -> None:
        fake: SendGridServer = self.server.fake  # type: ignore[attr-defined]
        if self.path != SCOPES:
            self._answer(404, {"errors": [{"field": None, "message": "not found"}]})
            fake._record((), "404", None)
            return
        if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            fake._record((), "401", None)
            self._answer(401, {"errors": [{"field": None, "message": "authorization required"}]})
            return
        fake._record((), "200", None)
        self._answer(200, {"scopes": list(fake.scopes)})

    def do_POST(self) -> None:
        fake: SendGridServer = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)  # always read all of it: a real server would
        if self.path != MAIL_SEND:
            self._answer(404, {"errors": [{"field": None, "message": "not found"}]})
            fake._record((), "404", None)
            return
        body, errors = fake._check(raw)
        ids = _delivery_ids(body)
        delivery_id = ids[0] if ids else None
        with fake._lock:
            for each in ids:
                fake.requests_per_delivery[each] += 1
            nth = fake.requests_per_delivery[delivery_id] if delivery_id else 0
        if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            fake._record(ids, "401", body)
            self._answer(
                401,
                {
                    "errors": [
                        {
                            "field": None,
                            "message": "The provided "
                            "authorization grant is invalid, expired, or revoked",
                        }
                    ]
                },
            )
            return
        if errors:
            fake._record(ids, "400", body)
            self._answer(400, {"errors": errors})
            return
        fault = fake._next_fault(delivery_id, nth)
        if fault is not None and fault.kind == "status":
            fake._record(ids, str(fault.status), body)
            self._answer(fault.status, fault.body, fault.headers)
            return
        if fault is not None and fault.kind == "drop":
            if fault.accepted:
                fake._accept(ids)
            fake._record(ids, "drop", body)
            self.close_connection = True  # and write nothing: the client sees EOF
            return
        sandbox = ((body or {}).get("mail_settings") or {}).get("sandbox_mode") or {}
        if sandbox.get("enable"):
            # Sandbox mode: validated, not sent, answered 200 with no message id.
            fake._record(ids, "200", body)
            self._answer(200, None)
            return
        if fault is not None and fault.kind == "slow":
            message_id = fake._accept(ids) if fault.accepted else ""
            fake._record(ids, "slow", body)
            fake._stopping.wait(fault.delay)
            with contextlib.suppress(OSError):  # the client has long gone
                self._answer(202, None, (("X-Message-Id", message_id),))
            return
        message_id = fake._accept(ids)
        fake._record(ids, "202", body)
        self._answer(202, None, (("X-Message-Id", message_id),))

    def _answer(
        self, status: int, body: dict[str, Any] | None, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _delivery_ids(body: dict[str, Any] | None) -> tuple[str, ...]:
    """The delivery id of each personalization that has one."""
    try:
        personalizations = list(body["personalizations"])  # type: ignore[index]
    except (KeyError, TypeError):
        return ()
    ids = []
    for personalization in personalizations:
        try:
            ids.append(str(personalization["custom_args"]["delivery_id"]))
        except (KeyError, TypeError):
            continue
    return tuple(ids)
