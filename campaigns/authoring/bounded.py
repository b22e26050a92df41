"""Files a user names, read within bounds: a regular file, inside its folder, not too big.

`/dev/zero` or a named pipe given as an article or a campaign file would otherwise be
read until memory runs out, or wait forever for a writer. The kind of file is checked
with stat (which never opens it) and again on a descriptor opened without blocking, and
no more than the limit is ever read, so a file that grows meanwhile is refused too.

`inside` keeps a campaign's files in its folder: a step file that is a symbolic link to
somewhere else would otherwise be published into the store and shown in the studio.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from campaigns.errors import InputError

MB = 1_000_000  # sizes here are decimal, as `ls --si` and file managers show them
CAMPAIGN_FILE_LIMIT = 1 * MB  # campaign.yaml, a step file, a closures .ics, --defaults
ARTICLE_LIMIT = 2 * MB  # the article `split` reads; `--max-size` raises it
ARTICLE_LIMIT_MAX = 100 * MB  # the most `--max-size` may ask for

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "": 1, "k": 1000, "kb": 1000, "m": MB, "mb": MB}


def read_bounded(path: Path | str, *, limit: int, noun: str = "a file", hint: str = "") -> bytes:
    """The bytes of the regular file at `path`, refused (InputError naming it) when it is
    missing, a folder, a device, pipe or socket, or over `limit` bytes.

    `noun` says what was expected ("an article file"); `hint` ends the too-big message
    (how to raise the limit, when there is a way).
    """
    source = str(path)
    try:
        # stat, not open: opening a FIFO for reading waits for a writer.
        kind = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InputError("no such file", source=source) from None
    except PermissionError:
        raise InputError("cannot read the file (permission denied)", source=source) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror})", source=source) from None
    _check_kind(kind, source, noun)
    try:
        # O_NONBLOCK: should the path become a FIFO after the stat, the open still returns.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError("no such file", source=source) from None
    except PermissionError:
        raise InputError("cannot read the file (permission denied)", source=source) from None
    except OSError as exc:
        raise InputError(f"cannot read the file ({exc.strerror})", source=source) from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        _check_kind(info.st_mode, source, noun)
        if info.st_size > limit:
            raise _too_big(limit, source, noun, hint)
        raw = handle.read(limit + 1)
    if len(raw) > limit:  # it grew since the fstat
        raise _too_big(limit, source, noun, hint)
    return raw


def _check_kind(mode: int, source: str, noun: str) -> None:
    if stat.S_ISDIR(mode):
        raise InputError(f"is a folder, not {noun}", source=source)
    if not stat.S_ISREG(mode):
        raise InputError(
            f"is not a regular file (a device, pipe or socket): give {noun}", source=source
        )


def _too_big(limit: int, source: str, noun: str, hint: str) -> InputError:
    message = f"is larger than {size_text(limit)}, the most dripmail reads as {noun}"
    return InputError(message + (f"; {hint}" if hint else ""), source=source)


def size_text(size: int) -> str:
    """2000000 -> "2 MB", 1500000 -> "1.5 MB", 3000 -> "3 KB", 12 -> "12 bytes"."""
    if size >= MB:
        return f"{size / MB:.1f}".removesuffix(".0") + " MB"
    if size >= 1000:
        return f"{size / 1000:.1f}".removesuffix(".0") + " KB"
    return f"{size} bytes"


def parse_size(text: str, *, field: str = "--max-size", most: int = ARTICLE_LIMIT_MAX) -> int:
    """`"5MB"`, `"500KB"`, `"3000000"` (bytes) -> bytes; from 1 KB to `most`."""
    match = _SIZE.match(text)
    if match is None:
        raise InputError(f"{text!r} is not a size: write it like 5MB or 500KB", field=field)
    size = int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
    if not 1000 <= size <= most:
        raise InputError(
            f"{text!r} is out of range: give from 1KB to {size_text(most).replace(' ', '')}",
            field=field,
        )
    return size


def inside(folder: Path, relative: str) -> Path | None:
    """`folder / relative` with every symbolic link followed, when it stays inside
    `folder`; None for an absolute path, a `..`, or a link leading out of the folder."""
    if not relative or "\0" in relative or Path(relative).is_absolute():
        return None
    if ".." in Path(relative).parts:
        return None
    root = Path(folder).resolve()
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root) else None
