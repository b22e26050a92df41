"""The events API of `dripmail serve`: POST /api/v1/events (a contact reached a goal).

A booking system posts `{"email": ..., "event": "booked"}` (or `contact_id` instead of
`email`; optional `at`, ISO 8601, no offset meaning the contact's zone, and `event_id`,
its own id for the event). A bearer token with the `events` scope guards it
(campaigns/web/bearer.py; 503 while the API has no token at all).
The body is read with a 64 KiB cap (413 before it is parsed). Answers: 202 with what
the event did (`converted` enrollments, `cancelled` emails; a repeat `event_id` is
`"duplicate": true` and changes nothing); 401 without the token; 404 for an unknown
contact; 422 naming the field for a malformed or unused event name, a bad `at`, an
unknown field; 400 for a body that is not JSON; 503 when the contact's emails stayed
locked by workers for about a minute (nothing recorded: send it again). Nothing is
changed on any error, and the address never reaches a log line. The work is
campaigns/planning/conversions.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.errors import ConfigurationError, InputError, NotFoundError
from campaigns.planning.conversions import ContactEvent, EventResult, record_event
from campaigns.planning.signups import control_character
from campaigns.settings import Settings
from campaigns.storage.store import Store
from campaigns.web.api_errors import MAX_API_BODY, ApiError, json_object, read_capped
from campaigns.web.api_tokens import ApiScope
from campaigns.web.bearer import Bearer

log = logging.getLogger("dripmail.api")

MAX_EVENT_BODY = MAX_API_BODY  # 64 KiB


class EventIn(BaseModel):
    """The JSON body: one of `email` and `contact_id`; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)
    email: str | None = Field(default=None, max_length=320)
    contact_id: int | None = Field(default=None, ge=1, le=2**62)
    event: str = Field(max_length=200)
    at: str | None = Field(default=None, max_length=64)
    event_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_contact(self) -> EventIn:
        if (self.email is None) == (self.contact_id is None):
            raise ValueError("give the contact's email or contact_id (one of them)")
        return self


def _parse(raw: bytes) -> EventIn:
    data = json_object(raw)
    try:
        body = EventIn.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "email"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise ApiError(422, message.removeprefix("Value error, "), where) from None
    for where, text in (
        ("email", body.email),
        ("event", body.event),
        ("at", body.at),
        ("event_id", body.event_id),
    ):
        found = control_character(text)
        if found:
            raise ApiError(422, f"holds the control character {found}: remove it", where)
    return body


def post_event(store: Store, body: EventIn, *, now: datetime) -> EventResult:
    """Record the event; ApiError for a refusal (404, 422)."""
    try:
        return record_event(
            store,
            ContactEvent(body.event, body.at, body.event_id),
            email=body.email,
            contact_id=body.contact_id,
            source="api",
            now=now,
        )
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except InputError as exc:
        raise ApiError(422, exc.message, exc.field) from None
    except ConfigurationError as exc:  # the contact's rows stayed busy: nothing recorded
        raise ApiError(503, str(exc)) from None


def event_routes(store: Store, *, settings: Settings, clock: Callable[[], datetime]) -> list[Route]:
    """The API's routes, for `campaigns.web.app.create_app`."""
    bearer = Bearer(store, settings, clock)

    async def create(request: Request) -> Response:
        try:
            await bearer.require(request, ApiScope.EVENTS)
            raw = await read_capped(request, MAX_EVENT_BODY)
            body = _parse(raw)
            result = await run_in_threadpool(post_event, store, body, now=clock())
        except ApiError as exc:
            log.info("event refused: %d %s", exc.status, exc.field or "")
            return exc.response()
        return JSONResponse(result.as_dict(), status_code=202)

    return [Route("/api/v1/events", create, methods=["POST"])]
