"""An Article -> the emails of a drip campaign -> an editable campaign folder.

One email opens the sequence (the intro), then one per section; short sections merge into
a neighbour, long ones split at a paragraph boundary. `emails=` or `minutes=` instead pack
adjacent sections into a set number of emails of balanced length. No function here ever
splits a paragraph or changes the order of the text.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from campaigns.authoring.article import Article, plain_text, read_article, word_count
from campaigns.authoring.spec import (
    CAMPAIGN_FILE,
    PLACEHOLDER_EMAIL,
    EmailAddress,
    Url,
    load_files,
    load_folder,
)
from campaigns.authoring.yamlio import load_with_lines
from campaigns.errors import InputError
from campaigns.planning import schedule

WORDS_PER_MINUTE = 200
KEY_MAX = 40
PREHEADER_MAX = 100
MANIFEST = ".split-manifest.json"
DEFAULT_CADENCE = (0, 2, 4, 7, 10, 14)

PLACEHOLDER_ORGANISATION = "TODO: your organisation"
PLACEHOLDER_FROM_NAME = "TODO: sender name"
PLACEHOLDER_POSTAL_ADDRESS = "TODO: postal address (required by law in every email)"


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
) -> list[Draft]:
    """Split an article into emails; every paragraph lands in exactly one, in order."""
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
        ranges = _pack(units, _minutes_to_emails(minutes, units, article.source))
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
        ranges = _merge_short(ranges, units, min_words)
        ranges = [part for group in ranges for part in _split_long(group, units, max_words)]
    return _drafts(article, units, ranges)


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


def _split_long(group: _Range, units: Sequence[_Unit], max_words: int) -> list[_Range]:
    """A group over `max_words` becomes the fewest balanced parts that fit, where possible."""
    start, end = group
    weights = [unit.words for unit in units[start:end]]
    total = sum(weights)
    if total <= max_words or len(weights) < 2:
        return [group]
    parts = min(len(weights), math.ceil(total / max_words))
    while True:
        cuts = _balanced(weights, parts)
        bounds = list(zip(cuts, [*cuts[1:], len(weights)], strict=True))
        if parts == len(weights) or max(sum(weights[a:b]) for a, b in bounds) <= max_words:
            return [(start + a, start + b) for a, b in bounds]
        parts += 1


def _email_count(emails: int, units: Sequence[_Unit], source: str) -> int:
    if emails < 1:
        raise InputError("must be 1 or more", source=source, field="emails")
    if emails > len(units):
        raise InputError(
            f"asks for {emails} emails but the article has only {len(units)} paragraphs "
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
    best = _min_max(weights, count)
    bound = max(best, math.floor(best * _SECTION_TOLERANCE))
    inside = [unit.index != 0 for unit in units]  # a cut before unit i splits a section
    cuts = _partition(weights, count, bound, inside)
    return list(zip(cuts, [*cuts[1:], len(units)], strict=True))


def _balanced(weights: Sequence[int], parts: int) -> list[int]:
    """Start indexes of `parts` contiguous parts: smallest longest part, then most even."""
    return _partition(weights, parts, _min_max(weights, parts), [False] * len(weights))


def _min_max(weights: Sequence[int], parts: int) -> int:
    """The smallest possible longest part when cutting `weights` into `parts` runs."""

    def fits(limit: int) -> bool:
        used, total = 1, 0
        for weight in weights:
            if total + weight > limit:
                used, total = used + 1, 0
            total += weight
        return used <= parts

    low, high = max(weights, default=0), sum(weights)
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _partition(
    weights: Sequence[int], parts: int, bound: int, penalised: Sequence[bool]
) -> list[int]:
    """Exactly `parts` runs each ≤ `bound`, fewest penalised cuts, then least sum of squares.

    Dynamic programming over prefixes; both costs add up, so the optimum is exact.
    """
    n = len(weights)
    prefix = [0]
    for weight in weights:
        prefix.append(prefix[-1] + weight)
    inf = (math.inf, math.inf)
    # cost[j][i]: best cost of the first i units in j runs; back[j][i]: where run j starts.
    cost = [[inf] * (n + 1) for _ in range(parts + 1)]
    back = [[0] * (n + 1) for _ in range(parts + 1)]
    cost[0][0] = (0, 0)
    for j in range(1, parts + 1):
        for i in range(j, n - (parts - j) + 1):
            best, where = inf, 0
            for start in range(i - 1, j - 2, -1):
                size = prefix[i] - prefix[start]
                if size > bound:
                    break
                before = cost[j - 1][start]
                if before == inf:
                    continue
                cut = 1 if start > 0 and penalised[start] else 0
                total = (before[0] + cut, before[1] + size * size)
                if total < best:
                    best, where = total, start
            cost[j][i], back[j][i] = best, where
    if cost[parts][n] == inf:  # cannot happen with bound >= the min-max; kept for safety
        raise ValueError("no partition within the bound")
    cuts, i = [], n
    for j in range(parts, 0, -1):
        i = back[j][i]
        cuts.append(i)
    return cuts[::-1]


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


# ---------------------------------------------------------------- defaults


@dataclass(frozen=True)
class CampaignDefaults:
    """Organisation details for a new campaign (from the CLI or a defaults file)."""

    organisation: str | None = None
    from_name: str | None = None
    from_address: str | None = None
    reply_to: str | None = None
    postal_address: str | None = None
    website: str | None = None
    cta_url: str | None = None
    logo_url: str | None = None
    disclaimer: str | None = None
    timezone: str | None = None


_DEFAULT_KEYS = tuple(f.name for f in fields(CampaignDefaults))
_CHECKS: dict[str, Any] = {
    "from_address": TypeAdapter(EmailAddress),
    "reply_to": TypeAdapter(EmailAddress),
    "website": TypeAdapter(Url),
    "cta_url": TypeAdapter(Url),
    "logo_url": TypeAdapter(Url),
}


def load_defaults(path: Path | str) -> CampaignDefaults:
    """Read a defaults file: YAML with the keys of CampaignDefaults, each a text value."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("no such file", source=source) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a defaults file", source=source) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", source=source) from None
    data, lines = load_with_lines(text, source)
    if data is None:
        return CampaignDefaults()
    if not isinstance(data, dict):
        raise InputError("must be key: value lines", source=source, line=1)
    values: dict[str, str | None] = {}
    for key, value in data.items():
        line = lines.get((key,))
        if key not in _DEFAULT_KEYS:
            raise InputError(
                f"unknown key {key!r} (expected one of: {', '.join(_DEFAULT_KEYS)})",
                source=source,
                line=line,
                field=str(key),
            )
        if isinstance(value, (dict, list)):
            raise InputError("must be a single text value", source=source, line=line, field=key)
        values[key] = None if value is None or str(value).strip() == "" else str(value).strip()
    defaults = CampaignDefaults(**values)
    check_defaults(defaults, source=source, lines=lines)
    return defaults


def check_defaults(
    defaults: CampaignDefaults,
    *,
    source: str | None = None,
    lines: Mapping[tuple, int] | None = None,
) -> None:
    """Raise InputError for an address, web address or time zone the campaign would refuse."""
    for key, adapter in _CHECKS.items():
        value = getattr(defaults, key)
        if value is None:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            line = (lines or {}).get((key,))
            raise InputError(message, source=source, line=line, field=key) from None
    if defaults.timezone is not None:
        try:
            schedule.zone(defaults.timezone)
        except ValueError as exc:
            line = (lines or {}).get(("timezone",))
            raise InputError(str(exc), source=source, line=line, field="timezone") from None


# ---------------------------------------------------------------- the campaign folder


class _Quoted(str):
    """Text written in double quotes (times of day: YAML 1.1 reads 17:00 as a number)."""


class _Flow(list):
    """A short list written on one line."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Quoted, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", str(data), '"')
)
_Dumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)


def delays(count: int, cadence: Sequence[int] = DEFAULT_CADENCE) -> list[int]:
    """Days after sign-up for `count` emails; past the cadence, keep adding its last gap."""
    problem = InputError(
        "must be whole days after sign-up in increasing order, like 0,2,4,7", field="cadence"
    )
    try:
        days = [int(day) for day in cadence]
    except (TypeError, ValueError):
        raise problem from None
    if not days or any(day < 0 for day in days) or days != sorted(days):
        raise problem
    gap = days[-1] - days[-2] if len(days) >= 2 else max(days[-1], 1)
    while len(days) < count:
        days.append(days[-1] + gap)
    return days[:count]


_HEADER = """\
# A drip campaign written by `dripmail split` from {source}.
# Edit it freely: split never overwrites your edits unless you pass --force.
#
# name, title     the campaign's id (lower-case, digits, dashes) and its display name
# from, reply_to  who the emails come from and where replies go
# brand           organisation, postal address (the law wants it in every email), logo,
#                 colours, disclaimer
# links           website; cta_url is where the button on the last email leads
# timezone        for contacts whose own time zone is unknown
# send_window     local times (keep them quoted) and days when emails may go out
# sender          `file` writes each email as an .eml file in the outbox folder
# steps           the emails in order: a Markdown file each, and its delay after sign-up
#                 (0d, 2d, 36h, 1w: days and weeks keep the contact's local time of day)
# Values starting with TODO are placeholders: `dripmail run` will not send until they are set.
"""


# The opening email greets the contact by name; staff may edit or remove it.
GREETING = 'Hi {{ first_name | default("there") }},'


def campaign_files(
    article: Article,
    drafts: Sequence[Draft],
    *,
    cadence: Sequence[int] = DEFAULT_CADENCE,
    defaults: CampaignDefaults | None = None,
    name: str | None = None,
) -> dict[str, str]:
    """What write_campaign writes: campaign.yaml and one step file per draft, path -> text."""
    defaults = defaults or CampaignDefaults()
    if not drafts:
        raise InputError("there are no emails to write", source=article.source)
    check_defaults(defaults)
    files: dict[str, str] = {}
    steps = []
    width = max(2, len(str(len(drafts))))
    for number, (draft, day) in enumerate(
        zip(drafts, delays(len(drafts), cadence), strict=True), start=1
    ):
        file = f"{number:0{width}d}-{draft.key}.md"
        files[file] = step_text(draft, greeting=GREETING if number == 1 else None)
        steps.append({"file": file, "delay": f"{day}d"})
    spec: dict[str, Any] = {
        "name": slugify(name or article.title, 63) or "campaign",
        "title": article.title,
        "language": "en",
        "from": {
            "name": defaults.from_name or PLACEHOLDER_FROM_NAME,
            "address": defaults.from_address or PLACEHOLDER_EMAIL,
        },
    }
    if defaults.reply_to:
        spec["reply_to"] = defaults.reply_to
    brand = {
        "organisation": defaults.organisation or PLACEHOLDER_ORGANISATION,
        "postal_address": defaults.postal_address or PLACEHOLDER_POSTAL_ADDRESS,
    }
    if defaults.logo_url:
        brand["logo_url"] = defaults.logo_url
    if defaults.disclaimer:
        brand["disclaimer"] = defaults.disclaimer
    spec["brand"] = brand
    links = {
        key: getattr(defaults, key) for key in ("website", "cta_url") if getattr(defaults, key)
    }
    if links:
        spec["links"] = links
    spec["timezone"] = defaults.timezone or "UTC"
    spec["send_window"] = {
        "start": _Quoted("09:00"),
        "end": _Quoted("17:00"),
        "days": _Flow(schedule.DAY_NAMES),
    }
    spec["sender"] = {"type": "file", "outbox": "outbox"}
    spec["steps"] = steps
    header = _HEADER.format(source=Path(article.source).name)
    if any(draft.cta for draft in drafts) and not defaults.cta_url:
        header += "# The last email has a button (`cta:` in its file): set links.cta_url.\n"
    files[CAMPAIGN_FILE] = header + _dump(spec)
    return {CAMPAIGN_FILE: files.pop(CAMPAIGN_FILE), **files}


def step_text(draft: Draft, *, greeting: str | None = None) -> str:
    """A step file: front matter (preheader, cta), `# subject`, a greeting, then the blocks."""
    meta: dict[str, str] = {}
    if draft.preheader:
        meta["preheader"] = draft.preheader
    if draft.cta:
        meta["cta"] = draft.cta
    front = f"---\n{_dump(meta)}---\n" if meta else ""
    body = "\n\n".join([f"# {draft.subject}", *([greeting] if greeting else []), *draft.paragraphs])
    return f"{front}{body}\n"


def write_campaign(
    article: Article,
    drafts: Sequence[Draft],
    out: Path,
    *,
    cadence: Sequence[int] = DEFAULT_CADENCE,
    defaults: CampaignDefaults = CampaignDefaults(),  # frozen, so safe to share
    name: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Write campaign.yaml and the step files into `out`; return the paths written.

    Hand edits are kept: a file changed since split wrote it (or one split did not write
    but would now overwrite) stops the run, naming it, unless `force`.
    """
    out = Path(out)
    files = campaign_files(article, drafts, cadence=cadence, defaults=defaults, name=name)
    try:  # what the engine will read must load; a failure here is a bug, not bad input
        load_files(files, origin=str(out))
    except InputError as exc:
        raise InputError(f"the campaign split would write is not valid: {exc}") from None
    if out.exists() and not out.is_dir():
        raise InputError("is a file, not a folder", source=out)
    previous = _read_manifest(out)
    if not force:
        conflicts = _hand_edits(out, files, previous)
        if conflicts:
            raise InputError(
                f"edited by hand since split wrote them: {', '.join(conflicts)}; "
                "use --force to overwrite",
                source=out,
            )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for relative, text in files.items():
        _write_atomic(out / relative, text)
        written.append(out / relative)
    for stale in sorted(set(previous) - set(files)):
        (out / stale).unlink(missing_ok=True)  # steps split wrote before and no longer writes
    manifest = {"written_by": "dripmail split", "files": {f: _sha256(t) for f, t in files.items()}}
    _write_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return written


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_manifest(out: Path) -> dict[str, str]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no manifest (or a damaged one): every existing file counts as hand-made
    return {
        str(k): str(v)
        for k, v in files.items()
        if isinstance(k, str) and "/" not in k and "\\" not in k and not k.startswith(".")
    }


def _hand_edits(out: Path, files: Mapping[str, str], previous: Mapping[str, str]) -> list[str]:
    """Files split must not touch: edited since it wrote them, or made by someone else."""
    found = []
    for relative in sorted(set(previous) | set(files), key=_step_order):
        path = out / relative
        if not path.is_file():
            continue
        current = hashlib.sha256(path.read_bytes()).hexdigest()
        if relative in previous:
            if current != previous[relative]:
                found.append(relative)
        elif current != _sha256(files[relative]):
            found.append(relative)
    return found


def _step_order(name: str) -> tuple[int, str]:
    return (0 if name == CAMPAIGN_FILE else 1, name)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8", newline="\n")
    os.replace(temporary, path)


# ---------------------------------------------------------------- one call for the CLI


@dataclass(frozen=True)
class SplitResult:
    """What `build_campaign_folder` did: the files written, and what still needs a value."""

    files: list[Path]
    emails: int
    placeholders: list[str]  # campaign fields still holding a TODO placeholder


def parse_cadence(text: str | Sequence[int]) -> list[int]:
    """`"0,2,4,7"` -> [0, 2, 4, 7]; checked like any cadence."""
    if isinstance(text, str):
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not all(part.isdigit() for part in parts):
            raise InputError(
                f"{text!r}: write whole days after sign-up, like 0,2,4,7", field="cadence"
            )
        text = [int(part) for part in parts]
    return delays(len(text), text)


def resolve_defaults(
    defaults_file: Path | str | None,
    *,
    organisation: str | None = None,
    sender: str | None = None,
    postal_address: str | None = None,
) -> CampaignDefaults:
    """The defaults file (if any) with command-line values winning; `sender` is
    "Name <address>" or a bare address. Checked before anything is written."""
    defaults = load_defaults(defaults_file) if defaults_file else CampaignDefaults()
    overrides: dict[str, str] = {}
    if organisation:
        overrides["organisation"] = organisation
    if postal_address:
        overrides["postal_address"] = postal_address
    if sender:
        display, address = parseaddr(sender)
        if not address or "@" not in address:
            raise InputError(f"{sender!r} is not 'Name <address>' or an address", field="from")
        overrides["from_address"] = address
        if display:
            overrides["from_name"] = display
    defaults = replace(defaults, **overrides)
    check_defaults(defaults)
    return defaults


def build_campaign_folder(
    article: Path | str,
    out: Path | str,
    *,
    cadence: str | Sequence[int] = DEFAULT_CADENCE,
    title: str | None = None,
    name: str | None = None,
    min_words: int = 30,
    max_words: int = 450,
    emails: int | None = None,
    minutes: float | None = None,
    organisation: str | None = None,
    sender: str | None = None,
    postal_address: str | None = None,
    defaults_file: Path | str | None = None,
    force: bool = False,
) -> SplitResult:
    """Read an article, split it and write the campaign folder: `dripmail split` in one call.

    `sender` is "Name <address>" or a bare address; the options given here win over the
    defaults file. Every check runs before anything is written.
    """
    steps = parse_cadence(cadence)
    defaults = resolve_defaults(
        defaults_file, organisation=organisation, sender=sender, postal_address=postal_address
    )
    source = read_article(article, title=title)
    drafts = split_article(
        source, min_words=min_words, max_words=max_words, emails=emails, minutes=minutes
    )
    written = write_campaign(
        source, drafts, Path(out), cadence=steps, defaults=defaults, name=name, force=force
    )
    return SplitResult(
        files=written, emails=len(drafts), placeholders=load_folder(out).placeholders()
    )
