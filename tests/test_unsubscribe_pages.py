"""The unsubscribe pages as a patient meets them: the clinic's brand, the newsletter choice
only for newsletter readers, and "I changed my mind" restoring exactly what was cancelled."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Route, expect
from sqlalchemy import select
from starlette.testclient import TestClient

from campaigns.authoring.spec import load_folder
from campaigns.compliance.suppressions import add_suppression
from campaigns.delivery.dispatcher import Dispatcher
from campaigns.planning.contacts import retag
from campaigns.planning.newsletter import schedule_newsletter
from campaigns.storage.tables import contacts, deliveries, enrollments, events, suppressions
from campaigns.web.app import create_app
from campaigns.web.listen import listening_socket
from senders.file import NullSender
from tests.helpers import utc
from tests.test_studio import axe_source, browser, run_axe  # noqa: F401 (fixtures)
from tests.test_unsubscribe import delivery_rows, enroll_pat, second_campaign, snapshot, token_for

NOW = utc("2026-03-02T12:00")
LOGO = "https://balancedketamine.example.com/img/logo.png"


class Clock:
    """The app's clock, moved by the test (tokens are signed with the real time)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def client(store, clock):
    app = create_app(store, environ={}, clock=clock)
    with TestClient(app, base_url="https://mail.clinic.test") as c:
        yield c


def branded(clinic_folder: Path) -> Path:
    """The clinic campaign with its own logo and plum colours."""
    spec = clinic_folder / "campaign.yaml"
    text = spec.read_text()
    text = text.replace(
        "  disclaimer:",
        f"  logo_url: {LOGO}\n  colors:\n    primary: '#6b2d5c'\n    text: '#222222'\n"
        "    background: '#f7f2f5'\n    button_text: '#ffffff'\n  disclaimer:",
        1,
    )
    spec.write_text(text)
    return clinic_folder


def run_at(store, at: datetime) -> int:
    return Dispatcher(store, lambda _c: NullSender()).run(now=at).sent


def statuses(store, enrollment_id: int) -> list[str]:
    return [row.status for row in delivery_rows(store, enrollment_id)]


# ------------------------------------------------------------------------------ the brand


def test_the_pages_show_the_clinics_name_logo_and_colours(store, clinic_folder, client):
    clinic = load_folder(branded(clinic_folder))
    token, _ = token_for(store, enroll_pat(store, clinic))

    page = client.get(f"/u/{token}")
    done = client.post(f"/u/{token}", data={"choice": "campaign"})

    for answer in (page, done):
        assert answer.status_code == 200
        assert f'<img src="{LOGO}" alt="Balanced Ketamine">' in answer.text
        assert "background: #6b2d5c" in answer.text  # the header band and main button
        assert "color: #222222" in answer.text
        csp = answer.headers["content-security-policy"]
        assert "img-src https://balancedketamine.example.com" in csp
        assert "script-src" not in csp and "default-src 'none'" in csp
    assert "Email preferences · Balanced Ketamine" in page.text


def test_a_campaign_without_a_logo_shows_its_name_in_the_header(store, clinic, client):
    token, _ = token_for(store, enroll_pat(store, clinic))
    page = client.get(f"/u/{token}")
    assert "<header>\nBalanced Ketamine\n</header>" in page.text
    assert "<img" not in page.text
    assert "img-src" not in page.headers["content-security-policy"]


# ------------------------------------------------------------------------- the newsletter


def second_issue(issue: Path, tmp_path: Path) -> Path:
    """The next newsletter issue: the same folder under another name."""
    folder = tmp_path / "july"
    folder.mkdir()
    for path in issue.iterdir():
        if path.is_file():
            (folder / path.name).write_text(path.read_text())
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace(f"name: {name_of(issue)}", "name: july-news", 1))
    return folder


def name_of(folder: Path) -> str:
    """The `name:` of a campaign folder (a newsletter's carries its month)."""
    return load_folder(folder).name


def test_stop_only_the_newsletter_is_offered_once_a_newsletter_went_out(
    store, clinic, issue, client, tmp_path
):
    drip = enroll_pat(store, clinic)
    token, _ = token_for(store, drip)
    retag(store, "pat@example.com", add=["patients"])
    page = client.get(f"/u/{token}")
    assert "Stop only the newsletter" not in page.text  # a drip contact, no newsletter yet

    schedule_newsletter(store, issue, ["patients"], now=NOW, at=utc("2026-03-03T15:00"))
    july = second_issue(issue, tmp_path)
    schedule_newsletter(store, july, ["patients"], now=NOW, at=utc("2026-04-01T15:00"))
    assert "Stop only the newsletter" not in client.get(f"/u/{token}").text  # planned only
    run_at(store, utc("2026-03-03T15:30"))  # June's issue goes out (and the welcome email)

    page = client.get(f"/u/{token}")
    assert 'value="newsletter"' in page.text and "Stop only the newsletter" in page.text
    done = client.post(f"/u/{token}", data={"choice": "newsletter"})
    assert "no more newsletters" in done.text
    with store.connect() as conn:
        by_campaign = dict(
            conn.execute(
                select(enrollments.c.campaign, deliveries.c.status)
                .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
                .where(enrollments.c.campaign.in_([name_of(issue), "july-news"]))
            ).all()
        )
    assert by_campaign == {name_of(issue): "sent", "july-news": "cancelled"}
    assert set(statuses(store, drip)) == {"sent", "scheduled"}


# ----------------------------------------------------------------------- changed my mind


def test_i_changed_my_mind_restores_exactly_what_that_unsubscribe_cancelled(
    store, clinic, client, clock, tmp_path
):
    pat = enroll_pat(store, clinic)
    other = enroll_pat(store, second_campaign(Path(clinic.origin), tmp_path))
    kim = enroll_pat(store, clinic, "kim@example.com", "Kim")
    run_at(store, utc("2026-03-02T16:00"))  # every welcome email
    # Pat leaves the second series on the 3rd: that choice must survive the undo.
    clock.at = utc("2026-03-03T12:00")
    other_token, _ = token_for(store, other, campaign="sleep-tips")
    client.post(f"/u/{other_token}", data={"choice": "campaign"})
    run_at(store, utc("2026-03-04T16:00"))  # the clinic's second email
    # On the 5th Pat (and Kim, the same minute) leave all email with one click.
    clock.at = utc("2026-03-05T12:00")
    token, _ = token_for(store, pat)
    kim_token, _ = token_for(store, kim)
    for t in (token, kim_token):
        client.post(f"/u/{t}", data={"List-Unsubscribe": "One-Click"})
    assert "I changed my mind" in client.get(f"/u/{token}").text
    before_other = delivery_rows(store, other)

    # Five days later, Pat changes their mind: steps 3 (6th) and 4 (9th) are past.
    clock.at = utc("2026-03-10T12:00")
    answer = client.post(f"/u/{token}", data={"choice": "undo"})

    assert answer.status_code == 200
    assert "Welcome back" in answer.text
    assert "You will get email from Balanced Ketamine again" in answer.text
    assert statuses(store, pat) == ["sent", "sent", "cancelled", "cancelled"] + ["scheduled"] * 2
    assert delivery_rows(store, other) == before_other  # the earlier choice stands
    assert statuses(store, kim)[2:] == ["cancelled"] * 4  # someone else's unsubscribe stands
    with store.connect() as conn:
        held = set(conn.scalars(select(suppressions.c.address_hash)))
        status = dict(conn.execute(select(enrollments.c.id, enrollments.c.status)).all())
        consent = conn.execute(
            select(contacts.c.consent_at, contacts.c.consent_source).where(
                contacts.c.email == "pat@example.com"
            )
        ).one()
        kinds = [row.type for row in conn.execute(select(events).order_by(events.c.id))]
    assert held == {store.address_hash("kim@example.com")}
    assert (status[pat], status[other], status[kim]) == ("active", "unsubscribed", "unsubscribed")
    assert consent == (utc("2026-03-10T12:00"), "changed their mind on the unsubscribe page")
    assert kinds == ["campaign_unsubscribe", "unsubscribe_undone", "unsubscribe", "resubscribe"]
    # The 12th's email goes out to Pat as planned, and nothing to Kim.
    assert run_at(store, utc("2026-03-12T16:00")) == 1


def test_undoing_keeps_a_suppression_that_was_there_before(store, clinic, client, clock):
    pat = enroll_pat(store, clinic)
    with store.begin() as conn:  # the address bounced once, before the unsubscribe
        add_suppression(conn, store.address_hash("pat@example.com"), "bounce", now=NOW)
    token, _ = token_for(store, pat)
    client.post(f"/u/{token}", data={"choice": "all"})
    client.post(f"/u/{token}", data={"choice": "undo"})
    with store.connect() as conn:
        assert conn.execute(select(suppressions.c.reason)).scalars().all() == ["bounce"]
        status = conn.scalar(select(enrollments.c.status).where(enrollments.c.id == pat))
    assert status == "active"


def test_undoing_keeps_the_suppression_when_the_address_bounced_since(store, clinic, client, clock):
    # The unsubscribe made the suppression; a bounce reported after it also suppresses
    # the address. Undoing the unsubscribe must not lift what the bounce asked for.
    pat = enroll_pat(store, clinic)
    token, claim = token_for(store, pat)
    client.post(f"/u/{token}", data={"choice": "all"})
    with store.begin() as conn:
        conn.execute(
            events.insert().values(
                provider="sendgrid",
                provider_event_id="sg-bounce-1",
                delivery_id=claim.delivery_id,
                type="bounced_hard",  # a bounce from any provider is stored so
                occurred_at=NOW,
                created_at=NOW,
            )
        )
    client.post(f"/u/{token}", data={"choice": "undo"})
    with store.connect() as conn:
        assert conn.execute(select(suppressions.c.reason)).scalars().all() == ["unsubscribe"]


def test_after_30_days_the_unsubscribe_stands(store, clinic, client, clock):
    token, _ = token_for(store, enroll_pat(store, clinic))
    client.post(f"/u/{token}", data={"choice": "all"})
    clock.at = utc("2026-04-02T12:00")  # 31 days later
    assert "I changed my mind" not in client.get(f"/u/{token}").text
    before = snapshot(store)
    answer = client.post(f"/u/{token}", data={"choice": "undo"})
    assert answer.status_code == 200
    assert "can no longer be undone" in answer.text
    assert snapshot(store) == before


def test_undo_twice_changes_nothing_more_and_the_link_can_unsubscribe_again(
    store, clinic, client, clock
):
    pat = enroll_pat(store, clinic)
    token, _ = token_for(store, pat)
    client.post(f"/u/{token}", data={"choice": "campaign"})
    clock.at = utc("2026-03-02T13:00")
    client.post(f"/u/{token}", data={"choice": "undo"})
    after_undo = snapshot(store)
    again = client.post(f"/u/{token}", data={"choice": "undo"})
    assert "Nothing to undo" in again.text
    assert snapshot(store) == after_undo
    assert "I changed my mind" not in client.get(f"/u/{token}").text

    clock.at = utc("2026-03-02T14:00")
    client.post(f"/u/{token}", data={"choice": "campaign"})
    assert set(statuses(store, pat)) == {"cancelled"}
    client.post(f"/u/{token}", data={"choice": "undo"})
    assert set(statuses(store, pat)) == {"scheduled"}
    with store.connect() as conn:
        kinds = [row.type for row in conn.execute(select(events).order_by(events.c.id))]
    assert kinds.count("resubscribe") == 2


# ------------------------------------------------------------------ in Chromium, with axe

# A 1x1 plum PNG standing in for the clinic's logo (the browser never leaves the machine).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGPIVg0FAAJYAT8f3d6pAAAAAElFTkSuQmCC"
)


class Announcing(uvicorn.Server):
    """uvicorn, saying when it is ready."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        self.ready.set()


@pytest.fixture
def served(store) -> Iterator[str]:
    """`dripmail serve`'s app on a free port, in a thread: its base URL."""
    sock = listening_socket("127.0.0.1", 0)
    server = Announcing(
        uvicorn.Config(create_app(store, environ={}), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(30), "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.mark.sqlite_only
def test_the_pages_work_at_375px_by_keyboard_and_pass_axe(
    store,
    clinic_folder,
    served: str,
    browser: Browser,  # noqa: F811 (the fixture)
    axe_source: str,  # noqa: F811
):
    clinic = load_folder(branded(clinic_folder))
    pat = enroll_pat(store, clinic)
    token, _ = token_for(store, pat)
    left: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        if url == LOGO:
            route.fulfill(status=200, content_type="image/png", body=PNG)
        elif url.startswith(served):
            route.continue_()
        else:
            left.append(url)
            route.abort("blockedbyclient")

    # bypass_csp: axe is injected as an inline script (the pages run none of their own).
    context = browser.new_context(viewport={"width": 375, "height": 740}, bypass_csp=True)
    context.route("**/*", guard)
    page = context.new_page()
    try:
        page.goto(f"{served}/u/{token}")
        expect(page.get_by_role("img", name="Balanced Ketamine")).to_be_visible()
        steps = [
            ("Email preferences", "Stop only “Ketamine and Sleep”", 2),
            ("You are unsubscribed", "I changed my mind", 1),
            ("Welcome back", None, 0),
        ]
        for heading, button, tabs in steps:
            expect(page.get_by_role("heading", level=1)).to_have_text(heading)
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, heading
            assert run_axe(page, axe_source, iframes=False) == [], heading
            if button is None:
                break
            for _ in range(tabs):
                page.keyboard.press("Tab")
            expect(page.get_by_role("button", name=button)).to_be_focused()
            page.keyboard.press("Enter")  # a plain form post: no script needed
    finally:
        context.close()
    assert left == []
    with store.connect() as conn:
        assert conn.scalar(select(enrollments.c.status).where(enrollments.c.id == pat)) == "active"


@pytest.mark.sqlite_only
def test_the_preference_centre_pages_work_at_375px_by_keyboard_and_pass_axe(
    store,
    clinic_folder,
    served: str,
    browser: Browser,  # noqa: F811 (the fixture)
    axe_source: str,  # noqa: F811
):
    clinic = load_folder(branded(clinic_folder))
    pat = enroll_pat(store, clinic)
    token, _ = token_for(store, pat)
    context = browser.new_context(viewport={"width": 375, "height": 740}, bypass_csp=True)
    context.route(
        "**/*",
        lambda route: (
            route.fulfill(status=200, content_type="image/png", body=PNG)
            if route.request.url == LOGO
            else route.continue_()
        ),
    )
    page = context.new_page()
    try:
        page.goto(f"{served}/p/{token}")
        # Each choice by keyboard: focus its button, Enter posts the plain form.
        steps = [
            ("Email preferences", "Pause for a month", None),
            ("Email preferences", "At most one email a week", "Your emails are paused."),
            ("Email preferences", "Erase me", "You will get at most one email a week."),
            ("Erase your data?", "Yes, erase my data", None),
            ("Your data is erased", None, None),
        ]
        for heading, button, notice in steps:
            expect(page.get_by_role("heading", level=1)).to_have_text(heading)
            if notice:
                expect(page.get_by_role("status")).to_have_text(notice)
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, heading
            assert run_axe(page, axe_source, iframes=False) == [], heading
            if button is None:
                break
            page.get_by_role("button", name=button).focus()
            page.keyboard.press("Enter")
    finally:
        context.close()
    with store.connect() as conn:
        assert conn.scalar(select(contacts.c.email).where(contacts.c.id == 1)) is None
