"""Campaigns a run keeps back: a problem that belongs to one campaign stays that campaign's.

A campaign is kept back when its published version cannot be sent as it is: it no
longer loads (published by a dripmail older than a rule it breaks, such as a bound on
delays or the outbox), it still holds split's TODO placeholders (published before the
refusal in storage/publish.py), or its own sender cannot be made or was refused. Its due
deliveries stay `scheduled` (never claimed, or put back untouched); every other
campaign sends; the run reports one line per campaign kept back, with the command that
publishes the fix, and `dripmail run` exits 1.

A sender problem that every campaign still able to send shares (the one SendGrid key
refused, `--sender smtp` without a host) is the installation's, not a campaign's: it
stops the run as before, nothing marked, exit 2. The choice is pure (`classify_senders`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection, select

from campaigns.authoring.spec import Campaign
from campaigns.errors import InputError
from campaigns.storage.statuses import CampaignStatus
from campaigns.storage.tables import campaigns
from senders.base import Sender, SenderConfigurationError


@dataclass(frozen=True)
class Held:
    """A campaign kept back: why, where its folder is (if known), how many emails wait."""

    campaign: str
    problem: str
    folder: str | None = None
    waiting: int = 0
    from_sender: bool = False  # its sender refused to work (an alert: delivery/alerts.py)

    def fix_command(self) -> str:
        return f"dripmail plan {self.folder or 'FOLDER'} --apply"

    def line(self) -> str:
        """The one line a user reads: the campaign, what is wrong, the command that fixes it."""
        emails = "email" if self.waiting == 1 else "emails"
        where = "" if self.folder else f" (FOLDER: the folder of campaign {self.campaign})"
        return (
            f"campaign {self.campaign}: {self.waiting} due {emails} kept back: {self.problem}; "
            f"fix it, then run: {self.fix_command()}{where}"
        )


def placeholder_problem(campaign: Campaign) -> str | None:
    """Why a published version with split's placeholders cannot go, or None."""
    found = campaign.placeholders()
    if not found:
        return None
    still = "is still a placeholder" if len(found) == 1 else "are still placeholders"
    return f"{', '.join(found)} {still} (TODO) in campaign.yaml"


def classify_senders(errors: Mapping[str, str], sendable: int) -> dict[str, str]:
    """The sender problems that are campaigns' own (name -> problem).

    `errors` holds each campaign whose sender failed, `sendable` how many campaigns
    were left to send before senders were tried. When every one of them failed, the
    problem is the installation's: SenderConfigurationError, one line per distinct
    message, as a run always stopped for it.
    """
    if errors and len(errors) >= sendable:
        raise SenderConfigurationError("\n".join(dict.fromkeys(errors.values())))
    return dict(errors)


@dataclass
class Holds:
    """One run's campaigns kept back (by name) and the delivery ids they kept waiting."""

    held: dict[str, Held] = field(default_factory=dict)
    senders: dict[str, Sender] = field(default_factory=dict)  # of each campaign able to send
    folders: dict[str, str] = field(default_factory=dict)
    kept: dict[str, set[int]] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.held

    def keep(self, name: str, ids: Iterable[int]) -> None:
        self.kept.setdefault(name, set()).update(ids)

    def sender_failed(self, name: str, sender: Sender | None, problem: str) -> None:
        """A sender refused to work while sending: hold every campaign using it, or stop.

        Raises SenderConfigurationError when it was the sender of every campaign still
        sending (a shared sender: the installation's problem, not a campaign's).
        """
        using = {n for n, s in self.senders.items() if sender is not None and s is sender}
        using.add(name)
        for campaign in classify_senders(dict.fromkeys(using, problem), len(self.senders) or 1):
            self.senders.pop(campaign, None)
            self.held[campaign] = Held(
                campaign, problem, self.folders.get(campaign), from_sender=True
            )

    def reported(self) -> dict[str, Held]:
        """The campaigns that kept a due email back, with how many."""
        return {
            name: replace(held, waiting=len(self.kept[name]))
            for name, held in self.held.items()
            if self.kept.get(name)
        }


def survey(conn: Connection, load: Callable[[str, str], Campaign], sender_for: Callable) -> Holds:
    """Every active campaign checked before a run claims anything: which are kept back.

    `load(name, version)` gives a published version (cached by the caller); `sender_for`
    makes (and caches) a campaign's sender. A sender problem shared by every campaign
    that could send raises SenderConfigurationError (see `classify_senders`).
    """
    rows = conn.execute(
        select(campaigns.c.name, campaigns.c.version, campaigns.c.folder).where(
            campaigns.c.status == CampaignStatus.ACTIVE
        )
    ).all()
    folders = {row.name: row.folder for row in rows if row.folder}
    held: dict[str, Held] = {}
    senders: dict[str, Sender] = {}
    errors: dict[str, str] = {}
    for row in rows:
        try:
            campaign = load(row.name, row.version)
        except InputError as exc:
            first = str(exc).splitlines()[0]
            problem = f"its published version no longer loads ({first})"
            held[row.name] = Held(row.name, problem, folders.get(row.name))
            continue
        problem = placeholder_problem(campaign)
        if problem is not None:
            held[row.name] = Held(row.name, problem, folders.get(row.name))
            continue
        try:
            senders[row.name] = sender_for(campaign)
        except SenderConfigurationError as exc:
            errors[row.name] = str(exc)
    for name, problem in classify_senders(errors, len(rows) - len(held)).items():
        held[name] = Held(name, problem, folders.get(name), from_sender=True)
    return Holds(held, senders, folders)
