"""The senders a run uses: one per distinct sender configuration, built once.

A worker uses its pool from one thread. `serve` answers requests on a thread pool, so
it shares its senders through SerialSenders: one send at a time (an SMTP sender is one
conversation on one socket; two patients' MAIL/RCPT/DATA must never interleave).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from sqlalchemy import select

from campaigns.authoring.spec import Campaign
from campaigns.rendering.tokens import public_url
from campaigns.settings import Settings
from campaigns.storage.publish import load_version
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns
from senders.base import Message, Sender, SenderConfigurationError, SendResult
from senders.registry import NEEDS_PUBLIC_URL, make_sender


class SenderPool:
    """Senders by campaign: the campaign file's choice unless `--sender` overrides it."""

    def __init__(self, override: str | None = None, settings: Settings | None = None) -> None:
        self.override = override
        self.settings = Settings.from_env() if settings is None else settings
        self._made: dict[tuple, Sender] = {}

    def __call__(self, campaign: Campaign) -> Sender:
        config = campaign.spec.sender
        name = self.override or config.type
        if name in NEEDS_PUBLIC_URL and not public_url(
            self.settings.public_url, campaign.spec.links.public_url
        ):
            # An unsubscribe link that leads nowhere breaks the law: refuse to start.
            raise SenderConfigurationError(
                f"campaign {campaign.name}: the {name} sender needs a public URL for unsubscribe "
                "links: set DRIPMAIL_PUBLIC_URL or links.public_url in campaign.yaml"
            )
        key = (name, config)
        if key not in self._made:
            self._made[key] = make_sender(name, config, self.settings)
        return self._made[key]

    def check(self, store: Store) -> None:
        """Build every sender the published campaigns need, so bad settings fail before a claim."""
        with store.connect() as conn:
            for name, version in conn.execute(select(campaigns.c.name, campaigns.c.version)):
                self(load_version(conn, name, version))

    def close(self) -> None:
        for sender in self._made.values():
            sender.close()
        self._made.clear()


class SerialSenders:
    """Senders by campaign for many threads: each send runs alone, under one lock.

    Only `serve` sends (a patient's "send me my data"), seldom: one lock for all is the
    simplest that is right, and the pool's own cache is guarded by it too.
    """

    def __init__(self, senders: Callable[[Campaign], Sender]) -> None:
        self.senders = senders
        self._lock = threading.Lock()

    def __call__(self, campaign: Campaign) -> Sender:
        with self._lock:
            return _OneAtATime(self.senders(campaign), self._lock)

    def close(self) -> None:
        close = getattr(self.senders, "close", None)
        if close is not None:
            with self._lock:
                close()


class _OneAtATime:
    """A shared sender whose `send` waits for the lock; closing it is the pool's."""

    def __init__(self, sender: Sender, lock: threading.Lock) -> None:
        self._sender, self._lock = sender, lock
        self.name, self.batch_limit = sender.name, sender.batch_limit

    def send(self, messages: Sequence[Message]) -> list[SendResult]:
        with self._lock:
            return self._sender.send(messages)

    def build(self, message: Message) -> Message:
        return self._sender.build(message)

    def settle(self, delivery_ids: Sequence[str]) -> list[SendResult]:
        with self._lock:
            return self._sender.settle(delivery_ids)

    def close(self) -> None:
        """Nothing: the sender is shared; SerialSenders.close closes them all."""
