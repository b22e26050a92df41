"""A dripmail worker for the tests: the library's worker loop with a counting sender.

    python -m tests.worker_main --db URL --out DIR [--workers N] [--once] [--now ISO] ...

The counting sender appends every delivery id it is handed to DIR/<pid>.ids (O_APPEND,
one line per id, one write per hand-off) before it answers "sent": a file line is a
message that reached the provider. `--kill-after N` makes it SIGKILL its own process
right after the hand-off that reaches N messages (those rows are still `sending`);
`--term-after N` sends its own process SIGTERM at that point instead. Each tick's report
is printed as one JSON line. Test senders stay here, out of senders/registry.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from campaigns.delivery.handoff import SenderFor
from campaigns.delivery.report import RunReport
from campaigns.delivery.workers import WorkerOptions, run_worker, run_workers
from campaigns.storage.store import Store
from senders.base import Message, Outcome, Sender, SendResult


class CountingSender(Sender):
    """Records each delivery id in a file per process, then reports it sent."""

    name = "counting"
    batch_limit = 1

    def __init__(
        self, out: Path, *, kill_after: int | None = None, term_after: int | None = None
    ) -> None:
        self.out = out
        self.kill_after = kill_after
        self.term_after = term_after
        self.count = 0

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        ids = [m.delivery_id for m in messages]
        fd = os.open(self.out / f"{os.getpid()}.ids", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, "".join(f"{i}\n" for i in ids).encode())
        finally:
            os.close(fd)
        before, self.count = self.count, self.count + len(ids)
        if self.kill_after is not None and self.count >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # mid hand-off: the rows are `sending`
        if self.term_after is not None and before < self.term_after <= self.count:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: this hand-off still completes
        return [SendResult(i, Outcome.SENT, provider_id=f"counted-{i}") for i in ids]

    def close(self) -> None:
        pass


def counting_senders(
    index: int, *, out: str, kill_after: int | None = None, term_after: int | None = None
) -> SenderFor:
    """Worker `index`'s sender factory (module level, so a spawned process can import it)."""
    sender = CountingSender(Path(out), kill_after=kill_after, term_after=term_after)
    return lambda _campaign: sender


def _print(index: int, report: RunReport) -> None:
    fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
    fields["by_campaign"] = dict(report.by_campaign)
    print(json.dumps({"worker": index, **fields}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--now", type=datetime.fromisoformat)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--lease-seconds", type=float, default=300.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--handoff", type=int, default=100)
    parser.add_argument("--kill-after", type=int)
    parser.add_argument("--term-after", type=int)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    factory = functools.partial(
        counting_senders, out=str(args.out), kill_after=args.kill_after, term_after=args.term_after
    )
    lease = timedelta(seconds=args.lease_seconds)
    if args.workers > 1:
        options = WorkerOptions(
            url=args.db,
            now=args.now,
            once=args.once,
            batch_size=args.batch,
            handoff_size=args.handoff,
            interval=args.interval,
            lease=lease,
            sender_factory=factory,
        )
        for index, report in run_workers(args.workers, options):
            _print(index, report)
        return 0
    store = Store(args.db)
    try:
        for report in run_worker(
            store,
            now=args.now,
            once=args.once,
            batch_size=args.batch,
            handoff_size=args.handoff,
            interval=args.interval,
            lease=lease,
            sender_for=factory(0),
            handle_signals=True,
        ):
            _print(0, report)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
