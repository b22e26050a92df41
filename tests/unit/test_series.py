"""Emails that read like a series: a greeting in every email, the next one named at the end,
body images sized for desktop Outlook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from campaigns.authoring.folder import write_campaign
from campaigns.authoring.readers import read_article
from campaigns.authoring.spec import load_folder
from campaigns.authoring.split import split_article
from campaigns.errors import InputError
from campaigns.planning.schedule import parse_delay
from campaigns.rendering.compile import compile_campaign, until_next
from campaigns.rendering.personalise import Recipient
from tests.unit.test_render import FIXTURE, parse_html, personalise, variant

PAT = Recipient("pat@example.com", "Pat")
NOBODY = Recipient("nobody@example.com", None)


def texts(campaign, recipient=PAT) -> list[str]:
    compiled = compile_campaign(campaign)
    return [personalise(compiled, step.key, recipient).text for step in campaign.steps]


def body(text: str) -> str:
    return text.split("\n-- \n", 1)[0]


def test_every_email_greets_the_contact_once_after_its_heading(tmp_path):
    campaign = load_folder(FIXTURE)
    for text in texts(campaign):
        lines = [line for line in body(text).splitlines() if line.strip()]
        heading = 3 if lines[1].startswith("Part ") else 2
        assert lines[heading] == "Hi Pat,", lines
        assert body(text).count("Hi Pat,") == 1
    assert all("Hi there," in t for t in texts(campaign, NOBODY))
    compiled = compile_campaign(campaign)
    html = personalise(compiled, "mental-health", PAT).html
    assert html.index("How mental health affects sleep</h1>") < html.index("Hi Pat,")


def test_a_folder_whose_steps_already_greet_is_not_greeted_twice(tmp_path):
    # The fixture's first step opens "Hi {{ first_name | default("there") }}," as split wrote.
    campaign = load_folder(FIXTURE)
    assert 'Hi {{ first_name | default("there") }},' in campaign.files["01-welcome.md"]
    welcome = texts(campaign)[0]
    assert welcome.count("Hi Pat,") == 1
    hello = variant(tmp_path, {"01-welcome.md": ("Hi {{", "Hello {{")})
    assert "Hi Pat," not in texts(hello)[0] and "Hello Pat," in texts(hello)[0]


def test_the_greeting_key_sets_the_text_or_turns_it_off(tmp_path):
    custom = variant(
        tmp_path / "a",
        {
            "campaign.yaml": (
                "timezone:",
                "greeting: \"Dear {{ first_name | default('friend') }},\"\ntimezone:",
            )
        },
    )
    assert [body(t).count("Dear Pat,") for t in texts(custom)] == [0, 1, 1]  # step 1 greets itself
    assert "Dear friend," in texts(custom, NOBODY)[2]
    off = variant(tmp_path / "b", {"campaign.yaml": ("timezone:", "greeting: false\ntimezone:")})
    assert [("Hi Pat," in t) for t in texts(off)] == [True, False, False]  # only step 1's own


@pytest.mark.parametrize(
    ("greeting", "needle"),
    [
        ('""', "greeting: write the line each email opens with"),
        ('"Hi {{ last_name }},"', "last_name"),
    ],
)
def test_a_bad_greeting_names_the_campaign_file(tmp_path, greeting, needle):
    with pytest.raises(InputError) as caught:
        bad = variant(
            tmp_path, {"campaign.yaml": ("timezone:", f"greeting: {greeting}\ntimezone:")}
        )
        compile_campaign(bad)
    assert str(caught.value).startswith(str(tmp_path / "campaign" / "campaign.yaml")), caught.value
    assert needle in str(caught.value)


def test_every_email_but_the_last_names_the_next_one_and_when(tmp_path):
    campaign = load_folder(FIXTURE)
    endings = [body(t).strip().splitlines()[-1] for t in texts(campaign)]
    assert endings[:2] == [
        "Next, in 2 days: How mental health affects sleep",
        "Next, in 2 days: All patients are different",
    ]
    assert not any(line.startswith("Next,") for line in body(texts(campaign)[2]).splitlines())
    html = personalise(compile_campaign(campaign), "welcome", PAT).html
    assert "Next, in 2 days: How mental health affects sleep" in html
    off = variant(tmp_path, {"campaign.yaml": ("timezone:", "teaser: false\ntimezone:")})
    assert not any("Next, in" in t for t in texts(off))


@pytest.mark.parametrize(
    ("current", "following", "words"),
    [
        ("0d", "2d", "in 2 days"),
        ("2d", "3d", "tomorrow"),
        ("0d", "0d", "later today"),
        ("7d", "3w", "in 2 weeks"),
        ("0d", "1w", "in 1 week"),
        ("0d", "36h", "in 36 hours"),
        ("12h", "36h", "tomorrow"),
        ("0d", "90m", "in 90 minutes"),
    ],
)
def test_the_teaser_says_when_in_words(current, following, words):
    assert until_next(parse_delay(current), parse_delay(following)) == words


def test_body_images_carry_the_content_width_for_outlook():
    compiled = compile_campaign(load_folder(FIXTURE))
    images = [
        attrs
        for tag, attrs in parse_html(personalise(compiled, "welcome").html).tags
        if tag == "img" and "resting.jpg" in (attrs.get("src") or "")
    ]
    assert len(images) == 1
    assert images[0].get("width") == "552"
    assert "max-width:100%" in re.sub(r"\s", "", images[0].get("style") or "")


def test_split_leaves_the_greeting_to_the_layout(tmp_path: Path):
    article = tmp_path / "post.md"
    article.write_text(
        "---\ntitle: Rest after a session\n---\n\n"
        + "Most patients feel tired after a session, and that is normal. " * 6
        + "\n\n## At home\n\n"
        + "Plan a quiet evening, drink water and keep your usual bedtime. " * 6
        + "\n",
        encoding="utf-8",
    )
    source = read_article(article)
    write_campaign(source, split_article(source), tmp_path / "c")
    campaign = load_folder(tmp_path / "c")
    assert all("first_name" not in campaign.files[step.file] for step in campaign.steps)
    assert "# greeting" in campaign.files["campaign.yaml"]
    assert [body(t).count("Hi Pat,") for t in texts(campaign)] == [1] * len(campaign.steps)
