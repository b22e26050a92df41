"""The adapters the shared suite (tests/test_adapters.py) runs over: one `AdapterCase` each.

The suite holds the tests every sending adapter must pass the same way: 200 contacts
reach the stand-in, each `sent` with the provider's message id; 30 % seeded faults over
several runs lose nothing and send nothing twice; at DEBUG no address, name or secret is
logged; a refused credential stops the run before anything is claimed (one line, the
secret nowhere); display names and subjects with `;`, `,` or CR/LF never add a header,
nor does a header name with CR/LF. It only sees what a case gives it, so a new adapter
joins with one entry in CASES.

How to add one (say Brevo), in three steps:

1. The stand-in (tests/brevo_server.py) is a class whose instance is a context
   manager (`with BrevoServer() as server:` starts and stops it) and has:
   - `url`: where the sender should send;
   - `accepted`: a list, one entry per message the server kept, each with attributes
     `delivery_id` (str), `recipient` (str, the address) and either `raw` (bytes: the
     MIME message as it would be delivered) or `headers` (a list of (name, value)
     pairs: the header lines the provider will write from a JSON request); optionally
     `message_id`, the id the server answered with;
   - `requests`: an int, every request received, faults included;
   - `fault_rate` (0 to 1) and `seed`, settable: with fault_rate > 0 it answers that
     share of requests with a seeded mix of throttling (429), 5xx, dropped connections
     and slow answers. A dropped or slow answer to a request it did accept is a message
     that is in `accepted` and whose delivery the engine marks `unknown`.
2. A function building the sender on the stand-in, e.g.
       def brevo_sender(server, time: Time, *, secret: str = KEY) -> Sender:
   with `time.sleep` (and `time.clock` if the sender takes one) injected, so no test
   waits on the wall clock, and `max_attempts=3` so a fault run stays bounded.
3. One entry in CASES:
       AdapterCase("brevo", stand_in=lambda tmp: BrevoServer(),
                   sender=brevo_sender, secret=KEY,
                   refused=r"Brevo refused the API key")
   `refused` is a regex of the one line a run with a refused credential stops with;
   `sender(server, time, secret="...wrong...")` must build the sender that gets it.

`tests/sendgrid_server.py` and `tests/smtp_server.py` predate this surface; the small
classes below give them, and the Mailgun and Postmark stand-ins where they differ, the
same one, and show cases with optional hooks. The SES stand-in has it already; its case
adds the AWS environment a test needs (`environment`).
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time as wall
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formataddr
from pathlib import Path
from typing import Any, Protocol

import boto3

from campaigns.authoring.sender_settings import (
    MailgunSenderSettings,
    PostmarkSenderSettings,
    SendGridSenderSettings,
    SesSenderSettings,
    SmtpSenderSettings,
)
from campaigns.settings import Settings
from senders.base import Sender
from senders.mailgun import MailgunSender
from senders.postmark import PostmarkSender
from senders.sendgrid import SendGridSender
from senders.ses import DELIVERY_HEADER, SesSender
from senders.smtp import SmtpSender
from tests.mailgun_server import MailgunServer
from tests.postmark_server import TOKEN as POSTMARK_TOKEN
from tests.postmark_server import PostmarkServer
from tests.sendgrid_server import Fault, SendGridServer
from tests.ses_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SesServer, aws_environment
from tests.smtp_server import Certificate, Faults, SmtpTestServer, make_certificate
from tests.unit.test_sendgrid import KEY

SENDGRID_KEY = KEY
SMTP_LOGIN = ("clinic", "correct-horse-battery-staple")
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
MAILGUN_DOMAIN = "mg.balancedketamine.example.com"
SES_IDENTITY = "balancedketamine.example.com"  # the clinic's From domain, verified in SES


class Time:
    """The real-clock time a sender sees: frozen, its sleeps recorded and returned at once."""

    def __init__(self) -> None:
        self.now = float(int(wall.time()))  # near the real clock: the dispatcher compares
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)


class StandIn(Protocol):
    """What the suite reads from a stand-in (see the module docstring)."""

    url: str
    accepted: list[Any]
    requests: int
    fault_rate: float
    seed: int


@dataclass(frozen=True)
class Accepted:
    """One kept message as the suite reads it, whichever stand-in kept it."""

    delivery_id: str
    recipient: str
    headers: tuple[tuple[str, str], ...]
    message_id: str | None = None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


NOT_A_FIELD = "(not a header field)"
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 2.2: printable ASCII but the colon


def header_fields(raw: bytes) -> tuple[tuple[str, str], ...]:
    """The header section of a raw message as (name, value) pairs, unfolded, white space
    squeezed, nothing decoded. A line that is neither a field nor a continuation is kept
    as (NOT_A_FIELD, line): Python's parser would end the header section there, hiding
    the header a split line put after it, which another reader may take as one."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0].decode("utf-8", "replace")
    fields: list[tuple[str, str]] = []
    for line in re.split(r"\r?\n", head):
        if line[:1] in (" ", "\t") and fields:  # RFC 5322 2.2.3: a folded line
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line}")
            continue
        name, colon, value = line.partition(":")
        fields.append(
            (name, value) if colon and _FIELD_NAME.fullmatch(name) else (NOT_A_FIELD, line)
        )
    # Spaces and tabs squeezed; a bare CR stays, for the test to find.
    return tuple((name, re.sub(r"[ \t]+", " ", value).strip(" \t")) for name, value in fields)


def read_accepted(entry: Any) -> Accepted:
    """An entry of a stand-in's `accepted`, with its header lines from `raw` or `headers`."""
    if getattr(entry, "raw", None) is not None:
        headers = header_fields(entry.raw)
    else:
        headers = tuple((str(k), str(v)) for k, v in entry.headers)
    return Accepted(
        str(entry.delivery_id),
        str(entry.recipient),
        headers,
        getattr(entry, "message_id", None),
    )


@dataclass(frozen=True)
class AdapterCase:
    """One adapter under the shared suite."""

    name: str
    stand_in: Callable[[Path], contextlib.AbstractContextManager[Any]]  # tmp dir -> server
    sender: Callable[..., Sender]  # (server, time, *, secret=...) -> a sender on it
    secret: str  # the credential the sender is given; never in output or logs
    refused: str  # regex: the one line a refused credential stops the run with
    # Optional: further checks after the 30 % fault run, on the stand-in, the time and
    # the first step's delivery rows.
    after_faults: Callable[[Any, Time, list[Any]], None] | None = None
    # Optional: the stand-in's own findings (requests a real provider would refuse).
    problems: Callable[[Any], list[str]] = field(default=lambda server: [])
    # Loggers of the stand-in itself (it runs in the test process): the privacy test
    # reads every other record, dripmail's and the client libraries'.
    server_loggers: tuple[str, ...] = ()
    # Headers the adapter adds to every message on purpose (lower case), besides those
    # the header-injection test expects of all.
    own_headers: frozenset[str] = frozenset()
    # Optional: the process environment the sender needs (monkeypatch in hand), set
    # before each test; e.g. no AWS setting of the developer's.
    environment: Callable[[Any], None] | None = None

    def __str__(self) -> str:
        return self.name


# -- SendGrid -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _SendGridKept:
    delivery_id: str
    recipient: str
    headers: tuple[tuple[str, str], ...]
    message_id: str


class SendGridStandIn:
    """tests/sendgrid_server.py behind the suite's surface.

    `accepted` renders each kept personalization's header lines as SendGrid writes them
    from the JSON (its To name unquoted, sendgrid-python #291: the server refuses a name
    that would split it). Faults: a seeded 8 % 429, 11 % 5xx and 5 % dropped answers
    (of 24 % at fault_rate 0.3, scaled), and 6 % of connections refused.
    """

    def __init__(self) -> None:
        self.server = SendGridServer(SENDGRID_KEY)
        self.seed = 0
        self._rate = 0.0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> SendGridStandIn:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> int:
        return len(self.server.requests) + self.server.refused

    @property
    def fault_rate(self) -> float:
        return self._rate

    @fault_rate.setter
    def fault_rate(self, rate: float) -> None:
        self._rate = rate
        scale = rate / 0.3
        reset = int(wall.time()) + 5  # every 429 asks for 5 s (the sender's clock is near)
        bounds = (
            (0.08, Fault.rate_limited(reset)),
            (0.13, Fault.error(500)),
            (0.17, Fault.error(503)),
            (0.19, Fault.error(502)),
            (0.24, Fault.drop()),
        )

        def fault_for(delivery_id: str | None, nth: int) -> Fault | None:
            # Seeded per delivery and request, so the choice does not depend on thread order.
            roll = random.Random(f"{self.seed}:{delivery_id}:{nth}").random()
            return next((f for bound, f in bounds if roll < bound * scale), None)

        self.server.fault_for = fault_for if rate else None
        refusals = random.Random(self.seed + 4)
        self._stack.close()
        if rate:
            self._stack.enter_context(
                self.server.refusing(lambda: refusals.random() < 0.06 * scale)
            )

    @property
    def accepted(self) -> list[_SendGridKept]:
        kept: list[_SendGridKept] = []
        taken: dict[str, list[str]] = {d: list(ids) for d, ids in self.server.accepted.items()}
        for request in self.server.requests:
            if request.answer not in ("202", "drop", "slow") or request.body is None:
                continue
            body = request.body
            for personalization in body["personalizations"]:
                delivery_id = str((personalization.get("custom_args") or {}).get("delivery_id"))
                if not taken.get(delivery_id):
                    continue  # a dropped request the server did not keep
                to = personalization["to"][0]
                sender = body["from"]
                headers = [
                    # SendGrid quotes the From name; the To name it does not (above).
                    ("From", formataddr((sender.get("name", ""), sender["email"]))),
                    ("To", f"{to.get('name', '')} <{to['email']}>"),
                    ("Subject", personalization.get("subject") or body.get("subject", "")),
                    *((k, v) for k, v in (body.get("headers") or {}).items()),
                    *((k, v) for k, v in (personalization.get("headers") or {}).items()),
                ]
                if body.get("reply_to"):
                    headers.append(("Reply-To", body["reply_to"]["email"]))
                kept.append(
                    _SendGridKept(
                        delivery_id, to["email"], tuple(headers), taken[delivery_id].pop(0)
                    )
                )
        return kept


def sendgrid_sender(
    server: SendGridStandIn, time: Time, *, secret: str = SENDGRID_KEY, **settings: Any
) -> SendGridSender:
    """One request per message (the batch case below sends many per request)."""
    config = SendGridSenderSettings(**{"batch": False, "max_attempts": 3, **settings})
    environ = {"SENDGRID_API_KEY": secret, "SENDGRID_API_HOST": server.url}
    return SendGridSender.from_settings(
        config, Settings.from_env(environ), sleep=time.sleep, clock=time.clock
    )


def sendgrid_after_faults(server: SendGridStandIn, time: Time, rows: list[Any]) -> None:
    """SendGrid's own rules under faults: only a dropped answer leaves a delivery unknown,
    every request is one attempt on its row, and a 429 is retried only after
    X-RateLimit-Reset while other backoffs stay short."""
    answers = server.server.answers()
    assert server.server.refused and answers["429"] and answers["drop"]
    assert answers["500"] + answers["502"] + answers["503"]
    last_answer = {request.delivery_id: request.answer for request in server.server.requests}
    for row in rows:
        assert last_answer[str(row.id)] == ("202" if row.status == "sent" else "drop")
    assert sum(r.status == "unknown" for r in rows) == answers["drop"]
    assert sum(r.attempts for r in rows) == server.requests
    assert all(w <= 1.0 or 5 <= w <= 5.5 for w in time.waits)
    assert 0 < sum(w >= 5 for w in time.waits) <= answers["429"]


def sendgrid_problems(server: SendGridStandIn) -> list[str]:
    return server.server.schema_failures + server.server.problems


# -- SMTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SmtpKept:
    delivery_id: str
    recipient: str
    raw: bytes
    message_id: str


class SmtpStandIn:
    """tests/smtp_server.py (aiosmtpd, STARTTLS, a login) behind the suite's surface.

    Faults: half the fault rate is a 451 "slow down" at RCPT (the relay's throttling), half
    a connection cut after the final "." without the message being kept (what a relay
    restarting does; the sender sends it again on a new connection).
    """

    def __init__(self, folder: Path) -> None:
        self.certificate: Certificate = make_certificate(folder / "tls")
        self.server = SmtpTestServer(
            Faults(), starttls=self.certificate.server_context(), credentials=SMTP_LOGIN
        )

    def __enter__(self) -> SmtpStandIn:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.server.port}"

    @property
    def requests(self) -> int:
        return self.server.handler.transactions

    @property
    def fault_rate(self) -> float:
        return self.server.faults.rate

    @fault_rate.setter
    def fault_rate(self, rate: float) -> None:
        self.server.faults.rate = rate

    @property
    def seed(self) -> int:
        return self.server.faults.seed

    @seed.setter
    def seed(self, seed: int) -> None:
        self.server.faults.seed = seed

    @property
    def accepted(self) -> list[_SmtpKept]:
        return [
            _SmtpKept(r.delivery_id, r.rcpt_tos[0], r.data, str(r.message["Message-ID"]))
            for r in self.server.received
        ]


def smtp_sender(
    server: SmtpStandIn, time: Time, *, secret: str = SMTP_LOGIN[1], **settings: Any
) -> SmtpSender:
    environ = {
        "DRIPMAIL_SMTP_HOST": "127.0.0.1",
        "DRIPMAIL_SMTP_PORT": str(server.server.port),
        "DRIPMAIL_SMTP_SECURITY": "starttls",
        "DRIPMAIL_SMTP_USERNAME": SMTP_LOGIN[0],
        "DRIPMAIL_SMTP_PASSWORD": secret,
    }
    return SmtpSender.from_settings(
        SmtpSenderSettings(**{"max_attempts": 3, **settings}),
        Settings.from_env(environ),
        ssl_context=server.certificate.client_context(),
        sleep=time.sleep,
    )


def lost_answers_only_are_unknown(
    rows: list[Any], last_answer: dict[Any, str], answers: Counter[str]
) -> None:
    """Each sent row's last request was answered 200; each unknown one's answer was lost
    (dropped or too slow), and there are as many unknown rows as lost answers."""
    for row in rows:
        assert last_answer[str(row.id)] in (("200",) if row.status == "sent" else ("drop", "slow"))
    assert sum(r.status == "unknown" for r in rows) == answers["drop"] + answers["slow"]


# -- SES ----------------------------------------------------------------------------------


@contextlib.contextmanager
def ses_stand_in(_folder: Path) -> Iterator[SesServer]:
    """tests/ses_server.py (moto behind a fault-injecting proxy) has the suite's surface;
    it needs the clinic's From domain verified, as in the SES console. A slow answer
    comes after 2 s; the sender gives up after 0.5 s (the one wall-clock wait: boto3's
    own read timeout). No refused connections: botocore opens its own sockets."""
    with SesServer(slow_seconds=2.0) as server:
        server.verify(SES_IDENTITY)
        # Throttling twice as often as each other fault: SES refuses a send above the
        # account's rate rather than queue it (429, or 400 ThrottlingException).
        server.fault_kinds = ("throttle", "throttle", "5xx", "drop", "slow")
        yield server


def ses_sender(
    server: SesServer, time: Time, *, secret: str = SECRET_ACCESS_KEY, **settings: Any
) -> SesSender:
    """The secret access key is the credential. The stand-in (like moto) checks the key
    id, not the signature, so another secret goes with another key id: a revoked pair,
    which SES answers UnrecognizedClientException."""
    key_id = ACCESS_KEY_ID if secret == SECRET_ACCESS_KEY else "AKIAREVOKEDEXAMPLE00"
    session = boto3.session.Session(
        aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=server.region
    )
    config = SesSenderSettings(
        **{"region": server.region, "max_attempts": 3, "timeout": 0.5, **settings}
    )
    environ = {"DRIPMAIL_SES_ENDPOINT_URL": server.url}
    return SesSender.from_settings(
        config, Settings.from_env(environ), sleep=time.sleep, clock=time.clock, session=session
    )


def ses_environment(monkeypatch: Any) -> None:
    """No AWS setting of the developer's; no credential but the one the sender is given."""
    aws_environment(monkeypatch, credentials=False)


def ses_after_faults(server: SesServer, time: Time, rows: list[Any]) -> None:
    """SES's own rules under faults: every kind happened (throttling as 429 and as 400
    ThrottlingException); a dropped or slow answer, and only that, leaves a delivery
    unknown, and SES (moto) sent each delivery once; every request is one attempt on its
    row; backoffs stay short (capped, base 0.5)."""
    answers = server.answers()
    assert answers["429"] and answers["400"] and answers["drop"] and answers["slow"]
    assert answers["500"] + answers["503"]
    assert sorted(server.accepted_ids()) == sorted(str(r.id) for r in rows)
    assert server.moto_sent() == len(rows)
    last_answer = {request.delivery_id: request.answer for request in server.log}
    lost_answers_only_are_unknown(rows, last_answer, answers)
    assert sum(r.attempts for r in rows) == server.requests
    assert time.waits and all(w <= 1.0 for w in time.waits)


# -- Mailgun and Postmark -----------------------------------------------------------------


class _RefusingStandIn:
    """A stand-in with `refusing(decide)` (tests/mailgun_server.py, postmark_server.py)
    behind the suite's surface: at fault_rate > 0, besides the server's own seeded mix,
    6 % of connections (at 0.3, scaled) are refused, as SendGrid's are; `requests`
    counts them, since the sender counts each as an attempt on its row."""

    server: Any

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Any:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def refused(self) -> int:
        raise NotImplementedError

    @property
    def requests(self) -> int:
        return self.server.requests + self.refused

    @property
    def seed(self) -> int:
        return self.server.seed

    @seed.setter
    def seed(self, seed: int) -> None:
        self.server.seed = seed

    @property
    def fault_rate(self) -> float:
        return self.server.fault_rate

    @fault_rate.setter
    def fault_rate(self, rate: float) -> None:
        self.server.fault_rate = rate
        refusals = random.Random(self.seed + 4)
        self._stack.close()
        if rate:
            share = 0.06 * rate / 0.3
            self._stack.enter_context(self.server.refusing(lambda: refusals.random() < share))


@dataclass(frozen=True)
class _MimeKept:
    delivery_id: str | None
    recipient: str
    raw: bytes
    message_id: str


class MailgunStandIn(_RefusingStandIn):
    """tests/mailgun_server.py: its `accepted` keeps the MIME as `mime`, here `raw`.

    Its own faults: 429 (half with Retry-After: 2), 500, 502, 503, a connection dropped
    after or before Mailgun queued the email, and an answer 2 s late (the sender waits 1 s).
    """

    def __init__(self) -> None:
        super().__init__()
        self.server = MailgunServer(MAILGUN_KEY, MAILGUN_DOMAIN, slow_seconds=2.0)

    @property
    def refused(self) -> int:
        return self.server.refused

    @property
    def accepted(self) -> list[_MimeKept]:
        return [
            _MimeKept(a.delivery_id, a.recipient, a.mime, a.message_id)
            for a in list(self.server.accepted)
        ]


def mailgun_sender(
    server: MailgunStandIn, time: Time, *, secret: str = MAILGUN_KEY, **settings: Any
) -> MailgunSender:
    config = MailgunSenderSettings(
        **{"domain": MAILGUN_DOMAIN, "max_attempts": 3, "timeout": 1.0, **settings}
    )
    environ = {"MAILGUN_API_KEY": secret, "MAILGUN_API_HOST": server.url}
    return MailgunSender.from_settings(
        config, Settings.from_env(environ), sleep=time.sleep, clock=time.clock
    )


def mailgun_after_faults(server: MailgunStandIn, time: Time, rows: list[Any]) -> None:
    """Mailgun's own rules under faults: every kind happened; only a lost answer leaves a
    delivery unknown; every request and refused connection is one attempt on its row; a
    429 with Retry-After waited that long, other backoffs stay short."""
    answers = server.server.answers()
    assert server.refused and answers["429"] and answers["drop"] and answers["slow"]
    assert answers["500"] + answers["502"] + answers["503"]
    last_answer = {request.delivery_id: request.answer for request in server.server.history}
    lost_answers_only_are_unknown(rows, last_answer, answers)
    assert sum(r.attempts for r in rows) == server.requests
    assert all(w <= 1.0 or 2 <= w <= 2.5 for w in time.waits)
    assert any(w >= 2 for w in time.waits)


def mailgun_problems(server: MailgunStandIn) -> list[str]:
    return server.server.problems


@dataclass(frozen=True)
class _PostmarkKept:
    delivery_id: str | None
    recipient: str
    headers: tuple[tuple[str, str], ...]
    message_id: str


class PostmarkStandIn(_RefusingStandIn):
    """tests/postmark_server.py: its `accepted` holds each batch entry, and a dict of
    headers in which a second header of one name would hide the first; here `headers`
    are the lines Postmark writes from the entry (From, To, Subject, Reply-To, then each
    of `Headers`), every one kept.

    Its own faults: 429, 500, 503, a connection dropped after or before Postmark took
    the batch, and an answer 5 s late (the sender waits 0.5 s).
    """

    def __init__(self) -> None:
        super().__init__()
        self.server = PostmarkServer(POSTMARK_TOKEN)

    @property
    def refused(self) -> int:
        return self.server.refused_connections

    @property
    def accepted(self) -> list[_PostmarkKept]:
        kept = []
        for one in list(self.server.accepted):
            entry = one.entry
            headers = [("From", entry["From"]), ("To", entry["To"])]
            headers.append(("Subject", entry.get("Subject", "")))
            if "ReplyTo" in entry:
                headers.append(("Reply-To", entry["ReplyTo"]))
            headers += [(h["Name"], h["Value"]) for h in entry.get("Headers") or []]
            kept.append(
                _PostmarkKept(one.delivery_id, one.recipient, tuple(headers), one.message_id)
            )
        return kept


def postmark_sender(
    server: PostmarkStandIn, time: Time, *, secret: str = POSTMARK_TOKEN, **settings: Any
) -> PostmarkSender:
    """One request per message (test_postmark.py covers batches under faults), four at a
    time: the stand-in listens with Python's default backlog of 5, and a connection
    beyond it waits in SYN retries past the 0.5 s timeout, a fault nobody asked for."""
    config = PostmarkSenderSettings(
        **{"batch": False, "max_attempts": 3, "timeout": 0.5, "concurrency": 4, **settings}
    )
    environ = {"POSTMARK_SERVER_TOKEN": secret, "POSTMARK_API_HOST": server.url}
    return PostmarkSender.from_settings(
        config, Settings.from_env(environ), sleep=time.sleep, clock=time.clock
    )


def postmark_after_faults(server: PostmarkStandIn, time: Time, rows: list[Any]) -> None:
    """Postmark's own rules under faults: every kind happened; only a lost answer leaves
    a delivery unknown, without a message id and saying it is not re-sent; every request
    and refused connection is one attempt on its row; waits stay bounded."""
    answers = server.server.answers()
    assert server.refused and answers["429"] and answers["drop"] and answers["slow"]
    assert answers["500"] + answers["503"]
    # One message per request: each request's delivery is its first.
    last_answer = {r.delivery_ids[0]: r.answer for r in server.server.log if r.delivery_ids}
    lost_answers_only_are_unknown(rows, last_answer, answers)
    for row in rows:
        if row.status == "unknown":
            assert row.provider_message_id is None and "not re-sent" in row.error
    assert sum(r.attempts for r in rows) == server.requests
    assert all(w <= 30 for w in time.waits)


def postmark_problems(server: PostmarkStandIn) -> list[str]:
    return server.server.problems


# -- the list -----------------------------------------------------------------------------

CASES: list[AdapterCase] = [
    AdapterCase(
        "sendgrid",
        stand_in=lambda _tmp: SendGridStandIn(),
        sender=sendgrid_sender,
        secret=SENDGRID_KEY,
        refused=r"SendGrid refused the API key \(401\).*SENDGRID_API_KEY",
        after_faults=sendgrid_after_faults,
        problems=sendgrid_problems,
    ),
    AdapterCase(
        "smtp",
        stand_in=SmtpStandIn,
        sender=smtp_sender,
        secret=SMTP_LOGIN[1],
        refused=r"refused the username/password",
        server_loggers=("mail.log", "asyncio"),  # aiosmtpd
    ),
    AdapterCase(
        "ses",
        stand_in=ses_stand_in,
        sender=ses_sender,
        secret=SECRET_ACCESS_KEY,
        refused=r"SES refused the credentials \(UnrecognizedClientException\).*AWS_ACCESS_KEY_ID",
        after_faults=ses_after_faults,
        problems=lambda server: server.problems,
        own_headers=frozenset({DELIVERY_HEADER.lower()}),  # its delivery id, for events
        environment=ses_environment,
    ),
    AdapterCase(
        "mailgun",
        stand_in=lambda _tmp: MailgunStandIn(),
        sender=mailgun_sender,
        secret=MAILGUN_KEY,
        refused=r"Mailgun refused the API key \(401: Forbidden\).*MAILGUN_API_KEY",
        after_faults=mailgun_after_faults,
        problems=mailgun_problems,
    ),
    AdapterCase(
        "postmark",
        stand_in=lambda _tmp: PostmarkStandIn(),
        sender=postmark_sender,
        secret=POSTMARK_TOKEN,
        refused=r"Postmark refused the server token \(401\).*POSTMARK_SERVER_TOKEN",
        after_faults=postmark_after_faults,
        problems=postmark_problems,
    ),
]


@contextlib.contextmanager
def running(case: AdapterCase, folder: Path) -> Iterator[Any]:
    """The case's stand-in, started; stopped after."""
    with case.stand_in(folder) as server:
        yield server
