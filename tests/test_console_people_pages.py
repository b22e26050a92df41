"""The contacts, newsletter and statistics pages in headless Chromium: axe-clean, no
horizontal scroll at 375 px, usable by keyboard, and typed names shown as typed.

The console runs in-process (uvicorn in a thread, a free port) on a SQLite file with the
clinic campaign published, contacts imported through the library, and their first
emails sent; screenshots go to the test artifacts folder.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from campaigns.authoring.spec import Campaign
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import import_csv
from campaigns.storage.store import Store
from senders.file import NullSender
from tests.console_support import Clock, add_person
from tests.helpers import utc
from tests.test_console_pages import check_page, running_console, tab_to, type_into
from tests.test_studio import artifacts, axe_source, browser, guarded  # noqa: F401

NOW = utc("2026-03-09T14:00")
NAME = "<script>alert(1)</script>{{ 7*7 }}"
ARTICLE = "---\ntitle: Sleep after a session\n---\n\nRest well after a session.\n\nMore.\n"


@pytest.fixture
def setting(tmp_path: Path, clinic: Campaign, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DRIPMAIL_WORKSPACE", str(tmp_path / "workspace"))
    store = Store(f"sqlite:///{tmp_path / 'console.db'}")
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["email", "first_name", "timezone", "signed_up_at", "consent", "tags"])
    writer.writerow(["pat@example.com", NAME, "Europe/London", "2026-03-09T10:00", "f", "news"])
    writer.writerow(["bo@example.com", "Bo", "Europe/Berlin", "2026-03-09T10:00", "f", "news"])
    path = tmp_path / "contacts.csv"
    path.write_text(rows.getvalue())
    import_csv(store, clinic, path, now=NOW)
    Dispatcher(store, lambda _c: NullSender()).run(now=NOW)
    clock = Clock(NOW)
    with running_console(store, clock) as server:
        yield store, clock, server, tmp_path
    store.close()


def sign_in(page, origin: str, person, clock: Clock) -> None:
    page.goto(f"{origin}/sign-in")
    page.fill("#email", person.email)
    page.fill("#password", person.password)
    page.press("#password", "Enter")
    page.fill("#code", person.code(clock()))
    page.press("#code", "Enter")
    expect(page.locator("h1")).to_have_text("Campaigns")
    clock.advance(seconds=31)


def test_contacts_newsletters_and_statistics_pages_are_accessible_at_375_px(
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
    artifacts: Path,  # noqa: F811
    setting,
    clinic: Campaign,
) -> None:
    store, clock, server, tmp_path = setting
    origin = server.url.rstrip("/")
    admin = add_person(store, "admin", clock)
    options = {"viewport": {"width": 1280, "height": 900}, "bypass_csp": True}
    with guarded(browser, (server.url,), **options) as (context, _guard):
        page = context.new_page()
        sign_in(page, origin, admin, clock)

        # Contacts: look one person up by keyboard; the name shows exactly as typed.
        tab_to(page, 'a[href="/contacts"]')
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Contacts")
        check_page(page, axe_source, artifacts, "contacts")
        type_into(page, "#find-email", "pat@example.com")
        page.keyboard.press("Enter")
        expect(page.locator("#person")).to_contain_text(NAME)
        expect(page.locator("#timeline tbody tr")).to_have_count(6)
        check_page(page, axe_source, artifacts, "contact-found")
        # Erasure with a mistyped address changes nothing.
        page.fill("#erase-email", "pat@example.com")
        page.fill("#erase-confirm", "pat@example.org")
        page.click("#erase")
        expect(page.locator(".problem")).to_contain_text("nothing was erased")
        check_page(page, axe_source, artifacts, "contact-erase-refused")

        # Statistics: two SVG charts, each with the table of its numbers.
        page.goto(f"{origin}/statistics")
        check_page(page, axe_source, artifacts, "statistics-list")
        page.click(f'a[href="/statistics/{clinic.name}"]')
        expect(page.locator("#total-sent")).to_have_text("2")
        expect(page.locator("svg[role=img]:visible")).to_have_count(2)  # one drawing each
        check_page(page, axe_source, artifacts, "statistics")

        # Newsletters: create from an article, the dry run's chart and tables, schedule.
        article = tmp_path / "sleep.md"
        article.write_text(ARTICLE)
        page.goto(f"{origin}/newsletters")
        check_page(page, axe_source, artifacts, "newsletters")
        page.set_input_files("#nl-article1", str(article))
        page.fill("#nl-url", "https://clinic.example/news")
        page.fill("#nl-org", "Clinic")
        page.fill("#nl-from", "Clinic <news@clinic.example>")
        page.fill("#nl-address", "1 Main Street, Springfield")
        page.click("#create-newsletter")
        expect(page.locator("#subject")).to_have_text("Sleep after a session")
        check_page(page, axe_source, artifacts, "newsletter")
        page.fill("#s-tags", "news")
        page.fill("#s-date", "2026-03-10")
        page.fill("#s-local", "09:00")
        page.click("#dry-run-button")
        expect(page.locator("#dry-counts")).to_contain_text("Would plan 2 emails")
        expect(page.locator("#per-zone tbody tr")).to_have_count(2)
        check_page(page, axe_source, artifacts, "newsletter-dry-run")
        page.click("#confirm")
        expect(page.locator("#scheduled")).to_contain_text("Planned 2 emails")
        check_page(page, axe_source, artifacts, "newsletter-scheduled")
