"""The campaign file's `confirm` and `confirm_within`: double opt-in, as the file writes it.

```yaml
confirm: double        # the first email asks the patient to confirm their address
confirm_within: 7d     # unconfirmed sign-ups expire after this (default 7d)
```

`confirm: single` (the default) enrolls at once, as before. What double opt-in does
(the confirmation email, the confirm page, expiry) is campaigns/planning/confirmations.py.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BeforeValidator

from campaigns.planning import schedule

DEFAULT_CONFIRM_WITHIN = "7d"


class ConfirmMode(enum.StrEnum):
    """How a sign-up is confirmed: at once (`single`), or by the patient (`double`)."""

    SINGLE = "single"
    DOUBLE = "double"


def parse_confirm(value: Any) -> ConfirmMode:
    """`single`, `double` (or `none`, an alias of single); anything else is refused."""
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text in ("single", "none"):
        return ConfirmMode.SINGLE
    if text == "double":
        return ConfirmMode.DOUBLE
    raise ValueError(f"{value!r}: write double (confirm by email first) or single")


def parse_confirm_within(value: Any) -> str:
    """A duration (`7d`, `48h`, `2w`) through the one delay parser; at least an hour."""
    delay = schedule.parse_delay(str(value))
    if delay.as_timedelta().total_seconds() < 3600:
        raise ValueError(f"{value!r}: give the patient at least an hour, like 48h or 7d")
    return str(delay)


Confirm = Annotated[ConfirmMode, BeforeValidator(parse_confirm)]
ConfirmWithin = Annotated[str, BeforeValidator(parse_confirm_within)]
