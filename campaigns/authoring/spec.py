"""The campaign file (campaign.yaml) and its step files: schema, load, validate.

A campaign is read from a mapping of relative path -> text, so the same code reads
an editable folder and a version published in the store. Errors carry file:line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from campaigns.authoring.bounded import CAMPAIGN_FILE_LIMIT, inside, read_bounded
from campaigns.authoring.conditions import StepCondition, check_step_references
from campaigns.authoring.confirm_spec import (
    DEFAULT_CONFIRM_WITHIN,
    Confirm,
    ConfirmMode,
    ConfirmWithin,
)
from campaigns.authoring.error_rate import DEFAULT_MAX_ERROR_RATE, ErrorRate
from campaigns.authoring.fields import (
    PLACEHOLDER_EMAIL,
    EmailAddress,
    FileModel,
    OneLine,
    Url,
    single_line,
)
from campaigns.authoring.goals import Goals
from campaigns.authoring.languages import (
    Languages,
    LanguageTag,
    LanguageTexts,
    language_of_file,
    translation_names,
)
from campaigns.authoring.model_keys import is_model, is_plain_union, model_keys, unknown_key
from campaigns.authoring.privacy_spec import (
    NeutralText,
    Privacy,
    PrivacySettings,
    SensitiveWords,
)
from campaigns.authoring.sender_settings import FileSenderSettings, SenderSettings
from campaigns.authoring.timing import check_timing, parse_ics
from campaigns.authoring.variant_spec import (
    Variant,
    VariantList,
    Winner,
    dotted,
    variant_files,
    with_variants,
)
from campaigns.authoring.yamlio import line_of, load_with_lines
from campaigns.errors import InputError
from campaigns.planning import ranges, schedule

CAMPAIGN_FILE = "campaign.yaml"
# The line every email opens with, after its heading, unless `greeting:` says otherwise.
DEFAULT_GREETING = 'Hi {{ first_name | default("there") }},'
PLACEHOLDER = "TODO"
_KEY_PREFIX = re.compile(r"^\d+[a-z]?-")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
# A closed date: read (and its range checked) by the one date parser.
ClosedDate = Annotated[date, BeforeValidator(schedule.parse_date)]


class Mailbox(FileModel):
    name: OneLine
    address: EmailAddress


class Colors(FileModel):
    primary: str = "#0b5394"
    text: str = "#1f2933"
    background: str = "#f4f6f8"
    button_text: str = "#ffffff"

    @field_validator("*")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX.match(value):
            raise ValueError(f"{value!r} is not a colour: write it as #RRGGBB")
        return value.lower()


class Brand(FileModel):
    organisation: OneLine
    postal_address: str
    logo_url: Url | None = None
    colors: Colors = Colors()
    disclaimer: str | None = None


class Links(FileModel):
    website: Url | None = None
    cta_url: Url | None = None
    cta_label: OneLine | None = None
    public_url: Url | None = None
    unsubscribe_mailto: EmailAddress | None = None


class SendWindow(FileModel):
    start: str = "09:00"
    end: str = "17:00"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(schedule.DAY_NAMES)
    )
    # Local dates the window stays shut (clinic holidays): ISO dates, or an .ics file's
    # path relative to the campaign folder (read and published with the version).
    closed: list[ClosedDate] | str = Field(default_factory=list)
    # A frequency cap: no email within this elapsed time of any other to the contact.
    min_gap: str | None = None

    @field_validator("closed", mode="before")
    @classmethod
    def _closed(cls, value: Any) -> Any:
        if isinstance(value, str):
            path = Path(value)
            if path.is_absolute() or ".." in path.parts or path.suffix.lower() != ".ics":
                raise ValueError(
                    f"{value!r}: give a list of ISO dates or an .ics file inside the folder"
                )
        return value

    @field_validator("min_gap", mode="before")
    @classmethod
    def _gap(cls, value: Any) -> str | None:
        if value is None:
            return None
        return str(schedule.parse_delay(str(value)))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> str:
        if isinstance(value, int):  # a YAML 1.1 reader turned 17:00 into 1020
            raise ValueError('write times of day quoted, like "17:00"')
        schedule.parse_clock(value)
        return str(value).strip()

    @model_validator(mode="after")
    def _order(self) -> SendWindow:
        self.window()
        return self

    def window(self, closed: frozenset[date] | None = None) -> schedule.Window:
        """The window; `closed` replaces the listed dates (an .ics file's, once read)."""
        if closed is None:
            closed = frozenset(self.closed) if isinstance(self.closed, list) else frozenset()
        return schedule.Window(
            start=schedule.parse_clock(self.start),
            end=schedule.parse_clock(self.end),
            days=frozenset(schedule.DAY_NAMES.index(day) for day in self.days),
            closed=closed,
        )

    @property
    def gap(self) -> timedelta:
        """`min_gap` as elapsed time (zero when unset)."""
        if self.min_gap is None:
            return timedelta(0)
        return schedule.parse_delay(self.min_gap).as_timedelta()


class StepRef(FileModel):
    file: str
    delay: str
    when: StepCondition | None = None  # who gets it, decided when due (authoring/conditions.py)
    # A/B variants of this email and how one wins (authoring/variant_spec.py).
    variants: VariantList = Field(default_factory=list)
    winner: Winner | None = None

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> str:
        return str(schedule.parse_delay(str(value)))

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        path = Path(value)
        if path.is_absolute() or ".." in path.parts or path.suffix.lower() not in (".md", ".txt"):
            raise ValueError(f"{value!r} must be a .md file inside the campaign folder")
        return value

    @property
    def key(self) -> str:
        return step_key(self.file)


class CampaignSpec(FileModel, PrivacySettings):
    name: str
    title: OneLine | None = None
    language: LanguageTag = "en"
    # Every language the campaign is written in (authoring/languages.py); default: language.
    languages: Languages = Field(default_factory=list)
    translations: dict[LanguageTag, LanguageTexts] = Field(default_factory=dict)
    from_: Mailbox = Field(alias="from")
    reply_to: EmailAddress | None = None
    brand: Brand
    links: Links = Links()
    timezone: str = "UTC"
    send_window: SendWindow = SendWindow()
    sender: SenderSettings = FileSenderSettings()
    steps: list[StepRef] = Field(min_length=1)
    # "newsletter": one email broadcast to tagged contacts (campaigns/newsletter.py).
    kind: Literal["drip", "newsletter"] = "drip"
    # The line each email opens with (placeholders allowed); false: none.
    greeting: str | None = DEFAULT_GREETING
    # Each email but the last ends with a line naming the next and when it comes.
    teaser: bool = True
    # Failed or lost sends above this share of the last 200 pause it (delivery/health_rules.py).
    max_error_rate: ErrorRate = DEFAULT_MAX_ERROR_RATE
    # Events that end a contact's sequence (campaigns/authoring/goals.py).
    goal: Goals = ()
    # Double opt-in: sequence only once confirmed (campaigns/authoring/confirm_spec.py).
    confirm: Confirm = ConfirmMode.SINGLE
    confirm_within: ConfirmWithin = DEFAULT_CONFIRM_WITHIN
    # Discreet emails: neutral subjects and From name (authoring/privacy_spec.py).
    privacy: Privacy = "standard"
    discreet_name: NeutralText | None = None
    discreet_subject: NeutralText | None = None
    discreet_preheader: NeutralText | None = None
    sensitive_words: SensitiveWords = Field(default_factory=list)

    @field_validator("greeting", mode="before")
    @classmethod
    def _greeting(cls, value: Any) -> str | None:
        if value is False:
            return None
        if value is True:
            return DEFAULT_GREETING
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                'write the line each email opens with, like "Hello {{ first_name | '
                "default('there') }},\", or false for none"
            )
        return single_line(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: use lower-case letters, digits and dashes")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        schedule.zone(value)
        return value

    @field_validator("steps")
    @classmethod
    def _count(cls, value: list[StepRef]) -> list[StepRef]:
        if len(value) > ranges.MAX_STEPS:
            raise ValueError(
                f"{len(value)} emails: a campaign has at most {ranges.MAX_STEPS}; "
                "make the rest a second campaign"
            )
        return value

    @model_validator(mode="after")
    def _unique_keys(self) -> CampaignSpec:
        seen: set[str] = set()
        for step in self.steps:
            if step.key in seen:
                raise ValueError(f"two steps have the key {step.key!r}; rename one file")
            seen.add(step.key)
        return self


def step_key(file_name: str) -> str:
    """`03-physical-health.md` -> `physical-health`: stable across reordering.

    A translation (`03-physical-health.es.md`) has its step's key."""
    stem = Path((language_of_file(file_name) or (file_name,))[0]).stem
    return _KEY_PREFIX.sub("", stem) or stem


@dataclass(frozen=True)
class Step:
    """One email of the sequence: its source Markdown and what its front matter says."""

    key: str
    file: str
    delay: schedule.Delay
    position: int  # 1-based
    subject: str
    preheader: str | None
    cta: str | None  # a button label, linking to links.cta_url
    body: str  # Markdown, without front matter
    body_line: int  # the file line where `body` starts
    when: StepCondition | None = field(default=None, compare=False)  # `when:`, if any
    variants: tuple[Variant, ...] = ()  # A/B variants (authoring/variant_spec.py)
    winner: Winner | None = None
    discreet_subject: str | None = None  # front matter: this email's neutral texts
    discreet_preheader: str | None = None


@dataclass(frozen=True)
class Campaign:
    """A validated campaign: spec, steps in order, and the files it was read from."""

    spec: CampaignSpec
    steps: tuple[Step, ...]
    files: Mapping[str, str] = field(repr=False)
    origin: str = ""
    closed: frozenset[date] = frozenset()  # every closed date, from the list or the .ics

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def version(self) -> str:
        """Content hash of the campaign file and every file it references."""
        return content_hash(self.files)

    @cached_property
    def window(self) -> schedule.Window:
        return self.spec.send_window.window(self.closed)

    @property
    def min_gap(self) -> timedelta:
        return self.spec.send_window.gap

    def step(self, key: str) -> Step:
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(key)

    def placeholders(self) -> list[str]:
        """Fields still holding what `split` wrote for want of a real value."""
        found = []
        if self.spec.brand.organisation.startswith(PLACEHOLDER):
            found.append("brand.organisation")
        if self.spec.brand.postal_address.strip().startswith(PLACEHOLDER):
            found.append("brand.postal_address")
        if self.spec.from_.address == PLACEHOLDER_EMAIL:
            found.append("from.address")
        if self.spec.from_.name.startswith(PLACEHOLDER):
            found.append("from.name")
        return found


def content_hash(files: Mapping[str, str]) -> str:
    blob = json.dumps(sorted(files.items()), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_folder(folder: Path) -> dict[str, str]:
    """campaign.yaml and every step file it names, as relative path -> text."""
    folder = Path(folder)
    spec_path = folder / CAMPAIGN_FILE if folder.is_dir() else folder
    files = {CAMPAIGN_FILE: _read_text(spec_path)}
    data, lines = load_with_lines(files[CAMPAIGN_FILE], str(spec_path))
    steps = data.get("steps") if isinstance(data, dict) else None
    for index, item in enumerate(steps if isinstance(steps, list) else []):
        name = item.get("file") if isinstance(item, dict) else None
        if isinstance(name, str) and name not in files:
            files[name] = _referenced(
                spec_path, name, line_of(lines, ("steps", index, "file")), f"steps[{index}].file"
            )
        for at, name in variant_files(item):
            if name not in files:
                where = ("steps", index, "variants", at, "file")
                files[name] = _referenced(spec_path, name, line_of(lines, where), dotted(where))
    listed = data.get("languages") if isinstance(data, dict) else None
    named = [n for n in list(files) if n != CAMPAIGN_FILE]
    for name in translation_names(listed, named):
        if (spec_path.parent / name).is_file() and inside(spec_path.parent, name) is not None:
            files[name] = _read_text(spec_path.parent / name)  # a translation beside its step
    window = data.get("send_window") if isinstance(data, dict) else None
    closed = window.get("closed") if isinstance(window, dict) else None
    if isinstance(closed, str) and closed not in files:
        files[closed] = _referenced(
            spec_path, closed, line_of(lines, ("send_window", "closed")), "send_window.closed"
        )
    return files


def _referenced(spec_path: Path, name: str, line: int | None, field: str) -> str:
    """The text of a file campaign.yaml names (a step, a closures .ics), beside it."""
    if inside(spec_path.parent, name) is None:
        raise InputError(
            f"{name!r} leads outside the campaign folder {spec_path.parent}: keep the file "
            "itself in the folder, not a link to one elsewhere",
            source=spec_path,
            line=line,
            field=field,
        )
    path = spec_path.parent / name
    if not path.is_file():
        raise InputError(
            f"no such file {name!r} in {spec_path.parent}", source=spec_path, line=line, field=field
        )
    return _read_text(path)


def _read_text(path: Path) -> str:
    raw = read_bounded(path, limit=CAMPAIGN_FILE_LIMIT)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", source=path) from None


def load_folder(folder: Path | str) -> Campaign:
    """Read and validate the campaign in `folder` (or the campaign.yaml path given)."""
    folder = Path(folder)
    base = folder if folder.is_dir() else folder.parent
    if not folder.exists():
        raise InputError("no such campaign folder", source=folder)
    if folder.is_dir() and not (folder / CAMPAIGN_FILE).is_file():
        raise InputError(f"no {CAMPAIGN_FILE} here (run `dripmail split` first)", source=folder)
    return load_files(read_folder(folder), origin=str(base))


def load_files(files: Mapping[str, str], origin: str = "") -> Campaign:
    """Validate a campaign from its files (relative path -> text)."""
    source = str(Path(origin) / CAMPAIGN_FILE) if origin else CAMPAIGN_FILE
    data, lines = load_with_lines(files[CAMPAIGN_FILE], source)
    if not isinstance(data, dict):
        raise InputError("the campaign file must be a mapping of keys", source=source, line=1)
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, lines, source) from None
    steps = []
    for position, ref in enumerate(spec.steps, start=1):
        step_source = str(Path(origin) / ref.file) if origin else ref.file
        if ref.file not in files:
            raise InputError(
                f"no such file {ref.file!r}",
                source=source,
                line=line_of(lines, ("steps", position - 1, "file")),
                field=f"steps[{position - 1}].file",
            )
        step = parse_step(files[ref.file], ref, position, step_source)
        parse = partial(parse_step, ref=ref, position=position)
        steps.append(with_variants(step, ref, files, parse, origin=origin, lines=lines))
    check_step_references([(ref.key, ref.when) for ref in spec.steps], lines, source)
    closed_ref = spec.send_window.closed
    if isinstance(closed_ref, str):
        if closed_ref not in files:
            raise InputError(
                f"no such file {closed_ref!r}",
                source=source,
                line=line_of(lines, ("send_window", "closed")),
                field="send_window.closed",
            )
        ics_source = str(Path(origin) / closed_ref) if origin else closed_ref
        closed = parse_ics(files[closed_ref], ics_source)
    else:
        closed = frozenset(closed_ref)
    campaign = Campaign(
        spec=spec, steps=tuple(steps), files=dict(files), origin=origin, closed=closed
    )
    # What enroll will plan, checked here: `check`, `enroll` and `run` all load through
    # this function, so a campaign `check` passes is one enroll can plan.
    check_timing(
        [step.delay for step in steps],
        campaign.window,
        spec.timezone,
        campaign.min_gap,
        source=source,
        line=line_of(lines, ("send_window", "closed")),
    )
    return campaign


def _first_error(exc: ValidationError, lines: dict, source: str) -> InputError:
    found = exc.errors()
    # A misspelt key (organization) also leaves the key it meant missing: name the cause.
    error = next((e for e in found if e["type"] == "extra_forbidden"), found[0])
    loc, _ = _walk(tuple(error["loc"]))
    if error["type"] == "extra_forbidden":
        _, parent = _walk(tuple(error["loc"])[:-1])
        message = unknown_key(str(loc[-1]), model_keys(parent))
    elif error["type"] == "missing":
        message = "required"
    elif error["type"] == "union_tag_invalid":
        # A `type` naming none of a union's models (sender.type): said as a Literal would.
        loc = (*loc, error["ctx"]["discriminator"].strip("'"))
        head, _, last = error["ctx"]["expected_tags"].rpartition(", ")
        message = f"Input should be {head} or {last}"
    else:
        message = error["msg"].removeprefix("Value error, ")
    name = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    return InputError(message, source=source, line=line_of(lines, loc), field=name or None)


def _walk(loc: tuple) -> tuple[tuple, Any]:
    """`loc` as campaign.yaml spells it, and the type of the field it ends in.

    After a discriminated union pydantic names the model it tried (`sender.smtp.port`):
    that name is no key of the file, so it is dropped (`sender.port`).
    """
    model: Any = CampaignSpec
    members: dict[Any, Any] | None = None
    path: list = []
    for part in loc:
        if members is not None:
            model, members = members.get(part), None
            continue
        path.append(part)
        if isinstance(part, int):
            continue
        fields = model.model_fields if is_model(model) else {}
        info = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if info is None:
            model = None
            continue
        inner = getattr(info.annotation, "__args__", None)
        model = inner[0] if inner and isinstance(inner[0], type) else info.annotation
        if isinstance(info.discriminator, str):
            members = {m.model_fields[info.discriminator].default: m for m in inner or ()}
        elif is_plain_union(info.annotation):
            # A union of two kinds of value (closed: dates or an .ics file): pydantic names
            # the kind it tried (`list[date]`), which is no key of the file either.
            members = {}
    return tuple(path), model


_DISCREET_KEYS = ("discreet_subject", "discreet_preheader")
_FRONT_MATTER_KEYS = ["subject", "preheader", "cta", "discreet_subject", "discreet_preheader"]


def parse_step(
    text: str, ref: StepRef, position: int, source: str, *, subject: str | None = None
) -> Step:
    """A step file: optional `---` front matter (subject, preheader, cta), then Markdown.

    `subject` is what a file without its own subject gets (a variant's, from campaign.yaml).
    """
    body, meta, body_line = text, {}, 1
    if text.startswith("---"):
        end = re.search(r"^---\s*$", text[3:], flags=re.MULTILINE)
        if end is None:
            raise InputError("front matter opened with --- is never closed", source=source, line=1)
        header = text[3 : 3 + end.start()]
        body = text[3 + end.end() :].lstrip("\n")
        body_line = text[: len(text) - len(body)].count("\n") + 1
        meta, lines = load_with_lines(header, source)
        meta = meta or {}
        if not isinstance(meta, dict):
            raise InputError("front matter must be key: value lines", source=source, line=2)
        for key in meta:
            if key not in _FRONT_MATTER_KEYS:
                raise InputError(
                    unknown_key(str(key), _FRONT_MATTER_KEYS),
                    source=source,
                    line=lines.get((key,)),
                    field=str(key),
                )
    subject = meta.get("subject") or subject
    if not subject:
        heading = re.search(r"^# +(.+?)\s*#*\s*$", body, flags=re.MULTILINE)
        if heading is None:
            raise InputError(
                "no subject: add `subject:` front matter or a `# ` heading", source=source
            )
        subject = heading.group(1)
    if not body.strip():
        raise InputError("the email has no text", source=source)
    return Step(
        key=ref.key,
        file=ref.file,
        delay=schedule.parse_delay(ref.delay),
        position=position,
        subject=single_line(str(subject)),
        preheader=single_line(str(meta["preheader"])) if meta.get("preheader") else None,
        cta=single_line(str(meta["cta"])) if meta.get("cta") else None,
        body=body,
        body_line=body_line,
        when=ref.when,
        **{key: single_line(str(meta[key])) for key in _DISCREET_KEYS if meta.get(key)},
    )
