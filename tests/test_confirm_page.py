"""The double opt-in page in Chromium: 375 px wide, by keyboard, axe-clean, no script."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import func, select

from campaigns.planning.confirmations import claim_of
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.rendering.tokens import ConfirmSigner
from campaigns.storage.store import utcnow
from campaigns.storage.tables import confirmations, enrollments
from tests.test_studio import axe_source, browser, run_axe  # noqa: F401 (fixtures)
from tests.test_unsubscribe_pages import served  # noqa: F401 (fixture)


@pytest.mark.sqlite_only
def test_the_confirm_page_works_at_375px_by_keyboard_and_passes_axe(
    store,
    clinic,
    served: str,  # noqa: F811
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
):
    signup = Signup("pat@example.com", "Pat", "Europe/London", None, "clinic form")
    report = enroll(store, clinic, signup, now=utcnow(), double=True)
    assert report.pending == 1
    with store.connect() as conn:
        request = conn.execute(select(confirmations)).one()
    token = ConfirmSigner(store.secret_key()).token(claim_of(request))
    left: list[str] = []

    def guard(route) -> None:
        if route.request.url.startswith(served):
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort("blockedbyclient")

    # bypass_csp: axe is injected as an inline script (the page runs none of its own).
    context = browser.new_context(viewport={"width": 375, "height": 740}, bypass_csp=True)
    context.route("**/*", guard)
    page = context.new_page()
    try:
        page.goto(f"{served}/c/{token}")
        for heading, button in (
            ("Confirm your email", "Confirm my email"),
            ("Thank you: your email is confirmed", None),
        ):
            expect(page.get_by_role("heading", level=1)).to_have_text(heading)
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, heading
            assert run_axe(page, axe_source, iframes=False) == [], heading
            if button is None:
                break
            with store.connect() as conn:  # showing the page changed nothing
                assert conn.scalar(select(func.count()).select_from(enrollments)) == 0
            page.keyboard.press("Tab")
            expect(page.get_by_role("button", name=button)).to_be_focused()
            page.keyboard.press("Enter")  # a plain form post: no script, no cookie
        page.goto(f"{served}/c/{token}")
        expect(page.get_by_role("heading", level=1)).to_have_text("Your email is already confirmed")
    finally:
        context.close()
    assert left == []
    with store.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(enrollments)) == 1
