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
from urllib.parse import parse_qsl, quote, urlsplit

from jinja2 import Environment
from sqlalchemy import Row
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from campaigns.console import sessions
from campaigns.console.permissions import Permission, allowed
from campaigns.console.uploads import Upload, parse_multipart
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
MAX_FORM = 64 * 1024
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # A set-up link's token never leaves in a Referer to another site. (Not no-referrer:
    # with it browsers send `Origin: null` on a form POST, which the origin check refuses.)
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
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
    secure: bool  # cookies marked Secure (the console is not on a loopback address)
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))  # pre-sign-in CSRF

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
    pre_cookie: str | None = None  # the sign-in pages' CSRF cookie, made when missing
    permission: Permission | str = PUBLIC
    files: dict[str, list[Upload]] = field(default_factory=dict)  # a multipart POST's files

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


def _same_origin(request: Request) -> bool:
    """Defence in depth beside the token: a browser's Origin and Sec-Fetch-Site headers."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not every client sends it; the token still has to match
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _read_form(
    request: Request, upload_limit: int | None = None
) -> tuple[dict[str, str], dict[str, list[Upload]]] | None:
    """The POST body's fields (and files, on a page taking uploads); None when too large
    or not a form. Only pages declaring `upload_limit` accept multipart/form-data."""
    limit = upload_limit or MAX_FORM
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    if upload_limit and kind == "multipart/form-data":
        return parse_multipart(body, content_type)
    if body and kind != "application/x-www-form-urlencoded":
        return None
    if len(body) > MAX_FORM:
        return None
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return None
    return dict(fields), {}


def _csrf_ok(call: Call) -> bool:
    sent = call.form.get(CSRF_FIELD) or call.request.headers.get(CSRF_HEADER) or ""
    if not _same_origin(call.request) or not sent:
        return False
    if call.session is not None and secrets.compare_digest(sent, call.session.csrf_token):
        return True
    pre = call.request.cookies.get(call.console.pre_cookie)
    return (
        call.permission == PUBLIC
        and bool(pre)
        and secrets.compare_digest(sent, call.console.pre_token(pre))
    )


def _guarded(
    page: Page, permission: Permission | str, upload_limit: int | None = None
) -> Callable[[Request], Any]:
    def dispatch(
        request: Request, form: dict[str, str], files: dict[str, list[Upload]]
    ) -> Response:
        console: Console = request.app.state.console
        now = console.clock()
        session = sessions.resolve(console.store, request.cookies.get(console.cookie), now)
        call = Call(request, console, session, form, now, permission=permission, files=files)
        if permission != PUBLIC:
            user = call.user
            if user is None:
                if request.method == "GET":
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
        form: dict[str, str] = {}
        files: dict[str, list[Upload]] = {}
        if request.method == "POST":
            read = await _read_form(request, upload_limit)
            if read is None:
                return _plain("Refused: not a form this console sent, or too large.", 400)
            form, files = read
        return await run_in_threadpool(dispatch, request, form, files)

    endpoint.permission = permission  # type: ignore[attr-defined]  # read by the route test
    endpoint.__name__ = page.__name__
    endpoint.__doc__ = page.__doc__
    return endpoint


def requires(
    permission: Permission, *, upload_limit: int | None = None
) -> Callable[[Page], Callable[[Request], Any]]:
    """The page needs a signed-in user whose role holds `permission`. With `upload_limit`
    (bytes) its POSTs may also be multipart/form-data up to that size (`call.files`)."""
    return lambda page: _guarded(page, permission, upload_limit)


def public(page: Page) -> Callable[[Request], Any]:
    """The page is open to anyone (its POSTs still need the CSRF token)."""
    return _guarded(page, PUBLIC)
