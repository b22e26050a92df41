"""An Article -> the emails of a drip campaign (Drafts: subject, preheader, blocks, button).

One email opens the sequence (the intro), then one per section; short sections merge into
a neighbour, long ones split at a paragraph boundary. `emails=` or `minutes=` instead pack
adjacent sections into a set number of emails of balanced length. No function here ever
splits a paragraph or changes the order of the text. campaigns.authoring.folder writes the
drafts as a campaign folder.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace

from campaigns.authoring.article import Article, plain_text, word_count
from campaigns.authoring.partition import balanced, fewest_parts, min_max, partition
from campaigns.errors import InputError

WORDS_PER_MINUTE = 200
# More emails than this from one article only when asked for (--emails N, or --force).
MAX_EMAILS = 60
KEY_MAX = 40
PREHEADER_MAX = 100


@dataclass(frozen=True)
class Draft:
    """One email of the sequence, before it is written to its step file."""

    key: str  # slug of the subject, unique, ≤ 40 chars; the intro is "welcome"
    subject: str  # section heading; intro: the article title; a packed email: its first heading
    preheader: str  # first sentence of the body, cut at a word boundary to ≤ 100 chars
    paragraphs: tuple[str, ...]  # Markdown blocks; a packed email adds `## heading` blocks
    cta: str | None  # button label on the last email when the article closes with one


# ---------------------------------------------------------------- splitting


@dataclass(frozen=True)
class _Unit:
    """One paragraph of the article and where it sits."""

    section: int
    index: int  # position within its section; 0 opens the section
    text: str
    words: int


_Range = tuple[int, int]  # [start, end) over the article's units


def split_article(
    article: Article,
    *,
    min_words: int = 30,
    max_words: int = 450,
    emails: int | None = None,
    minutes: float | None = None,
    max_emails: int | None = None,
) -> list[Draft]:
    """Split an article into emails; every paragraph lands in exactly one, in order.

    `max_emails` bounds the count when `emails` does not set it: more is refused (before
    the costly balancing) with a line saying how many it would be.
    """
    units = _units(article)
    if emails is not None and minutes is not None:
        raise InputError(
            "give either a number of emails or minutes of reading, not both",
            source=article.source,
            field="emails",
        )
    if emails is not None:
        ranges = _pack(units, _email_count(emails, units, article.source))
    elif minutes is not None:
        count = _minutes_to_emails(minutes, units, article.source)
        _check_count(count, max_emails, article.source)
        ranges = _pack(units, count)
    else:
        if min_words < 0:
            raise InputError("must be 0 or more", source=article.source, field="min_words")
        if max_words < 1 or max_words <= min_words:
            raise InputError(
                f"must be more than min_words ({min_words})",
                source=article.source,
                field="max_words",
            )
        ranges = _section_ranges(units)
        groups = _merge_short(ranges, units, min_words)
        counts = [_parts_needed(group, units, max_words) for group in groups]
        _check_count(sum(counts), max_emails, article.source)
        ranges = [
            part
            for group, count in zip(groups, counts, strict=True)
            for part in _split_long(group, units, count)
        ]
    return _drafts(article, units, ranges)


def _check_count(count: int, most: int | None, source: str) -> None:
    if most is not None and count > most:
        raise InputError(
            f"would make {count} emails, more than {most}: choose how many with "
            f"--emails N (like --emails 12), or pass --force to write all {count}",
            source=source,
        )


def _units(article: Article) -> list[_Unit]:
    return [
        _Unit(section, index, text, word_count(text))
        for section, part in enumerate(article.sections)
        for index, text in enumerate(part.paragraphs)
    ]


def _words(units: Sequence[_Unit], group: _Range) -> int:
    return sum(unit.words for unit in units[group[0] : group[1]])


def _section_ranges(units: Sequence[_Unit]) -> list[_Range]:
    starts = [i for i, unit in enumerate(units) if unit.index == 0]
    return list(zip(starts, [*starts[1:], len(units)], strict=True))


def _merge_short(ranges: list[_Range], units: Sequence[_Unit], min_words: int) -> list[_Range]:
    """A group under `min_words` joins the following one; the last joins the one before."""
    groups = list(ranges)
    index = 0
    while len(groups) > 1 and index < len(groups):
        if _words(units, groups[index]) >= min_words:
            index += 1
        elif index + 1 < len(groups):
            groups[index : index + 2] = [(groups[index][0], groups[index + 1][1])]
        else:
            groups[index - 1 : index + 1] = [(groups[index - 1][0], groups[index][1])]
            break
    return groups


def _parts_needed(group: _Range, units: Sequence[_Unit], max_words: int) -> int:
    """How many emails a group becomes: the fewest parts of at most `max_words`, or one
    per paragraph when a paragraph alone is longer (a paragraph is never split)."""
    weights = [unit.words for unit in units[group[0] : group[1]]]
    if sum(weights) <= max_words or len(weights) < 2:
        return 1
    if max(weights) > max_words:
        return len(weights)
    return fewest_parts(weights, max_words)


def _split_long(group: _Range, units: Sequence[_Unit], parts: int) -> list[_Range]:
    """A group cut into `parts` balanced runs (`_parts_needed` chose how many)."""
    start, end = group
    if parts == 1:
        return [group]
    weights = [unit.words for unit in units[start:end]]
    cuts = balanced(weights, parts)
    return [(start + a, start + b) for a, b in zip(cuts, [*cuts[1:], len(weights)], strict=True)]


def _email_count(emails: int, units: Sequence[_Unit], source: str) -> int:
    if emails < 1:
        raise InputError("must be 1 or more", source=source, field="emails")
    if emails > len(units):
        raise InputError(
            f"asks for {emails} emails but the article has only {len(units)} "
            f"paragraph{'s' if len(units) != 1 else ''} "
            "(a paragraph is never split)",
            source=source,
            field="emails",
        )
    return emails


def _minutes_to_emails(minutes: float, units: Sequence[_Unit], source: str) -> int:
    if not minutes > 0:
        raise InputError("must be more than 0", source=source, field="minutes")
    total = sum(unit.words for unit in units)
    wanted = max(1, round(total / (WORDS_PER_MINUTE * minutes)))
    return min(wanted, len(units))  # an aim, not an order: stop at one paragraph per email


# A packed email may run this much over the best achievable longest email when that keeps
# whole sections together; "(part 2)" emails are worse for readers than a little imbalance.
_SECTION_TOLERANCE = 1.2


def _pack(units: Sequence[_Unit], count: int) -> list[_Range]:
    """Exactly `count` contiguous emails of balanced length, cutting between sections
    rather than inside one whenever the longest email stays within the tolerance."""
    weights = [unit.words for unit in units]
    best = min_max(weights, count)
    bound = max(best, math.floor(best * _SECTION_TOLERANCE))
    inside = [unit.index != 0 for unit in units]  # a cut before unit i splits a section
    cuts = partition(weights, count, bound, inside)
    return list(zip(cuts, [*cuts[1:], len(units)], strict=True))


# ---------------------------------------------------------------- drafts


def _drafts(article: Article, units: Sequence[_Unit], ranges: Sequence[_Range]) -> list[Draft]:
    drafts: list[Draft] = []
    used: set[str] = set()
    emails_per_section: dict[int, int] = {}
    for start, end in ranges:
        for section in {unit.section for unit in units[start:end]}:
            emails_per_section[section] = emails_per_section.get(section, 0) + 1
        first = units[start]
        heading = article.sections[first.section].heading
        base_subject = heading if heading is not None else article.title
        base_key = slugify(heading) if heading is not None else "welcome"
        part = emails_per_section[first.section]
        if first.index == 0:  # the email opens its section
            subject, key = base_subject, base_key
        else:
            suffix = f"-{part}"
            subject = f"{base_subject} (part {part})"
            key = slugify(base_key, KEY_MAX - len(suffix)) + suffix
        paragraphs = []
        for unit in units[start:end]:
            section_heading = article.sections[unit.section].heading
            if unit.index == 0 and unit is not first and section_heading is not None:
                paragraphs.append(f"## {section_heading}")  # a packed section keeps its heading
            paragraphs.append(unit.text)
        drafts.append(
            Draft(
                key=_unique(key or f"email-{len(drafts) + 1}", used),
                subject=subject,
                preheader=preheader([p for p in paragraphs if not p.startswith("#")]),
                paragraphs=tuple(paragraphs),
                cta=None,
            )
        )
    if drafts:
        label = cta_label(_last_sentence(units[-1].text))
        if label:
            drafts[-1] = replace(drafts[-1], cta=label)
    return drafts


def slugify(text: str, max_length: int = KEY_MAX) -> str:
    """Lower-case ASCII words joined by dashes, cut at a dash to ≤ `max_length`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    ascii_text = re.sub(r"['’]", "", ascii_text.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    if len(slug) > max_length:
        cut = slug[: max_length + 1]
        slug = cut[: cut.rfind("-")] if "-" in cut else slug[:max_length]
    return slug.strip("-")


def _unique(key: str, used: set[str]) -> str:
    candidate, number = key, 1
    while candidate in used:
        number += 1
        suffix = f"-{number}"
        candidate = slugify(key, KEY_MAX - len(suffix)) + suffix
    used.add(candidate)
    return candidate


_ABBREVIATIONS = re.compile(
    r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|St|Sr|Jr|vs|etc|approx|No|Fig|e\.g|i\.e)|\b[A-Z])\.$"
)


def sentences(text: str) -> list[str]:
    """Sentences of plain text: split after . ! ? … before a capital, digit or quote."""
    text = " ".join(text.split())
    out: list[str] = []
    start = 0
    for match in re.finditer(r"[.!?…]+[\"'”’)\]]*(?=\s+[\"“‘(\[]?[A-Z0-9])", text):
        if _ABBREVIATIONS.search(text[start : match.end()]):
            continue
        out.append(text[start : match.end()].strip())
        start = match.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def preheader(paragraphs: Sequence[str]) -> str:
    """The first sentence of the body, cut at a word boundary to ≤ 100 characters."""
    for block in paragraphs:
        found = sentences(plain_text(block))
        if found:
            return _shorten(found[0], PREHEADER_MAX)
    return ""


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]  # one character is kept free for the ellipsis
    cut = cut[: cut.rfind(" ")] if " " in cut else cut[: limit - 1]
    return cut.rstrip(" ,;:–—-") + "…"


def _last_sentence(block: str) -> str:
    found = sentences(plain_text(block))
    return found[-1] if found else ""


_CTA_VERBS = re.compile(
    r"""^(?:please\s+)?(?P<label>
        (?:contact|call|email|e-mail|phone|text|message|visit|reach\ out\ to
          |get\ in\ touch\ with|talk\ (?:to|with)|speak\ (?:to|with))
          \s+(?:us\b|the\s|our\s|your\s).*
      | (?:book|schedule|request|arrange|make|reserve)\s+(?:a|an|your|our)\s.*
      | (?:sign\ up|register|enrol|enroll|get\ started)\b.*
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# Where the button's label ends: the time ("today"), the means ("at 555-0100") or the purpose
# ("to learn more") belong to the sentence, not the button.
_CTA_STOP = re.compile(
    r"\s*(?:[,;:(]|\s[–—-]\s|\s(?:today|now|right\ away|anytime|soon|at|on|by|via|online"
    r"|to|for|if|and|so|who|with|when|where|as)\b).*$",
    re.IGNORECASE | re.VERBOSE,
)


def cta_label(sentence: str) -> str | None:
    """A button label from a closing call to action, or None when the sentence is not one.

    "For more information, contact the Balanced Ketamine team today."
    -> "Contact the Balanced Ketamine team"
    """
    text = sentence.strip().rstrip(".!")
    if not text or text.endswith("?"):
        return None
    # An opening clause such as "For more information," comes before the call itself.
    for candidate in (text, re.sub(r"^[^,.;!?]{1,80},\s*", "", text, count=1)):
        match = _CTA_VERBS.match(candidate)
        if match:
            break
    else:
        return None
    label = match.group("label")
    verb = re.match(r"\S+(?:\s+(?:out\s+to|in\s+touch\s+with|to|with|up|started))?\s+\S+", label)
    head = verb.group(0) if verb else label
    label = head + _CTA_STOP.sub("", label[len(head) :])
    label = label.strip()
    if not label or len(label.split()) > 8:
        return None
    return label[0].upper() + label[1:]
