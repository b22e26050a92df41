"""The campaign folder being previewed: its last version that compiled, reloaded on change.

Live reload: a watchfiles task watches the campaign folder and the email layouts; on a
change it reloads and recompiles the campaign in a worker thread, bumps the version and
wakes every /events stream; the page's script then fetches itself again and swaps its
content in place. A campaign that no longer loads or compiles keeps the server up: the
page shows the error with its file:line and the last version that compiled, and the next
good save recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import watchfiles
from jinja2 import TemplateError
from starlette.concurrency import run_in_threadpool

import templates
from campaigns.authoring.checks import Finding, build_email, check_email, check_step
from campaigns.authoring.sender_settings import outbox
from campaigns.authoring.spec import CAMPAIGN_FILE, Campaign, load_folder
from campaigns.delivery.send_test import send_test
from campaigns.errors import DripmailError, InputError
from campaigns.rendering.compile import clear_cache, compile_campaign
from campaigns.rendering.personalise import CompiledCampaign
from campaigns.settings import Settings
from campaigns.storage.store import Store
from campaigns.studio.errors import StudioError, describe_error

log = logging.getLogger("dripmail.studio")

_WATCHED_SUFFIXES = {".md", ".txt", ".yaml", ".yml"}


@dataclass
class Snapshot:
    """One loaded state of the folder: the last campaign that compiled, and any error since."""

    version: int
    campaign: Campaign | None = None
    compiled: CompiledCampaign | None = None
    error: StudioError | None = None
    key: tuple[str, str] | None = None  # (campaign version, layouts digest) of `compiled`
    _checks: dict[str, list[Finding]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def findings(
        self, step_key: str, settings: Settings, variant: str | None = None
    ) -> list[Finding]:
        """checks.py's findings for one email (or one A/B variant of it), computed once
        per snapshot. A variant gets the email checks over its own subject and body."""
        assert self.campaign is not None
        with self._lock:
            key = f"{step_key}\x1f{variant}" if variant else step_key
            if key not in self._checks:
                if variant and self.compiled is not None:
                    compiled = self.compiled.step(step_key, variant)
                    email = build_email(self.campaign, compiled, settings=settings)
                    self._checks[key] = check_email(email)
                else:
                    self._checks[key] = check_step(self.campaign, step_key, settings=settings)
            return self._checks[key]


class Studio:
    """The campaign folder being previewed, reloaded whenever a watched file changes."""

    def __init__(
        self,
        folder: Path | str,
        *,
        db: str | None = None,
        sender: str | None = None,
        clock: Callable[[], datetime] | None = None,
        settings: Settings | None = None,
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError("no such campaign folder", source=folder)
        if not (folder / CAMPAIGN_FILE).is_file():
            raise InputError(f"no {CAMPAIGN_FILE} here (run `dripmail split` first)", source=folder)
        self.folder = folder.resolve()
        self.db = db
        self.sender = sender
        self.settings = Settings.from_env() if settings is None else settings
        self.clock = clock or (lambda: datetime.now(UTC))  # the sample sign-up is "now"
        self.token = secrets.token_urlsafe(24)  # proves a POST came from the studio page
        self.snapshot = Snapshot(version=0)
        self.closing = False
        self._changed = asyncio.Event()
        self._reload_lock = threading.Lock()
        self._store: Store | None = None
        self._store_lock = threading.Lock()
        self._default_filter = watchfiles.DefaultFilter()
        self.reload()

    @property
    def version(self) -> int:
        return self.snapshot.version

    # -- loading ----------------------------------------------------------------------

    def reload(self, *, layouts_changed: bool = False) -> bool:
        """Load and compile the folder again; True when what the page shows has changed."""
        with self._reload_lock:
            if layouts_changed:
                clear_cache()  # compiled steps embed the layouts
            old = self.snapshot
            try:
                campaign = load_folder(self.folder)
                key = (campaign.version, templates.digest())
                if key == old.key and old.error is None:
                    return False  # e.g. a file saved without changes
                compiled = compile_campaign(campaign)
            except Exception as exc:  # whatever a broken file raises, the server stays up
                error = describe_error(exc, self.folder)
                if error == old.error:
                    return False
                if not isinstance(exc, DripmailError | TemplateError):
                    log.error("reloading %s failed", self.folder, exc_info=exc)
                self.snapshot = Snapshot(
                    old.version + 1, old.campaign, old.compiled, error, old.key
                )
                return True
            self.snapshot = Snapshot(old.version + 1, campaign, compiled, None, key)
            return True

    def _relevant(self, change: watchfiles.Change, path: str) -> bool:
        """Files that can change an email: step files, campaign.yaml and the layouts."""
        if not self._default_filter(change, path):
            return False
        candidate = Path(path)
        if candidate.is_relative_to(templates.DIRECTORY):
            # The email layouts sit at the top; templates/studio/ and templates/web/ do not
            # change an email.
            return candidate.suffix == ".j2" and candidate.parent == templates.DIRECTORY
        if candidate.is_relative_to(self.folder):
            hidden = any(p.startswith(".") for p in candidate.relative_to(self.folder).parts)
            if hidden:  # editors' swap and backup files, .git
                return False
        return candidate.suffix.lower() in _WATCHED_SUFFIXES

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on every relevant change until `stop` is set (the server's lifespan)."""
        while not stop.is_set():
            try:
                async for changes in watchfiles.awatch(
                    self.folder,
                    templates.DIRECTORY,
                    watch_filter=self._relevant,
                    stop_event=stop,
                    debounce=400,  # editors write a file in steps: one reload for them all
                    step=30,
                ):
                    layouts = any(Path(path).suffix == ".j2" for _change, path in changes)
                    if await run_in_threadpool(self.reload, layouts_changed=layouts):
                        log.info("reloaded %s (version %d)", self.folder, self.version)
                        self._notify()
            except Exception as exc:  # e.g. the folder was moved away: keep serving, retry
                log.warning("watching %s failed (%s); retrying", self.folder, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2)

    def _notify(self) -> None:
        """Wake every /events stream (called on the event loop)."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_for_change(self, seen: int, timeout: float) -> bool:
        """Wait until the version differs from `seen`; False on timeout."""
        event = self._changed
        if self.version != seen or self.closing:
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close_streams(self) -> None:
        """End every /events stream, so the server can stop without waiting on them."""
        self.closing = True
        self._notify()

    # -- sending ----------------------------------------------------------------------

    def store(self) -> Store:
        """The database send-test signs its unsubscribe token with (opened on first use)."""
        with self._store_lock:
            if self._store is None:
                self._store = Store(self.db, settings=self.settings)
            return self._store

    def send_test(
        self, step_key: str, to: str, language: str | None = None, variant: str | None = None
    ) -> str:
        """Send one email of the last good version to `to`; a sentence saying what happened."""
        snapshot = self.snapshot
        if snapshot.campaign is None or snapshot.compiled is None:
            raise InputError("the campaign does not compile yet; fix the error first")
        campaign = snapshot.campaign
        if step_key not in snapshot.compiled.steps:
            raise InputError(f"no step {step_key!r} in this campaign", field="step")
        variants = list(snapshot.compiled.variants.get(step_key, {}))
        variant = variant if variant in variants else (variants[0] if variants else None)
        result = send_test(
            self.store(),
            campaign,
            step_key,
            to,
            sender=self.sender,
            now=self.clock(),
            language=language,
            variant=variant,
        )
        sender = self.sender or campaign.spec.sender.type
        if result.outcome != "sent":
            raise DripmailError(f"the test was not sent ({result.outcome}): {result.error}")
        where = ""
        if sender == "file" and result.provider_id:
            where = f": {Path(outbox(campaign.spec.sender, self.settings)) / result.provider_id}"
        step = snapshot.compiled.in_language(language).campaign.step(step_key)
        subject = next((v.subject for v in step.variants if v.name == variant), step.subject)
        return f"Sent a test of “{subject}” to {to.strip()} through the {sender} sender{where}."

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
