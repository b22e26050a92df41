"""Running dispatchers: one worker loop, or N worker processes on one machine.

A stop request (SIGTERM, SIGINT) lets the hand-off in progress finish, releases the
rows claimed but not handed off, and ends the run; see dispatcher.py for what one
worker does with a batch. Under systemd (`Type=notify`) the run says READY=1 once every
worker is about to claim, and STOPPING=1 when a stop is asked for (campaigns/notify.py).
worker does with a batch. An observer (observer.py) hears each tick's start and end
and each hand-off; the processes of `run_workers` pass theirs to the parent, so one
set of metrics covers every worker on the machine.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from campaigns.delivery.alerts import Alerter, refused_alert
from campaigns.delivery.dispatcher import DEFAULT_BATCH, DEFAULT_HANDOFF, DEFAULT_LEASE, Dispatcher
from campaigns.delivery.handoff import SenderFor
from campaigns.delivery.heartbeats import HeartbeatRecorder, watch
from campaigns.delivery.held import survey
from campaigns.delivery.leases import worker_owner
from campaigns.delivery.observer import Event, HandedOff, NoObserver, Observer, Ticked, tell
from campaigns.delivery.report import RunReport
from campaigns.delivery.sender_pool import SenderPool
from campaigns.delivery.wakeups import Wakeup, open_wakeup
from campaigns.delivery.webhooks import WebhookThread
from campaigns.errors import ConfigurationError, DripmailError
from campaigns.logformat import formatter
from campaigns.notify import NOBODY, Notifier
from campaigns.settings import Settings
from campaigns.storage.count_fold import Folder
from campaigns.storage.publish import load_version
from campaigns.storage.store import Store, utcnow
from senders.base import SenderConfigurationError

log = logging.getLogger("dripmail.workers")


class WorkerError(DripmailError):
    """A worker process stopped unexpectedly (killed, or an error it did not expect)."""

    exit_code = 1


def preflight(store: Store, sender: str | None, *, check_senders: bool = True) -> None:
    """Fail before any worker starts when no campaign's sender can work (held.py).

    `sender` names the sender for every campaign (None: each campaign's own). A problem
    of one campaign's own (placeholders, its sender) only keeps that campaign back, in
    each worker's run; this raises only for a problem every campaign shares.
    """
    if not check_senders:
        return
    pool = SenderPool(sender, store.settings)
    try:
        with store.connect() as conn:
            survey(conn, lambda name, version: load_version(conn, name, version), pool)
    finally:
        pool.close()


def run_worker(
    store: Store,
    *,
    now: datetime | None,
    once: bool,
    sender: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    handoff_size: int = DEFAULT_HANDOFF,
    interval: float = 30.0,
    lease: timedelta = DEFAULT_LEASE,
    owner: str | None = None,
    sender_for: SenderFor | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    settings: Settings | None = None,
    notifier: Notifier = NOBODY,
    observer: Observer | None = None,
) -> Iterator[RunReport]:
    """Run ticks at `now` (else the clock): one with `once`, else one per `interval` seconds.

    `stop` (or SIGTERM/SIGINT with `handle_signals`) ends the loop after the hand-off
    in progress; rows claimed and not handed off go back to the queue. The senders
    take their settings from `settings` (default: the environment, read now).
    `notifier` hears READY=1 before the first claim and STOPPING=1 on a stop signal.
    `observer` hears when each tick starts and ends, and of every hand-off.
    Between ticks a wake-up (wakeups.py) can start the next tick early: a NOTIFY on
    PostgreSQL, a due email found on SQLite.
    The worker's heartbeat row (heartbeats.py) is written at the start, after each
    batch and tick, and marked stopped at the end; after each tick it looks for silent
    workers and piling `unknown` deliveries, and alerts (alerts.py).
    """
    stop = stop or threading.Event()
    observer = observer or NoObserver()
    pool = SenderPool(sender, settings) if sender_for is None else None
    stopping = functools.partial(notifier.stopping, "finishing the hand-off in progress")
    alerter = Alerter(store, settings)
    with _stop_on_signals(stop, forward=stopping) if handle_signals else _nothing():
        heart: HeartbeatRecorder | None = None
        hooks: WebhookThread | None = None
        woken: Wakeup | None = None
        try:
            # Each run checks the campaigns and their senders first (held.py).
            dispatcher = Dispatcher(
                store,
                pool if pool is not None else sender_for,  # type: ignore[arg-type]
                owner=owner,
                batch_size=batch_size,
                handoff_size=handoff_size,
                lease=lease,
                stop=stop,
                observer=observer,
                alerter=alerter,
            )
            heart = HeartbeatRecorder(store, dispatcher.owner, interval=interval)
            folder = Folder(store.engine)
            dispatcher.heartbeat = heart.beat
            if notifier.enabled:
                # Before READY=1, so that `systemctl start` fails on a problem every
                # campaign shares (run_workers checks the same before its processes start).
                preflight(store, sender, check_senders=sender_for is None)
            notifier.ready("sending due emails")
            # Outbound webhooks go beside email, in a thread of their own (webhooks.py).
            hooks = WebhookThread(store, now=now)
            if not once:
                hooks.start()
            # Listening before the first claim: a sign-up committed after it is heard.
            woken = open_wakeup(store, once=once)
            while not stop.is_set():
                at = now or utcnow()
                woken.ticking(at)
                observer.ticked(Ticked(time.time()))
                try:
                    report = dispatcher.run(now=at)
                except SenderConfigurationError as exc:
                    # Every campaign's sender refused: the run stops (held.py). A worker
                    # that was sending says so by email; one refused at its first tick
                    # only exits 2, its one line on the terminal or in the journal, and
                    # leaves the database as it was (no heartbeat, no alert row).
                    if heart.started:
                        alerter.raise_(refused_alert(None, str(exc)))
                    raise
                observer.ticked(Ticked(time.time()))
                heart.tick(report)
                # PostgreSQL: the count changes the triggers appended, into the counts.
                folder.tick()
                woken.ticked(report)
                watch(store, alerter, me=dispatcher.owner)
                if once:
                    hooks.round()
                yield report
                if once:
                    return
                # Short naps, so a stop request or a wake-up is seen within a fraction
                # of a second.
                deadline = time.monotonic() + interval
                while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                    if woken.due(now or utcnow()):
                        break
                    sleep(min(left, 0.2))
        finally:
            if woken is not None:
                woken.close()
            if hooks is not None:
                hooks.finish()
            if heart is not None:
                heart.stop()
            if pool is not None:
                pool.close()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _stop_on_signals(stop: threading.Event, forward: Callable[[], object] | None = None):
    """SIGTERM and SIGINT set `stop` (and call `forward`); the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return

    def handler(signum: int, _frame) -> None:
        if not stop.is_set():
            log.info(
                "%s: finishing the hand-off in progress, then stopping", signal.strsignal(signum)
            )
        stop.set()
        if forward is not None:
            forward()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass(frozen=True)
class WorkerOptions:
    """What each worker process of `run_workers` runs with (sent to it pickled)."""

    url: str
    now: datetime | None
    once: bool
    sender: str | None = None
    batch_size: int = DEFAULT_BATCH
    handoff_size: int = DEFAULT_HANDOFF
    interval: float = 30.0
    lease: timedelta = DEFAULT_LEASE
    # A module-level function making worker `index`'s senders, instead of `sender`
    # (embedding, tests); it must be importable by name in a fresh interpreter.
    sender_factory: Callable[[int], SenderFor] | None = None
    log_level: int = logging.INFO
    outbox: str | None = None  # the file sender's folder (`run --outbox`), over the campaign's


def run_workers(
    count: int,
    options: WorkerOptions,
    notifier: Notifier = NOBODY,
    observers: Callable[[int], Observer] | None = None,
) -> Iterator[tuple[int, RunReport]]:
    """Run `count` worker processes on this machine; yield (worker, report) as ticks end.

    Each process is spawned fresh (its own engine and connections, never a forked
    one), with its own lease owner id. SIGTERM or SIGINT here is passed on to every
    worker, which finishes its hand-off, releases its unclaimed rows and exits 0.
    Should one worker fail, the others are stopped the same way and the error raised:
    a ConfigurationError for a configuration problem, else WorkerError. `notifier`
    hears READY=1 once every worker is about to claim, and STOPPING=1 on a stop signal.
    `observers(index)`, in this process, hears worker `index`'s ticks and hand-offs,
    which the worker sends here with its reports.
    """
    # The same checks as a single worker's, once, before any process starts.
    store = Store(options.url)
    try:
        preflight(store, options.sender, check_senders=options.sender_factory is None)
    finally:
        store.close()
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    workers = [
        context.Process(
            target=_worker_process,
            args=(index, options, messages, observers is not None),
            name=f"dripmail-worker-{index}",
        )
        for index in range(count)
    ]
    stop = threading.Event()

    def stop_all() -> None:
        stop.set()
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)

    problems: list[str] = []
    crashed: list[str] = []
    ready: set[int] = set()

    def stop_on_signal() -> None:
        notifier.stopping("stopping the workers")
        stop_all()

    with _stop_on_signals(stop, forward=stop_on_signal):
        try:
            for worker in workers:
                worker.start()
            settled: set[int] = set()
            while True:
                try:
                    kind, index, payload = messages.get(timeout=0.2)
                except queue.Empty:
                    if len(settled) == count:
                        break
                    for index, worker in enumerate(workers):
                        if index in settled or worker.exitcode is None:
                            continue
                        settled.add(index)
                        code = worker.exitcode
                        if code != 0 and not (stop.is_set() and code == -signal.SIGTERM):
                            if code != 2:  # 2: a configuration error, reported on the queue
                                crashed.append(
                                    f"worker {index} stopped unexpectedly ({_exit(code)})"
                                )
                            if not stop.is_set():
                                stop_all()
                    continue
                if kind == "ready":
                    ready.add(index)
                    if len(ready) == count:
                        notifier.ready(f"{count} workers sending due emails")
                elif kind == "report":
                    yield index, payload
                elif kind == "seen":
                    if observers is not None:
                        tell(observers(index), payload)
                elif payload not in problems:
                    problems.append(payload)
        finally:
            # Also when the caller stops early: no worker outlives this call.
            if any(worker.exitcode is None for worker in workers if worker.pid is not None):
                stop_all()
            for worker in workers:
                while worker.pid is not None and worker.exitcode is None:
                    worker.join(timeout=0.2)
                    _drain(messages)  # a worker blocked on a full pipe could not exit
            messages.close()
    if problems:
        raise ConfigurationError("\n".join(problems))
    if crashed:
        raise WorkerError("; ".join(crashed) + "; the other workers were stopped")


def _drain(messages) -> None:
    try:
        while True:
            messages.get_nowait()
    except queue.Empty:
        pass


def _exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class _Forward:
    """A worker process's observer: each event goes to the parent, on the report queue."""

    def __init__(self, index: int, messages) -> None:
        self.index = index
        self.messages = messages

    def _put(self, event: Event) -> None:
        self.messages.put(("seen", self.index, event))  # pickled by the queue's own thread

    def handed_off(self, event: HandedOff) -> None:
        self._put(event)

    def ticked(self, event: Ticked) -> None:
        self._put(event)


def _worker_process(index: int, options: WorkerOptions, messages, forward: bool = False) -> None:
    """One worker of `run_workers`, in its own interpreter; `forward`: tell the parent
    of its ticks and hand-offs."""
    import sys

    stop = threading.Event()
    parent = multiprocessing.parent_process()
    if parent is not None:
        # Should the parent die without passing a stop on (SIGKILL), stop anyway.
        threading.Thread(
            target=lambda: (multiprocessing.connection.wait([parent.sentinel]), stop.set()),
            daemon=True,
        ).start()
    with _stop_on_signals(stop):  # before anything slow, so an early SIGTERM is graceful too
        settings = Settings.from_env()  # DRIPMAIL_LOG_FORMAT was checked by the parent
        _log_as_worker(index, options.log_level, settings.log_format)
        try:
            if options.outbox:
                settings = settings.model_copy(update={"outbox": options.outbox})
            store = Store(options.url, settings=settings)
            try:
                reports = run_worker(
                    store,
                    now=options.now,
                    once=options.once,
                    sender=options.sender,
                    batch_size=options.batch_size,
                    handoff_size=options.handoff_size,
                    interval=options.interval,
                    lease=options.lease,
                    owner=worker_owner(index),
                    sender_for=(options.sender_factory(index) if options.sender_factory else None),
                    stop=stop,
                    settings=settings,
                    notifier=_Ready(index, messages),
                    observer=_Forward(index, messages) if forward else None,
                )
                for report in reports:
                    messages.put(("report", index, report))
            finally:
                store.close()
        except DripmailError as exc:
            messages.put(("error", index, str(exc)))
            messages.close()
            messages.join_thread()
            sys.exit(2)
    messages.close()
    messages.join_thread()


class _Ready(Notifier):
    """A worker process's notifier: its readiness goes to the parent, which tells systemd
    once all are ready (systemd hears the main process only, NotifyAccess=main)."""

    def __init__(self, index: int, messages) -> None:
        super().__init__(None)
        self.index = index
        self.messages = messages

    def ready(self, status: str | None = None) -> bool:
        self.messages.put(("ready", self.index, None))
        return True


def _log_as_worker(index: int, level: int, log_format: str | None) -> None:
    """This process's log lines name its worker: in the text, or as `worker` in JSON."""
    handler = logging.StreamHandler(sys.stderr)
    text = f"%(asctime)s %(levelname)s worker {index} %(name)s: %(message)s"
    handler.setFormatter(formatter(log_format or "text", text))
    handler.addFilter(lambda record: setattr(record, "worker", index) or True)
    logging.basicConfig(level=level, handlers=[handler])
