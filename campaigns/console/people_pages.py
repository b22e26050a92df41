"""The people page (admins): everyone with an account, add one, disable, reset.

Routes: GET /people, POST /people (add: shows the set-up link once),
POST /people/{id}/disable, POST /people/{id}/reset. Each change is audited with the
acting admin's id. An admin cannot disable themselves (someone must stay able to sign in).
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from campaigns.console import accounts
from campaigns.console.guard import Call, requires
from campaigns.console.permissions import Permission, Role
from campaigns.errors import InputError, NotFoundError

__all__ = ["ROUTES"]


def _page(call: Call, status: int = 200, **context: object) -> Response:
    context.setdefault("problem", None)
    context.setdefault("link", None)
    context.setdefault("notice", None)
    context.setdefault("typed", None)
    context.setdefault("added", None)
    return call.render(
        "people.html.j2",
        status,
        active="people",
        people=accounts.list_users(call.store),
        roles=[role.value for role in Role],
        **context,
    )


def _base_url(call: Call) -> str:
    """The console's address as this admin reaches it (DRIPMAIL_CONSOLE_URL when set)."""
    configured = call.console.settings.console_url
    return configured or str(call.request.base_url)


def _user_id(call: Call) -> int | None:
    try:
        return int(call.request.path_params["user_id"])
    except ValueError:
        return None


@requires(Permission.MANAGE_USERS)
def people(call: Call) -> Response:
    return _page(call)


@requires(Permission.MANAGE_USERS)
def add(call: Call) -> Response:
    assert call.user is not None
    try:
        made = accounts.add_user(
            call.store,
            call.form.get("email", ""),
            call.form.get("role", ""),
            name=call.form.get("name"),
            now=call.now,
            actor=call.user.id,
        )
    except InputError as exc:
        return _page(call, 422, problem=exc.message, typed=call.form)
    return _page(
        call,
        link=accounts.setup_url(_base_url(call), made.token),
        added=made.user,
    )


@requires(Permission.MANAGE_USERS)
def disable(call: Call) -> Response:
    assert call.user is not None
    user_id = _user_id(call)
    if user_id == call.user.id:
        return _page(call, 422, problem="You cannot disable your own account.")
    try:
        done = accounts.disable_user(call.store, user_id or 0, now=call.now, actor=call.user.id)
    except NotFoundError:
        return _page(call, 404, problem="No such person.")
    return _page(call, notice=f"Disabled {done.label}.")


@requires(Permission.MANAGE_USERS)
def reset(call: Call) -> Response:
    assert call.user is not None
    try:
        made = accounts.reset_user(
            call.store, _user_id(call) or 0, now=call.now, actor=call.user.id
        )
    except NotFoundError:
        return _page(call, 404, problem="No such person.")
    return _page(call, link=accounts.setup_url(_base_url(call), made.token), added=made.user)


ROUTES = [
    Route("/people", people, methods=["GET"]),
    Route("/people", add, methods=["POST"]),
    Route("/people/{user_id}/disable", disable, methods=["POST"]),
    Route("/people/{user_id}/reset", reset, methods=["POST"]),
]
