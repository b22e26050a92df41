"""The bearer-token check every /api/v1 route shares: who is calling, and may they.

A request carries `Authorization: Bearer <token>` (RFC 6750). The token is either
DRIPMAIL_API_TOKEN (compared in constant time; it has every scope) or one made by
`dripmail tokens add` (web/api_tokens.py: looked up by its SHA-256). Answers: 401
with `WWW-Authenticate: Bearer` for a missing, unknown or revoked token; 403 for a
valid token without the route's scope; 503 while the API is off (no
DRIPMAIL_API_TOKEN and no token ever made). The token never reaches a log line; the
holder's name does, at INFO, for each refusal.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from campaigns.settings import API_TOKEN_ENV, Settings
from campaigns.storage.store import Store
from campaigns.web.api_errors import ApiError
from campaigns.web.api_tokens import EVERY_SCOPE, ApiScope, Holder, any_tokens, holder_of

log = logging.getLogger("dripmail.api")

ENVIRONMENT_HOLDER = Holder(None, frozenset(EVERY_SCOPE))
MAX_TOKEN = 512  # ours are 46 characters; nothing longer is worth hashing


class Bearer:
    """The check, made once per app from the settings (DRIPMAIL_API_TOKEN) and the store."""

    def __init__(self, store: Store, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.store, self.clock = store, clock
        secret = settings.api_token.get_secret_value() if settings.api_token else None
        self.shared = secret.encode() if secret else None

    async def require(self, request: Request, scope: ApiScope) -> Holder:
        """The caller, when its token is valid and has `scope`; else ApiError (401/403/503)."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        given = given.strip()
        holder = None
        if scheme.lower() == "bearer" and given and len(given) <= MAX_TOKEN:
            if self.shared is not None and hmac.compare_digest(given.encode(), self.shared):
                holder = ENVIRONMENT_HOLDER
            else:
                holder = await run_in_threadpool(
                    lambda: holder_of(self.store, given, now=self.clock())
                )
        if holder is None:
            if self.shared is None and not await run_in_threadpool(any_tokens, self.store):
                raise ApiError(
                    503,
                    f"the API is off: set {API_TOKEN_ENV} or add a token with "
                    "`dripmail tokens add`",
                )
            raise ApiError(401, "a valid bearer token is required")
        if scope not in holder.scopes:
            log.info("api: token %s lacks the scope %s", holder.name, scope)
            raise ApiError(403, f"this token does not have the {scope} scope")
        return holder
