"""`dripmail serve` and `dripmail preview` as a server is started: a port in use, the defaults."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli import app as cli_app
from tests.conftest import write_clinic_campaign


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program is listening on (as a second `serve` or a web server would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        yield other.getsockname()[1]


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path, taken_port: int):
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--port", str(taken_port), "--db", str(tmp_path / "x.db")],
        env={"COLUMNS": "200", "DRIPMAIL_LOG_LEVEL": "WARNING"},
    )
    line = one_line_error(result)
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{taken_port}: "), line
    assert "pick another --port" in line


def test_preview_on_a_port_in_use_says_so_in_one_line(tmp_path: Path, taken_port: int):
    folder = write_clinic_campaign(tmp_path / "clinic")
    result = CliRunner().invoke(
        cli_app,
        ["preview", str(folder), "--port", str(taken_port), "--db", str(tmp_path / "x.db")],
        env={"COLUMNS": "200"},
    )
    line = one_line_error(result)
    assert f"cannot listen on 127.0.0.1:{taken_port}" in line


def test_serve_and_preview_default_to_different_ports():
    commands = typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    defaults = {
        name: next(p.default for p in commands[name].params if p.name == "port")
        for name in ("serve", "preview")
    }
    assert defaults == {"serve": 8026, "preview": 8025}
