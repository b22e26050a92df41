"""What an edit to a step's A/B variants means for pending emails: counts per variant.

`dripmail plan` shows, for each step whose variants (or winner rule) an edit adds or
changes, how many of its pending emails would go as each variant: the keyed
assignment of planning/variants.py under the installation's key, or the winner
already chosen for the step when the edited step keeps its `winner:` rule and that
variant. The variant itself is chosen at hand-off (delivery/variants.py), so applying
the edit writes nothing here: these are the emails' variants as things stand.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from campaigns.authoring.spec import Campaign, Step
from campaigns.planning.variants import choose
from campaigns.storage.tables import variant_winners

__all__ = ["VariantTally", "chosen_winner", "variants_changed"]


def chosen_winner(conn: Connection, campaign: str, step_key: str) -> str | None:
    """The variant a step's winner rule chose, if it chose (the stored row)."""
    return conn.scalar(
        select(variant_winners.c.variant).where(
            variant_winners.c.campaign == campaign, variant_winners.c.step_key == step_key
        )
    )


def variants_changed(old: Campaign, new: Campaign) -> tuple[str, ...]:
    """Keys of steps in both versions whose variants or winner rule differ (or appear)."""
    before = {step.key: step for step in old.steps}
    return tuple(
        step.key
        for step in new.steps
        if step.key in before
        and (step.variants, step.winner) != (before[step.key].variants, before[step.key].winner)
        and (step.variants or before[step.key].variants)
    )


class VariantTally:
    """Counts, per changed step, the variant each pending email would go as."""

    def __init__(self, conn: Connection, key: bytes, new: Campaign, keys: Iterable[str]) -> None:
        self._key = key
        self._steps: dict[str, Step] = {k: new.step(k) for k in keys}
        self._winners: dict[str, str | None] = {}
        for step_key, step in self._steps.items():
            winner = chosen_winner(conn, new.name, step_key) if step.winner else None
            names = {variant.name for variant in step.variants}
            self._winners[step_key] = winner if winner in names else None
        self.counts: dict[str, dict[str, int]] = {
            k: dict.fromkeys((v.name for v in step.variants), 0) for k, step in self._steps.items()
        }

    def add(self, contact_id: int, step_key: str) -> None:
        """One pending email of `step_key` to `contact_id`."""
        step = self._steps.get(step_key)
        if step is None or not step.variants:
            return
        name = self._winners[step_key] or choose(self._key, contact_id, step_key, step.variants)
        self.counts[step_key][name] += 1
