"""dripmail benchmarks before and after: a git ref's figures beside this tree's, with ratios.

    python benchmarks/compare.py 162fb71 personalise --quick
    python benchmarks/compare.py main dispatch memory --rounds 3

BASE (any git ref) is checked out into a temporary `git worktree`; then benchmarks/run.py of
the base tree (its own folder as working directory and PYTHONPATH) and of this tree (as it is
on disk, uncommitted changes included) run in turns: base, current, base, current, ... for
`--rounds` rounds (2 by default). The load of a shared machine changes over minutes, so turns
put both under the same load, and each figure keeps its best round (the highest rate, the
lowest time or memory; the mean for a ratio `x`, which has no better direction).

Each figure line of run.py (`name  value unit  $ command`) is printed as: name, before, after,
unit, after/before, and `better` or `worse` by the unit (a rate `.../s` is better higher;
`s`, `MB` and `per ...` are better lower), `same` within 2%. The worktree is removed
afterwards, also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAME_WITHIN = 0.02
# run.py prints values with `,.1f`: the last such number before ` $ ` is the value; a unit
# may hold a plain number itself ("per 1,000 msgs").
VALUE = re.compile(r"(?<!\S)-?\d{1,3}(?:,\d{3})*\.\d(?!\S)")

Figures = dict[str, tuple[float, str]]  # name -> (value, unit), in run.py's order


def parse_figures(output: str) -> Figures:
    """The figure lines of run.py's output; other lines (the machine, progress) are skipped."""
    figures: Figures = {}
    for line in output.splitlines():
        head, separator, _command = line.partition(" $ ")
        values = list(VALUE.finditer(head))
        if not separator or not values:
            continue
        value = values[-1]
        name, unit = head[: value.start()].strip(), head[value.end() :].strip()
        if name and unit:
            figures[name] = (float(value.group().replace(",", "")), unit)
    return figures


def direction(unit: str) -> int:
    """+1 when a higher value is better, -1 when lower is, 0 for a ratio."""
    if unit.endswith("/s"):
        return 1
    if unit in ("s", "MB") or unit.startswith("per "):
        return -1
    return 0


def verdict(before: float, after: float, unit: str) -> str:
    way = direction(unit)
    if not way or not before:
        return "ratio" if not way else ""
    change = after / before - 1
    if abs(change) < SAME_WITHIN:
        return "same"
    return "better" if change * way > 0 else "worse"


def keep_best(rounds: list[Figures]) -> Figures:
    best: Figures = {}
    for name in dict.fromkeys(name for figures in rounds for name in figures):
        values = [figures[name][0] for figures in rounds if name in figures]
        unit = next(figures[name][1] for figures in rounds if name in figures)
        way = direction(unit)
        value = max(values) if way > 0 else min(values) if way < 0 else statistics.mean(values)
        best[name] = (value, unit)
    return best


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """`ref` checked out in a temporary worktree, removed again however the block ends."""
    with tempfile.TemporaryDirectory(prefix="dripmail-compare-") as folder:
        path = Path(folder) / "base"
        added = subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), ref]
        )
        if added.returncode:
            raise SystemExit(f"cannot check out {ref!r} into a worktree")
        # The SendGrid benchmark's test server reads the contract from ../shared, beside
        # the project: give the base tree the same neighbour.
        shared = ROOT.parent / "shared"
        if shared.is_dir():
            (Path(folder) / "shared").symlink_to(shared)
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False
            )
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)


def run_benchmarks(tree: Path, arguments: list[str], label: str) -> Figures:
    """benchmarks/run.py of `tree`, with that tree first on the import path."""
    environ = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environ["PYTHONPATH"] = str(tree)
    print(f"-- {label}: python benchmarks/run.py {' '.join(arguments)}", file=sys.stderr)
    result = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / "run.py"), *arguments],
        cwd=tree,
        env=environ,
        capture_output=True,
        text=True,
    )
    sys.stderr.write(result.stdout)
    if result.returncode:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"{label}: benchmarks/run.py failed with exit code {result.returncode}")
    figures = parse_figures(result.stdout)
    if not figures:
        raise SystemExit(f"{label}: no figures in the output of benchmarks/run.py")
    return figures


def table(before: Figures, after: Figures) -> str:
    names = list(dict.fromkeys([*before, *after]))
    width = max(len(name) for name in names)
    lines = [f"{'figure':<{width}} {'before':>14} {'after':>14} {'unit':<14} {'after/before':>12}"]
    for name in names:
        old, new = before.get(name), after.get(name)
        unit = (new or old)[1]  # type: ignore[index]
        shown = [f"{f[0]:>14,.1f}" if f else f"{'-':>14}" for f in (old, new)]
        ratio, word = f"{'-':>12}", "only before" if new is None else "only after"
        if old and new:
            ratio = f"{new[0] / old[0]:>12.3f}" if old[0] else f"{'-':>12}"
            word = verdict(old[0], new[0], unit)
        lines.append(f"{name:<{width}} {shown[0]} {shown[1]} {unit:<14} {ratio}  {word}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="git ref to compare with (a commit, branch or tag)")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all of run.py)")
    parser.add_argument("--quick", action="store_true", help="small sizes, passed to run.py")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each tree (default 2)")
    args = parser.parse_args()
    arguments = [*args.names, *(["--quick"] if args.quick else [])]
    rounds: dict[str, list[Figures]] = {"before": [], "after": []}
    with worktree(args.base) as base:
        for number in range(1, args.rounds + 1):
            for label, tree in (("before", base), ("after", ROOT)):
                where = f"{label} ({args.base if label == 'before' else 'this tree'})"
                rounds[label].append(
                    run_benchmarks(tree, arguments, f"round {number}/{args.rounds}, {where}")
                )
    print(f"before: {args.base}; after: this tree ({ROOT}); best of {args.rounds} rounds each")
    print(table(keep_best(rounds["before"]), keep_best(rounds["after"])))


if __name__ == "__main__":
    main()
