"""Telling a service manager how a long-running command is doing: systemd's sd_notify.

Under a unit with `Type=notify`, systemd passes NOTIFY_SOCKET (read in settings.py) and
waits for `READY=1` before it calls the service started; `STOPPING=1` says a stop was
asked for and is under way, `STATUS=...` is the line `systemctl status` shows. The
protocol is one datagram of `KEY=value` lines to an AF_UNIX socket; an address starting
with `@` is in the abstract namespace (a NUL byte first). Without NOTIFY_SOCKET (a
terminal, a test, another supervisor) every call does nothing. A lost notification never
stops the work: systemd would say so itself (a start that times out), so errors are logged.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger("dripmail.notify")


class Notifier:
    """Sends sd_notify lines to the socket named by NOTIFY_SOCKET (None: sends nothing)."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send `lines` as one datagram; True when it went (False: no socket, or it failed)."""
        if self.address is None or not lines:
            return False
        # sd_notify(3): "@" stands for the abstract namespace's leading NUL byte.
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        payload = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, target)
        except OSError as exc:
            log.warning("could not notify the service manager at %s: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """The service is up: the worker is about to claim, the server is listening."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        """A stop was asked for: finishing what is in hand, then exiting."""
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """One line for `systemctl status` (no address or name: opaque counts only)."""
        return self.send(f"STATUS={text}")


NOBODY = Notifier(None)
