"""`dripmail check`: the bundled campaign passes; broken copies report each defect with its file."""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaigns.authoring.checks import (
    EMAIL_CHECKS,
    Finding,
    build_email,
    check_campaign,
    check_email,
    check_step,
    check_unsubscribe,
    compile_steps,
)
from campaigns.authoring.spec import load_folder
from cli import app as cli_app

runner = CliRunner()


def dripmail(*args: str):
    return runner.invoke(cli_app, list(args), env={"COLUMNS": "250"})


def step_file(folder: Path, number: int) -> Path:
    return next(folder.glob(f"{number:02d}-*.md"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text().rstrip("\n") + "\n\n" + text + "\n")


def codes(findings: list[Finding], file: Path | str) -> set[str]:
    return {f.code for f in findings if f.file == str(file)}


def test_the_bundled_campaign_passes(clinic_folder):
    result = dripmail("check", str(clinic_folder))
    assert result.exit_code == 0, result.output
    assert "ketamine-and-sleep: 0 errors" in result.stdout


def test_checking_opens_no_socket(clinic, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("check opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert check_campaign(clinic).ok


@pytest.fixture
def broken(clinic_folder: Path) -> Path:
    """A copy of the clinic campaign with one defect per step (and one in campaign.yaml)."""
    welcome, second, third, fourth, fifth, sixth = (
        step_file(clinic_folder, n) for n in range(1, 7)
    )
    edit(clinic_folder / "campaign.yaml", "website: https://", "website: http://")
    append(welcome, "Your results, {{ last_name }}, are ready.")  # undefined variable
    append(second, "Read [our sleep guide](http://balancedketamine.example.com/sleep).")
    append(second, "![](https://balancedketamine.example.com/bed.png)")  # no alt text
    third.write_text("# What About Physical Health?\n")  # nothing but a heading
    append(fourth, "Questions? {{ surname }}")  # a second undefined variable, another file
    paragraph = "Sleep matters for everyone, every night, in every season of life. " * 12
    append(fifth, "\n\n".join([paragraph] * 160))  # far over Gmail's 102 KB
    edit(sixth, "preheader: At the end of the day, your ketamine experience will be unique.\n", "")
    edit(sixth, "# All Patients are Different", "# " + "All Patients are Different " * 4)
    append(sixth, "To book, [click here](https://balancedketamine.example.com/book).")
    return clinic_folder


def test_each_defect_is_reported_with_its_file(broken):
    report = check_campaign(load_folder(broken))
    findings = report.findings
    files = {n: str(step_file(broken, n)) for n in range(1, 7)}

    # The clinic's own subjects also hold health words (sensitive-subject warnings:
    # tests/unit/test_discreet.py); the defects are what these lines are about.
    assert codes(findings, files[1]) - {"sensitive-subject"} == {"template"}
    welcome = next(f for f in findings if f.file == files[1] and f.code == "template")
    assert "last_name" in welcome.message
    assert welcome.line == len(Path(files[1]).read_text().splitlines())
    # Every broken step, not just the first.
    assert codes(findings, files[4]) - {"sensitive-subject"} == {"template"}
    assert {"http-url", "alt-text"} <= codes(findings, files[2])
    http = next(f for f in findings if f.code == "http-url" and f.file == files[2])
    assert "http://balancedketamine.example.com/sleep" in http.message
    assert http.line is not None
    assert "empty-text" in codes(findings, files[3])
    size = next(f for f in findings if f.code == "html-size")
    assert (size.severity, size.file) == ("error", files[5])
    sixth = [f for f in findings if f.file == files[6]]
    assert {(f.severity, f.code) for f in sixth} >= {
        ("warning", "subject-length"),
        ("warning", "preheader"),
        ("warning", "link-text"),
    }
    yaml_finding = next(f for f in findings if f.file == str(broken / "campaign.yaml"))
    assert yaml_finding.code == "http-url" and yaml_finding.line is not None
    assert not report.ok


def test_the_command_names_each_file_and_exits_1(broken):
    result = dripmail("check", str(broken))
    assert result.exit_code == 1, result.output
    errors = result.stderr
    for number in (1, 2, 3, 4, 5):
        assert f"error: {step_file(broken, number)}" in errors
    assert f"error: {broken / 'campaign.yaml'}:" in errors
    assert f"warning: {step_file(broken, 6)}" in result.stdout
    assert "Traceback" not in result.output


def test_a_missing_postal_address_is_an_error_in_every_email(clinic_folder):
    spec = clinic_folder / "campaign.yaml"
    spec.write_text(re.sub(r"postal_address: .*", 'postal_address: " "', spec.read_text()))
    report = check_campaign(load_folder(clinic_folder))
    postal = [f for f in report.errors if f.code == "postal-address"]
    assert sorted(f.file for f in postal) == sorted(
        str(step_file(clinic_folder, n)) for n in range(1, 7)
    )


def test_a_missing_unsubscribe_link_or_headers_is_an_error(clinic):
    steps, _ = compile_steps(clinic)
    email = build_email(clinic, steps[clinic.steps[0].key])
    assert check_unsubscribe(email) == []
    stripped = dataclasses.replace(
        email,
        html=email.html.replace(email.unsubscribe_url, "https://example.org/elsewhere"),
        text=email.text.replace(email.unsubscribe_url, ""),
        headers={k: v for k, v in email.headers.items() if not k.startswith("List-Unsubscribe")},
    )
    found = check_unsubscribe(stripped)
    assert [f.code for f in found] == [
        "unsubscribe-link",
        "unsubscribe-link",
        "unsubscribe-headers",
    ]
    assert {f.file for f in found} == {str(Path(clinic.origin) / clinic.steps[0].file)}


def test_html_between_80_and_102_kb_is_a_warning(clinic_folder):
    paragraph = "Sleep matters for everyone, every night, in every season of life. " * 12
    target = step_file(clinic_folder, 2)
    append(target, "\n\n".join([paragraph] * 95))
    findings = check_step(load_folder(clinic_folder), "how-mental-health-affects-sleep")
    size = [f for f in findings if f.code == "html-size"]
    assert [(f.severity, f.file) for f in size] == [("warning", str(target))]


def test_checks_are_small_functions_the_preview_can_run_per_email(clinic):
    key = clinic.steps[0].key
    assert check_step(clinic, key) == []
    steps, _ = compile_steps(clinic)
    email = build_email(clinic, steps[key])
    assert check_email(email, EMAIL_CHECKS) == []


def test_a_plain_http_public_url_and_placeholders_are_errors_in_campaign_yaml(clinic_folder):
    spec = clinic_folder / "campaign.yaml"
    edit(spec, "links:\n", "links:\n  public_url: http://mail.clinic.example\n")
    edit(spec, "organisation: Balanced Ketamine\n", "organisation: 'TODO: your organisation'\n")
    report = check_campaign(load_folder(clinic_folder))
    yaml_errors = {f.code: f for f in report.errors if f.file == str(spec)}
    assert set(yaml_errors) == {"public-url", "placeholder"}
    lines = spec.read_text().splitlines()
    assert "public_url" in lines[yaml_errors["public-url"].line - 1]
    assert "organisation" in lines[yaml_errors["placeholder"].line - 1]
