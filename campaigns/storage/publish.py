"""Publishing: a campaign version goes into the store, so workers need only the database.

A version is published only when it can be sent: never one that still holds split's
TODO placeholders, never under a name a campaign of the other kind (drip, newsletter)
already has. The folder it came from is kept, so `dripmail run` can name the command
that fixes a campaign it had to keep back (`dripmail plan FOLDER --apply`).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, insert, select, update

from campaigns.authoring import spec
from campaigns.authoring.translations import each_language
from campaigns.authoring.yamlio import line_of, load_with_lines
from campaigns.errors import InputError, NotFoundError
from campaigns.storage import audit
from campaigns.storage.statuses import CampaignKind, CampaignStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import campaign_versions, campaigns


def publish(
    conn: Connection,
    campaign: spec.Campaign,
    *,
    now: datetime,
    actor: str | int = audit.CLI,
    audited_at: datetime | None = None,
) -> str:
    """Store this version of the campaign (once) and make it the current one.

    Refused (InputError, nothing written) while it holds placeholders or its name is
    another kind's; see `check_publishable`. A version that becomes the current one is
    written to the audit trail, by `actor` (a console user's id; "cli" by default: the
    command line publishes as whoever holds the database), at `audited_at` (the console's
    injected clock; None: the real one, whatever engine time `now` the CLI was given).
    """
    check_publishable(conn, campaign)
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
    folder = {"folder": str(Path(campaign.origin).resolve())} if campaign.origin else {}
    current = conn.execute(
        select(campaigns.c.version, campaigns.c.folder).where(campaigns.c.name == campaign.name)
    ).first()
    if current is None:
        conn.execute(
            insert(campaigns).values(
                name=campaign.name,
                version=version,
                status=CampaignStatus.ACTIVE,
                updated_at=now,
                kind=_kind(campaign),
                **folder,
            )
        )
        audit.record(conn, actor, "publish", "campaign", campaign.name, version, at=audited_at)
    elif current.version != version or folder.get("folder", current.folder) != current.folder:
        conn.execute(
            update(campaigns)
            .where(campaigns.c.name == campaign.name)
            .values(version=version, updated_at=now, **folder)
        )
        if current.version != version:
            audit.record(conn, actor, "publish", "campaign", campaign.name, version, at=audited_at)
    return version


def _kind(campaign: spec.Campaign) -> str | None:
    """campaigns.kind: "newsletter" for a broadcast, NULL for a drip campaign."""
    return CampaignKind.NEWSLETTER if campaign.spec.kind == CampaignKind.NEWSLETTER else None


def campaign_source(campaign: spec.Campaign) -> str:
    """How a message names a campaign's file: its path, or the published campaign."""
    if campaign.origin:
        return str(Path(campaign.origin) / spec.CAMPAIGN_FILE)
    return f"campaign {campaign.name}, {spec.CAMPAIGN_FILE}"


def placeholder_lines(campaign: spec.Campaign) -> list[str]:
    """One line per field still holding split's TODO placeholder, with its file and line."""
    found = campaign.placeholders()
    if not found:
        return []
    source = campaign_source(campaign)
    _, lines = load_with_lines(campaign.files[spec.CAMPAIGN_FILE], source)
    return [
        str(
            InputError(
                "still a placeholder (TODO): set it in campaign.yaml before publishing",
                source=source,
                line=line_of(lines, tuple(name.split("."))),
                field=name,
            )
        )
        for name in found
    ]


def check_publishable(conn: Connection, campaign: spec.Campaign) -> None:
    """InputError, one line per problem, when this version may not be published.

    Placeholders would reach patients' inboxes (or stop the run); a name already used
    by a campaign of the other kind would mix two campaigns' enrollments under one name.
    """
    each_language(campaign)  # a translation that does not read (no subject...) raises here
    problems = placeholder_lines(campaign)
    row = conn.execute(
        select(campaigns.c.kind, campaigns.c.folder).where(campaigns.c.name == campaign.name)
    ).first()
    if row is not None and (row.kind or "drip") != campaign.spec.kind:
        other = f"the {row.kind or 'drip'} campaign" + (f" in {row.folder}" if row.folder else "")
        problems.append(
            str(
                InputError(
                    f"{campaign.name!r} is already published by {other}; give this "
                    f"{campaign.spec.kind} another name (name: in campaign.yaml)",
                    source=campaign_source(campaign),
                    field="name",
                )
            )
        )
    if problems:
        raise InputError("\n".join(problems))


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
    return _load_published(files)


@functools.lru_cache(maxsize=64)
def _load_published(files: str) -> spec.Campaign:
    # A published version never changes (its name is the hash of these files), so the
    # same text is parsed once per process, not on every statistics page or report.
    return spec.load_files(json.loads(files), origin="")


def published_names(conn: Connection) -> list[str]:
    return list(conn.scalars(select(campaigns.c.name).order_by(campaigns.c.name)))


def is_folder_ref(ref: str | Path) -> bool:
    """Whether `ref` names a campaign folder (or its campaign.yaml) rather than a published name."""
    text = str(ref)
    return Path(ref).exists() or any(sep in text for sep in ("/", "\\")) or text.endswith(".yaml")


def campaign_name(ref: str | Path) -> str:
    """The published name `ref` stands for: a folder's `name`, else `ref` itself.

    Only the name is read from a folder, so a campaign whose folder is mid-edit (or
    broken) can still be paused and resumed by it.
    """
    if not is_folder_ref(ref):
        return str(ref)
    path = Path(ref)
    spec_path = path / spec.CAMPAIGN_FILE if path.is_dir() else path
    try:
        data, _ = load_with_lines(spec_path.read_text(encoding="utf-8"), str(spec_path))
    except (OSError, UnicodeDecodeError, InputError):
        data = None
    name = data.get("name") if isinstance(data, dict) else None
    if isinstance(name, str) and name.strip():
        return name.strip()
    return spec.load_folder(path).name  # raises the error that says what is wrong with it


def open_campaign(store: Store, ref: str | Path) -> spec.Campaign:
    """A campaign folder (or its campaign.yaml), else the published campaign of that name."""
    if is_folder_ref(ref):
        return spec.load_folder(Path(ref))
    with store.connect() as conn:
        try:
            return load_version(conn, str(ref))
        except NotFoundError:
            raise NotFoundError(
                f"{ref!r} is neither a campaign folder nor a published campaign"
            ) from None
