"""The engine's error family: every error a user can cause, with where it came from."""

from __future__ import annotations

from pathlib import Path


class DripmailError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 2


class InputError(DripmailError):
    """Bad input (an article, a campaign file, a CSV, an option): names the file, line or field."""

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = str(source) if source is not None else None
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = self.source + (f":{self.line}" if self.line else "") + ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class ConfigurationError(DripmailError):
    """The installation or campaign is not set up to do what was asked (nothing was changed)."""


class NotFoundError(DripmailError):
    """A named campaign, contact or step does not exist."""
