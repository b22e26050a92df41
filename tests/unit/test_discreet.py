"""Discreet emails on the bundled clinic campaign: `privacy: discreet` makes every subject,
preheader and From name neutral (no word of the article's headings, no health word), the
body stays as it was, and `check` warns about the plain campaign's health words."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from campaigns.authoring.checks import check_campaign
from campaigns.authoring.privacy_spec import bundled_sensitive_words, find_words
from campaigns.authoring.spec import load_folder
from campaigns.errors import InputError
from senders.mime import to_bytes
from tests.unit.test_clinic import HEADINGS, PAT, messages

TITLE = "Ketamine and Sleep"  # the article's title: the first email's subject
# Words that say nothing about a heading's subject (the test's own list, not the code's).
STOP = {"how", "what", "about", "can", "my", "are", "all", "and", "the", "make", "affects"}
HEADING_WORDS = {
    word.lower()
    for heading in [TITLE, *HEADINGS]
    for word in re.findall(r"[A-Za-z]+", heading)
    if word.lower() not in STOP
}


def leaks(text: str) -> set[str]:
    """The heading words and health words `text` holds."""
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
    return (words & HEADING_WORDS) | {w.lower() for w in find_words(text, SENSITIVE)}


SENSITIVE = bundled_sensitive_words()


def set_keys(folder: Path, text: str) -> Path:
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + text, encoding="utf-8")
    return folder


@pytest.fixture
def discreet(clinic_folder: Path):
    return load_folder(set_keys(clinic_folder, "privacy: discreet\n"))


def test_the_heading_words_are_what_the_test_thinks_they_are():
    assert {"ketamine", "sleep", "mental", "health", "therapy", "worse", "patients"} <= (
        HEADING_WORDS
    )


def test_no_subject_preheader_or_from_name_holds_a_heading_or_health_word(discreet):
    sent = messages(discreet)
    assert len(sent) == 6
    for message in sent:
        for text in (message.subject, message.preheader or "", message.from_name):
            assert leaks(text) == set(), text
        assert message.subject == "A note from Balanced"
        assert message.preheader == "Your latest email from Balanced"
        assert message.from_name == "Balanced"  # the organisation, its health word left out
        # What a lock screen shows beyond the subject: the HTML title, the hidden preview
        # line (padded, so no client reads on into the body), the text part's opening.
        title = re.search(r"<title>(.*?)</title>", message.html).group(1)
        assert title == "A note from Balanced"
        preview = re.search(r'<div style="display:none;[^"]*">(.*?)</div>', message.html)
        assert preview.group(1).startswith("Your latest email from Balanced&#8204;&#160;")
        assert preview.group(1).count("&#8204;&#160;") == 100
        opening = message.text.split("\n\n", 1)[0].splitlines()
        assert opening[:2] == ["Balanced", "Your latest email from Balanced"]
        assert all(leaks(line) == set() for line in opening[:3]), opening
        raw = to_bytes(message).split(b"\r\n\r\n", 1)[0].decode()
        assert "From: Balanced <care@balancedketamine.example.com>" in raw
        assert "Subject: A note from Balanced" in raw


def test_the_body_is_unchanged(clinic, discreet):
    for plain, quiet in zip(messages(clinic), messages(discreet), strict=True):
        # The HTML from the heading on, and the text after its opening lines.
        assert quiet.html[quiet.html.index("<h1") :] == plain.html[plain.html.index("<h1") :]
        assert quiet.text.split("\n", 2)[2] == plain.text.split("\n", 1)[1]
        assert plain.subject in quiet.text  # the real subject is still the heading


def test_a_contact_who_chose_discreet_gets_it_from_a_standard_campaign(clinic):
    plain = messages(clinic)
    quiet = messages(clinic, replace(PAT, discreet=True))
    assert [m.subject for m in plain] == [TITLE, *HEADINGS]
    assert {m.subject for m in quiet} == {"A note from Balanced"}
    assert {m.from_name for m in quiet} == {"Balanced"}
    assert {m.from_name for m in plain} == {"Balanced Ketamine Care Team"}
    # A shared body per kind: a SendGrid batch never mixes the two.
    assert plain[1].batch.content.key != quiet[1].batch.content.key
    assert quiet[1].batch.content.key.endswith(":discreet")


def test_the_neutral_texts_come_from_the_step_then_the_campaign_file(clinic_folder):
    set_keys(
        clinic_folder,
        "privacy: discreet\ndiscreet_name: BK Wellbeing\n"
        'discreet_subject: "News from {{ organisation }}"\n'
        'discreet_preheader: "Hello {{ first_name }}, open it when it suits you"\n',
    )
    second = next(clinic_folder.glob("02-*.md"))
    second.write_text(
        second.read_text(encoding="utf-8").replace(
            "---\n", "---\ndiscreet_subject: Your Tuesday note\n", 1
        ),
        encoding="utf-8",
    )
    sent = messages(load_folder(clinic_folder))
    assert [m.subject for m in sent[:3]] == [
        "News from BK Wellbeing",
        "Your Tuesday note",
        "News from BK Wellbeing",
    ]
    assert sent[0].preheader == "Hello Pat, open it when it suits you"
    assert sent[0].from_name == "BK Wellbeing"


def test_the_default_texts_are_in_the_campaigns_language(clinic_folder):
    spec = clinic_folder / "campaign.yaml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("language: en", "language: es")
        + "privacy: discreet\n",
        encoding="utf-8",
    )
    sent = messages(load_folder(clinic_folder))
    assert sent[0].subject == "Una nota de Balanced"
    assert sent[0].preheader == "Su último correo de Balanced"


def test_an_unknown_privacy_is_one_line_naming_the_field(clinic_folder):
    set_keys(clinic_folder, "privacy: secret\n")
    with pytest.raises(InputError) as caught:
        load_folder(clinic_folder)
    assert "campaign.yaml:" in str(caught.value)
    assert "privacy" in str(caught.value) and "'discreet'" in str(caught.value)


def test_check_warns_about_the_plain_campaigns_health_words(clinic):
    report = check_campaign(clinic)
    assert report.ok  # warnings, not errors
    found = [f for f in report.warnings if f.code == "sensitive-subject"]
    subjects = [f for f in found if f.message.startswith("subject:")]
    assert len(subjects) == 4  # the title and three headings name ketamine or mental health
    first = next(f for f in subjects if "'Ketamine and Sleep'" in f.message)
    assert first.file.endswith("01-welcome.md")
    assert first.line is not None
    lines = Path(first.file).read_text(encoding="utf-8").splitlines()
    assert "Ketamine and Sleep" in lines[first.line - 1]
    assert "'Ketamine'" in first.message and "privacy: discreet" in first.message
    therapy = next(f for f in subjects if "How Ketamine Therapy" in f.message)
    assert "'Ketamine', 'Therapy'" in therapy.message


def test_a_discreet_campaign_has_no_such_warning(discreet):
    report = check_campaign(discreet)
    assert report.ok
    assert not [f for f in report.findings if f.code == "sensitive-subject"]
    named = [f for f in report.warnings if f.code == "discreet-name"]
    assert len(named) == 1 and "'Balanced'" in named[0].message


def test_check_refuses_a_neutral_text_that_is_not(clinic_folder):
    set_keys(
        clinic_folder,
        "privacy: discreet\ndiscreet_name: Calm Nights\n"
        'discreet_subject: "Your therapy update from {{ organisation }}"\n',
    )
    report = check_campaign(load_folder(clinic_folder))
    errors = [f for f in report.errors if f.code == "discreet-text"]
    assert errors, report.findings
    said = {f.message for f in errors}
    assert any("'therapy'" in m and "discreet_subject" in m for m in said), said
    assert all(f.file.endswith("campaign.yaml") and f.line for f in errors)


def test_a_heading_word_in_the_discreet_name_is_an_error(clinic_folder):
    set_keys(clinic_folder, "privacy: discreet\ndiscreet_name: Sleep Well\n")
    report = check_campaign(load_folder(clinic_folder))
    errors = [f for f in report.errors if f.code == "discreet-text"]
    assert errors and all("'Sleep'" in f.message for f in errors)
    assert any("discreet_name" in f.message for f in errors)


def test_a_campaigns_own_sensitive_words_are_added(clinic_folder):
    set_keys(clinic_folder, "sensitive_words: [physical health]\n")
    report = check_campaign(load_folder(clinic_folder))
    found = [f.message for f in report.warnings if f.code == "sensitive-subject"]
    assert any("'Physical Health'" in m for m in found), found


def test_words_match_whole_and_in_any_case():
    words = ("ketamine", "sleep disorder", "STD")
    assert find_words("KETAMINE and a Sleep  Disorder", words) == ["KETAMINE", "Sleep Disorder"]
    assert find_words("standard ketamines", words) == []


def test_the_preview_and_render_show_the_discreet_version(discreet, clinic, tmp_path):
    from campaigns.reporting.export import export_campaign
    from campaigns.settings import Settings

    paths = export_campaign(discreet, tmp_path / "previews", settings=Settings())
    eml = next(p for p in paths if p.name.startswith("02-") and p.suffix == ".eml")
    head = eml.read_bytes().split(b"\r\n\r\n", 1)[0].decode()
    assert "Subject: A note from Balanced" in head
    assert "From: Balanced <" in head
    index = (tmp_path / "previews" / "index.html").read_text(encoding="utf-8")
    assert "A note from Balanced" in index  # the studio's inbox rows, exported
    assert "How Mental Health Affects Sleep" in index  # ... and the body's heading
    # A standard campaign previewed for a patient who chose discreet emails (render --email).
    paths = export_campaign(
        clinic, tmp_path / "theirs", recipient=replace(PAT, discreet=True), settings=Settings()
    )
    index = (tmp_path / "theirs" / "index.html").read_text(encoding="utf-8")
    assert 'class="inbox-subject">A note from Balanced<' in index
    assert 'class="inbox-from">Balanced<' in index
