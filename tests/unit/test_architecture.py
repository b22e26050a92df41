"""The layout's rules, read from the source: no import cycles, every module importable on its
own, statuses only through campaigns.storage.statuses, no module over 600 lines.

The checks read the files with `ast` (nothing is imported but in (b)); each is a function of
the source root, so a failure names the modules, files and lines at fault.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from campaigns.storage.statuses import CampaignStatus, DeliveryStatus, EnrollmentStatus

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("campaigns", "senders")
MIGRATIONS = Path("campaigns", "storage", "migrations")
STATUSES = Path("campaigns", "storage", "statuses.py")
MAX_LINES = 600
LONG_ALLOWED = {Path("cli.py")}  # the thin typer CLI stays one file


def source_files(root: Path) -> dict[str, Path]:
    """Module name -> file, for cli.py and the packages (alembic's version files, which
    alembic loads by path and which are not importable by name, are left out)."""
    files = {"cli": root / "cli.py"}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative.is_relative_to(MIGRATIONS / "versions"):
                continue
            parts = relative.with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


# -- (a) import cycles --------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    target: str
    line: int
    in_function: bool


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, with whether it runs inside a function; the body of an
    `if TYPE_CHECKING:` block (never run) is left out, its `else:` is not."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.orelse:
                    yield from visit_one(statement, in_function)
                continue
            yield from visit_one(child, in_function)

    def visit_one(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.AST, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
        function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from visit(node, in_function or function)

    yield from visit(tree, False)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, path: Path, known: set[str]
) -> Iterator[str]:
    """The project modules an import statement loads (outside modules are left out)."""

    def longest_known(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        for alias in node.names:
            if target := longest_known(alias.name):
                yield target
        return
    base = node.module or ""
    if node.level:  # relative: from the module's own package, up level - 1
        package = _package_of(module, path).split(".")
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    for alias in node.names:
        if f"{base}.{alias.name}" in known:  # `from campaigns.x import y`, y a module
            yield f"{base}.{alias.name}"
        elif target := longest_known(base):
            yield target


def import_graph(root: Path) -> dict[str, dict[str, Edge]]:
    """Module -> the project modules it imports, each with the line of its first import
    (at the top level if there is one there)."""
    files = source_files(root)
    known = set(files)
    graph: dict[str, dict[str, Edge]] = {}
    for module, path in files.items():
        edges: dict[str, Edge] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, in_function in _imports(tree):
            for target in _targets(node, module, path, known):
                seen = edges.get(target)
                if target != module and (seen is None or (seen.in_function and not in_function)):
                    edges[target] = Edge(target, node.lineno, in_function)
        graph[module] = edges
    return graph


def import_cycles(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), as a module path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for module in sorted(graph):
        if module not in index:
            connect(module)
    return [_cycle_in(group, graph) for group in sorted(groups)]


def _cycle_in(group: list[str], graph: dict[str, dict[str, Edge]]) -> list[str]:
    """A shortest cycle through the group's first module, staying inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module]):
                if target == start:
                    return [*paths[module], start]
                if target in members and target not in paths:
                    paths[target] = [*paths[module], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in {group}")


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, Edge]], root: Path) -> str:
    files = source_files(root)
    steps = []
    for module, target in itertools.pairwise(cycle):
        edge = graph[module][target]
        where = files[module].relative_to(root)
        inside = " (inside a function)" if edge.in_function else ""
        steps.append(f"  {module} -> {target}  [{where}:{edge.line}{inside}]")
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_the_graph_reads_imports_in_functions_relative_and_not_type_checking(
    tmp_path: Path,
) -> None:
    sources = {
        "cli.py": "",
        "campaigns/__init__.py": "",
        "campaigns/a.py": "from campaigns import b\n",
        "campaigns/b.py": "def later():\n    from campaigns.c import thing\n",
        "campaigns/c.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from campaigns.a import X\n"
            "import campaigns.sub.d as d\n"
        ),
        "campaigns/sub/__init__.py": "",
        "campaigns/sub/d.py": "from ..a import Y\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["campaigns.c"] == {"campaigns.sub.d": Edge("campaigns.sub.d", 4, False)}
    assert graph["campaigns.b"] == {"campaigns.c": Edge("campaigns.c", 2, True)}
    cycles = import_cycles(graph)
    assert cycles == [
        ["campaigns.a", "campaigns.b", "campaigns.c", "campaigns.sub.d", "campaigns.a"]
    ]
    assert "[campaigns/b.py:2 (inside a function)]" in describe_cycle(cycles[0], graph, tmp_path)


def test_no_import_cycles() -> None:
    graph = import_graph(ROOT)
    cycles = [describe_cycle(cycle, graph, ROOT) for cycle in import_cycles(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


# -- (b) every module imports on its own -------------------------------------------------


# alembic runs env.py itself, inside a migration context; imported alone it has none.
NOT_IMPORTED_ALONE = {"campaigns.storage.migrations.env"}


# One fresh python on the tree loads the outside libraries the modules import at their top,
# then imports each module in a child forked for it: a child starts with no project module
# loaded, as `python -c "import m"` would, but in milliseconds rather than a second each.
IMPORT_EACH = """
import importlib, json, os, sys, traceback
libraries, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for library in libraries:
    try:
        importlib.import_module(library)
    except Exception:
        pass  # the module that needs it will say why
running, failing = {}, {}

def finish_one():
    child, status = os.wait()
    module, read = running.pop(child)
    with os.fdopen(read, "rb") as pipe:  # a one-line message: it fits the pipe's buffer
        message = pipe.read().decode()
    if status:
        failing[module] = message or "no message"

for module in modules:
    if len(running) >= (os.cpu_count() or 2):
        finish_one()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            importlib.import_module(module)
        except BaseException as exc:
            os.write(write, traceback.format_exception_only(exc)[-1].strip().encode())
            os._exit(1)
        os._exit(0)
    os.close(write)
    running[child] = (module, read)
while running:
    finish_one()
json.dump(failing, sys.stdout)
"""


def outside_libraries(root: Path) -> list[str]:
    """The outside modules the project's modules import at their top level."""
    project = {name.partition(".")[0] for name in source_files(root)}
    libraries = set()
    for path in source_files(root).values():
        for node, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if in_function or (isinstance(node, ast.ImportFrom) and node.level):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            libraries |= {n for n in names if n and n.partition(".")[0] not in project}
    return sorted(libraries)


def modules_that_fail_alone(root: Path) -> dict[str, str]:
    """Module -> why `import module` fails when it is the first project module imported."""
    modules = sorted(set(source_files(root)) - NOT_IMPORTED_ALONE)
    environ = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environ["PYTHONPATH"] = str(root)
    arguments = [json.dumps(outside_libraries(root)), json.dumps(modules)]
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *arguments],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_module_imports_on_its_own() -> None:
    failing = modules_that_fail_alone(ROOT)
    assert not failing, "modules that cannot be imported alone:\n" + "\n".join(
        f"  {module}: {error}" for module, error in failing.items()
    )


# -- (c) statuses only through campaigns.storage.statuses ----------------------------------


STATUS_VALUES = frozenset(
    status.value for kind in (DeliveryStatus, EnrollmentStatus, CampaignStatus) for status in kind
)


def _status_strings(node: ast.AST | None) -> Iterator[ast.Constant]:
    """String constants equal to a status value: the node itself, or in a tuple/list/set."""
    if isinstance(node, ast.Constant) and node.value in STATUS_VALUES:
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for element in node.elts:
            yield from _status_strings(element)
    elif isinstance(node, ast.Starred):
        yield from _status_strings(node.value)


def _is_status(node: ast.AST) -> bool:
    """`x.status`, `table.c.status`, `row["status"]` or a variable named status."""
    return (
        (isinstance(node, ast.Attribute) and node.attr == "status")
        or (isinstance(node, ast.Name) and node.id == "status")
        or (isinstance(node, ast.Subscript) and _is_constant(node.slice, "status"))
    )


def _is_constant(node: ast.AST | None, value: str) -> bool:
    return isinstance(node, ast.Constant) and node.value == value


def _is_status_group(node: ast.AST | None) -> bool:
    """A tuple or list whose strings are all status values: `GONE = ("sent", "unknown")`,
    not a list of report columns that happens to hold the word "unsubscribed"."""
    if not isinstance(node, ast.Tuple | ast.List):
        return False
    strings = [
        e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
    ]
    return bool(strings) and all(value in STATUS_VALUES for value in strings)


def bare_statuses_in(tree: ast.AST) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_status(side) for side in sides):
                for side in sides:
                    yield from _status_strings(side)
        elif isinstance(node, ast.Call):
            column = bool(node.args) and _is_constant(node.args[0], "status")
            for keyword in node.keywords:  # status=..., and Column("status", default=...)
                if keyword.arg == "status" or (column and keyword.arg == "default"):
                    yield from _status_strings(keyword.value)
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr in ("in_", "not_in"):
                for argument in node.args:
                    yield from _status_strings(argument)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if _is_constant(key, "status"):
                    yield from _status_strings(value)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and _is_status_group(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) for target in targets):
                yield from _status_strings(node.value)


def bare_statuses(root: Path) -> list[str]:
    """`file:line: 'value'` for each status written as a bare string under campaigns/."""
    found = []
    for path in sorted((root / "campaigns").rglob("*.py")):
        relative = path.relative_to(root)
        if relative == STATUSES or relative.is_relative_to(MIGRATIONS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for constant in bare_statuses_in(tree):
            found.append(f"{relative}:{constant.lineno}: {constant.value!r}")
    return sorted(set(found))


def test_the_status_scan_finds_each_form() -> None:
    source = """
if row.status == "sent" or deliveries.c.status in ("claimed", "sending"): pass
if row["status"] != "unknown" and status == "paused": pass
query.values(status="cancelled").where(deliveries.c.status.in_(["failed"]))
rows = [{"status": "skipped", "kind": "sent"}]
GONE = ("scheduled", "active")
COLUMNS = ("opened", "unsubscribed")  # report columns, not statuses
Column("status", String(16), default="unsubscribed")
if result.outcome == "sent": pass  # a sender's outcome, not a status
"""
    found = [(c.lineno, c.value) for c in bare_statuses_in(ast.parse(source))]
    assert sorted(found) == [
        (2, "claimed"), (2, "sending"), (2, "sent"), (3, "paused"), (3, "unknown"),
        (4, "cancelled"), (4, "failed"), (5, "skipped"), (6, "active"), (6, "scheduled"),
        (8, "unsubscribed"),
    ]  # fmt: skip


def test_statuses_are_written_through_the_enums() -> None:
    found = bare_statuses(ROOT)
    assert not found, "statuses as bare strings (use campaigns.storage.statuses):\n" + "\n".join(
        f"  {line}" for line in found
    )


# -- (d) module size -----------------------------------------------------------------------


def oversized(root: Path) -> dict[str, int]:
    """Modules over MAX_LINES lines (cli.py is allowed), with their line counts."""
    counts = {}
    for path in source_files(root).values():
        relative = path.relative_to(root)
        if relative in LONG_ALLOWED:
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            counts[str(relative)] = lines
    return dict(sorted(counts.items()))


def test_no_module_is_over_600_lines() -> None:
    counts = oversized(ROOT)
    assert not counts, f"modules over {MAX_LINES} lines:\n" + "\n".join(
        f"  {path}: {lines}" for path, lines in counts.items()
    )


# -- (e) the console is the last stage ------------------------------------------------------

# The stages in the order data flows through them; the console (issue 20) comes after the
# studio and may import every stage before it, while none of them imports the console.
# (Earlier stages' own order is not checked here: several import a later one today.)
STAGES = (
    "authoring",
    "rendering",
    "planning",
    "delivery",
    "storage",
    "compliance",
    "reporting",
    "web",
    "studio",
    "console",
)


def imports_of_the_console(root: Path) -> list[str]:
    """`module:line imports target` for every import of campaigns.console from a module of
    an earlier stage (or any module but the CLI)."""
    found = []
    for module, edges in import_graph(root).items():
        if module == "cli" or module.startswith("campaigns.console"):
            continue
        for target, edge in edges.items():
            if target.startswith("campaigns.console"):
                found.append(f"{module}:{edge.line} imports {target}")
    return sorted(found)


def test_no_earlier_stage_imports_the_console() -> None:
    assert STAGES[-1] == "console" and STAGES[-2] == "studio"
    found = imports_of_the_console(ROOT)
    assert not found, "imports of the console from an earlier stage:\n" + "\n".join(found)
