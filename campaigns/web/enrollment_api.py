"""The Enrollment API of `dripmail serve`: look up, inspect and cancel enrollments, and tag
contacts, for a clinic's booking system or CRM.

    GET    /api/v1/enrollments?email=E       scope read: the enrollments of exactly that address
    GET    /api/v1/enrollments/{id}          scope read: state and planned calendar
    DELETE /api/v1/enrollments/{id}          scope enroll: cancel pending emails (idempotent)
    POST   /api/v1/contacts/{id}/tags        scope enroll: {"add": [...], "remove": [...]}

The address is matched exactly (normalised as stored, campaigns/planning/contacts.py):
no listing, no search, no pattern; an address no contact holds answers 200 with an
empty list, the same as a contact with no enrollment, so the answer tells a caller
only what their own records already name. Ids are positive integers within the
INTEGER range (else 404, as for an unknown id). Errors are the sign-up API's
`{"error": ..., "field": ...}` (web/api_errors.py); tokens are checked by web/bearer.py.
No address reaches a log line, at any level: logs name enrollment and contact ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.errors import ConfigurationError, InputError, NotFoundError
from campaigns.planning.contacts import normalise_tag, retag_contact
from campaigns.planning.enrollment_state import cancel_enrollment, enrollment_state, enrollments_of
from campaigns.planning.signups import control_character
from campaigns.settings import Settings
from campaigns.storage.store import Store
from campaigns.web.api_errors import ApiError, json_object, read_capped
from campaigns.web.api_tokens import ApiScope
from campaigns.web.bearer import Bearer

log = logging.getLogger("dripmail.api")

MAX_ID = 2**31 - 1  # the INTEGER columns' range (PostgreSQL's int4)
MAX_TAGS_BODY = 16 * 1024
MAX_TAGS = 100  # per list in one request


Tag = Annotated[str, Field(max_length=64)]


class TagsIn(BaseModel):
    """The tags body: tags to add and to remove (either may be left out)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    add: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    remove: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)


def path_id(request: Request, what: str) -> int:
    """The `{id}` of the path: ApiError 404 unless it is an id a row can have."""
    text = request.path_params["id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise ApiError(404, f"no such {what}")
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise ApiError(404, f"no such {what}")
    return value


def _email_param(request: Request) -> str:
    names = set(request.query_params.keys())
    if names - {"email"}:
        raise ApiError(422, "unknown parameter", sorted(names - {"email"})[0][:64])
    values = request.query_params.getlist("email")
    if len(values) != 1 or not values[0].strip():
        raise ApiError(422, "give exactly one address: ?email=...", "email")
    if len(values[0]) > 320 or control_character(values[0]):
        raise ApiError(422, "not a valid email address", "email")
    return values[0]


def _parse_tags(raw: bytes) -> TagsIn:
    data = json_object(raw)
    try:
        body = TagsIn.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise ApiError(422, message, where) from None
    if not body.add and not body.remove:
        raise ApiError(422, "give tags to add or to remove", "add")
    for where, tags in (("add", body.add), ("remove", body.remove)):
        for index, tag in enumerate(tags):
            try:
                normalise_tag(tag)
            except ValueError as exc:
                raise ApiError(422, str(exc), f"{where}.{index}") from None
    return body


def enrollment_routes(
    store: Store, *, settings: Settings, clock: Callable[[], datetime]
) -> list[Route]:
    """The API's routes, for `campaigns.web.app.create_app`."""
    bearer = Bearer(store, settings, clock)

    async def find(request: Request) -> Response:
        try:
            await bearer.require(request, ApiScope.READ)
            email = _email_param(request)
            try:
                found = await run_in_threadpool(enrollments_of, store, email)
            except InputError as exc:
                raise ApiError(422, exc.message, "email") from None
        except ApiError as exc:
            log.info("enrollment lookup refused: %d %s", exc.status, exc.field or "")
            return exc.response()
        log.debug("enrollment lookup: %d found", len(found))
        return JSONResponse({"enrollments": found})

    async def show(request: Request) -> Response:
        try:
            await bearer.require(request, ApiScope.READ)
            enrollment_id = path_id(request, "enrollment")
            try:
                state = await run_in_threadpool(enrollment_state, store, enrollment_id)
            except NotFoundError as exc:
                raise ApiError(404, str(exc)) from None
        except ApiError as exc:
            log.info("enrollment read refused: %d", exc.status)
            return exc.response()
        return JSONResponse(state)

    async def cancel(request: Request) -> Response:
        try:
            await bearer.require(request, ApiScope.ENROLL)
            enrollment_id = path_id(request, "enrollment")
            try:
                result = await run_in_threadpool(
                    lambda: cancel_enrollment(store, enrollment_id, now=clock())
                )
            except NotFoundError as exc:
                raise ApiError(404, str(exc)) from None
            except ConfigurationError as exc:  # rows held by workers: nothing changed
                raise ApiError(503, str(exc)) from None
        except ApiError as exc:
            log.info("enrollment cancel refused: %d", exc.status)
            return exc.response()
        return JSONResponse(result.as_dict())

    async def tag(request: Request) -> Response:
        try:
            await bearer.require(request, ApiScope.ENROLL)
            contact_id = path_id(request, "contact")
            body = _parse_tags(await read_capped(request, MAX_TAGS_BODY))
            try:
                tags = await run_in_threadpool(
                    retag_contact, store, contact_id, body.add, body.remove
                )
            except NotFoundError as exc:
                raise ApiError(404, str(exc)) from None
        except ApiError as exc:
            log.info("tags refused: %d %s", exc.status, exc.field or "")
            return exc.response()
        log.info("tags: contact %d now has %d", contact_id, len(tags))
        return JSONResponse({"contact_id": contact_id, "tags": tags})

    return [
        Route("/api/v1/enrollments", find, methods=["GET"]),
        Route("/api/v1/enrollments/{id}", show, methods=["GET"]),
        Route("/api/v1/enrollments/{id}", cancel, methods=["DELETE"]),
        Route("/api/v1/contacts/{id}/tags", tag, methods=["POST"]),
    ]
