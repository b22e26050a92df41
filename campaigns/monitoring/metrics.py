"""The metrics a worker and `serve` keep in memory, in a registry of their own.

A process makes one `Metrics` (never the global registry, so tests and embedders can
hold several); the database's own counts are read at each scrape by store_collector.py.
Label values are campaign names (a campaign's slug, chosen by staff: it names a
campaign, not a person), sender names, answer classes, unsubscribe scopes and worker
numbers: never an address, a name or a token.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from campaigns.compliance.suppressions import Scope
from campaigns.delivery.observer import HandedOff, Ticked
from campaigns.delivery.outcomes import Answer

# A hand-off is one request (or one connection) for up to a batch of emails: from a
# few milliseconds (the file sender) to a minute (a slow provider, in-run retries).
HANDOFF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """One process's metrics: hand-offs and answers (workers), unsubscribes (`serve`).

    Each family is made when the process first says it is a worker (`worker`) or
    `serve` (`serving`), so a scrape lists only what that process counts.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No `_created` series beside every counter: Prometheus does not need them and
        # they double what a small install's scrape holds. (A library-wide switch.)
        disable_created_metrics()
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory, CPU, open files of this process
        self._workers: _WorkerFamilies | None = None
        self._observers: dict[int, WorkerMetrics] = {}
        self._unsubscribes: Counter | None = None

    def worker(self, index: int) -> WorkerMetrics:
        """The observer (delivery/observer.py) for worker `index` of this machine."""
        if index not in self._observers:
            if self._workers is None:
                self._workers = _WorkerFamilies(self.registry)
            self._observers[index] = WorkerMetrics(self._workers, str(index))
        return self._observers[index]

    def serving(self) -> Counter:
        """`serve` counts unsubscribes: every scope shows, at 0 until one happens."""
        if self._unsubscribes is None:
            self._unsubscribes = Counter(
                "dripmail_unsubscribes",
                "Unsubscribes `serve` recorded (one-click or the page), by what was left",
                ["scope"],
                registry=self.registry,
            )
            for scope in Scope:
                self._unsubscribes.labels(scope=str(scope))
        return self._unsubscribes

    def unsubscribed(self, scope: Scope) -> None:
        self.serving().labels(scope=str(scope)).inc()


class _WorkerFamilies:
    """The families workers add to."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handoffs = Counter(
            "dripmail_handoffs",
            "Hand-offs to a sender (one request or connection for a chunk of emails)",
            ["campaign", "sender"],
            registry=registry,
        )
        self.handoff_seconds = Histogram(
            "dripmail_handoff_duration_seconds",
            "How long a sender took to answer a hand-off",
            ["sender"],
            buckets=HANDOFF_BUCKETS,
            registry=registry,
        )
        self.answers = Counter(
            "dripmail_provider_answers",
            "Emails handed off, by what the provider's answer came to "
            "(sent, retried, rate_limited, failed, unknown)",
            ["campaign", "sender", "class"],
            registry=registry,
        )
        self.last_tick = Gauge(
            "dripmail_worker_last_tick_timestamp_seconds",
            "When the worker last started or finished a tick (Unix time): its heartbeat",
            ["worker"],
            registry=registry,
        )


class WorkerMetrics:
    """What one worker's hand-offs and ticks add to the metrics (an Observer)."""

    def __init__(self, metrics: _WorkerFamilies, worker: str) -> None:
        self.metrics = metrics
        self.worker = worker
        metrics.last_tick.labels(worker=worker)  # shows from the start, at 0

    def handed_off(self, event: HandedOff) -> None:
        metrics = self.metrics
        metrics.handoffs.labels(campaign=event.campaign, sender=event.sender).inc()
        metrics.handoff_seconds.labels(sender=event.sender).observe(event.seconds)
        for answer, count in event.answers.items():
            metrics.answers.labels(
                campaign=event.campaign, sender=event.sender, **{"class": Answer(answer).value}
            ).inc(count)

    def ticked(self, event: Ticked) -> None:
        self.metrics.last_tick.labels(worker=self.worker).set(event.at)
