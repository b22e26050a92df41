"""`benchmarks/run.py latency`: sign-up request to hand-off, with a running worker.

Per database (a SQLite file; a fresh PostgreSQL database) two real processes run as
in production: `dripmail serve` (the sign-up API) and `dripmail run --interval 30s
--sender file`, whose interval is long on purpose: only the wake-up (NOTIFY, or the
SQLite probe) can make a hand-off fast. Sign-ups are POSTed over HTTP, spread at
20 per second, and then 500 (100 with --quick) all at once from 16 threads. A
sign-up's latency is from just before its request to the file sender's write of its
welcome (the .eml file's mtime, same machine clock). Also the cost of the SQLite
probe (`anything_due`) on a table of 20,000 deliveries.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

import httpx

from campaigns.authoring.spec import Campaign
from campaigns.delivery.wakeups import anything_due
from campaigns.storage.publish import publish
from campaigns.storage.store import Store, utcnow

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "benchmark-token"
RATE = 20.0  # spread sign-ups per second
BURST_THREADS = 16
Report = Callable[[str, float, str, str], None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Lines:
    """A child's stdout, read by a thread: the `dripmail run` lines, one per tick."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.first = threading.Event()
        assert child.stdout is not None
        self.thread = threading.Thread(target=self._read, args=(child.stdout,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            if line.startswith("sent "):
                self.lines.append(line)
                self.first.set()

    @property
    def ticks(self) -> int:
        return len(self.lines)


def _cli(*args: str, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DRIPMAIL_API_TOKEN": TOKEN}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def _stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def _running(url: str, work: Path) -> Iterator[tuple[str, _Lines]]:
    """`dripmail serve` and `dripmail run` on `url`; yields the API's base URL and the
    worker's tick lines, once the server answers and the worker's first tick is done."""
    port = _free_port()
    serve = _cli("serve", "--db", url, "--port", str(port), log=work / "serve.log")
    worker = _cli(
        "run",
        "--db",
        url,
        "--interval",
        "30s",
        "--sender",
        "file",
        "--outbox",
        str(work / "outbox"),
        log=work / "run.log",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or serve.poll() is not None:
                raise RuntimeError(f"serve did not start: {(work / 'serve.log').read_text()}")
            time.sleep(0.1)
        lines = _Lines(worker)
        if not lines.first.wait(60):
            raise RuntimeError(f"run did not tick: {(work / 'run.log').read_text()}")
        yield base, lines
    finally:
        _stop(worker)
        _stop(serve)


def _sign_up(client: httpx.Client, base: str, email: str) -> float:
    """POST one sign-up; returns the time (epoch s) just before the request."""
    started = time.time()
    answer = client.post(
        f"{base}/api/v1/enrollments",
        json={
            "email": email,
            "timezone": "UTC",
            "campaign": "ketamine-and-sleep",
            "consent": {"source": "benchmark form", "text": "Yes, email me"},
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    if answer.status_code != 201:
        raise RuntimeError(f"sign-up refused: {answer.status_code} {answer.text}")
    return started


def _handed_off(outbox: Path, expected: set[str], timeout: float = 120) -> dict[str, float]:
    """Address -> hand-off time (the welcome's .eml mtime), once all `expected` are there."""
    parser = BytesHeaderParser(policy=policy.default)
    seen: dict[str, float] = {}
    read: set[str] = set()
    deadline = time.monotonic() + timeout
    while not expected <= set(seen):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(expected - set(seen))} welcomes never handed off")
        for path in outbox.glob("*.eml") if outbox.is_dir() else ():
            if path.name in read:
                continue
            read.add(path.name)
            with path.open("rb") as handle:
                to = str(parser.parse(handle)["To"])
            address = to.rsplit("<", 1)[-1].rstrip(">").strip().lower()
            seen[address] = path.stat().st_mtime
        time.sleep(0.2)
    return {address: seen[address] for address in expected}


def _latencies(base: str, outbox: Path, prefix: str, count: int, *, burst: bool) -> list[float]:
    """Seconds from request to hand-off of `count` new sign-ups, spread or all at once."""
    emails = [f"{prefix}{index}@example.com" for index in range(count)]
    with httpx.Client(timeout=60) as client:
        if burst:
            with ThreadPoolExecutor(BURST_THREADS) as pool:
                times = list(pool.map(lambda e: _sign_up(client, base, e), emails))
        else:
            start, times = time.monotonic(), []
            for index, email in enumerate(emails):
                wait = start + index / RATE - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                times.append(_sign_up(client, base, email))
    handed = _handed_off(outbox, set(emails))
    return [handed[email] - at for email, at in zip(emails, times, strict=True)]


def _percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def measure(
    label: str, url: str, campaign: Campaign, work: Path, count: int, report: Report, command: str
) -> None:
    """Spread and burst latencies on one database, printed as p50/p95/max and ticks."""
    store = Store(url)
    with store.begin() as conn:
        publish(conn, campaign, now=utcnow())
    store.close()
    with _running(url, work) as (base, lines):
        for kind, burst in (("spread 20/s", False), ("burst", True)):
            before = lines.ticks
            seconds = _latencies(base, work / "outbox", f"{kind[0]}", count, burst=burst)
            name = f"latency: {label}, {count} sign-ups {kind}, request to hand-off"
            for percent in (50, 95):
                report(f"{name} p{percent}", _percentile(seconds, percent), "s", command)
            report(f"{name} max", max(seconds), "s", command)
            report(
                f"latency: {label}, {kind}: worker ticks", lines.ticks - before, "ticks", command
            )


def probe_cost(store: Store, report: Report, command: str, *, held: str | None = None) -> None:
    """Microseconds per `anything_due` on `store`: nothing due, and (with `held`) every
    due row in a campaign the last tick kept back, which the probe walks past."""
    now = utcnow()
    cases = [("nothing due", now - timedelta(days=365), (), None)]
    if held:
        # As a worker probes after a tick that kept `held` back: rows due since it count.
        cases.append((f"every due row held ({held})", now, (held,), now - timedelta(minutes=1)))
    for name, at, skip, after in cases:
        with store.connect() as conn:
            anything_due(conn, at, held=skip, after=after)
            calls, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < 1.0:
                anything_due(conn, at, held=skip, after=after)
                calls += 1
        report(f"latency: SQLite probe anything_due, {name}", elapsed / calls * 1e6, "us", command)
