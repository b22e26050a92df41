"""The body of a console POST: an urlencoded form, or multipart/form-data with files.

Read whole into memory within a limit (64 KiB for a plain form, 5 MiB with files: an
article or a contact file), parsed with the standard library (no python-multipart).
Anything else, or anything over the limit, is refused before a page sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from starlette.requests import Request

__all__ = ["MAX_FORM", "MAX_UPLOAD", "Form", "Upload", "read_form"]

MAX_FORM = 64 * 1024
MAX_UPLOAD = 5 * 1024 * 1024
MAX_FIELDS = 100


@dataclass(frozen=True)
class Upload:
    """One file of a multipart form: its name as the browser gave it, and its bytes."""

    filename: str
    content: bytes
    content_type: str


@dataclass(frozen=True)
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)


async def read_form(request: Request) -> Form | None:
    """The POST body as fields (and files); None when too large or not a form."""
    header = request.headers.get("content-type", "")
    kind = header.split(";")[0].strip().lower()
    limit = MAX_UPLOAD if kind == "multipart/form-data" else MAX_FORM
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    if not body:
        return Form()
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
        except (UnicodeDecodeError, ValueError):
            return None
        return Form(dict(pairs))
    if kind == "multipart/form-data":
        return _multipart(header, body)
    return None


def _multipart(header: str, body: bytes) -> Form | None:
    # The email parser reads MIME multipart: give it the request's Content-Type as the
    # message's own header, then the body.
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + header.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    parts = list(message.iter_parts()) if hasattr(message, "iter_parts") else message.get_payload()
    if not isinstance(parts, list) or len(parts) > MAX_FIELDS:
        return None
    for part in parts:
        if not isinstance(part, Message):
            return None
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = Upload(filename, payload, part.get_content_type())
            continue
        try:
            fields[name] = payload.decode(part.get_content_charset() or "utf-8")
        except (UnicodeDecodeError, LookupError):
            return None
    return Form(fields, files)
