"""The double opt-in page of `dripmail serve`: GET and POST /c/<token>.

The link in a confirmation email (delivery/confirm_sending.py) carries a signed
token naming the request: its row, contact, campaign and round
(rendering/tokens.ConfirmSigner); a link whose request is gone or started over reads
as expired. GET shows the page with one
button and changes nothing: mail providers and security gateways fetch (GET, HEAD)
every link of an email, and must not confirm anyone. POST confirms
(planning/confirmations.confirm: the sequence is planned from that moment); a second
POST says it is already confirmed. No cookie, no script: the token is the credential,
as for the unsubscribe pages, whose frame and brand this page shares (web/app.py passes
its page renderer in, so this module does not import the app).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from campaigns.authoring.languages import choose_language
from campaigns.authoring.spec import CampaignSpec
from campaigns.authoring.translations import campaign_languages
from campaigns.errors import NotFoundError
from campaigns.planning.confirmations import Confirmed, confirm, find
from campaigns.planning.confirmations import Request as ConfirmRequest
from campaigns.rendering.catalogs import N_
from campaigns.rendering.tokens import ConfirmClaim, ConfirmSigner, TokenError
from campaigns.storage.publish import load_version
from campaigns.storage.store import Store

log = logging.getLogger("dripmail.web")

NOT_A_REQUEST = N_("The confirmation link is damaged, or not one of ours.")

Page = Callable[..., Response]  # web/app._page: (template, status, brand, language, **values)


def confirm_routes(
    store: Store,
    *,
    clock: Callable[[], datetime],
    page: Page,
    brand: Callable[[CampaignSpec], Any],
    invalid: Callable[[str, Request], Response],
) -> list[Route]:
    """GET and POST /c/{token}, for `campaigns.web.app.create_app`."""
    signer = ConfirmSigner(store.secret_key())

    def claim_of(token: str) -> ConfirmClaim | None:
        try:
            return signer.read(token)
        except TokenError:
            return None

    def request_of(claim: ConfirmClaim | None) -> ConfirmRequest | None:
        return None if claim is None else find(store, claim, now=clock())

    def look(found: ConfirmRequest) -> dict[str, Any]:
        """The campaign's brand and organisation, in the patient's language."""
        with store.connect() as conn:
            try:
                spec = load_version(conn, found.campaign).spec
            except NotFoundError:
                return {"organisation": None}
        language = choose_language(found.language, campaign_languages(spec), spec.language)
        return {"organisation": spec.brand.organisation, "brand": brand(spec), "language": language}

    def answer(found: ConfirmRequest, token: str, state: str, status: int = 200) -> Response:
        values = look(found)
        # Relative, so the form works behind a proxy that serves us under a path prefix.
        return page("confirm.html.j2", status, state=state, action=f"../c/{token}", **values)

    async def show(request: Request) -> Response:
        token = request.path_params["token"]
        found = await run_in_threadpool(request_of, claim_of(token))
        if found is None:
            return invalid(NOT_A_REQUEST, request)
        if found.confirmed_at is not None:
            state = Confirmed.ALREADY.value
        elif found.expired:
            state = Confirmed.EXPIRED.value
        else:
            state = "ask"
        return await run_in_threadpool(answer, found, token, state)

    async def post(request: Request) -> Response:
        token = request.path_params["token"]
        claim = claim_of(token)
        found = await run_in_threadpool(request_of, claim)
        if claim is None or found is None:
            return invalid(NOT_A_REQUEST, request)
        done = await run_in_threadpool(partial(confirm, store, claim, now=clock()))
        if done == Confirmed.UNKNOWN:
            return invalid(NOT_A_REQUEST, request)
        log.info("confirm page: contact %d, %s", found.contact_id, done.value)
        status = 410 if done == Confirmed.EXPIRED else 200
        return await run_in_threadpool(answer, found, token, done.value, status)

    return [
        Route("/c/{token}", show, methods=["GET"]),
        Route("/c/{token}", post, methods=["POST"]),
    ]
