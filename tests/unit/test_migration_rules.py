"""Migrations are expand-then-contract: the previous release's workers keep running while
`db upgrade` applies the next migration (docs/architecture.md, "Upgrades").

From 0012 on, a migration's `upgrade()` may only expand: create tables and indexes, add
columns that are nullable or have a server default, drop an index (no query's result
depends on one). Anything else (dropping, renaming or altering a column or table, a
constraint, `batch_alter_table`'s table copy, rewriting rows with `execute`/`get_bind`;
but `CREATE FUNCTION`/`CREATE TRIGGER`, an `INSERT INTO` a table the same upgrade creates
(filling it from the existing rows) and asking `get_bind().dialect.name` add nothing the
previous release reads) is a contract step, allowed only in a migration that says
so: a module-level `CONTRACT = "..."` naming why the previous release no longer uses
what it changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

from campaigns.storage.store import MIGRATIONS

EXPAND_ONLY_FROM = "0012"  # 0001-0011 were reviewed by hand (see the last test)
# op.f() only names a constraint or index (alembic's naming convention helper).
EXPAND = {"create_table", "create_index", "add_column", "drop_index", "f"}


def contract_steps(source: str) -> list[str]:
    """What `upgrade()` in a migration's source does beyond expanding; [] when it only expands
    or when the module declares itself a contract step (CONTRACT = "why")."""
    tree = ast.parse(source)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "CONTRACT" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            and node.value.value.strip()
        ):
            return []
    upgrade = next(
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
    )
    found = []
    created = {
        call.args[0].value
        for call in ast.walk(upgrade)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "create_table"
        and call.args
        and isinstance(call.args[0], ast.Constant)
    }
    # `op.get_bind().dialect.name` only asks which database this is.
    dialect_checks = {
        id(node.value.value)
        for node in ast.walk(upgrade)
        if isinstance(node, ast.Attribute)
        and node.attr == "name"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "dialect"
    }
    for call in ast.walk(upgrade):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        owner = call.func.value
        if not (isinstance(owner, ast.Name) and owner.id == "op"):
            continue
        name = call.func.attr
        if name == "get_bind" and id(call) in dialect_checks:
            continue
        if name == "execute" and _creates(call, created):
            continue
        if name not in EXPAND:
            found.append(f"op.{name} (line {call.lineno})")
        elif name == "add_column" and not _nullable_or_defaulted(call):
            found.append(
                f"op.add_column of a NOT NULL column without a default (line {call.lineno})"
            )
    return found


def _creates(call: ast.Call, created: set[str]) -> bool:
    """`op.execute("CREATE FUNCTION|TRIGGER ...")`: DDL that adds (a new table's trigger),
    or `op.execute("INSERT INTO new_table ...")` for a table in `created` (its first
    contents). An f-string counts by its leading literal text."""
    first = call.args[0] if call.args else None
    if isinstance(first, ast.JoinedStr) and first.values:
        first = first.values[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return False
    text = first.value.lstrip()
    words = text.split()
    if len(words) >= 3 and [w.upper() for w in words[:2]] == ["INSERT", "INTO"]:
        return words[2] in created
    return text.upper().startswith(("CREATE FUNCTION", "CREATE TRIGGER"))


def _nullable_or_defaulted(call: ast.Call) -> bool:
    """`op.add_column(table, sa.Column(..., nullable=True | server_default=...))`."""
    columns = [arg for arg in call.args if isinstance(arg, ast.Call)]
    keywords = {kw.arg: kw.value for column in columns for kw in column.keywords}
    nullable = keywords.get("nullable")
    explicit_null = isinstance(nullable, ast.Constant) and nullable.value is True
    return explicit_null or "server_default" in keywords


def migrations() -> dict[str, Path]:
    return {path.name[:4]: path for path in sorted((MIGRATIONS / "versions").glob("[0-9]*_*.py"))}


def test_every_migration_from_0012_only_expands_or_says_it_contracts():
    for revision, path in migrations().items():
        if revision >= EXPAND_ONLY_FROM:
            assert contract_steps(path.read_text()) == [], f"{path.name}: see this test's docstring"


def test_the_rule_tells_expanding_from_contracting():
    def migration(body: str, extra: str = "") -> str:
        head = f"from alembic import op\nimport sqlalchemy as sa\n{extra}\n"
        return f"{head}def upgrade() -> None:\n{body}\n"

    expanding = """
    op.create_table("heartbeats", sa.Column("worker", sa.String(64), nullable=False))
    op.add_column("deliveries", sa.Column("note", sa.Text(), nullable=True))
    op.add_column("campaigns", sa.Column("paused_reason", sa.Text(), server_default=""))
    op.create_index("ix_note", "deliveries", ["note"])
"""
    assert contract_steps(migration(expanding)) == []
    filling = """
    op.create_table("counts", sa.Column("n", sa.Integer, nullable=False))
    op.execute(f"INSERT INTO counts (n) SELECT count(*) FROM {table}")
    op.execute(f"CREATE TRIGGER counts_insert AFTER INSERT ON events BEGIN {body} END")
"""
    assert contract_steps(migration(filling)) == []
    assert contract_steps(migration('    op.drop_column("events", "campaign")')) == [
        "op.drop_column (line 5)"
    ]
    assert contract_steps(
        migration('    op.add_column("contacts", sa.Column("kind", sa.Text(), nullable=False))')
    ) == ["op.add_column of a NOT NULL column without a default (line 5)"]
    assert contract_steps(migration('    op.add_column("contacts", sa.Column("kind", sa.Text()))'))
    for body in (
        '    op.alter_column("contacts", "email", new_column_name="address")',
        '    op.rename_table("events", "provider_events")',
        "    op.execute(\"UPDATE events SET type = 'bounced_hard'\")",
        '    op.execute("INSERT INTO events SELECT * FROM events")',
        '    op.execute(f"DELETE FROM events WHERE type = {kind}")',
        '    with op.batch_alter_table("events") as batch:\n        batch.drop_column("campaign")',
    ):
        assert contract_steps(migration(body)), body
    marked = 'CONTRACT = "events.campaign: unread since 0.3 (the release before this one)"'
    assert contract_steps(migration('    op.drop_column("events", "campaign")', marked)) == []


def test_the_migrations_before_the_rule_were_reviewed():
    # 0001-0011 by hand: tables, nullable columns and indexes (0002 and 0006 dropped an
    # index each, replaced in the same migration), except two data rewrites, 0009
    # (IDN addresses as A-labels) and 0010 (SendGrid event names as the one model's
    # kinds): a previous release still writing the old form while they run would leave
    # rows in it. Both are documented in docs/architecture.md, "Upgrades".
    reviewed = {r: p for r, p in migrations().items() if r < EXPAND_ONLY_FROM}
    assert len(reviewed) == int(EXPAND_ONLY_FROM) - 1
    flagged = {revision for revision, path in reviewed.items() if contract_steps(path.read_text())}
    assert flagged == {"0009", "0010"}
