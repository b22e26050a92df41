"""The value types campaign-file models share: addresses, web addresses, one-line text."""

from __future__ import annotations

import re
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict

PLACEHOLDER_EMAIL = "todo@example.invalid"


def _email(value: str) -> str:
    if value == PLACEHOLDER_EMAIL:
        return value
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not an email address ({exc})") from None


def _https_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", value):
        raise ValueError(f"{value!r} is not a web address (start it with https://)")
    return value


def single_line(value: str) -> str:
    """`value` with every run of whitespace, line breaks included, as one space."""
    # CR/LF in a value that becomes a header would start a new header.
    return " ".join(value.split())


EmailAddress = Annotated[str, AfterValidator(_email)]
Url = Annotated[str, AfterValidator(_https_url)]
OneLine = Annotated[str, AfterValidator(single_line)]


class FileModel(BaseModel):
    """A mapping of the campaign file: an unknown key is an error; read once, never changed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
