"""`dripmail preview`: every email of a campaign folder, live in the browser, fully local.

Routes (GET unless noted):

    /                       the studio: timeline, the selected email at desktop and phone
                            widths and in dark mode, its text part, HTML source and checks;
                            ?step=KEY&name=N&tz=ZONE&signup=YYYY-MM-DDTHH:MM&tags=T&attrs=A=V
                            pick what to show
    /email/<key>.html       one email as the iframes show it (?name, ?attrs, ?view=dark)
    /email/<key>.txt        its plain-text part
    /files/<path>           a file of the campaign folder, as text (links from findings)
    /events                 Server-Sent Events: the campaign's version, on every change
    /api/version            the same as JSON, for scripts and tests
    /_studio/<asset>        the studio's own CSS, JS and the remote-image placeholder
    POST /send-test         send the selected email through the campaign's sender

Live reload is campaigns.studio.state's; campaigns.studio.server runs the app.

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
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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

from campaigns.authoring.bounded import inside
from campaigns.authoring.spec import Campaign
from campaigns.errors import DripmailError, InputError
from campaigns.rendering.personalise import SAMPLE, Recipient, Rendered
from campaigns.studio.contact import read_attributes
from campaigns.studio.pages import COMMON_HEADERS, Pages, personalise, pick_variant
from campaigns.studio.state import Snapshot, Studio
from campaigns.studio.views import STUDIO_TEMPLATES, preview_document

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app"]

log = logging.getLogger("dripmail.studio")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8025
MAX_FORM = 4 * 1024
_ASSETS = {"studio.css": "text/css; charset=utf-8", "studio.js": "text/javascript; charset=utf-8"}
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}

# An email in an iframe: its inline styles, images from this server (placeholders), no
# script, and no form or link may reach another machine from inside the studio.
_EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'none'; frame-ancestors 'self'"
)


def _not_found(_request: Request | None = None, _exc: Exception | None = None) -> Response:
    return PlainTextResponse("Not found", 404, headers=COMMON_HEADERS)


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
    candidate = inside(folder, relative)  # the same check loading the campaign makes
    if candidate is None or not candidate.is_file():
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
                response = PlainTextResponse("Unknown host", 400, headers=COMMON_HEADERS)
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
                **COMMON_HEADERS,
                "Content-Security-Policy": _EMAIL_CSP,
                "X-Frame-Options": "SAMEORIGIN",
            },
        )

    def email_text(request: Request) -> Response:
        found = _email(studio.snapshot, request)
        if found is None:
            return _not_found()
        return PlainTextResponse(found[0].text, headers=COMMON_HEADERS)

    def _email(snapshot: Snapshot, request: Request) -> tuple[Rendered, Campaign] | None:
        key = request.path_params["key"]
        campaign, compiled = snapshot.campaign, snapshot.compiled
        if campaign is None or compiled is None or key not in compiled.steps:
            return None
        name = request.query_params.get("name", SAMPLE.first_name or "")[:100].strip()
        attributes = read_attributes(request.query_params.get("attrs", "")[:4000], [])
        language = request.query_params.get("lang", "")[:35] or None
        recipient = Recipient(
            SAMPLE.email, name, campaign.spec.timezone, attributes=attributes, language=language
        )
        variant = pick_variant(compiled, key, request.query_params.get("variant"))
        return personalise(compiled, key, recipient, pages.links(campaign), variant), campaign

    def folder_file(request: Request) -> Response:
        path = _safe_file(studio.folder, request.path_params["path"])
        if path is None:
            return _not_found()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return _not_found()
        return PlainTextResponse(text, headers=COMMON_HEADERS)

    def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "remote-image.svg":
            return _remote_image(request.query_params.get("host", ""))
        if name not in _ASSETS:
            return _not_found()
        body = (STUDIO_TEMPLATES / name).read_bytes()
        return Response(body, media_type=_ASSETS[name], headers=COMMON_HEADERS)

    def version(_request: Request) -> Response:
        snapshot = studio.snapshot
        error = snapshot.error
        return JSONResponse(
            {"version": snapshot.version, "error": error.where if error else None},
            headers=COMMON_HEADERS,
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
            headers={**COMMON_HEADERS, "X-Accel-Buffering": "no"},
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
            return PlainTextResponse("Forbidden", 403, headers=COMMON_HEADERS)
        step, to = fields.get("step", ""), fields.get("to", "")
        try:
            language = fields.get("lang") or None
            variant = fields.get("variant") or None
            notice = await run_in_threadpool(studio.send_test, step, to, language, variant)
            ok = True
        except Exception as exc:  # a sender's failure is shown, never a traceback page
            if not isinstance(exc, DripmailError):
                log.error("send test failed", exc_info=exc)
            reason = exc.message if isinstance(exc, InputError) else str(exc)
            notice, ok = f"Not sent: {reason}", False
        if wants_json:  # the request worked either way; whether the email went is in `ok`
            return JSONResponse({"ok": ok, "message": notice}, headers=COMMON_HEADERS)
        kept = ("name", "tz", "lang", "variant")
        params = {"step": step, **{k: v for k, v in fields.items() if k in kept}}
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
    # No redirect from `/x/` to `/x` built from the Host header (listening on every
    # address, the guard lets any Host through): such paths are 404.
    app.router.redirect_slashes = False
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
    return Response(svg, media_type="image/svg+xml", headers=COMMON_HEADERS)
