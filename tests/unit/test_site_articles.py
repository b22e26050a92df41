"""Articles from static-site generators and quoting templates: their text is never template
source (issue 15, point 1). Library level; the CLI round trip is in tests/test_site_articles.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.authoring.folder import campaign_files
from campaigns.authoring.liquid import literal_braces, resolve_liquid
from campaigns.authoring.readers import read_article
from campaigns.authoring.spec import load_files
from campaigns.authoring.split import split_article
from campaigns.planning.newsletter import newsletter_files
from campaigns.rendering.compile import compile_campaign, render_sample
from campaigns.rendering.personalise import Recipient

ARTICLES = Path(__file__).resolve().parents[1] / "fixtures" / "articles"

# The first words of every paragraph of each post, in reading order.
PARAGRAPHS = {
    "jekyll-sleep-hygiene.md": [
        "Good sleep is built during the day",
        "Going to bed and waking up at the same time",
        "Bright light in the morning",
        "bedtime = wake_time - timedelta(hours=8)",
        "Caffeine stays in the body",
        "If your sleep does not improve",
    ],
    "hugo-anxiety-breathing.md": [
        "When anxiety rises, breathing is one",
        "Slow breathing calms the body within minutes.",
        "Breathe in for four counts, hold for four",
        "Stop and breathe normally if you feel light-headed",
        "Breathing out for longer than you breathe in",
        "These exercises work best when",
    ],
    "eleventy-ketamine-faq.md": [
        "Many patients feel nervous before their first session",
        "Eat a light meal no later than four hours",
        "A nurse stays with you for the whole session",
        "Rest for the remainder of the day",
    ],
}
LIQUID = ("{{", "{%", "%7B%7B", "%7B%25", "}}", "%}")


def campaign_of(name: str, url: str | None = None):
    article = read_article(ARTICLES / name, **({"url": url} if url else {}))
    files = campaign_files(article, split_article(article))
    return load_files(files, origin=f"/tmp/{name}")


def all_parts(campaign) -> tuple[str, str]:
    rendered = [render_sample(campaign, step.key) for step in campaign.steps]
    text = "\n".join(r.text for r in rendered)
    html = "\n".join(r.html for r in rendered)
    return " ".join(text.split()), html


@pytest.mark.parametrize("name", sorted(PARAGRAPHS))
@pytest.mark.parametrize("url", [None, "https://clinic.example/blog/post/"])
def test_a_site_post_renders_every_paragraph_once_in_order_and_no_template_tag(
    name: str, url: str | None
) -> None:
    text, html = all_parts(campaign_of(name, url))
    positions = []
    for opening in PARAGRAPHS[name]:
        assert text.count(opening) == 1, (opening, text)
        positions.append(text.index(opening))
    assert positions == sorted(positions)
    for leftover in LIQUID:
        assert leftover not in text, leftover
        assert leftover not in html, leftover


def test_site_paths_become_absolute_links_against_the_article_address() -> None:
    text, html = all_parts(campaign_of("eleventy-ketamine-faq.md", "https://clinic.example/b/x/"))
    assert "preparation checklist (https://clinic.example/patients/checklist/)" in text
    assert 'href="https://clinic.example/visit/map.pdf"' in html
    assert 'src="https://clinic.example/img/treatment-room.jpg"' in html
    jekyll = resolve_liquid(
        "[a]({{ site.baseurl }}/blog/x/) [b]({{ '/y' | relative_url }}) "
        '[c]({{ "/z/" | url }}) [d]({{ site.url }}{{ site.baseurl }}/w)',
        "https://clinic.example/blog/post/",
    )
    assert jekyll.text == (
        "[a](https://clinic.example/blog/x/) [b](https://clinic.example/y) "
        "[c](https://clinic.example/z/) [d](https://clinic.example/w)"
    )


def test_without_an_address_the_link_goes_its_text_stays_and_a_note_line_says_where() -> None:
    campaign = campaign_of("eleventy-ketamine-faq.md")
    source = campaign.files["02-before-you-arrive.md"]
    assert "Our preparation checklist covers everything else" in source
    assert "[//]: # (dripmail: the link on “preparation checklist” was left out" in source
    text, html = all_parts(campaign)
    assert "dripmail:" not in text and "dripmail:" not in html
    assert "[//]" not in text


def test_includes_embeds_and_shortcodes_with_no_text_are_dropped_and_listed() -> None:
    jekyll = read_article(ARTICLES / "jekyll-sleep-hygiene.md")
    assert jekyll.dropped == (
        "{% include toc.html %}",
        '{% include video.html id="abc123" title="A two-minute wind-down routine" %}',
        '{{ "https://www.youtube.com/watch?v=dQw4w9WgXcQ" | embed: '
        '"Caffeine and sleep, explained" }}',
        "{{ site.title }}",
    )
    assert (jekyll.author, jekyll.date) == ("Dr. Jane Smith", "2024-03-04")
    assert read_article(ARTICLES / "hugo-anxiety-breathing.md").dropped == (
        "{{< youtube w7Ft2ymGmfc >}}",
    )


def test_a_post_quoting_jinja_in_code_shows_it_as_written() -> None:
    campaign = campaign_of("jinja-templates-tutorial.md")
    compile_campaign(campaign)  # before: "No filter named 'format_date'"
    text, html = all_parts(campaign)
    assert "Hello {{ patient.first_name }}," in text
    assert "{% if visit.fasting %}Please do not eat for six hours before.{% endif %}" in text
    assert "Write {{ patient.first_name }} exactly as shown" in text
    assert "Check that every {{ placeholder }} was filled in" in text
    assert "nothing reads {% like this %} in the message" in text
    assert "Hello {{ patient.first_name }}," in html
    assert "{% raw %}" not in text and "{% raw %}" not in html


def test_staff_placeholders_still_work_beside_the_escaped_article_text() -> None:
    campaign = campaign_of("jinja-templates-tutorial.md")
    step = campaign.steps[1]
    files = dict(campaign.files)
    files[step.file] = files[step.file].replace(
        "\n\nA comment starts", "\n\n{{ first_name | default('Friend') }}, a comment starts"
    )
    edited = load_files(files, origin="/tmp/edited")
    rendered = render_sample(edited, step.key, Recipient("p@example.com", "Ana"))
    assert "Ana, a comment starts with {#" in rendered.text
    assert "Ana, a comment starts with <code" in rendered.html


@pytest.mark.parametrize(
    "text",
    [
        "{{ site.title }} and {% include x.html %}",
        "{{{ mustache }}} {% endraw %} {%",
        "{# a note #} and {{ b | upcase }}",
    ],
)
def test_literal_braces_print_exactly_what_was_written(text: str, tmp_path: Path) -> None:
    article = tmp_path / "braces.txt"
    article.write_text(f"Braces\n\nThe text: {text} ends here.\n", encoding="utf-8")
    read = read_article(article)
    campaign = load_files(campaign_files(read, split_article(read)), origin=str(tmp_path))
    rendered = render_sample(campaign, campaign.steps[0].key)
    assert f"The text: {text} ends here." in rendered.text
    assert literal_braces("{{ x }}") == "{% raw %}{{ x }}{% endraw %}"


def test_a_newsletter_and_a_digest_of_site_posts_compile(tmp_path: Path) -> None:
    posts = [read_article(ARTICLES / name) for name in sorted(PARAGRAPHS)]
    posts.append(read_article(ARTICLES / "jinja-templates-tutorial.md"))
    for articles in ([posts[0]], posts):
        files = newsletter_files(articles, url="https://clinic.example/news/")
        campaign = load_files(files, origin=str(tmp_path))
        rendered = render_sample(campaign, "issue")
        assert "%7B%7B" not in rendered.html


def test_reference_style_links_with_site_paths() -> None:
    post = "Read [our guide][guide] and [the map][].\n\n[guide]: {{ site.baseurl }}/guide/\n"
    post += "[the map]: {% link map.md %}\n"
    resolved = resolve_liquid(post, "https://clinic.example/blog/")
    assert "[guide]: https://clinic.example/guide/" in resolved.text
    assert "{%" not in resolved.text and "[the map]" not in resolved.text


def test_an_unclosed_brace_in_a_post_takes_no_paragraph_with_it(tmp_path: Path) -> None:
    post = tmp_path / "post.md"
    post.write_text(
        "---\ntitle: Braces\n---\n\nTemplates open a tag with {{ and nothing else on this "
        "line closes it.\n\nThe next paragraph ends a tag: }} and goes on.\n\n"
        "{% include a.html\n  x=1 %}\n\nThe last paragraph.\n",
        encoding="utf-8",
    )
    article = read_article(post)
    assert article.dropped == ("{% include a.html x=1 %}",)
    campaign = load_files(campaign_files(article, split_article(article)), origin=str(tmp_path))
    text = " ".join(render_sample(campaign, campaign.steps[0].key).text.split())
    assert "open a tag with {{ and nothing else" in text
    assert "The next paragraph ends a tag: }} and goes on." in text
    assert "The last paragraph." in text
