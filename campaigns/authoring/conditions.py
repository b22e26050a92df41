"""A step's `when:` in campaign.yaml: which contacts get it, as the file writes it.

    steps:
    - file: 03-for-new-patients.md
      delay: 4d
      when:
        tags_none: [returning]            # none of these tags
        tags_any: [sleep, anxiety]        # at least one of these tags
        attributes: {patient_type: new}   # each attribute equal (case and spaces aside)
        clicked: welcome                  # clicked a link in that earlier step
        not_clicked: welcome              # ... or did not

Every key given must hold. The condition is decided when the email is due, not at
sign-up (campaigns/planning/conditions.py is the rule, delivery applies it); this module
is the model, its checks against the other steps, and whether the campaign's sender
could ever report the click a `clicked:` waits for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import field_validator, model_validator

from campaigns.authoring.fields import FileModel
from campaigns.authoring.sender_settings import (
    MailgunSenderSettings,
    PostmarkSenderSettings,
    SendGridSenderSettings,
    SesSenderSettings,
)
from campaigns.authoring.yamlio import line_of
from campaigns.errors import InputError

# An attribute's name as templates and conditions write it (`attributes.patient_type`):
# a letter, then letters, digits or underscores. An import names a column "Patient Type"
# `patient_type` (planning/signups.py).
ATTRIBUTE_NAME = re.compile(r"^[^\W\d_]\w{0,63}$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")  # planning/contacts.py's tag, as stored


def check_attribute_name(name: str) -> str:
    """`name` when it can be an attribute's name; ValueError saying what one is."""
    if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
        raise ValueError(
            f"{name!r} is not an attribute name: start with a letter, then letters, digits "
            "or underscores (an imported column 'Patient Type' is patient_type)"
        )
    return name


class StepCondition(FileModel):
    """`when:`: every key given must hold for the contact when the email is due."""

    tags_any: tuple[str, ...] | None = None
    tags_none: tuple[str, ...] | None = None
    attributes: dict[str, str] | None = None
    clicked: str | None = None
    not_clicked: str | None = None

    @field_validator("tags_any", "tags_none", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("give a list of tags, like [returning]")
        tags = []
        for item in value:
            tag = str(item).strip().lower()
            if isinstance(item, bool) or not _TAG.match(tag):
                raise ValueError(f"{item!r} is not a tag: use letters, digits, '-', '_' or '.'")
            tags.append(tag)
        return tuple(dict.fromkeys(tags))

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise ValueError("give attribute: value pairs, like {patient_type: new}")
        checked = {}
        for name, wanted in value.items():
            check_attribute_name(name)
            if isinstance(wanted, bool) or wanted is None or isinstance(wanted, list | dict):
                # YAML reads an unquoted yes/no/true as a boolean: attributes are text.
                raise ValueError(f"{name}: write the value as text, quoted, like {name}: 'yes'")
            checked[name] = str(wanted).strip()
        return checked

    @model_validator(mode="after")
    def _something(self) -> StepCondition:
        if not any(
            (self.tags_any, self.tags_none, self.attributes, self.clicked, self.not_clicked)
        ):
            raise ValueError(
                "an empty condition: give tags_any, tags_none, attributes, clicked or not_clicked"
            )
        return self

    @property
    def click_steps(self) -> tuple[str, ...]:
        """The step keys whose clicks this condition reads."""
        return tuple(key for key in (self.clicked, self.not_clicked) if key)

    def describe(self) -> str:
        """The condition as one line: `tags_none [returning]; clicked welcome`."""
        parts = []
        if self.tags_any:
            parts.append(f"tags_any [{', '.join(self.tags_any)}]")
        if self.tags_none:
            parts.append(f"tags_none [{', '.join(self.tags_none)}]")
        for name, wanted in (self.attributes or {}).items():
            parts.append(f"{name} = {wanted}")
        if self.clicked:
            parts.append(f"clicked {self.clicked}")
        if self.not_clicked:
            parts.append(f"not_clicked {self.not_clicked}")
        return "; ".join(parts)


def check_step_references(
    steps: Sequence[tuple[str, StepCondition | None]], lines: dict, source: str
) -> None:
    """`clicked:` / `not_clicked:` name an earlier step of the campaign, by its key.

    `steps` are (key, condition) in campaign order; InputError names file, line, field.
    """
    earlier: list[str] = []
    keys = [key for key, _ in steps]
    for index, (key, condition) in enumerate(steps):
        for name in ("clicked", "not_clicked"):
            target = getattr(condition, name) if condition else None
            if target is None or target in earlier:
                continue
            if target == key:
                why = "is this step itself: name an earlier step"
            elif target in keys:
                why = "comes later: a click can only be in an earlier step"
            else:
                why = f"is no step of this campaign (the steps are {', '.join(keys)})"
            raise InputError(
                f"{target!r} {why}",
                source=source,
                line=line_of(lines, ("steps", index, "when", name)),
                field=f"steps[{index}].when.{name}",
            )
        earlier.append(key)


def clicks_unreported(sender: Any) -> str | None:
    """Why a campaign with this `sender:` never learns of a click (None: it can).

    The file, null and SMTP senders have no click events at all; the others report
    clicks only with click tracking on (SES: through a configuration set).
    """
    if isinstance(sender, SendGridSenderSettings | MailgunSenderSettings | PostmarkSenderSettings):
        if sender.track_clicks:
            return None
        return f"click tracking is off for the {sender.type} sender: set sender.track_clicks: true"
    if isinstance(sender, SesSenderSettings):
        if sender.configuration_set:
            return None
        return (
            "SES reports clicks only through a configuration set with click events: "
            "set sender.configuration_set"
        )
    return f"the {sender.type} sender reports no clicks (no click events reach dripmail)"


def click_problems(
    steps: Sequence[tuple[str, StepCondition | None]], sender: Any, lines: dict
) -> list[tuple[str, int | None]]:
    """(message, line) for each `clicked:` / `not_clicked:` that could never be decided
    by a click, since the sender reports none: `dripmail check` refuses them."""
    why = clicks_unreported(sender)
    if why is None:
        return []
    problems = []
    for index, (key, condition) in enumerate(steps):
        for name in ("clicked", "not_clicked"):
            target = getattr(condition, name) if condition else None
            if target is not None:
                problems.append(
                    (
                        f"step {key}: when.{name} {target} can never be decided by a click: {why}",
                        line_of(lines, ("steps", index, "when", name)),
                    )
                )
    return problems
