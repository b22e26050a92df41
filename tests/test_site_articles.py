"""Site posts and pasted pages through the real commands: `dripmail split`, `render`,
`check`, `newsletter create` and the preview studio (issue 15, points 1 and 2).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from campaigns.studio.app import create_app
from campaigns.studio.state import Studio
from cli import app
from examples import DEFAULTS

ARTICLES = Path(__file__).resolve().parent / "fixtures" / "articles"
POSTS = (
    "jekyll-sleep-hygiene.md",
    "hugo-anxiety-breathing.md",
    "eleventy-ketamine-faq.md",
    "jinja-templates-tutorial.md",
)
SITE_POSTS = POSTS[:3]
runner = CliRunner()


def dripmail(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


def split(name: str, out: Path, *extra: str):
    result = dripmail(
        "split", str(ARTICLES / name), "--out", str(out), "--defaults", str(DEFAULTS), *extra
    )
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("name", POSTS)
def test_split_render_and_check_a_site_post(name: str, tmp_path: Path) -> None:
    folder = tmp_path / "campaign"
    split(name, folder)
    previews = tmp_path / "previews"
    render = dripmail("render", str(folder), "--out", str(previews), "--sample")
    assert render.exit_code == 0, render.output  # before: "No filter named 'url'" and the like
    check = dripmail("check", str(folder))
    assert check.exit_code == 0, check.output
    assert "0 errors" in check.output
    if name in SITE_POSTS:
        for part in [*previews.glob("*.txt"), *previews.glob("*.html")]:
            text = part.read_text(encoding="utf-8")
            for leftover in ("{{", "{%", "%7B%7B"):
                assert leftover not in text, (part.name, leftover)


def test_split_reports_dropped_tags_once_and_check_names_each_left_out_link(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "campaign"
    result = split("jekyll-sleep-hygiene.md", folder)
    summary = [line for line in result.output.splitlines() if "site template tag" in line]
    assert summary == [
        "left out 4 site template tags with no text of their own (includes, embeds): "
        '{% include toc.html %}, {% include video.html id="abc123" title="A two-minute '
        'wind-down routine" %}, {{ "https://www.youtube.com/watch?v=dQw4w9WgXcQ" | embed: '
        '"Caffeine and sleep, explained" }}, {{ site.title }}'
    ]
    assert "article: by Dr. Jane Smith, 2024-03-04" in result.output
    check = dripmail("check", str(folder))
    warnings = [line for line in check.output.splitlines() if "was left out" in line]
    where = [re.match(r"warning: (\S+?):(\d+):", line).groups() for line in warnings]
    assert [(Path(file).name, int(line)) for file, line in where] == [
        ("01-welcome.md", 9),
        ("02-keep-a-regular-schedule.md", 10),
        ("03-watch-the-light.md", 11),
        ("03-watch-the-light.md", 13),
    ]
    for file, line in where:
        noted = Path(file).read_text(encoding="utf-8").splitlines()[int(line) - 1]
        assert noted.startswith("[//]: # (dripmail: ")
    assert "the link on “guide to sleep schedules” was left out" in check.output


def test_with_url_site_links_become_absolute_and_check_has_nothing_to_say(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "campaign"
    split("eleventy-ketamine-faq.md", folder, "--url", "https://clinic.example/blog/first-visit/")
    step = (folder / "02-before-you-arrive.md").read_text(encoding="utf-8")
    assert "[preparation checklist](https://clinic.example/patients/checklist/)" in step
    assert "![The clinic's calm treatment room](https://clinic.example/img/treatment-room.jpg)" in (
        step
    )
    check = dripmail("check", str(folder))
    assert "was left out" not in check.output, check.output


def test_a_url_that_is_not_a_web_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = dripmail(
        "split", str(ARTICLES / "eleventy-ketamine-faq.md"), "--out", str(tmp_path / "c"),
        "--url", "clinic.example/blog",
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --url: 'clinic.example/blog' is not a web address: give the article's public "
        "address, like https://clinic.example/blog/better-sleep/"
    ]
    assert not (tmp_path / "c").exists()


def test_newsletter_create_from_site_posts_and_a_digest_renders_and_checks(
    tmp_path: Path,
) -> None:
    for articles, out in (([SITE_POSTS[0]], "one"), (POSTS, "digest")):
        folder = tmp_path / out
        result = dripmail(
            "newsletter", "create", *(str(ARTICLES / a) for a in articles),
            "--out", str(folder), "--url", "https://clinic.example/news/",
            "--defaults", str(DEFAULTS),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        previews = tmp_path / f"{out}-previews"
        render = dripmail("render", str(folder), "--out", str(previews), "--sample")
        assert render.exit_code == 0, render.output
        check = dripmail("check", str(folder))
        assert check.exit_code == 0, check.output
        html = (previews / "01-issue.html").read_text(encoding="utf-8")
        assert "%7B%7B" not in html and "{{ site" not in html


def test_the_studio_shows_a_site_post_and_an_article_quoting_templates(tmp_path: Path) -> None:
    for name in ("jekyll-sleep-hygiene.md", "jinja-templates-tutorial.md"):
        folder = tmp_path / name
        split(name, folder)
        studio = Studio(folder, db=f"sqlite:///{tmp_path / 'studio.db'}")
        with TestClient(create_app(studio), base_url="http://127.0.0.1:8025") as client:
            page = client.get("/")
            assert page.status_code == 200
            assert "could not" not in page.text.lower()
            key = studio.snapshot.campaign.steps[-1].key
            text = client.get(f"/email/{key}.txt")
            assert text.status_code == 200, text.text
        assert studio.snapshot.error is None


def test_split_a_pasted_page_names_its_author_and_date_and_writes_the_article_only(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "campaign"
    result = split("pasted-clinic-page.txt", folder)
    assert "article: by Dr. Jane Smith, March 4, 2024" in result.output
    steps = sorted(folder.glob("[0-9]*.md"))
    subjects = [
        re.search(r"^# (.+)$", step.read_text(encoding="utf-8"), re.MULTILINE).group(1)
        for step in steps
    ]
    assert subjects == [
        "How Ketamine Therapy Supports Better Sleep",
        "Why Sleep Suffers With Depression",
        "How Ketamine Therapy Can Help",
        "Simple Steps You Can Take Tonight",
    ]
    welcome = steps[0].read_text(encoding="utf-8")
    assert "Home" not in welcome and "By Dr. Jane Smith" not in welcome
    check = dripmail("check", str(folder))
    assert check.exit_code == 0, check.output
    assert "says nothing about the email" not in check.output
    assert "short capitalised words" not in check.output
