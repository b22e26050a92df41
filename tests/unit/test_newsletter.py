"""Newsletter issues without a database: a digest of articles, and one long article."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from campaigns.errors import InputError
from campaigns.planning.newsletter import create_newsletter
from cli import app
from examples import DEFAULTS


def test_a_digest_of_three_renders_titles_summaries_links_and_passes_check(issue, tmp_path):
    runner = CliRunner()
    check = runner.invoke(app, ["check", str(issue)])
    assert check.exit_code == 0, check.output
    out = tmp_path / "preview"
    render = runner.invoke(app, ["render", str(issue), "--out", str(out), "--sample"])
    assert render.exit_code == 0, render.output
    html = (out / "01-issue.html").read_text(encoding="utf-8")
    text = (out / "01-issue.txt").read_text(encoding="utf-8")
    for i in (1, 2, 3):
        for part in (html, text):
            assert f"Sleep note {i}" in part
            assert f"Summary {i}: rest well" in part
            assert f"https://example.org/news/#sleep-note-{i}" in part
            assert f"More detail {i}" not in part
    assert "@media" in html


def test_one_long_article_sends_its_opening_and_a_read_the_rest_link(tmp_path):
    article = tmp_path / "long.md"
    paragraphs = [f"Paragraph {i} " + "word " * 80 for i in range(12)]
    article.write_text("---\ntitle: A long read\n---\n\n" + "\n\n".join(paragraphs) + "\n")
    with pytest.raises(InputError, match="--url"):
        create_newsletter([article], tmp_path / "x", defaults_file=DEFAULTS)
    made = create_newsletter(
        [article], tmp_path / "y", url="https://example.org/long", defaults_file=DEFAULTS
    )
    body = made.steps[0].body
    assert "Paragraph 0" in body and "Paragraph 11" not in body
    assert "(https://example.org/long)" in body and "Read the rest" in body
    short = tmp_path / "short.md"
    short.write_text("---\ntitle: Short\n---\n\nAll of it.\n\n## Part two\n\nThe end.\n")
    whole = create_newsletter([short], tmp_path / "z", defaults_file=DEFAULTS).steps[0].body
    assert "All of it." in whole and "The end." in whole and "Read the rest" not in whole
