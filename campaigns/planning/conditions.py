"""Whether a contact gets a step with `when:`: the rule, a pure function of plain facts.

`evaluate(condition, facts)` -> Verdict(go, reason). The dispatcher asks it when the
email is due (tags and clicks change after sign-up), with the facts it loaded in bulk
for the batch (planning/facts.py); `dripmail schedule`, the studio and `dripmail plan`
ask it about now. The keys are tried in the order the README lists them and the first
that fails is the reason: a step skipped says why in words staff read in `schedule`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from campaigns.authoring.conditions import StepCondition

# How a skipped delivery's reason is stored (`deliveries.error`), so reports tell a
# condition's skip from a suppression's and show the reason alone.
SKIP_PREFIX = "condition not met: "


@dataclass(frozen=True)
class ContactFacts:
    """What a condition reads of one contact in one campaign, at one moment."""

    tags: frozenset[str] = frozenset()
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)
    # Keys of this enrollment's steps in which the contact clicked a link.
    clicked: frozenset[str] = frozenset()

    @classmethod
    def stored(
        cls, tags: str | None, attributes: str | None, clicked: frozenset[str] = frozenset()
    ) -> ContactFacts:
        """From the contacts row as stored: tags `;a;b;`, attributes a JSON object."""
        return cls(
            frozenset(t for t in (tags or "").split(";") if t),
            parse_attributes(attributes),
            clicked,
        )


class Verdict(NamedTuple):
    """The answer: whether the contact gets the step, and why, in words."""

    go: bool
    reason: str


def parse_attributes(stored: str | None) -> dict[str, str]:
    """A contact's stored attributes (a JSON object of strings, or NULL) as a dict."""
    if not stored:
        return {}
    try:
        value = json.loads(stored)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _same(a: str, b: str) -> bool:
    """Attribute equality as staff mean it: `New` in a CSV is `new` in campaign.yaml."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _listed(tags: tuple[str, ...]) -> str:
    return ", ".join(tags)


def evaluate(condition: StepCondition | None, facts: ContactFacts) -> Verdict:
    """Whether a contact with `facts` gets a step guarded by `condition`, and why."""
    if condition is None:
        return Verdict(True, "no condition")
    held = []
    if condition.tags_any:
        has = [t for t in condition.tags_any if t in facts.tags]
        if not has:
            return Verdict(False, f"has none of the tags {_listed(condition.tags_any)}")
        held.append(f"tags_any [{_listed(condition.tags_any)}] holds (has {_listed(tuple(has))})")
    if condition.tags_none:
        has = [t for t in condition.tags_none if t in facts.tags]
        if has:
            noun = "tag" if len(has) == 1 else "tags"
            return Verdict(False, f"has {noun} {_listed(tuple(has))}")
        held.append(f"tags_none [{_listed(condition.tags_none)}] holds")
    for name, wanted in (condition.attributes or {}).items():
        value = facts.attributes.get(name)
        if value is None or not value.strip():
            return Verdict(False, f"has no {name} (wanted {wanted!r})")
        if not _same(value, wanted):
            return Verdict(False, f"{name} is {value!r}, not {wanted!r}")
        held.append(f"{name} is {wanted!r}")
    if condition.clicked:
        if condition.clicked not in facts.clicked:
            return Verdict(False, f"did not click a link in {condition.clicked}")
        held.append(f"clicked a link in {condition.clicked}")
    if condition.not_clicked:
        if condition.not_clicked in facts.clicked:
            return Verdict(False, f"clicked a link in {condition.not_clicked}")
        held.append(f"did not click a link in {condition.not_clicked}")
    return Verdict(True, "; ".join(held))


def skip_note(reason: str) -> str:
    """What a delivery skipped by a condition stores as its reason."""
    return SKIP_PREFIX + reason


def outlook(condition: StepCondition | None, facts: ContactFacts) -> str:
    """A line for staff views of an email not yet due: what its condition says of the
    contact now (it is decided again when the email is due); "" for no condition."""
    if condition is None:
        return ""
    verdict = evaluate(condition, facts)
    if verdict.go:
        return f"gets it: {verdict.reason} now (decided when due)"
    return f"would be skipped now: {verdict.reason} (decided when due)"


def stored_outcome(status: str, error: str | None) -> str:
    """A line for staff views of an email that came due: `skipped: has tag returning`."""
    if error and error.startswith(SKIP_PREFIX):
        return f"skipped: {error.removeprefix(SKIP_PREFIX)}"
    return ""
