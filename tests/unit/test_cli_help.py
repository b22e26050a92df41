"""`--help` of dripmail and of every command and sub-command, as recorded in tests/fixtures/help.

The help is the CLI's contract with its users: a reshape of the code must not change a word of
it. Each text is made in a fresh `python` whose PYTHONPATH and working folder are the source
tree, with a fixed terminal (COLUMNS=100, TERM=dumb, NO_COLOR=1), so the output is the same on
every machine. Hidden commands are included.

Re-record after an intended change of the help, from this tree:

    DRIPMAIL_RECORD_HELP=1 python -m pytest tests/unit/test_cli_help.py

or from another source tree, e.g. a `git worktree` of an older commit:

    git worktree add /tmp/base 162fb71
    DRIPMAIL_RECORD_HELP=/tmp/base python -m pytest tests/unit/test_cli_help.py
    git worktree remove /tmp/base

Recording rewrites every file of tests/fixtures/help (removing those of gone commands) and the
test then fails, naming what it recorded, so a recording run is never mistaken for a pass.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "tests" / "fixtures" / "help"
TERMINAL = {"COLUMNS": "100", "LINES": "50", "TERM": "dumb", "NO_COLOR": "1"}
# Read on import: tests/conftest.py hides every DRIPMAIL_ variable from the tests themselves.
RECORD_FROM = os.environ.get("DRIPMAIL_RECORD_HELP")

# Runs in the source tree being read: every command path and its --help text, as JSON.
COLLECT = """
import json, sys
import typer.main
from typer.testing import CliRunner
import cli

def walk(command, path):
    yield path
    for name, sub in getattr(command, "commands", {}).items():  # a group's sub-commands
        yield from walk(sub, (*path, name))

root = typer.main.get_command(cli.app)
runner = CliRunner()
texts = {}
for path in walk(root, ()):
    result = runner.invoke(cli.app, [*path, "--help"], prog_name="dripmail")
    if result.exit_code != 0:
        sys.exit(f"dripmail {' '.join(path)} --help: exit {result.exit_code}\\n{result.output}")
    texts[" ".join(("dripmail", *path))] = result.output
json.dump(texts, sys.stdout)
"""


def collect_help(tree: Path) -> dict[str, str]:
    """Every `dripmail ... --help` of the source tree at `tree`, by command line."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DRIPMAIL_", "SENDGRID_", "PYTHON", "FORCE_COLOR", "CLICOLOR"))
    }
    environ |= TERMINAL | {"PYTHONPATH": str(tree)}
    result = subprocess.run(
        [sys.executable, "-c", COLLECT],
        cwd=tree,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def file_name(command: str) -> str:
    """`dripmail db upgrade` -> `dripmail-db-upgrade.txt`."""
    return command.replace(" ", "-") + ".txt"


def record(texts: dict[str, str]) -> None:
    RECORDED.mkdir(parents=True, exist_ok=True)
    for stale in RECORDED.glob("*.txt"):
        stale.unlink()
    for command, text in texts.items():
        (RECORDED / file_name(command)).write_text(text, encoding="utf-8")


def test_every_help_text_is_the_recorded_one() -> None:
    if RECORD_FROM:
        tree = ROOT if RECORD_FROM == "1" else Path(RECORD_FROM).resolve()
        texts = collect_help(tree)
        record(texts)
        pytest.fail(f"recorded {len(texts)} help texts from {tree} in {RECORDED}; run again")

    texts = collect_help(ROOT)
    recorded = {path.name: path.read_text(encoding="utf-8") for path in RECORDED.glob("*.txt")}
    assert recorded, f"nothing recorded in {RECORDED}"
    made = {file_name(command): text for command, text in texts.items()}
    assert sorted(made) == sorted(recorded), "the commands differ from the recorded ones"
    changed = [name for name in sorted(made) if made[name] != recorded[name]]
    diff = "".join(
        line
        for name in changed
        for line in difflib.unified_diff(
            recorded[name].splitlines(keepends=True),
            made[name].splitlines(keepends=True),
            f"recorded/{name}",
            f"now/{name}",
        )
    )
    assert not changed, f"help changed for {changed}:\n{diff}"
