"""Newsletters: one email (an article, or a digest of several) broadcast to tagged contacts.

A newsletter is a campaign folder with `kind: newsletter` and one step, published like
any campaign. Scheduling plans one enrollment and one delivery per subscribed,
unsuppressed member *at schedule time*, so `dripmail run`, the senders, suppressions,
min_gap and stats all apply unchanged, and a contact who joins the tag later is not
included. Leaving the newsletter (contacts.newsletter_unsubscribed_at) leaves every
newsletter and no drip campaign.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import Connection, create_engine, insert, or_, select

from campaigns.authoring import spec
from campaigns.authoring.article import Article
from campaigns.authoring.defaults import CampaignDefaults, resolve_defaults
from campaigns.authoring.folder import campaign_files
from campaigns.authoring.readers import read_article
from campaigns.authoring.split import Draft, preheader, slugify
from campaigns.compliance.suppressions import cancel_pending
from campaigns.errors import ConfigurationError, InputError
from campaigns.planning import schedule
from campaigns.planning.contacts import address_hash, normalise_tag
from campaigns.storage import audit
from campaigns.storage.publish import check_publishable, publish
from campaigns.storage.statuses import CampaignKind, DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import UPGRADE_HINT, Store, _current_revision, head_revision
from campaigns.storage.tables import (
    contacts,
    deliveries,
    enrollments,
    meta,
    suppressions,
)

KIND = CampaignKind.NEWSLETTER
# An article up to this many words goes whole; a longer one sends its opening and a link.
# campaigns.name is 64 characters; split's names keep to 63.
NAME_MAX = 63
WHOLE_WORDS = 600
OPENING_WORDS = 250


# ---------------------------------------------------------------- create


def _opening(article: Article, url: str | None) -> tuple[list[str], bool]:
    """The article's blocks when it fits; else its opening, cut at a paragraph, and True."""
    blocks = []
    for section in article.sections:
        if section.heading and blocks:
            blocks.append(f"## {section.heading}")
        blocks.extend(section.paragraphs)
    if article.words <= WHOLE_WORDS:
        return blocks, False
    if not url:
        raise InputError(
            f"{article.words} words is too long for one email: give --url for 'read the rest'",
            source=article.source,
            field="--url",
        )
    kept, words = [], 0
    for block in blocks:
        if kept and words + len(block.split()) > OPENING_WORDS:
            break
        kept.append(block)
        words += len(block.split())
    return kept, True


def newsletter_name(subject: str, now: datetime) -> str:
    """`<slug>-newsletter-<yyyy-mm>`: never the name of a drip campaign split from the
    same article (that is the bare slug), and one per month."""
    suffix = f"-newsletter-{now:%Y-%m}"
    return (slugify(subject, NAME_MAX - len(suffix)) or "issue") + suffix


def newsletter_files(
    articles: Sequence[Article],
    *,
    title: str | None = None,
    url: str | None = None,
    defaults: CampaignDefaults | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """campaign.yaml (kind newsletter) and its one step file, path -> text.

    Named by `newsletter_name` for the month of `now` (default: the clock).
    """
    if not articles:
        raise InputError("give at least one article", field="ARTICLE")
    if len(articles) == 1:
        article = articles[0]
        blocks, cut = _opening(article, url)
        if cut:
            blocks.append(f"[Read the rest of “{article.title}”]({url})")
        subject = title or article.title
    else:
        subject = title or "In this issue: " + ", ".join(a.title for a in articles)[:60]
        blocks = []
        for article in articles:
            # One --url for the issue: each article is linked at its own anchor on that page.
            link = url and f"{url.rstrip('/')}/#{slugify(article.title)}"
            if not link:
                raise InputError(
                    "a digest links every article: give --url", source=article.source, field="--url"
                )
            first = article.paragraphs[0] if article.paragraphs else ""
            blocks += [f"## {article.title}", first, f"[Read “{article.title}”]({link})"]
    draft = Draft(
        key="issue",
        subject=subject[:200],
        preheader=preheader([b for b in blocks if not b.startswith(("#", "["))]),
        paragraphs=tuple(blocks),
        cta=None,
    )
    name = newsletter_name(subject, now or datetime.now(UTC))
    files = campaign_files(articles[0], [draft], cadence=[0], defaults=defaults, name=name)
    _, _, body = files[spec.CAMPAIGN_FILE].partition("\nname:")
    body = body.replace(f"title: {articles[0].title}\n", f"title: {_yaml_str(subject)}\n", 1)
    # A broadcast goes at the hour it was scheduled for: its window is the whole day.
    body = body.replace('start: "09:00"\n  end: "17:00"', 'start: "00:00"\n  end: "23:59"', 1)
    files[spec.CAMPAIGN_FILE] = f"{_HEADER}kind: {KIND}\nname:{body}"
    return files


_HEADER = """\
# A newsletter written by `dripmail newsletter create`: one email to tagged contacts.
# Edit it freely (subject and text in 01-issue.md); preview with `dripmail render` or the
# studio, then `dripmail newsletter schedule` plans it and `dripmail run` sends it.
# send_window is the whole day: the time comes from --at or --local-time when scheduling.
"""


def _yaml_str(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML string


def create_newsletter(
    articles: Sequence[Path | str],
    out: Path | str,
    *,
    title: str | None = None,
    url: str | None = None,
    organisation: str | None = None,
    sender: str | None = None,
    postal_address: str | None = None,
    defaults_file: Path | str | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> spec.Campaign:
    """Read the articles and write the newsletter folder; returns it loaded.

    `now` (default: the clock) gives the month in its name (`newsletter_name`).
    """
    if url is not None and not url.startswith("https://"):
        raise InputError(f"{url!r}: links must be https://", field="--url")
    defaults = resolve_defaults(
        defaults_file, organisation=organisation, sender=sender, postal_address=postal_address
    )
    read = [read_article(path, url=url) for path in articles]
    files = newsletter_files(read, title=title, url=url, defaults=defaults, now=now)
    out = Path(out)
    spec.load_files(files, origin=str(out))
    if out.exists() and not out.is_dir():
        raise InputError("is a file, not a folder", source=out)
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError("the folder is not empty; use --force to overwrite", source=out)
    out.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        (out / relative).write_text(text, encoding="utf-8")
    return spec.load_folder(out)


# ---------------------------------------------------------------- schedule


@dataclass
class SchedulePlan:
    """Who gets the newsletter when: counts per UTC hour and per zone."""

    campaign: str
    due: dict[int, datetime] = field(default_factory=dict)  # contact id -> due (UTC)
    zones: dict[int, str] = field(default_factory=dict)
    skipped_unsubscribed: int = 0
    skipped_suppressed: int = 0
    already: int = 0
    written: bool = False
    tags: tuple[str, ...] = ()

    def why_nobody(self) -> str | None:
        """Why nobody gets the newsletter, when nobody does (None otherwise)."""
        if self.due:
            return None
        tags = ", ".join(self.tags)
        if not (self.skipped_unsubscribed or self.skipped_suppressed or self.already):
            return (
                f"nobody to send to: no contact has the tag {tags} "
                "(tag contacts with `dripmail contacts tag`, or import them with a tags column)"
            )
        reasons = [
            f"{count} {what}"
            for count, what in (
                (self.already, "already have this newsletter planned or sent (once each)"),
                (self.skipped_unsubscribed, "left the newsletter"),
                (self.skipped_suppressed, "are suppressed"),
            )
            if count
        ]
        return f"nobody to send to: every contact tagged {tags} was left out: " + ", ".join(reasons)

    @property
    def per_hour(self) -> list[tuple[datetime, int]]:
        counts = Counter(d.replace(minute=0, second=0, microsecond=0) for d in self.due.values())
        return sorted(counts.items())

    @property
    def per_zone(self) -> list[tuple[str, int]]:
        return sorted(Counter(self.zones[c] for c in self.due).items())


def _read_only(store: Store):
    """A connection that cannot write: for --dry-run, the file stays byte-identical."""
    if store.is_sqlite and store.path is not None:
        engine = create_engine(
            f"sqlite:///file:{store.path}?mode=ro&uri=true", hide_parameters=True
        )
        return engine, engine.connect()
    return None, store.connect()


def open_store(url: str | None, *, read_only: bool = False) -> Store:
    """The store; `read_only` (--dry-run) opens nothing for writing and creates nothing.

    A normal Store sets up or checks the schema in a write transaction; a dry run only
    reads the revision, so the SQLite file stays byte-identical.
    """

    if not read_only:
        return Store(url)
    store = Store(url, migrate=False)
    if store.path is not None and not store.path.is_file():
        raise ConfigurationError(f"no database at {store.path}: nothing to plan for")
    engine, conn = _read_only(store)
    try:
        current = _current_revision(conn)
    finally:
        conn.close()
        if engine is not None:
            engine.dispose()
    if current != head_revision():
        raise ConfigurationError(f"the database schema is not current: {UPGRADE_HINT}")
    return store


def _suppression_key(conn: Connection) -> str | None:
    return conn.scalar(select(meta.c.value).where(meta.c.key == "suppression_key"))


def spread(due: dict[int, datetime], max_per_hour: int) -> dict[int, datetime]:
    """Move sends later so no clock hour holds more than `max_per_hour`, evenly spaced."""
    if max_per_hour < 1:
        raise InputError("must be at least 1", field="--max-per-hour")
    step = timedelta(seconds=3600 / max_per_hour)
    counts: Counter[datetime] = Counter()
    out = {}
    for contact_id, at in sorted(due.items(), key=lambda item: (item[1], item[0])):
        hour = at.replace(minute=0, second=0, microsecond=0)
        while counts[hour] >= max_per_hour:
            hour += timedelta(hours=1)
            at = hour
        out[contact_id] = max(at, hour + counts[hour] * step)
        counts[hour] += 1
    return out


def schedule_newsletter(
    store: Store,
    folder: Path | str,
    tags: Sequence[str],
    *,
    now: datetime,
    at: datetime | None = None,
    local_time: str | None = None,
    on_date: date | None = None,
    max_per_hour: int | None = None,
    dry_run: bool = False,
    actor: str | int = audit.CLI,
    audited_at: datetime | None = None,
) -> SchedulePlan:
    """Plan one delivery per subscribed, unsuppressed member of any of `tags`.

    `at`: everyone at that instant. `local_time` on `on_date`: that time in each reader's
    zone; a reader whose time has passed gets it now (never a day late). With
    `dry_run` the database is only read (SQLite: opened read-only).
    """
    campaign = spec.load_folder(folder)
    if campaign.spec.kind != KIND:
        raise InputError(
            "not a newsletter (kind: newsletter)",
            source=Path(folder) / "campaign.yaml",
            field="kind",
        )
    try:
        wanted = [normalise_tag(t) for t in tags]
    except ValueError as exc:
        raise InputError(str(exc), field="--to") from None
    if not wanted:
        raise InputError("give at least one --to TAG", field="--to")
    if (at is None) == (local_time is None):
        raise InputError("give either --at or --local-time with --date", field="--at")
    clock: time | None = None
    if local_time is not None:
        if on_date is None:
            raise InputError("--local-time needs --date", field="--date")
        try:
            clock = schedule.parse_clock(local_time)
        except ValueError as exc:
            raise InputError(str(exc), field="--local-time") from None
    plan = SchedulePlan(campaign=campaign.name, tags=tuple(wanted))
    engine, conn = _read_only(store) if dry_run else (None, store.connect())
    try:
        # Before counting: a drip campaign of the same name would count its contacts
        # as "already planned" (and placeholders would be refused only after).
        check_publishable(conn, campaign)
        key = _suppression_key(conn) or ""
        suppressed = set(conn.scalars(select(suppressions.c.address_hash)))
        done = set(
            conn.scalars(
                select(enrollments.c.contact_id).where(enrollments.c.campaign == campaign.name)
            )
        )
        rows = conn.execute(
            select(
                contacts.c.id,
                contacts.c.email,
                contacts.c.timezone,
                contacts.c.newsletter_unsubscribed_at,
                contacts.c.paused_until,
            ).where(
                contacts.c.email.is_not(None),
                or_(*(contacts.c.tags.like(f"%;{t};%") for t in wanted)),
            )
        ).all()
    finally:
        conn.close()
        if engine is not None:
            engine.dispose()
    for row in rows:
        if row.newsletter_unsubscribed_at is not None:
            plan.skipped_unsubscribed += 1
            continue
        digest = address_hash(key, row.email)
        if digest in suppressed:
            plan.skipped_suppressed += 1
            continue
        if row.id in done:
            plan.already += 1
            continue
        if clock is not None:
            tz = schedule.zone(row.timezone)
            due = schedule.to_utc(schedule.localize(datetime.combine(on_date, clock), tz))
        else:
            due = at.astimezone(UTC)
        # A patient's own pause (planning/pace.py): theirs goes when it ends.
        plan.due[row.id] = max(due, now, row.paused_until or now)
        plan.zones[row.id] = row.timezone
    if max_per_hour is not None:
        plan.due = spread(plan.due, max_per_hour)
    if dry_run or not plan.due:
        return plan
    step = campaign.steps[0]
    with store.begin() as conn:
        publish(conn, campaign, now=now, actor=actor, audited_at=audited_at)  # newsletter
        ids = list(plan.due)
        conn.execute(
            insert(enrollments),
            [
                {"contact_id": cid, "campaign": campaign.name, "signed_up_at": now,
                 "status": EnrollmentStatus.ACTIVE, "created_at": now}
                for cid in ids
            ],
        )  # fmt: skip
        enrolled = dict(
            conn.execute(
                select(enrollments.c.contact_id, enrollments.c.id).where(
                    enrollments.c.campaign == campaign.name
                )
            ).all()
        )
        conn.execute(
            insert(deliveries),
            [
                {"enrollment_id": enrolled[cid], "step_key": step.key, "position": 1,
                 "due_at": plan.due[cid], "status": DeliveryStatus.SCHEDULED, "attempts": 0,
                 "updated_at": now}
                for cid in ids
            ],
        )  # fmt: skip
    plan.written = True
    return plan


def cancel_newsletter(store: Store, folder: Path | str, *, now: datetime) -> int:
    """Cancel every delivery of this newsletter that has not gone out; returns how many."""
    campaign = spec.load_folder(folder)
    with store.begin() as conn:
        ids = list(
            conn.scalars(select(enrollments.c.id).where(enrollments.c.campaign == campaign.name))
        )
        return cancel_pending(conn, enrollment_ids=ids, reason="newsletter cancelled", now=now)
