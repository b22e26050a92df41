"""Reading articles: plain text, Markdown and saved web pages, and refusing bad files."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from campaigns.authoring.article import Article, word_count
from campaigns.authoring.markdown_article import parse_markdown
from campaigns.authoring.readers import read_article
from campaigns.authoring.text_article import parse_text
from campaigns.errors import InputError

CLINIC = Path(__file__).resolve().parents[2] / "examples" / "ketamine-and-sleep.txt"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "articles"

CLINIC_HEADINGS = [
    "How Mental Health Affects Sleep",
    "What About Physical Health?",
    "How Ketamine Therapy Can Help",
    "Can Ketamine Make My Sleep Issues Worse?",
    "All Patients are Different",
]


def all_text(article: Article) -> str:
    """Everything a reader could see: title, headings and blocks, one per line."""
    headings = [s.heading for s in article.sections if s.heading]
    return "\n".join([article.title, *headings, *article.paragraphs])


# ---------------------------------------------------------------- plain text


def test_clinic_article_has_intro_and_five_headed_sections() -> None:
    article = read_article(CLINIC)

    assert article.title == "Ketamine and Sleep"  # from the file name
    assert article.source == str(CLINIC)
    assert [s.heading for s in article.sections] == [None, *CLINIC_HEADINGS]
    assert all(len(s.paragraphs) == 1 for s in article.sections)
    assert [s.words for s in article.sections] == [74, 58, 56, 39, 64, 68]
    assert "Skip to content" not in all_text(article)


def test_clinic_text_is_kept_exactly_with_curly_quotes() -> None:
    article = read_article(CLINIC)
    raw = CLINIC.read_text(encoding="utf-8")

    for paragraph in article.paragraphs:
        assert paragraph in raw
    assert "night’s sleep can be challenging- especially" in article.sections[0].paragraphs[0]


def test_title_argument_overrides_the_document_title() -> None:
    assert read_article(CLINIC, title="Sleep and You").title == "Sleep and You"
    page = read_article(FIXTURES / "saved-page.html", title="Anxiety, Explained")
    assert page.title == "Anxiety, Explained"


def test_first_standalone_line_followed_by_prose_is_the_title(tmp_path: Path) -> None:
    text = (
        "Why We Dream\n\nDreams have puzzled people for as long as there have been people.\n\n"
        "What Science Says\n\nResearchers now think dreams help the brain sort memories.\n"
    )
    article = parse_text(text, source=str(tmp_path / "notes.txt"))

    assert article.title == "Why We Dream"
    assert [s.heading for s in article.sections] == [None, "What Science Says"]


def test_numbered_headings_only_numbered_lines_become_headings() -> None:
    article = read_article(FIXTURES / "numbered-sleep-tips.txt")

    assert article.title == "Seven Habits for Better Sleep"
    assert [s.heading for s in article.sections] == [
        None,
        "Keep a Regular Schedule",
        "Make Your Bedroom a Place for Sleep",
        "Watch What You Drink",
        "Put the Screens Away",
        "Move During the Day",
        "Wind Down on Purpose",
        "Ask for Help When You Need It",
    ]
    bedroom, drink = article.sections[2], article.sections[3]
    # Bare short lines are lists, whether written on consecutive lines or blank-separated.
    assert bedroom.paragraphs[1] == (
        "- Cool temperature\n- Dark curtains\n- A quiet fan\n- Comfortable pillows"
    )
    assert drink.paragraphs[1] == "- Coffee after lunch\n- Energy drinks\n- A nightcap"
    # A lone unnumbered short line is text, not a heading, when the headings are numbered.
    assert "A Quick Tip" in article.sections[5].paragraphs


def test_site_chrome_and_link_blocks_are_dropped_from_text() -> None:
    text = all_text(read_article(FIXTURES / "numbered-sleep-tips.txt"))

    for chrome in [
        "Skip to content",
        "Menu",
        "Home",
        "Share this",
        "Facebook",
        "Twitter",
        "Print",
        "Today on the Blog",
        "Five Questions to Ask Your Doctor",
        "Related Articles",
        "Ketamine for Chronic Pain",
        "Subscribe to our newsletter",
        "Back to top",
    ]:
        assert chrome not in text.splitlines(), chrome
        assert f"\n{chrome}\n" not in f"\n{text}\n"


def test_a_run_of_short_lines_is_a_list_not_headings() -> None:
    text = (
        "Good habits make a real difference to how well you sleep at night, and most of them "
        "cost nothing at all to try.\n\n"
        "Evening Routine\n\n"
        "Start winding down an hour before bed, and keep the lights low and the room quiet.\n\n"
        "Herbal tea\nA warm bath\nA paper book\n\n"
        "Any of these helps your body understand that the day is over and it can rest.\n"
    )
    article = parse_text(text, source="habits.txt")

    assert [s.heading for s in article.sections] == [None, "Evening Routine"]
    assert "- Herbal tea\n- A warm bath\n- A paper book" in article.sections[1].paragraphs


def test_hard_wrapped_paragraph_is_one_paragraph() -> None:
    text = (
        "Sleep is one of the most important things we can do for our\n"
        "physical and mental health, and getting enough of it is\n"
        "harder than it sounds for many people.\n"
    )
    article = parse_text(text, source="wrapped.txt")

    assert article.paragraphs == (" ".join(text.split()),)


# ---------------------------------------------------------------- Markdown


def test_markdown_front_matter_headings_lists_links_images() -> None:
    article = read_article(FIXTURES / "sleep-guide.md")

    assert article.title == "A Patient’s Guide to Sleep After Treatment"
    assert [s.heading for s in article.sections] == [
        None,
        "The First Night",
        "Habits That Help",
        "When to Call Us",
    ]
    intro, first_night, habits, call = article.sections
    diary = "[sleep diary we use in clinic](https://balancedketamine.example.com/sleep-diary.pdf)"
    assert diary in intro.paragraphs[0]
    assert "**tired earlier**" in first_night.paragraphs[0]
    assert first_night.paragraphs[1] == (
        "![A calm bedroom with the lights dimmed]"
        "(https://balancedketamine.example.com/images/bedroom.jpg)"
    )
    assert habits.paragraphs[1] == (
        "- Keep the same bedtime, even on weekends.\n"
        "- Stop caffeine after noon.\n"
        "- Put your phone in another room."
    )
    assert habits.paragraphs[2].startswith("1. Write down when you went to bed.")
    assert "### A note on naps" in habits.paragraphs  # a sub-heading stays inside its section
    assert call.paragraphs[0].endswith("call us at 555-0100 to talk to a nurse.")


def test_markdown_h1_is_title_and_later_h1s_are_sections() -> None:
    text = "# Sleep Basics\n\nAn intro.\n\n# Part One\n\nText one.\n\n## Part Two\n\nTwo.\n"
    article = parse_markdown(text, source="basics.md")

    assert article.title == "Sleep Basics"
    assert [s.heading for s in article.sections] == [None, "Part One", "Part Two"]


def test_markdown_front_matter_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.md"
    path.write_text("---\ntitle: [unclosed\n---\n\nText.\n", encoding="utf-8")

    with pytest.raises(InputError) as caught:
        read_article(path)
    assert str(caught.value).startswith(f"{path}:")


# ---------------------------------------------------------------- HTML


def test_saved_web_page_keeps_article_and_headings_only() -> None:
    article = read_article(FIXTURES / "saved-page.html")

    assert article.title == "Ketamine and Anxiety: What to Expect"
    assert [s.heading for s in article.sections] == [
        None,
        "Why Anxiety Can Be Hard to Treat",
        "How Ketamine Works Differently",
        "What Happens at Your First Session?",
        "Is Ketamine Right for You?",
    ]
    text = all_text(article)
    assert "Anxiety is more than feeling nervous before a big day." in text
    assert "the “nothing works for me” feeling" in text
    assert "[the research summaries at the National Library of Medicine](" in text
    assert "- Wear comfortable clothes." in text
    for chrome in [
        "Skip to content",
        "About Us",  # navigation
        "Ketamine for Depression",
        "Share this",
        "Facebook",
        "Twitter",
        "Related Articles",
        "Ketamine for PTSD",  # a related article
        "What to Expect After an Infusion",
        "Recent Posts",
        "Ketamine and Chronic Pain",
        "Subscribe to our newsletter",
        "cookies",
        "All rights reserved",
        "Back to top",
        "Privacy Policy",
    ]:
        assert chrome not in text, chrome


def test_reading_a_web_page_opens_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)

    assert read_article(FIXTURES / "saved-page.html").sections


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "the article is empty"),
        ("blank.txt", b"  \n\n\t  \r\n", "the article is empty"),
        ("blank.md", "\ufeff \n".encode(), "the article is empty"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        ("latin1.txt", "Caf\xe9 au lait".encode("latin-1"), "not a text file"),
        ("utf16.html", "<p>hello</p>".encode("utf-16"), "not a text file"),
        ("only-chrome.txt", b"Skip to content\n\nMenu\nHome\n\nShare this\n", "no article text"),
        ("notes.pdf", b"%PDF-1.4 text", "use .txt, .md or .html"),
    ],
)
def test_bad_article_files_raise_input_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(InputError) as caught:
        read_article(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_missing_article_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.txt"

    with pytest.raises(InputError, match="no such file") as caught:
        read_article(path)
    assert str(path) in str(caught.value)


def test_page_without_article_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blank-page.html"
    path.write_text("<html><head><title>x</title></head><body><nav>Home</nav></body></html>")

    with pytest.raises(InputError) as caught:
        read_article(path)
    assert str(caught.value).startswith(f"{path}: ")


# ---------------------------------------------------------------- words


def test_word_count_counts_what_a_reader_sees() -> None:
    assert word_count("Hello, world") == 2
    assert word_count("- one item\n- two items") == 4
    assert word_count("Read [the guide](https://example.com/a-long-path) now") == 4
    assert word_count("![A dark room](x.jpg)") == 3
    assert word_count("It is **very** good — truly") == 5
