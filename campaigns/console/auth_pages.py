"""The sign-in, authenticator-code, set-up and sign-out pages.

Routes: GET/POST /sign-in, GET/POST /sign-in/code, GET/POST /setup/{token},
POST /sign-out. A failed sign-in always gets the same page, whatever failed.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import Route

from campaigns.console import sessions, signin
from campaigns.console.guard import Call, public, requires
from campaigns.console.passwords import MIN_LENGTH
from campaigns.console.permissions import Permission
from campaigns.console.setup import complete_setup, open_setup
from campaigns.errors import InputError
from campaigns.storage import audit

__all__ = ["ROUTES"]

FAILED = (
    "Sign-in failed. Check the email and password. After 5 failed attempts, sign-in "
    "waits 15 minutes."
)
CODE_FAILED = "That code did not work. Use the newest code from your app, or a recovery code."
NEEDS_SETUP = (
    "Your role needs an authenticator app, and this account has none yet. "
    "Ask an administrator for a new set-up link."
)


def _next(call: Call) -> str:
    """Where to go after signing in: a path on this console only (no open redirect)."""
    target = call.form.get("next") or call.request.query_params.get("next") or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:500]


def _two_factor_mode(call: Call) -> str | None:
    return call.console.settings.console_2fa


@public
def sign_in_form(call: Call) -> Response:
    if call.user is not None:
        return call.redirect(_next(call))
    return call.render("signin.html.j2", next=_next(call), email="", problem=None)


@public
def sign_in(call: Call) -> Response:
    email = call.form.get("email", "")[:320]
    result = signin.password_step(
        call.store,
        email,
        call.form.get("password", ""),
        call.client,
        now=call.now,
        two_factor=_two_factor_mode(call),
    )
    if result.outcome in (signin.Outcome.FAILED, signin.Outcome.NEEDS_SETUP):
        problem = FAILED if result.outcome is signin.Outcome.FAILED else NEEDS_SETUP
        return call.render("signin.html.j2", next=_next(call), email=email, problem=problem)
    if call.session is not None:  # whoever was signed in on this browser is signed out
        with call.store.begin() as conn:
            sessions.revoke(conn, call.session.id_hash, call.now)
    if result.outcome is signin.Outcome.NEEDS_CODE:
        target = "/sign-in/code?next=" + quote(_next(call), safe="/")
    else:
        target = _next(call)
    return call.set_session(call.redirect(target), result.session_id)


@public
def code_form(call: Call) -> Response:
    if call.session is None or not call.session.mfa_pending:
        return call.redirect("/sign-in")
    return call.render("code.html.j2", next=_next(call), problem=None)


@public
def code(call: Call) -> Response:
    pending = call.session
    if pending is None or not pending.mfa_pending:
        return call.redirect("/sign-in")
    result = signin.code_step(
        call.store, pending, call.form.get("code", "")[:64], call.client, now=call.now
    )
    if result.outcome is not signin.Outcome.SIGNED_IN:
        return call.render("code.html.j2", next=_next(call), problem=CODE_FAILED)
    return call.set_session(call.redirect(_next(call)), result.session_id)


def _setup_page(call: Call, problem: str | None = None, status: int = 200) -> Response:
    enrolment = open_setup(call.store, call.request.path_params["token"], now=call.now)
    if enrolment is None:
        return call.render("setup_invalid.html.j2", 404)
    required = signin.two_factor_required(enrolment.user.role, _two_factor_mode(call))
    return call.render(
        "setup.html.j2",
        status,
        enrolment=enrolment,
        code_required=required,
        min_length=MIN_LENGTH,
        problem=problem,
    )


@public
def setup_form(call: Call) -> Response:
    return _setup_page(call)


@public
def setup(call: Call) -> Response:
    token = call.request.path_params["token"]
    enrolment = open_setup(call.store, token, now=call.now)
    if enrolment is None:
        return call.render("setup_invalid.html.j2", 404)
    try:
        codes = complete_setup(
            call.store,
            token,
            call.form.get("password", ""),
            call.form.get("confirm", ""),
            call.form.get("code", "")[:64],
            now=call.now,
            code_required=signin.two_factor_required(enrolment.user.role, _two_factor_mode(call)),
        )
    except InputError as exc:
        return _setup_page(call, exc.message, 422)
    if codes is None:
        return call.render("setup_invalid.html.j2", 404)
    return call.render("setup_done.html.j2", codes=codes)


@requires(Permission.OWN_SESSION)
def sign_out(call: Call) -> Response:
    assert call.session is not None and call.user is not None
    with call.store.begin() as conn:
        sessions.revoke(conn, call.session.id_hash, call.now)
        audit.record(conn, call.user.id, "sign-out", "user", call.user.id, at=call.now)
    return call.set_session(call.redirect("/sign-in"), None)


ROUTES = [
    Route("/sign-in", sign_in_form, methods=["GET"]),
    Route("/sign-in", sign_in, methods=["POST"]),
    Route("/sign-in/code", code_form, methods=["GET"]),
    Route("/sign-in/code", code, methods=["POST"]),
    Route("/setup/{token}", setup_form, methods=["GET"]),
    Route("/setup/{token}", setup, methods=["POST"]),
    Route("/sign-out", sign_out, methods=["POST"]),
]
