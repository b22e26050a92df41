"""The preview studio as staff use it, in headless Chromium (the Debian package, no download).

One browser for the module; the studio runs in-process (uvicorn in a thread, a free port)
on a copy of the clinic campaign. Tests that edit files get their own studio and copy.
Every page is routed: only the studio's own origin (and about:/data:) may be reached,
anything else is aborted and recorded, and each test asserts nothing was attempted.
Screenshots go to $DRIPMAIL_TEST_ARTIFACTS, else <pytest's base temp>/test-artifacts.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright
from typer.testing import CliRunner

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.reporting.export import export_campaign
from campaigns.studio.server import StudioServer, make_server
from tests.conftest import write_clinic_campaign

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
FIXTURE = Path(__file__).parent / "fixtures" / "render"
NOW = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)  # Monday 10:00 in New York: inside the window
LIVE = 2000  # ms: the studio promises a saved file shows within two seconds


# --------------------------------------------------------------------------- fixtures


@dataclass
class Running:
    """A studio serving in a background thread."""

    server: StudioServer
    folder: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.socket.getsockname()[1]


@contextmanager
def running_studio(folder: Path, **options: Any) -> Iterator[Running]:
    server = make_server(folder, port=0, clock=lambda: NOW, **options)
    ready = threading.Event()
    server.on_ready = lambda _url: ready.set()
    thread = threading.Thread(target=server.run_studio, name="studio", daemon=True)
    thread.start()
    assert ready.wait(30), "the studio did not start"
    try:
        yield Running(server, folder)
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "the studio did not stop"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(
        os.environ.get("DRIPMAIL_TEST_ARTIFACTS")
        or tmp_path_factory.getbasetemp() / "test-artifacts"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(
            f"axe-core is not installed ({AXE} is missing): run `npm ci --prefix tests/js` "
            "from the repository root, then run the tests again"
        )
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The clinic campaign, read-only for the tests that use it."""
    base = tmp_path_factory.mktemp("studio")
    folder = write_clinic_campaign(base / "clinic")
    with running_studio(folder, db=f"sqlite:///{base / 'studio.db'}") as running:
        yield running


@pytest.fixture
def own_studio(tmp_path: Path) -> Iterator[Running]:
    """A studio on its own copy of the clinic campaign, for tests that edit files."""
    folder = write_clinic_campaign(tmp_path / "clinic")
    with running_studio(folder, db=f"sqlite:///{tmp_path / 'studio.db'}") as running:
        yield running


@pytest.fixture(scope="module")
def clinic(studio: Running) -> Campaign:
    return load_folder(studio.folder)


@dataclass
class Guard:
    """Routes every request of a browser context: the allowed origin passes, others abort."""

    allowed: tuple[str, ...]
    blocked: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def __call__(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.allowed):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")


@contextmanager
def guarded(
    browser: Browser, allowed: tuple[str, ...], **options: Any
) -> Iterator[tuple[BrowserContext, Guard]]:
    guard = Guard((*allowed, "about:", "data:"))
    context = browser.new_context(**options)
    context.route("**/*", guard)
    context.on(
        "console",
        lambda message: guard.console.append(message.text) if message.type == "error" else None,
    )
    try:
        yield context, guard
    finally:
        context.close()
    assert guard.blocked == [], f"requests tried to leave the machine: {guard.blocked}"


def origin(running: Running) -> str:
    return f"http://127.0.0.1:{running.port}/"


@pytest.fixture
def page(browser: Browser, studio: Running) -> Iterator[Page]:
    with guarded(browser, (origin(studio),), viewport={"width": 1440, "height": 900}) as (
        context,
        guard,
    ):
        page = context.new_page()
        yield page
        assert guard.console == [], guard.console


def run_axe(page: Page, axe_source: str, *, iframes: bool) -> list[dict]:
    page.add_script_tag(content=axe_source)
    result = page.evaluate(
        """async ([tags, iframes]) => {
            const r = await axe.run(document, {runOnly: {type: "tag", values: tags}, iframes});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(" ") + ": " + n.failureSummary)}));
        }""",
        [WCAG_TAGS, iframes],
    )
    return result


def first_sentence(campaign: Campaign, key: str) -> str:
    """The first sentence of a step's first paragraph (what the text and HTML both show)."""
    body = campaign.step(key).body
    paragraph = next(
        p for p in body.split("\n\n") if p.strip() and not p.lstrip().startswith(("#", "Hi "))
    )
    return re.split(r"(?<=[.!?])\s", " ".join(paragraph.split()))[0]


# ----------------------------------------------------------------------------- tests


def test_timeline_lists_every_step_in_order_with_its_subject(
    page: Page, studio: Running, clinic: Campaign
) -> None:
    page.goto(studio.url)
    rows = page.locator(".timeline .tl-link")
    expect(rows).to_have_count(len(clinic.steps))
    days = []
    for index, step in enumerate(clinic.steps):
        row = rows.nth(index)
        expect(row.locator(".inbox-subject")).to_have_text(step.subject)
        expect(row.locator(".inbox-preheader")).to_have_text(step.preheader or "")
        expect(row.locator(".inbox-from")).to_have_text(clinic.spec.from_.name)
        days.append(int(row.locator(".tl-day").inner_text().removeprefix("Day ")))
        expect(row.locator("time")).to_contain_text("EDT")  # the sample's local time
    assert days == sorted(days) and days[0] == 0  # signed up Monday 10:00: first email now
    expect(rows.first).to_contain_text("Mon 9 Mar 2026, 10:00 EDT")


def test_clicking_a_step_shows_its_subject_render_and_plain_text(
    page: Page, studio: Running, clinic: Campaign
) -> None:
    page.goto(studio.url)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    for step in (clinic.steps[2], clinic.steps[-1], clinic.steps[0]):
        page.locator(".timeline .tl-link", has_text=step.subject).click()
        expect(page).to_have_url(re.compile(rf"step={step.key}"))
        expect(page.locator("#subject")).to_have_text(step.subject)
        sentence = first_sentence(clinic, step.key)
        expect(page.locator("#text-part")).to_contain_text(sentence)
        for kind in ("desktop", "phone", "dark"):
            frame = page.frame_locator(f"iframe[data-kind={kind}]")
            expect(frame.locator("h1")).to_have_text(step.subject)
            expect(frame.locator("body")).to_contain_text(sentence)
        selected = page.locator(".timeline [aria-current=true]")
        expect(selected).to_contain_text(step.subject)
    assert page.evaluate("window.__sameDocument") is True
    # The source and the checks are beside it.
    expect(page.locator(".html-source")).to_contain_text("<!doctype html>", ignore_case=True)
    checks = page.locator(".checks > li")
    for label in ("Size", "Images", "Links", "Unsubscribe", "Postal address", "Subject"):
        expect(checks.filter(has_text=label).first).to_contain_text("OK")
    expect(checks.filter(has_text="Size")).to_contain_text("KB for this contact")


def test_email_fits_a_phone_and_its_columns_stack_but_sit_side_by_side_at_600(
    browser: Browser, studio: Running, clinic: Campaign, artifacts: Path
) -> None:
    key = clinic.steps[1].key
    for width in (375, 600):
        with guarded(browser, (origin(studio),), viewport={"width": width, "height": 800}) as (
            context,
            _,
        ):
            page = context.new_page()
            page.goto(f"{studio.url}email/{key}.html")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width, f"horizontal scroll at {width} px: {scroll_width}"
            columns = page.locator(".mj-column-per-50")
            expect(columns).to_have_count(2)  # the footer: address | links
            left, right = (columns.nth(i).bounding_box() for i in range(2))
            assert left and right
            if width == 375:  # stacked: the links column starts below the address column
                assert right["y"] >= left["y"] + left["height"] - 1
                assert abs(right["x"] - left["x"]) < 1
            else:  # side by side on one row
                assert abs(right["y"] - left["y"]) < 1
                assert right["x"] >= left["x"] + left["width"] - 1
            shot = artifacts / f"email-{key}-{width}px.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")

    # The studio's own frames give the email exactly those viewports.
    with guarded(browser, (origin(studio),), viewport={"width": 1600, "height": 1000}) as (
        context,
        _,
    ):
        page = context.new_page()
        page.goto(f"{studio.url}?step={key}")
        for kind, width in (("desktop", 600), ("phone", 375)):
            frame = page.frame_locator(f"iframe[data-kind={kind}]")
            expect(frame.locator(".mj-column-per-50")).to_have_count(2)
            handle = page.locator(f"iframe[data-kind={kind}]").element_handle()
            assert handle is not None
            inner = handle.content_frame()
            assert inner is not None
            assert inner.evaluate("window.innerWidth") == width
            assert inner.evaluate("document.documentElement.scrollWidth") <= width
        shot = artifacts / "studio-1600px.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")


def test_saving_a_step_changes_the_page_within_two_seconds_without_a_reload(
    browser: Browser, own_studio: Running
) -> None:
    campaign = load_folder(own_studio.folder)
    step = campaign.steps[1]
    with guarded(browser, (origin(own_studio),), viewport={"width": 1440, "height": 900}) as (
        context,
        _,
    ):
        page = context.new_page()
        page.goto(f"{own_studio.url}?step={step.key}")
        expect(page.locator("#subject")).to_have_text(step.subject)
        page.evaluate("window.__sameDocument = true")
        path = own_studio.folder / step.file
        sentence = first_sentence(campaign, step.key)
        new = "Freshly edited, nightmares and insomnia often travel together."
        path.write_text(path.read_text(encoding="utf-8").replace(sentence, new), encoding="utf-8")
        expect(page.locator("#text-part")).to_contain_text(new, timeout=LIVE)
        expect(page.frame_locator("iframe[data-kind=phone]").locator("body")).to_contain_text(
            new, timeout=LIVE
        )
        expect(page.locator("#text-part")).not_to_contain_text(sentence)
        assert page.evaluate("window.__sameDocument") is True  # no reload, in place

        # A template-level problem in a step (an unknown placeholder) shows with its line.
        path.write_text(path.read_text(encoding="utf-8") + "\n{{ nickname }}\n", "utf-8")
        error = page.locator("#error")
        expect(error).to_contain_text(f"{step.file}:", timeout=LIVE)
        expect(error).to_contain_text("nickname")
        path.write_text(path.read_text(encoding="utf-8").replace("{{ nickname }}", ""), "utf-8")
        expect(error).to_have_count(0, timeout=LIVE)


def test_a_broken_campaign_file_shows_its_line_and_recovers(
    browser: Browser, own_studio: Running, axe_source: str
) -> None:
    yaml_path = own_studio.folder / "campaign.yaml"
    good = yaml_path.read_text(encoding="utf-8")
    lines = good.splitlines()
    zone_line = next(i for i, line in enumerate(lines, 1) if line.startswith("timezone:"))
    with guarded(
        browser,
        (origin(own_studio),),
        viewport={"width": 1440, "height": 900},
        bypass_csp=True,  # axe is injected as an inline script
    ) as (context, guard):
        page = context.new_page()
        page.goto(own_studio.url)
        expect(page.locator("#subject")).to_be_visible()

        yaml_path.write_text(good.replace("timezone: America/New_York", "timezone: Mars/Base"))
        error = page.locator("#error")
        expect(error).to_contain_text(f"campaign.yaml:{zone_line}", timeout=LIVE)
        expect(error).to_contain_text("unknown time zone 'Mars/Base'")
        expect(error.locator(".bad-line")).to_contain_text("timezone: Mars/Base")
        expect(page.locator("#subject")).to_be_visible()  # the last good version stays
        assert run_axe(page, axe_source, iframes=False) == []

        # Not YAML at all: the parser's line, then a fix brings everything back.
        yaml_path.write_text(good.replace("language: en", "language: [en"))
        expect(error).to_contain_text("not valid YAML", timeout=LIVE)
        expect(error).to_contain_text("campaign.yaml:")
        yaml_path.write_text(good)
        expect(error).to_have_count(0, timeout=LIVE)
        expect(page.locator(".timeline .tl-link")).to_have_count(6)
        assert guard.console == [], guard.console


def test_the_studio_binds_to_this_machine_only_by_default(studio: Running, tmp_path: Path) -> None:
    assert studio.server.socket.getsockname()[0] == "127.0.0.1"
    from cli import app

    result = CliRunner().invoke(app, ["preview", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and re.search(r"default:\s+127\.0\.0\.1", result.output)
    # A page that points its own DNS name at 127.0.0.1 gets nothing (DNS rebinding).
    conn = http.client.HTTPConnection("127.0.0.1", studio.port, timeout=10)
    conn.request("GET", "/", headers={"Host": f"evil.example:{studio.port}"})
    response = conn.getresponse()
    assert response.status == 400 and b"Ketamine" not in response.read()
    conn.close()


def test_nothing_outside_the_campaign_folder_is_served(studio: Running) -> None:
    secret = studio.folder.parent / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")

    def get(path: str) -> tuple[int, bytes]:
        # http.client sends the path as written: no client-side `..` clean-up.
        conn = http.client.HTTPConnection("127.0.0.1", studio.port, timeout=10)
        conn.request("GET", path)
        response = conn.getresponse()
        status, body = response.status, response.read()
        conn.close()
        return status, body

    assert get("/files/campaign.yaml")[0] == 200  # inside the folder: served
    for path in (
        "/files/../secret.txt",
        "/files/%2e%2e%2fsecret.txt",
        "/files/%2E%2E%2Fsecret.txt",
        "/files/..%2fsecret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/./../secret.txt",
        "/files/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/files/" + str(secret),
        "/../secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/email/..%2f..%2fsecret.txt",
        "/email/%2e%2e%2fsecret.html",
        "/_studio/..%2f..%2fcampaigns%2fstudio.py",
        "/_studio/%2e%2e%2f__init__.py",
    ):
        status, body = get(path)
        assert status == 404, path
        assert b"TOP-SECRET" not in body and b"root:" not in body, path


def test_no_request_leaves_the_machine_and_remote_images_become_placeholders(
    browser: Browser, tmp_path: Path
) -> None:
    """The render fixture has a remote logo: the studio shows a local placeholder instead."""
    folder = tmp_path / "render"
    shutil.copytree(FIXTURE, folder)
    campaign = load_folder(folder)
    with (
        running_studio(folder, db=f"sqlite:///{tmp_path / 'studio.db'}") as running,
        guarded(browser, (origin(running),), viewport={"width": 1440, "height": 900}) as (
            context,
            guard,
        ),
    ):
        page = context.new_page()
        page.goto(running.url)
        for step in campaign.steps:
            page.locator(".timeline .tl-link", has_text=step.subject).click()
            expect(page.locator("#subject")).to_have_text(step.subject)
            kinds = ("desktop", "phone", "dark") if step.position == 1 else ("phone",)
            for kind in kinds:
                frame = page.frame_locator(f"iframe[data-kind={kind}]")
                expect(frame.locator("h1")).to_have_text(step.subject)
                logo = frame.locator("img").first
                expect(logo).to_have_attribute("src", re.compile(r"^/_studio/remote-image"))
                expect(logo).to_have_attribute("alt", "Balanced Ketamine")
                # Its width once it has loaded (or failed): waits on the image's own events.
                width = logo.evaluate(
                    """img => img.complete ? img.naturalWidth : new Promise(done => {
                        img.addEventListener("load", () => done(img.naturalWidth), {once: true});
                        img.addEventListener("error", () => done(0), {once: true});
                    })"""
                )
                assert width > 0, "the placeholder image did not render"
        page.locator("#source-details summary").click()
        expect(page.locator(".html-source")).to_contain_text("images/logo.png")  # as sent
        assert guard.console == [], guard.console
    assert guard.blocked == []


def test_axe_finds_no_wcag_21_aa_violation_in_any_email_or_the_studio(
    browser: Browser, studio: Running, clinic: Campaign, axe_source: str
) -> None:
    with guarded(
        browser,
        (origin(studio),),
        viewport={"width": 1280, "height": 900},
        bypass_csp=True,  # axe is injected as an inline script
    ) as (context, _):
        page = context.new_page()
        for step in clinic.steps:
            page.goto(f"{studio.url}email/{step.key}.html")
            assert run_axe(page, axe_source, iframes=False) == [], step.file
        page.goto(f"{studio.url}?step={clinic.steps[1].key}")
        page.locator("#source-details summary").click()
        page.locator(".links summary").click()
        assert run_axe(page, axe_source, iframes=False) == [], "studio page"


def test_the_contact_picker_repersonalises_the_render_and_the_timeline(
    page: Page, studio: Running, clinic: Campaign
) -> None:
    assert "{{ first_name" in (clinic.spec.greeting or "")  # the layout's greeting is personal
    page.goto(studio.url)
    expect(page.locator("#text-part")).to_contain_text("Hi Sam,")
    page.get_by_label("First name").fill("Alexandra")
    page.get_by_label("Time zone").fill("Australia/Sydney")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#text-part")).to_contain_text("Hi Alexandra,")
    frame = page.frame_locator("iframe[data-kind=desktop]")
    expect(frame.locator("body")).to_contain_text("Hi Alexandra,")
    expect(page.locator(".timeline time").first).to_contain_text("AEDT")
    expect(page).to_have_url(re.compile(r"tz=Australia%2FSydney"))

    page.get_by_label("Time zone").fill("Mars/Base")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".field-problem")).to_contain_text("unknown time zone 'Mars/Base'")
    expect(page.locator(".timeline time").first).to_contain_text("EDT")


def test_send_test_goes_through_the_file_sender(
    page: Page, studio: Running, clinic: Campaign, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the file sender writes to ./outbox
    step = clinic.steps[2]
    page.goto(f"{studio.url}?step={step.key}")
    page.get_by_label("Send this email to").fill("staff@clinic.example")
    page.get_by_role("button", name="Send test").click()
    status = page.locator("#send-status")
    expect(status).to_contain_text("Sent a test", timeout=15000)
    expect(status).to_contain_text("outbox/")
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "staff@clinic.example"
    assert message["Subject"] == f"[TEST] {step.subject}"

    page.get_by_label("Send this email to").fill("not an address")
    page.locator("form.send-test").evaluate("form => form.noValidate = true")
    page.get_by_role("button", name="Send test").click()
    expect(status).to_contain_text("Not sent")
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1

    # A POST without the page's token (another site's form) is refused.
    response = page.request.post(
        f"{studio.url}send-test",
        form={"step": step.key, "to": "victim@example.com", "token": "guess"},
    )
    assert response.status == 403


def test_the_offline_export_shows_the_same_views_and_fetches_nothing(
    browser: Browser, clinic: Campaign, tmp_path: Path, artifacts: Path
) -> None:
    out = tmp_path / "previews"
    export_campaign(clinic, out, date=NOW)
    with guarded(browser, (out.as_uri() + "/",), viewport={"width": 1440, "height": 900}) as (
        context,
        guard,
    ):
        page = context.new_page()
        page.goto((out / "index.html").as_uri())
        rows = page.locator(".timeline .tl-link")
        expect(rows).to_have_count(len(clinic.steps))
        for index, step in enumerate(clinic.steps):
            expect(rows.nth(index).locator(".inbox-subject")).to_have_text(step.subject)
            section = page.locator(f"#email-{step.key}")
            expect(section.locator("h2")).to_have_text(step.subject)
            expect(section.locator(".text-part")).to_contain_text(first_sentence(clinic, step.key))
            if index in (0, len(clinic.steps) - 1):  # the frames load lazily, as scrolled to
                section.scroll_into_view_if_needed()
                for kind in ("desktop", "phone"):
                    frame = section.frame_locator(f"iframe[data-kind={kind}]")
                    expect(frame.locator("h1")).to_have_text(step.subject)
        shot = artifacts / "export-index-1440px.png"
        page.goto((out / "index.html").as_uri())
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        assert guard.console == [], guard.console


def test_layout_errors_name_their_template_file_and_line(tmp_path: Path) -> None:
    """A broken layout (not only a broken campaign file) is shown with its file:line."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError

    from campaigns.studio.errors import describe_error

    (tmp_path / "syntax.mjml.j2").write_text("<mjml>\n  {{ organisation | }}\n</mjml>\n")
    (tmp_path / "undefined.mjml.j2").write_text("<mjml>\n\n  {{ organisaton.name }}\n</mjml>\n")
    env = Environment(loader=FileSystemLoader(tmp_path), undefined=StrictUndefined)
    for name, line, words in (("syntax", 2, "template syntax"), ("undefined", 3, "organisaton")):
        with pytest.raises(TemplateError) as caught:
            env.get_template(f"{name}.mjml.j2").render()
        error = describe_error(caught.value, tmp_path)
        assert error.where == f"{name}.mjml.j2:{line}", error
        assert words in error.message
        assert (
            dict(error.excerpt)[line]
            == (tmp_path / f"{name}.mjml.j2").read_text().split("\n")[line - 1]
        )
