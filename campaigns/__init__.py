"""dripmail's engine, usable without the CLI: article -> campaign -> emails sent on schedule.

    from datetime import UTC, datetime
    from campaigns import Dispatcher, Signup, Store, enroll, load_folder
    from senders.file import FileSender

    now = datetime.now(UTC)
    store = Store("sqlite:///clinic.db")
    campaign = load_folder("campaigns/sleep")
    enroll(store, campaign, Signup("pat@example.com", "Pat", "Europe/London", None, "web form"),
           now=now)
    outbox = FileSender("outbox")
    Dispatcher(store, lambda campaign: outbox).run(now=now)   # or SenderPool(): campaign.yaml's

The names below are looked up on first use, so `import campaigns` stays cheap and no
stage is imported before it is needed. The stages themselves are sub-packages named
in the order data flows through them (docs/architecture.md).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    # authoring: article -> campaign folder -> Campaign
    "read_article": "campaigns.authoring.readers",
    "split_article": "campaigns.authoring.split",
    "build_campaign_folder": "campaigns.authoring.folder",
    "load_folder": "campaigns.authoring.spec",
    "Campaign": "campaigns.authoring.spec",
    "check_campaign": "campaigns.authoring.checks",
    # rendering
    "compile_campaign": "campaigns.rendering.compile",
    "Recipient": "campaigns.rendering.personalise",
    # planning
    "Signup": "campaigns.planning.signups",
    "enroll": "campaigns.planning.enroll",
    "import_csv": "campaigns.planning.enroll",
    # delivery
    "Dispatcher": "campaigns.delivery.dispatcher",
    "RunReport": "campaigns.delivery.report",
    "run_worker": "campaigns.delivery.workers",
    "send_test": "campaigns.delivery.send_test",
    "SenderPool": "campaigns.delivery.sender_pool",
    # storage, reporting, settings, errors
    "Store": "campaigns.storage.store",
    "DeliveryStatus": "campaigns.storage.statuses",
    "campaign_stats": "campaigns.reporting.stats",
    "status_counts": "campaigns.reporting.reports",
    "Settings": "campaigns.settings",
    "DripmailError": "campaigns.errors",
    "InputError": "campaigns.errors",
    "ConfigurationError": "campaigns.errors",
    "NotFoundError": "campaigns.errors",
}

__all__ = [
    "Campaign",
    "ConfigurationError",
    "DeliveryStatus",
    "Dispatcher",
    "DripmailError",
    "InputError",
    "NotFoundError",
    "Recipient",
    "RunReport",
    "SenderPool",
    "Settings",
    "Signup",
    "Store",
    "build_campaign_folder",
    "campaign_stats",
    "check_campaign",
    "compile_campaign",
    "enroll",
    "import_csv",
    "load_folder",
    "read_article",
    "run_worker",
    "send_test",
    "split_article",
    "status_counts",
]

if TYPE_CHECKING:
    from campaigns.authoring.checks import check_campaign
    from campaigns.authoring.folder import build_campaign_folder
    from campaigns.authoring.readers import read_article
    from campaigns.authoring.spec import Campaign, load_folder
    from campaigns.authoring.split import split_article
    from campaigns.delivery.dispatcher import Dispatcher
    from campaigns.delivery.report import RunReport
    from campaigns.delivery.send_test import send_test
    from campaigns.delivery.sender_pool import SenderPool
    from campaigns.delivery.workers import run_worker
    from campaigns.errors import ConfigurationError, DripmailError, InputError, NotFoundError
    from campaigns.planning.enroll import enroll, import_csv
    from campaigns.planning.signups import Signup
    from campaigns.rendering.compile import compile_campaign
    from campaigns.rendering.personalise import Recipient
    from campaigns.reporting.reports import status_counts
    from campaigns.reporting.stats import campaign_stats
    from campaigns.settings import Settings
    from campaigns.storage.statuses import DeliveryStatus
    from campaigns.storage.store import Store


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'campaigns' has no attribute {name!r}")
    return getattr(import_module(module), name)
