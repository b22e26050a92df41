"""events.type: SendGrid's event names become the one event model's kinds.

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-11

From this revision every provider's events are stored as an EventKind value
(campaigns/compliance/event_model.py), so `dripmail stats`, suppressions and "I changed
my mind" read one set whichever provider said it. SendGrid's rows stored before are
rewritten to the kinds its parser gives today (compliance/sendgrid_events.py):
processed -> accepted, bounce -> bounced_hard, dropped -> rejected, spamreport ->
complained, unsubscribe and group_unsubscribe -> unsubscribed, open -> opened,
click -> clicked; delivered and deferred are already kinds. No column changes.

Only rows of provider `sendgrid` change: dripmail's own unsubscribe events (provider
`dripmail`, `unsubscribe` among them) keep their types. A `bounce` stored before cannot
tell a "blocked" one (today a bounced_soft) from a hard one, since the bounce's own type
was never kept: each becomes bounced_hard, which is how the stats and "I changed my
mind" counted them before, so no figure changes.

The downgrade writes SendGrid's names back for every provider's kinds (an older dripmail
knows no others): group_unsubscribe comes back as unsubscribe, bounced_soft as bounce;
both counted the same before, so the older stats are unchanged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_events = sa.table(
    "events",
    sa.column("provider", sa.String),
    sa.column("type", sa.String),
)

# SendGrid's name -> the kind (as of this revision; the model's values never change).
UP = {
    "processed": "accepted",
    "bounce": "bounced_hard",
    "dropped": "rejected",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "open": "opened",
    "click": "clicked",
}
DOWN = {
    "accepted": "processed",
    "bounced_hard": "bounce",
    "bounced_soft": "bounce",
    "rejected": "dropped",
    "complained": "spamreport",
    "unsubscribed": "unsubscribe",
    "opened": "open",
    "clicked": "click",
}


def upgrade() -> None:
    for old, new in UP.items():
        op.execute(
            sa.update(_events)
            .where(_events.c.provider == "sendgrid", _events.c.type == old)
            .values(type=new)
        )


def downgrade() -> None:
    # Not dripmail's own events: none of its types is a kind, but say so in the query too.
    for kind, old in DOWN.items():
        op.execute(
            sa.update(_events)
            .where(_events.c.provider != "dripmail", _events.c.type == kind)
            .values(type=old)
        )
