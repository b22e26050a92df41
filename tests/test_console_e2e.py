"""The acceptance run of the marketing console, in headless Chromium, start to finish.

An admin (made with `users add`, as on a fresh database) signs in with a password and a
TOTP code, sets the clinic details, and adds an editor and a reviewer, who use their
set-up links. The editor uploads the clinic article, changes step 3's subject, sees it in
the phone preview and submits; the reviewer sees the diff and the plan, approves and
publishes. The admin imports 50 contacts; `dripmail run --once --now ...` (the real CLI,
in a subprocess) sends their first emails; the statistics page shows 50 sent; and
`dripmail audit` lists every action of the run in order with who took it. Each page is
checked with axe and at 375 px, and a screenshot of each is saved as a test artifact
($DRIPMAIL_TEST_ARTIFACTS, else <pytest's base temp>/test-artifacts).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from campaigns.console.accounts import add_user
from campaigns.storage.store import Store
from examples import ARTICLE
from tests.console_support import PASSWORD, Clock
from tests.helpers import utc
from tests.test_console_pages import check_page, running_console
from tests.test_studio import artifacts, axe_source, browser, guarded  # noqa: F401

NOW = utc("2026-03-09T14:00")
ROOT = Path(__file__).resolve().parents[1]
NEW_SUBJECT = "Sleep and your body: what to watch for"


def contacts_csv(count: int = 50) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "first_name", "timezone", "signed_up_at", "consent"])
    for n in range(1, count + 1):
        writer.writerow(
            [f"patient{n}@example.com", f"Patient {n}", "Europe/London", "2026-03-09T10:00",
             "clinic sign-up form"]
        )  # fmt: skip
    return out.getvalue().encode()


def dripmail(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class Staff:
    """One person's browser window onto the console."""

    def __init__(self, context: BrowserContext, origin: str, clock: Clock, shots: Path, axe: str):
        self.page: Page = context.new_page()
        self.origin = origin
        self.clock = clock
        self.shots = shots
        self.axe = axe
        self.secret = ""

    def check(self, name: str) -> None:
        """axe-clean, fits 375 px, and a screenshot at each width saved as an artifact."""
        check_page(self.page, self.axe, self.shots, f"e2e-{name}")

    def set_up(self, link: str, name: str) -> None:
        self.page.goto(link)
        expect(self.page.locator("h1")).to_have_text("Set up your account")
        self.secret = self.page.locator("#totp-secret").inner_text()
        self.page.fill("#password", PASSWORD)
        self.page.fill("#confirm", PASSWORD)
        self.page.fill("#code", pyotp.TOTP(self.secret).at(self.clock()))
        self.page.press("#code", "Enter")
        expect(self.page.locator("h1")).to_have_text("Your account is ready")
        self.check(f"{name}-setup-done")
        self.clock.advance(seconds=31)

    def sign_in(self, email: str, name: str) -> None:
        self.page.goto(f"{self.origin}/sign-in")
        self.page.fill("#email", email)
        self.page.fill("#password", PASSWORD)
        self.page.press("#password", "Enter")
        expect(self.page.locator("h1")).to_have_text("Authenticator code")
        self.page.fill("#code", pyotp.TOTP(self.secret).at(self.clock()))
        self.page.press("#code", "Enter")
        expect(self.page.locator(".who")).to_contain_text("Sign out")
        self.check(f"{name}-signed-in")
        self.clock.advance(seconds=31)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    monkeypatch.setenv("DRIPMAIL_WORKSPACE", str(workspace))
    db = f"sqlite:///{tmp_path / 'console.db'}"
    store = Store(db)
    clock = Clock(NOW)
    with running_console(store, clock) as server:
        yield store, clock, server, db, workspace, tmp_path
    store.close()


def test_the_clinic_runs_a_campaign_from_the_console_end_to_end(
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
    artifacts: Path,  # noqa: F811
    world,
) -> None:
    store, clock, server, db, _workspace, tmp_path = world
    origin = server.url.rstrip("/")
    options = {"viewport": {"width": 1280, "height": 900}, "bypass_csp": True}
    first = add_user(store, "ana@clinic.example", "admin", name="Ana", now=clock())

    with guarded(browser, (server.url,), **options) as (admin_context, _):
        admin = Staff(admin_context, origin, clock, artifacts, axe_source)
        admin.set_up(f"{origin}/setup/{first.token}", "admin")
        admin.sign_in("ana@clinic.example", "admin")
        page = admin.page

        # The clinic details a new campaign is written with (kept once, in settings).
        page.goto(f"{origin}/settings")
        for key, value in {
            "organisation": "Balanced Ketamine",
            "from_name": "Balanced Ketamine Care Team",
            "from_address": "care@balancedketamine.example.com",
            "postal_address": "100 Example Avenue, Springfield, IL 62701, USA",
            "website": "https://balancedketamine.example.com",
            "cta_url": "https://balancedketamine.example.com/contact",
            "disclaimer": "This email is for education, not medical advice.",
        }.items():
            page.fill(f"#{key}", value)
        page.click("#save-clinic")
        expect(page.locator(".notice")).to_contain_text("saved")
        admin.check("settings")

        # People: an editor and a reviewer, each with a set-up link shown once.
        links = {}
        for email, role in (("ed@clinic.example", "editor"), ("rae@clinic.example", "reviewer")):
            page.goto(f"{origin}/people")
            page.fill("#new-email", email)
            page.fill("#new-name", role.title())
            page.select_option("#new-role", role)
            page.click("#add-person")
            links[role] = page.locator("#setup-link").inner_text().strip()
        admin.check("people")

        with guarded(browser, (server.url,), **options) as (editor_context, _):
            editor = Staff(editor_context, origin, clock, artifacts, axe_source)
            editor.set_up(links["editor"], "editor")
            editor.sign_in("ed@clinic.example", "editor")
            page = editor.page
            # Upload the clinic article, see the sequence, create the folder.
            page.goto(f"{origin}/campaigns/new")
            editor.check("new-campaign")
            page.set_input_files("#article", ARTICLE)
            page.click("#see-sequence")
            expect(page.locator("#create")).to_be_visible()
            editor.check("new-campaign-sequence")
            page.click("#create")
            expect(page.locator("#submit-review")).to_be_visible()
            name = urlsplit(page.url).path.rstrip("/").rsplit("/", 1)[1]
            editor.check("campaign")
            # Step 3's subject, then the phone preview shows it.
            page.locator(f'a[href^="/campaigns/{name}/steps/"]').nth(2).click()
            expect(page.locator("#subject")).to_be_visible()
            editor.check("editor-opened")
            page.fill("#subject", NEW_SUBJECT)
            page.click("#save")
            expect(page.locator("#subject")).to_have_value(NEW_SUBJECT)
            page.click("#preview-phone-button")
            phone = page.frame_locator("#frame-phone")
            # The email in the phone frame is labelled by its subject (as a mail app shows it).
            expect(phone.get_by_role("article", name=NEW_SUBJECT)).to_be_visible()
            page.screenshot(path=str(artifacts / "console-e2e-editor-phone-preview.png"))
            editor.check("editor")
            page.goto(f"{origin}/campaigns/{name}/timing")
            editor.check("timing")
            page.goto(f"{origin}/campaigns")
            editor.check("campaign-list")
            page.goto(f"{origin}/campaigns/{name}")
            page.click("#submit-review")
            expect(page.locator("body")).to_contain_text("review")
            editor.check("submitted")

        with guarded(browser, (server.url,), **options) as (reviewer_context, _):
            reviewer = Staff(reviewer_context, origin, clock, artifacts, axe_source)
            reviewer.set_up(links["reviewer"], "reviewer")
            reviewer.sign_in("rae@clinic.example", "reviewer")
            page = reviewer.page
            page.goto(f"{origin}/campaigns/{name}/review")
            expect(page.locator("#diff-summary")).to_be_visible()
            expect(page.locator("body")).to_contain_text("The plan")
            expect(page.locator("body")).to_contain_text(NEW_SUBJECT)
            reviewer.check("review")
            page.fill("#comment", "Checked against the clinic's leaflet.")
            page.click("#approve")
            expect(page.locator("#open-publish")).to_be_visible()
            page.click("#open-publish")
            page.click("#publish")
            expect(page.locator("body")).to_contain_text("published")
            reviewer.check("published")

        # The admin imports 50 contacts into the published campaign.
        page = admin.page
        page.goto(f"{origin}/contacts")
        admin.check("contacts")
        page.select_option("#import-campaign", name)
        page.set_input_files(
            "#import-csv",
            {"name": "patients.csv", "mimeType": "text/csv", "buffer": contacts_csv()},
        )
        page.click("#import")
        # The import runs in the background; its page shows the report when it has ended.
        expect(page.locator("#import-counts")).to_have_text(
            "imported 50, already enrolled 0, suppressed 0, rejected 0", timeout=60_000
        )
        admin.check("contacts-imported")

        # The worker, as cron runs it: the first email of each of the 50.
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DRIPMAIL_")},
            "PYTHONPATH": str(ROOT),
            "DRIPMAIL_OUTBOX": str(tmp_path / "outbox"),
        }
        sent = dripmail("run", "--once", "--now", "2026-03-09T14:05Z", "--db", db, env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 50

        page.goto(f"{origin}/statistics/{name}")
        expect(page.locator("#total-sent")).to_have_text("50")
        admin.check("statistics")
        # The rest of the console's pages, each axe-clean and 375 px wide too.
        for path, shot in (
            ("/statistics", "statistics-list"),
            ("/newsletters", "newsletters"),
            ("/audit", "audit"),
            ("/", "dashboard"),
        ):
            page.goto(f"{origin}{path}")
            admin.check(shot)

    # Every action, in order, with who took it (the CLI's own trail).
    trail = dripmail("audit", "--json", "--db", db, env=env)
    assert trail.returncode == 0, trail.stderr
    lines = [json.loads(line) for line in trail.stdout.splitlines() if line.strip()]
    done = [(e["actor_email"] or e["actor"], e["action"]) for e in lines]
    (artifacts / "console-e2e-audit.txt").write_text(dripmail("audit", "--db", db, env=env).stdout)
    expected = [
        ("ana@clinic.example", "user.setup"),
        ("ana@clinic.example", "sign-in"),
        ("ana@clinic.example", "settings.clinic"),
        ("ana@clinic.example", "user.add"),
        ("ana@clinic.example", "user.add"),
        ("ed@clinic.example", "user.setup"),
        ("ed@clinic.example", "sign-in"),
        ("ed@clinic.example", "campaign.create"),
        ("ed@clinic.example", "campaign.edit"),
        ("ed@clinic.example", "review.submit"),
        ("rae@clinic.example", "user.setup"),
        ("rae@clinic.example", "sign-in"),
        ("rae@clinic.example", "review.approve"),
        ("rae@clinic.example", "publish"),
        ("ana@clinic.example", "contacts.import"),
    ]
    seen = [item for item in done if item[1] != "user.add" or item[0] != "cli"]
    assert seen[-len(expected) :] == expected, done
    text = dripmail("audit", "--db", db, env=env).stdout
    assert re.search(r"ana@clinic\.example\s+contacts\.import\s+campaign " + name, text)
    assert "patient1@example.com" not in text
