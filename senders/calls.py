"""What every HTTP API sender shares around its calls: its threads, and what a refused
credential does to a call some of whose messages already went."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from senders.base import Message, Outcome, SenderConfigurationError, SendResult


class Threads:
    """A sender's worker threads: started on first use (a sender made only to check its
    configuration starts none), stopped by `close` after the calls in flight."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers = workers
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._workers, thread_name_prefix=self._name
                )
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def after_refusal(
    results: Sequence[SendResult], refused: str, provider: str, log: logging.Logger
) -> list[SendResult]:
    """The results of a call during which `provider` refused the credentials or the setup.

    Nothing went: SenderConfigurationError, so the run stops before anything is marked.
    Some emails went: raising would put them back in the queue and send them twice, so
    every result is reported (the rest transient, for a later run); the sender's next
    call raises at once.
    """
    gone = sum(r.outcome in (Outcome.SENT, Outcome.AMBIGUOUS) for r in results)
    if not gone:
        log.error("%s configuration error; stopping before anything is marked", provider)
        raise SenderConfigurationError(refused)
    log.error("%s configuration error after %d emails went out", provider, gone)
    return list(results)


class Refused(Exception):
    """Raised inside a worker thread: the provider refused the credentials or the setup,
    and every thread stops. `attempts`: the requests this message made before."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


def in_order(
    messages: Sequence[Message], outcomes: Sequence[SendResult | Refused], stopped: str
) -> tuple[list[SendResult], str | None]:
    """One result per message, in order, and the refusal if there was one (its first
    own reason, not `stopped`, which the other threads give). A message that met the
    refusal, or was stopped by it, waits for a later run."""
    refused = None
    for outcome in outcomes:
        if isinstance(outcome, Refused) and (refused is None or refused == stopped):
            refused = outcome.reason
    results = [
        r
        if isinstance(r, SendResult)
        else SendResult(
            m.delivery_id, Outcome.TRANSIENT, error=f"not sent: {refused}", attempts=r.attempts
        )
        for m, r in zip(messages, outcomes, strict=True)
    ]
    return results, refused


def each(futures: Sequence[Future[SendResult]]) -> list[SendResult | Refused]:
    """Each future's result, or the Refused it raised."""
    outcomes: list[SendResult | Refused] = []
    for future in futures:
        try:
            outcomes.append(future.result())
        except Refused as exc:
            outcomes.append(exc)
    return outcomes
