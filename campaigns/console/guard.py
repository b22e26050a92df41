"""Every console request passes here: who is signed in, what their role may do, CSRF.

A page is a plain function of one `Call` wrapped by `requires(Permission.X)` (signed in,
holding X) or `public` (the sign-in and set-up pages). The wrapper reads the form, finds
the session, refuses what the role may not do (403), and on every POST checks the CSRF
token and the request's origin before the page runs; a refused request changes nothing.
Pages run in a worker thread (the store is synchronous).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment
from sqlalchemy import Row
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from campaigns.console import sessions
from campaigns.console.forms import Form, Upload, read_form
from campaigns.console.import_jobs import ImportJobs
from campaigns.console.permissions import Permission, allowed
from campaigns.settings import Settings
from campaigns.storage.store import Store

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "PUBLIC",
    "Call",
    "Console",
    "Page",
    "public",
    "requires",
]

log = logging.getLogger("dripmail.console")

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PUBLIC = "public"  # the `permission` of a page anyone may open (sign-in, set-up, assets)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A set-up link's token never leaves in a Referer to another site. (Not no-referrer:
    # with it browsers send `Origin: null` on a form POST, which the origin check refuses.)
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
        # The editor's and reviewer's previews: sandboxed frames of console URLs only.
        "frame-src 'self'; "
        # An import's progress page asks its status URL (console-import.js).
        "connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


@dataclass
class Console:
    """What every page needs: the store, settings, the clock, templates, cookie policy."""

    store: Store
    settings: Settings
    clock: Callable[[], datetime]
    templates: Environment
    secure: bool  # cookies marked Secure (not on a loopback address, or an https URL set)
    public_host: str | None = None  # DRIPMAIL_CONSOLE_URL's host:port, the proxy's name
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))  # pre-sign-in CSRF
    imports: ImportJobs = field(default_factory=ImportJobs)  # contact imports running or run

    @property
    def cookie(self) -> str:
        # __Host-: only this host, path /, Secure (browsers enforce it).
        return "__Host-dripmail_console" if self.secure else "dripmail_console"

    @property
    def pre_cookie(self) -> str:
        return "__Host-dripmail_console_pre" if self.secure else "dripmail_console_pre"

    def pre_token(self, value: str) -> str:
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()


@dataclass
class Call:
    """One request as a page sees it."""

    request: Request
    console: Console
    session: sessions.Session | None
    form: dict[str, str]
    now: datetime
    files: dict[str, Upload] = field(default_factory=dict)  # multipart uploads, by field
    pre_cookie: str | None = None  # the sign-in pages' CSRF cookie, made when missing
    permission: Permission | str = PUBLIC

    @property
    def store(self) -> Store:
        return self.console.store

    @property
    def user(self) -> Row | None:
        """The signed-in user (None on public pages when nobody is)."""
        if self.session is None or self.session.mfa_pending:
            return None
        return self.session.user

    @property
    def client(self) -> str:
        return self.request.client.host if self.request.client else "unknown"

    @property
    def csrf_token(self) -> str:
        """The token this page's forms carry (the session's, else the pre-sign-in one)."""
        if self.session is not None:
            return self.session.csrf_token
        if self.pre_cookie is None:
            self.pre_cookie = self.request.cookies.get(self.console.pre_cookie) or (
                secrets.token_urlsafe(24)
            )
        return self.console.pre_token(self.pre_cookie)

    def can(self, permission: Permission) -> bool:
        user = self.user
        return user is not None and allowed(user.role, permission)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        page = self.console.templates.get_template(template)
        context.setdefault("active", None)  # the navigation entry to mark as this page
        body = page.render(
            call=self, user=self.user, csrf_token=self.csrf_token, P=Permission, **context
        )
        return self.finish(HTMLResponse(body, status))

    def redirect(self, path: str) -> Response:
        return self.finish(RedirectResponse(path, 303))

    def set_session(self, response: Response, session_id: str | None) -> Response:
        """Set (or, with None, clear) the session cookie."""
        name = self.console.cookie
        if session_id is None:
            response.delete_cookie(
                name, path="/", secure=self.console.secure, httponly=True, samesite="strict"
            )
        else:
            response.set_cookie(
                name,
                session_id,
                path="/",
                secure=self.console.secure,
                httponly=True,
                samesite="strict",
            )
        return response

    def finish(self, response: Response) -> Response:
        response.headers.update(HEADERS)
        if (
            self.pre_cookie is not None
            and self.request.cookies.get(self.console.pre_cookie) != self.pre_cookie
        ):
            response.set_cookie(
                self.console.pre_cookie,
                self.pre_cookie,
                path="/",
                secure=self.console.secure,
                httponly=True,
                samesite="strict",
            )
        return response


Page = Callable[[Call], Response]


def _plain(text: str, status: int) -> Response:
    return PlainTextResponse(text, status, headers=HEADERS)


def _same_origin(request: Request, public_host: str | None) -> bool:
    """Defence in depth beside the token: a browser's Origin and Sec-Fetch-Site headers.

    The Origin must name the host the request was sent to, or the console's public
    address (DRIPMAIL_CONSOLE_URL) when an https proxy in front passes another Host.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not every client sends it; the token still has to match
    netloc = urlsplit(origin).netloc
    return netloc == request.headers.get("host", "") or (
        public_host is not None and netloc == public_host
    )


def _csrf_ok(call: Call) -> bool:
    sent = call.form.get(CSRF_FIELD) or call.request.headers.get(CSRF_HEADER) or ""
    if not _same_origin(call.request, call.console.public_host) or not sent:
        return False
    if call.session is not None and secrets.compare_digest(sent, call.session.csrf_token):
        return True
    pre = call.request.cookies.get(call.console.pre_cookie)
    return (
        call.permission == PUBLIC
        and bool(pre)
        and secrets.compare_digest(sent, call.console.pre_token(pre))
    )


def _guarded(page: Page, permission: Permission | str) -> Callable[[Request], Any]:
    def dispatch(request: Request, form: Form) -> Response:
        console: Console = request.app.state.console
        now = console.clock()
        session = sessions.resolve(console.store, request.cookies.get(console.cookie), now)
        call = Call(request, console, session, form.fields, now, form.files, permission=permission)
        if permission != PUBLIC:
            user = call.user
            if user is None:
                if request.method in ("GET", "HEAD"):
                    return call.redirect("/sign-in?next=" + quote(request.url.path, safe="/"))
                return _plain("Signed out: sign in again.", 403)
            if not allowed(user.role, Permission(permission)):
                log.info("refused %s %s to user %s", request.method, request.url.path, user.id)
                return call.render("refused.html.j2", 403)
        if request.method == "POST" and not _csrf_ok(call):
            log.info("refused %s %s: CSRF token or origin", request.method, request.url.path)
            return _plain(
                "Refused: the form was stale or came from another site. Reload the page.", 403
            )
        return page(call)

    async def endpoint(request: Request) -> Response:
        form = Form()
        if request.method == "POST":
            read = await read_form(request)
            if read is None:
                return _plain("Refused: not a form this console sent.", 400)
            form = read
        return await run_in_threadpool(dispatch, request, form)

    endpoint.permission = permission  # type: ignore[attr-defined]  # read by the route test
    endpoint.__name__ = page.__name__
    endpoint.__doc__ = page.__doc__
    return endpoint


def requires(permission: Permission) -> Callable[[Page], Callable[[Request], Any]]:
    """The page needs a signed-in user whose role holds `permission`."""
    return lambda page: _guarded(page, permission)


def public(page: Page) -> Callable[[Request], Any]:
    """The page is open to anyone (its POSTs still need the CSRF token)."""
    return _guarded(page, PUBLIC)
