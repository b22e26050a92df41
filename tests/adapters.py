"""The adapters the shared suite (tests/test_adapters.py) runs over: one `AdapterCase` each.

The suite holds the tests every sending adapter must pass the same way: 200 contacts
reach the stand-in, each `sent` with the provider's message id; 30 % seeded faults over
several runs lose nothing and send nothing twice; at DEBUG no address, name or secret is
logged; a refused credential stops the run before anything is claimed (one line, the
secret nowhere); display names and subjects with `;`, `,` or CR/LF never add a header.
It only sees what a case gives it, so a new adapter joins with one entry in CASES.

How to add one (say Postmark), in three steps:

1. The stand-in (tests/postmark_server.py) is a class whose instance is a context
   manager (`with PostmarkServer() as server:` starts and stops it) and has:
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
       def postmark_sender(server, time: Time, *, secret: str = TOKEN) -> Sender:
   with `time.sleep` (and `time.clock` if the sender takes one) injected, so no test
   waits on the wall clock, and `max_attempts=3` so a fault run stays bounded.
3. One entry in CASES:
       AdapterCase("postmark", stand_in=lambda tmp: PostmarkServer(),
                   sender=postmark_sender, secret=TOKEN,
                   refused=r"Postmark refused the server token")
   `refused` is a regex of the one line a run with a refused credential stops with;
   `sender(server, time, secret="...wrong...")` must build the sender that gets it.

`tests/sendgrid_server.py` and `tests/smtp_server.py` predate this surface; the two
small classes below give them the same one, and show a case with optional hooks.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time as wall
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formataddr
from pathlib import Path
from typing import Any, Protocol

from campaigns.authoring.sender_settings import SendGridSenderSettings, SmtpSenderSettings
from campaigns.settings import Settings
from senders.base import Sender
from senders.sendgrid import SendGridSender
from senders.smtp import SmtpSender
from tests.sendgrid_server import Fault, SendGridServer
from tests.smtp_server import Certificate, Faults, SmtpTestServer, make_certificate
from tests.unit.test_sendgrid import KEY

SENDGRID_KEY = KEY
SMTP_LOGIN = ("clinic", "correct-horse-battery-staple")


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


def read_accepted(entry: Any) -> Accepted:
    """An entry of a stand-in's `accepted`, with its header lines from `raw` or `headers`."""
    if getattr(entry, "raw", None) is not None:
        from email import message_from_bytes
        from email.policy import compat32

        # compat32: the header lines as they are on the wire, nothing decoded or refolded.
        parsed = message_from_bytes(entry.raw, policy=compat32)
        headers = tuple((k, " ".join(str(v).split())) for k, v in parsed.items())
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
]


@contextlib.contextmanager
def running(case: AdapterCase, folder: Path) -> Iterator[Any]:
    """The case's stand-in, started; stopped after."""
    with case.stand_in(folder) as server:
        yield server
