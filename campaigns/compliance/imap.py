"""An IMAP mailbox for `dripmail mailbox read --imap`: unseen mails, \\Seen flags, IDLE.

The URL is `imaps://user@host[:993]/MAILBOX` (implicit TLS) or `imap://user@host[:143]/
MAILBOX` (STARTTLS, which is required unless the host is this machine); the password
comes from DRIPMAIL_IMAP_PASSWORD (campaigns/settings.py), never from the URL.

A mail dripmail acted on is flagged \\Seen, and only UNSEEN mails are read, so a second
reading finds nothing new; a mail left for a person stays unseen (IMAP has no "moved to
cur/" as a Maildir has). IDLE (RFC 2177) is done with imaplib's own send/readline: the
standard library's imaplib has no IDLE before Python 3.14. The wait is on the socket
(select), never a sleep, so a new mail is read as soon as the server says EXISTS; IDLE
is re-issued every `IDLE_SECONDS` (RFC 2177 asks at most 29 minutes).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from campaigns.errors import ConfigurationError, InputError
from campaigns.settings import IMAP_PASSWORD_ENV
from senders.base import is_loopback

log = logging.getLogger("dripmail.mailbox")

DEFAULT_PORTS = {"imaps": 993, "imap": 143}
IDLE_SECONDS = 25 * 60
TIMEOUT = 30.0  # each command's answer
MAX_MAIL_BYTES = 10 * 1024 * 1024  # a bounce returns the original; ours carry no files
_TAG = b"DRIPIDLE"


@dataclass(frozen=True)
class ImapAddress:
    """Where the mailbox is: from `imaps://user@host:993/INBOX`."""

    scheme: str
    host: str
    port: int
    user: str
    mailbox: str

    def __str__(self) -> str:  # no password: it is never in the URL
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.mailbox}"


def parse_imap_url(url: str) -> ImapAddress:
    """The mailbox an `--imap` URL names; InputError naming the option when it is not one."""
    parts = urlsplit(url.strip())
    problem = None
    if parts.scheme not in DEFAULT_PORTS:
        problem = "start it with imaps:// (or imap:// for STARTTLS)"
    elif not parts.hostname or not parts.username:
        problem = "name the user and the host, like imaps://bounces@mail.clinic.example/INBOX"
    elif parts.password is not None:
        problem = "leave the password out of the URL: set DRIPMAIL_IMAP_PASSWORD"
    else:
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            problem = "the port must be a number from 1 to 65535"
    if problem is not None:
        shown = "the URL" if parts.password is not None else repr(url)  # never the password
        raise InputError(f"{shown}: {problem}", field="--imap")
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapAddress(parts.scheme, parts.hostname, port, unquote(parts.username), mailbox)


class ImapMailbox:
    """One logged-in IMAP connection with its mailbox selected (read-write)."""

    def __init__(
        self,
        address: ImapAddress,
        password: str | None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        if not password:
            raise ConfigurationError(
                f"no IMAP password: set {IMAP_PASSWORD_ENV} for {address.user} at {address.host}"
            )
        self.address = address
        self.conn = self._connect(address, ssl_context, timeout)
        try:
            self.conn.login(address.user, password)
        except imaplib.IMAP4.error:
            self.close()
            raise ConfigurationError(
                f"the IMAP server {address.host}:{address.port} refused the login of "
                f"{address.user}: check {IMAP_PASSWORD_ENV}"
            ) from None
        answer, _ = self.conn.select(_quoted(address.mailbox))
        if answer != "OK":
            self.close()
            raise ConfigurationError(
                f"the IMAP server {address.host} has no mailbox {address.mailbox!r} for "
                f"{address.user}"
            )

    @staticmethod
    def _connect(
        address: ImapAddress, context: ssl.SSLContext | None, timeout: float
    ) -> imaplib.IMAP4:
        where = f"{address.host}:{address.port}"
        context = context or ssl.create_default_context()
        try:
            if address.scheme == "imaps":
                return imaplib.IMAP4_SSL(
                    address.host, address.port, ssl_context=context, timeout=timeout
                )
            conn = imaplib.IMAP4(address.host, address.port, timeout=timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ConfigurationError(f"cannot reach the IMAP server {where}: {exc}") from None
        if "STARTTLS" in conn.capabilities:
            try:
                conn.starttls(ssl_context=context)
            except (OSError, imaplib.IMAP4.error) as exc:
                raise ConfigurationError(f"STARTTLS with {where} failed: {exc}") from None
        elif not is_loopback(address.host):
            # A password in the clear over the network: refuse, as the SMTP sender does.
            conn.shutdown()
            raise ConfigurationError(
                f"the IMAP server {where} offers no STARTTLS: use imaps:// (port 993)"
            )
        return conn

    def unseen(self) -> list[int]:
        """The UIDs of every mail not flagged \\Seen, oldest first."""
        answer, data = self.conn.uid("SEARCH", "UNSEEN")
        if answer != "OK" or not data or not data[0]:
            return []
        return sorted(int(uid) for uid in data[0].split())

    def fetch(self, uid: int) -> bytes | None:
        """The mail's bytes without setting \\Seen (BODY.PEEK), or None when too big/gone."""
        answer, data = self.conn.uid("FETCH", str(uid), "(RFC822.SIZE)")
        size = re.search(rb"RFC822\.SIZE (\d+)", data[0] or b"") if answer == "OK" else None
        if size is None or int(size.group(1)) > MAX_MAIL_BYTES:
            return None
        answer, data = self.conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
        for item in data if answer == "OK" else []:
            if isinstance(item, tuple) and len(item) == 2:
                return item[1]
        return None

    def mark_seen(self, uid: int) -> None:
        self.conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)")

    def idle(
        self,
        seconds: float,
        wake: socket.socket | None = None,
        *,
        on_waiting: Callable[[], object] | None = None,
    ) -> bool:
        """Wait in IDLE until the server reports a new mail (True), `seconds` pass, or
        `wake` becomes readable (False). The connection is usable afterwards.
        `on_waiting` is called once the server has accepted the IDLE."""
        tag = _TAG + str(time.monotonic_ns()).encode()
        self.conn.send(tag + b" IDLE\r\n")
        line = self.conn.readline()
        if not line.startswith(b"+"):
            raise imaplib.IMAP4.abort(f"IDLE refused: {line[:100]!r}")
        if on_waiting is not None:
            on_waiting()
        news = False
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(self.conn.socket(), selectors.EVENT_READ, "server")
            if wake is not None:
                selector.register(wake, selectors.EVENT_READ, "wake")
            while not news:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if not self._buffered():
                    ready = {key.data for key, _ in selector.select(left)}
                    if not ready or "wake" in ready:
                        break
                line = self.conn.readline()
                if not line:
                    raise imaplib.IMAP4.abort("the IMAP server closed the connection")
                if line.startswith(b"* BYE"):
                    raise imaplib.IMAP4.abort("the IMAP server ended the session")
                news = re.match(rb"\* \d+ (EXISTS|RECENT)", line) is not None
        self.conn.send(b"DONE\r\n")
        while True:  # the rest of the IDLE's answers, up to its tagged completion
            line = self.conn.readline()
            if not line:
                raise imaplib.IMAP4.abort("the IMAP server closed the connection")
            if line.startswith(tag):
                return news
            news = news or re.match(rb"\* \d+ (EXISTS|RECENT)", line) is not None

    def _buffered(self) -> bool:
        """Whether an answer is already read from the socket (select would not see it)."""
        sock = self.conn.socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            # Returns what the buffer holds, or reads what the kernel has; never waits.
            return bool(self.conn.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            sock.settimeout(timeout)

    def close(self) -> None:
        """Log out (best effort: the server may be gone)."""
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self.conn.logout()


def _quoted(mailbox: str) -> str:
    # RFC 3501 quoted string: a mailbox name may hold spaces.
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
