"""The command line without a database: one clear line and exit 2 for bad input, help examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def dripmail(*args: str, cwd: Path | None = None):
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})
    return result


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"", "the article is empty"), (b"\x00\x01\x02PNG\xff\xfe", "not a text file")],
)
def test_split_refuses_empty_and_binary_articles(tmp_path, content, needle):
    article = tmp_path / "article.txt"
    article.write_bytes(content)
    result = dripmail("split", str(article), "--out", str(tmp_path / "c"))
    assert_one_line_error(result, str(article), needle)
    assert not (tmp_path / "c").exists()


def test_every_command_has_an_example_in_its_help():
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        result = dripmail(name, "--help")
        assert "Example:" in result.stdout, name
