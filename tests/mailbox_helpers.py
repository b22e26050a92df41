"""Mail that comes back, for the mailbox tests: the fixtures filled in for one delivery."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from campaigns.rendering.tokens import Signer, UnsubscribeClaim
from campaigns.rendering.verp import ReturnPaths
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries, enrollments

FIXTURES = Path(__file__).parent / "fixtures" / "mailbox"
RETURN_PATH = "bounces@clinic.example"


def token_of(store: Store, delivery_id: int) -> str:
    """The signed unsubscribe token the email of this delivery carried."""
    with store.connect() as conn:
        row = conn.execute(
            select(enrollments.c.contact_id, enrollments.c.campaign)
            .join(deliveries, deliveries.c.enrollment_id == enrollments.c.id)
            .where(deliveries.c.id == delivery_id)
        ).one()
    return Signer(store.secret_key()).token(
        UnsubscribeClaim(row.contact_id, row.campaign, delivery_id)
    )


def filled(
    name: str,
    *,
    verp: str = "bounces@clinic.example",
    token: str = "no.token.here",
    message_id: str = "<dripmail.0.0@clinic.example>",
) -> bytes:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return (
        text.replace("{VERP}", verp).replace("{TOKEN}", token).replace("{MESSAGE_ID}", message_id)
    ).encode()


def about(store: Store, name: str, delivery_id: int, **overrides: str) -> bytes:
    """Fixture `name` as it would come back about this delivery's email."""
    values = {
        "verp": ReturnPaths(store.secret_key()).address(RETURN_PATH, delivery_id),
        "token": token_of(store, delivery_id),
        "message_id": f"<dripmail.{delivery_id}.v1@clinic.example>",
    }
    return filled(name, **(values | overrides))


def make_maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def deliver(maildir: Path, name: str, raw: bytes) -> Path:
    """A mail delivered into the Maildir's new/, as an MDA leaves it."""
    path = maildir / "new" / f"1772463607.M{len(list((maildir / 'new').iterdir()))}P1.{name}"
    path.write_bytes(raw)
    return path
