"""What one dispatcher run did, in counts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields

from campaigns.delivery.held import Held


@dataclass
class RunReport:
    """Counts of what one run did."""

    sent: int = 0
    failed: int = 0
    unknown: int = 0
    retrying: int = 0
    deferred: int = 0
    skipped: int = 0
    recovered: int = 0
    released: int = 0
    batches: int = 0
    # Double opt-in (delivery/confirm_sending.py): confirmation emails sent, requests expired.
    confirmations: int = 0
    expired_signups: int = 0
    by_campaign: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Campaigns kept back with due emails waiting (held.py): `dripmail run` exits 1.
    held: dict[str, Held] = field(default_factory=dict)
    # Campaigns this run paused by themselves (delivery/autopause.py): name -> reason.
    paused: dict[str, str] = field(default_factory=dict)

    @property
    def handed_off(self) -> int:
        return self.sent + self.failed + self.unknown + self.retrying

    def add(self, other: RunReport) -> None:
        """Fold another run's counts into this one (several workers, one total)."""
        for count in fields(self):
            if count.name not in ("by_campaign", "held", "paused"):
                setattr(self, count.name, getattr(self, count.name) + getattr(other, count.name))
        for campaign, count in other.by_campaign.items():
            self.by_campaign[campaign] += count
        self.paused.update(other.paused)
        for name, held in other.held.items():
            # Every worker passes over the same waiting rows: the largest count is the total.
            if name not in self.held or held.waiting > self.held[name].waiting:
                self.held[name] = held
