"""A listening socket bound before uvicorn starts, so a port in use is one clear line."""

from __future__ import annotations

import socket

from campaigns.errors import ConfigurationError

__all__ = ["listening_socket"]


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
