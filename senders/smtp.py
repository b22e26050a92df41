"""SMTP through smtplib: one connection per batch, STARTTLS or implicit TLS.

Every SMTP reply is mapped onto the sender outcomes (RFC 5321 section 4.2.1):
2yz accepted, 4yz "not now" (transient: the dispatcher reschedules it), 5yz "never"
(permanent, for that message only). A 421 at any point means the server is closing
the connection (section 3.8), which is treated like a drop: reconnect and try again.

What is a message's fault and what is the configuration's: a refused recipient or a
rejected message body fails that message alone; refused credentials, a refused sender
address, a server that will not relay for us, no STARTTLS, or an untrusted certificate
would fail every message the same way, so they raise SenderConfigurationError and the
run stops with nothing marked (see `send` for the one exception to that).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

from campaigns.authoring.sender_settings import SmtpSenderSettings
from campaigns.settings import (
    SMTP_HOST_ENV,
    SMTP_PASSWORD_ENV,
    SMTP_PORT_ENV,
    SMTP_SECURITY_ENV,
    SMTP_USERNAME_ENV,
    Settings,
)

from .base import Message, Outcome, SenderConfigurationError, SendResult, is_loopback
from .mime import to_bytes

log = logging.getLogger("dripmail.smtp")

SECURITIES = ("starttls", "ssl", "none")
# RFC 8314: 465 is implicit TLS submission; RFC 6409: 587 is submission with STARTTLS.
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_WAIT = 60.0
# RFC 5321 4.5.3.2.6 asks a client to wait up to 10 minutes for the reply to the final
# "." because the server may scan the message first. Giving up early makes the outcome
# ambiguous, so that one reply gets a longer timeout than the other commands (bounded
# well under the dispatcher's lease).
DATA_END_TIMEOUT = 60.0
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0

# getaddrinfo's "no such host" answers, as opposed to EAI_AGAIN (resolver trouble).
_NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


class SmtpSender:
    """Sends Messages in order over one reused SMTP connection.

    The campaign's `concurrency` setting does not apply: SMTP is one conversation at a
    time, and one connection per worker is what relays expect. `timeout` bounds each
    command, `max_attempts` the tries per message in a run, `max_wait` the total
    backoff sleeping in one `send`.
    """

    name = "smtp"
    batch_limit = 1

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_wait: float = DEFAULT_MAX_WAIT,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.security = _check_security(security, "security")
        self.host = _check_host(host, "host")
        self.port = DEFAULT_PORTS[self.security] if port is None else _check_port(port, "port")
        self.username = username or None
        self._password = password or None
        _check_credentials(self.username, self._password, self.security, self.host, "username")
        self.timeout = float(timeout)
        self.max_attempts = max(1, int(max_attempts))
        self.max_wait = max(0.0, float(max_wait))
        self.local_hostname = local_hostname
        self._ssl_context = ssl_context
        self._sleep = sleep
        self._smtp: smtplib.SMTP | None = None
        self._ever_connected = False
        self._broken: str | None = None  # a configuration problem found mid-batch

    @classmethod
    def from_settings(
        cls,
        config: SmtpSenderSettings,
        settings: Settings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> SmtpSender:
        """The campaign's `sender:` settings, each overridden by its DRIPMAIL_SMTP_* variable."""

        def pick(key: str, variable: str | None, env: str) -> tuple[Any, str]:
            if variable is not None and variable.strip():
                return variable.strip(), env
            value = getattr(config, key)
            if isinstance(value, str):
                value = value.strip() or None
            return value, f"sender.{key} in campaign.yaml"

        host, host_from = pick("host", settings.smtp_host, SMTP_HOST_ENV)
        port, port_from = pick("port", settings.smtp_port, SMTP_PORT_ENV)
        security, security_from = pick("security", settings.smtp_security, SMTP_SECURITY_ENV)
        username, username_from = pick("username", settings.smtp_username, SMTP_USERNAME_ENV)
        # Never stripped: spaces may be meant.
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        if host is None:
            raise SenderConfigurationError(
                f"smtp sender: no host: set {SMTP_HOST_ENV} or sender.host in campaign.yaml"
            )
        # Checked here, where each value's source is known, so the error names it.
        host = _check_host(host, host_from)
        port = None if port is None else _check_port(port, port_from)
        security = _check_security(security or "starttls", security_from)
        _check_credentials(username, password, security, host, username_from)
        return cls(
            host,
            port,
            security=security,
            username=username,
            password=password,
            timeout=config.timeout,
            max_attempts=config.max_attempts,
            max_wait=config.max_wait,
            ssl_context=ssl_context,
            sleep=sleep,
        )

    def __repr__(self) -> str:  # no password, ever
        return f"SmtpSender({self.host}:{self.port}, security={self.security})"

    # -- sending ----------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        """One result per message, in order; raises only for a configuration problem."""
        if self._broken:
            raise SenderConfigurationError(self._broken)
        results: list[SendResult] = []
        batch = _Batch(self.max_wait, self._sleep)
        stop: str | None = None  # once set, the rest of the batch is not tried
        if messages:
            self._drop_if_stale()
        for message in messages:
            if stop is not None:
                results.append(_result(message, Outcome.TRANSIENT, error=stop, attempts=0))
                continue
            try:
                result, unreachable = self._deliver(message, batch)
            except _Misconfigured as problem:
                self._discard()
                if not batch.went_out:
                    # Nothing of this call reached a mailbox: the dispatcher puts every row
                    # back untouched and the run stops with this one line.
                    raise SenderConfigurationError(str(problem)) from None
                # Some messages already went: raising now would have the dispatcher
                # re-queue them and send them twice. Keep their results, hold the rest
                # back, and refuse the next batch so the run still stops.
                self._broken = str(problem)
                stop = f"not sent: {problem}"
                results.append(_result(message, Outcome.TRANSIENT, error=stop, attempts=0))
                continue
            results.append(result)
            if unreachable:
                # Retries for this message are spent: the server is down or dropping us.
                # Hammering it with the rest of the batch would not help.
                stop = f"not tried: {result.error}"
        return results

    def _deliver(self, message: Message, batch: _Batch) -> tuple[SendResult, bool]:
        """(result, whether the server was unreachable) for one message."""
        try:
            data = to_bytes(message)  # CRLF line ends; CR/LF in header values already removed
        except Exception as exc:  # this message's own data: it fails alone
            return _result(message, Outcome.PERMANENT, error=f"could not build it: {exc}"), False
        try:
            sender, sender_utf8 = _envelope_address(message.from_address)
            rcpt, rcpt_utf8 = _envelope_address(message.to_address)
        except ValueError as exc:
            return _result(message, Outcome.PERMANENT, error=str(exc)), False
        trouble: _Trouble | None = None
        attempt = 0
        while attempt < self.max_attempts:
            if attempt:
                # A connection that worked and then dropped is usually a server limit on
                # messages per connection: reconnect at once. Anything else backs off.
                wait = 0.0 if attempt == 1 and trouble and trouble.dropped else _backoff(attempt)
                if not batch.wait(wait):
                    break
            attempt += 1
            try:
                smtp = self._connection()
                self._transaction(
                    smtp, message, sender, rcpt, data, sender_utf8 or rcpt_utf8, batch
                )
            except _Reply as reply:
                outcome = Outcome.PERMANENT if reply.code >= 500 else Outcome.TRANSIENT
                log.warning(
                    "delivery %s: %s answered %d (%s)",
                    message.delivery_id,
                    reply.command,
                    reply.code,
                    outcome,
                )
                error = f"{reply.command} refused: {reply.text}"
                return _result(message, outcome, error=error, attempts=attempt), False
            except _Trouble as exc:
                self._discard()
                trouble = exc
                log.warning(
                    "delivery %s: attempt %d of %d: %s",
                    message.delivery_id,
                    attempt,
                    self.max_attempts,
                    exc.brief,
                )
                continue
            log.debug("delivery %s: accepted", message.delivery_id)
            provider_id = message.headers.get("Message-ID")
            return _result(message, Outcome.SENT, provider_id=provider_id, attempts=attempt), False
        assert trouble is not None
        return _result(message, Outcome.TRANSIENT, error=trouble.reason, attempts=attempt), True

    def _transaction(
        self,
        smtp: smtplib.SMTP,
        message: Message,
        sender: str,
        rcpt: str,
        data: bytes,
        utf8: bool,
        batch: _Batch,
    ) -> None:
        """MAIL, RCPT, DATA by hand (not sendmail) to know which phase failed."""
        options = [f"SIZE={len(data)}"] if smtp.has_extn("size") else []
        if utf8:
            if not smtp.has_extn("smtputf8"):
                raise _Reply("MAIL", 553, "the server does not accept non-ASCII addresses")
            options.append("SMTPUTF8")
        after_data = False
        try:
            code, reply = smtp.mail(sender, options)
            if code != 250:
                self._refused_sender(smtp, code, reply)
            code, reply = smtp.rcpt(rcpt)
            if code not in (250, 251):
                self._refused_recipient(smtp, code, reply)
            code, reply = smtp.docmd("DATA")
            if code != 354:
                _closing(code, reply)
                self._rset(smtp)
                raise _Reply("DATA", code, _text(code, reply))
            # RFC 5321 4.5.2: a line starting with "." gets another "." in front.
            payload = re.sub(rb"(?m)^\.", b"..", data)
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
            smtp.send(payload + b".\r\n")
            after_data = batch.went_out = True
            code, reply = self._final_reply(smtp)
        except OSError as exc:  # smtplib's errors, socket errors and timeouts
            if after_data:
                # The whole message went out and the reply was lost: the server may or
                # may not have queued it. The rule for SMTP (issue 3) is "disconnects are
                # transient, retried", so it is sent again. The retry carries the same
                # Message-ID (derived from the delivery id), so a receiver can de-duplicate.
                log.warning(
                    "delivery %s: the connection dropped before the server confirmed the "
                    "message; sending it again with the same Message-ID",
                    message.delivery_id,
                )
            raise _Trouble(
                f"the connection to {self._where} dropped: {_reason(exc)}",
                brief=f"the connection dropped ({type(exc).__name__})",
                dropped=True,
            ) from None
        if code != 250:
            _closing(code, reply)  # 421 after the "." means the message was not taken
            raise _Reply("DATA", code, _text(code, reply))

    def _refused_sender(self, smtp: smtplib.SMTP, code: int, reply: bytes) -> None:
        _closing(code, reply)
        self._rset(smtp)
        text = _text(code, reply)
        if 400 <= code < 500 or code == 552:
            # 4yz: try later; 552: this message is too big (RFC 1870), the next may not be.
            raise _Reply("MAIL", code, text)
        if code == 530:  # RFC 4954: authentication required
            raise _Misconfigured(
                f"the SMTP server {self._where} wants a login: set {SMTP_USERNAME_ENV} and "
                f"{SMTP_PASSWORD_ENV} ({text})"
            )
        # Every message of the batch has the same sender address: refusing it is not
        # about one message.
        raise _Misconfigured(f"the SMTP server {self._where} refused the sender address ({text})")

    def _refused_recipient(self, smtp: smtplib.SMTP, code: int, reply: bytes) -> None:
        _closing(code, reply)
        self._rset(smtp)
        text = _text(code, reply)
        # "Relay access denied" arrives as a recipient refusal but means the server
        # does not accept mail from us at all (usually: no login); it would fail
        # every recipient the same way.
        if code == 530 or (code >= 500 and "relay" in text.lower()):
            raise _Misconfigured(
                f"the SMTP server {self._where} will not relay mail for this sender; "
                f"check {SMTP_USERNAME_ENV}/{SMTP_PASSWORD_ENV} ({_first_code(text)})"
            )
        raise _Reply("RCPT", code, text)

    def _final_reply(self, smtp: smtplib.SMTP) -> tuple[int, bytes]:
        sock = smtp.sock
        if sock is not None:
            sock.settimeout(max(self.timeout, DATA_END_TIMEOUT))
        try:
            return smtp.getreply()
        finally:
            if smtp.sock is not None:
                smtp.sock.settimeout(self.timeout)

    # -- the connection ---------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._open()
            self._ever_connected = True
            log.info("connected to %s (%s)", self._where, self.security)
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
            raise _Misconfigured(self._untrusted(exc)) from None
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_HOST and not self._ever_connected:
                # A name that never resolved is a typo, not network trouble.
                raise _Misconfigured(
                    f"the SMTP host {self.host!r} does not exist ({exc.strerror}): "
                    f"check {SMTP_HOST_ENV} or sender.host"
                ) from None
            raise _Trouble(f"could not look up {self.host}: {exc.strerror}") from None
        except ssl.SSLError as exc:
            if not self._ever_connected:
                # Usually security ssl against a STARTTLS or plain port.
                raise _Misconfigured(
                    f"could not start TLS with {self._where} ({exc.reason}): check that the "
                    f"port suits security {self.security}"
                ) from None
            raise _Trouble(f"TLS with {self._where} failed: {exc.reason}") from None
        except OSError as exc:
            raise _Trouble(f"could not connect to {self._where}: {_reason(exc)}") from None
        try:
            # SMTP is lock-step: with Nagle's algorithm the tail of a message (a short
            # TLS record after a full one) waits for the server's delayed ACK, ~40 ms a
            # message. Commands are written whole, so small packets cost nothing here.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise _Misconfigured(
                        f"the SMTP server {self._where} does not offer STARTTLS: use security "
                        "ssl (usually port 465), or none only for a relay on this machine"
                    )
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username:
                self._login(smtp)
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise _Misconfigured(self._untrusted(exc)) from None
        except _Misconfigured:
            _close_quietly(smtp)
            raise
        except OSError as exc:
            _close_quietly(smtp)
            raise _Trouble(
                f"could not start a session with {self._where}: {_reason(exc)}"
            ) from None
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        assert self.username is not None and self._password is not None
        try:
            smtp.login(self.username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            text = _scrub(_text(exc.smtp_code, exc.smtp_error), self._password)
            if 400 <= exc.smtp_code < 500:  # RFC 4954 454: temporary authentication failure
                raise _Trouble(f"the SMTP server could not check the login now ({text})") from None
            raise _Misconfigured(
                f"the SMTP server refused the username/password ({_first_code(text)}): "
                f"check {SMTP_USERNAME_ENV} and {SMTP_PASSWORD_ENV}"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise _Misconfigured(
                f"the SMTP server {self._where} offers no login (AUTH) on this connection: "
                "use security starttls or ssl, or remove the username"
            ) from None
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException):
            raise  # connection trouble: _open makes it transient
        except smtplib.SMTPException:
            # "No suitable authentication method found."
            raise _Misconfigured(
                f"the SMTP server {self._where} offers no login method smtplib supports"
            ) from None

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> str:
        return (
            f"the TLS certificate of {self._where} is not trusted ({exc.verify_message}): "
            "check the host name, or install the server's CA certificate"
        )

    def _rset(self, smtp: smtplib.SMTP) -> None:
        """End a refused transaction so the connection can carry the next message."""
        try:
            smtp.rset()
        except OSError:
            self._discard()

    def _drop_if_stale(self) -> None:
        """A connection kept since the last batch may have been closed by the server."""
        if self._smtp is None:
            return
        try:
            code, _ = self._smtp.noop()
        except OSError:
            code = -1
        if code != 250:
            self._discard()

    def _discard(self) -> None:
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
            self._discard()


# -- helpers ------------------------------------------------------------------------


class _Misconfigured(Exception):
    """Every message would fail the same way: becomes SenderConfigurationError."""


class _Trouble(Exception):
    """The connection could not be made or was lost: reconnect and try again.

    `reason` goes on the delivery row; `brief` (no server text, which may echo an
    address) goes to the log; `dropped` says a working connection was lost.
    """

    def __init__(self, reason: str, *, brief: str | None = None, dropped: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.brief = brief or reason
        self.dropped = dropped


class _Reply(Exception):
    """The server answered this message with a 4yz or 5yz reply."""

    def __init__(self, command: str, code: int, text: str) -> None:
        super().__init__(text)
        self.command = command
        self.code = code
        self.text = text


class _Batch:
    """Per-`send` state: the in-run wait budget, and whether anything went out."""

    def __init__(self, max_wait: float, sleep: Callable[[float], None]) -> None:
        self.left = max_wait
        self.sleep = sleep
        self.went_out = False

    def wait(self, seconds: float) -> bool:
        if seconds > self.left:
            return False
        if seconds > 0:
            self.sleep(seconds)
            self.left -= seconds
        return True


def _backoff(attempt: int) -> float:
    # Exponential with jitter, so several workers do not reconnect in step.
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


def _result(
    message: Message,
    outcome: Outcome,
    *,
    provider_id: str | None = None,
    error: str | None = None,
    attempts: int = 1,
) -> SendResult:
    return SendResult(
        message.delivery_id, outcome, provider_id=provider_id, error=error, attempts=attempts
    )


def _closing(code: int, reply: bytes) -> None:
    # RFC 5321 3.8: 421 "service not available, closing transmission channel".
    if code == 421:
        raise _Trouble(
            f"the server is closing the connection ({_text(code, reply)})",
            brief="the server is closing the connection (421)",
            dropped=True,
        )


def _close_quietly(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


def _text(code: int, reply: bytes | str) -> str:
    """The server's reply on one line, for the delivery row."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(f"{code} {reply}".split())[:300]


def _first_code(text: str) -> str:
    """The reply code (and enhanced code) only: enough to act on, nothing echoed back."""
    return " ".join(text.split()[:2])


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _text(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return " ".join(str(exc).split()) or type(exc).__name__


def _envelope_address(address: str) -> tuple[str, bool]:
    """The address for MAIL/RCPT (domain in IDNA) and whether it needs SMTPUTF8."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c in address for c in "\r\n<> \t"):
        raise ValueError("not a deliverable address")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("the address has a domain that cannot be encoded") from None
    return f"{local}@{domain}", not local.isascii()


def _check_security(value: Any, source: str) -> str:
    security = str(value).strip().lower()
    if security not in SECURITIES:
        raise SenderConfigurationError(
            f"smtp sender: {source}: {_shown(value)} is not one of {', '.join(SECURITIES)}"
        )
    return security


def _check_port(value: Any, source: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise SenderConfigurationError(
            f"smtp sender: {source}: {_shown(value)} is not a port number (1-65535)"
        )
    return int(text)


def _check_host(value: Any, source: str) -> str:
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


def _check_credentials(
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
