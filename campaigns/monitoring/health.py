"""Whether a server's database answers: `/healthz` on `serve` and on the metrics port.

One cheap `SELECT 1` in a thread of its own with a deadline, so a database that hangs
(a dropped packet, not a refused connection) answers 503 in seconds rather than when
TCP gives up. While one probe still hangs no other is started: probes never pile up.
The reason a check gives is short and names no host, user or password; the log line
beside it names the exception's type only.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from campaigns.storage.store import Store

log = logging.getLogger("dripmail.health")

DEFAULT_TIMEOUT = 2.0  # seconds: well inside a load balancer's or systemd's own probe timeout


class DatabaseCheck:
    """Asks the store's database for `SELECT 1`; `problem()` is None when it answered."""

    def __init__(self, store: Store, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.store = store
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pending: Future[str | None] | None = None

    def problem(self) -> str | None:
        """None when the database answered within the timeout, else a short reason."""
        with self._lock:
            if self._pending is None or self._pending.done():
                self._pending = Future()
                # A daemon thread, not an executor's: a probe hung on a dead server must
                # not hold up the process's exit.
                threading.Thread(
                    target=self._run, args=(self._pending,), name="dripmail-health", daemon=True
                ).start()
            pending = self._pending
        try:
            return pending.result(timeout=self.timeout)
        except FutureTimeout:
            return f"the database did not answer within {self.timeout:g} s"

    def _run(self, pending: Future[str | None]) -> None:
        try:
            pending.set_result(self._probe())
        except Exception as exc:  # never leave a waiting /healthz without an answer
            log.warning("health: the check failed (%s)", type(exc).__name__)
            pending.set_result("the database check failed")

    def _probe(self) -> str | None:
        path = self.store.path
        if path is not None and not path.is_file():
            # SQLite would make an empty database there on the next connection.
            log.warning("health: the SQLite database file is missing")
            return "the database file is missing"
        try:
            with self.store.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            log.warning("health: the database did not answer (%s)", type(exc).__name__)
            return "the database is unreachable"
        return None
