"""The studio's sample contact with tags and attributes: the timeline says who gets each
step and why, the email shows the attributes, axe-core stays clean (headless Chromium)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.conftest import write_clinic_campaign
from tests.test_conditions import add_conditions, add_to_step
from tests.test_studio import (  # noqa: F401  (fixtures)
    axe_source,
    browser,
    guarded,
    origin,
    run_axe,
    running_studio,
)


def test_the_timeline_says_who_gets_each_step_for_the_picked_contact(
    browser: Browser,  # noqa: F811 (the fixture)
    axe_source: str,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    folder = write_clinic_campaign(tmp_path / "clinic")
    campaign = add_conditions(
        folder, {1: "tags_none: [returning]", 2: "attributes: {patient_type: new}"}
    )
    add_to_step(folder, campaign, 2, "You are a {{ attributes.patient_type }} patient.")
    third = campaign.steps[2]
    with (
        running_studio(folder, db=f"sqlite:///{tmp_path / 'studio.db'}") as studio,
        guarded(
            browser,
            (origin(studio),),
            viewport={"width": 1280, "height": 900},
            bypass_csp=True,  # axe is injected as an inline script
        ) as (context, _),
    ):
        page = context.new_page()
        page.goto(f"{studio.url}?step={third.key}")
        items = page.locator(".timeline .tl-condition")
        expect(items.nth(0)).to_have_text(
            "gets it: tags_none [returning] holds now (decided when due)"
        )
        expect(items.nth(1)).to_have_text(
            "would be skipped now: has no patient_type (wanted 'new') (decided when due)"
        )
        page.get_by_label("Tags").fill("returning")
        page.get_by_label("Attributes").fill("patient_type=<b>new</b>")
        page.get_by_role("button", name="Show").click()
        expect(items.nth(0)).to_have_text(
            "would be skipped now: has tag returning (decided when due)"
        )
        expect(items.nth(1)).to_have_text(
            "would be skipped now: patient_type is '<b>new</b>', not 'new' (decided when due)"
        )
        expect(page.locator("#text-part")).to_contain_text("You are a <b>new</b> patient.")
        frame = page.frame_locator("iframe[data-kind=desktop]")
        expect(frame.locator("body")).to_contain_text("You are a <b>new</b> patient.")
        page.get_by_label("Attributes").fill("patient_type=New")
        page.get_by_role("button", name="Show").click()
        expect(items.nth(1)).to_have_text("gets it: patient_type is 'new' now (decided when due)")
        assert run_axe(page, axe_source, iframes=False) == []
