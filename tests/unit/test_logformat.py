"""DRIPMAIL_LOG_FORMAT: JSON lines a log shipper reads, text by default, anything else refused."""

from __future__ import annotations

import io
import json
import logging

import pytest
from typer.testing import CliRunner

from campaigns.errors import ConfigurationError
from campaigns.logformat import JsonFormatter, check_format, formatter
from cli import app as cli_app


def _record(logger: logging.Logger, stream: io.StringIO, fmt: logging.Formatter) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(fmt)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)


def test_a_json_record_is_one_line_with_time_level_logger_message_and_extra_ids():
    stream = io.StringIO()
    logger = logging.getLogger("dripmail.test.json")
    _record(logger, stream, JsonFormatter())
    logger.warning("delivery %d: put back\nfor later", 42, extra={"delivery_id": 42})
    try:
        raise RuntimeError("provider said no\nsecond line")
    except RuntimeError:
        logger.exception("could not hand off", extra={"campaign_id": 7})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # a newline in a message or a traceback stays inside its record
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "WARNING"
    assert first["logger"] == "dripmail.test.json"
    assert first["message"] == "delivery 42: put back\nfor later"
    assert first["delivery_id"] == 42
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "exc" not in first
    assert second["level"] == "ERROR" and second["campaign_id"] == 7
    assert "RuntimeError: provider said no" in second["exc"]
    assert "Traceback" in second["exc"]


def test_the_default_stays_readable_text():
    stream = io.StringIO()
    logger = logging.getLogger("dripmail.test.text")
    _record(logger, stream, formatter(check_format(None)))
    logger.info("released %d claimed deliveries", 3)
    line = stream.getvalue().strip()
    assert line.endswith("INFO dripmail.test.text: released 3 claimed deliveries")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.mark.parametrize("value", ["JSON", " json ", "Text"])
def test_the_format_name_is_read_whatever_its_case(value):
    assert check_format(value) == value.strip().lower()


def test_an_unknown_log_format_is_one_line_and_exit_2(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIPMAIL_LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError):
        check_format("xml")
    result = CliRunner().invoke(cli_app, ["run", "--once", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: DRIPMAIL_LOG_FORMAT='xml' is not a log format: set it to text or json, or unset it"
    ]
    assert not (tmp_path / "none.db").exists()
