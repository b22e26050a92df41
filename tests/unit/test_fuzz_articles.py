"""Fuzz: an article file of any content becomes an Article (and emails) or one InputError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.authoring.article import Article
from campaigns.authoring.readers import read_article
from campaigns.authoring.split import split_article
from campaigns.errors import InputError
from tests.unit.fuzz import fuzz_settings, outcome

MARKDOWN = st.lists(
    st.sampled_from(
        [*"#-*_>`[]()!|:\n \t=~<>{}%é", "---\n", "title: x\n", "{% if x %}", "{{ x }}",
        "<div>", "</p>", "\ufeff", "\r\n", "# Title\n", "## Part\n", "1. item\n", "```\n",
        "Some words in a sentence. ", "[link](/path)", "![img](x.png)", "| a | b |\n"]
    ),
    max_size=80,
).map("".join)  # fmt: skip
HTML = st.lists(
    st.sampled_from(
        ["<html>", "<body>", "<article>", "<h1>Title</h1>", "<h2>Part</h2>",
         "<p>Text with a few more words in it.</p>", "<script>x()</script>", "<!--", "-->",
         "<nav>", "</nav>", "<ul><li>a</li></ul>", "<table><tr><td>1</td></tr></table>",
         "<br>", "&amp;", "&#0;", "&#xD800;", "<meta charset='cp1252'>", "é",
         "<![CDATA[", "<?xml version='1.0'?>", "<p>", "<title>T</title>"]
    ),
    max_size=30,
).map("".join)  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("articles")


def read_and_split(path: Path) -> Article:
    article = read_article(path)
    split_article(article)
    return article


@fuzz_settings(max_examples=120, deadline_ms=5000)
@given(
    suffix=st.sampled_from([".txt", ".md", ".html", ".htm", ".markdown", ".pdf", ""]),
    data=st.one_of(
        st.binary(max_size=200),
        MARKDOWN.map(str.encode),
        HTML.map(str.encode),
        st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    ),
)
def test_any_article_file_is_read_and_split_or_refused_in_one_line(folder, suffix, data):
    path = folder / f"article{suffix}"
    path.write_bytes(data)
    result = outcome(lambda: read_and_split(path))
    assert isinstance(result, Article | InputError)
