"""What `dripmail check` says about discreet emails (authoring/privacy_spec.py).

- A standard campaign's subject or preheader holding a sensitive health word (the bundled
  list and `sensitive_words:`): a warning naming the word and suggesting
  `privacy: discreet`; lock screens and shared inboxes show both.
- A neutral text (discreet subject, preheader or name) holding a sensitive word or a
  word of the article's headings: an error for a discreet campaign, a warning for a
  standard one (only the patients who chose discreet emails get those texts).
- A discreet campaign whose organisation's name holds a sensitive word and that names
  no `discreet_name`: a warning saying which name its emails go out under.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from campaigns.authoring.sources import campaign_file, line_containing, step_file
from campaigns.authoring.spec import CAMPAIGN_FILE, Campaign, Step
from campaigns.authoring.translations import each_language
from campaigns.authoring.yamlio import line_of, load_with_lines
from campaigns.rendering.discreet import discreet_name, neutral_texts

__all__ = ["PrivacyFinding", "heading_words", "privacy_findings"]

# Words of a heading that say nothing about its subject: never taken for a health term.
_STOP_TEXT = resources.files(__package__).joinpath("stop-words.txt").read_text("utf-8")
STOP_WORDS = frozenset(
    line.strip() for line in _STOP_TEXT.splitlines() if line.strip() and not line.startswith("#")
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SUGGESTION = "write `privacy: discreet` in campaign.yaml for neutral subjects and preheaders"


@dataclass(frozen=True)
class PrivacyFinding:
    """One thing `check` says about discreet emails (checks.Finding's fields)."""

    severity: Literal["error", "warning"]
    code: str
    message: str
    file: str
    line: int | None = None
    step: str | None = None


def heading_words(campaign: Campaign) -> frozenset[str]:
    """Every word of the article's headings (the steps' subjects and the bodies' `#`
    headings), lower-case, stop words and one- and two-letter words left out."""
    texts: list[str] = []
    for step in campaign.steps:
        texts.append(step.subject)
        texts += _HEADING.findall(step.body)
        for variant in step.variants:
            texts.append(variant.subject)
            texts += _HEADING.findall(variant.body)
    words = (w.lower() for text in texts for w in _WORD.findall(text))
    return frozenset(w for w in words if len(w) > 2 and w not in STOP_WORDS)


def _heading_words_in(text: str, words: frozenset[str]) -> list[str]:
    found = (w for w in _WORD.findall(text) if w.lower() in words)
    return list(dict.fromkeys(found))


def _sensitive_texts(campaign: Campaign, step: Step) -> list[PrivacyFinding]:
    """A standard campaign's subject and preheader: warnings for sensitive words."""
    source = campaign.files.get(step.file, "")
    found = []
    for field, text in (("subject", step.subject), ("preheader", step.preheader)):
        words = campaign.spec.sensitive_words_in(text or "")
        if not words:
            continue
        line = line_containing(source, f"{field}:") if f"{field}:" in _front(source) else None
        said = ", ".join(map(repr, words))
        message = (
            f"{field}: {text!r} holds the health {'word' if len(words) == 1 else 'words'} "
            f"{said}, shown on lock screens and in shared inboxes; {_SUGGESTION}"
        )
        found.append(
            PrivacyFinding(
                "warning",
                "sensitive-subject",
                message,
                step_file(campaign, step),
                line or line_containing(source, text or ""),
                step.key,
            )
        )
    return found


def _front(source: str) -> str:
    """The step file's front matter (empty without one)."""
    if not source.startswith("---"):
        return ""
    return source[3:].split("\n---", 1)[0]


def _neutral_texts(
    campaign: Campaign, step: Step, headings: frozenset[str], lines: dict
) -> list[PrivacyFinding]:
    """The step's neutral texts, as a discreet email would carry them."""
    spec = campaign.spec
    severity: Literal["error", "warning"] = "error" if spec.discreet else "warning"
    subject, preheader = neutral_texts(campaign, step)
    found = []
    for field, text in (
        ("discreet_subject", subject),
        ("discreet_preheader", preheader),
        ("discreet_name", discreet_name(spec)),
    ):
        words = [*spec.sensitive_words_in(text), *_heading_words_in(text, headings)]
        if not words:
            continue
        name = discreet_name(spec)
        from_name = field == "discreet_name" or any(
            w.lower() in name.lower() for w in words
        )  # the words came with the name: choosing the name is the fix
        file, line, where = campaign_file(campaign), None, None
        fix = "discreet_name" if from_name else field
        if not from_name and getattr(step, field) is not None:  # the step's front matter
            file, where = step_file(campaign, step), step.key
            line = line_containing(campaign.files.get(step.file, ""), f"{field}:")
        elif fix == "discreet_name" and not spec.discreet_name:
            line = line_of(lines, ("brand", "organisation"))
        else:
            line = line_of(lines, (fix,))
        said = ", ".join(repr(w) for w in dict.fromkeys(words))
        message = (
            f"{field}: the neutral text {text!r} holds {said}, a health term or a word of "
            f"the article's headings; write a neutral `{fix}:`"
        )
        found.append(PrivacyFinding(severity, "discreet-text", message, file, line, where))
    return found


def privacy_findings(campaign: Campaign) -> list[PrivacyFinding]:
    """Everything `check` says about discreet emails, in each of the campaign's languages."""
    _, lines = load_with_lines(campaign.files[CAMPAIGN_FILE], campaign_file(campaign))
    headings = heading_words(campaign)
    found: list[PrivacyFinding] = []
    spec = campaign.spec
    for spoken in each_language(campaign):
        for step in spoken.steps:
            if not spec.discreet:
                found += _sensitive_texts(spoken, step)
            found += _neutral_texts(spoken, step, headings, lines)
    if spec.discreet and not spec.discreet_name:
        held = spec.sensitive_words_in(spec.brand.organisation)
        if held:
            found.append(
                PrivacyFinding(
                    "warning",
                    "discreet-name",
                    f"brand.organisation {spec.brand.organisation!r} holds "
                    f"{', '.join(map(repr, held))}: discreet emails go out as "
                    f"{discreet_name(spec)!r}; write `discreet_name:` to choose the name",
                    campaign_file(campaign),
                    line_of(lines, ("brand", "organisation")),
                )
            )
    return list(dict.fromkeys(found))
