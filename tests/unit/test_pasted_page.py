"""A web page pasted as plain text splits into the article only (issue 15, point 2):
menus, section labels, byline, date and share lines go; a sign-off is never a heading;
`check` warns about a subject or preheader that a site's menu wrote.
"""

from __future__ import annotations

import re
from pathlib import Path

from campaigns.authoring.checks import check_campaign
from campaigns.authoring.folder import campaign_files
from campaigns.authoring.readers import read_article
from campaigns.authoring.spec import load_files
from campaigns.authoring.split import split_article
from campaigns.settings import Settings

PAGE = Path(__file__).resolve().parents[1] / "fixtures" / "articles" / "pasted-clinic-page.txt"
CHROME = ("Home", "Services", "Blog", "Contact", "Share this", "Print", "Facebook", "©")


def test_a_pasted_page_keeps_the_article_only() -> None:
    article = read_article(PAGE)
    assert article.title == "How Ketamine Therapy Supports Better Sleep"
    assert (article.author, article.date) == ("Dr. Jane Smith", "March 4, 2024")
    assert [section.heading for section in article.sections] == [
        None,
        "Why Sleep Suffers With Depression",
        "How Ketamine Therapy Can Help",
        "Simple Steps You Can Take Tonight",
    ]
    blocks = article.paragraphs
    assert blocks[0].startswith("Many of our patients tell us")
    assert blocks[-3:] == (
        "Warm regards,",
        "Dr. Jane Smith, MD",
        "Dr. Smith is the medical director of Balanced Ketamine and has treated mood "
        "disorders for fifteen years.",
    )
    for block in blocks:
        assert not block.startswith(("By Dr.", "March 4")), block
        for word in CHROME:
            assert not re.match(rf"^(- )?{re.escape(word)}\b", block), block


def test_menu_lines_section_labels_and_bylines_in_other_shapes(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_text(
        "Home\nServices\nBlog\nContact\n\nNews\n\nHome > Blog > Sleep\n\n"
        "Better Sleep After Treatment\n\nBy Dr. Jane Smith | 4 March 2024 · 5 min read\n\n"
        "Most patients sleep better within a few weeks of starting treatment, and there is a "
        "lot you can do at home to help.\n\nKeep a Routine\n\nGo to bed at the same time "
        "every night and get up at the same time every morning.\n\nWith care,\n\n"
        "Jane Smith\n\nJane is a nurse practitioner at the clinic and writes about sleep.\n",
        encoding="utf-8",
    )
    article = read_article(page)
    assert article.title == "Better Sleep After Treatment"
    assert (article.author, article.date) == ("Dr. Jane Smith", "4 March 2024")
    assert [s.heading for s in article.sections] == [None, "Keep a Routine"]
    assert article.paragraphs[0].startswith("Most patients sleep better")
    assert "Jane Smith" in article.paragraphs


def test_check_warns_about_a_menu_word_subject_and_a_menu_preheader(tmp_path: Path) -> None:
    article = read_article(PAGE)
    files = campaign_files(article, split_article(article))
    first = next(name for name in files if name.startswith("01-"))
    files[first] = re.sub(
        r"(?s)^---.*?---\n# [^\n]*",
        "---\npreheader: Home Services Blog Contact\n---\n# Blog",
        files[first],
    )
    report = check_campaign(load_files(files, origin=str(tmp_path)), settings=Settings())
    found = {(f.code, f.line) for f in report.warnings if f.file.endswith(first)}
    assert ("generic-subject", 4) in found
    assert ("menu-preheader", 2) in found
    message = next(f.message for f in report.warnings if f.code == "generic-subject")
    assert message == 'the subject "Blog" says nothing about the email: write what it is about'
    untouched = campaign_files(article, split_article(article))
    clean = check_campaign(load_files(untouched, origin=str(tmp_path)), settings=Settings())
    assert not [f for f in clean.warnings if f.code in ("generic-subject", "menu-preheader")]
