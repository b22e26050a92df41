"""The console's campaign folders: DRIPMAIL_WORKSPACE, looked at on every request.

A folder edited on disk (by hand, by `dripmail split`) is what the next page shows: each
request looks at every file of the folder (its inode, size, modification and change
times) and parses the folder again when any of them differs from the last reading (a
file written, replaced, added or removed), so the dashboard does not parse 50 folders
of YAML and Markdown per request, and no reading can go stale. A change saved in the
console is checked by loading the whole campaign with the new text first (nothing is
written when it would not load), then written to the folder's file atomically (a
temporary file in the same folder, renamed over the old one), so the CLI and workers
never read half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from campaigns.authoring.spec import CAMPAIGN_FILE, Campaign, load_files, load_folder
from campaigns.authoring.split import slugify
from campaigns.authoring.yamlio import dump, load_with_lines
from campaigns.errors import DripmailError, InputError, NotFoundError
from campaigns.settings import Settings

__all__ = [
    "Folder",
    "StepDraft",
    "Timing",
    "claim_folder",
    "folder_path",
    "folders",
    "free_name",
    "save_step",
    "save_timing",
    "step_text",
    "with_step",
    "workspace_root",
    "write_atomic",
]

# A folder's name in a URL: the shape of a campaign name, so no path can be smuggled in.
FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
NAME_LIMIT = 63  # a campaign name's length (what split's slug is cut to)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Folder:
    """One campaign folder of the workspace: its campaign, or why it does not load."""

    name: str  # the folder's name (the console's URLs use it)
    path: Path
    campaign: Campaign | None
    error: str | None


@dataclass(frozen=True)
class StepDraft:
    """What the editor sends for one step: its subject, preheader, button and Markdown."""

    subject: str
    preheader: str
    cta: str
    body: str


@dataclass(frozen=True)
class Timing:
    """What the editor sends for the sequence: step order and delays, window, closures."""

    order: Sequence[str]  # step files in their new order
    delays: Mapping[str, str]  # step file -> delay ("2d", "36h")
    start: str
    end: str
    days: Sequence[str]
    closed: Sequence[str]  # ISO dates
    min_gap: str


def workspace_root(settings: Settings) -> Path:
    """DRIPMAIL_WORKSPACE (default ./campaigns); made only when a campaign is created."""
    return Path(settings.workspace).expanduser()


def folders(root: Path) -> list[Folder]:
    """Every folder of the workspace holding a campaign.yaml, by name, each read now."""
    found: list[Folder] = []
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        if path.is_dir() and FOLDER_NAME.fullmatch(path.name) and (path / CAMPAIGN_FILE).is_file():
            found.append(read(path))
    return found


def free_name(root: Path, base: str, taken: Collection[str] = ()) -> str:
    """`base`, else `base-2`, `base-3`...: the first name that neither a folder of the
    workspace nor a campaign in `taken` (the published ones) has."""
    number = 1
    while True:
        suffix = f"-{number}" if number > 1 else ""
        name = slugify(base, NAME_LIMIT - len(suffix)) + suffix
        if name not in taken and not (root / name).exists():
            return name
        number += 1


def claim_folder(root: Path, base: str, taken: Collection[str] = ()) -> Path:
    """Make the new, empty folder `free_name` gives. mkdir either makes it or fails, so
    two campaigns created at once never share a folder and none is written over."""
    root.mkdir(parents=True, exist_ok=True)
    while True:
        path = root / free_name(root, base, taken)
        try:
            path.mkdir()
        except FileExistsError:  # made by someone else since free_name looked: the next
            continue
        return path


# Folder path -> (its files' fingerprint, the Folder read then).
_readings: dict[str, tuple[tuple[tuple[str, int, int, int, int], ...], Folder]] = {}
_readings_lock = threading.Lock()


def _fingerprint(path: Path) -> tuple[tuple[str, int, int, int, int], ...]:
    """Every file under `path`: name, inode, size, mtime and ctime (ns). Any write,
    rename over, new or removed file changes it (ctime moves even when mtime is set)."""
    found = []
    for where, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(where, name)
            try:
                stat = os.stat(full)
            except FileNotFoundError:  # removed while we looked: the next look sees it
                continue
            found.append((full, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    return tuple(found)


def read(path: Path) -> Folder:
    """The folder's campaign (or why it does not load), parsed again only when a file of
    it changed since the last reading."""
    key = os.path.abspath(path)
    mark = _fingerprint(path)
    with _readings_lock:
        held = _readings.get(key)
    if held is not None and held[0] == mark:
        return held[1]
    try:
        folder = Folder(path.name, path, load_folder(path), None)
    except DripmailError as exc:
        folder = Folder(path.name, path, None, str(exc))
    with _readings_lock:
        _readings[key] = (mark, folder)
    return folder


def folder_path(root: Path, name: str) -> Path:
    """The folder `name` of the workspace (NotFoundError for any other shape or none)."""
    path = root / name
    if not FOLDER_NAME.fullmatch(name) or not (path / CAMPAIGN_FILE).is_file():
        raise NotFoundError(f"no campaign folder {name!r} in the workspace")
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: a temporary file renamed over it."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def step_text(draft: StepDraft) -> str:
    """A step file from the editor's fields: front matter, then the Markdown as typed."""
    meta = {"subject": _one_line(draft.subject)}
    if draft.preheader.strip():
        meta["preheader"] = _one_line(draft.preheader)
    if draft.cta.strip():
        meta["cta"] = _one_line(draft.cta)
    body = draft.body.replace("\r\n", "\n").strip("\n")
    return f"---\n{dump(meta)}---\n{body}\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def with_step(campaign: Campaign, step_file: str, draft: StepDraft) -> Campaign:
    """The campaign as it would be with this step's text (InputError when it would not load)."""
    files = {**campaign.files, step_file: step_text(draft)}
    return load_files(files, origin=campaign.origin)


def save_step(path: Path, key: str, draft: StepDraft) -> Campaign:
    """Write one step's file after checking the campaign loads with it; the new campaign."""
    campaign = load_folder(path)
    step = campaign.step(key)
    updated = with_step(campaign, step.file, draft)
    write_atomic(path / step.file, updated.files[step.file])
    return updated


def save_timing(path: Path, timing: Timing) -> Campaign:
    """Rewrite campaign.yaml's steps (order, delays) and send_window after checking them.

    campaign.yaml is written back from its data: its `#` comments are not kept."""
    campaign = load_folder(path)
    data, _lines = load_with_lines(campaign.files[CAMPAIGN_FILE], str(path / CAMPAIGN_FILE))
    known = {step.file for step in campaign.steps}
    if sorted(timing.order) != sorted(known):
        raise InputError("the step order must name every step once", field="order")
    data["steps"] = [{"file": file, "delay": timing.delays[file].strip()} for file in timing.order]
    window = dict(data.get("send_window") or {})
    window["start"], window["end"] = timing.start.strip(), timing.end.strip()
    window["days"] = [day for day in DAYS if day in timing.days]
    if not isinstance(window.get("closed"), str):  # an .ics file's name stays as it is
        window["closed"] = [day.strip() for day in timing.closed if day.strip()]
    if timing.min_gap.strip():
        window["min_gap"] = timing.min_gap.strip()
    else:
        window.pop("min_gap", None)
    data["send_window"] = window
    text = dump(data)
    updated = load_files({**campaign.files, CAMPAIGN_FILE: text}, origin=campaign.origin)
    write_atomic(path / CAMPAIGN_FILE, text)
    return updated
