"""`dripmail console`: the marketing console as its own Starlette app, apart from `serve`.

The public app (`dripmail serve`) faces the internet and knows none of these routes; the
console is meant for staff, behind an https proxy or on this machine only. Pages are
server-rendered from templates/console with the console's own CSS and two small
progressive scripts (the editor's preview, an import's progress); no CDN, no web font,
and every page works without script. Every route is registered from a page module's
ROUTES, each page wrapped by campaigns.console.guard (`requires(Permission.X)` or
`public`), so none is reachable without its declared permission.

To add pages: write a module with functions of one `Call`, each decorated with
`@requires(Permission.X)`, list them in its ROUTES, and add that list to PAGE_ROUTES.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

import templates
from campaigns.console import (
    auth_pages,
    campaign_pages,
    contact_pages,
    editor_pages,
    import_pages,
    new_pages,
    newsletter_pages,
    overview_pages,
    people_pages,
    review_pages,
    settings_pages,
    stats_pages,
)
from campaigns.console.guard import HEADERS, Call, Console, public
from campaigns.monitoring.health import DatabaseCheck
from campaigns.settings import Settings
from campaigns.storage.store import Store

__all__ = ["CONSOLE_TEMPLATES", "DEFAULT_HOST", "DEFAULT_PORT", "PAGE_ROUTES", "create_app"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8030
CONSOLE_TEMPLATES = templates.DIRECTORY / "console"
_ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console-editor.js": "text/javascript; charset=utf-8",
    "console-frames.js": "text/javascript; charset=utf-8",
    "console-import.js": "text/javascript; charset=utf-8",
}
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}

# Every page module's routes; a console route is declared here and nowhere else.
PAGE_ROUTES: list[BaseRoute] = [
    *auth_pages.ROUTES,
    *overview_pages.ROUTES,
    *people_pages.ROUTES,
    *contact_pages.ROUTES,
    *import_pages.ROUTES,
    *newsletter_pages.ROUTES,
    *stats_pages.ROUTES,
    *new_pages.ROUTES,  # before campaign_pages: /campaigns/new is not a folder named "new"
    *campaign_pages.ROUTES,
    *editor_pages.ROUTES,
    *review_pages.ROUTES,
    *settings_pages.ROUTES,
]


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (then cookies go without Secure: no TLS there)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def page_environment() -> Environment:
    """Jinja for the console's pages: autoescaped, so typed text never becomes markup."""
    return Environment(
        loader=FileSystemLoader(CONSOLE_TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@public
def asset(call: Call) -> Response:
    name = call.request.path_params["name"]
    if name not in _ASSETS:
        return _not_found()
    body = (CONSOLE_TEMPLATES / name).read_bytes()
    return Response(
        body, media_type=_ASSETS[name], headers={**HEADERS, "Cache-Control": "no-cache"}
    )


def _not_found(_request: Request | None = None, _exc: Exception | None = None) -> Response:
    return PlainTextResponse("Not found", 404, headers=HEADERS)


class _HostGuard:
    """On a loopback address, only requests naming this machine in Host are served, so a
    web page elsewhere cannot point a DNS name at 127.0.0.1 and use the console."""

    def __init__(self, app: ASGIApp, allowed: set[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.allowed is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if (urlsplit(f"//{host}").hostname or "") not in self.allowed:
                await PlainTextResponse("Unknown host", 400, headers=HEADERS)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    store: Store,
    *,
    settings: Settings | None = None,
    clock: Callable[[], datetime] | None = None,
    host: str = DEFAULT_HOST,
) -> Starlette:
    """The console on `store`. `clock` (default: the real one) is what sessions, lockout
    and set-up links are measured on; tests give their own. `host` is the address it is
    bound to: on loopback, cookies go without Secure (unless DRIPMAIL_CONSOLE_URL is an
    https address: an https proxy in front) and the Host header must name this machine
    or DRIPMAIL_CONSOLE_URL's host."""
    settings = settings or store.settings
    address = urlsplit(settings.console_url or "")
    console = Console(
        store=store,
        settings=settings,
        clock=clock or (lambda: datetime.now(UTC)),
        templates=page_environment(),
        secure=not is_loopback(host) or address.scheme == "https",
        public_host=address.netloc or None,
    )
    database = DatabaseCheck(store)

    @public
    def health(_call: Call) -> Response:
        """`GET /healthz`: "ok" when the database answers, else 503 and why (a probe's)."""
        problem = database.problem()
        headers = {**HEADERS, "Cache-Control": "no-store"}
        return PlainTextResponse(problem or "ok", 503 if problem else 200, headers=headers)

    routes = [
        *PAGE_ROUTES,
        Route("/_console/{name}", asset, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    app.state.console = console
    # On loopback: this machine's names, and the public one an https proxy passes on.
    allowed = _LOOPBACK_NAMES | ({address.hostname} if address.hostname else set())
    app.add_middleware(_HostGuard, allowed=allowed if is_loopback(host) else None)
    return app
