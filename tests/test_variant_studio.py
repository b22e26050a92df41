"""The preview studio shows each A/B variant of a step: selectable, rendered, axe-clean."""

from __future__ import annotations

import email
import email.policy
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from typer.testing import CliRunner

from cli import app as cli_app
from tests.test_studio import (  # noqa: F401  (browser, axe_source: fixtures used here)
    Running,
    axe_source,
    browser,
    guarded,
    origin,
    run_axe,
    running_studio,
)
from tests.variant_helpers import SUBJECT_A, SUBJECT_B, variant_folder


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    base = tmp_path_factory.mktemp("variant-studio")
    folder = variant_folder(base / "clinic", weights=(1, 3))
    with running_studio(folder, db=f"sqlite:///{base / 'studio.db'}") as running:
        yield running


@pytest.fixture
def page(browser: Browser, studio: Running) -> Iterator[Page]:  # noqa: F811
    with guarded(
        browser, (origin(studio),), viewport={"width": 1280, "height": 900}, bypass_csp=True
    ) as (context, guard):
        yield context.new_page()
        assert guard.console == [], guard.console


def test_each_variant_of_a_step_can_be_chosen_and_previewed(
    page: Page,
    studio: Running,
    axe_source: str,  # noqa: F811
) -> None:
    page.goto(f"{studio.url}?step=welcome")
    links = page.locator(".variants a")
    expect(links).to_have_count(2)
    expect(links.nth(0)).to_have_text(f"A: {SUBJECT_A}")
    expect(links.nth(1)).to_have_text(f"B: {SUBJECT_B}")
    expect(page.locator(".variants")).to_contain_text("25% of contacts")
    expect(page.locator(".variants")).to_contain_text("75% of contacts")
    # A step with variants only goes as one of them: the first is shown by default.
    expect(page.locator("#subject")).to_have_text(SUBJECT_A)
    expect(links.nth(0)).to_have_attribute("aria-current", "page")
    assert run_axe(page, axe_source, iframes=False) == []

    links.nth(1).click()
    expect(page).to_have_url(re.compile(r"variant=b"))
    expect(page.locator("#subject")).to_have_text(SUBJECT_B)
    expect(page.locator("#text-part")).to_contain_text("a regular bedtime")
    expect(page.locator(".email-head code")).to_have_text("01-welcome-b.md")
    for kind in ("desktop", "phone", "dark"):
        frame = page.frame_locator(f"iframe[data-kind={kind}]")
        expect(frame.locator("h1")).to_have_text(SUBJECT_B)
        expect(frame.locator("body")).to_contain_text("a regular bedtime")
    page.goto(f"{studio.url}email/welcome.html?variant=b")
    assert run_axe(page, axe_source, iframes=False) == []


def test_a_step_without_variants_shows_no_variant_list(page: Page, studio: Running) -> None:
    page.goto(f"{studio.url}?step=how-mental-health-affects-sleep&variant=b")
    expect(page.locator(".variants")).to_have_count(0)
    expect(page.locator("#subject")).to_have_text("How Mental Health Affects Sleep")


def test_the_folder_file_of_a_variant_is_served(studio: Running) -> None:
    with urllib.request.urlopen(f"{studio.url}files/01-welcome-b.md") as answer:
        assert b"regular bedtime" in answer.read()


def test_send_test_sends_the_variant_on_screen(
    page: Page, studio: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the file sender writes to ./outbox
    page.goto(f"{studio.url}?step=welcome&variant=b")
    page.get_by_label("Send this email to").fill("staff@clinic.example")
    page.get_by_role("button", name="Send test").click()
    expect(page.locator("#send-status")).to_contain_text(f"Sent a test of “{SUBJECT_B}”")
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == f"[TEST] {SUBJECT_B}"


def test_cli_send_test_of_a_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = variant_folder(tmp_path / "clinic")
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'd.db'}"
    runner = CliRunner()
    args = ["send-test", str(folder), "--step", "welcome", "--to", "staff@clinic.example"]
    sent = runner.invoke(cli_app, [*args, "--variant", "b", "--db", db])
    assert sent.exit_code == 0, sent.output
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    assert f"Subject: [TEST] {SUBJECT_B}" in eml.read_text(encoding="utf-8")
    wrong = runner.invoke(cli_app, [*args, "--variant", "z", "--db", db])
    assert wrong.exit_code == 2
    assert "step 'welcome' has no variant 'z' (variants: a, b)" in wrong.output


def test_the_checks_beside_a_variant_are_that_variants(
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    folder = variant_folder(tmp_path / "clinic")
    (folder / "01-welcome-b.md").write_text(
        "Hi,\n\nRead [click here](https://example.com/sleep) tonight.\n", encoding="utf-8"
    )
    with (
        running_studio(folder, db=f"sqlite:///{tmp_path / 'studio.db'}") as running,
        guarded(browser, (origin(running),)) as (context, _),
    ):
        page = context.new_page()
        page.goto(f"{running.url}?step=welcome&variant=b")
        expect(page.locator(".checks")).to_contain_text("click here")
        page.goto(f"{running.url}?step=welcome&variant=a")
        expect(page.locator("#subject")).to_have_text(SUBJECT_A)
        expect(page.locator(".checks")).not_to_contain_text("click here")
