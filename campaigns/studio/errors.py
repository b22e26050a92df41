"""Why a campaign does not load or compile, as the studio page shows it: file, line, excerpt."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

from jinja2 import TemplateSyntaxError

import templates
from campaigns.errors import InputError
from campaigns.studio.views import relative_to


@dataclass(frozen=True)
class StudioError:
    """Why the campaign does not load or compile, pointing at the file and line."""

    message: str
    file: str | None = None  # as shown: relative to the campaign folder when inside it
    line: int | None = None
    excerpt: tuple[tuple[int, str], ...] = ()  # (line number, text) around `line`

    @property
    def where(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file


def describe_error(exc: BaseException, folder: Path) -> StudioError:
    """An exception from loading or compiling, as file, line and message for the page."""
    file: str | None = None
    line: int | None = None
    if isinstance(exc, InputError):
        file, line = exc.source, exc.line
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
    elif isinstance(exc, TemplateSyntaxError):
        file, line, message = exc.filename, exc.lineno, f"template syntax: {exc.message}"
    else:
        message = f"{type(exc).__name__}: {exc}"
        # Jinja puts template lines into the traceback; the last one is where it failed.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        if frames:
            file, line = frames[-1].filename, frames[-1].lineno
    return StudioError(message, _display_path(file, folder), line, _excerpt(file, line, folder))


def _display_path(file: str | None, folder: Path) -> str | None:
    if file is None:
        return None
    path = Path(file)
    if path.is_absolute() or path.exists():
        if path.resolve().is_relative_to(templates.DIRECTORY):
            return "templates/" + path.resolve().relative_to(templates.DIRECTORY).as_posix()
        return relative_to(file, folder)
    return file


def _excerpt(file: str | None, line: int | None, folder: Path) -> tuple[tuple[int, str], ...]:
    """The lines around the error, read only from the campaign folder or the layouts."""
    if not file or not line:
        return ()
    path = Path(file).resolve()
    if not (path.is_relative_to(folder) or path.is_relative_to(templates.DIRECTORY)):
        return ()
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return ()
    numbers = range(max(line - 2, 1), min(line + 2, len(lines)) + 1)
    return tuple((number, lines[number - 1]) for number in numbers)
