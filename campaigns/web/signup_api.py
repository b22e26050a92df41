"""The sign-up API of `dripmail serve`: POST /api/v1/enrollments.

A bearer token with the `enroll` scope guards it (campaigns/web/bearer.py: a named
token from `dripmail tokens add`, or DRIPMAIL_API_TOKEN); with neither, the route
answers 503 and the rest of `serve` works as before. The body
is read with a 64 KiB cap (413 before it is read in full), validated strictly
(a body that is not JSON, or nests deeper than 32 levels: 400; unknown fields and bad
values: 422 naming the field, `attributes.<name>` for an attribute), and enrolling
is idempotent per address x campaign: a new enrollment answers 201 with its planned
calendar; a repeat answers 200 with the enrollment's id and campaign only, so posting
someone's address again tells no more than the first answer did; an unsubscribed or
suppressed address answers 409. With double opt-in (`"confirm": "double"`, or the
campaign's `confirm: double`) a sign-up not yet confirmed answers 202
`{"campaign": ..., "status": "awaiting_confirmation"}`, first time and repeat alike.
The address never goes into a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from campaigns.authoring.conditions import check_attribute_name
from campaigns.errors import InputError, NotFoundError
from campaigns.planning import schedule
from campaigns.planning.confirmations import awaiting
from campaigns.planning.enroll import enroll
from campaigns.planning.signups import Signup, checked_attributes, control_character, validate
from campaigns.settings import Settings
from campaigns.storage.publish import load_version
from campaigns.storage.statuses import DeliveryStatus, EnrollmentStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts, deliveries, enrollments, suppressions
from campaigns.web.api_errors import MAX_API_BODY, ApiError, json_object, read_capped
from campaigns.web.api_tokens import ApiScope
from campaigns.web.bearer import Bearer

log = logging.getLogger("dripmail.api")

MAX_SIGNUP_BODY = MAX_API_BODY  # 64 KiB
SUPPRESSED = "not enrolled: the address is suppressed (unsubscribed or bounced)"
UNSUBSCRIBED = "not enrolled: the address unsubscribed from this campaign"
AWAITING = "awaiting_confirmation"  # double opt-in: the confirmation email is on its way


class _Consent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=500)
    text: str = Field(min_length=1, max_length=5000)


class SignupIn(BaseModel):
    """The JSON body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    campaign: str = Field(max_length=64)
    signed_up_at: str | None = Field(default=None, max_length=64)
    consent: _Consent
    # Strings by name (`{"patient_type": "new"}`): what steps' `when:` and
    # `{{ attributes.patient_type }}` read; at most 50, 200 characters each.
    attributes: dict[str, str] | None = None
    language: str | None = Field(default=None, max_length=35)  # BCP 47: es, pt-BR
    # "double": email a confirmation first (planning/confirmations.py); "single" or
    # none: the campaign's `confirm` decides (a campaign's `double` is never lowered).
    confirm: Literal["single", "double"] | None = None


def sign_up(store: Store, body: SignupIn, *, now: datetime) -> tuple[int, dict]:
    """Enroll the contact: (201, the enrollment with its calendar), or for a repeat
    (200, the enrollment's id and campaign); ApiError for a refusal (409, 422)."""
    with store.connect() as conn:
        try:
            campaign = load_version(conn, body.campaign)
        except NotFoundError:
            raise ApiError(422, "no published campaign of that name", "campaign") from None
    signup = Signup(
        email=body.email,
        first_name=body.first_name,
        timezone=body.timezone,
        signed_up_at=body.signed_up_at,
        consent=f"{body.consent.source}: {body.consent.text}",
        attributes=body.attributes,
        language=body.language,
    )
    try:
        contact = validate(signup, campaign, now=now)
    except InputError as exc:
        raise ApiError(422, exc.message, exc.field) from None
    if _existing(store, contact.email, campaign.name) is None:
        try:
            double = True if body.confirm == "double" else None
            report = enroll(store, campaign, signup, now=now, double=double)
        except IntegrityError:  # the same sign-up, posted twice at once: the other one won
            report = None
        except DataError:
            # A value the database cannot store (PostgreSQL refuses NUL in text): the
            # request's fault, not the server's. The driver's message names no value,
            # and the engine hides parameters, so nothing personal reaches a log.
            message = "a value the database cannot store: remove control characters"
            raise ApiError(422, message, "body") from None
        except InputError as exc:
            # The contact was checked above: an error without a field is the campaign's
            # own (a published version that still holds placeholders is not published).
            raise ApiError(422, exc.message, exc.field or "campaign") from None
        if report is not None and report.suppressed:
            raise ApiError(409, SUPPRESSED)
        if report is not None and report.unsubscribed:
            raise ApiError(409, UNSUBSCRIBED)
        waiting = report is not None and (report.pending or report.resent or report.awaiting)
        if waiting and _existing(store, contact.email, campaign.name) is None:
            # Double opt-in: nothing is planned until the patient confirms by email.
            # A repeat answers the same, whether or not the email goes again.
            return 202, {"campaign": campaign.name, "status": AWAITING}
        found = _enrollment(store, contact.email, campaign.name)
        if report is not None and report.enrolled and found is not None:
            return 201, found
    existing = _existing(store, contact.email, campaign.name)
    if existing is None and awaiting(store, contact.email, campaign.name):
        # The same double opt-in sign-up, posted twice at once: the other one asked.
        return 202, {"campaign": campaign.name, "status": AWAITING}
    if existing is None:  # enroll made nothing and said no why: nothing to answer with
        raise ApiError(409, "not enrolled")
    if existing.suppressed:
        raise ApiError(409, SUPPRESSED)
    if existing.status == EnrollmentStatus.UNSUBSCRIBED:
        raise ApiError(409, UNSUBSCRIBED)
    # A repeat says no more than the first answer did: not the zone, sign-up time or
    # calendar given by whoever posted the address first, nor what has been sent since.
    return 200, {"enrollment_id": existing.id, "campaign": campaign.name}


@dataclass(frozen=True)
class _Existing:
    id: int
    status: str
    suppressed: bool


def _existing(store: Store, email: str, name: str) -> _Existing | None:
    """The address's enrollment in campaign `name`, if any, and whether it is suppressed."""
    with store.connect() as conn:
        row = conn.execute(
            select(enrollments.c.id, enrollments.c.status)
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(contacts.c.email == email, enrollments.c.campaign == name)
        ).first()
        if row is None:
            return None
        hashed = store.address_hash(email)
        suppressed = conn.scalar(
            select(suppressions.c.address_hash).where(suppressions.c.address_hash == hashed)
        )
    return _Existing(row.id, row.status, suppressed is not None)


def _enrollment(store: Store, email: str, name: str) -> dict | None:
    with store.connect() as conn:
        row = conn.execute(
            select(
                enrollments.c.id,
                enrollments.c.signed_up_at,
                enrollments.c.status,
                contacts.c.timezone,
            )
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(contacts.c.email == email, enrollments.c.campaign == name)
        ).first()
        if row is None:
            return None
        campaign = load_version(conn, name)
        subjects = {step.key: step.subject for step in campaign.steps}
        tz = schedule.zone(row.timezone)
        calendar = [
            {
                "step": d.step_key,
                "subject": subjects.get(d.step_key, ""),
                "status": d.status,
                "due_utc": d.due_at.isoformat().replace("+00:00", "Z"),
                "due_local": d.due_at.astimezone(tz).isoformat(),
            }
            for d in conn.execute(
                select(deliveries.c.step_key, deliveries.c.status, deliveries.c.due_at)
                .where(deliveries.c.enrollment_id == row.id)
                .order_by(deliveries.c.position)
            )
            if d.status != DeliveryStatus.CANCELLED
        ]
    return {
        "enrollment_id": row.id,
        "campaign": name,
        "status": row.status,
        "timezone": row.timezone,
        "signed_up_at": row.signed_up_at.isoformat().replace("+00:00", "Z"),
        "calendar": calendar,
    }


def _parse(raw: bytes) -> SignupIn:
    data = json_object(raw)
    try:
        body = SignupIn.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise ApiError(422, message, where) from None
    # Before any of it reaches a query: PostgreSQL refuses a NUL (and its error would
    # log the statement's parameters), and no field has a use for a control character.
    for where, text in (
        ("email", body.email),
        ("first_name", body.first_name),
        ("timezone", body.timezone),
        ("campaign", body.campaign),
        ("signed_up_at", body.signed_up_at),
        ("language", body.language),
        ("consent.source", body.consent.source),
        ("consent.text", body.consent.text),
    ):
        found = control_character(text)
        if found:
            raise ApiError(422, f"holds the control character {found}: remove it", where)
    for name in body.attributes or {}:
        try:
            check_attribute_name(name)
        except ValueError as exc:
            raise ApiError(422, str(exc), f"attributes.{name[:64]}") from None
    try:
        checked_attributes(body.attributes or {}, prefix="attributes.")
    except InputError as exc:
        raise ApiError(422, exc.message, exc.field) from None
    return body


def signup_routes(
    store: Store, *, settings: Settings, clock: Callable[[], datetime]
) -> list[Route]:
    """The API's routes, for `campaigns.web.create_app`."""
    bearer = Bearer(store, settings, clock)

    async def create(request: Request) -> Response:
        try:
            await bearer.require(request, ApiScope.ENROLL)
            raw = await read_capped(request, MAX_SIGNUP_BODY)
            body = _parse(raw)
            status, result = await run_in_threadpool(sign_up, store, body, now=clock())
        except ApiError as exc:
            log.info("sign-up refused: %d %s", exc.status, exc.field or "")
            return exc.response()
        if "enrollment_id" in result:
            log.info("sign-up: enrollment %s (%d)", result["enrollment_id"], status)
        else:  # double opt-in: nothing enrolled until the patient confirms
            log.info("sign-up: awaiting confirmation (%d)", status)
        return JSONResponse(result, status_code=status)

    return [Route("/api/v1/enrollments", create, methods=["POST"])]
