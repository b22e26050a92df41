"""SendGrid path: messages per second and HTTP requests per 1,000 messages, batched or not.

The real sender and the real `sendgrid` client against the local SendGrid test server
(tests/sendgrid_server.py), which checks every body against the Mail Send contract.
The server runs in a process of its own, so its checks do not share this process's
GIL with the sender; it keeps counts, not bodies. Each mode dispatches the clinic
campaign's first step to fresh contacts on SQLite, one worker, default settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "SG.benchmark-key"

# The child: the test server, answering "stats" on stdin with its counts as JSON.
_SERVER = r"""
import json, sys
sys.path.insert(0, {root!r})
from tests.sendgrid_server import SendGridServer

class Counting(SendGridServer):
    def _record(self, delivery_ids, answer, body):
        super()._record(delivery_ids, answer, None)  # counts only: 20,000 bodies are GBs

with Counting({key!r}) as server:
    print(server.url, flush=True)
    for line in sys.stdin:
        print(json.dumps({{
            "requests": len(server.requests),
            "accepted": len(server.accepted_ids),
            "bad": len(server.schema_failures) + len(server.problems),
        }}), flush=True)
"""


@contextmanager
def _server() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(root=str(ROOT), key=KEY)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        yield child.stdout.readline().strip(), child
    finally:
        child.stdin.close()  # the child's loop ends, and the server with it
        child.wait(timeout=30)


def _stats(child: subprocess.Popen[str]) -> dict[str, int]:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("stats\n")
    child.stdin.flush()
    return json.loads(child.stdout.readline())


def bench_sendgrid(work: Path, quick: bool) -> None:
    """The same deliveries through the SendGrid sender with batching on, then off."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.run import NOW, clinic_campaign, report, write_contacts
    from campaigns.authoring.sender_settings import SendGridSenderSettings
    from campaigns.delivery.dispatcher import Dispatcher
    from campaigns.planning.enroll import import_csv
    from campaigns.settings import Settings
    from campaigns.storage.store import Store
    from senders.sendgrid import SendGridSender

    # urllib would send 127.0.0.1 through a configured proxy.
    os.environ["no_proxy"] = ",".join(
        filter(None, [os.environ.get("no_proxy"), "127.0.0.1", "localhost"])
    )
    count = 2_000 if quick else 20_000
    command = f"python benchmarks/run.py sendgrid{' --quick' if quick else ''}"
    campaign = clinic_campaign(work / "campaign")
    contacts = work / f"sendgrid-{count}.csv"
    write_contacts(contacts, count)
    figures: dict[bool, tuple[float, float]] = {}
    with _server() as (url, child):
        for batch in (True, False):
            store = Store(f"sqlite:///{work / f'sendgrid-{batch}.db'}")
            import_csv(store, campaign, contacts, now=NOW)
            config = SendGridSenderSettings(batch=batch)
            environ = {"SENDGRID_API_KEY": KEY, "SENDGRID_API_HOST": url}
            sender = SendGridSender.from_settings(config, Settings.from_env(environ))
            before = _stats(child)
            start = time.perf_counter()
            result = Dispatcher(store, lambda _campaign, s=sender: s).run(now=NOW)
            elapsed = time.perf_counter() - start
            after = _stats(child)
            sender.close()
            store.close()
            requests = after["requests"] - before["requests"]
            if (
                result.sent != count
                or after["bad"]
                or after["accepted"] - before["accepted"] != count
            ):
                raise RuntimeError(f"sendgrid benchmark: {result} {before} {after}")
            figures[batch] = (result.sent / elapsed, requests * 1000 / result.sent)
            mode = "batched" if batch else "one per message"
            report(
                f"sendgrid: {mode}, {result.sent:,} sent, 8 in flight",
                figures[batch][0],
                "messages/s",
                command,
            )
            report(f"sendgrid: {mode}, HTTP requests", figures[batch][1], "per 1,000 msgs", command)
    report(
        "sendgrid: batched / one per message (messages/s)",
        figures[True][0] / figures[False][0],
        "x",
        command,
    )
    report(
        "sendgrid: one per message / batched (requests)",
        figures[False][1] / figures[True][1],
        "x",
        command,
    )
