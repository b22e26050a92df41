"""Message -> RFC 5322 bytes, shared by the file and SMTP senders and `dripmail render`.

`to_bytes` writes the message directly: the standard `email` package takes about
4 ms a message, twenty times the cost of personalising it. `build_mime` builds the
same message with the standard package; tests check that both parse to the same
headers and parts.

Addresses go with their domain as IDNA A-label (senders.addresses). A non-ASCII local
part can only go in a message with UTF-8 headers (RFC 6532), written when the caller
says the way out takes one (`utf8=True`: SMTPUTF8, or a file); otherwise building the
message raises NeedsSmtpUtf8, which fails that one message.

Most of a drip email is the same for every contact, so `to_bytes` keeps header
lines and encoded text lines in bounded caches, and sends the rendered HTML as
7bit without encoding it.
"""

from __future__ import annotations

import binascii
import codecs
import logging
import re
import secrets
from collections.abc import Callable
from datetime import datetime, tzinfo
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr
from typing import TypeVar

from senders.addresses import NeedsSmtpUtf8, wire_address
from senders.base import Message, own_headers

log = logging.getLogger("dripmail.mime")

__all__ = ["POLICY", "build_mime", "to_bytes"]

_K = TypeVar("_K")
_V = TypeVar("_V")

# Headers whose value is a list of <URI>s. email.policy folds any header at 78
# characters and turns an unbreakable run into an RFC 2047 encoded word, which
# mail clients ignore for List-Unsubscribe. RFC 5322 allows lines up to 998, so
# these are folded only between URIs and never encoded.
_URI_LIST_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "message-id"})
_MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters
_MAX_LINE_OCTETS = 998  # RFC 5322 2.1.1 and RFC 2045 2.7: MUST, CRLF excluded


class _Policy(EmailPolicy):
    def fold(self, name: str, value: str) -> str:
        return self._fold_plain(name, value).decode("ascii")

    def fold_binary(self, name: str, value: str) -> bytes:
        return self._fold_plain(name, value)

    def _fold_plain(self, name: str, value: str) -> bytes:
        if name.lower() not in _URI_LIST_HEADERS:
            return super().fold_binary(name, value)
        return f"{name}: {_fold_uri_list(value, self.linesep)}{self.linesep}".encode("ascii")


class _Memo(dict[_K, _V]):
    """`memo[key]` is `func(key)`, kept: most of a campaign's message is the same for all.

    Bounded: at most `size` entries, and only keys that `keep` accepts. Full, it
    empties, so a campaign's constant entries are computed once more; in return a
    hit is a bare dictionary look-up in C, where functools.lru_cache also relinks
    its list, and a miss evicts nothing one by one.
    """

    def __init__(
        self, func: Callable[[_K], _V], size: int, keep: Callable[[_K], bool] | None = None
    ) -> None:
        super().__init__()
        self._func, self._size, self._keep = func, size, keep

    def __missing__(self, key: _K) -> _V:
        value = self._func(key)
        if self._keep is None or self._keep(key):
            if len(self) >= self._size:
                self.clear()
            self[key] = value
        return value


POLICY = _Policy(linesep="\r\n", max_line_length=_MAX_LINE, utf8=False)


def build_mime(message: Message, *, utf8: bool = False) -> EmailMessage:
    """The message as an EmailMessage (the standard package's reference build)."""
    mime = EmailMessage(policy=POLICY.clone(utf8=True) if utf8 else POLICY)
    mime["From"] = _mailbox(message.from_name, _wire(message.from_address, utf8))
    to_address = _wire(message.to_address, utf8)
    mime["To"] = _mailbox(message.to_name, to_address) if message.to_name else to_address
    if message.reply_to:
        mime["Reply-To"] = _reply_to(message.reply_to, utf8)
    mime["Subject"] = _safe(message.subject)
    if message.date is not None:
        mime["Date"] = format_datetime(message.date)
    for name, value in own_headers(message, log):
        mime[name] = _safe(value)
    mime.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    mime.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        # Base64 whatever the type: the file arrives byte for byte.
        mime.add_attachment(
            attachment.data, maintype, subtype or "octet-stream", filename=attachment.filename
        )
    return mime


def to_bytes(message: Message, *, linesep: str = "\r\n", utf8: bool = False) -> bytes:
    """multipart/alternative, text part first (RFC 2046: the least faithful part first).

    `utf8`: the way out takes UTF-8 headers (RFC 6532), so an address with a non-ASCII
    local part is written as it is; without it such an address raises NeedsSmtpUtf8.
    A message with attachments is multipart/mixed, written by the standard package.
    """
    if message.attachments:
        policy = POLICY.clone(linesep=linesep, utf8=utf8)
        return build_mime(message, utf8=utf8).as_bytes(policy=policy)
    head = [
        _MAILBOX_LINES["From", message.from_name, _wire(message.from_address, utf8), linesep],
        _MAILBOX_LINES["To", message.to_name, _wire(message.to_address, utf8), linesep],
    ]
    if message.reply_to:
        reply_to = _reply_to(message.reply_to, utf8)
        # An RFC 6532 address goes as it is: encoded words are not allowed in one.
        head.append(
            _HEADER_LINES["Reply-To", reply_to, linesep]
            if reply_to.isascii()
            else f"Reply-To: {_safe(reply_to)}"
        )
    head.append(_HEADER_LINES["Subject", message.subject, linesep])
    if message.date is not None:
        # Every message of a dispatch batch carries the batch's clock reading. The
        # zone is in the key: 14:00 UTC equals 15:00+01:00 but is written otherwise.
        head.append(_DATE_LINES[message.date, message.date.tzinfo])
    head += [_HEADER_LINES[name, value, linesep] for name, value in own_headers(message, log)]
    boundary = _boundary()
    head += [
        "MIME-Version: 1.0",
        # Folded: with 128 random bits the line would pass 78 characters.
        f'Content-Type: multipart/alternative;{linesep} boundary="{boundary}"',
        "",
    ]
    text_encoding, text = _body(message.text, linesep)
    html_encoding, html = _body(message.html, linesep)
    # RFC 2046 5.1.1: the line break before a delimiter belongs to the delimiter, so
    # each part's content keeps its own final line break.
    delimiter = f"{linesep}--{boundary}".encode("ascii")
    return b"".join(
        (
            # Every header is ASCII but an RFC 6532 address, which `utf8` allowed.
            linesep.join(head).encode("utf-8" if utf8 else "ascii"),
            delimiter,
            _PART_HEADS["plain", text_encoding, linesep],
            text,
            delimiter,
            _PART_HEADS["html", html_encoding, linesep],
            html,
            f"{linesep}--{boundary}--{linesep}".encode("ascii"),
        )
    )


def _mailbox(name: str | None, address: str) -> Address | str:
    """A mailbox for build_mime; as text for an RFC 6532 address, which Address refuses."""
    if address.isascii():
        return Address(display_name=_safe(name or ""), addr_spec=address)
    name = _safe(name or "").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <{address}>' if name else address


def _wire(address: str, utf8: bool) -> str:
    """The address as written in a header: domain as A-label; NeedsSmtpUtf8 if it must be."""
    wire, needs_utf8 = wire_address(address)
    if needs_utf8 and not utf8:
        raise NeedsSmtpUtf8
    return wire


def _reply_to(value: str, utf8: bool) -> str:
    """A bare Reply-To address goes as _wire writes it; a `Name <address>` as given."""
    return value if value.isascii() or "<" in value else _wire(value.strip(), utf8)


def _part_head(key: tuple[str, str, str]) -> bytes:
    """The end of a delimiter line, a part's headers (subtype, encoding) and a blank line."""
    subtype, encoding, linesep = key
    return (
        f'{linesep}Content-Type: text/{subtype}; charset="utf-8"{linesep}'
        f"Content-Transfer-Encoding: {encoding}{linesep}{linesep}"
    ).encode("ascii")


def _boundary() -> str:
    """A boundary that occurs in neither part (RFC 2046 5.1.1).

    Quoted-printable never writes "=_", so the text part cannot hold it. The HTML
    may go as 7bit; it is written before the 128 random bits are drawn, so it holds
    the boundary with odds of 2**-128, and searching it would cost more than the rest.
    """
    return f"=_dripmail_{secrets.token_hex(16)}"


def _body(content: str, linesep: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, payload) of one part; the payload ends with a line break.

    Rendered HTML is ASCII with short lines (render sees to it), so it goes as it is:
    7bit needs no encoding at all, where quoted-printable costs more than rendering.
    """
    if "\r" in content:  # RFC 2045 2.7: CR and LF only as CRLF; a scan is cheaper than replace
        content = content.replace("\r\n", "\n").replace("\r", "\n")
    if not content.endswith("\n"):
        content += "\n"
    sep = linesep.encode("ascii")
    if content.isascii() and "\0" not in content and _lines_within(content, _MAX_LINE_OCTETS):
        data = content.encode("ascii")
        return "7bit", data.replace(b"\n", sep) if sep != b"\n" else data
    return "quoted-printable", _quoted_printable(content, sep)


def _lines_within(text: str, limit: int) -> bool:
    """No line of `text` (split at "\n") is longer than `limit` characters.

    Each step finds the last line break within the next `limit` + 1 characters: about
    one C-level search per `limit` characters instead of a string per line.
    """
    rfind, start, last = text.rfind, 0, len(text) - limit  # the loop runs ~20 times a message
    while start < last:
        newline = rfind("\n", start, start + limit + 1)
        if newline == -1:
            return False
        start = newline + 1
    return True


def _qp_escape(error: UnicodeEncodeError) -> tuple[str, int]:
    # Called once a run of non-ASCII characters while the C encoder does the scanning.
    chunk = error.object[error.start : error.end].encode("utf-8", "surrogatepass")
    return "=" + chunk.hex("=").upper(), error.end


codecs.register_error("dripmail.quoted-printable", _qp_escape)
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t"
_CONTROL_BYTES = re.compile(rb"[^\t\x20-\x7e]")


def _quoted_printable(text: str, sep: bytes) -> bytes:
    """Quoted-printable (RFC 2045 6.7) of `text`, one hard line at a time.

    A drip email's text is the same for every contact but for a name and a few
    links, and RFC 2045 encodes each line on its own, so encoded lines are kept:
    a known line costs a dictionary look-up instead of its encoding.
    """
    data = b"\n".join(map(_QP_LINES.__getitem__, text.split("\n")))
    # Encoded lines hold no "\n" of their own (rule 2 escapes control characters),
    # so every "\n" here is a line break, hard or soft.
    return data.replace(b"\n", sep) if sep != b"\n" else data


def _qp_line(line: str) -> bytes:
    """One line of text as quoted-printable lines of at most 76 characters, joined by "\n".

    binascii.b2a_qp and a regex over every byte both cost about 0.5 ms for one
    email's HTML; the ASCII encoder with an error handler scans in C. `=` goes
    first (rule 1), so the escapes the handler writes are not escaped again.
    """
    data = line.replace("=", "=3D").encode("ascii", "dripmail.quoted-printable")
    if data.translate(None, _PRINTABLE):  # control characters: rare, so a regex is fine
        data = _CONTROL_BYTES.sub(lambda m: b"=%02X" % m.group()[0], data)
    if data[-1:] in (b" ", b"\t"):  # rule 3: trailing white space would be stripped in transit
        data = data[:-1] + b"=%02X" % data[-1]
    if len(data) <= 76:  # rule 5: encoded lines of at most 76 characters
        return data
    pieces, start, end = [], 0, len(data)
    while end - start > 76:
        cut = data.rfind(b"=", start + 73, start + 75)  # never split an =XX escape
        cut = start + 75 if cut == -1 else cut
        pieces.append(data[start:cut] + b"=")  # a soft line break
        start = cut
    pieces.append(data[start:])
    return b"\n".join(pieces)


def _header_line(key: tuple[str, str, str]) -> str:
    """One header field (name, value, line separator), folded."""
    name, value, linesep = key
    value = _safe(value)
    if name.lower() in _URI_LIST_HEADERS:
        return f"{name}: {_fold_uri_list(value, linesep)}"
    return _folded(name, value, linesep) or f"{name}: {_encoded_words(value, linesep)}"


def _mailbox_line(key: tuple[str, str | None, str, str]) -> str:
    """From or To (field, display name, address, line separator)."""
    field, name, address, linesep = key
    name = _safe(name) if name else ""
    if not name:
        return f"{field}: {address}"
    # RFC 5322 3.2.3: a name with specials such as `;` or `,` must be a quoted string
    # (formataddr quotes and escapes it); any other name goes as it is.
    mailbox = formataddr((name, address)) if _SPECIALS.search(name) else f"{name} <{address}>"
    # An RFC 6532 address (UTF-8) goes as it is; only a non-ASCII name needs encoding.
    plain = _folded(field, mailbox, linesep, utf8=name.isascii() and not address.isascii())
    return plain or f"{field}: {_encoded_words(name, linesep)} <{address}>"


def _date_line(key: tuple[datetime, tzinfo | None]) -> str:
    return f"Date: {format_datetime(key[0])}"


def _short_text(key: tuple[str | None, ...]) -> bool:
    # The second item of a header key is its free text (value or display name):
    # memos keep only what fits in a line (RFC 5322 2.1.1), which bounds them.
    return len(key[1] or "") <= _MAX_LINE_OCTETS


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')  # as email.utils.formataddr's
_HEADER_LINES = _Memo(_header_line, 512, _short_text)
_MAILBOX_LINES = _Memo(_mailbox_line, 512, _short_text)
_DATE_LINES = _Memo(_date_line, 64)
_PART_HEADS = _Memo(_part_head, 16)
_QP_LINES = _Memo(_qp_line, 1024, lambda line: len(line) <= _MAX_LINE_OCTETS)


def _folded(field: str, value: str, linesep: str, *, utf8: bool = False) -> str | None:
    """`field: value` folded at spaces; None unless ASCII with every line within 998.

    RFC 5322 2.1.1 caps a line at 998 characters; a longer run without a space can
    only go as encoded words, which break anywhere. `utf8`: the value may hold UTF-8
    that must not be encoded (an RFC 6532 address).
    """
    if not (utf8 or value.isascii()):
        return None
    line = _fold_words(f"{field}: {value}", linesep)
    if len(line) <= _MAX_LINE_OCTETS or all(
        len(part) <= _MAX_LINE_OCTETS for part in line.split(linesep)
    ):
        return line
    return None


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
    value = str(value)
    # The usual value needs nothing: a printable string holds no _CONTROL character
    # and no white space but " ", so only doubled or outer spaces would change.
    if value.isprintable() and "  " not in value and value.strip() == value:
        return value
    return " ".join(_CONTROL.sub(" ", value).split())
