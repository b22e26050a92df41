"""Message -> RFC 5322 bytes, shared by the file and SMTP senders and `dripmail render`.

`to_bytes` writes the message directly: the standard `email` package takes about
4 ms a message, twenty times the cost of personalising it. `build_mime` builds the
same message with the standard package; tests check that both parse to the same
headers and parts.
"""

from __future__ import annotations

import binascii
import codecs
import re
import secrets
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr

from .base import Message

__all__ = ["POLICY", "build_mime", "to_bytes"]

# Headers whose value is a list of <URI>s. email.policy folds any header at 78
# characters and turns an unbreakable run into an RFC 2047 encoded word, which
# mail clients ignore for List-Unsubscribe. RFC 5322 allows lines up to 998, so
# these are folded only between URIs and never encoded.
_URI_LIST_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "message-id"})
_MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters


class _Policy(EmailPolicy):
    def fold(self, name: str, value: str) -> str:
        return self._fold_plain(name, value).decode("ascii")

    def fold_binary(self, name: str, value: str) -> bytes:
        return self._fold_plain(name, value)

    def _fold_plain(self, name: str, value: str) -> bytes:
        if name.lower() not in _URI_LIST_HEADERS:
            return super().fold_binary(name, value)
        return f"{name}: {_fold_uri_list(value, self.linesep)}{self.linesep}".encode("ascii")


POLICY = _Policy(linesep="\r\n", max_line_length=_MAX_LINE, utf8=False)


def build_mime(message: Message) -> EmailMessage:
    """The message as an EmailMessage (the standard package's reference build)."""
    mime = EmailMessage(policy=POLICY)
    mime["From"] = Address(display_name=_safe(message.from_name), addr_spec=message.from_address)
    mime["To"] = (
        Address(display_name=_safe(message.to_name), addr_spec=message.to_address)
        if message.to_name
        else message.to_address
    )
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    mime["Subject"] = _safe(message.subject)
    if message.date is not None:
        mime["Date"] = format_datetime(message.date)
    for name, value in message.headers.items():
        mime[name] = _safe(value)
    mime.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    mime.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return mime


def to_bytes(message: Message, *, linesep: str = "\r\n") -> bytes:
    """multipart/alternative, text part first (RFC 2046: the least faithful part first)."""
    headers = [
        ("From", _mailbox(message.from_name, message.from_address, linesep)),
        ("To", _mailbox(message.to_name, message.to_address, linesep)),
    ]
    if message.reply_to:
        headers.append(("Reply-To", message.reply_to))
    headers.append(("Subject", _safe(message.subject)))
    if message.date is not None:
        headers.append(("Date", format_datetime(message.date)))
    headers += [(name, _safe(value)) for name, value in message.headers.items()]
    # Quoted-printable never writes "=_", so this boundary cannot occur in a part.
    boundary = f"=_dripmail_{secrets.token_hex(8)}"
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    lines = [
        f"{name}: {value}" if name in ("From", "To") else _header(name, value, linesep)
        for name, value in headers
    ]
    lines += ["", f"--{boundary}"]
    head = linesep.join(lines).encode("ascii")
    return b"".join(
        (
            head,
            _part("plain", message.text, linesep),
            f"--{boundary}".encode(),
            _part("html", message.html, linesep),
            f"--{boundary}--{linesep}".encode(),
        )
    )


def _part(subtype: str, content: str, linesep: str) -> bytes:
    sep = linesep.encode()
    body = content.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    # Rendered HTML is ASCII with short lines (render sees to it), so it goes as it is:
    # 7bit needs no encoding at all, where quoted-printable costs more than rendering.
    if body.isascii() and max(map(len, body.split("\n"))) <= 998 and "\0" not in body:
        encoding, payload = "7bit", body.replace("\n", linesep).encode("ascii") + sep
    else:
        encoding, payload = "quoted-printable", _quoted_printable(body, sep) + sep
    head = (
        f'{linesep}Content-Type: text/{subtype}; charset="utf-8"{linesep}'
        f"Content-Transfer-Encoding: {encoding}{linesep}{linesep}"
    ).encode()
    return head + payload


def _qp_escape(error: UnicodeEncodeError) -> tuple[str, int]:
    # Called once a run of non-ASCII characters while the C encoder does the scanning.
    chunk = error.object[error.start : error.end].encode("utf-8", "surrogatepass")
    return "=" + chunk.hex("=").upper(), error.end


codecs.register_error("dripmail.quoted-printable", _qp_escape)
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n"
_CONTROL_BYTES = re.compile(rb"[^\t\n\x20-\x7e]")


def _quoted_printable(text: str, sep: bytes) -> bytes:
    """Quoted-printable (RFC 2045 6.7), lines of at most 76 characters.

    binascii.b2a_qp and a regex over every byte both cost about 0.5 ms for one
    email's HTML; the ASCII encoder with an error handler scans in C. The HTML
    arrives nearly all ASCII (render writes non-ASCII as character references).
    """
    data = text.replace("=", "=3D").encode("ascii", "dripmail.quoted-printable")
    if data.translate(None, _PRINTABLE):  # control characters: rare, so a regex is fine
        data = _CONTROL_BYTES.sub(lambda m: b"=%02X" % m.group()[0], data)
    lines = []
    for line in data.split(b"\n"):
        if line[-1:] in (b" ", b"\t"):  # trailing white space would be stripped in transit
            line = line[:-1] + b"=%02X" % line[-1]
        start, end = 0, len(line)
        while end - start > 76:
            cut = line.rfind(b"=", start + 73, start + 75)  # never split an =XX escape
            cut = start + 75 if cut == -1 else cut
            lines.append(line[start:cut] + b"=")
            start = cut
        lines.append(line[start:] if start else line)
    return sep.join(lines)


def _mailbox(name: str | None, address: str, linesep: str) -> str:
    name = _safe(name) if name else ""
    if not name:
        return address
    if name.isascii():
        return formataddr((name, address))  # quotes specials such as `;` and `,`
    return f"{_encoded_words(name, linesep)} <{address}>"


def _header(name: str, value: str, linesep: str) -> str:
    if name.lower() in _URI_LIST_HEADERS:
        return f"{name}: {_fold_uri_list(value, linesep)}"
    if not value.isascii():
        return f"{name}: {_encoded_words(value, linesep)}"
    return _fold_words(f"{name}: {value}", linesep)


def _encoded_words(text: str, linesep: str) -> str:
    """RFC 2047 B-encoded words, whole characters each, one per folded line.

    Decoders drop the white space between adjacent encoded words, so every space of
    `text` travels inside a word. 40 bytes encode to 54 characters: a word of 66,
    which keeps even "Subject: " plus a word within 78.
    """
    words, chunk = [], b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > 40:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return f"{linesep} ".join(
        f"=?utf-8?b?{binascii.b2a_base64(word, newline=False).decode()}?=" for word in words
    )


def _fold_words(line: str, linesep: str) -> str:
    """Fold an ASCII header at spaces so lines stay within 78 characters where possible."""
    if len(line) <= _MAX_LINE:
        return line
    folded, current = [], ""
    for word in re.split(r"(?= )", line):
        if current and len(current) + len(word) > _MAX_LINE:
            folded.append(current)
            current = word
        else:
            current += word
    folded.append(current)
    return linesep.join(folded)


def _fold_uri_list(value: str, linesep: str) -> str:
    parts = [part.strip() for part in " ".join(str(value).split()).split(",")]
    return f",{linesep} ".join(parts)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _safe(value: str) -> str:
    # A CR or LF in a header value would start a header of the sender's choosing;
    # other control characters have no business in a name or subject either.
    return " ".join(_CONTROL.sub(" ", str(value)).split())
