"""Live edits: compare a campaign folder with its published version, then apply it.

`diff_campaigns` is pure: which steps changed copy, were added, removed, or changed
delay. `plan_edit` works out what that means for every enrolled contact, with exact
counts; `apply_edit` publishes the new version and makes it so, in one transaction.

Rules (README, "Scheduling"):
- copy changed: future emails use the new copy (dispatch renders the current version);
- step added: planned for contacts who have not passed its position (a contact has
  passed a position once any step at or after it is sent, unknown, failed or skipped),
  due at the latest of sign-up + delay, the previous email + min_gap and the next
  window opening after the edit (`now`): never a burst at once;
- step removed: pending deliveries cancelled;
- delay changed (or the window, closures or min_gap): pending deliveries re-planned,
  never into the past; a contact's later emails move with them to keep order and gaps;
- condition (`when:`) added or changed: nothing is rewritten, since a condition is
  decided when each email is due; the plan counts the pending emails it would skip if
  they were due now (planning/conditions.py), from the contacts' facts now.
- goal added (or its `within` changed): enrolled contacts who already had the event
  (after sign-up, within the window) are converted and their pending emails cancelled
  (planning/conversions.py); a goal removed converts nobody back.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, or_, select, update

from campaigns.authoring.conditions import StepCondition
from campaigns.authoring.spec import CAMPAIGN_FILE, Campaign, load_folder
from campaigns.errors import NotFoundError
from campaigns.planning import schedule
from campaigns.planning.conditions import evaluate
from campaigns.planning.conversions import GoalPlan, apply_goals, plan_goals
from campaigns.planning.facts import enrollment_facts, last_sent
from campaigns.planning.pace import Pace
from campaigns.planning.variant_plan import VariantTally, variants_changed
from campaigns.storage import audit
from campaigns.storage.publish import load_version, placeholder_lines, publish
from campaigns.storage.statuses import IN_FLIGHT, LIVE_ENROLLMENT, PASSED, PENDING, DeliveryStatus
from campaigns.storage.store import Store
from campaigns.storage.tables import contacts, deliveries, enrollments

S = DeliveryStatus


@dataclass(frozen=True)
class CampaignDiff:
    """What changed between two versions of one campaign, step by step (keys)."""

    name: str
    old_version: str
    new_version: str
    copy_changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    delay_changed: tuple[tuple[str, str, str], ...] = ()  # key, old delay, new delay
    timing_changed: bool = False  # window hours, days, closures or min_gap
    # Steps whose `when:` was added, changed or dropped: key, old, new (described; "": none).
    conditions_changed: tuple[tuple[str, str, str], ...] = ()
    # campaign.yaml fields (dotted) other than steps: path, old value, new value.
    fields_changed: tuple[tuple[str, str, str], ...] = ()
    # Files whose text changed and that nothing above accounts for (comments, a closures file).
    files_changed: tuple[str, ...] = ()
    # Steps whose A/B variants or winner rule changed (planning/variant_plan.py).
    variants_changed: tuple[str, ...] = ()

    @property
    def unchanged(self) -> bool:
        return self.old_version == self.new_version


def _flatten(value: object, path: str = "") -> dict[str, str]:
    """A campaign file's values by dotted path (lists whole), as text."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{path}.{key}" if path else str(key)))
        return flat
    if isinstance(value, list):
        return {path: ", ".join(str(item) for item in value)}
    return {path: "" if value is None else str(value)}


def _fields(campaign: Campaign) -> dict[str, str]:
    data = campaign.spec.model_dump(mode="json", by_alias=True, exclude={"steps"})
    return _flatten(data)


def diff_campaigns(old: Campaign, new: Campaign) -> CampaignDiff:
    """The step-level difference between the published `old` and the edited `new`."""
    old_steps = {step.key: step for step in old.steps}
    new_steps = {step.key: step for step in new.steps}
    copy, delays, conditions = [], [], []
    for key, step in new_steps.items():
        before = old_steps.get(key)
        if before is None:
            continue
        if old.files.get(before.file) != new.files.get(step.file) or (
            before.subject,
            before.preheader,
            before.cta,
        ) != (step.subject, step.preheader, step.cta):
            copy.append(key)
        if before.delay != step.delay:
            delays.append((key, str(before.delay), str(step.delay)))
        if before.when != step.when:
            conditions.append((key, _described(before.when), _described(step.when)))
    old_fields, new_fields = _fields(old), _fields(new)
    changed_fields = tuple(
        (path, old_fields.get(path, ""), new_fields.get(path, ""))
        for path in sorted(old_fields.keys() | new_fields.keys())
        if old_fields.get(path, "") != new_fields.get(path, "")
    )
    # Step files are reported by step (copy, added, removed) above.
    accounted = {step.file for step in (*old.steps, *new.steps)}
    accounted |= {v.file for step in (*old.steps, *new.steps) for v in step.variants}
    changed_variants = variants_changed(old, new)
    if changed_fields or conditions or changed_variants:
        accounted.add(CAMPAIGN_FILE)
    changed_files = tuple(
        path
        for path in sorted(old.files.keys() | new.files.keys())
        if old.files.get(path) != new.files.get(path) and path not in accounted
    )
    return CampaignDiff(
        name=new.name,
        old_version=old.version,
        new_version=new.version,
        copy_changed=tuple(copy),
        added=tuple(key for key in new_steps if key not in old_steps),
        removed=tuple(key for key in old_steps if key not in new_steps),
        delay_changed=tuple(delays),
        timing_changed=(old.window, old.min_gap) != (new.window, new.min_gap),
        conditions_changed=tuple(conditions),
        fields_changed=changed_fields,
        files_changed=changed_files,
        variants_changed=changed_variants,
    )


@dataclass
class EditPlan:
    """What applying an edit does to enrolled contacts, with exact counts."""

    diff: CampaignDiff
    enrolled: int = 0
    copy: dict[str, int] = field(default_factory=dict)  # key -> pending emails using new copy
    added: dict[str, int] = field(default_factory=dict)  # key -> contacts it is planned for
    passed: dict[str, int] = field(default_factory=dict)  # key -> contacts past its position
    removed: dict[str, int] = field(default_factory=dict)  # key -> pending emails cancelled
    replanned: dict[str, int] = field(default_factory=dict)  # key -> pending emails re-planned
    moved: int = 0  # other pending emails moved later to keep order, openings and gaps
    # key -> (pending emails under the new condition, how many it would skip if due now)
    conditions: dict[str, tuple[int, int]] = field(default_factory=dict)
    goals: GoalPlan = field(default_factory=GoalPlan)  # goals added or removed
    # key -> variant -> pending emails that would go as it (steps whose variants changed)
    variants: dict[str, dict[str, int]] = field(default_factory=dict)
    applied: bool = False
    # Why --apply would be refused (placeholders left), one line each; empty: it would not.
    refusals: list[str] = field(default_factory=list)
    # The writes, for apply_edit: new rows, (id, due) updates, ids to cancel, positions.
    _inserts: list[dict] = field(default_factory=list, repr=False)
    _updates: dict[int, datetime] = field(default_factory=dict, repr=False)
    _cancels: list[int] = field(default_factory=list, repr=False)


def plan_edit(store: Store, folder: str, *, now: datetime) -> EditPlan:
    """What `apply_edit` would do for the campaign in `folder` at engine time `now`."""
    new = load_folder(folder)
    with store.connect() as conn:
        result = _plan(conn, new, now=now, variant_key=store.variant_key())
    result.refusals = placeholder_lines(new)
    return result


def apply_edit(
    store: Store,
    folder: str,
    *,
    now: datetime,
    actor: str | int = audit.CLI,
    audited_at: datetime | None = None,
) -> EditPlan:
    """Publish the folder's version and re-plan enrolled contacts, in one transaction.

    `actor` is who the audit trail names for the publish (a console user's id), and
    `audited_at` when (the console's clock; None: the real one)."""
    new = load_folder(folder)
    with store.begin() as conn:
        result = _plan(conn, new, now=now, variant_key=store.variant_key())
        if result.diff.unchanged:
            return result
        publish(conn, new, now=now, actor=actor, audited_at=audited_at)
        _write(conn, new, result, now=now)
        apply_goals(conn, result.goals, now=now)
    result.applied = True
    return result


def _plan(conn: Connection, new: Campaign, *, now: datetime, variant_key: bytes) -> EditPlan:
    try:
        old = load_version(conn, new.name)
    except NotFoundError:
        raise NotFoundError(
            f"campaign {new.name!r} is not published yet: enroll someone first, nothing to plan"
        ) from None
    diff = diff_campaigns(old, new)
    result = EditPlan(diff)
    if diff.unchanged:
        return result
    result.goals = plan_goals(conn, old, new)
    people = {
        row.id: row
        for row in conn.execute(
            select(
                enrollments.c.id,
                enrollments.c.signed_up_at,
                enrollments.c.status,
                contacts.c.id.label("contact_id"),
                contacts.c.timezone,
                contacts.c.paused_until,
                contacts.c.min_gap_days,
            )
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(enrollments.c.campaign == new.name)
        )
    }
    rows: dict[int, dict[str, tuple]] = defaultdict(dict)
    for row in conn.execute(
        select(
            deliveries.c.enrollment_id,
            deliveries.c.step_key,
            deliveries.c.id,
            deliveries.c.status,
            deliveries.c.due_at,
            deliveries.c.sent_at,
        )
        .join(enrollments, enrollments.c.id == deliveries.c.enrollment_id)
        .where(enrollments.c.campaign == new.name)
    ):
        rows[row.enrollment_id][row.step_key] = (row.id, row.status, row.due_at, row.sent_at)
    contact_ids = sorted({p.contact_id for p in people.values()})
    last: dict[int, datetime] = {}
    for start in range(0, len(contact_ids), 1000):
        last.update(last_sent(conn, contact_ids[start : start + 1000]))

    result.enrolled = sum(p.status in LIVE_ENROLLMENT for p in people.values())
    result.copy = dict.fromkeys(diff.copy_changed, 0)
    result.added = dict.fromkeys(diff.added, 0)
    result.passed = dict.fromkeys(diff.added, 0)
    result.removed = dict.fromkeys(diff.removed, 0)
    result.replanned = {key: 0 for key, _, _ in diff.delay_changed}
    result.conditions = _condition_counts(conn, new, diff, people, rows)
    tally = VariantTally(conn, variant_key, new, diff.variants_changed)
    for enrollment_id, person in people.items():
        mine = rows.get(enrollment_id, {})
        for key in diff.variants_changed:
            if key in mine and mine[key][1] in PENDING and person.status in LIVE_ENROLLMENT:
                tally.add(person.contact_id, key)
        for key in diff.copy_changed:
            if key in mine and mine[key][1] in PENDING:
                result.copy[key] += 1
        for key in diff.removed:
            if key in mine and mine[key][1] == S.SCHEDULED:
                result.removed[key] += 1
                result._cancels.append(mine[key][0])
        if person.status in LIVE_ENROLLMENT:
            _replan(
                new, diff, enrollment_id, person, mine, last.get(person.contact_id), now, result
            )
    result.variants = tally.counts
    return result


def _described(condition: StepCondition | None) -> str:
    return condition.describe() if condition is not None else ""


def _condition_counts(
    conn: Connection, new: Campaign, diff: CampaignDiff, people: dict, rows: dict
) -> dict[str, tuple[int, int]]:
    """For each step whose condition changed: its pending emails, and how many of them
    the new condition would skip if they were due now (facts read in bulk)."""
    counts: dict[str, tuple[int, int]] = {}
    pending: dict[str, list[int]] = {}
    for key, _, _ in diff.conditions_changed:
        pending[key] = [
            enrollment_id
            for enrollment_id, mine in rows.items()
            if key in mine
            and mine[key][1] in PENDING
            and people[enrollment_id].status in LIVE_ENROLLMENT
        ]
    guarded = {key: new.step(key).when for key in pending}
    click_keys = {k for c in guarded.values() if c is not None for k in c.click_steps}
    facts = enrollment_facts(conn, {i for ids in pending.values() for i in ids}, click_keys)
    for key, ids in pending.items():
        skipped = sum(not evaluate(guarded[key], facts[i]).go for i in ids)
        counts[key] = (len(ids), skipped)
    return counts


def _replan(
    new: Campaign,
    diff: CampaignDiff,
    enrollment_id: int,
    person,
    mine: dict[str, tuple],
    last_any: datetime | None,
    now: datetime,
    result: EditPlan,
) -> None:
    """One contact: plan added steps they have not passed; re-plan what must move."""
    passed_at = max(
        (s.position for s in new.steps if s.key in mine and mine[s.key][1] in PASSED), default=0
    )
    delayed = {key for key, _, _ in diff.delay_changed}
    adding = set()
    for step in new.steps:
        if step.key not in diff.added:
            continue
        if step.position > passed_at and (step.key not in mine or mine[step.key][1] == S.CANCELLED):
            adding.add(step.key)
            result.added[step.key] += 1
        else:
            result.passed[step.key] += 1
    for key in delayed:
        if key in mine and mine[key][1] == S.SCHEDULED:
            result.replanned[key] += 1
    dirty = [
        s.position
        for s in new.steps
        if s.key in adding
        or (
            s.key in mine
            and mine[s.key][1] == S.SCHEDULED
            and (s.key in delayed or diff.timing_changed)
        )
    ]
    if not dirty:
        return
    start = min(dirty)
    tz = schedule.zone(person.timezone)
    # The patient's own pace (planning/pace.py): nothing before their pause ends, their gap.
    pace = Pace(person.paused_until, person.min_gap_days)
    window, gap = new.window, pace.gap(new.min_gap)
    # The last email before the re-planned part: gone (any position) or pending earlier.
    previous = last_any
    for step in new.steps:
        found = mine.get(step.key)
        if found is None:
            continue
        _, status, due, sent_at = found
        moment = (
            sent_at
            if status in IN_FLIGHT
            else due
            if (status in PENDING and step.position < start)
            else None
        )
        if moment is not None and (previous is None or moment > previous):
            previous = moment
    after_edit = schedule.next_opening(now, window, tz)
    for step in new.steps:
        if step.position < start:
            continue
        found = mine.get(step.key)
        if step.key in adding:
            base = pace.not_before(
                max(schedule.add_delay(person.signed_up_at, step.delay, tz), after_edit)
            )
        elif found is not None and found[1] == S.SCHEDULED:
            if step.key in delayed:
                base = schedule.add_delay(person.signed_up_at, step.delay, tz)
            else:
                base = found[2]
            base = pace.not_before(max(base, now))  # never into the past
        else:
            if found is not None and found[1] == S.CLAIMED:
                previous = found[2] if previous is None else max(previous, found[2])
            continue
        at = schedule.place(base, previous, window, tz, gap)
        previous = at
        if step.key in adding:
            if found is not None:  # a step removed once and added back: its row comes back
                result._updates[found[0]] = at
            else:
                result._inserts.append(
                    {
                        "enrollment_id": enrollment_id,
                        "step_key": step.key,
                        "position": step.position,
                        "due_at": at,
                        "status": S.SCHEDULED,
                        "attempts": 0,
                    }
                )
        elif at != found[2]:
            result._updates[found[0]] = at
            if step.key not in delayed:
                result.moved += 1


def _write(conn: Connection, new: Campaign, result: EditPlan, *, now: datetime) -> None:
    """The planned writes, in bulk (executemany), ids in order."""
    if result._cancels:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("b_id"), deliveries.c.status == S.SCHEDULED)
            .values(
                status=S.CANCELLED, error="the step was removed from the campaign", updated_at=now
            ),
            [{"b_id": i} for i in sorted(result._cancels)],
        )
    if result._updates:
        # Only rows still scheduled (or cancelled, for a step added back) move: a row a
        # worker claimed meanwhile is its to send.
        conn.execute(
            update(deliveries)
            .where(
                deliveries.c.id == bindparam("b_id"),
                or_(deliveries.c.status == S.SCHEDULED, deliveries.c.status == S.CANCELLED),
            )
            .values(status=S.SCHEDULED, due_at=bindparam("b_due"), error=None, updated_at=now),
            [{"b_id": i, "b_due": due} for i, due in sorted(result._updates.items())],
        )
    if result._inserts:
        conn.execute(insert(deliveries), [{**row, "updated_at": now} for row in result._inserts])
    # Positions follow the new order; keys are stable, so nothing else shifts.
    in_campaign = select(enrollments.c.id).where(enrollments.c.campaign == new.name)
    conn.execute(
        update(deliveries)
        .where(
            deliveries.c.step_key == bindparam("b_key"),
            deliveries.c.enrollment_id.in_(in_campaign),
        )
        .values(position=bindparam("b_pos")),
        [{"b_key": s.key, "b_pos": s.position} for s in new.steps],
    )
