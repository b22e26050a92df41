"""The statistics charts read on a phone: measured in Chromium at 320, 375, 768 and 1280 px.

The clinic campaign (six steps) on a SQLite file, one to three sign-ups a day for four
months, each day's due emails sent by the dispatcher on that day: the statistics page
then holds the funnel and a sends-over-time chart of 120 days. At each width, in each
chart, the one drawing shown has every text at 11 CSS px or more, no two texts' boxes
intersect, no text crosses a bar or leaves the drawing, and each label under the columns
has a tick from the axis at its own column's centre and is centred on it or starts at it;
the page has no horizontal scroll and axe finds nothing.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from campaigns.authoring.spec import Campaign
from campaigns.console.charts import bar_chart
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.storage.store import Store
from senders.file import NullSender
from tests.console_support import Clock, add_person
from tests.helpers import utc
from tests.test_console_pages import chart_problems, running_console, too_wide
from tests.test_console_people_pages import sign_in
from tests.test_studio import artifacts, axe_source, browser, guarded, run_axe  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
NOW = utc("2026-03-09T14:00")
DAYS = 106  # sign-ups on these days; the last one's emails go on 14 days more
WIDTHS = (375, 1280, 320, 768)


def assert_charts_read_at_every_width(page: Page, axe: str, shots: Path, name: str) -> None:
    """At each of WIDTHS: the charts legible, no horizontal scroll, axe clean."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        assert chart_problems(page) == [], f"{name} at {width} px"
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{name}: horizontal scroll at {width} px: {too_wide(page)}"
        assert run_axe(page, axe, iframes=False) == [], f"{name} at {width} px"
        page.screenshot(path=str(shots / f"console-charts-{name}-{width}.png"), full_page=True)


@pytest.fixture
def months_of_sends(tmp_path: Path, clinic: Campaign):
    """The clinic campaign after four months of sign-ups, every email sent on its day."""
    store = Store(f"sqlite:///{tmp_path / 'console.db'}")
    first = NOW.replace(hour=0) - timedelta(days=DAYS + 14)
    sender = Dispatcher(store, lambda _c: NullSender())
    number = 0
    for day in range(DAYS + 14):
        midnight = first + timedelta(days=day)
        for _ in range(day % 3 + 1 if day < DAYS else 0):
            number += 1
            signed_up = f"{midnight:%Y-%m-%d}T09:30"
            signup = Signup(f"p{number}@example.com", "P", "America/New_York", signed_up, "form")
            enroll(store, clinic, signup, now=midnight + timedelta(hours=15))
        sender.run(now=midnight + timedelta(hours=15))  # 10:00 or 11:00 in New York
    clock = Clock(NOW)
    with running_console(store, clock) as server:
        yield store, clock, server
    store.close()


def test_the_statistics_charts_read_at_phone_and_desktop_widths(
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
    artifacts: Path,  # noqa: F811
    months_of_sends,
    clinic: Campaign,
) -> None:
    store, clock, server = months_of_sends
    origin = server.url.rstrip("/")
    admin = add_person(store, "admin", clock)
    options = {"viewport": {"width": 1280, "height": 900}, "bypass_csp": True}
    with guarded(browser, (server.url,), **options) as (context, _guard):
        page = context.new_page()
        sign_in(page, origin, admin, clock)
        page.goto(f"{origin}/statistics/{clinic.name}")
        expect(page.locator("#sends tbody tr")).to_have_count(DAYS + 14)
        expect(page.locator("#funnel tbody tr")).to_have_count(6)
        assert_charts_read_at_every_width(page, axe_source, artifacts, "statistics")


def test_the_widest_labels_and_values_stay_clear_of_each_other_at_every_width(
    browser: Browser,  # noqa: F811
) -> None:
    """Text widths are estimated, not measured: the widest letters, accents and long
    numbers in the console's own stylesheet and font, in rows and in columns; and a year
    of days, each shown label at its own column's tick."""
    wide = "WWW MMM @@@ %%% mmm www " * 4
    rows = [(wide, 9_999_999), ("Ñandú, éàü ÇÕ — ÅØ", 0), ("i", 1), ("W", 123_456)]
    columns = [(f"{n:,} WMW@%", n * 1_000_003) for n in range(1, 61)]
    first = date(2026, 1, 1)
    year = [(str(first + timedelta(days=n)), n % 7 * 1000) for n in range(366)]
    figures = "".join(
        f'<figure class="chart-box">{bar_chart(f"c{n}", "Awkward", bars)}</figure>'
        for n, bars in enumerate((rows, columns, columns[:13], [(wide, 5)], year))
    )
    css = (ROOT / "templates" / "console" / "console.css").read_text()
    page = browser.new_page()
    try:
        page.set_content(f"<!doctype html><style>{css}</style><main>{figures}</main>")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            assert chart_problems(page) == [], f"at {width} px"
    finally:
        page.close()
