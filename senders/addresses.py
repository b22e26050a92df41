"""Addresses as they go on the wire: IDNA A-label domains, and which need SMTPUTF8.

An internationalised domain always has an ASCII form (its A-label, RFC 5890), so it
goes as that in headers, the SMTP envelope and provider APIs, and any server takes it.
A non-ASCII local part has no ASCII form: it can only go in a UTF-8 message (RFC 6532)
over an SMTP server that offers SMTPUTF8 (RFC 6531); a sender that cannot do that
fails that one message with `NO_SMTPUTF8` as the reason.
"""

from __future__ import annotations

import idna

# The reason a message fails when its address needs SMTPUTF8 and the way out lacks it.
NO_SMTPUTF8 = "the address has a non-ASCII part before the @-sign, which needs SMTPUTF8 (RFC 6531)"


class AddressError(ValueError):
    """An address that cannot be put on the wire at all (the message fails alone)."""


class NeedsSmtpUtf8(AddressError):
    """The address can only go in a UTF-8 message (RFC 6532), which this way out cannot take."""

    def __init__(self) -> None:
        super().__init__(NO_SMTPUTF8)


def wire_address(address: str) -> tuple[str, bool]:
    """(the address with its domain as A-label, whether its local part needs SMTPUTF8).

    Stored addresses are in this form already (planning.contacts.normalise_email);
    a campaign's own From or Reply-To may have a Unicode domain, and older rows too.
    Nothing else is checked here: the SMTP envelope checks what it needs itself.
    """
    if address.isascii():  # nearly every address: nothing to do
        return address, False
    local, at, domain = address.rpartition("@")
    if at and not domain.isascii():
        try:
            # IDNA 2008 with the UTS 46 mapping, as email-validator does: Python's own
            # "idna" codec is IDNA 2003, which maps "faß.de" to "fass.de", another domain.
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise AddressError("the address has a domain that cannot be encoded") from None
    return f"{local}{at}{domain}", not local.isascii()
