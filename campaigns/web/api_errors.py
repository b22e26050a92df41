"""The /api/v1 routes' error answers and body parsing: `{"error": ..., "field": ...}`.

Every API route (sign-up, events, enrollments, tags) answers a refusal the same way:
a JSON object with the message and, when one field is at fault, its name; a 401
carries `WWW-Authenticate: Bearer` (RFC 6750 3). Bodies are read with a size cap
(413 before they are read in full) and parsed by campaigns/boundedjson.py (400 for
text that is not JSON or nests too deep; 422 for JSON that is not an object).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from campaigns import boundedjson
from campaigns.errors import InputError
from campaigns.web.webhooks import WebhookRejected, read_body

MAX_API_BODY = 64 * 1024  # a sign-up is under 1 KiB; room for consent text and attributes


class ApiError(Exception):
    """An answer other than success: status, message and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.field:
            body["field"] = self.field
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


async def read_capped(request: Request, limit: int = MAX_API_BODY) -> bytes:
    """The request body, refused (413) once it passes `limit` bytes."""
    try:
        return await read_body(request, limit)
    except WebhookRejected as exc:
        raise ApiError(exc.status, exc.message) from None


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object: ApiError 400 (not JSON, too deep) or 422 (not an object)."""
    try:
        data = boundedjson.loads(raw)
    except InputError as exc:  # malformed (or nested past the cap): 400, as for a webhook
        raise ApiError(400, f"the body is {exc.message}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(422, "the body must be a JSON object", "body")
    return data
