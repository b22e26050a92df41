"""Messages that teach: the version, counts that agree, help without runs of spaces, examples."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main
import yaml

import examples
from campaigns.storage.store import head_revision
from cli import app
from tests.unit.test_cli import dripmail


def _commands(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_version_prints_the_installed_version_and_the_schema_it_knows():
    result = dripmail("--version")
    assert result.exit_code == 0, result.output
    pattern = rf"dripmail \d+\.\d+\.\d+\S* \(database schema {head_revision()}\)\n"
    assert re.fullmatch(pattern, result.stdout), result.stdout


def test_no_help_text_has_a_run_of_spaces_inside_its_prose():
    for path in _commands(typer.main.get_command(app)):
        result = dripmail(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        # The description: from the line after "Usage:" to the first section heading.
        prose = result.stdout.split("\n\n", 1)[1]
        prose = re.split(r"^(?:Example|Arguments|Options|Commands):", prose, flags=re.M)[0]
        for line in prose.splitlines():
            assert "  " not in line.strip(), (" ".join(path), line)


def test_split_counts_one_email_in_the_singular(tmp_path: Path):
    result = dripmail(
        "split", str(examples.ARTICLE), "--out", str(tmp_path / "c"),
        "--defaults", str(examples.DEFAULTS), "--emails", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 email; edit them, then: dripmail render" in result.stdout
    assert "1 emails" not in result.stdout


def test_bundled_defaults_do_not_repeat_the_organisation_in_the_postal_address():
    # The footer prints the organisation, then the address: naming it twice reads as a mistake.
    for path in Path(examples.__file__).parent.glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        organisation = data.get("organisation")
        if organisation and data.get("postal_address"):
            assert organisation.lower() not in data["postal_address"].lower(), path.name
