"""The preference centre on the pages of `dripmail serve` (GET/POST /u/<token>, /p/<token>).

The page behind every email's preferences and unsubscribe links offers, below the
unsubscribe choices (web/app.py): pause all email for 2 weeks, a month or 3 months (or
resume now), fewer emails (a week apart), the language (one of the campaign's),
discreet emails, "send me my data" and "erase me". Each is a plain form posting back
to the token URL: no cookies, no scripts; a GET shows and never changes anything, so a
link scanner fetching every URL changes nothing. "Erase me" asks once more: the first
POST shows a confirmation page, only a POST with `confirm=yes` erases. The rules and
writes are in compliance/preferences.py and compliance/data_request.py; this module
turns form fields into those calls and their outcome into a notice on the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from campaigns.compliance import preferences as prefs
from campaigns.compliance.data_request import (
    DataSent,
    SenderFor,
    erase_me,
    send_my_data,
    sent_today,
)
from campaigns.compliance.preferences import Choice
from campaigns.errors import InputError
from campaigns.rendering.catalogs import N_
from campaigns.rendering.tokens import UnsubscribeClaim
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts

CONFIRM = "yes"  # the `confirm` field of the second "erase me" POST

# What the page says after a choice (translated on the page, templates/web/preferences).
NOTICES = {
    prefs.PAUSED: N_("Your emails are paused."),
    prefs.RESUMED: N_("Your emails have resumed."),
    prefs.FEWER_ON: N_("You will get at most one email a week."),
    prefs.FEWER_OFF: N_("Your emails will come as planned again."),
    prefs.LANGUAGE_SET: N_("Your language is saved."),
    prefs.DISCREET_ON: N_("Your emails will be discreet, from the next one."),
    prefs.DISCREET_OFF: N_("Your emails are no longer discreet."),
}
UNCHANGED = N_("Nothing to change: that was already your choice.")
NOT_OFFERED = N_("That choice is not offered here.")
DATA_NOTICES = {
    DataSent.SENT: (N_("We have sent your data to your email address."), 200),
    DataSent.ALREADY: (N_("We sent your data today already. You can ask again tomorrow."), 429),
    DataSent.FAILED: (N_("We could not send your data just now. Please try again later."), 503),
    DataSent.NOBODY: (UNCHANGED, 200),
}


@dataclass(frozen=True)
class CentreView:
    """What the preference centre part of the page shows."""

    erased: bool = False  # the contact asked to be erased: nothing else to show
    paused_until: str | None = None  # the pause's last day, written in the page's language
    fewer: bool = False
    discreet: bool = False
    language: str | None = None  # the language the contact reads (one of `languages`)
    languages: tuple[tuple[str, str], ...] = ()  # (tag, its name in itself), when 2 or more
    data_sent_today: bool = False
    notice: str | None = None  # what the last choice did (a msgid)


def language_name(tag: str) -> str:
    """A language's name in itself ("español"), the tag when Babel does not know it."""
    try:
        name = Locale.parse(tag, sep="-").get_display_name()
    except (UnknownLocaleError, ValueError):
        return tag
    return (name[:1].upper() + name[1:]) if name else tag


def centre_view(
    store: Store, claim: UnsubscribeClaim, *, now: datetime, page_language: str, chosen: str
) -> CentreView:
    """The contact's choices as the page shows them; `chosen` is the language their
    emails speak (web/app.preferences)."""
    with store.connect() as conn:
        contact = prefs.contact_of(conn, claim)
        held = conn.scalar(select(contacts.c.id).where(contacts.c.id == claim.contact_id))
        if contact is None:
            return CentreView(erased=held is not None)
        zone = conn.scalar(select(contacts.c.timezone).where(contacts.c.id == contact.id))
        offered = prefs.offered_languages(conn, claim.campaign)
    until = prefs.pause_until(contact, now)
    written = None
    if until is not None:
        try:
            local = until.astimezone(ZoneInfo(zone or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            local = until
        written = format_date(local, format="long", locale=page_language.replace("-", "_"))
    return CentreView(
        paused_until=written,
        fewer=contact.min_gap_days is not None,
        discreet=bool(contact.discreet),
        language=chosen,
        languages=tuple((tag, language_name(tag)) for tag in offered) if len(offered) > 1 else (),
        data_sent_today=sent_today(store, contact.id, now=now),
    )


def is_centre_choice(fields: Mapping[str, str]) -> bool:
    """Whether a form post is one of the preference centre's (never RFC 8058 one-click)."""
    if fields.get("List-Unsubscribe") == "One-Click":
        return False
    return fields.get("choice") in tuple(Choice)


Page = Callable[..., Response]  # (template, status=, notice=, **values) -> the page


class PreferenceCentre:
    """Carries out a preference centre post and answers with the page."""

    def __init__(self, store: Store, sender_for: SenderFor) -> None:
        self.store = store
        self.sender_for = sender_for

    def view(
        self, claim: UnsubscribeClaim, *, now: datetime, page_language: str, chosen: str
    ) -> CentreView:
        return centre_view(self.store, claim, now=now, page_language=page_language, chosen=chosen)

    async def post(
        self, claim: UnsubscribeClaim, fields: Mapping[str, str], page: Page, *, now: datetime
    ) -> Response:
        """Do what the form asks (in a worker thread: it writes) and show the outcome."""
        choice = Choice(fields["choice"])
        if choice is Choice.ERASE:
            if fields.get("confirm") != CONFIRM:
                return await run_in_threadpool(page, "erase_confirm.html.j2")
            await run_in_threadpool(partial(erase_me, self.store, claim, now=now))
            return await run_in_threadpool(page, "erased.html.j2")
        if choice is Choice.DATA:
            request = await run_in_threadpool(
                partial(send_my_data, self.store, claim, self.sender_for, now=now)
            )
            notice, status = DATA_NOTICES[request.outcome]
            return await run_in_threadpool(partial(page, status=status, notice=notice))
        try:
            change = await run_in_threadpool(partial(self._change, claim, choice, fields, now=now))
        except InputError:
            return await run_in_threadpool(partial(page, status=400, notice=NOT_OFFERED))
        return await run_in_threadpool(partial(page, notice=change))

    def _change(
        self, claim: UnsubscribeClaim, choice: Choice, fields: Mapping[str, str], *, now: datetime
    ) -> str:
        """Apply one choice; the notice it earns."""
        on = fields.get("value") == "on"
        calls: dict[Choice, Callable[[], prefs.Change]] = {
            Choice.PAUSE: partial(prefs.pause, self.store, claim, fields.get("for", ""), now=now),
            Choice.RESUME: partial(prefs.resume, self.store, claim, now=now),
            Choice.FEWER: partial(prefs.fewer, self.store, claim, on, now=now),
            Choice.DISCREET: partial(prefs.discreet, self.store, claim, on, now=now),
            Choice.LANGUAGE: partial(
                prefs.set_language, self.store, claim, fields.get("language", ""), now=now
            ),
        }
        change = calls[choice]()
        if not change.changed:
            return UNCHANGED
        return NOTICES[_event_of(choice, on)]


def _event_of(choice: Choice, on: bool) -> str:
    kinds: dict[Choice, str] = {
        Choice.PAUSE: prefs.PAUSED,
        Choice.RESUME: prefs.RESUMED,
        Choice.FEWER: prefs.FEWER_ON if on else prefs.FEWER_OFF,
        Choice.DISCREET: prefs.DISCREET_ON if on else prefs.DISCREET_OFF,
        Choice.LANGUAGE: prefs.LANGUAGE_SET,
    }
    return kinds[choice]


def with_notice(view: CentreView, notice: str | None) -> CentreView:
    return replace(view, notice=notice) if notice else view
