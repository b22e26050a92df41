"""The console's uvicorn server: bound before it serves, so a taken port is one clear line."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from datetime import datetime

import uvicorn

from campaigns.console.app import DEFAULT_HOST, DEFAULT_PORT, create_app
from campaigns.storage.store import Store
from campaigns.web.listen import listening_socket

__all__ = ["ConsoleServer", "make_server", "serve_console"]


class ConsoleServer(uvicorn.Server):
    """uvicorn on a socket bound beforehand; `on_ready` hears the URL once it serves."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket) -> None:
        super().__init__(config)
        self.socket = sock
        self.on_ready: Callable[[str], None] | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        if host in ("0.0.0.0", "::"):  # every address: this machine's is one of them
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready(self.url)

    def run_console(self) -> None:
        """Serve until stopped (Ctrl+C, or `should_exit` from another thread)."""
        self.run(sockets=[self.socket])


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
