"""The studio's uvicorn server: bound before it serves, its event streams ended on stop."""

from __future__ import annotations

import contextlib
import socket
import threading
import webbrowser
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import uvicorn

from campaigns.studio.app import DEFAULT_HOST, DEFAULT_PORT, create_app
from campaigns.studio.state import Studio
from campaigns.web.listen import BoundServer, listening_socket

__all__ = ["StudioServer", "make_server", "serve_studio"]


class StudioServer(BoundServer):
    """uvicorn, ending the studio's event streams first so that stopping is immediate."""

    def __init__(self, config: uvicorn.Config, studio: Studio, sock: socket.socket) -> None:
        super().__init__(config, sock)
        self.studio = studio

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.studio.close_streams()
        await super().shutdown(sockets)

    def run_studio(self) -> None:
        """Serve until stopped (Ctrl+C, or `should_exit` from another thread)."""
        self.serve_bound()


def make_server(
    folder: Path | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    db: str | None = None,
    sender: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> StudioServer:
    """Load the folder and bind the socket (port 0: any free port); `run_studio()` serves."""
    studio = Studio(folder, db=db, sender=sender, clock=clock)
    sock = listening_socket(host, port)
    config = uvicorn.Config(
        create_app(studio, host=host),
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return StudioServer(config, studio, sock)


def serve_studio(
    folder: Path | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    db: str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """`dripmail preview`: serve the studio until Ctrl+C."""
    server = make_server(folder, host=host, port=port, db=db)

    def ready(url: str) -> None:
        announce(f"studio for {server.studio.folder} on {url} (Ctrl+C stops it)")
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    server.on_ready = ready
    # uvicorn stops cleanly on Ctrl+C, then raises the signal again for its caller.
    with contextlib.suppress(KeyboardInterrupt):
        server.run_studio()
