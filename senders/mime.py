"""Message -> RFC 5322 bytes, shared by the file and SMTP senders and `dripmail render`."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime

from .base import Message

# Headers whose value is a list of <URI>s. email.policy folds any header at 78
# characters and turns an unbreakable run into an RFC 2047 encoded word, which
# mail clients ignore for List-Unsubscribe. RFC 5322 allows lines up to 998, so
# these are folded only between URIs and never encoded.
_URI_LIST_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post", "message-id"})


class _Policy(EmailPolicy):
    def fold(self, name: str, value: str) -> str:
        return self._fold_plain(name, value).decode("ascii")

    def fold_binary(self, name: str, value: str) -> bytes:
        return self._fold_plain(name, value)

    def _fold_plain(self, name: str, value: str) -> bytes:
        if name.lower() not in _URI_LIST_HEADERS:
            return super().fold_binary(name, value)
        text = " ".join(str(value).split())
        parts = [part.strip() for part in text.split(",")]
        folded = f",{self.linesep} ".join(parts)
        return f"{name}: {folded}{self.linesep}".encode("ascii")


POLICY = _Policy(linesep="\r\n", max_line_length=78, utf8=False)
FILE_POLICY = POLICY.clone(linesep="\n")

__all__ = ["FILE_POLICY", "POLICY", "build_mime", "to_bytes"]


def build_mime(message: Message) -> EmailMessage:
    """multipart/alternative with the text part first (RFC 2046: least faithful first)."""
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
    mime["MIME-Version"] = "1.0"
    mime.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    mime.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return mime


def to_bytes(message: Message, *, linesep: str = "\r\n") -> bytes:
    policy = POLICY if linesep == "\r\n" else FILE_POLICY
    return build_mime(message).as_bytes(policy=policy)


def _safe(value: str) -> str:
    # A CR or LF in a header value would start a header of the sender's choosing.
    return " ".join(str(value).replace("\r", " ").replace("\n", " ").split())
