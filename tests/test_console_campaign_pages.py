"""The console's campaign pages in headless Chromium: list, campaign, editor with its live
preview, timing, new campaign from an upload, review and publish, settings; each page
axe-clean, without horizontal scroll at 375 px, with screenshots.

Screenshots go to $DRIPMAIL_TEST_ARTIFACTS, else <pytest's base temp>/test-artifacts
(the `artifacts` fixture of tests/test_studio.py), named console-campaigns-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from campaigns.settings import Settings
from campaigns.storage.audit import entries
from campaigns.storage.store import Store
from examples import ARTICLE
from tests.conftest import write_clinic_campaign
from tests.console_support import Clock, Person, add_person
from tests.helpers import utc
from tests.test_console_pages import check_page, running_console, tab_to
from tests.test_studio import artifacts, axe_source, browser, guarded  # noqa: F401

NOW = utc("2026-03-09T14:00")
NAME = "ketamine-and-sleep"
STEP3 = "what-about-physical-health"


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[tuple[Store, Clock, str, Path]]:
    workspace = tmp_path / "workspace"
    write_clinic_campaign(workspace / NAME)
    settings = Settings.from_env({"DRIPMAIL_WORKSPACE": str(workspace)})
    store = Store(f"sqlite:///{tmp_path / 'console.db'}", settings=settings)
    clock = Clock(NOW)
    with running_console(store, clock) as server:
        yield store, clock, server.url.rstrip("/"), workspace
    store.close()


def sign_in(page: Page, origin: str, person: Person, clock: Clock) -> None:
    page.goto(f"{origin}/sign-in")
    page.fill("#email", person.email)
    page.fill("#password", person.password)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Authenticator code")
    page.fill("#code", person.code(clock()))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Campaigns")
    clock.advance(seconds=31)


def check(page: Page, axe_source: str, artifacts: Path, name: str) -> None:  # noqa: F811
    check_page(page, axe_source, artifacts, f"campaigns-{name}")


def test_campaign_pages_by_an_editor_a_reviewer_and_an_admin(
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
    artifacts: Path,  # noqa: F811
    setting: tuple[Store, Clock, str, Path],
) -> None:
    store, clock, origin, workspace = setting
    editor = add_person(store, "editor", clock, name="Eddie <b>{{ 7*7 }}</b>")
    reviewer = add_person(store, "reviewer", clock)
    admin = add_person(store, "admin", clock)
    # bypass_csp: axe is injected as an inline script (as in tests/test_console_pages.py).
    options = {"viewport": {"width": 1280, "height": 900}, "bypass_csp": True}
    with guarded(browser, (origin + "/",), **options) as (context, guard):
        page = context.new_page()
        sign_in(page, origin, editor, clock)
        page.goto(f"{origin}/campaigns")
        expect(page.locator("#campaigns")).to_contain_text("Ketamine and Sleep")
        expect(page.locator("#campaigns")).to_contain_text("draft")
        check(page, axe_source, artifacts, "list")

        page.click("text=Ketamine and Sleep")
        expect(page.locator("h1")).to_have_text("Ketamine and Sleep")
        check(page, axe_source, artifacts, "campaign")

        # The editor: a new subject and body; the live preview shows the typed text.
        page.goto(f"{origin}/campaigns/{NAME}/steps/{STEP3}")
        page.fill("#subject", "Your body and your sleep <b>")
        page.fill("#body", "# Your body and your sleep\n\nA sentence typed just now.")
        phone = page.frame_locator("#frame-phone")
        expect(phone.locator("body")).to_contain_text("A sentence typed just now.", timeout=10000)
        page.click("#preview-dark")
        page.click("#save")
        expect(page.locator(".notice")).to_contain_text("Saved to the folder")
        text = (workspace / NAME / "03-what-about-physical-health.md").read_text()
        assert "Your body and your sleep <b>" in text and "A sentence typed just now." in text
        expect(page.locator("h1")).to_contain_text("Your body and your sleep <b>")
        check(page, axe_source, artifacts, "editor")

        page.goto(f"{origin}/campaigns/{NAME}/timing")
        check(page, axe_source, artifacts, "timing")

        # A new campaign from an uploaded article: the sequence first, then the folder.
        page.goto(f"{origin}/campaigns/new")
        check(page, axe_source, artifacts, "new")
        page.set_input_files("#article", str(ARTICLE))
        page.fill("#emails", "4")
        page.fill("#title", "Sleep better")
        page.click("#see-sequence")
        expect(page.locator("#sequence tbody tr")).to_have_count(4)
        check(page, axe_source, artifacts, "new-sequence")
        page.click("#create")
        expect(page.locator("h1")).to_have_text("Sleep better")
        assert (workspace / "sleep-better" / "campaign.yaml").is_file()

        page.goto(f"{origin}/campaigns/{NAME}")
        page.click("#submit-review")
        expect(page.locator(".notice")).to_contain_text("Submitted")
        page.click("#sign-out")

        sign_in(page, origin, reviewer, clock)
        page.goto(f"{origin}/campaigns/{NAME}/review")
        expect(page.locator("#diff-summary")).to_contain_text("Never published")
        expect(page.locator("#plan")).to_contain_text("First publish")
        check(page, axe_source, artifacts, "review")
        page.fill("#comment", "Reads well.")
        page.click("#approve")
        expect(page.locator(".notice")).to_contain_text("Approved")
        page.goto(f"{origin}/campaigns/{NAME}/review")
        page.click("#publish")
        expect(page.locator(".notice")).to_contain_text("Published")
        check(page, axe_source, artifacts, "published")
        page.click("#sign-out")

        # A second version: the review shows the diff against the published one and a plan
        # for the enrolled (not a first publish), and it too fits 375 px.
        sign_in(page, origin, editor, clock)
        page.goto(f"{origin}/campaigns/{NAME}/steps/{STEP3}")
        page.fill("#subject", "A much longer subject line for the third email of the sequence")
        page.click("#save")
        expect(page.locator(".notice")).to_contain_text("Saved to the folder")
        page.goto(f"{origin}/campaigns/{NAME}")
        page.click("#submit-review")
        page.click("#sign-out")
        sign_in(page, origin, reviewer, clock)
        page.goto(f"{origin}/campaigns/{NAME}/review")
        expect(page.locator("#diff-summary")).to_contain_text("Text changed")
        expect(page.locator("#plan")).to_contain_text("Enrolled")
        check(page, axe_source, artifacts, "review-second-version")
        page.click("#sign-out")

        sign_in(page, origin, admin, clock)
        page.goto(f"{origin}/settings")
        page.fill("#organisation", "Riverside Clinic")
        page.click("#save-clinic")
        expect(page.locator(".notice")).to_contain_text("Clinic details saved")
        check(page, axe_source, artifacts, "settings")
    assert guard.console == [], guard.console
    done = [entry.action for entry in entries(store) if entry.actor != "cli"]
    assert [a for a in done if not a.startswith(("sign", "user."))] == [
        "campaign.edit",
        "campaign.create",
        "review.submit",
        "review.approve",
        "publish",
        "campaign.edit",
        "review.submit",
        "settings.clinic",
    ]


def test_a_preview_frame_holding_the_keyboard_focus_shows_a_ring(
    browser: Browser,  # noqa: F811
    setting: tuple[Store, Clock, str, Path],
) -> None:
    """Tabbing into a preview puts the focus in the frame's document, where the page's
    `:focus` never sees it: the frame itself must still show the ring, and only that frame
    (the focus also moves from one frame straight into the next)."""
    store, clock, origin, _ = setting
    editor = add_person(store, "editor", clock)
    options = {"viewport": {"width": 1280, "height": 900}}
    with guarded(browser, (origin + "/",), **options) as (context, _guard):
        page = context.new_page()
        sign_in(page, origin, editor, clock)
        page.goto(f"{origin}/campaigns/{NAME}/steps/{STEP3}")
        expect(page.frame_locator("#frame-phone").locator("body")).to_contain_text("sleep")
        ring = "(id) => getComputedStyle(document.getElementById(id)).outlineStyle !== 'none'"
        tab_to(page, "#frame-wide")
        page.wait_for_function(ring, arg="frame-wide", timeout=5000)
        assert not page.evaluate(ring, "frame-phone")
        tab_to(page, "#frame-phone", limit=60)
        page.wait_for_function(ring, arg="frame-phone", timeout=5000)
        page.wait_for_function(f"() => !({ring})('frame-wide')", timeout=5000)
