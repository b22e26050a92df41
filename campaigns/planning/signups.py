"""Sign-ups as given (a command, the sign-up API, a CSV row), validated into Contacts.

A CSV file is read whole before anything is imported, as exports really come: comma,
semicolon or tab delimited, a UTF-8 byte order mark, CRLF line ends, header names in any
case and spacing with the usual aliases (`Email Address`, `First Name`, `Time zone`).
Columns dripmail has no field for are kept on each contact as attributes. An unusable
file (not UTF-8, no header, no email column) is refused whole; a bad row (a quote never
closed, the wrong number of fields, a bad value) is left out and reported by its line.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from campaigns.authoring.conditions import check_attribute_name
from campaigns.authoring.languages import normalise_language
from campaigns.authoring.spec import Campaign
from campaigns.errors import InputError
from campaigns.planning import ranges, schedule
from campaigns.planning.contacts import normalise_email, parse_tags
from campaigns.planning.conversions import parse_event_cell
from campaigns.planning.zones import contact_zone

CSV_COLUMNS = (
    "email",
    "first_name",
    "timezone",
    "signed_up_at",
    "consent",
    "tags",
    "events",
    "language",
)
# Header names as exports write them, compared as letters and digits only, in lower case
# ("E-mail", "Email Address", "First Name", "Time zone" all match).
COLUMN_ALIASES = {
    **dict.fromkeys(("email", "emailaddress", "emailaddr"), "email"),
    **dict.fromkeys(("firstname", "first", "givenname", "forename"), "first_name"),
    **dict.fromkeys(("timezone", "tz", "zone"), "timezone"),
    **dict.fromkeys(
        ("signedupat", "signedup", "signedupon", "signupdate", "signuptime", "signupat"),
        "signed_up_at",
    ),
    **dict.fromkeys(("consent", "consentsource"), "consent"),
    **dict.fromkeys(("tags", "tag"), "tags"),
    # Goal events (`booked@2026-03-09T14:00; consult`): planning/conversions.py.
    **dict.fromkeys(("events", "event"), "events"),
    **dict.fromkeys(("language", "lang", "locale", "preferredlanguage"), "language"),
}
DELIMITERS = (",", ";", "\t")
MAX_ATTRIBUTE = 200  # characters in one attribute value
MAX_ATTRIBUTES = 50  # attributes of one contact (with a value)
# One physical line with its line end; a CSV record may span several (a quoted newline).
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# Control characters (Unicode Cc) and lone surrogates (Cs) in a name, consent text or
# other text of a sign-up. NUL is refused by PostgreSQL (and made its error log carry
# the row), a lone surrogate cannot be encoded at all, and the rest have no business
# in a name. Tab, CR and LF are only white space here: they are folded into spaces,
# as a form's text area or a quoted CSV cell may hold a line break.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# Looks like an address, even a bad one (only to tell a row from a line of a quoted note).
_ADDRESS = re.compile(r"\S*@\S*")
_EXPORT_HINT = (
    'in Excel use File > Save As > "CSV UTF-8 (Comma delimited)", '
    "or import it as it is with --encoding cp1252"
)


@dataclass(frozen=True)
class Signup:
    """A sign-up as given: free text, to be validated."""

    email: str
    first_name: str | None = None
    timezone: str | None = None
    signed_up_at: str | datetime | None = None
    consent: str | None = None
    tags: str | None = None  # `a;b` (for newsletters)
    # Other columns of an imported file: name -> text.
    attributes: Mapping[str, str] | None = field(default=None, hash=False)
    language: str | None = None  # a BCP 47 tag: `es`, `pt-BR`


@dataclass(frozen=True)
class Contact:
    """A validated sign-up: normalised address, known zone, UTC sign-up time."""

    email: str
    first_name: str | None
    timezone: str
    signed_up_at: datetime
    consent: str
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)
    language: str | None = None  # normalised BCP 47 (`pt-br` -> `pt-BR`); None: unknown


def control_character(text: str | None) -> str | None:
    """The first control character in `text`, as `U+0000`; None when there is none."""
    found = _CONTROL.search(text or "")
    return None if found is None else f"U+{ord(found.group()):04X}"


def check_text(text: str | None, field: str) -> None:
    """InputError naming `field` when `text` holds a control character (see _CONTROL)."""
    found = control_character(text)
    if found:
        raise InputError(f"holds the control character {found}: remove it", field=field)


def validate(signup: Signup, campaign: Campaign, *, now: datetime) -> Contact:
    """One sign-up checked against the campaign; InputError names the field."""
    check_text(signup.first_name, "first_name")
    check_text(signup.consent, "consent")
    try:
        email = normalise_email(signup.email or "")
    except ValueError as exc:
        raise InputError(str(exc), field="email") from None
    given_zone = (signup.timezone or "").strip()
    try:
        # The contact's own zone must name a place; the campaign's was checked with its file.
        zone_name = contact_zone(given_zone) if given_zone else campaign.spec.timezone
        tz = schedule.zone(zone_name)
    except ValueError as exc:
        raise InputError(str(exc), field="timezone") from None
    if isinstance(signup.signed_up_at, datetime) or str(signup.signed_up_at or "").strip():
        try:
            signed_up_at = schedule.parse_instant(signup.signed_up_at, tz)
        except ranges.OutOfRange as exc:
            raise InputError(str(exc), field="signed_up_at") from None
        except ValueError:
            raise InputError(
                f"{signup.signed_up_at!r} is not an ISO date-time "
                "(like 2026-03-08T14:30 or 2026-03-08T14:30-05:00)",
                field="signed_up_at",
            ) from None
    else:
        signed_up_at = now
    first_name = " ".join((signup.first_name or "").split()) or None
    if first_name and len(first_name) > 200:
        raise InputError("longer than 200 characters", field="first_name")
    consent = " ".join((signup.consent or "").split())
    if not consent:
        raise InputError(
            "required (where and how this person agreed to be emailed)", field="consent"
        )
    try:
        tags = tuple(parse_tags(signup.tags)) if signup.tags else ()
    except ValueError as exc:
        raise InputError(str(exc), field="tags") from None
    attributes = checked_attributes(signup.attributes or {})
    language = None
    if (signup.language or "").strip():
        try:
            language = normalise_language(signup.language)
        except ValueError as exc:
            raise InputError(str(exc), field="language") from None
    return Contact(email, first_name, zone_name, signed_up_at, consent, tags, attributes, language)


def checked_attributes(given: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    """A contact's attributes with a value: text of at most MAX_ATTRIBUTE characters, at
    most MAX_ATTRIBUTES of them; InputError naming `<prefix><name>` otherwise (a CSV's
    column by its attribute name; the API's field as `attributes.<name>`)."""
    attributes = {}
    for name, value in given.items():
        text = str(value).strip() if value is not None else ""  # a note keeps its lines
        check_text(str(value or ""), f"{prefix}{name}")
        if len(text) > MAX_ATTRIBUTE:
            raise InputError(f"longer than {MAX_ATTRIBUTE} characters", field=f"{prefix}{name}")
        if text:
            attributes[name] = text
    if len(attributes) > MAX_ATTRIBUTES:
        raise InputError(
            f"{len(attributes)} attributes: a contact carries at most {MAX_ATTRIBUTES}",
            field="attributes",
        )
    return attributes


def attribute_option(text: str) -> tuple[str, str]:
    """`patient_type=new` (the command line's --attribute) -> (name, value)."""
    name, equals, value = text.partition("=")
    name = name.strip()
    try:
        check_attribute_name(name)
    except ValueError as exc:
        raise InputError(str(exc), field="--attribute") from None
    if not equals:
        raise InputError(f"{text!r}: write NAME=VALUE, like patient_type=new", field="--attribute")
    return name, value


@dataclass
class SignupFile:
    """A CSV's valid contacts and rejected rows by line, and the columns kept as attributes."""

    valid: list[tuple[int, Contact]]
    rejected: list[tuple[int, str]]
    attributes: dict[str, str]  # the column's header as written -> the attribute's name
    # The `events` column: address -> (line, [(event, time)]), recorded after enrolling.
    events: dict[str, tuple[int, tuple[tuple[str, datetime], ...]]] = field(default_factory=dict)


def read_signups(
    path: Path,
    campaign: Campaign,
    *,
    now: datetime,
    consent: str | None = None,
    encoding: str | None = None,
) -> SignupFile:
    """A CSV's valid contacts and its rejected rows, by line; a repeated address is rejected.

    `consent` is for rows that leave their consent column empty; `encoding` reads a file
    that is not UTF-8 (cp1252 for an older Excel's "CSV (Comma delimited)").
    """
    table = read_csv(path, encoding=encoding)
    rejected = list(table.rejected)
    valid: list[tuple[int, Contact]] = []
    seen: dict[str, int] = {}
    events: dict[str, tuple[int, tuple[tuple[str, datetime], ...]]] = {}
    for line, record, attributes in table.rows:
        signup = Signup(
            email=record.get("email") or "",
            first_name=record.get("first_name"),
            timezone=record.get("timezone"),
            signed_up_at=record.get("signed_up_at"),
            consent=(record.get("consent") or "").strip() or consent,
            tags=record.get("tags"),
            attributes=attributes,
            language=record.get("language"),
        )
        try:
            contact = validate(signup, campaign, now=now)
        except InputError as exc:  # "field: message", the line's reason
            rejected.append((line, str(exc)))
            continue
        if contact.email in seen:
            rejected.append((line, f"email: the same address as line {seen[contact.email]}"))
            continue
        try:
            happened = parse_event_cell(record.get("events") or "", contact.timezone, now=now)
        except InputError as exc:
            rejected.append((line, str(exc)))
            continue
        seen[contact.email] = line
        valid.append((line, contact))
        if happened:
            events[contact.email] = (line, happened)
    rejected.sort()
    return SignupFile(valid, rejected, table.attributes, events)


@dataclass
class CsvTable:
    """A contacts file as read: rows by line, rows refused by line, extra columns."""

    # (line, {field: text} for dripmail's fields, {attribute: text} for the other columns)
    rows: list[tuple[int, dict[str, str], dict[str, str]]]
    rejected: list[tuple[int, str]]
    attributes: dict[str, str]  # header as written -> attribute name
    delimiter: str = ","


def read_csv(path: Path, *, encoding: str | None = None) -> CsvTable:
    """The file's rows by line number; InputError (nothing read) when it is unusable."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(exc.strerror or "cannot read", source=path) from None
    lines = _LINES.findall(decode(raw, path, encoding))
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first == len(lines):
        raise InputError("empty file: expected a header row " + ",".join(CSV_COLUMNS), source=path)
    delimiter = None
    # Excel's own hint, written by some exports: `sep=;` on the first line.
    hint = re.fullmatch(r"sep=(.)\s*", lines[first], re.IGNORECASE)
    if hint:
        delimiter, first = hint.group(1), first + 1
    header_line = lines[first] if first < len(lines) else ""
    delimiter = delimiter or sniff_delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delimiter), [])
    fields, attributes = map_header(header, source=path, line=first + 1)
    rows, rejected = [], []
    email_index = next(i for i, name in fields.items() if name == "email")
    records = parse_records(lines, first + 1, delimiter, len(header), email_index)
    for line, cells in records:
        if isinstance(cells, str):
            rejected.append((line, cells))
            continue
        record = {fields[i]: cells[i] for i in fields}
        extra = {attributes[i][1]: cells[i].strip() for i in attributes if cells[i].strip()}
        rows.append((line, record, extra))
    return CsvTable(rows, rejected, dict(attributes.values()), delimiter)


def decode(raw: bytes, path: Path, encoding: str | None = None) -> str:
    """The file's text, without a byte order mark; InputError naming the first bad byte's line."""
    if encoding:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise InputError(
                f"unknown encoding {encoding!r} (try cp1252 or utf-8)", field="--encoding"
            ) from None
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16"  # Excel's "Unicode Text": tab-delimited UTF-16
    else:
        codec = "utf-8-sig"
    if b"\0" in raw and not codec.startswith("utf-16") and _binary(raw, codec):
        raise InputError("not a CSV file (binary content)", source=path)
    try:
        return raw.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = f"byte 0x{raw[exc.start]:02x}"
        if encoding:
            raise InputError(
                f"not {encoding} text ({byte}): check --encoding", source=path, line=line
            ) from None
        raise InputError(
            f"not UTF-8 text ({byte}, likely an accented letter): {_EXPORT_HINT}",
            source=path,
            line=line,
        ) from None


def _binary(raw: bytes, codec: str) -> bool:
    """Whether a file holding NUL bytes is binary (a spreadsheet, a PDF), not a text file.

    A NUL in the header line, or text that does not decode, is a binary file; a NUL
    further down is a bad row, reported by its line (validate refuses it) while the
    other rows import.
    """
    header = raw.lstrip(b"\r\n").split(b"\n", 1)[0]
    if b"\0" in header:
        return True
    try:
        raw.decode(codec)
    except UnicodeDecodeError:
        return True
    return False


def sniff_delimiter(header_line: str) -> str:
    """`,`, `;` or tab: the one that splits the header into an email column, else the most."""

    def score(delimiter: str) -> tuple[bool, int]:
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        return any(COLUMN_ALIASES.get(_key(c)) == "email" for c in cells), len(cells)

    return max(DELIMITERS, key=score)


def map_header(
    header: list[str], *, source: Path, line: int
) -> tuple[dict[int, str], dict[int, tuple[str, str]]]:
    """Column index -> field for dripmail's columns, and -> (header, attribute) for the rest."""
    fields: dict[int, str] = {}
    named: dict[str, str] = {}  # field -> the header that gave it
    attributes: dict[int, tuple[str, str]] = {}
    for index, name in enumerate(header):
        name = name.strip()
        known = COLUMN_ALIASES.get(_key(name))
        if known and known in named:
            raise InputError(
                f"columns {named[known]!r} and {name!r} both hold {known}: delete one",
                source=source,
                line=line,
            )
        if known:
            fields[index], named[known] = known, name
        elif name:  # a column with no header (a trailing delimiter) holds nothing to keep
            attribute = re.sub(r"\W+", "_", name.casefold()).strip("_") or f"column_{index + 1}"
            taken = {a for _, a in attributes.values()}
            while attribute in taken or attribute in CSV_COLUMNS:
                attribute += "_"
            attributes[index] = (name, attribute)
    if "email" not in named:
        raise InputError(
            "no email column in the header (name one Email, E-mail or Email Address; "
            f"dripmail reads {','.join(CSV_COLUMNS)})",
            source=source,
            line=line,
        )
    return fields, attributes


def parse_records(
    lines: list[str], first: int, delimiter: str, width: int, email_index: int | None = None
) -> list[tuple[int, list[str] | str]]:
    """(line, cells) for each record from `lines[first]` on, or (line, why it is refused).

    A quote that is never closed swallows the lines after it; that row is refused and
    reading starts again on the next line, so the rows after it still import. A stray
    quote can also be "closed" by a quote on a later row (`6'1"`, `12" screen`): the
    record then has the right width but holds other contacts' rows in one cell, so a
    record over several lines, one of which is a contact's row on its own, is refused too.
    """
    records: list[tuple[int, list[str] | str]] = []
    start = first
    while start < len(lines):
        reader = csv.reader(lines[start:], delimiter=delimiter, strict=True)
        consumed, resume = 0, None
        try:
            for cells in reader:
                begin, consumed = start + consumed, reader.line_num
                while len(cells) > width and not cells[-1].strip():
                    cells.pop()  # trailing empty cells (a spreadsheet's stray delimiters)
                if not any(cell.strip() for cell in cells):
                    continue  # a blank line, or only delimiters
                later = lines[begin + 1 : start + consumed]  # a quoted field's other lines
                if len(cells) == width and not _swallows_a_row(
                    later, delimiter, width, email_index
                ):
                    records.append((begin + 1, cells))
                elif start + consumed - begin > 1:  # a stray quote swallowed later lines
                    records.append((begin + 1, _quote_problem(lines[begin])))
                    resume = begin + 1
                    break
                else:
                    records.append((begin + 1, _width_problem(len(cells), width, delimiter)))
        except csv.Error:
            begin = start + consumed
            records.append((begin + 1, _quote_problem(lines[begin])))
            resume = begin + 1
        if resume is None:
            break
        start = resume
    return records


def _swallows_a_row(lines: list[str], delimiter: str, width: int, email_index: int | None) -> bool:
    """Whether any of a record's later lines is, on its own, a row with an address.

    The line is cut at every delimiter, quotes and all: inside the runaway field they
    mean nothing, and a row whose own quote closed it would not read alone either.
    """
    if email_index is None:
        return False
    for line in lines:
        cells = line.rstrip("\r\n").split(delimiter)
        if len(cells) < min(width, 2) or len(cells) <= email_index:
            continue  # a line of a note, not a row
        if _ADDRESS.fullmatch(cells[email_index].strip().strip('"').strip()):
            return True
    return False


def _quote_problem(line: str) -> str:
    if line.count('"') % 2:
        return 'a quote (") opened on this line is never closed: the row is left out'
    return 'a misplaced quote ("): quote the whole field, doubling quotes inside it'


def _width_problem(count: int, width: int, delimiter: str) -> str:
    shown = "tab" if delimiter == "\t" else f'"{delimiter}"'
    return f"{count} fields where the header has {width}: a missing or extra {shown}?"


def _key(name: str) -> str:
    """Letters and digits only, in lower case: how header names are compared."""
    return re.sub(r"[\W_]+", "", name.casefold())
