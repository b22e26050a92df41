"""`dripmail preview`: every email of a campaign folder, live in the browser, fully local.

Routes (GET unless noted):

    /                       the studio: timeline, the selected email at desktop and phone
                            widths and in dark mode, its text part, HTML source and checks;
                            ?step=KEY&name=N&tz=ZONE&signup=YYYY-MM-DDTHH:MM pick what to show
    /email/<key>.html       one email as the iframes show it (?name, ?view=dark)
    /email/<key>.txt        its plain-text part
    /files/<path>           a file of the campaign folder, as text (links from findings)
    /events                 Server-Sent Events: the campaign's version, on every change
    /api/version            the same as JSON, for scripts and tests
    /_studio/<asset>        the studio's own CSS, JS and the remote-image placeholder
    POST /send-test         send the selected email through the campaign's sender

Live reload: a watchfiles task watches the campaign folder and the email layouts; on a
change it reloads and recompiles the campaign in a worker thread, bumps the version and
wakes every /events stream; the page's script then fetches itself again and swaps its
content in place. A campaign that no longer loads or compiles keeps the server up: the
page shows the error with its file:line and the last version that compiled, and the next
good save recovers.

Nothing leaves the machine: the pages load only this server's CSS and JS, remote images
in an email are swapped for a local placeholder, and a Content-Security-Policy forbids
every other origin. Bound to 127.0.0.1 unless told otherwise; on a loopback address the
Host header must name this machine (no DNS rebinding), and POSTs carry a per-run token.
"""

from __future__ import annotations

import asyncio
import contextlib
import html as html_lib
import logging
import secrets
import socket
import threading
import traceback
import webbrowser
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from zoneinfo import available_timezones

import uvicorn
import watchfiles
from jinja2 import TemplateError, TemplateSyntaxError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import templates
from campaigns.authoring.checks import Finding, check_step
from campaigns.authoring.spec import CAMPAIGN_FILE, Campaign, load_folder
from campaigns.errors import ConfigurationError, DripmailError, InputError
from campaigns.planning.schedule import parse_instant, zone
from campaigns.rendering.render import (
    SAMPLE,
    CompiledCampaign,
    Recipient,
    Rendered,
    clear_cache,
    compile_campaign,
    sample_links,
)
from campaigns.rendering.tokens import public_url
from campaigns.studio.views import (
    DESKTOP_WIDTH,
    PHONE_WIDTH,
    STUDIO_TEMPLATES,
    check_rows,
    describe_delay,
    format_when,
    page_environment,
    preview_document,
    relative_to,
    timeline,
)

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Studio", "StudioServer", "create_app", "make_server"]

log = logging.getLogger("dripmail.studio")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8025
MAX_FORM = 4 * 1024
_ASSETS = {"studio.css": "text/css; charset=utf-8", "studio.js": "text/javascript; charset=utf-8"}
_WATCHED_SUFFIXES = {".md", ".txt", ".yaml", ".yml"}
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}

# The studio page: its own script and stylesheet, frames from itself, nothing else.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# An email in an iframe: its inline styles, images from this server (placeholders), no
# script, and no form or link may reach another machine from inside the studio.
_EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'none'; frame-ancestors 'self'"
)
_COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# ----------------------------------------------------------------------------- state


@dataclass(frozen=True)
class StudioError:
    """Why the campaign does not load or compile, pointing at the file and line."""

    message: str
    file: str | None = None  # as shown: relative to the campaign folder when inside it
    line: int | None = None
    excerpt: tuple[tuple[int, str], ...] = ()  # (line number, text) around `line`

    @property
    def where(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file


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

    def findings(self, step_key: str) -> list[Finding]:
        """checks.py's findings for one email, computed once per snapshot."""
        assert self.campaign is not None
        with self._lock:
            if step_key not in self._checks:
                self._checks[step_key] = check_step(self.campaign, step_key)
            return self._checks[step_key]


class Studio:
    """The campaign folder being previewed, reloaded whenever a watched file changes."""

    def __init__(
        self,
        folder: Path | str,
        *,
        db: str | None = None,
        sender: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError("no such campaign folder", source=folder)
        if not (folder / CAMPAIGN_FILE).is_file():
            raise InputError(f"no {CAMPAIGN_FILE} here (run `dripmail split` first)", source=folder)
        self.folder = folder.resolve()
        self.db = db
        self.sender = sender
        self.clock = clock or (lambda: datetime.now(UTC))  # the sample sign-up is "now"
        self.token = secrets.token_urlsafe(24)  # proves a POST came from the studio page
        self.snapshot = Snapshot(version=0)
        self.closing = False
        self._changed = asyncio.Event()
        self._reload_lock = threading.Lock()
        self._store: Any = None
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

    def store(self) -> Any:
        """The database send-test signs its unsubscribe token with (opened on first use)."""
        from campaigns.storage.store import Store

        with self._store_lock:
            if self._store is None:
                self._store = Store(self.db)
            return self._store

    def send_test(self, step_key: str, to: str) -> str:
        """Send one email of the last good version to `to`; a sentence saying what happened."""
        from campaigns.delivery.send_test import send_test

        snapshot = self.snapshot
        if snapshot.campaign is None or snapshot.compiled is None:
            raise InputError("the campaign does not compile yet; fix the error first")
        campaign = snapshot.campaign
        if step_key not in snapshot.compiled.steps:
            raise InputError(f"no step {step_key!r} in this campaign", field="step")
        result = send_test(
            self.store(), campaign, step_key, to, sender=self.sender, now=self.clock()
        )
        sender = self.sender or campaign.spec.sender.type
        if result.outcome != "sent":
            raise DripmailError(f"the test was not sent ({result.outcome}): {result.error}")
        where = ""
        if sender == "file" and result.provider_id:
            where = f": {Path(campaign.spec.sender.outbox) / result.provider_id}"
        subject = campaign.step(step_key).subject
        return f"Sent a test of “{subject}” to {to.strip()} through the {sender} sender{where}."

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def describe_error(exc: BaseException, folder: Path) -> StudioError:
    """An exception from loading or compiling, as file, line and message for the page."""
    file: str | None = None
    line: int | None = None
    if isinstance(exc, InputError):
        file, line = exc.source, exc.line
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
    elif isinstance(exc, TemplateSyntaxError):
        file, line, message = exc.filename, exc.lineno, f"template syntax: {exc.message}"
    else:
        message = f"{type(exc).__name__}: {exc}"
        # Jinja puts template lines into the traceback; the last one is where it failed.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        if frames:
            file, line = frames[-1].filename, frames[-1].lineno
    return StudioError(message, _display_path(file, folder), line, _excerpt(file, line, folder))


def _display_path(file: str | None, folder: Path) -> str | None:
    if file is None:
        return None
    path = Path(file)
    if path.is_absolute() or path.exists():
        if path.resolve().is_relative_to(templates.DIRECTORY):
            return "templates/" + path.resolve().relative_to(templates.DIRECTORY).as_posix()
        return relative_to(file, folder)
    return file


def _excerpt(file: str | None, line: int | None, folder: Path) -> tuple[tuple[int, str], ...]:
    """The lines around the error, read only from the campaign folder or the layouts."""
    if not file or not line:
        return ()
    path = Path(file).resolve()
    if not (path.is_relative_to(folder) or path.is_relative_to(templates.DIRECTORY)):
        return ()
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return ()
    numbers = range(max(line - 2, 1), min(line + 2, len(lines)) + 1)
    return tuple((number, lines[number - 1]) for number in numbers)


# -------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class Contact:
    """The sample contact the page is personalised for, from the picker."""

    name: str
    timezone: str
    signed_up_at: datetime  # aware, in `timezone`
    problems: tuple[str, ...] = ()

    def recipient(self) -> Recipient:
        return Recipient(SAMPLE.email, self.name, self.timezone)

    def query(self) -> dict[str, str]:
        return {
            "name": self.name,
            "tz": self.timezone,
            "signup": self.signed_up_at.strftime("%Y-%m-%dT%H:%M"),
        }


def read_contact(params: Any, campaign: Campaign, now: datetime) -> Contact:
    """The picker's values, falling back (and saying so) where one is unusable."""
    problems = []
    name = str(params.get("name", SAMPLE.first_name or ""))[:100].strip()
    timezone = str(params.get("tz") or campaign.spec.timezone).strip()
    try:
        tz = zone(timezone)
    except ValueError as exc:
        problems.append(f"{exc}; showing {campaign.spec.timezone}")
        timezone = campaign.spec.timezone
        tz = zone(timezone)
    signed_up_at = now.astimezone(tz).replace(second=0, microsecond=0)
    if params.get("signup"):
        try:
            signed_up_at = parse_instant(str(params["signup"]), tz).astimezone(tz)
        except ValueError:
            problems.append(f"{params['signup']!r} is not a date and time; showing now")
    return Contact(name, timezone, signed_up_at, tuple(problems))


def _zones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))


class Pages:
    """Builds the studio's responses from the current snapshot."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.env = page_environment()
        self.zones = _zones()

    def _links(self, campaign: Campaign) -> tuple[str, str]:
        return sample_links(public_url(campaign.spec.links.public_url))

    def render(
        self, snapshot: Snapshot, params: Any, *, notice: str | None = None, status: int = 200
    ) -> HTMLResponse:
        values = self.values(snapshot, params)
        values["notice"] = notice
        html = self.env.get_template("studio.html.j2").render(values)
        return HTMLResponse(
            html, status, headers={**_COMMON_HEADERS, "Content-Security-Policy": _PAGE_CSP}
        )

    def values(self, snapshot: Snapshot, params: Any) -> dict[str, Any]:
        studio = self.studio
        values: dict[str, Any] = {
            "version": snapshot.version,
            "error": snapshot.error,
            "folder": str(studio.folder),
            "token": studio.token,
            "zones": self.zones,
            "campaign": None,
        }
        campaign, compiled = snapshot.campaign, snapshot.compiled
        if campaign is None or compiled is None:
            return values
        contact = read_contact(params, campaign, studio.clock())
        recipient = contact.recipient()
        links = self._links(campaign)
        entries = timeline(
            campaign, compiled, recipient, signed_up_at=contact.signed_up_at, links=links
        )
        key = str(params.get("step") or "")
        if key not in compiled.steps:
            key = campaign.steps[0].key
        entry = next(e for e in entries if e.key == key)
        rendered = _personalise(compiled, key, recipient, links)
        try:
            findings = snapshot.findings(key)
        except Exception as exc:  # the linter must not take the preview down with it
            log.error("checks failed for %s", key, exc_info=exc)
            findings = [Finding("error", "checks", f"the checks could not run: {exc}", "")]
        query = contact.query()

        def href(item: Any) -> str:
            return "/?" + urlencode({"step": item.key, **query})

        frame_query = urlencode({"name": contact.name, "v": snapshot.version})
        values.update(
            campaign=campaign,
            title=campaign.spec.title or campaign.name,
            contact=contact,
            entries=entries,
            entry=entry,
            step=campaign.step(key),
            rendered=rendered,
            checks=check_rows(
                findings,
                rendered,
                campaign.spec.brand.postal_address,
                studio.folder,
            ),
            href=href,
            file_href=_file_href,
            src={
                "desktop": f"/email/{key}.html?{frame_query}",
                "phone": f"/email/{key}.html?{frame_query}",
                "dark": f"/email/{key}.html?{frame_query}&view=dark",
            },
            widths={"desktop": DESKTOP_WIDTH, "phone": PHONE_WIDTH},
            sender=studio.sender or campaign.spec.sender.type,
            outbox=campaign.spec.sender.outbox,
            placeholders=campaign.placeholders(),
            signed_up=format_when(contact.signed_up_at),
            delay=describe_delay(campaign.step(key).delay),
        )
        return values


def _file_href(path: str) -> str:
    """The /files/ link of a file named relative to the campaign folder ("" for others)."""
    if not path or Path(path).is_absolute() or path.startswith("templates/"):
        return ""
    return "/files/" + quote(path)


def _personalise(
    compiled: CompiledCampaign, key: str, recipient: Recipient, links: tuple[str, str]
) -> Rendered:
    unsubscribe_url, preferences_url = links
    return compiled.step(key).personalise(
        recipient, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url
    )


# ---------------------------------------------------------------------------------- app


def _not_found(_request: Request | None = None, _exc: Exception | None = None) -> Response:
    return PlainTextResponse("Not found", 404, headers=_COMMON_HEADERS)


def _safe_file(folder: Path, relative: str) -> Path | None:
    """A file inside `folder` named by a URL path, or None (then the answer is 404).

    The path arrives percent-decoded, so `%2e%2e%2f` is `../` here: any `..`, absolute
    path, hidden name or symlink leading out of the folder is refused.
    """
    if not relative or "\\" in relative or "\0" in relative:
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    candidate = (folder / relative).resolve()
    if not candidate.is_relative_to(folder) or not candidate.is_file():
        return None
    return candidate


class _HostGuard:
    """On a loopback address, only requests naming this machine in Host are served.

    A web page elsewhere could otherwise point a DNS name at 127.0.0.1 and read the
    studio (DNS rebinding); the per-run token protects POSTs as well.
    """

    def __init__(self, app: ASGIApp, allowed: set[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = urlsplit(f"//{host}").hostname or ""
            if name not in self.allowed:
                response = PlainTextResponse("Unknown host", 400, headers=_COMMON_HEADERS)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(studio: Studio, *, host: str = DEFAULT_HOST) -> ASGIApp:
    """The studio as an ASGI app; the watcher runs for as long as the app does."""
    pages = Pages(studio)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(studio.watch(stop))
        try:
            yield
        finally:
            stop.set()
            studio.close_streams()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(watcher, 5)
            studio.close()

    def page(request: Request) -> Response:
        return pages.render(studio.snapshot, request.query_params)

    def email_html(request: Request) -> Response:
        snapshot = studio.snapshot
        found = _email(snapshot, request)
        if found is None:
            return _not_found()
        rendered, _campaign = found
        dark = request.query_params.get("view") == "dark"
        return HTMLResponse(
            preview_document(rendered.html, dark=dark),
            headers={
                **_COMMON_HEADERS,
                "Content-Security-Policy": _EMAIL_CSP,
                "X-Frame-Options": "SAMEORIGIN",
            },
        )

    def email_text(request: Request) -> Response:
        found = _email(studio.snapshot, request)
        if found is None:
            return _not_found()
        return PlainTextResponse(found[0].text, headers=_COMMON_HEADERS)

    def _email(snapshot: Snapshot, request: Request) -> tuple[Rendered, Campaign] | None:
        key = request.path_params["key"]
        campaign, compiled = snapshot.campaign, snapshot.compiled
        if campaign is None or compiled is None or key not in compiled.steps:
            return None
        name = request.query_params.get("name", SAMPLE.first_name or "")[:100].strip()
        recipient = Recipient(SAMPLE.email, name, campaign.spec.timezone)
        return _personalise(compiled, key, recipient, pages._links(campaign)), campaign

    def folder_file(request: Request) -> Response:
        path = _safe_file(studio.folder, request.path_params["path"])
        if path is None:
            return _not_found()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return _not_found()
        return PlainTextResponse(text, headers=_COMMON_HEADERS)

    def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "remote-image.svg":
            return _remote_image(request.query_params.get("host", ""))
        if name not in _ASSETS:
            return _not_found()
        body = (STUDIO_TEMPLATES / name).read_bytes()
        return Response(body, media_type=_ASSETS[name], headers=_COMMON_HEADERS)

    def version(_request: Request) -> Response:
        snapshot = studio.snapshot
        error = snapshot.error
        return JSONResponse(
            {"version": snapshot.version, "error": error.where if error else None},
            headers=_COMMON_HEADERS,
        )

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"  # reconnect within a second after a server restart
            seen = -1
            while not studio.closing:
                if studio.version != seen:
                    seen = studio.version
                    yield f"event: version\ndata: {seen}\n\n"
                elif not await studio.wait_for_change(seen, 15):
                    yield ": keep-alive\n\n"  # proxies and browsers drop silent streams

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={**_COMMON_HEADERS, "X-Accel-Buffering": "no"},
        )

    async def send(request: Request) -> Response:
        wants_json = "application/json" in request.headers.get("accept", "")
        body = await request.body()
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        fields = {k: v[0] for k, v in parse_qs(body[:MAX_FORM].decode("utf-8", "replace")).items()}
        if (origin and origin != own) or not secrets.compare_digest(
            fields.get("token", ""), studio.token
        ):
            return PlainTextResponse("Forbidden", 403, headers=_COMMON_HEADERS)
        step, to = fields.get("step", ""), fields.get("to", "")
        try:
            notice = await run_in_threadpool(studio.send_test, step, to)
            ok = True
        except Exception as exc:  # a sender's failure is shown, never a traceback page
            if not isinstance(exc, DripmailError):
                log.error("send test failed", exc_info=exc)
            reason = exc.message if isinstance(exc, InputError) else str(exc)
            notice, ok = f"Not sent: {reason}", False
        if wants_json:  # the request worked either way; whether the email went is in `ok`
            return JSONResponse({"ok": ok, "message": notice}, headers=_COMMON_HEADERS)
        params = {"step": step, **{k: v for k, v in fields.items() if k in ("name", "tz")}}
        return pages.render(studio.snapshot, params, notice=notice, status=200 if ok else 400)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/email/{key}.html", email_html),
            Route("/email/{key}.txt", email_text),
            Route("/files/{path:path}", folder_file),
            Route("/_studio/{name}", asset),
            Route("/api/version", version),
            Route("/events", events),
            Route("/send-test", send, methods=["POST"]),
        ],
        exception_handlers={404: _not_found},
        lifespan=lifespan,
    )
    return _HostGuard(app, _allowed_hosts(host))


def _allowed_hosts(host: str) -> set[str] | None:
    """Host names the studio answers to; None (any) when it listens on every address."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return _LOOPBACK_NAMES | {host.strip("[]")}


def _remote_image(host: str) -> Response:
    """A placeholder for an image the email loads from another site (not fetched here)."""
    label = html_lib.escape(f"Image from {host or 'another site'}: not loaded in the preview")
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="80" viewBox="0 0 320 80">'
        '<rect width="320" height="80" fill="#e4e7eb" stroke="#7b8794" stroke-dasharray="4"/>'
        f'<text x="160" y="44" font-family="sans-serif" font-size="11" text-anchor="middle" '
        f'fill="#1f2933">{label}</text></svg>'
    )
    return Response(svg, media_type="image/svg+xml", headers=_COMMON_HEADERS)


# ------------------------------------------------------------------------------- server


class StudioServer(uvicorn.Server):
    """uvicorn, ending the studio's event streams first so that stopping is immediate."""

    def __init__(self, config: uvicorn.Config, studio: Studio, sock: socket.socket) -> None:
        super().__init__(config)
        self.studio = studio
        self.socket = sock
        self.on_ready: Callable[[str], None] | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        if host in ("0.0.0.0", "::"):  # every address: this machine's is one of them
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready(self.url)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.studio.close_streams()
        await super().shutdown(sockets)

    def run_studio(self) -> None:
        """Serve until stopped (Ctrl+C, or `should_exit` from another thread)."""
        self.run(sockets=[self.socket])


def make_server(
    folder: Path | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    db: str | None = None,
    sender: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> StudioServer:
    """Load the folder and bind the socket (port 0: any free port); `run_studio()` serves."""
    studio = Studio(folder, db=db, sender=sender, clock=clock)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (pick another --port)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    config = uvicorn.Config(
        create_app(studio, host=host),
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return StudioServer(config, studio, sock)


def serve_studio(
    folder: Path | str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = False,
    db: str | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """`dripmail preview`: serve the studio until Ctrl+C."""
    server = make_server(folder, host=host, port=port, db=db)

    def ready(url: str) -> None:
        announce(f"studio for {server.studio.folder} on {url} (Ctrl+C stops it)")
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    server.on_ready = ready
    # uvicorn stops cleanly on Ctrl+C, then raises the signal again for its caller.
    with contextlib.suppress(KeyboardInterrupt):
        server.run_studio()
