"""benchmarks/compare.py reads run.py's figure lines and says which way each one moved."""

from __future__ import annotations

from benchmarks.compare import keep_best, parse_figures, verdict

OUTPUT = """\
machine: Linux-6.1-x86_64, 2 cores, Python 3.11.7; quick sizes
personalise: compiled path (subject+html+text)                         26,156.3 messages/s     $ python benchmarks/run.py personalise
dispatch: SQLite, 1 worker, null sender (2,000, best of 3)              1,326.9 deliveries/s   $ python benchmarks/run.py dispatch --quick
sendgrid: batched, HTTP requests                                            1.0 per 1,000 msgs $ python benchmarks/run.py sendgrid
memory: peak RSS dispatching 10,000 deliveries                             96.2 MB             $ python -c 'x 1.5 y'
enroll: import+plan 5,000 contacts (30,000 rows)                            3.4 s              $ python benchmarks/run.py enroll
"""  # noqa: E501


def test_each_figure_line_gives_its_name_value_and_unit() -> None:
    assert parse_figures(OUTPUT) == {
        "personalise: compiled path (subject+html+text)": (26156.3, "messages/s"),
        "dispatch: SQLite, 1 worker, null sender (2,000, best of 3)": (1326.9, "deliveries/s"),
        "sendgrid: batched, HTTP requests": (1.0, "per 1,000 msgs"),
        "memory: peak RSS dispatching 10,000 deliveries": (96.2, "MB"),
        "enroll: import+plan 5,000 contacts (30,000 rows)": (3.4, "s"),
    }


def test_the_unit_says_which_way_is_better() -> None:
    assert verdict(100.0, 120.0, "messages/s") == "better"
    assert verdict(100.0, 120.0, "MB") == "worse"
    assert verdict(3.0, 2.0, "s") == "better"
    assert verdict(100.0, 101.0, "deliveries/s") == "same"
    assert verdict(2.0, 3.0, "x") == "ratio"


def test_each_figure_keeps_its_best_round() -> None:
    rounds = [
        {"a": (10.0, "messages/s"), "b": (5.0, "s")},
        {"a": (12.0, "messages/s"), "b": (6.0, "s")},
    ]
    assert keep_best(rounds) == {"a": (12.0, "messages/s"), "b": (5.0, "s")}
