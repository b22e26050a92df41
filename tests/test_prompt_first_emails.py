"""Prompt first emails: a running worker hands a sign-up's `0d` welcome off at once,
woken by NOTIFY (PostgreSQL) or its one-second probe (SQLite), not by its 30 s tick."""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.delivery.observer import HandedOff, Ticked
from campaigns.delivery.wakeups import Listener, Probe, anything_due, open_wakeup
from campaigns.delivery.workers import WorkerOptions, run_worker, run_workers
from campaigns.planning.enroll import enroll
from campaigns.planning.pause import pause
from campaigns.planning.signups import Signup
from campaigns.storage.publish import publish
from campaigns.storage.store import Store, utcnow
from campaigns.storage.wakeup import announce_due
from campaigns.web.app import create_app
from senders.base import Message, Outcome, Sender, SendResult
from tests.conftest import write_clinic_campaign
from tests.worker_main import counting_senders

TOKEN = "s3cret-token-for-tests"
WAIT = 20.0  # seconds an Event is waited for; the worker's interval is 30 s


def open_around_the_clock(folder: Path) -> Campaign:
    """The clinic campaign, its window 00:00-23:59 so the welcome is due at once, any hour."""
    write_clinic_campaign(folder)
    spec = folder / "campaign.yaml"
    spec.write_text(
        spec.read_text()
        .replace('start: "09:00"', 'start: "00:00"')
        .replace('end: "17:00"', 'end: "23:59"')
    )
    return load_folder(folder)


class Gate(Sender):
    """Counts the messages handed to it; `arrived(n)` is set once n have been; while
    `hold` is clear, a hand-off waits for it (a tick kept busy)."""

    name = "gate"
    batch_limit = 1

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        self.events: dict[int, threading.Event] = {}
        self.hold = threading.Event()
        self.hold.set()
        self.in_send = threading.Event()

    def arrived(self, count: int) -> threading.Event:
        with self.lock:
            event = self.events.setdefault(count, threading.Event())
            if self.count >= count:
                event.set()
            return event

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        self.in_send.set()
        assert self.hold.wait(WAIT), "the test never let the hand-off go on"
        with self.lock:
            self.count += len(messages)
            for count, event in self.events.items():
                if self.count >= count:
                    event.set()
        return [SendResult(m.delivery_id, Outcome.SENT, provider_id="gate") for m in messages]

    def close(self) -> None:
        pass


class Ticks:
    """The observer: counts the ticks that started (start and end alternate)."""

    def __init__(self) -> None:
        self.events = 0
        self.first_done = threading.Event()

    @property
    def started(self) -> int:
        return (self.events + 1) // 2

    def ticked(self, event: Ticked) -> None:
        self.events += 1
        if self.events == 2:
            self.first_done.set()

    def handed_off(self, event: HandedOff) -> None:
        pass


class Worker:
    """`run_worker` in a thread, as `dripmail run` runs it: interval 30 s, real sleep."""

    def __init__(self, store: Store, sender: Gate) -> None:
        self.ticks = Ticks()
        self.stop = threading.Event()
        self.failure: BaseException | None = None

        def run() -> None:
            try:
                for _ in run_worker(
                    store,
                    now=None,
                    once=False,
                    interval=30.0,
                    sender_for=lambda _campaign: sender,
                    stop=self.stop,
                    observer=self.ticks,
                ):
                    pass
            except BaseException as exc:  # shown by the test, not lost in the thread
                self.failure = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.ticks.first_done.wait(WAIT), self.failure

    def close(self) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert self.failure is None, self.failure


@pytest.fixture
def campaign(tmp_path: Path, store: Store) -> Campaign:
    clinic = open_around_the_clock(tmp_path / "clinic")
    with store.begin() as conn:
        publish(conn, clinic, now=utcnow())
    return clinic


@pytest.fixture
def sender() -> Gate:
    return Gate()


@pytest.fixture
def worker(store: Store, campaign: Campaign, sender: Gate) -> Iterator[Worker]:
    running = Worker(store, sender)
    yield running
    running.close()


@pytest.fixture
def client(store: Store, campaign: Campaign) -> Iterator[TestClient]:
    app = create_app(store, environ={"DRIPMAIL_API_TOKEN": TOKEN})
    with TestClient(app) as test_client:
        yield test_client


def sign_up(client: TestClient, number: int) -> None:
    answer = client.post(
        "/api/v1/enrollments",
        json={
            "email": f"patient{number}@example.com",
            "timezone": "UTC",
            "campaign": "ketamine-and-sleep",
            "consent": {"source": "clinic website form", "text": "Yes, email me"},
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status_code == 201, answer.text


def test_a_sign_up_is_handed_off_by_a_wake_up_not_the_next_tick(worker, sender, client):
    assert worker.ticks.started == 1  # the tick at the start found nothing due
    sign_up(client, 1)
    assert sender.arrived(1).wait(WAIT)
    # The interval is 30 s and nothing waited that long: the second tick was the wake-up.
    assert worker.ticks.started == 2


def test_a_burst_of_a_hundred_sign_ups_makes_few_ticks_not_a_hundred(worker, sender, client):
    sender.hold.clear()
    sign_up(client, 0)
    assert sender.in_send.wait(WAIT)  # the woken tick is handing the first welcome off
    for number in range(1, 100):  # each one NOTIFYs (or is due, on SQLite) meanwhile
        sign_up(client, number)
    sender.hold.set()
    assert sender.arrived(100).wait(WAIT)
    # The tick at the start, the one woken by the first sign-up, at most one more for
    # the 99 that came during it: the notifications of a burst are one wake-up.
    assert worker.ticks.started <= 3


def test_a_rolled_back_sign_up_wakes_nobody(store: Store, campaign: Campaign):
    wakeup = open_wakeup(store, once=False)
    try:
        with pytest.raises(RuntimeError), store.begin() as conn:
            # What enroll does for a `0d` welcome, in a transaction that fails after it.
            announce_due(conn)
            raise RuntimeError("the request failed after the insert")
        if isinstance(wakeup, Listener):
            # Notifications arrive in commit order: the marker's is the first one heard.
            with store.begin() as conn:
                announce_due(conn)
            for _ in range(int(WAIT * 10)):
                if wakeup.notifications:
                    break
                threading.Event().wait(0.1)
            assert wakeup.notifications == 1
        else:
            assert isinstance(wakeup, Probe)
            wakeup.every = 0.0
            assert not wakeup.due(utcnow())
    finally:
        wakeup.close()


def test_the_probe_sees_a_due_welcome_and_not_a_paused_campaign_or_a_held_one(
    store: Store, campaign: Campaign
):
    now = utcnow()
    with store.connect() as conn:
        assert not anything_due(conn, now)
    patient = Signup("pat@example.com", timezone="UTC", consent="clinic website form")
    enroll(store, campaign, patient, now=now)
    with store.connect() as conn:
        assert anything_due(conn, now)
        assert not anything_due(conn, now, held={campaign.name})
        # With a campaign held, rows due before the last tick began are that tick's.
        assert not anything_due(conn, now, held={"another"}, after=now)
        assert anything_due(conn, now, held={"another"}, after=now - timedelta(seconds=1))
    pause(store, campaign.name, now=now)
    with store.connect() as conn:
        assert not anything_due(conn, now)  # a tick would pass its emails over


class Seen:
    """The parent's observer of one worker process of `run_workers`."""

    def __init__(self, index: int, seen: dict[int, list[str]]) -> None:
        self.index = index
        self.seen = seen

    def ticked(self, event: Ticked) -> None:
        self.seen[self.index].append("tick")

    def handed_off(self, event: HandedOff) -> None:
        self.seen[self.index].append("hand-off")


def test_every_worker_of_run_workers_listens_for_itself(postgres_url: str, tmp_path: Path):
    store = Store(postgres_url)
    clinic = open_around_the_clock(tmp_path / "clinic")
    with store.begin() as conn:
        publish(conn, clinic, now=utcnow())
    options = WorkerOptions(
        url=postgres_url,
        now=None,
        once=False,
        interval=3600.0,  # an hour: only a wake-up can hand anything off in this test
        sender_factory=functools.partial(counting_senders, out=str(tmp_path / "ids")),
    )
    (tmp_path / "ids").mkdir()
    seen: dict[int, list[str]] = {0: [], 1: []}
    # Should no wake-up come, SIGTERM ends the run (as `dripmail run` ends) and the
    # assertions below say so; nothing in the test waits on the wall clock otherwise.
    watchdog = threading.Timer(WAIT * 3, os.kill, (os.getpid(), signal.SIGTERM))
    watchdog.start()
    reports = run_workers(2, options, observers=lambda index: Seen(index, seen))
    try:
        first = {next(reports)[0], next(reports)[0]}  # each worker's tick at the start
        assert first == {0, 1}
        patient = Signup("pat@example.com", timezone="UTC", consent="clinic website form")
        enroll(store, clinic, patient, now=utcnow())
        woken, sent = set(), 0
        while sent < 1 or woken != {0, 1}:
            index, report = next(reports)
            woken.add(index)
            sent += report.sent
    finally:
        watchdog.cancel()
        reports.close()  # stops both workers
        store.close()
    assert sent == 1  # one welcome, handed off once: the leases kept the other worker out
    assert all(ticks.count("tick") >= 4 for ticks in seen.values())  # both woke
