"""Rendering: compile once, personalise per contact, and what a reader and a mail client see."""

from __future__ import annotations

import email
import email.policy
import itertools
import re
import shutil
import socket
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from campaigns.authoring.spec import Campaign, Colors, load_folder
from campaigns.errors import InputError
from campaigns.rendering.compile import clear_cache, compile_campaign, render_sample
from campaigns.rendering.markdown import markdown_text
from campaigns.rendering.palette import contrast_ratio, palette
from campaigns.rendering.personalise import SAMPLE, CompiledCampaign, Recipient, Rendered
from senders.mime import to_bytes

FIXTURE = Path(__file__).parents[1] / "fixtures" / "render"
UNSUBSCRIBE = "https://balancedketamine.example.com/u/tok-123"
PREFERENCES = "https://balancedketamine.example.com/p/tok-123"
MAILTO = "mailto:unsubscribe@balancedketamine.example.com?subject=unsubscribe"
GMAIL_CLIP = 102 * 1024


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_folder(FIXTURE)


@pytest.fixture(scope="module")
def compiled(campaign: Campaign) -> CompiledCampaign:
    return compile_campaign(campaign)


def personalise(compiled: CompiledCampaign, key: str, recipient: Recipient = SAMPLE) -> Rendered:
    return compiled.steps[key].personalise(
        recipient, unsubscribe_url=UNSUBSCRIBE, preferences_url=PREFERENCES
    )


def variant(tmp_path: Path, edits: dict[str, tuple[str, str]]) -> Campaign:
    """A copy of the fixture with `file: (old, new)` text replacements."""
    folder = tmp_path / "campaign"
    shutil.copytree(FIXTURE, folder)
    for name, (old, new) in edits.items():
        path = folder / name
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    return load_folder(folder)


class _Tags(HTMLParser):
    """Collects start tags with their attributes, and the text outside style and title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def parse_html(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


# ------------------------------------------------------------------------ the HTML part


def test_every_html_is_small_complete_and_has_no_template_leftovers(
    campaign: Campaign, compiled: CompiledCampaign
) -> None:
    assert list(compiled.steps) == ["welcome", "mental-health", "every-patient"]
    for key in compiled.steps:
        html = personalise(compiled, key).html
        assert len(html.encode("utf-8")) < GMAIL_CLIP
        assert html.startswith("<!doctype html>")
        assert '<html lang="en"' in html
        assert "1200 Harbor Street, Suite 4" in html and "Portland, OR 97201" in html
        assert f'<a href="{UNSUBSCRIBE}"' in html and ">Unsubscribe</a>" in html
        assert f'<a href="{PREFERENCES}"' in html
        assert "This email is for education, not medical advice." in html
        assert "@media only screen and (min-width:480px)" in html  # columns stack below it
        for leftover in ("{{", "{%", "{#", "%7B%7B", "%7B%25", "DMX"):
            assert leftover not in html, (key, leftover)
        assert "fonts.googleapis" not in html and "@import" not in html


def test_every_image_has_alt_text_and_layout_tables_are_presentational(
    compiled: CompiledCampaign,
) -> None:
    for key in compiled.steps:
        tags = parse_html(personalise(compiled, key).html).tags
        images = [attrs for tag, attrs in tags if tag == "img"]
        assert images, key
        assert all(attrs.get("alt") for attrs in images), images
        assert all(attrs.get("src", "").startswith("https://") for attrs in images)
        tables = [attrs for tag, attrs in tags if tag == "table"]
        assert tables and all(attrs.get("role") == "presentation" for attrs in tables)
    logo, photo = (
        a for t, a in parse_html(personalise(compiled, "welcome").html).tags if t == "img"
    )
    assert logo["alt"] == "Balanced Ketamine"
    assert photo["alt"] == "A person resting in bed at night with a reading lamp"


def test_headings_start_with_one_h1_and_go_in_order(compiled: CompiledCampaign) -> None:
    for key in compiled.steps:
        levels = [
            int(tag[1])
            for tag, _ in parse_html(personalise(compiled, key).html).tags
            if re.fullmatch(r"h[1-6]", tag)
        ]
        assert levels[0] == 1 and levels.count(1) == 1, (key, levels)
        assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels


def test_a_step_without_a_heading_gets_its_subject_as_h1(tmp_path: Path) -> None:
    campaign = variant(
        tmp_path, {"02-mental-health.md": ("# How mental health affects sleep\n", "")}
    )
    html = render_sample(campaign, "mental-health").html
    assert re.search(r"<h1[^>]*>How mental health affects sleep</h1>", html)
    text = render_sample(campaign, "mental-health").text
    assert text.count("How mental health affects sleep") == 1


def test_progress_cta_and_title(compiled: CompiledCampaign) -> None:
    first, last = personalise(compiled, "welcome"), personalise(compiled, "every-patient")
    assert ">Part 1 of 3<" in first.html and "Part 3 of 3" in last.html
    assert "<title>Ketamine and sleep</title>" in first.html
    cta = re.search(
        r'<a href="https://balancedketamine.example.com/contact"[^>]*>([^<]+)</a>', last.html
    )
    assert cta and cta.group(1).strip() == "Contact our team"
    assert "balancedketamine.example.com/contact" not in first.html  # no cta: no button


def test_preheader_is_hidden_preview_text_not_repeated_in_the_text_part(
    compiled: CompiledCampaign,
) -> None:
    rendered = personalise(compiled, "mental-health")
    assert rendered.preheader == "Many patients with mental health issues also struggle with sleep."
    assert re.search(r'<div style="display:none;[^"]*">Many patients with', rendered.html)
    # The preheader sentence is the body's own first sentence: once in the text, not twice.
    assert rendered.text.count("patients with mental health issues also struggle with sleep.") == 1


# ------------------------------------------------------------------------ the text part


def _sentences(markdown: str) -> list[str]:
    """The sentences of a step body without Markdown markers (headings excluded)."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", markdown.replace("**", "")):
        if paragraph.startswith(("#", "![")):
            continue
        prose = " ".join(paragraph.split())
        sentences += [s for s in re.split(r"(?<=[.?!,])\s+(?=[A-Z])", prose) if s]
    return sentences


def test_text_part_has_every_sentence_once_and_the_footer(
    campaign: Campaign, compiled: CompiledCampaign
) -> None:
    for key in ("welcome", "every-patient"):
        step = campaign.step(key)
        text = personalise(compiled, key).text
        body = step.body.replace('{{ first_name | default("there") }}', "Sam")
        for sentence in _sentences(body):
            assert text.count(sentence) == 1, (key, sentence)
        assert text.count(step.subject) == 1
        assert "{{" not in text and "{%" not in text
        for line in (
            "Balanced Ketamine",
            "1200 Harbor Street, Suite 4",
            "Portland, OR 97201",
            "This email is for education, not medical advice.",
            f"Unsubscribe: {UNSUBSCRIBE}",
            f"Email preferences: {PREFERENCES}",
            "Visit our website: https://balancedketamine.example.com",
        ):
            assert line in text.splitlines(), (key, line)
    welcome = personalise(compiled, "welcome").text
    assert "Part 1 of 3" in welcome.splitlines()
    assert "\n\nA person resting in bed at night with a reading lamp\n\n" in welcome
    last = personalise(compiled, "every-patient").text
    assert "Contact our team: https://balancedketamine.example.com/contact" in last.splitlines()


def test_text_part_lists_and_links_read_naturally(compiled: CompiledCampaign) -> None:
    text = personalise(compiled, "mental-health").text
    assert (
        "Common problems include:\n\n- insomnia\n- nightmares or night terrors\n"
        "- excessive sleep and daytime fatigue\n\n"
    ) in text
    assert (
        "You can read the whole article (https://balancedketamine.example.com/articles/"
        "ketamine-and-sleep?reader=Sam) on our website."
    ) in text
    assert "*" not in text.split("-- \n")[0]  # no Markdown markers in the prose
    assert max(len(line) for line in text.splitlines()) > 78  # paragraphs are not hard-wrapped


def test_markdown_becomes_readable_plain_text() -> None:
    markdown = (
        "# Title\n\n1. first\n2. second\n   - nested\n3. third\n\n"
        "> quoted *line*\n> continues\n\n| a | b |\n|---|---|\n| 1 | [x](https://e.example) |\n\n"
        'Visit <https://e.example> or [our page](https://e.example/p "title"),\n'
        "see ![a chart of sleep hours](https://e.example/c.png) and `code`.\n"
    )
    assert markdown_text(markdown) == (
        "Title\n\n1. first\n2. second\n   - nested\n3. third\n\n"
        "> quoted line continues\n\na | b\n1 | x (https://e.example)\n\n"
        "Visit https://e.example or our page (https://e.example/p), "
        "see a chart of sleep hours and code."
    )


# ------------------------------------------------------------------------- placeholders


def test_staff_placeholders_survive_compile_and_are_personalised(
    compiled: CompiledCampaign,
) -> None:
    sam = personalise(compiled, "mental-health")
    assert (
        'href="https://balancedketamine.example.com/articles/ketamine-and-sleep?reader=Sam"'
        in sam.html
    )
    assert ">Sam, many patients with mental health" in sam.html.replace("\n", " ")
    assert "Hi Sam," in personalise(compiled, "welcome").text

    nobody = Recipient("anon@example.com")
    assert "Hi there," in personalise(compiled, "welcome", nobody).text
    unnamed = personalise(compiled, "mental-health", nobody)
    assert "\nMany patients with mental health" in unnamed.text
    assert "?reader=" in unnamed.text

    # A value inside a URL is URL-encoded, so a space or `&` cannot end the link early.
    spaced = personalise(compiled, "mental-health", Recipient("a@example.com", "Anne Marie & Jo"))
    assert "?reader=Anne%20Marie%20%26%20Jo" in spaced.html
    assert "?reader=Anne%20Marie%20%26%20Jo)" in spaced.text
    assert "Anne Marie &amp; Jo, many patients" in spaced.html.replace("\n", " ")


def test_contact_data_is_never_template_source(compiled: CompiledCampaign) -> None:
    evil = Recipient("evil@example.com", "<b>{{ 7*7 }}</b>")
    for key in compiled.steps:
        rendered = personalise(compiled, key, evil)
        for part in (rendered.subject, rendered.preheader or "", rendered.html, rendered.text):
            assert "49" not in part
        assert "<b>{{" not in rendered.html
    welcome = personalise(compiled, "welcome", evil)
    assert "Hi <b>{{ 7*7 }}</b>," in welcome.text
    assert "Hi &lt;b&gt;{{ 7*7 }}&lt;/b&gt;," in welcome.html


def test_literal_braces_in_the_article_show_as_written(tmp_path: Path) -> None:
    literal = "Templates write {{ and {% and {# to open a tag, and }} or %} to close one."
    campaign = variant(
        tmp_path,
        {
            "03-every-patient.md": (
                "Your healthcare provider",
                f"{literal}\n\nA brace right before a name: {{{{{{ first_name }}}}}}.\n\n"
                "Escaped in Markdown: \\{{ first_name }} stays as typed.\n\n"
                "Your healthcare provider",
            )
        },
    )
    rendered = render_sample(campaign, "every-patient")
    assert literal in rendered.text
    assert literal in rendered.html
    assert "A brace right before a name: {Sam}." in rendered.text
    assert "Escaped in Markdown: {{ first_name }} stays as typed." in rendered.text
    assert "Escaped in Markdown: {{ first_name }} stays as typed." in rendered.html
    assert "49" not in rendered.html


def test_an_unknown_placeholder_names_the_file_line_and_variable(tmp_path: Path) -> None:
    campaign = variant(
        tmp_path, {"02-mental-health.md": ("Depression, anxiety", "{{ nope }} Depression, anxiety")}
    )
    with pytest.raises(InputError) as caught:
        compile_campaign(campaign)
    message = str(caught.value)
    assert "02-mental-health.md:" in message
    assert "'nope'" in message and "first_name" in message
    assert caught.value.line == 14


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("# How mental health", "{% if first_name %}\n# How mental health", "placeholder error"),
        ("Depression, anxiety", '{% include "other.md" %} Depression', "not supported"),
        ("Depression, anxiety", "{{ range(3) }} Depression", "'range'"),
        ("Depression, anxiety", "{{ first_name[0] }} Depression", "first_name is ''"),
        ("Depression, anxiety", "{{ first_name | safe }} Depression", "'safe'"),
    ],
)
def test_broken_staff_placeholders_fail_at_compile_time(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    campaign = variant(tmp_path, {"02-mental-health.md": (old, new)})
    with pytest.raises(InputError) as caught:
        compile_campaign(campaign)
    assert "02-mental-health.md" in str(caught.value)
    assert expected in str(caught.value)


def test_a_placeholder_in_the_subject_is_personalised(tmp_path: Path) -> None:
    campaign = variant(
        tmp_path,
        {
            "02-mental-health.md": (
                "subject: How mental health affects sleep",
                "subject: \"{{ first_name | default('Hello') }}, how mental health affects sleep\"",
            )
        },
    )
    assert render_sample(campaign, "mental-health").subject.startswith("Sam, how mental")
    nobody = render_sample(campaign, "mental-health", Recipient("a@example.com"))
    assert nobody.subject == "Hello, how mental health affects sleep"
    assert "<title>Hello, how mental health affects sleep</title>" in nobody.html


# ------------------------------------------------------------------- compile and network


def test_compile_happens_once_per_campaign_version(tmp_path: Path, campaign: Campaign) -> None:
    first = compile_campaign(campaign)
    assert compile_campaign(campaign) is first
    assert compile_campaign(load_folder(FIXTURE)) is first  # same files, same version
    edited = variant(tmp_path, {"01-welcome.md": ("Hi ", "Hello ")})
    assert edited.version != campaign.version
    assert compile_campaign(edited) is not first
    assert "Hello Sam," in render_sample(edited, "welcome").text


def test_rendering_opens_no_socket(monkeypatch: pytest.MonkeyPatch, campaign: Campaign) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"rendering tried the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    clear_cache()  # compile for real under the patch, not from the cache
    compiled = compile_campaign(campaign)
    for key in compiled.steps:
        message = compiled.message(
            key,
            SAMPLE,
            delivery_id="42",
            unsubscribe_url=UNSUBSCRIBE,
            unsubscribe_mailto=MAILTO,
            preferences_url=PREFERENCES,
            date=datetime(2026, 3, 9, 14, 0, tzinfo=UTC),
        )
        assert to_bytes(message)


# ---------------------------------------------------------------------------- messages


def message_for(compiled: CompiledCampaign, key: str, **options: object):
    return compiled.message(
        key,
        SAMPLE,
        delivery_id="1042",
        unsubscribe_url=UNSUBSCRIBE,
        unsubscribe_mailto=MAILTO,
        preferences_url=PREFERENCES,
        date=datetime(2026, 3, 9, 14, 0, tzinfo=UTC),
        **options,
    )


def test_message_headers_and_mime_structure(campaign: Campaign, compiled: CompiledCampaign) -> None:
    message = message_for(compiled, "mental-health")
    raw = to_bytes(message, linesep="\n")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert parsed["From"].addresses[0].addr_spec == "care@balancedketamine.example.com"
    assert parsed["Reply-To"] == "care@balancedketamine.example.com"
    assert parsed["Subject"] == "How mental health affects sleep"
    assert parsed["Message-ID"] == (
        f"<dripmail.1042.{campaign.version}@balancedketamine.example.com>"
    )
    assert parsed["Date"].datetime == datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
    header = re.search(rb"^List-Unsubscribe: .*?(?=^\S)", raw, flags=re.M | re.S).group(0)
    assert b"=?" not in header  # an encoded word would hide the URIs from mail clients
    assert re.findall(r"<([^>]+)>", str(parsed["List-Unsubscribe"])) == [UNSUBSCRIBE, MAILTO]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "X-Dripmail-Test" not in parsed
    text, html = (part.get_content() for part in parsed.iter_parts())
    assert "Sam, many patients" in text and "Sam, many patients" in html.replace("\n", " ")


def test_message_categories_are_opaque_and_test_sends_are_marked(
    compiled: CompiledCampaign,
) -> None:
    message = message_for(compiled, "welcome", is_test=True, message_id="<given@example.com>")
    assert message.subject == "[TEST] Ketamine and sleep"
    assert message.headers["X-Dripmail-Test"] == "yes"
    assert message.headers["Message-ID"] == "<given@example.com>"
    assert message.is_test
    campaign_id, step_id = message.categories
    assert re.fullmatch(r"c-[0-9a-f]{10}", campaign_id) and re.fullmatch(r"s-[0-9a-f]{10}", step_id)
    assert message_for(compiled, "every-patient").categories[0] == campaign_id
    assert message_for(compiled, "every-patient").categories[1] != step_id


# ---------------------------------------------------------------------------- contrast


def test_template_colours_meet_wcag_aa_contrast(
    campaign: Campaign, compiled: CompiledCampaign
) -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#777777") == pytest.approx(1.0)
    for colours in (Colors(), campaign.spec.brand.colors):
        used = palette(colours)
        for field, foreground, background in used.pairs():
            assert contrast_ratio(foreground, background) >= 4.5, (field, foreground, background)
    # The palette is what the HTML actually uses, footer grey included.
    html = personalise(compiled, "welcome").html.lower()
    used = palette(campaign.spec.brand.colors)
    for colour in (used.text, used.muted, used.primary, used.button_text, used.background):
        assert colour in html, colour
    text_colours = set(re.findall(r"(?<![-\w])color:\s*(#[0-9a-f]{6})", html))
    assert text_colours <= {used.text, used.muted, used.primary, used.button_text}, text_colours


def test_brand_colours_that_fail_contrast_are_refused(tmp_path: Path) -> None:
    campaign = variant(
        tmp_path,
        {"campaign.yaml": ("  disclaimer:", "  colors:\n    text: '#aaaaaa'\n  disclaimer:")},
    )
    with pytest.raises(InputError) as caught:
        compile_campaign(campaign)
    assert "brand.colors.text" in str(caught.value) and "4.5:1" in str(caught.value)
