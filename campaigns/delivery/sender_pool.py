"""The senders a run uses: one per distinct sender configuration, built once."""

from __future__ import annotations

from sqlalchemy import select

from campaigns.authoring.spec import Campaign
from campaigns.rendering.tokens import public_url
from campaigns.settings import Settings
from campaigns.storage.publish import load_version
from campaigns.storage.store import Store
from campaigns.storage.tables import campaigns
from senders.base import Sender, SenderConfigurationError
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
