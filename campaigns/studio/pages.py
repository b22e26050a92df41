"""The studio page from the current snapshot: timeline, the selected email, its checks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import available_timezones

from starlette.responses import HTMLResponse

from campaigns.authoring.checks import Finding, check_step
from campaigns.authoring.sender_settings import outbox
from campaigns.authoring.spec import Campaign
from campaigns.authoring.translations import in_language, language_choices
from campaigns.authoring.variant_spec import label, variant_of
from campaigns.rendering.links import sample_links
from campaigns.rendering.personalise import CompiledCampaign, Recipient, Rendered
from campaigns.rendering.tokens import public_url
from campaigns.studio.contact import read_contact
from campaigns.studio.state import Snapshot, Studio
from campaigns.studio.views import (
    DESKTOP_WIDTH,
    PHONE_WIDTH,
    check_rows,
    describe_delay,
    format_when,
    page_environment,
    timeline,
)

log = logging.getLogger("dripmail.studio")

# The studio page: its own script and stylesheet, frames from itself, nothing else.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _zones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))


class Pages:
    """Builds the studio's responses from the current snapshot."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.env = page_environment()
        self.zones = _zones()

    def links(self, campaign: Campaign) -> tuple[str, str]:
        """(unsubscribe_url, preferences_url) the previews of `campaign` carry."""
        return sample_links(
            public_url(self.studio.settings.public_url, campaign.spec.links.public_url)
        )

    def render(
        self, snapshot: Snapshot, params: Any, *, notice: str | None = None, status: int = 200
    ) -> HTMLResponse:
        values = self.values(snapshot, params)
        values["notice"] = notice
        html = self.env.get_template("studio.html.j2").render(values)
        return HTMLResponse(
            html, status, headers={**COMMON_HEADERS, "Content-Security-Policy": _PAGE_CSP}
        )

    def values(self, snapshot: Snapshot, params: Any) -> dict[str, Any]:
        studio = self.studio
        values: dict[str, Any] = {
            "version": snapshot.version,
            "error": snapshot.error,
            "folder": str(studio.folder),
            "token": studio.token,
            "zones": self.zones,
            "campaign": None,
        }
        campaign, compiled = snapshot.campaign, snapshot.compiled
        if campaign is None or compiled is None:
            return values
        contact = read_contact(params, campaign, studio.clock())
        recipient = contact.recipient()
        languages = language_choices(campaign.spec)
        if contact.language != campaign.spec.language:  # the campaign as they read it
            campaign = in_language(campaign, contact.language)
            compiled = compiled.in_language(contact.language)
        links = self.links(campaign)
        entries = timeline(
            campaign,
            compiled,
            recipient,
            signed_up_at=contact.signed_up_at,
            links=links,
            facts=contact.facts(),
        )
        key = str(params.get("step") or "")
        if key not in compiled.steps:
            key = campaign.steps[0].key
        entry = next(e for e in entries if e.key == key)
        variant = pick_variant(compiled, key, params.get("variant"))
        rendered = personalise(compiled, key, recipient, links, variant)
        try:
            if contact.language != languages[0][0]:
                findings = check_step(campaign, key, settings=studio.settings)
            else:
                findings = snapshot.findings(key, studio.settings, variant)
        except Exception as exc:  # the linter must not take the preview down with it
            log.error("checks failed for %s", key, exc_info=exc)
            findings = [Finding("error", "checks", f"the checks could not run: {exc}", "")]
        query = contact.query()

        def href(item: Any) -> str:
            return "/?" + urlencode({"step": item.key, **query})

        chosen = {"variant": variant} if variant else {}
        frame_query = urlencode(
            {
                "name": contact.name,
                "attrs": query["attrs"],
                "lang": contact.language,
                "v": snapshot.version,
                **chosen,
            }
        )
        step = campaign.step(key)
        variants = [
            {
                "name": v.name,
                "label": label(v.name),
                "subject": v.subject,
                "share": f"{v.weight / sum(w.weight for w in step.variants):.0%}",
                "href": "/?" + urlencode({"step": key, "variant": v.name, **query}),
                "current": v.name == variant,
            }
            for v in step.variants
        ]
        values.update(
            campaign=campaign,
            title=campaign.spec.title or campaign.name,
            contact=contact,
            languages=languages,
            page_language=snapshot.campaign.spec.language if snapshot.campaign else "en",
            entries=entries,
            entry=entry,
            step=variant_of(step, variant) if variant else step,
            variants=variants,
            rendered=rendered,
            checks=check_rows(
                findings,
                rendered,
                campaign.spec.brand.postal_address,
                studio.folder,
            ),
            href=href,
            file_href=_file_href,
            src={
                "desktop": f"/email/{key}.html?{frame_query}",
                "phone": f"/email/{key}.html?{frame_query}",
                "dark": f"/email/{key}.html?{frame_query}&view=dark",
            },
            widths={"desktop": DESKTOP_WIDTH, "phone": PHONE_WIDTH},
            sender=studio.sender or campaign.spec.sender.type,
            outbox=outbox(campaign.spec.sender, studio.settings),
            placeholders=campaign.placeholders(),
            signed_up=format_when(contact.signed_up_at),
            delay=describe_delay(campaign.step(key).delay),
        )
        return values


def _file_href(path: str) -> str:
    """The /files/ link of a file named relative to the campaign folder ("" for others)."""
    if not path or Path(path).is_absolute() or path.startswith("templates/"):
        return ""
    return "/files/" + quote(path)


def pick_variant(compiled: CompiledCampaign, key: str, wanted: Any) -> str | None:
    """The A/B variant of step `key` to show: the one asked for, else its first (a step
    with variants only ever goes as one of them); None for a step without variants."""
    names = list(compiled.variants.get(key, {}))
    if not names:
        return None
    return wanted if wanted in names else names[0]


def personalise(
    compiled: CompiledCampaign,
    key: str,
    recipient: Recipient,
    links: tuple[str, str],
    variant: str | None = None,
) -> Rendered:
    """One email of `compiled` (or of its variant `variant`) for `recipient`, with the
    preview links."""
    unsubscribe_url, preferences_url = links
    return (
        compiled.in_language(recipient.language)
        .step(key, variant)
        .personalise(recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url)
    )
