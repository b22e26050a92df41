"""Both languages in Chromium with axe-core: every email (through the studio's language
picker) and every unsubscribe page in English and Spanish; SpamAssassin on the Spanish
clinic emails."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from campaigns.authoring.spec import Campaign, load_folder
from campaigns.authoring.translations import in_language
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup
from campaigns.rendering.personalise import Recipient
from senders.mime import to_bytes
from tests.helpers import spamassassin, utc
from tests.languages import write_spanish_clinic
from tests.test_studio import (  # noqa: F401 (fixtures)
    Running,
    axe_source,
    browser,
    guarded,
    origin,
    run_axe,
    running_studio,
)
from tests.test_unsubscribe import token_for
from tests.test_unsubscribe_pages import served  # noqa: F401 (fixture)
from tests.unit.test_clinic import messages

NOW = utc("2026-03-02T12:00")


@pytest.fixture(scope="module")
def spanish_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    base = tmp_path_factory.mktemp("studio-es")
    folder = write_spanish_clinic(base / "clinic")
    with running_studio(folder, db=f"sqlite:///{base / 'studio.db'}") as running:
        yield running


def test_every_email_in_both_languages_passes_axe_and_the_picker_shows_spanish(
    browser: Browser,  # noqa: F811
    spanish_studio: Running,
    axe_source: str,  # noqa: F811
) -> None:
    campaign = load_folder(spanish_studio.folder)
    spanish = in_language(campaign, "es")
    with guarded(
        browser,
        (origin(spanish_studio),),
        viewport={"width": 1280, "height": 900},
        bypass_csp=True,  # axe is injected as an inline script
    ) as (context, _):
        page = context.new_page()
        for language, version in (("en", campaign), ("es", spanish)):
            for step in version.steps:
                page.goto(f"{spanish_studio.url}email/{step.key}.html?lang={language}")
                expect(page.locator("h1")).to_have_text(step.subject)
                assert page.locator("html").get_attribute("lang") == language
                assert run_axe(page, axe_source, iframes=False) == [], (language, step.file)
        # The studio's language picker, like its sample contact picker.
        page.goto(spanish_studio.url)
        page.get_by_label("Language").select_option("es")
        page.get_by_role("button", name="Show").click()
        frame = page.frame_locator("iframe[data-kind=desktop]")
        expect(frame.locator("h1")).to_have_text(spanish.steps[0].subject)
        expect(page.locator(".timeline")).to_contain_text(spanish.steps[1].subject)
        expect(page.get_by_label("Language")).to_have_value("es")
        assert run_axe(page, axe_source, iframes=False) == [], "studio page in Spanish"


@pytest.mark.sqlite_only
def test_the_unsubscribe_pages_pass_axe_in_both_languages(
    store,
    tmp_path: Path,
    served: str,  # noqa: F811
    browser: Browser,  # noqa: F811
    axe_source: str,  # noqa: F811
):
    campaign = load_folder(write_spanish_clinic(tmp_path / "clinic"))
    walks = {
        "en": [
            ("Email preferences", "Stop only “Ketamine and Sleep”", 2),
            ("You are unsubscribed", "I changed my mind", 1),
            ("Welcome back", None, 0),
        ],
        "es": [
            ("Preferencias de correo", "Dejar solo «La ketamina y el sueño»", 2),
            ("Se ha dado de baja", "He cambiado de opinión", 1),
            ("Ha vuelto a suscribirse", None, 0),
        ],
    }
    for language, walk in walks.items():
        signup = Signup(f"{language}@example.com", "Ana", "America/Mexico_City", None, "form")
        report = enroll(store, campaign, replace(signup, language=language), now=NOW)
        token, _ = token_for(store, report.enrollment_ids[0])
        with guarded(
            browser, (served,), viewport={"width": 375, "height": 740}, bypass_csp=True
        ) as (context, _):
            page = context.new_page()
            page.goto(f"{served}/u/{token}")
            for heading, button, tabs in walk:
                expect(page.get_by_role("heading", level=1)).to_have_text(heading)
                assert page.locator("html").get_attribute("lang") == language
                assert page.evaluate("document.documentElement.scrollWidth") <= 375, heading
                assert run_axe(page, axe_source, iframes=False) == [], heading
                if button is None:
                    break
                for _ in range(tabs):
                    page.keyboard.press("Tab")
                expect(page.get_by_role("button", name=button)).to_be_focused()
                page.keyboard.press("Enter")


def test_spamassassin_scores_every_spanish_clinic_email_below_one(tmp_path: Path):
    campaign: Campaign = load_folder(write_spanish_clinic(tmp_path / "clinic"))
    ana = Recipient("ana@example.com", "Ana", "America/Mexico_City", language="es")
    files = []
    for message in messages(campaign, ana, date=datetime.now(UTC)):  # SA scores odd dates
        assert message.subject in [s.subject for s in in_language(campaign, "es").steps]
        path = tmp_path / f"{message.delivery_id}.eml"
        path.write_bytes(to_bytes(message))
        files.append(path)
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        results = list(pool.map(spamassassin, files))
    for path, (score, report) in zip(files, results, strict=True):
        assert score < 1.0, f"{path.name}: {score}\n{report[report.find('Content analysis') :]}"
