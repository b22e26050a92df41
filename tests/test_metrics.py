"""Prometheus metrics and /healthz: a real worker and a real `serve`, scraped over HTTP.

The worker (`dripmail run`, looping on the real clock) and `serve` run as processes with
`--metrics-port 0`; each says which port it got. The tests scrape, let the campaign send
(more sign-ups), scrape again and compare, and look for every address, name and token
they enrolled in everything scraped. Nothing sleeps for a set time: each wait polls the
metrics with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from campaigns.delivery.dispatcher import Dispatcher
from campaigns.monitoring.exporter import MetricsServer
from campaigns.monitoring.metrics import Metrics
from campaigns.settings import Settings
from campaigns.storage.store import Store
from campaigns.web.app import create_app
from tests.real_clock import always_open_campaign, open_zone
from tests.sendgrid_server import Fault, SendGridServer
from tests.test_sendgrid import NOW as SENDGRID_NOW
from tests.test_sendgrid import FakeTime, enroll_many, sender_factory
from tests.unit.test_sendgrid import KEY

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 120.0  # seconds: a bound for a slow CI machine, never a measured duration

# Contacts a label must never show: addresses (one internationalised), names with an
# apostrophe and accents, as a clinic's sign-up form gets them.
FIRST = [
    ("quintessa.vandermeer+sleep@metrics-probe.example", "Quintessa"),
    ("o'brien-smith@metrics-probe.example", "Siobhán"),
    ("zoë.kowalczyk@bücher-probe.example", "Zoë"),
]
MORE = [
    ("bartholomew.ngata@metrics-probe.example", "Bartholomew"),
    ("ijeoma.okonkwo-adeyemi@metrics-probe.example", "Ijeoma"),
    ("x7k2q9@metrics-probe.example", "Ólafur"),
]


# -- the processes --------------------------------------------------------------------------


class Running:
    """A dripmail process; its output lines gathered by threads, so a wait never blocks."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first output line matching `pattern` (polling with the deadline)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            for line in self.seen:
                if found := re.search(pattern, line):
                    return found
            assert self.process.poll() is None or not self.lines.empty(), "".join(self.seen)
            assert time.monotonic() < deadline, f"no line like {pattern!r}:\n{''.join(self.seen)}"
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=0.2))

    def stop(self) -> str:
        """SIGTERM, then its whole output."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        time.sleep(0)  # let the reader threads see end of file
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


@pytest.fixture
def started() -> Iterator[Callable[..., Running]]:
    """Start dripmail processes; none outlives its test."""
    processes: list[Running] = []

    def start(args: list[str], cwd: Path, env: dict[str, str]) -> Running:
        process = Running(args, cwd, env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


def sign_up(folder: Path, cwd: Path, env: dict[str, str], people: list[tuple[str, str]]) -> None:
    """`dripmail import` of these people, signed up now (real clock)."""
    zone = open_zone()
    csv_file = cwd / f"signups-{len(list(cwd.glob('signups-*.csv')))}.csv"
    csv_file.write_text(
        "email,first_name,timezone,consent\n"
        + "".join(f"{email},{name},{zone},clinic sign-up form\n" for email, name in people),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "cli", "import", str(folder), str(csv_file)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- scraping -------------------------------------------------------------------------------


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[str, Samples]:
    """The /metrics text and its samples by (name, labels)."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels`."""
    return sum(
        v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have)
    )


def poll(url: str, ready: Callable[[Samples], bool]) -> tuple[str, Samples]:
    """Scrape until `ready` holds (with the deadline)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        text, samples = scrape(url)
        if ready(samples):
            return text, samples
        assert time.monotonic() < deadline, text
        time.sleep(0.2)


SENT = "dripmail_provider_answers_total"


# -- a worker and serve, while a campaign sends -----------------------------------------------


def test_a_worker_and_serve_are_scraped_while_a_campaign_sends_and_no_label_names_anyone(
    tmp_path: Path, started
):
    folder = always_open_campaign(tmp_path / "clinic")
    db = tmp_path / "dripmail.db"
    env = {**os.environ, "DRIPMAIL_DATABASE_URL": str(db), "COLUMNS": "200"}
    sign_up(folder, tmp_path, env, FIRST[:1])

    worker = started(["run", "--interval", "1s", "--metrics-port", "0"], tmp_path, env)
    worker_url = worker.wait_for(r"metrics: (http://127\.0\.0\.1:\d+/metrics)").group(1)
    server = started(["serve", "--port", "0", "--metrics-port", "0"], tmp_path, env)
    serve_base = server.wait_for(r"serving on (http://127\.0\.0\.1:\d+)").group(1)
    serve_url = server.wait_for(r"metrics on (http://127\.0\.0\.1:\d+/metrics)").group(1)
    scraped: list[str] = []

    # First: one contact's first email has gone.
    text, before = poll(worker_url, lambda s: value(s, SENT, **{"class": "sent"}) == 1)
    scraped.append(text)
    assert value(before, "dripmail_handoffs_total", campaign="ketamine-and-sleep") >= 1
    assert value(before, "dripmail_handoff_duration_seconds_count", sender="file") >= 1
    assert value(before, "dripmail_deliveries", status="sent") == 1
    assert value(before, "dripmail_queue_deliveries", when="later") == 5  # steps 2-6
    assert value(before, "dripmail_queue_deliveries", when="due") == 0
    assert value(before, "dripmail_queue_oldest_due_age_seconds") == 0
    assert value(before, "dripmail_database_up") == 1
    beat = value(before, "dripmail_worker_last_tick_timestamp_seconds", worker="0")
    assert beat > 0
    text, serve_before = scrape(serve_url)
    scraped.append(text)
    assert value(serve_before, "dripmail_deliveries", status="sent") == 1
    assert value(serve_before, "dripmail_unsubscribes_total", scope="all") == 0
    assert value(serve_before, "dripmail_suppressions") == 0

    # More sign-ups: the worker sends their first emails; every count moves.
    sign_up(folder, tmp_path, env, FIRST[1:] + MORE)
    text, after = poll(
        worker_url,
        lambda s: (
            value(s, SENT, **{"class": "sent"}) == 1 + len(FIRST[1:] + MORE)
            and value(s, "dripmail_worker_last_tick_timestamp_seconds", worker="0") > beat
        ),
    )
    scraped.append(text)
    assert value(after, "dripmail_deliveries", status="sent") == 6
    assert value(after, "dripmail_queue_deliveries", when="later") == 30
    assert value(after, "dripmail_handoffs_total") > value(before, "dripmail_handoffs_total")
    assert value(after, "dripmail_handoff_duration_seconds_count") > value(
        before, "dripmail_handoff_duration_seconds_count"
    )
    assert value(after, SENT, **{"class": "failed"}) == 0
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 6

    # A patient unsubscribes with one click: serve counts it, the suppressions gauge moves.
    eml = sorted((tmp_path / "outbox").glob("*.eml"))[0].read_text(encoding="utf-8")
    token = re.search(r"/u/([A-Za-z0-9._-]+)", eml).group(1)
    answer = httpx.post(
        f"{serve_base}/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    text, serve_after = poll(serve_url, lambda s: value(s, "dripmail_suppressions") == 1)
    scraped.append(text)
    assert value(serve_after, "dripmail_unsubscribes_total", scope="all") == 1
    assert value(serve_after, "dripmail_deliveries", status="sent") == 6
    assert value(serve_after, "dripmail_deliveries", status="cancelled") == 5

    # Both servers answer /healthz, with the database there.
    for base in (serve_base, worker_url.removesuffix("/metrics"), serve_url[: -len("/metrics")]):
        health = httpx.get(f"{base}/healthz")
        assert (health.status_code, health.text.strip()) == (200, "ok")

    # Nobody is named anywhere in what was scraped: labels, values, help text.
    everything = "\n".join(scraped)
    for email, name in FIRST + MORE:
        local, domain = email.split("@")
        for secret in (email, local, domain, name):
            assert secret not in everything, secret
    assert token not in everything
    labels = {
        value
        for _, samples in (scrape(worker_url), scrape(serve_url))
        for (_, pairs) in samples
        for _, value in pairs
    }
    assert "@" not in "".join(labels)
    assert {"ketamine-and-sleep", "file", "sent", "0"} <= labels

    # The database file gone: serve's health says so (503), and names no path.
    worker.stop()
    db.rename(tmp_path / "moved.db")
    for base in (serve_base, serve_url.removesuffix("/metrics")):
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 503
        assert health.text.strip() == "the database file is missing"
    _, down = scrape(serve_url)
    assert value(down, "dripmail_database_up") == 0
    assert not db.exists()  # the scrape did not make an empty database in its place


def test_the_workers_of_run_workers_are_scraped_on_one_port(postgres_url, tmp_path, started):
    folder = always_open_campaign(tmp_path / "clinic")
    env = {**os.environ, "DRIPMAIL_DATABASE_URL": postgres_url, "COLUMNS": "200"}
    sign_up(folder, tmp_path, env, FIRST[:1])

    parent = started(
        ["run", "--workers", "2", "--interval", "1s", "--metrics-port", "0"], tmp_path, env
    )
    url = parent.wait_for(r"metrics: (http://127\.0\.0\.1:\d+/metrics)").group(1)

    def both_alive(s):
        return (
            value(s, "dripmail_worker_last_tick_timestamp_seconds", worker="0") > 0
            and value(s, "dripmail_worker_last_tick_timestamp_seconds", worker="1") > 0
        )

    _, before = poll(url, lambda s: value(s, SENT, **{"class": "sent"}) == 1 and both_alive(s))

    sign_up(folder, tmp_path, env, FIRST[1:] + MORE)
    text, after = poll(url, lambda s: value(s, SENT, **{"class": "sent"}) == 6)
    assert value(after, "dripmail_deliveries", status="sent") == 6
    assert value(after, "dripmail_handoffs_total") > value(before, "dripmail_handoffs_total")
    assert value(after, "dripmail_queue_deliveries", when="later") == 30
    for email, name in FIRST + MORE:
        assert email not in text and name not in text
    assert httpx.get(url.replace("/metrics", "/healthz")).text.strip() == "ok"
    log = parent.stop()
    assert parent.process.returncode == 0, log


# -- /healthz ---------------------------------------------------------------------------------


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on (bound, so no other test takes it meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_healthz_is_ok_when_the_database_answers(store: Store):
    client = TestClient(create_app(store))
    answer = client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok")
    exporter = MetricsServer(Metrics(), store, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{exporter.port}"
        assert httpx.get(f"{base}/healthz").text.strip() == "ok"
        _, samples = scrape(f"{base}/metrics")
        assert value(samples, "dripmail_database_up") == 1
        assert httpx.get(f"{base}/other").status_code == 404
    finally:
        exporter.close()


def test_healthz_is_503_when_postgresql_does_not_answer(closed_port: int):
    password = "pg-secret-not-for-bodies"
    url = f"postgresql+psycopg://clinic:{password}@127.0.0.1:{closed_port}/dripmail"
    settings = Settings.from_env({"DRIPMAIL_SECRET_KEY": "signing-key-for-the-test"})
    store = Store(url, migrate=False, settings=settings)  # nothing to connect to
    try:
        answer = TestClient(create_app(store)).get("/healthz")
        assert answer.status_code == 503
        assert answer.text == "the database is unreachable"
        exporter = MetricsServer(Metrics(), store, "127.0.0.1", 0)
        try:
            base = f"http://127.0.0.1:{exporter.port}"
            health = httpx.get(f"{base}/healthz")
            assert (health.status_code, health.text.strip()) == (503, "the database is unreachable")
            text, samples = scrape(f"{base}/metrics")  # still a scrape, saying the database is down
            assert value(samples, "dripmail_database_up") == 0
            for body in (answer.text, health.text, text):
                assert password not in body and str(closed_port) not in body
        finally:
            exporter.close()
    finally:
        store.close()


def test_a_metrics_port_in_use_is_one_line(tmp_path: Path):
    Store(str(tmp_path / "d.db")).close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cli", "run", "--once", "--metrics-port", str(port)],
            cwd=tmp_path,
            env={**os.environ, "DRIPMAIL_DATABASE_URL": str(tmp_path / "d.db")},
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} for metrics: Address already in use "
        "(pick another --metrics-port)"
    ]


# -- provider answers by class, from a real sender ----------------------------------------


@pytest.mark.sqlite_only
def test_each_class_of_provider_answer_is_counted_from_a_real_sendgrid_run(
    store: Store, clinic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DRIPMAIL_PUBLIC_URL", "https://mail.clinic.example")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    enroll_many(store, clinic, tmp_path, 5)
    fake = FakeTime()
    metrics = Metrics()
    exporter = MetricsServer(metrics, store, "127.0.0.1", 0)
    try:
        with SendGridServer(KEY) as server, sender_factory(batch=False) as senders:
            server.script(
                Fault.rate_limited(int(fake.now) + 3600),  # past max_wait: at the reset
                Fault.error(503),  # out of this run's attempts: later
                Fault.error(400, "bad request"),  # refused: failed
                Fault.drop(),  # the answer lost: unknown
            )
            sender = senders(server, fake, max_attempts=1, max_wait=60)
            Dispatcher(store, lambda _campaign: sender, observer=metrics.worker(0)).run(
                now=SENDGRID_NOW
            )
        text, samples = scrape(f"http://127.0.0.1:{exporter.port}/metrics")
    finally:
        exporter.close()

    answers = {
        kind: value(samples, SENT, campaign=clinic.name, sender="sendgrid", **{"class": kind})
        for kind in ("sent", "rate_limited", "retried", "failed", "unknown")
    }
    assert answers == {"sent": 1, "rate_limited": 1, "retried": 1, "failed": 1, "unknown": 1}
    assert value(samples, "dripmail_handoffs_total", sender="sendgrid") >= 1
    assert value(samples, "dripmail_handoff_duration_seconds_count", sender="sendgrid") >= 1
    assert value(samples, "dripmail_deliveries", status="scheduled") == 2 + 5 * 5  # retries
    assert "patient00" not in text and "Pat0" not in text
