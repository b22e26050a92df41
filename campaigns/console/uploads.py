"""Reading a multipart/form-data POST (a file upload) with the standard library.

Only pages that declare an upload limit accept one (`requires(..., upload_limit=N)`);
the guard reads the body up to that limit, parses it here, and checks the CSRF field
from it before the page runs, exactly as for an urlencoded form. Parsing is stdlib
`email` (no python-multipart): a form part is text, a part with a filename is a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

__all__ = ["MAX_FIELDS", "Upload", "parse_multipart"]

MAX_FIELDS = 100


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the browser gave it and its bytes."""

    filename: str
    data: bytes


def _name_of(part: Message) -> tuple[str | None, str | None]:
    disposition = part.get("content-disposition", "")
    if not disposition.lower().startswith("form-data"):
        return None, None
    return part.get_param("name", header="content-disposition"), part.get_filename()


def parse_multipart(
    body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, list[Upload]]] | None:
    """The text fields and files of a multipart body (None when it is not one)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    try:
        message = BytesParser(policy=HTTP).parsebytes(head + body)
    except (ValueError, TypeError, UnicodeError):
        return None
    if not message.is_multipart():
        return None
    fields: dict[str, str] = {}
    files: dict[str, list[Upload]] = {}
    parts = message.get_payload()
    if not isinstance(parts, list) or len(parts) > MAX_FIELDS:
        return None
    for part in parts:
        name, filename = _name_of(part)
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        if filename is not None:
            if filename or data:  # an empty file input sends a part with no name and no bytes
                files.setdefault(name, []).append(Upload(filename.rsplit("/", 1)[-1], data))
            continue
        try:
            fields[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return fields, files
