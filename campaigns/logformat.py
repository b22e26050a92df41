"""How dripmail's log lines look: readable text (the default) or one JSON object per line.

DRIPMAIL_LOG_FORMAT=json is for log shippers (journald, Vector, Loki, CloudWatch): each
record is one line holding `time` (ISO 8601, UTC), `level`, `logger`, `message`, any
opaque ids the code passed with `extra=` (a delivery or campaign id, never an address),
and `exc`, the traceback as one string, when there is one. A newline inside a message or
a traceback is escaped by JSON, so a shipper never splits a record.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from campaigns.errors import ConfigurationError
from campaigns.settings import LOG_FORMAT_ENV

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Every attribute a LogRecord has of its own: whatever else a record carries came in
# through `extra=`, and goes into the JSON object as it is.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an id passed as a UUID or a datetime is still written, as text.
        return json.dumps(entry, ensure_ascii=False, default=str)


def check_format(value: str | None) -> str:
    """DRIPMAIL_LOG_FORMAT's value, `text` when unset; anything else is refused."""
    chosen = (value or "text").strip().lower()
    if chosen not in FORMATS:
        raise ConfigurationError(
            f"{LOG_FORMAT_ENV}={value!r} is not a log format: set it to text or json, or unset it"
        )
    return chosen


def formatter(log_format: str, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    """The formatter for `log_format` (checked): text lines with `text_format`, or JSON."""
    if check_format(log_format) == "json":
        return JsonFormatter()
    return logging.Formatter(text_format)


def setup_logging(level: str, log_format: str | None, *, stream: TextIO | None = None) -> None:
    """Log records at `level` and above to `stream` (stderr), in `log_format`.

    logging.basicConfig underneath: a root logger that already has a handler (a test
    runner's, or an earlier command's in the same process) is left as it is.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format or "text"))  # checked before anything changes
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
