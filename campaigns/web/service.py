"""`serve` as a service: uvicorn that says READY=1 once listening, and stops on SIGTERM with exit 0.

On SIGTERM (systemd's stop, `docker stop`) uvicorn stops accepting, lets requests in
progress finish, runs the app's shutdown, and then raises the signal again for its
caller; with the default handler back in place that ends the process *by* SIGTERM
(exit status 143) after a clean stop. Here the signal is taken as the stop that was
asked for, so `serve` exits 0 as `run` does.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn

from campaigns.notify import NOBODY, Notifier

log = logging.getLogger("dripmail.web")


class ServiceServer(uvicorn.Server):
    """uvicorn telling `notifier` when it is listening and when it is stopping."""

    def __init__(self, config: uvicorn.Config, notifier: Notifier = NOBODY) -> None:
        super().__init__(config)
        self.notifier = notifier

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.notifier.ready("answering requests")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.notifier.stopping("finishing the requests in progress")
        await super().shutdown(sockets)

    def serve_until_stopped(self, sock: socket.socket) -> None:
        """Serve on `sock` until SIGTERM or Ctrl+C, then return (no exception, no signal)."""
        with _sigterm_is_a_stop(), contextlib.suppress(KeyboardInterrupt):
            self.run(sockets=[sock])


@contextlib.contextmanager
def _sigterm_is_a_stop() -> Iterator[None]:
    """While serving, SIGTERM's own handler is uvicorn's; the one it raises again after its
    clean stop lands here and only logs, so the process ends with exit 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: log.info("stopped on SIGTERM"))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
