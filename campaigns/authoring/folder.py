"""Drafts -> an editable campaign folder: campaign.yaml and one Markdown file per email.

Split records what it wrote in a manifest, so a later run keeps hand edits: a file
changed since split wrote it stops the run unless forced. `build_campaign_folder` is
`dripmail split` in one call.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from campaigns.authoring.article import Article
from campaigns.authoring.bounded import ARTICLE_LIMIT, parse_size
from campaigns.authoring.defaults import CampaignDefaults, check_defaults, resolve_defaults
from campaigns.authoring.fields import PLACEHOLDER_EMAIL
from campaigns.authoring.liquid import literal_braces
from campaigns.authoring.readers import read_article
from campaigns.authoring.spec import CAMPAIGN_FILE, load_files, load_folder
from campaigns.authoring.split import MAX_EMAILS, Draft, slugify, split_article
from campaigns.errors import InputError
from campaigns.planning import ranges, schedule

MANIFEST = ".split-manifest.json"
DEFAULT_CADENCE = (0, 2, 4, 7, 10, 14)

PLACEHOLDER_ORGANISATION = "TODO: your organisation"
PLACEHOLDER_FROM_NAME = "TODO: sender name"
PLACEHOLDER_POSTAL_ADDRESS = "TODO: postal address (required by law in every email)"


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
    days = days[:count]
    if days and days[-1] > ranges.MAX_DURATION.days:
        raise InputError(
            f"email {len(days)} would come {days[-1]} days after sign-up: that is more "
            f"than {ranges.MAX_DURATION_TEXT}, the longest delay",
            field="cadence",
        )
    return days


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
# greeting        the line every email opens with (default: Hi {{ first_name }} or "Hi
#                 there,"); `greeting: false` for none
# teaser          each email but the last ends "Next, in 2 days: <subject>"; false: none
# Values starting with TODO are placeholders: nobody can be enrolled until they are set.
"""


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
        files[file] = step_text(draft)  # the layout greets (campaign.yaml's `greeting:`)
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


def step_text(draft: Draft) -> str:
    """A step file: front matter (preheader, cta), `# subject`, then the blocks.

    The article's own `{{ }}` and `{% %}` are written inside `{% raw %}`: a step file is
    a template, and only what staff add to it is a placeholder.
    """
    meta: dict[str, str] = {}
    if draft.preheader:
        meta["preheader"] = literal_braces(draft.preheader)
    if draft.cta:
        meta["cta"] = literal_braces(draft.cta)
    front = f"---\n{_dump(meta)}---\n" if meta else ""
    blocks = [literal_braces(block) for block in draft.paragraphs]
    subject = literal_braces(draft.subject)
    body = "\n\n".join([f"# {subject}", *blocks])
    return f"{front}{body}\n"


def write_campaign(
    article: Article,
    drafts: Sequence[Draft],
    out: Path,
    *,
    cadence: Sequence[int] = DEFAULT_CADENCE,
    defaults: CampaignDefaults = CampaignDefaults(),  # noqa: B008 (frozen, so safe to share)
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
    manifest = {"written_by": "dripmail split", "files": {f: _sha256(t) for f, t in files.items()}}
    _write_all(out, {**files, MANIFEST: json.dumps(manifest, indent=2, sort_keys=True) + "\n"})
    for stale in sorted(set(previous) - set(files)):
        (out / stale).unlink(missing_ok=True)  # steps split wrote before and no longer writes
    return [out / relative for relative in files]


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


def _write_all(out: Path, files: Mapping[str, str]) -> None:
    """Write every file into `out`, or none: all go to temporary names first, and only
    then is each renamed into place. A folder that cannot be made or written (under a
    regular file, a read-only place) is one InputError, with what was made removed."""
    made = next((p for p in reversed((out, *out.parents)) if not p.exists()), None)
    staged: list[tuple[Path, Path]] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for relative, text in files.items():
            path = out / relative
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(path))
            temporary = path.with_name(f".{path.name}.tmp")
            staged.append((temporary, path))
            temporary.write_text(text, encoding="utf-8", newline="\n")
    except OSError as exc:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != out else ""
        above = next((p for p in out.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            reason, where = f"{above} is a file, not a folder", ""
        raise InputError(
            f"cannot write the campaign folder here: {reason}{where}", source=out
        ) from None
    for temporary, path in staged:
        os.replace(temporary, path)


# ---------------------------------------------------------------- one call for the CLI


@dataclass(frozen=True)
class SplitResult:
    """What `build_campaign_folder` did: the files written, and what still needs a value."""

    files: list[Path]
    emails: int
    placeholders: list[str]  # campaign fields still holding a TODO placeholder
    dropped: tuple[str, ...] = ()  # the article's site template tags with no text of their own
    author: str | None = None  # the article's byline, when it has one
    date: str | None = None  # the article's date line, when it has one


def parse_cadence(text: str | Sequence[int]) -> list[int]:
    """`"0,2,4,7"` -> [0, 2, 4, 7]; checked like any cadence."""
    if isinstance(text, str):
        parts = [part.strip() for part in text.split(",") if part.strip()]
        # ASCII digits only: `²` is a digit to str.isdigit but not to int().
        if not all(re.fullmatch(r"[0-9]{1,30}", part) for part in parts):
            raise InputError(
                f"{text!r}: write whole days after sign-up, like 0,2,4,7", field="cadence"
            )
        text = [int(part) for part in parts]
    return delays(len(text), text)


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
    url: str | None = None,
    force: bool = False,
    max_size: int | str = ARTICLE_LIMIT,
) -> SplitResult:
    """Read an article, split it and write the campaign folder: `dripmail split` in one call.

    `sender` is "Name <address>" or a bare address; the options given here win over the
    defaults file. `url` is the article's public address: a post's site links join it.
    `max_size` is the largest article read, in bytes or as text like "5MB". `force`
    overwrites hand edits and writes more than MAX_EMAILS (60) emails when `emails`
    does not set the count. Every check runs before anything is written.
    """
    steps = parse_cadence(cadence)
    limit = parse_size(max_size) if isinstance(max_size, str) else max_size
    defaults = resolve_defaults(
        defaults_file, organisation=organisation, sender=sender, postal_address=postal_address
    )
    source = read_article(article, title=title, url=check_article_url(url), max_size=limit)
    drafts = split_article(
        source,
        min_words=min_words,
        max_words=max_words,
        emails=emails,
        minutes=minutes,
        max_emails=None if force else MAX_EMAILS,  # a folder of hundreds nobody reviews
    )
    written = write_campaign(
        source, drafts, Path(out), cadence=steps, defaults=defaults, name=name, force=force
    )
    return SplitResult(
        files=written,
        emails=len(drafts),
        placeholders=load_folder(out).placeholders(),
        dropped=source.dropped,
        author=source.author,
        date=source.date,
    )


def check_article_url(url: str | None) -> str | None:
    """`--url`: the article's public address, an absolute https:// (or http://) URL."""
    if url is None:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InputError(
            f"{url!r} is not a web address: give the article's public address, "
            "like https://clinic.example/blog/better-sleep/",
            field="--url",
        )
    return url.strip()
