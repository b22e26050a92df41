"""A listening socket bound before uvicorn starts, so a port in use is one clear line."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn

from campaigns.errors import ConfigurationError

__all__ = ["BoundServer", "listening_socket"]


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port (port 0: any free port); ConfigurationError when taken.

    uvicorn binding by itself reports a taken port as an error log and exit 3; binding
    here first lets `serve` and `preview` say it in one line and exit 2 like every command.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (pick another --port)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class BoundServer(uvicorn.Server):
    """uvicorn on a socket bound beforehand; `on_ready` hears the URL once it serves
    (the studio's and the console's servers)."""

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

    def serve_bound(self) -> None:
        """Serve until stopped (Ctrl+C, or `should_exit` from another thread)."""
        self.run(sockets=[self.socket])
