"""Publishing: a campaign version goes into the store, so workers need only the database."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, insert, select, update

from campaigns.authoring import spec
from campaigns.errors import NotFoundError
from campaigns.storage.statuses import CampaignStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaign_versions, campaigns


def publish(conn: Connection, campaign: spec.Campaign, *, now: datetime) -> str:
    """Store this version of the campaign (once) and make it the current one."""
    version = campaign.version
    exists = conn.scalar(
        select(campaign_versions.c.version).where(
            campaign_versions.c.campaign == campaign.name, campaign_versions.c.version == version
        )
    )
    if exists is None:
        conn.execute(
            insert(campaign_versions).values(
                campaign=campaign.name,
                version=version,
                files=json.dumps(dict(campaign.files), ensure_ascii=False),
                published_at=now,
            )
        )
    current = conn.scalar(select(campaigns.c.version).where(campaigns.c.name == campaign.name))
    if current is None:
        conn.execute(
            insert(campaigns).values(
                name=campaign.name, version=version, status=CampaignStatus.ACTIVE, updated_at=now
            )
        )
    elif current != version:
        conn.execute(
            update(campaigns)
            .where(campaigns.c.name == campaign.name)
            .values(version=version, updated_at=now)
        )
    return version


def load_version(conn: Connection, name: str, version: str | None = None) -> spec.Campaign:
    """A published campaign (its current version unless one is named)."""
    if version is None:
        version = conn.scalar(select(campaigns.c.version).where(campaigns.c.name == name))
        if version is None:
            raise NotFoundError(f"no published campaign named {name!r}")
    files = conn.scalar(
        select(campaign_versions.c.files).where(
            campaign_versions.c.campaign == name, campaign_versions.c.version == version
        )
    )
    if files is None:
        raise NotFoundError(f"campaign {name!r} has no version {version}")
    return spec.load_files(json.loads(files), origin="")


def published_names(conn: Connection) -> list[str]:
    return list(conn.scalars(select(campaigns.c.name).order_by(campaigns.c.name)))


def is_folder_ref(ref: str | Path) -> bool:
    """Whether a campaign argument names a folder (or campaign.yaml) rather than a name."""
    text = str(ref)
    return Path(ref).exists() or any(sep in text for sep in ("/", "\\")) or text.endswith(".yaml")


def open_campaign(store: Store, ref: str | Path) -> spec.Campaign:
    """A campaign folder (or its campaign.yaml), else the published campaign of that name."""
    path = Path(ref)
    if is_folder_ref(ref):
        return spec.load_folder(path)
    with store.connect() as conn:
        try:
            return load_version(conn, str(ref))
        except NotFoundError:
            raise NotFoundError(
                f"{ref!r} is neither a campaign folder nor a published campaign"
            ) from None
