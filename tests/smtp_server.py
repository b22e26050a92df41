"""A real SMTP server in the test process (aiosmtpd) that records what it receives and
can script faults: refuse a recipient (550), defer one (451), hang up mid-batch.

Everything listens on 127.0.0.1 on a port the OS picks; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import random
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One accepted message: its envelope, raw bytes, and the client connection it came on."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: Any  # (host, port) of the client: one value per connection
    mail_options: tuple[str, ...] = ()  # MAIL FROM parameters, such as SMTPUTF8

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def delivery_id(self) -> str:
        # personalise.py's Message-ID: <dripmail.{delivery id}.{version}@{domain}>
        message_id = self.message["Message-ID"]
        return str(message_id).strip("<>").split(".")[1]


@dataclass
class Faults:
    """What the server does wrong. Addresses are compared as given in RCPT TO."""

    refuse: set[str] = field(default_factory=set)  # 550 every time
    defer: set[str] = field(default_factory=set)  # 451 once per address (greylisting)
    # Hang up during DATA, after the final "." and before the reply, without keeping
    # the message: once `drop_after` messages have been accepted, the next `drops`
    # DATA phases are cut off.
    drop_after: int | None = None
    drops: int = 1
    on_drop: Callable[[], None] | None = None  # e.g. change the password the server wants
    # Seeded random faults for the shared adapter suite (tests/adapters.py): this share
    # of transactions is deferred at RCPT (451, half of them) or cut off after the final
    # "." without keeping the message (the other half).
    rate: float = 0.0
    seed: int = 0
    # Seconds each DATA phase waits before its reply: a slow relay, so a test can stop a
    # sender in the middle of a run (the server's own loop waits; other sessions go on).
    delay: float = 0.0
    # Once `hold_after` messages are accepted, the next DATA phase waits for `release`
    # (set by the test): a sender stopped mid hand-off at a moment the test chooses.
    hold_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)


class RecordingHandler:
    """aiosmtpd handler: keeps accepted messages, applies `faults`."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.received: list[Received] = []
        self.dropped = 0
        self.quits = 0
        self.transactions = 0  # MAIL commands: every message tried, faults included
        self._tries: Counter[str] = Counter()  # per recipient, for the seeded faults
        self._lock = threading.Lock()

    def _roll(self, key: str) -> float | None:
        """A seeded draw in [0, 1) for this recipient's nth try; None when faults are off."""
        if not self.faults.rate:
            return None
        return random.Random(f"{self.faults.seed}:{key}").random()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        with self._lock:
            self.transactions += 1
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address in self.faults.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        with self._lock:
            if address in self.faults.defer:
                self.faults.defer.discard(address)
                return f"451 4.7.1 <{address}>: Recipient address rejected: Greylisted"
            self._tries[address] += 1
            roll = self._roll(f"{address}:{self._tries[address]}")
        if roll is not None and roll < self.faults.rate / 2:
            return "451 4.7.1 Too many messages, slow down"  # throttling, as relays say it
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        if self.faults.hold_after is not None and len(self.received) >= self.faults.hold_after:
            # In a thread: the server's loop stays free for other sessions meanwhile.
            await asyncio.get_running_loop().run_in_executor(None, self.faults.release.wait)
        with self._lock:
            faults = self.faults
            first = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
            roll = self._roll(f"data:{first}:{self._tries[first]}")
            if (
                faults.drop_after is not None
                and len(self.received) >= faults.drop_after
                and self.dropped < faults.drops
            ) or (roll is not None and faults.rate / 2 <= roll < faults.rate):
                self.dropped += 1
                if faults.on_drop is not None:
                    faults.on_drop()
                assert server.transport is not None
                server.transport.abort()  # no reply: the client cannot tell what happened
                return "250 never sent"
            assert isinstance(envelope.original_content, bytes)
            self.received.append(
                Received(
                    str(envelope.mail_from),
                    tuple(envelope.rcpt_tos),
                    envelope.original_content,
                    session.peer,
                    tuple(envelope.mail_options),
                )
            )
            number = len(self.received)
        return f"250 2.0.0 Ok: queued as Q{number}"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 2.0.0 Bye"


class _Controller(Controller):
    """aiosmtpd's Controller, but port 0 means a free port chosen by the OS."""

    def _trigger_server(self) -> None:
        if self.port == 0:
            assert self.server is not None
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpTestServer:
    """A running server: `with SmtpTestServer(...) as server: ... server.received`."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        smtputf8: bool = False,
    ) -> None:
        self.handler = RecordingHandler(faults)
        self.logins: list[bool] = []
        # RFC 6531: offer SMTPUTF8 in the EHLO reply (aiosmtpd does not by default).
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if starttls is not None:
            kwargs.update(tls_context=starttls, require_starttls=True)
        self.credentials = credentials  # may be changed while running
        if credentials is not None:
            # RFC 4954 4: no password over an unencrypted connection. aiosmtpd only
            # knows about TLS it started itself (STARTTLS): with implicit TLS the whole
            # connection is encrypted already, so its check is switched off there.
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=implicit_tls is None,
            )
        self.controller = _Controller(
            self.handler,
            hostname=HOST,
            port=0,
            ssl_context=implicit_tls,
            server_hostname="mx.test",
            **kwargs,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        given = (
            (data.login.decode(), data.password.decode())
            if isinstance(data, LoginPassword)
            else None
        )
        ok = given is not None and given == self.credentials
        self.logins.append(ok)
        return AuthResult(success=ok, handled=False)

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def faults(self) -> Faults:
        return self.handler.faults

    def __enter__(self) -> SmtpTestServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, and contexts that use it."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server against this certificate, host name included."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_certificate(folder: Path) -> Certificate:
    """Generate a P-256 key and a self-signed certificate into `folder` (fast, no network)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dripmail test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_path, key_path)
