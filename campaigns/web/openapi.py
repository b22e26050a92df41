"""The OpenAPI 3.1 description of every /api/v1 route, written as data (served at
GET /api/v1/openapi.json, without a token: it describes, it holds nothing of anyone).

Written by hand, not generated: the routes are plain Starlette handlers, and what
they promise (status codes, scopes, error fields) is the document's to state.
tests/test_openapi.py checks it against the OpenAPI 3.1 schema, against the app's
routes (every /api/v1 path and method, no more, no fewer) and against the answers
the real app gives to the examples written here.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.storage.statuses import DELIVERY_STATES, DeliveryStatus, EnrollmentStatus

OPENAPI_PATH = "/api/v1/openapi.json"

_UTC = {"type": "string", "format": "date-time", "description": "UTC, ISO 8601 with Z"}
_NULLABLE_UTC = {"type": ["string", "null"], "format": "date-time"}
_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: str, example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": _ref(schema)}
    if example is not None:
        content["example"] = example
    return {"content": {"application/json": content}}


def _answer(description: str, schema: str, example: Any = None) -> dict[str, Any]:
    return {"description": description, **_json(schema, example)}


def _error(description: str, example: dict[str, str] | None = None) -> dict[str, Any]:
    return _answer(description, "Error", example)


_UNAUTHORISED = _error(
    "No token, or an unknown or revoked one (with `WWW-Authenticate: Bearer`)",
    {"error": "a valid bearer token is required"},
)
_FORBIDDEN = _error(
    "The token lacks the route's scope", {"error": "this token does not have the read scope"}
)
_OFF = _error("The API is off: no DRIPMAIL_API_TOKEN and no token made, or rows busy")
_BAD_JSON = _error("The body is not JSON", {"error": "the body is not JSON", "field": "body"})
_TOO_BIG = _error("The body is over the size cap")
_INVALID = _error("A field is wrong (named in `field`)")
_NOT_FOUND = _error("Unknown id", {"error": "no such enrollment"})


def _path_id(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"The {what}'s id (an unknown or out-of-range id is 404)",
        "schema": _ID,
        "example": 2,
    }


def _operation(summary: str, scope: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"bearer": [scope]}],
        "x-scope": scope,
        **more,
        "responses": {**responses, "401": _UNAUTHORISED, "403": _FORBIDDEN, "503": _OFF},
    }


SIGNUP_EXAMPLE = {
    "email": "pat@example.com",
    "first_name": "Pat",
    "timezone": "Europe/London",
    "campaign": "ketamine-and-sleep",
    "signed_up_at": "2026-03-02T16:45",
    "consent": {"source": "clinic website form", "text": "Yes, email me the sleep series"},
}

_CALENDAR_ENTRY = {
    "step": "welcome",
    "status": str(DeliveryStatus.SCHEDULED),
    "due_utc": "2026-03-03T09:00:00Z",
    "due_local": "2026-03-03T09:00:00+00:00",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string", "description": "The field at fault, when one is"},
        },
        "additionalProperties": False,
    },
    "SignUp": {
        "type": "object",
        "required": ["email", "campaign", "consent"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "maxLength": 320},
            "first_name": {"type": ["string", "null"], "maxLength": 200},
            "timezone": {"type": ["string", "null"], "maxLength": 64, "description": "IANA"},
            "campaign": {"type": "string", "maxLength": 64},
            "signed_up_at": {
                "type": ["string", "null"],
                "maxLength": 64,
                "description": "ISO 8601; no offset means the contact's zone",
            },
            "consent": {
                "type": "object",
                "required": ["source", "text"],
                "additionalProperties": False,
                "properties": {
                    "source": {"type": "string", "minLength": 1, "maxLength": 500},
                    "text": {"type": "string", "minLength": 1, "maxLength": 5000},
                },
            },
            "attributes": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "string", "maxLength": 200},
                "maxProperties": 50,
            },
            "language": {"type": ["string", "null"], "maxLength": 35, "description": "BCP 47"},
            "confirm": {
                "type": ["string", "null"],
                "enum": ["single", "double", None],
                "description": "double: email a confirmation first, plan the sequence when "
                "the patient confirms (default: the campaign's `confirm`)",
            },
        },
    },
    "SignUpAwaiting": {
        "type": "object",
        "required": ["campaign", "status"],
        "properties": {
            "campaign": {"type": "string"},
            "status": {"type": "string", "enum": ["awaiting_confirmation"]},
        },
        "additionalProperties": False,
    },
    "SignUpCreated": {
        "type": "object",
        "required": ["enrollment_id", "campaign", "status", "timezone", "signed_up_at", "calendar"],
        "properties": {
            "enrollment_id": _ID,
            "campaign": {"type": "string"},
            "status": {"type": "string"},
            "timezone": {"type": "string"},
            "signed_up_at": _UTC,
            "calendar": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["step", "subject", "status", "due_utc", "due_local"],
                    "properties": {
                        "step": {"type": "string"},
                        "subject": {"type": "string"},
                        "status": {"type": "string"},
                        "due_utc": _UTC,
                        "due_local": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    },
    "SignUpRepeated": {
        "type": "object",
        "required": ["enrollment_id", "campaign"],
        "properties": {"enrollment_id": _ID, "campaign": {"type": "string"}},
        "additionalProperties": False,
    },
    "Event": {
        "type": "object",
        "required": ["event"],
        "additionalProperties": False,
        "description": "Give `email` or `contact_id`, not both",
        "properties": {
            "email": {"type": ["string", "null"], "maxLength": 320},
            "contact_id": {"type": ["integer", "null"], "minimum": 1},
            "event": {"type": "string", "maxLength": 200},
            "at": {"type": ["string", "null"], "maxLength": 64},
            "event_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
        },
    },
    "EventResult": {
        "type": "object",
        "required": ["event", "at", "recorded", "duplicate", "converted", "campaigns", "cancelled"],
        "properties": {
            "event": {"type": "string"},
            "at": _UTC,
            "recorded": {"type": "boolean"},
            "duplicate": {"type": "boolean"},
            "converted": {"type": "integer", "minimum": 0},
            "campaigns": {"type": "array", "items": {"type": "string"}},
            "cancelled": {"type": "integer", "minimum": 0},
        },
    },
    "EnrollmentList": {
        "type": "object",
        "required": ["enrollments"],
        "additionalProperties": False,
        "properties": {
            "enrollments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "enrollment_id",
                        "contact_id",
                        "campaign",
                        "status",
                        "signed_up_at",
                    ],
                    "additionalProperties": False,
                    "properties": {
                        "enrollment_id": _ID,
                        "contact_id": _ID,
                        "campaign": {"type": "string"},
                        "status": {"$ref": "#/components/schemas/EnrollmentStatus"},
                        "signed_up_at": _UTC,
                    },
                },
            }
        },
    },
    "EnrollmentStatus": {
        "type": "string",
        "enum": [str(status) for status in EnrollmentStatus],
    },
    "Enrollment": {
        "type": "object",
        "required": [
            "enrollment_id",
            "contact_id",
            "campaign",
            "status",
            "timezone",
            "signed_up_at",
            "paused_at",
            "converted_at",
            "calendar",
        ],
        "additionalProperties": False,
        "properties": {
            "enrollment_id": _ID,
            "contact_id": _ID,
            "campaign": {"type": "string"},
            "status": {"$ref": "#/components/schemas/EnrollmentStatus"},
            "timezone": {"type": "string"},
            "signed_up_at": _UTC,
            "paused_at": _NULLABLE_UTC,
            "converted_at": _NULLABLE_UTC,
            "calendar": {
                "type": "array",
                "description": "Every planned email in step order: key, due time, status",
                "items": {
                    "type": "object",
                    "required": ["step", "status", "due_utc", "due_local", "sent_at"],
                    "additionalProperties": False,
                    "properties": {
                        "step": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": [str(status) for status in DELIVERY_STATES],
                        },
                        "due_utc": _UTC,
                        "due_local": {"type": "string", "format": "date-time"},
                        "sent_at": _NULLABLE_UTC,
                    },
                },
            },
        },
    },
    "Cancelled": {
        "type": "object",
        "required": ["enrollment_id", "status", "cancelled", "left_to_finish"],
        "additionalProperties": False,
        "properties": {
            "enrollment_id": _ID,
            "status": {"$ref": "#/components/schemas/EnrollmentStatus"},
            "cancelled": {"type": "integer", "minimum": 0, "description": "Emails withdrawn now"},
            "left_to_finish": {
                "type": "integer",
                "minimum": 0,
                "description": "Emails already handed to a sender, which will finish",
            },
        },
    },
    "TagChange": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "add": {"type": "array", "items": {"type": "string", "maxLength": 64}, "maxItems": 100},
            "remove": {
                "type": "array",
                "items": {"type": "string", "maxLength": 64},
                "maxItems": 100,
            },
        },
    },
    "Tags": {
        "type": "object",
        "required": ["contact_id", "tags"],
        "additionalProperties": False,
        "properties": {"contact_id": _ID, "tags": {"type": "array", "items": {"type": "string"}}},
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/enrollments": {
        "post": _operation(
            "Sign a contact up to a published campaign (idempotent per address and campaign)",
            "enroll",
            {
                "201": _answer("Enrolled: the enrollment with its calendar", "SignUpCreated"),
                "200": _answer("Enrolled before: its id and campaign only", "SignUpRepeated"),
                "202": _answer(
                    "Double opt-in: a confirmation email goes first (a repeat alike)",
                    "SignUpAwaiting",
                ),
                "400": _BAD_JSON,
                "409": _error("The address is suppressed or unsubscribed from this campaign"),
                "413": _TOO_BIG,
                "422": _INVALID,
            },
            requestBody={"required": True, **_json("SignUp", SIGNUP_EXAMPLE)},
        ),
        "get": _operation(
            "The enrollments of exactly one address (an unknown address: an empty list)",
            "read",
            {
                "200": _answer(
                    "The address's enrollments, oldest first",
                    "EnrollmentList",
                    {
                        "enrollments": [
                            {
                                "enrollment_id": 2,
                                "contact_id": 2,
                                "campaign": "ketamine-and-sleep",
                                "status": str(EnrollmentStatus.ACTIVE),
                                "signed_up_at": "2026-03-02T16:45:00Z",
                            }
                        ]
                    },
                ),
                "422": _error(
                    "No address, two, or not an address",
                    {"error": "give exactly one address: ?email=...", "field": "email"},
                ),
            },
            parameters=[
                {
                    "name": "email",
                    "in": "query",
                    "required": True,
                    "description": "The address, matched exactly once normalised (no search)",
                    "schema": {"type": "string", "maxLength": 320},
                    "example": "pat@example.com",
                }
            ],
        ),
    },
    "/api/v1/enrollments/{id}": {
        "get": _operation(
            "An enrollment's state and planned calendar (no subjects, no bodies)",
            "read",
            {
                "200": _answer(
                    "The enrollment",
                    "Enrollment",
                    {
                        "enrollment_id": 2,
                        "contact_id": 2,
                        "campaign": "ketamine-and-sleep",
                        "status": str(EnrollmentStatus.ACTIVE),
                        "timezone": "Europe/London",
                        "signed_up_at": "2026-03-02T16:45:00Z",
                        "paused_at": None,
                        "converted_at": None,
                        "calendar": [{**_CALENDAR_ENTRY, "sent_at": None}],
                    },
                ),
                "404": _NOT_FOUND,
            },
            parameters=[_path_id("enrollment")],
        ),
        "delete": _operation(
            "Cancel an enrollment: its pending emails are withdrawn (idempotent)",
            "enroll",
            {
                "200": _answer(
                    "Cancelled (a repeat cancels nothing more)",
                    "Cancelled",
                    {
                        "enrollment_id": 2,
                        "status": str(EnrollmentStatus.CANCELLED),
                        "cancelled": 6,
                        "left_to_finish": 0,
                    },
                ),
                "404": _NOT_FOUND,
            },
            parameters=[_path_id("enrollment")],
        ),
    },
    "/api/v1/contacts/{id}/tags": {
        "post": _operation(
            "Add and remove a contact's tags (newsletters go to tags)",
            "enroll",
            {
                "200": _answer(
                    "The contact's tags after the change",
                    "Tags",
                    {"contact_id": 2, "tags": ["booked", "patients"]},
                ),
                "400": _BAD_JSON,
                "404": _error("Unknown contact", {"error": "no such contact"}),
                "413": _TOO_BIG,
                "422": _INVALID,
            },
            parameters=[_path_id("contact")],
            requestBody={
                "required": True,
                **_json("TagChange", {"add": ["patients", "booked"], "remove": ["waiting-list"]}),
            },
        ),
    },
    "/api/v1/events": {
        "post": _operation(
            "Record a contact's event (a goal such as `booked`)",
            "events",
            {
                "202": _answer("Recorded, or a repeat event_id (`duplicate`)", "EventResult"),
                "400": _BAD_JSON,
                "404": _error("Unknown contact", {"error": "no contact with that address"}),
                "413": _TOO_BIG,
                "422": _INVALID,
            },
            requestBody={
                "required": True,
                **_json("Event", {"email": "pat@example.com", "event": "booked"}),
            },
        ),
    },
    OPENAPI_PATH: {
        "get": {
            "summary": "This document (no token needed)",
            "security": [],
            "responses": {"200": {"description": "The OpenAPI 3.1 document"}},
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "dripmail API",
        "version": "1",
        "description": (
            "Sign-ups, enrollments, tags and events for `dripmail serve`. Every route but "
            "this document takes `Authorization: Bearer <token>`: a token from `dripmail "
            "tokens add NAME --scope ...` (scopes enroll, events, read) or DRIPMAIL_API_TOKEN "
            '(every scope). Errors are `{"error": ..., "field": ...}`.'
        ),
    },
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Scopes: enroll, events, read (see `dripmail tokens`)",
            }
        },
    },
}


def openapi_routes() -> list[Route]:
    """GET /api/v1/openapi.json, for `campaigns.web.app.create_app`."""

    async def document(_request: Request) -> Response:
        return JSONResponse(DOCUMENT, headers={"Cache-Control": "no-cache"})

    return [Route(OPENAPI_PATH, document, methods=["GET"])]
