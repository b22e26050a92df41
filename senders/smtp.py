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

The connection (TLS, login, reuse) is senders.smtp_connection's, the reading of replies
senders.smtp_replies'; this module holds the sender and its MAIL/RCPT/DATA transaction.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

from campaigns.authoring.sender_settings import SmtpSenderSettings
from campaigns.settings import (
    SMTP_HOST_ENV,
    SMTP_PORT_ENV,
    SMTP_SECURITY_ENV,
    SMTP_USERNAME_ENV,
    Settings,
)
from senders.addresses import NO_SMTPUTF8, wire_address
from senders.base import (
    Message,
    Outcome,
    Sender,
    SenderConfigurationError,
    SenderError,
    SendResult,
)
from senders.mime import to_bytes
from senders.retry import backoff
from senders.smtp_connection import (
    DEFAULT_PORTS,
    SmtpConnection,
    check_credentials,
    check_host,
    check_port,
    check_security,
)
from senders.smtp_replies import (
    Misconfigured,
    Reply,
    Trouble,
    closing,
    reason,
    refused_recipient,
    refused_sender,
    reply_text,
)

log = logging.getLogger("dripmail.smtp")

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_WAIT = 60.0
# RFC 5321 4.5.3.2.6 asks a client to wait up to 10 minutes for the reply to the final
# "." because the server may scan the message first. Giving up early makes the outcome
# ambiguous, so that one reply gets a longer timeout than the other commands (bounded
# well under the dispatcher's lease).
DATA_END_TIMEOUT = 60.0
BACKOFF_BASE = 1.0


class SmtpSender(Sender):
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
        self.security = check_security(security, "security")
        self.host = check_host(host, "host")
        self.port = DEFAULT_PORTS[self.security] if port is None else check_port(port, "port")
        self.username = username or None
        password = password or None
        check_credentials(self.username, password, self.security, self.host, "username")
        self.timeout = float(timeout)
        self.max_attempts = max(1, int(max_attempts))
        self.max_wait = max(0.0, float(max_wait))
        self.local_hostname = local_hostname
        self._sleep = sleep
        self._connection = SmtpConnection(
            self.host,
            self.port,
            security=self.security,
            username=self.username,
            password=password,
            timeout=self.timeout,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
        )
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
        host = check_host(host, host_from)
        port = None if port is None else check_port(port, port_from)
        security = check_security(security or "starttls", security_from)
        check_credentials(username, password, security, host, username_from)
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
            self._connection.drop_if_stale()
        for message in messages:
            if stop is not None:
                results.append(_result(message, Outcome.TRANSIENT, error=stop, attempts=0))
                continue
            try:
                result, unreachable = self._deliver(message, batch)
            except Misconfigured as problem:
                self._connection.discard()
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
            sender, sender_utf8 = _envelope_address(message.return_path or message.from_address)
            rcpt, rcpt_utf8 = _envelope_address(message.to_address)
        except ValueError as exc:
            return _result(message, Outcome.PERMANENT, error=str(exc)), False
        utf8 = sender_utf8 or rcpt_utf8
        try:
            # CRLF line ends; CR/LF in header values already removed. With `utf8` the
            # headers may hold the UTF-8 address (RFC 6532); it goes only by SMTPUTF8.
            data = to_bytes(message, utf8=utf8)
        except Exception as exc:  # this message's own data: it fails alone
            return _result(message, Outcome.PERMANENT, error=f"could not build it: {exc}"), False
        trouble: Trouble | None = None
        attempt = 0
        while attempt < self.max_attempts:
            if attempt:
                # A connection that worked and then dropped is usually a server limit on
                # messages per connection: reconnect at once. Anything else backs off.
                wait = (
                    0.0
                    if attempt == 1 and trouble and trouble.dropped
                    else backoff(attempt, BACKOFF_BASE)
                )
                if not batch.wait(wait):
                    break
            attempt += 1
            try:
                smtp = self._connection.get()
                if utf8 and not smtp.has_extn("smtputf8"):
                    # RFC 6531 3.4: without the extension such an address cannot go at
                    # all, and no retry changes that. The rest of the batch goes on.
                    log.warning(
                        "delivery %s: not sent: the server does not offer SMTPUTF8",
                        message.delivery_id,
                    )
                    error = (
                        f"not sent: {NO_SMTPUTF8}, and the SMTP server "
                        f"{self._connection.where} does not offer SMTPUTF8"
                    )
                    return _result(message, Outcome.PERMANENT, error=error, attempts=0), False
                self._transaction(smtp, message, sender, rcpt, data, utf8, batch)
            except Reply as reply:
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
            except Trouble as exc:
                self._connection.discard()
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
            # RFC 6531: the UTF-8 address and headers are 8-bit data, as smtplib's own
            # send_message says with BODY=8BITMIME beside SMTPUTF8.
            options.append("SMTPUTF8")
            if smtp.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
        after_data = False
        try:
            code, reply = smtp.mail(sender, options)
            if code != 250:
                self._end_refused(smtp, code, reply)
                refused_sender(code, reply, self._connection.where)
            code, reply = smtp.rcpt(rcpt)
            if code not in (250, 251):
                self._end_refused(smtp, code, reply)
                refused_recipient(code, reply, self._connection.where)
            code, reply = smtp.docmd("DATA")
            if code != 354:
                self._end_refused(smtp, code, reply)
                raise Reply("DATA", code, reply_text(code, reply))
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
            raise Trouble(
                f"the connection to {self._connection.where} dropped: {reason(exc)}",
                brief=f"the connection dropped ({type(exc).__name__})",
                dropped=True,
            ) from None
        if code != 250:
            closing(code, reply)  # 421 after the "." means the message was not taken
            raise Reply("DATA", code, reply_text(code, reply))

    def _end_refused(self, smtp: smtplib.SMTP, code: int, reply: bytes) -> None:
        """A 421 is a drop (raises Trouble); any other refusal ends the transaction."""
        closing(code, reply)
        self._connection.rset(smtp)

    def _final_reply(self, smtp: smtplib.SMTP) -> tuple[int, bytes]:
        sock = smtp.sock
        if sock is not None:
            sock.settimeout(max(self.timeout, DATA_END_TIMEOUT))
        try:
            return smtp.getreply()
        finally:
            if smtp.sock is not None:
                smtp.sock.settimeout(self.timeout)

    def check_login(self) -> None:
        """Open a session (EHLO, STARTTLS when set, AUTH when a username is set), then QUIT:
        what `dripmail doctor` asks of the relay. Sends nothing.

        Raises SenderConfigurationError for what would fail every message (refused
        credentials, no STARTTLS, an untrusted certificate), SenderError for a connection
        that could not be made now.
        """
        try:
            self._connection.get()
        except Misconfigured as problem:
            raise SenderConfigurationError(str(problem)) from None
        except Trouble as trouble:
            raise SenderError(trouble.reason) from None
        finally:
            self._connection.close()

    def close(self) -> None:
        """QUIT the connection, if one is open; the sender reconnects if used again."""
        self._connection.close()


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


def _envelope_address(address: str) -> tuple[str, bool]:
    """The address for MAIL/RCPT (domain as A-label) and whether it needs SMTPUTF8."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c in address for c in "\r\n<> \t\0"):
        raise ValueError("not a deliverable address")
    return wire_address(address)
