"""Splitting an article into emails, and writing the editable campaign folder."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from campaigns.authoring.article import Article, word_count
from campaigns.authoring.defaults import CampaignDefaults, load_defaults
from campaigns.authoring.fields import PLACEHOLDER_EMAIL
from campaigns.authoring.folder import build_campaign_folder, write_campaign
from campaigns.authoring.readers import read_article
from campaigns.authoring.spec import load_folder
from campaigns.authoring.split import Draft, split_article
from campaigns.authoring.text_article import parse_text
from campaigns.errors import InputError

CLINIC = Path(__file__).resolve().parents[2] / "examples" / "ketamine-and-sleep.txt"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "articles"

CLINIC_SUBJECTS = [
    "Ketamine and Sleep",
    "How Mental Health Affects Sleep",
    "What About Physical Health?",
    "How Ketamine Therapy Can Help",
    "Can Ketamine Make My Sleep Issues Worse?",
    "All Patients are Different",
]
CLINIC_FILES = [
    "01-welcome.md",
    "02-how-mental-health-affects-sleep.md",
    "03-what-about-physical-health.md",
    "04-how-ketamine-therapy-can-help.md",
    "05-can-ketamine-make-my-sleep-issues-worse.md",
    "06-all-patients-are-different.md",
]


def body_blocks(drafts: list[Draft]) -> list[str]:
    """The article's own blocks across all emails, without headings split added."""
    return [p for d in drafts for p in d.paragraphs if not p.startswith("## ")]


def email_words(draft: Draft) -> int:
    return sum(word_count(p) for p in draft.paragraphs if not p.startswith("## "))


# ---------------------------------------------------------------- the clinic article


def test_clinic_article_gives_welcome_plus_one_email_per_heading() -> None:
    drafts = split_article(read_article(CLINIC))

    assert [d.subject for d in drafts] == CLINIC_SUBJECTS
    assert [d.key for d in drafts] == [name[3:-3] for name in CLINIC_FILES]


def test_every_clinic_sentence_appears_once_in_order() -> None:
    raw = CLINIC.read_text(encoding="utf-8")
    blocks = [b.strip() for b in raw.split("\n\n") if b.strip()]
    body = [b for b in blocks if b not in CLINIC_SUBJECTS and b != "Skip to content"]
    expected = [s for b in body for s in re.split(r"(?<=[.!?])\s+", b)]
    assert len(expected) > 25

    drafts = split_article(read_article(CLINIC))
    text = " ".join(" ".join(d.paragraphs) for d in drafts)

    position = 0
    for sentence in expected:
        assert text.count(sentence) == 1, sentence
        found = text.index(sentence)
        assert found >= position, f"out of order: {sentence}"
        position = found + len(sentence)
    assert "Skip to content" not in text


def test_clinic_preheaders_are_first_sentences_within_100_characters() -> None:
    drafts = split_article(read_article(CLINIC))

    assert drafts[0].preheader == (
        "Sleep is one of the most important things we can do for our physical and mental health."
    )
    assert drafts[3].preheader == "Ketamine therapy can help patients get quality sleep."
    # This first sentence is longer than 100 characters: cut at a word, marked with "…".
    assert drafts[4].preheader == (
        "While ketamine usually has a calming effect, some patients experience the opposite, "
        "which means…"
    )
    for draft in drafts:
        assert 0 < len(draft.preheader) <= 100


def test_closing_call_to_action_becomes_the_last_emails_button() -> None:
    drafts = split_article(read_article(CLINIC))

    assert [d.cta for d in drafts[:-1]] == [None] * 5
    assert drafts[-1].cta == "Contact the Balanced Ketamine team"
    # The sentence itself stays in the text.
    assert (
        drafts[-1]
        .paragraphs[-1]
        .endswith("For more information, contact the Balanced Ketamine team today.")
    )


def test_article_without_a_closing_call_has_no_button() -> None:
    article = parse_text(
        "Rest matters for everyone, young or old, and it is easy to take it for granted.\n\n"
        "Why It Matters\n\nThe body repairs itself during deep sleep, night after night, "
        "for as long as we live.\n",
        source="rest.txt",
    )

    assert split_article(article, min_words=5)[-1].cta is None


# ---------------------------------------------------------------- long articles


VOCABULARY = [
    *("sleep", "rest", "body", "mind", "night", "morning", "routine", "doctor", "patient"),
    *("clinic", "therapy", "calm", "light", "dark", "room", "habit", "week", "day", "hour"),
    *("change", "help", "feel", "better", "health", "pain", "stress", "quiet", "walk"),
    *("water", "tea", "bed", "time", "dream", "energy", "focus", "mood", "plan", "care"),
    *("team", "question", "answer", "step", "small", "simple", "regular", "gentle", "deep"),
    *("slow", "early", "late", "often", "most", "many", "some", "every", "each"),
]
SECTION_WORDS = [
    60, 320, 90, 310, 150, 35, 260, 520, 120, 180,
    75, 240, 230, 45, 200, 160, 95, 280, 140, 230,
]  # fmt: skip


def sentence(rng: random.Random, words: int) -> str:
    chosen = [rng.choice(VOCABULARY) for _ in range(words)]
    return " ".join(chosen).capitalize() + "."


def paragraph(rng: random.Random, words: int) -> str:
    sentences, left = [], words
    while left > 0:
        size = min(left, rng.randint(8, 18))
        if 0 < left - size < 4:
            size = left
        sentences.append(sentence(rng, size))
        left -= size
    return " ".join(sentences)


def long_article_text(seed: int = 7) -> tuple[str, list[str]]:
    """A deterministic 3,800-word plain-text article: an intro and 20 sections of
    varied length; returns the text and its paragraphs in order."""
    rng = random.Random(seed)
    parts: list[str] = ["Sleep Well, Live Well"]
    paragraphs: list[str] = []
    intro = paragraph(rng, 60)
    parts.append(intro)
    paragraphs.append(intro)
    for number, budget in enumerate(SECTION_WORDS, start=1):
        heading = f"Chapter {number} {rng.choice(VOCABULARY).title()} and {rng.choice(VOCABULARY)}"
        parts.append(heading)
        left = budget
        while left > 0:
            size = min(left, rng.randint(40, 110))
            if left - size < 30:
                size = left
            text = paragraph(rng, size)
            parts.append(text)
            paragraphs.append(text)
            left -= size
    return "\n\n".join(parts) + "\n", paragraphs


@pytest.fixture(scope="module")
def long_article() -> tuple[Article, list[str]]:
    text, paragraphs = long_article_text()
    return parse_text(text, source="sleep-well.txt"), paragraphs


def test_generated_article_is_the_size_the_acceptance_test_asks_for(long_article) -> None:
    article, paragraphs = long_article

    assert 3700 <= article.words <= 3900
    assert len(article.sections) == 21
    assert list(article.paragraphs) == paragraphs


def test_emails_8_gives_exactly_8_emails_every_paragraph_once_in_order(long_article) -> None:
    article, paragraphs = long_article

    drafts = split_article(article, emails=8)

    assert len(drafts) == 8
    assert body_blocks(drafts) == paragraphs
    assert len({d.key for d in drafts}) == 8
    assert drafts[0].key == "welcome" and drafts[0].subject == "Sleep Well, Live Well"
    # Balanced: no email runs far past an even share of the words.
    assert max(email_words(d) for d in drafts) <= 1.5 * article.words / 8
    # A packed email's subject is its first section's heading, and the later sections keep
    # their headings inside the email.
    headings = [s.heading for s in article.sections if s.heading]
    inner = [p[3:] for d in drafts for p in d.paragraphs if p.startswith("## ")]
    subjects = [d.subject for d in drafts[1:] if "(part " not in d.subject]
    assert [h for h in headings if h in inner or h in subjects] == headings


def test_minutes_aims_each_email_at_that_much_reading(long_article) -> None:
    article, paragraphs = long_article

    drafts = split_article(article, minutes=3)  # 3 minutes at 200 words a minute

    assert len(drafts) == round(article.words / 600)
    assert body_blocks(drafts) == paragraphs
    assert max(email_words(d) for d in drafts) <= 900


def test_default_split_keeps_sections_within_the_word_limits(long_article) -> None:
    article, paragraphs = long_article

    drafts = split_article(article)

    assert body_blocks(drafts) == paragraphs
    assert all(email_words(d) <= 450 for d in drafts)
    assert all(email_words(d) >= 30 for d in drafts)
    assert any(d.subject.endswith("(part 2)") for d in drafts)  # the 520-word chapter
    assert all(len(d.key) <= 40 for d in drafts)


@pytest.mark.parametrize("emails", [0, -1, 10_000])
def test_impossible_email_counts_are_refused(long_article, emails: int) -> None:
    article, _ = long_article

    with pytest.raises(InputError) as caught:
        split_article(article, emails=emails)
    assert "emails" in str(caught.value)


def test_emails_and_minutes_together_are_refused(long_article) -> None:
    with pytest.raises(InputError):
        split_article(long_article[0], emails=4, minutes=2)


# ---------------------------------------------------------------- merging and splitting


def words(count: int, start: str = "Word") -> str:
    return " ".join([start] + ["word"] * (count - 1)) + "."


def test_short_section_merges_into_the_following_one() -> None:
    article = parse_text(
        f"{words(40, 'Intro')}\n\nTiny Part\n\n{words(10, 'Small')}\n\n"
        f"Big Part\n\n{words(60, 'Large')}\n",
        source="merge.txt",
    )

    drafts = split_article(article, min_words=30)

    assert [d.subject for d in drafts] == ["Merge", "Tiny Part"]
    assert drafts[1].paragraphs == (words(10, "Small"), "## Big Part", words(60, "Large"))


def test_short_last_section_merges_into_the_previous_one() -> None:
    article = parse_text(
        f"{words(40, 'Intro')}\n\nMain Part\n\n{words(60, 'Large')}\n\n"
        f"Last Words\n\n{words(10, 'Small')}\n",
        source="merge.txt",
    )

    drafts = split_article(article, min_words=30)

    assert [d.subject for d in drafts] == ["Merge", "Main Part"]
    assert drafts[1].paragraphs == (words(60, "Large"), "## Last Words", words(10, "Small"))


def test_long_section_splits_at_paragraph_boundaries_into_parts() -> None:
    body = "\n\n".join(words(120, f"Para{i}") for i in range(5))  # 600 words
    article = parse_text(f"{words(40, 'Intro')}\n\nThe Long Part\n\n{body}\n", source="long.txt")

    drafts = split_article(article, max_words=450)

    assert [d.subject for d in drafts] == ["Long", "The Long Part", "The Long Part (part 2)"]
    assert [d.key for d in drafts] == ["welcome", "the-long-part", "the-long-part-2"]
    assert all(email_words(d) <= 450 for d in drafts)
    assert body_blocks(drafts) == list(article.paragraphs)


def test_keys_are_unique_slugs_cut_at_a_dash() -> None:
    long_heading = "Everything You Always Wanted to Know About Sleep but Were Afraid"
    article = parse_text(
        f"{words(40)}\n\n{long_heading}\n\n{words(40)}\n\nSleep Basics\n\n{words(40)}\n\n"
        f"Sleep Basics\n\n{words(40)}\n",
        source="keys.txt",
    )

    keys = [d.key for d in split_article(article)]

    assert keys == [
        "welcome",
        "everything-you-always-wanted-to-know",
        "sleep-basics",
        "sleep-basics-2",
    ]


# ---------------------------------------------------------------- the campaign folder


def test_written_folder_loads_and_lists_placeholders(tmp_path: Path) -> None:
    article = read_article(CLINIC)
    out = tmp_path / "clinic"

    written = write_campaign(article, split_article(article), out)

    assert [p.name for p in written] == ["campaign.yaml", *CLINIC_FILES]
    campaign = load_folder(out)
    assert campaign.name == "ketamine-and-sleep"
    assert campaign.spec.title == "Ketamine and Sleep"
    assert [s.subject for s in campaign.steps] == CLINIC_SUBJECTS
    assert [str(s.delay) for s in campaign.steps] == ["0d", "2d", "4d", "7d", "10d", "14d"]
    assert campaign.steps[-1].cta == "Contact the Balanced Ketamine team"
    assert sorted(campaign.placeholders()) == [
        "brand.organisation",
        "brand.postal_address",
        "from.address",
        "from.name",
    ]
    assert campaign.spec.from_.address == PLACEHOLDER_EMAIL
    assert campaign.spec.timezone == "UTC"
    yaml_text = (out / "campaign.yaml").read_text(encoding="utf-8")
    assert 'start: "09:00"' in yaml_text and 'end: "17:00"' in yaml_text
    assert yaml_text.startswith("#")


def test_step_file_has_front_matter_subject_heading_and_paragraphs(tmp_path: Path) -> None:
    article = read_article(CLINIC)
    write_campaign(article, split_article(article), tmp_path)

    text = (tmp_path / "06-all-patients-are-different.md").read_text(encoding="utf-8")

    assert text.startswith(
        "---\npreheader: At the end of the day, your ketamine experience will be unique.\n"
        "cta: Contact the Balanced Ketamine team\n---\n# All Patients are Different\n\n"
        "At the end of the day"
    )
    assert text.endswith("contact the Balanced Ketamine team today.\n")


def test_defaults_file_fills_the_campaign(tmp_path: Path) -> None:
    defaults_file = tmp_path / "defaults.yaml"
    defaults_file.write_text(
        "organisation: Balanced Ketamine\n"
        "from_name: Care Team\n"
        "from_address: care@balancedketamine.example.com\n"
        "postal_address: 100 Example Avenue, Springfield, IL 62701\n"
        "cta_url: https://balancedketamine.example.com/contact\n"
        "disclaimer: For education, not medical advice.\n"
        "timezone: America/New_York\n",
        encoding="utf-8",
    )
    article = read_article(CLINIC)

    write_campaign(
        article, split_article(article), tmp_path / "c", defaults=load_defaults(defaults_file)
    )

    campaign = load_folder(tmp_path / "c")
    assert campaign.placeholders() == []
    assert campaign.spec.brand.organisation == "Balanced Ketamine"
    assert campaign.spec.from_.name == "Care Team"
    assert campaign.spec.links.cta_url == "https://balancedketamine.example.com/contact"
    assert campaign.spec.brand.disclaimer == "For education, not medical advice."
    assert campaign.spec.timezone == "America/New_York"


def test_defaults_file_with_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text("organisation: Clinic\n\ncolour: blue\n", encoding="utf-8")

    with pytest.raises(InputError) as caught:
        load_defaults(path)
    assert str(caught.value).startswith(f"{path}:3: colour: unknown key 'colour'")


def test_defaults_file_with_bad_address_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text("from_address: not-an-address\n", encoding="utf-8")

    with pytest.raises(InputError) as caught:
        load_defaults(path)
    assert str(caught.value).startswith(f"{path}:1: from_address: ")


def test_many_emails_keep_adding_the_last_cadence_gap(long_article, tmp_path: Path) -> None:
    article, _ = long_article

    write_campaign(article, split_article(article, emails=8), tmp_path, name="Sleep Well")

    campaign = load_folder(tmp_path)
    assert campaign.name == "sleep-well"
    assert [str(s.delay) for s in campaign.steps] == [
        "0d", "2d", "4d", "7d", "10d", "14d", "18d", "22d",
    ]  # fmt: skip


def test_cadence_is_extended_by_its_last_gap_and_checked(tmp_path: Path) -> None:
    article = read_article(CLINIC)
    drafts = split_article(article)

    write_campaign(article, drafts, tmp_path, cadence=(0, 1, 3))

    delays = [str(s.delay) for s in load_folder(tmp_path).steps]
    assert delays == ["0d", "1d", "3d", "5d", "7d", "9d"]
    for bad in [(), (3, 1), (0, -2), ("soon",)]:
        with pytest.raises(InputError, match="cadence"):
            write_campaign(article, drafts, tmp_path / "bad", cadence=bad)
    assert not (tmp_path / "bad").exists()


def test_rerun_keeps_hand_edits_and_writes_nothing(tmp_path: Path) -> None:
    article = read_article(CLINIC)
    drafts = split_article(article)
    write_campaign(article, drafts, tmp_path)
    edited = tmp_path / "03-what-about-physical-health.md"
    edited.write_text(edited.read_text(encoding="utf-8") + "\nA line I added.\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    with pytest.raises(InputError) as caught:
        write_campaign(article, drafts, tmp_path, defaults=CampaignDefaults(organisation="New"))

    message = str(caught.value)
    assert "03-what-about-physical-health.md" in message
    assert "use --force to overwrite" in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_rerun_without_edits_regenerates(tmp_path: Path) -> None:
    article = read_article(CLINIC)
    write_campaign(article, split_article(article), tmp_path)

    write_campaign(
        article, split_article(article), tmp_path, defaults=CampaignDefaults(organisation="New")
    )

    assert load_folder(tmp_path).spec.brand.organisation == "New"


def test_existing_file_split_did_not_write_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "campaign.yaml").write_text("name: mine\n", encoding="utf-8")
    article = read_article(CLINIC)

    with pytest.raises(InputError, match=r"campaign\.yaml"):
        write_campaign(article, split_article(article), tmp_path)
    assert (tmp_path / "campaign.yaml").read_text(encoding="utf-8") == "name: mine\n"


def test_force_overwrites_edits_and_removes_stale_steps(tmp_path: Path) -> None:
    article = read_article(CLINIC)
    write_campaign(article, split_article(article), tmp_path)
    edited = tmp_path / "02-how-mental-health-affects-sleep.md"
    edited.write_text("# Mine\n\nMy own words.\n", encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("not split's business", encoding="utf-8")

    written = write_campaign(article, split_article(article, emails=3), tmp_path, force=True)

    steps = sorted(p.name for p in tmp_path.glob("*.md"))
    assert steps == sorted(p.name for p in written if p.suffix == ".md")
    assert len(steps) == 3
    assert not edited.exists() or "My own words." not in edited.read_text(encoding="utf-8")
    assert notes.read_text(encoding="utf-8") == "not split's business"
    assert len(load_folder(tmp_path).steps) == 3


def test_build_campaign_folder_in_one_call(tmp_path: Path) -> None:
    defaults_file = tmp_path / "defaults.yaml"
    defaults_file.write_text("organisation: From File\npostal_address: 1 Main St\n")

    result = build_campaign_folder(
        CLINIC,
        tmp_path / "c",
        cadence="0,1,2",
        sender="Care Team <care@clinic.example.com>",
        organisation="From Option",
        defaults_file=defaults_file,
    )

    assert result.emails == 6
    assert [p.name for p in result.files] == ["campaign.yaml", *CLINIC_FILES]
    assert result.placeholders == []
    campaign = load_folder(tmp_path / "c")
    assert campaign.spec.brand.organisation == "From Option"  # an option beats the file
    assert campaign.spec.brand.postal_address == "1 Main St"
    assert campaign.spec.from_.name == "Care Team"
    assert [str(s.delay) for s in campaign.steps] == ["0d", "1d", "2d", "3d", "4d", "5d"]


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"cadence": "0,two"}, "cadence"),
        ({"sender": "nobody"}, "from"),
        ({"emails": 99}, "emails"),
    ],
)
def test_build_campaign_folder_checks_before_writing(
    tmp_path: Path, options: dict, needle: str
) -> None:
    with pytest.raises(InputError, match=needle):
        build_campaign_folder(CLINIC, tmp_path / "c", **options)
    assert not (tmp_path / "c").exists()
