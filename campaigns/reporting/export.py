"""Review output (`dripmail render`): every step as .html, .txt and .eml, plus an index page.

Files are named `NN-<key>.*` so that they sort in step order. Unsubscribe links point at
`{public_url}/u/sample-token`: real signed tokens are made when a delivery is sent.
Placeholders left by `split` (values starting with TODO) show in the emails as written
and are listed at the top of the index, so nobody mistakes a draft for a finished email.

index.html shows what the preview studio shows (`dripmail preview`), offline, to attach
for approval: the timeline (day and local send time for a sign-up at `date`, subject and
preheader as an inbox lists them), then each email at desktop and phone widths (iframes
of the .html files beside it), its text part and its checks. One file with inline CSS,
no script, nothing fetched from elsewhere but the emails' own images.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from campaigns.authoring.checks import check_step
from campaigns.authoring.languages import choose_language
from campaigns.authoring.spec import Campaign, load_folder
from campaigns.authoring.translations import campaign_languages, in_language
from campaigns.errors import InputError, NotFoundError
from campaigns.planning.conditions import parse_attributes
from campaigns.planning.contacts import normalise_email
from campaigns.rendering.compile import compile_campaign
from campaigns.rendering.links import LinkBase, contact_message
from campaigns.rendering.personalise import SAMPLE, Recipient, Rendered
from campaigns.rendering.tokens import public_url
from campaigns.settings import Settings
from campaigns.storage.publish import open_campaign
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts
from campaigns.studio.views import (
    STUDIO_TEMPLATES,
    check_rows,
    describe_delay,
    format_when,
    page_environment,
    timeline,
)
from senders.base import Message
from senders.mime import to_bytes

__all__ = ["describe_delay", "export_campaign", "export_for"]


def export_campaign(
    campaign: Campaign,
    out: Path,
    *,
    recipient: Recipient = SAMPLE,
    public_url: str | None = None,
    date: datetime | None = None,
    settings: Settings | None = None,
) -> list[Path]:
    """Write each step as `NN-<key>.html/.txt/.eml` (and each A/B variant of it as
    `NN-<key>-<variant>.*`) and an `index.html`; return the paths.

    `public_url` falls back to DRIPMAIL_PUBLIC_URL (in `settings`), the campaign's
    links.public_url, then a placeholder (as for the emails sent); `date` (the .eml Date
    header, and the sample sign-up of the timeline) defaults to now; `settings` (default:
    the environment's) are also those the index's checks run with.
    """
    settings = Settings.from_env() if settings is None else settings
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    compiled = compile_campaign(campaign)
    links = LinkBase.of(campaign, public_url or settings.public_url).sample()
    date = date or datetime.now(UTC)
    width = max(2, len(str(len(campaign.steps))))
    entries = timeline(
        campaign,
        compiled,
        recipient,
        signed_up_at=date,
        links=(links.unsubscribe_url, links.preferences_url),
    )
    written: list[Path] = []
    emails = []
    for step, entry in zip(campaign.steps, entries, strict=True):
        stem = f"{step.position:0{width}d}-{step.key}"
        message = contact_message(
            compiled, step.key, recipient, links, delivery_id=f"sample-{stem}", date=date
        )
        paths = _write(out, stem, message)
        written.extend(paths.values())
        for variant in step.variants:  # each A/B variant too: NN-<key>-<variant>.*
            other = contact_message(
                compiled, step.key, recipient, links, delivery_id=f"sample-{stem}-{variant.name}",
                date=date, variant=variant.name,
            )  # fmt: skip
            written.extend(_write(out, f"{stem}-{variant.name}", other).values())
        rendered = Rendered(message.subject, message.preheader, message.html, message.text)
        emails.append(
            {
                "entry": entry,
                "text": message.text,
                "html": paths["html"].name,
                "text_file": paths["txt"].name,
                "eml": paths["eml"].name,
                "checks": check_rows(
                    check_step(campaign, step.key, settings=settings),
                    rendered,
                    campaign.spec.brand.postal_address,
                    Path(campaign.origin) if campaign.origin else None,
                ),
            }
        )
    index = out / "index.html"
    index.write_text(
        page_environment()
        .get_template("export.html.j2")
        .render(
            title=campaign.spec.title or campaign.name,
            name=campaign.name,
            version=campaign.version,
            language=campaign.spec.language,
            recipient=recipient.email,
            first_name=recipient.first_name,
            timezone=recipient.timezone,
            signed_up=format_when(date.astimezone(entries[0].local.tzinfo)),
            placeholders=campaign.placeholders(),
            entries=entries,
            emails=emails,
            href=lambda entry: f"#email-{entry.key}",
            css=(STUDIO_TEMPLATES / "studio.css").read_text(encoding="utf-8"),
        ),
        encoding="utf-8",
    )
    written.append(index)
    return written


def _write(out: Path, stem: str, message: Message) -> dict[str, Path]:
    """`stem`.html, .txt and .eml of one message."""
    paths = {kind: out / f"{stem}.{kind}" for kind in ("html", "txt", "eml")}
    paths["html"].write_text(message.html, encoding="utf-8")
    paths["txt"].write_text(message.text, encoding="utf-8")
    # A file takes UTF-8 headers (RFC 6532), as the file sender writes them.
    paths["eml"].write_bytes(to_bytes(message, linesep="\n", utf8=True))
    return paths


def export_for(
    store: Store | None,
    ref: str | Path,
    out: Path,
    *,
    email: str | None = None,
    settings: Settings | None = None,
    language: str | None = None,
) -> Path:
    """`dripmail render`: export a campaign folder or published campaign; return index.html.

    With `email`, the emails are personalised for that enrolled contact (needs `store`);
    otherwise for the sample patient. The emails are in `language` (else the contact's),
    as the campaign would send them (its default when it lacks that language). Links are
    built on DRIPMAIL_PUBLIC_URL (`settings`, default: the environment's) or the
    campaign's links.public_url, else on the placeholder.
    """
    settings = Settings.from_env() if settings is None else settings
    # Without a store only a folder can be previewed: no database is created for it.
    campaign = load_folder(ref) if store is None else open_campaign(store, ref)
    recipient = SAMPLE if email is None else _contact(store, email)
    spec = campaign.spec
    chosen = choose_language(
        language or recipient.language, campaign_languages(spec), spec.language
    )
    campaign = in_language(campaign, chosen)  # the index, timeline and checks in it too
    paths = export_campaign(
        campaign,
        Path(out),
        recipient=recipient,
        public_url=public_url(settings.public_url, campaign.spec.links.public_url),
        settings=settings,
    )
    return paths[-1]


def _contact(store: Store | None, email: str) -> Recipient:
    """The enrolled contact with this address, as a Recipient."""
    if store is None:
        raise InputError("--email needs the database the contact is enrolled in", field="email")
    try:
        address = normalise_email(email)
    except ValueError as exc:
        raise InputError(str(exc), field="email") from None
    with store.connect() as conn:
        row = conn.execute(
            select(
                contacts.c.email,
                contacts.c.first_name,
                contacts.c.timezone,
                contacts.c.attributes,
                contacts.c.language,
                contacts.c.discreet,
            ).where(contacts.c.email == address)
        ).first()
    if row is None:
        raise NotFoundError(f"no contact {address} in the database")
    return Recipient(
        row.email,
        row.first_name,
        row.timezone,
        attributes=parse_attributes(row.attributes),
        language=row.language,
        discreet=bool(row.discreet),  # as their next email will be
    )
