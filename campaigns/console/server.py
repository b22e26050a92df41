"""The console's uvicorn server: bound before it serves, so a taken port is one clear line."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime

import uvicorn

from campaigns.console.app import DEFAULT_HOST, DEFAULT_PORT, create_app
from campaigns.storage.store import Store
from campaigns.web.listen import BoundServer, listening_socket

__all__ = ["ConsoleServer", "make_server", "serve_console"]


class ConsoleServer(BoundServer):
    """The console's uvicorn, on its socket bound beforehand."""

    def run_console(self) -> None:
        """Serve until stopped (Ctrl+C, or `should_exit` from another thread)."""
        self.serve_bound()


def make_server(
    store: Store,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    clock: Callable[[], datetime] | None = None,
) -> ConsoleServer:
    """Bind the socket (port 0: any free port); `run_console()` serves."""
    sock = listening_socket(host, port)
    config = uvicorn.Config(
        create_app(store, clock=clock, host=host),
        log_level="warning",
        access_log=False,  # an access log line would carry set-up tokens in paths
        ws="none",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    return ConsoleServer(config, sock)


def serve_console(
    store: Store,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    announce: Callable[[str], None] = print,
) -> None:
    """`dripmail console`: serve until Ctrl+C."""
    server = make_server(store, host=host, port=port)
    server.on_ready = lambda url: announce(f"console on {url} (Ctrl+C stops it)")
    with contextlib.suppress(KeyboardInterrupt):
        server.run_console()
