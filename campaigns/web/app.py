"""`dripmail serve`: the public endpoints emails and providers talk to.

Routes:

    GET  /u/<token>            unsubscribe confirmation page (changes nothing by itself)
    GET  /p/<token>            the same page, reached from "Email preferences"
    GET  /c/<token>            double opt-in: the confirm page (changes nothing by itself)
    POST /c/<token>            confirm the sign-up: the sequence starts (web/confirm_pages.py)
    POST /u/<token>            `List-Unsubscribe=One-Click` (RFC 8058) or a choice from the page
    POST /p/<token>            the same (the preference centre: web/preference_pages.py)
    POST /webhooks/sendgrid    SendGrid's signed Event Webhook (campaigns/webhooks.py)
    POST /webhooks/postmark    Postmark's webhooks, HTTP basic credentials (web/postmark_webhook.py)
    POST /api/v1/enrollments   the sign-up API, bearer token (campaigns/signup_api.py)
    GET  /healthz              "ok" when the database answers, else 503 and why (a proxy's probe)
    POST /api/v1/events        a contact's event (goals), bearer token (web/events_api.py)
    GET  /api/v1/enrollments?email=E, GET|DELETE /api/v1/enrollments/{id},
    POST /api/v1/contacts/{id}/tags    the Enrollment API, scoped tokens (web/enrollment_api.py)
    GET  /api/v1/openapi.json  the OpenAPI 3.1 description of every /api/v1 route (web/openapi.py)

Paths match exactly: `/healthz/` or `/u/<token>/` is 404, never a redirect (which
Starlette would build from the request's Host header).

Mail providers and security gateways fetch every link in an email, so a GET never
unsubscribes. Gmail and Yahoo's one-click unsubscribe is an HTTPS POST of the form body
`List-Unsubscribe=One-Click` to the List-Unsubscribe URL, without cookies or login: the
signed token in the URL is the only credential, and it leaves all email of the sender.
The page offers the narrower choices: this campaign only, or the newsletter only (every
newsletter issue, keeping the drip campaigns; offered once a newsletter has gone to the
contact). After any unsubscribe, `choice=undo` from the same link ("I changed my mind",
within 30 days) restores what that unsubscribe cancelled (campaigns/compliance/undo.py).
The pages carry the campaign's organisation, logo and colours (brand.*), and speak the
contact's language when the campaign is written in it and dripmail has a catalog for it
(rendering/catalogs.py); a page for a link that names nobody follows Accept-Language.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn
from babel.core import negotiate_locale
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import Connection, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

import templates
from campaigns.authoring.languages import choose_language
from campaigns.authoring.spec import CampaignSpec, Colors
from campaigns.authoring.translations import campaign_languages, in_language
from campaigns.compliance.data_request import SenderFor
from campaigns.compliance.suppressions import Scope, unsubscribe
from campaigns.compliance.undo import Undoable, undo_unsubscribe, undoable
from campaigns.delivery.sender_pool import SenderPool
from campaigns.errors import NotFoundError
from campaigns.monitoring.exporter import open_metrics
from campaigns.monitoring.health import DatabaseCheck
from campaigns.monitoring.metrics import Metrics
from campaigns.notify import NOBODY, Notifier
from campaigns.rendering.catalogs import N_, catalog_language, catalog_languages, translations
from campaigns.rendering.links import check_public_url
from campaigns.rendering.palette import WCAG_AA, Palette, contrast_ratio, palette
from campaigns.rendering.tokens import Signer, TokenError, UnsubscribeClaim
from campaigns.settings import PUBLIC_URL_ENV, WEBHOOK_KEY_ENV, Settings
from campaigns.storage.publish import load_version, published_names
from campaigns.storage.statuses import IN_FLIGHT, CampaignKind, EnrollmentStatus
from campaigns.storage.store import Store, utcnow
from campaigns.storage.tables import campaigns, contacts, deliveries, enrollments, suppressions
from campaigns.web.confirm_pages import confirm_routes
from campaigns.web.enrollment_api import enrollment_routes
from campaigns.web.events_api import event_routes
from campaigns.web.listen import listening_socket
from campaigns.web.mailgun_webhook import mailgun_endpoint
from campaigns.web.openapi import openapi_routes
from campaigns.web.postmark_webhook import postmark_routes
from campaigns.web.preference_pages import PreferenceCentre, is_centre_choice, with_notice
from campaigns.web.service import ServiceServer
from campaigns.web.ses_webhook import ses_routes
from campaigns.web.signup_api import signup_routes
from campaigns.web.webhooks import (
    MAX_BODY,
    SendGridVerifier,
    WebhookRejected,
    read_body,
    sendgrid_endpoint,
)
from senders.base import is_loopback

log = logging.getLogger("dripmail.web")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8026  # `preview` has 8025: both run side by side
MAX_FORM = 8 * 1024  # a one-click body is 26 bytes; a page form hardly more
ONE_CLICK = ("List-Unsubscribe", "One-Click")

# No scripts, no external resources, no framing; forms post back to this server only.
# The token in the URL is a credential: no Referer may carry it anywhere.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


# ----------------------------------------------------------------------------- public URL


def check_published_public_urls(store: Store, configured: str | None) -> None:
    """`configured` (DRIPMAIL_PUBLIC_URL), else every published campaign's links.public_url,
    must be https."""
    if configured:
        check_public_url(configured)
        return
    with store.connect() as conn:
        for name in published_names(conn):
            campaign = load_version(conn, name)
            check_public_url(
                campaign.spec.links.public_url, name=f"campaign {name}: links.public_url"
            )


def _settings(store: Store, environ: Mapping[str, str] | None) -> Settings:
    """The store's settings, or those in `environ` when a test gives one."""
    return store.settings if environ is None else Settings.from_env(environ)


# ---------------------------------------------------------------------------------- pages


@cache
def _pages(language: str = "en") -> Environment:
    """The pages' templates, their text from `language`'s catalog (one of catalog_languages)."""
    env = Environment(
        loader=FileSystemLoader(templates.DIRECTORY / "web"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env


def accepted_language(header: str | None) -> str:
    """The catalog language an Accept-Language header asks for first (RFC 9110 12.5.4)."""
    wanted = []
    for part in (header or "").split(",")[:20]:
        tag, *params = part.strip().split(";")
        weight = next(
            (p.partition("=")[2] for p in params if p.strip().lower().startswith("q=")), "1"
        )
        try:
            wanted.append((float(weight), tag.strip()))
        except ValueError:
            continue
    ordered = [tag for q, tag in sorted(wanted, key=lambda pair: -pair[0]) if q > 0 and tag]
    found = negotiate_locale(ordered, sorted(catalog_languages()), sep="-")
    return catalog_language(found)


_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")  # a netloc safe to write into the CSP


@dataclass(frozen=True)
class PageBrand:
    """Whose page it is: the campaign's organisation, logo and colours (brand.*)."""

    organisation: str | None = None
    logo_url: str | None = None
    colors: Palette = field(default_factory=lambda: palette(Colors()))

    @property
    def logo_origin(self) -> str | None:
        """The logo's scheme://host[:port], the one image source the page allows."""
        if not self.logo_url:
            return None
        parts = urlsplit(self.logo_url)
        ok = parts.scheme in ("https", "http") and _HOST.fullmatch(parts.netloc)
        return f"{parts.scheme}://{parts.netloc}" if ok else None


def page_brand(spec: CampaignSpec) -> PageBrand:
    """The brand of a published campaign; the default colours when its own would not reach
    WCAG AA on the page (a published version has passed that check, an old one may not)."""
    colours = palette(spec.brand.colors)
    if any(contrast_ratio(fg, bg) < WCAG_AA for _field, fg, bg in colours.pairs()):
        colours = palette(Colors())
    return PageBrand(spec.brand.organisation, spec.brand.logo_url, colours)


def _page(
    template: str,
    status: int = 200,
    brand: PageBrand | None = None,
    language: str = "en",
    **values: Any,
) -> HTMLResponse:
    brand = brand or PageBrand()
    language = catalog_language(language)
    html = _pages(language).get_template(template).render(brand=brand, language=language, **values)
    csp = _CSP + (f"; img-src {brand.logo_origin}" if brand.logo_origin else "")
    headers = {**_PAGE_HEADERS, "Content-Security-Policy": csp, "Content-Language": language}
    return HTMLResponse(html, status_code=status, headers=headers)


def _invalid(message: str, request: Request) -> HTMLResponse:
    # 400 and nothing changed: a tampered, foreign or expired token names nobody we trust,
    # so the page speaks the browser's language (`message` is translated by the page).
    language = accepted_language(request.headers.get("accept-language"))
    return _page("invalid.html.j2", 400, language=language, message=message)


DAMAGED = N_("The link is damaged, too old, or not one of ours.")
NO_CHOICE = N_("The request did not say what to unsubscribe from.")
THESE_EMAILS = N_("these emails")


@dataclass(frozen=True)
class Preferences:
    """What the page shows: who is writing, which series, what is already unsubscribed."""

    organisation: str | None
    title: str
    suppressed: bool
    campaign_unsubscribed: bool
    newsletter_unsubscribed: bool = False
    brand: PageBrand = field(default_factory=PageBrand)
    newsletter_received: bool = False  # "stop only the newsletter" is offered only then
    undo: Undoable | None = None  # the unsubscribe "I changed my mind" would undo
    language: str = "en"  # the contact's, as the campaign's emails speak to them


def preferences(store: Store, claim: UnsubscribeClaim, *, now: datetime) -> Preferences:
    """The state the preferences page shows for a token's contact and campaign."""
    organisation, title, brand, language = None, None, PageBrand(), "en"
    with store.connect() as conn:
        row = conn.execute(
            select(
                contacts.c.email, contacts.c.newsletter_unsubscribed_at, contacts.c.language
            ).where(contacts.c.id == claim.contact_id)
        ).first()
        try:
            campaign = load_version(conn, claim.campaign)
            spec = campaign.spec
            # The language the campaign's emails speak to this contact (its title in it).
            language = choose_language(
                row.language if row else None, campaign_languages(spec), spec.language
            )
            spoken = in_language(campaign, language).spec
            organisation, title = spec.brand.organisation, spoken.title or claim.campaign
            brand = page_brand(spec)
        except NotFoundError:
            pass
        address = row.email if row else None
        left_newsletter = bool(row and row.newsletter_unsubscribed_at is not None)
        suppressed = address is None or (
            conn.scalar(
                select(suppressions.c.address_hash).where(
                    suppressions.c.address_hash == store.address_hash(address)
                )
            )
            is not None
        )
        status = conn.scalar(
            select(enrollments.c.status).where(
                enrollments.c.contact_id == claim.contact_id,
                enrollments.c.campaign == claim.campaign,
            )
        )
        received = _received_newsletter(conn, claim.contact_id)
    if title is None:
        title = translations(catalog_language(language)).gettext(THESE_EMAILS)
    return Preferences(
        organisation,
        title,
        suppressed,
        status == EnrollmentStatus.UNSUBSCRIBED,
        left_newsletter,
        brand,
        received,
        undoable(store, claim, now=now),
        language,
    )


def _received_newsletter(conn: Connection, contact_id: int) -> bool:
    """Whether a newsletter issue has gone to this contact (handed to a sender)."""
    newsletters = select(campaigns.c.name).where(campaigns.c.kind == CampaignKind.NEWSLETTER)
    found = conn.scalar(
        select(deliveries.c.id)
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(
            enrollments.c.contact_id == contact_id,
            enrollments.c.campaign.in_(newsletters),
            deliveries.c.status.in_(IN_FLIGHT),
        )
        .limit(1)
    )
    return found is not None


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """A small form body: urlencoded (what Gmail sends) or multipart/form-data (RFC 8058)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
        message = email.message_from_bytes(head + body, policy=email.policy.HTTP)
        fields = {}
        if message.is_multipart():
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if isinstance(name, str):
                    fields[name] = str(part.get_content()).strip()
        return fields
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0].strip() for name, values in parsed.items()}


UNDO = "undo"  # the page's "I changed my mind" button


def _scope(fields: Mapping[str, str]) -> Scope | None:
    if fields.get(ONE_CLICK[0]) == ONE_CLICK[1]:
        return Scope.ALL
    choice = fields.get("choice")
    return Scope(choice) if choice in tuple(Scope) else None


# ------------------------------------------------------------------------------------ app


def create_app(
    store: Store,
    *,
    clock: Callable[[], datetime] = utcnow,
    environ: Mapping[str, str] | None = None,
    max_webhook_body: int = MAX_BODY,
    metrics: Metrics | None = None,
    sender_for: SenderFor | None = None,
) -> Starlette:
    """The service app. `clock` is the real clock (token and webhook ages), injectable for tests.

    `metrics`, when given, counts the unsubscribes it records (monitoring/metrics.py).
    `sender_for` sends a patient's "send me my data" email (default: the campaign's sender).

    The settings are the store's, or those in `environ` (a mapping standing in for the
    environment, in tests). A set but unusable SENDGRID_WEBHOOK_PUBLIC_KEY raises
    ConfigurationError here, so a bad key stops `serve` at start instead of refusing
    every event later.
    """
    settings = _settings(store, environ)
    signer = Signer(store.secret_key())
    verifier = SendGridVerifier.from_settings(settings)
    database = DatabaseCheck(store)
    centre = PreferenceCentre(store, sender_for or SenderPool(None, settings))

    def read(token: str) -> UnsubscribeClaim | None:
        try:
            return signer.read(token)
        except TokenError:
            return None

    def state_page(
        template: str, state: Preferences, token: str, status: int = 200, **values: Any
    ) -> Response:
        return _page(
            template,
            status,
            brand=state.brand,
            language=state.language,
            organisation=state.organisation,
            title=state.title,
            suppressed=state.suppressed,
            campaign_unsubscribed=state.campaign_unsubscribed,
            newsletter_unsubscribed=state.newsletter_unsubscribed,
            newsletter_received=state.newsletter_received,
            undo=state.undo,
            # Relative, so the form works behind a proxy that serves us under a path prefix.
            action=f"../u/{token}",
            **values,
        )

    def centre_page(
        claim: UnsubscribeClaim,
        token: str,
        template: str = "preferences.html.j2",
        status: int = 200,
        notice: str | None = None,
    ) -> Response:
        """The page with the preference centre's part (a worker thread: it reads)."""
        now = clock()
        state = preferences(store, claim, now=now)
        view = centre.view(
            claim, now=now, page_language=catalog_language(state.language), chosen=state.language
        )
        return state_page(template, state, token, status, centre=with_notice(view, notice))

    async def show(request: Request) -> Response:
        token = request.path_params["token"]
        claim = read(token)
        if claim is None:
            return _invalid(DAMAGED, request)
        log.debug("preferences page: contact %d", claim.contact_id)
        return await run_in_threadpool(centre_page, claim, token)

    async def post(request: Request) -> Response:
        token = request.path_params["token"]
        claim = read(token)
        if claim is None:
            return _invalid(DAMAGED, request)
        try:
            body = await read_body(request, MAX_FORM)
        except WebhookRejected as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        fields = _form_fields(request.headers.get("content-type", ""), body)
        if is_centre_choice(fields):
            return await centre.post(claim, fields, partial(centre_page, claim, token), now=clock())
        if fields.get("choice") == UNDO:
            undone = await run_in_threadpool(partial(undo_unsubscribe, store, claim, now=clock()))
            state = await run_in_threadpool(partial(preferences, store, claim, now=clock()))
            return state_page("undone.html.j2", state, token, undone=undone)
        scope = _scope(fields)
        if scope is None:
            return _invalid(NO_CHOICE, request)
        await run_in_threadpool(unsubscribe, store, claim, scope, now=clock())
        if metrics is not None:
            metrics.unsubscribed(scope)
        state = await run_in_threadpool(partial(preferences, store, claim, now=clock()))
        return state_page("done.html.j2", state, token, scope=scope)

    async def health(_request: Request) -> Response:
        problem = await run_in_threadpool(database.problem)
        headers = {"Cache-Control": "no-store"}
        if problem:
            return PlainTextResponse(problem, status_code=503, headers=headers)
        return PlainTextResponse("ok", headers=headers)

    routes = [
        Route("/u/{token}", show, methods=["GET"]),
        Route("/u/{token}", post, methods=["POST"]),
        Route("/p/{token}", show, methods=["GET"]),
        *confirm_routes(store, clock=clock, page=_page, brand=page_brand, invalid=_invalid),
        Route("/p/{token}", post, methods=["POST"]),
        Route(
            "/webhooks/sendgrid",
            sendgrid_endpoint(store, verifier, clock, max_body=max_webhook_body),
            methods=["POST"],
        ),
        Route("/webhooks/mailgun", mailgun_endpoint(store, settings, clock), methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
        *signup_routes(store, settings=settings, clock=clock),
        *event_routes(store, settings=settings, clock=clock),
        *enrollment_routes(store, settings=settings, clock=clock),
        *openapi_routes(),
        *ses_routes(store, settings=settings, clock=clock),
        *postmark_routes(store, settings=settings, clock=clock),
    ]
    app = Starlette(routes=routes)
    # Starlette answers `/healthz/` with a redirect to `/healthz` built from the request's
    # Host header: `Host: evil.example` got `Location: http://evil.example/healthz`, and
    # `/u/<token>/` carried the token there. No redirect: such paths are 404.
    app.router.redirect_slashes = False
    app.state.webhook_configured = verifier is not None
    return app


def server_config(app: Starlette) -> uvicorn.Config:
    """How `serve` runs `app` under uvicorn (tests run it the same way)."""
    # No access log: every unsubscribe URL carries a token that acts for one person.
    # log_config=None keeps the logging set up by DRIPMAIL_LOG_LEVEL.
    return uvicorn.Config(app, access_log=False, log_config=None, server_header=False)


def serve(
    store: Store,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    environ: Mapping[str, str] | None = None,
    notifier: Notifier = NOBODY,
    metrics_port: int | None = None,
) -> None:
    """Check the settings, bind the port, then answer requests until stopped (uvicorn).

    A bad setting or a port in use raises ConfigurationError before anything is served.
    `notifier` hears READY=1 once the server listens, STOPPING=1 when it stops (SIGTERM:
    requests in progress finish, then the call returns).
    The metrics port (`metrics_port`, else DRIPMAIL_METRICS_PORT; off when neither)
    serves /metrics and /healthz on loopback beside it (monitoring/exporter.py).
    """
    settings = _settings(store, environ)
    check_published_public_urls(store, settings.public_url)
    metrics = Metrics()
    metrics.serving()
    app = create_app(store, environ=environ, metrics=metrics)
    sock = listening_socket(host, port)
    try:
        exporter = open_metrics(store, settings, metrics_port, metrics)
    except BaseException:
        sock.close()
        raise
    if not settings.public_url:
        log.warning(
            "%s is not set: emails link to each campaign's links.public_url or a placeholder",
            PUBLIC_URL_ENV,
        )
    if not app.state.webhook_configured:
        log.warning("%s is not set: /webhooks/sendgrid answers 503", WEBHOOK_KEY_ENV)
    if not is_loopback(host):
        log.warning("listening on %s: put an https reverse proxy in front of it", host)
    log.info("serving on http://%s:%d", host, sock.getsockname()[1])
    if exporter is not None:
        log.info("metrics on %s", exporter.url)
    try:
        ServiceServer(server_config(app), notifier).serve_until_stopped(sock)
    finally:
        if exporter is not None:
            exporter.close()
