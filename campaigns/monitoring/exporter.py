"""The metrics port: `/metrics` for Prometheus and `/healthz`, on loopback by default.

A worker and `serve` each open one when asked (`--metrics-port`, DRIPMAIL_METRICS_PORT),
served by a thread of their own so a scrape never waits on a hand-off. `run --workers N`
opens one in the parent, which holds every worker's metrics (delivery/workers.py
passes them up): one port and one scrape target per machine. The address is the
clinic's own: loopback unless DRIPMAIL_METRICS_HOST says otherwise (campaign names
and counts are nobody else's business), and nothing on it changes anything.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from campaigns.errors import ConfigurationError
from campaigns.monitoring.health import DatabaseCheck
from campaigns.monitoring.metrics import Metrics
from campaigns.monitoring.store_collector import StoreCollector
from campaigns.settings import METRICS_HOST_ENV, METRICS_PORT_ENV, Settings
from campaigns.storage.store import Store
from senders.base import is_loopback

log = logging.getLogger("dripmail.metrics")

DEFAULT_HOST = "127.0.0.1"

StartResponse = Callable[[str, list[tuple[str, str]]], object]


def metrics_address(settings: Settings, port: int | None = None) -> tuple[str, int] | None:
    """(host, port) of the metrics port: `port` (`--metrics-port`), else
    DRIPMAIL_METRICS_PORT; None when neither is set (metrics are off by default)."""
    host = settings.metrics_host or DEFAULT_HOST
    if port is None and settings.metrics_port is not None:
        text = settings.metrics_port.strip()
        if not text.isdigit() or int(text) > 65535:
            raise ConfigurationError(
                f"{METRICS_PORT_ENV}={settings.metrics_port!r}: give a port number, like 9464"
            )
        port = int(text)
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"--metrics-port {port}: give a port number, like 9464")
    return host, port


class _Quiet(WSGIRequestHandler):
    """No access log: a scrape every few seconds would drown the worker's own lines."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """`metrics` and a database check served on host:port (0: any free port) until closed."""

    def __init__(self, metrics: Metrics, store: Store, host: str, port: int) -> None:
        self.metrics = metrics
        self.check = DatabaseCheck(store)
        metrics.registry.register(StoreCollector(store))
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(
                host.strip("[]"), port, self._app, server_class, handler_class=_Quiet
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port} for metrics: {exc.strerror or exc} "
                "(pick another --metrics-port)"
            ) from None
        self.host = host
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dripmail-metrics", daemon=True
        )
        self._thread.start()
        if not is_loopback(host):
            log.warning(
                "metrics on %s (%s): anyone who reaches it sees campaign names and counts",
                host,
                METRICS_HOST_ENV,
            )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def _app(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        if path == "/healthz":
            problem = self.check.problem()
            body = (problem or "ok").encode() + b"\n"
            status = "503 Service Unavailable" if problem else "200 OK"
            start_response(
                status,
                [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")],
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def open_metrics(
    store: Store, settings: Settings, port: int | None = None, metrics: Metrics | None = None
) -> MetricsServer | None:
    """The metrics port for this process, when `port` or DRIPMAIL_METRICS_PORT asks for one."""
    address = metrics_address(settings, port)
    if address is None:
        return None
    return MetricsServer(metrics or Metrics(), store, *address)
