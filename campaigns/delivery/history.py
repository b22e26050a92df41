"""What the dispatcher's rules read: contacts' other deliveries, and suppressed addresses."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, Connection, case, false, select

from campaigns.delivery.decide import DueRow, Sibling
from campaigns.storage.statuses import IN_FLIGHT, DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import deliveries, suppressions


def by_status(
    *,
    gone: ColumnElement[bool] | None = None,
    claimed: ColumnElement[bool] | None = None,
    scheduled: ColumnElement[bool] | None = None,
) -> ColumnElement[bool]:
    """A filter on a contact's deliveries: for each status, which rows to read (none where
    no condition is given).

    A CASE rather than an OR of status terms: next to `enrollment_id IN (...)`, SQLite
    without statistics answers such an OR from the status indexes, reading every sent
    or scheduled row of the table for each batch (a run went quadratic); a CASE can't
    use an index, so the contacts' few rows are found through their enrollment.
    """
    whens = [
        (deliveries.c.status.in_(IN_FLIGHT), gone),
        (deliveries.c.status == DeliveryStatus.CLAIMED, claimed),
        (deliveries.c.status == DeliveryStatus.SCHEDULED, scheduled),
    ]
    return case(*[(when, then) for when, then in whens if then is not None], else_=false())


def rows_of(
    conn: Connection, enrollment_ids: Iterable[int], *where: ColumnElement[bool]
) -> dict[int, list[Sibling]]:
    """These enrollments' deliveries (those meeting `where`), by enrollment."""
    result: dict[int, list[Sibling]] = defaultdict(list)
    for row in conn.execute(
        select(
            deliveries.c.enrollment_id,
            deliveries.c.id,
            deliveries.c.position,
            deliveries.c.status,
            deliveries.c.due_at,
            deliveries.c.sent_at,
            deliveries.c.lease_owner,
        ).where(deliveries.c.enrollment_id.in_(sorted(enrollment_ids)), *where)
    ):
        result[row.enrollment_id].append(Sibling(*row))
    return result


class SuppressedAddresses:
    """Which of a batch's addresses are suppressed (asked again at hand-off)."""

    def __init__(self, store: Store, batch_size: int) -> None:
        self.store = store
        self.batch_size = batch_size
        self._hashes: dict[str, str] = {}  # address -> suppression hash

    def __call__(self, rows: Sequence[DueRow]) -> set[str]:
        hashes = {self._address_hash(r.email): r.email for r in rows if r.email}
        if not hashes:
            return set()
        with self.store.connect() as conn:
            found = conn.scalars(
                select(suppressions.c.address_hash).where(
                    suppressions.c.address_hash.in_(list(hashes))
                )
            )
            return {hashes[h] for h in found}

    def _address_hash(self, email: str) -> str:
        # Each address is looked up twice per batch: hash it once (a few hundred kept).
        if len(self._hashes) > 4 * self.batch_size:
            self._hashes.clear()
        if (known := self._hashes.get(email)) is None:
            known = self._hashes[email] = self.store.address_hash(email)
        return known
