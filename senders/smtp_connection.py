"""The SMTP connection a sender keeps: connect, STARTTLS or implicit TLS, login, reuse.

A connection is opened when first needed and kept across batches; one the server
closed meanwhile is dropped before the next batch, and a lost one is reopened by the
sender's retry. What would fail every connection the same way (no such host, no
STARTTLS, an untrusted certificate, refused credentials) raises Misconfigured; what
may pass on another try (a refused or dropped connection) raises Trouble. Also here:
the checks of the settings a connection is made from (host, port, security, login).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import smtplib
import socket
import ssl
from typing import Any

from campaigns.settings import (
    SMTP_HOST_ENV,
    SMTP_PASSWORD_ENV,
    SMTP_PORT_ENV,
    SMTP_USERNAME_ENV,
)
from senders.base import SenderConfigurationError, is_loopback
from senders.smtp_replies import Misconfigured, Trouble, first_code, reason, reply_text

log = logging.getLogger("dripmail.smtp")

SECURITIES = ("starttls", "ssl", "none")
# RFC 8314: 465 is implicit TLS submission; RFC 6409: 587 is submission with STARTTLS.
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}

# getaddrinfo's "no such host" answers, as opposed to EAI_AGAIN (resolver trouble).
_NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


class SmtpConnection:
    """One SMTP session at a time to one server, opened on demand and reused."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str,
        username: str | None,
        password: str | None,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        local_hostname: str | None,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._ever_connected = False

    @property
    def where(self) -> str:
        """host:port, for messages."""
        return f"{self.host}:{self.port}"

    def get(self) -> smtplib.SMTP:
        """The open connection, opened now if there is none (raises Misconfigured or Trouble)."""
        if self._smtp is None:
            self._smtp = self._open()
            self._ever_connected = True
            log.info("connected to %s (%s)", self.where, self.security)
        return self._smtp

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _open(self) -> smtplib.SMTP:
        """Connect, EHLO, STARTTLS (then EHLO again, RFC 3207 4.2), and log in."""
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self._context(),
                )
            else:
                smtp = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
        except ssl.SSLCertVerificationError as exc:
            raise Misconfigured(self._untrusted(exc)) from None
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_HOST and not self._ever_connected:
                # A name that never resolved is a typo, not network trouble.
                raise Misconfigured(
                    f"the SMTP host {self.host!r} does not exist ({exc.strerror}): "
                    f"check {SMTP_HOST_ENV} or sender.host"
                ) from None
            raise Trouble(f"could not look up {self.host}: {exc.strerror}") from None
        except ssl.SSLError as exc:
            if not self._ever_connected:
                # Usually security ssl against a STARTTLS or plain port.
                raise Misconfigured(
                    f"could not start TLS with {self.where} ({exc.reason}): check that the "
                    f"port suits security {self.security}"
                ) from None
            raise Trouble(f"TLS with {self.where} failed: {exc.reason}") from None
        except OSError as exc:
            raise Trouble(f"could not connect to {self.where}: {reason(exc)}") from None
        try:
            # SMTP is lock-step: with Nagle's algorithm the tail of a message (a short
            # TLS record after a full one) waits for the server's delayed ACK, ~40 ms a
            # message. Commands are written whole, so small packets cost nothing here.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise Misconfigured(
                        f"the SMTP server {self.where} does not offer STARTTLS: use security "
                        "ssl (usually port 465), or none only for a relay on this machine"
                    )
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username:
                self._login(smtp)
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise Misconfigured(self._untrusted(exc)) from None
        except Misconfigured:
            _close_quietly(smtp)
            raise
        except OSError as exc:
            _close_quietly(smtp)
            raise Trouble(f"could not start a session with {self.where}: {reason(exc)}") from None
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        assert self.username is not None and self._password is not None
        try:
            smtp.login(self.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            text = _scrub(reply_text(exc.smtp_code, exc.smtp_error), self._password)
            if 400 <= exc.smtp_code < 500:  # RFC 4954 454: temporary authentication failure
                raise Trouble(f"the SMTP server could not check the login now ({text})") from None
            raise Misconfigured(
                f"the SMTP server refused the username/password ({first_code(text)}): "
                f"check {SMTP_USERNAME_ENV} and {SMTP_PASSWORD_ENV}"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise Misconfigured(
                f"the SMTP server {self.where} offers no login (AUTH) on this connection: "
                "use security starttls or ssl, or remove the username"
            ) from None
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException):
            raise  # connection trouble: _open makes it transient
        except smtplib.SMTPException:
            # "No suitable authentication method found."
            raise Misconfigured(
                f"the SMTP server {self.where} offers no login method smtplib supports"
            ) from None

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> str:
        return (
            f"the TLS certificate of {self.where} is not trusted ({exc.verify_message}): "
            "check the host name, or install the server's CA certificate"
        )

    def rset(self, smtp: smtplib.SMTP) -> None:
        """End a refused transaction so the connection can carry the next message."""
        try:
            smtp.rset()
        except OSError:
            self.discard()

    def drop_if_stale(self) -> None:
        """A connection kept since the last batch may have been closed by the server."""
        if self._smtp is None:
            return
        try:
            code, _ = self._smtp.noop()
        except OSError:
            code = -1
        if code != 250:
            self.discard()

    def discard(self) -> None:
        """Forget the connection without a QUIT: it is broken or in an unknown state."""
        if self._smtp is not None:
            _close_quietly(self._smtp)
            self._smtp = None

    def close(self) -> None:
        """QUIT politely (RFC 5321 4.1.1.10); the sender reconnects if used again."""
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except OSError:
            pass
        finally:
            self.discard()


def _close_quietly(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def check_security(value: Any, source: str) -> str:
    security = str(value).strip().lower()
    if security not in SECURITIES:
        raise SenderConfigurationError(
            f"smtp sender: {source}: {_shown(value)} is not one of {', '.join(SECURITIES)}"
        )
    return security


def check_port(value: Any, source: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise SenderConfigurationError(
            f"smtp sender: {source}: {_shown(value)} is not a port number (1-65535)"
        )
    return int(text)


def check_host(value: Any, source: str) -> str:
    host = str(value).strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    hint = ""
    if "://" in host:
        hint = " (give the host name alone, not a URL)"
    elif ":" in host:
        hint = f" (give the port in {SMTP_PORT_ENV} or sender.port)"
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.removesuffix(".").split(".")
    if hint or not ascii_host or len(ascii_host) > 253 or not all(map(_HOST_LABEL.match, labels)):
        raise SenderConfigurationError(
            f"smtp sender: {source}: {_shown(value)} is not a host name{hint}"
        )
    return host


def check_credentials(
    username: str | None, password: str | None, security: str, host: str, source: str
) -> None:
    if not username:
        return
    if not password:
        raise SenderConfigurationError(
            f"smtp sender: a username is set ({source}) but {SMTP_PASSWORD_ENV} is not"
        )
    if security == "none" and not is_loopback(str(host)):
        raise SenderConfigurationError(
            "smtp sender: security none would send the password unencrypted over the "
            "network: use starttls or ssl"
        )


def _shown(value: Any) -> str:
    """A setting's value for an error line: quoted, escaped, never more than one line."""
    text = repr(str(value))
    return text if len(text) <= 60 else text[:57] + "...'"
