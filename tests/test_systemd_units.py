"""The systemd units in deploy/systemd/: `systemd-analyze verify` accepts each, as written.

verify needs the ExecStart binary to exist. The units name where the README installs
dripmail (/opt/dripmail/current/bin/dripmail); the test verifies a copy of each file in
which that one path is replaced by the `dripmail` this test run installed, every other
line unchanged, so a mistyped key, section or value in the real file fails here.
systemd-analyze comes from Debian's `systemd` package (.ci/run installs it); it verifies
offline, without systemd running as PID 1.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.settings import variables

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
INSTALLED = "/opt/dripmail/current/bin/dripmail"
UNITS = ("dripmail-worker.service", "dripmail-serve.service", "dripmail-console.service")


def installed_dripmail() -> Path:
    """The `dripmail` console script of this environment (pip install -e . made it)."""
    found = shutil.which("dripmail") or str(Path(sys.executable).parent / "dripmail")
    path = Path(found)
    assert path.is_file(), "no `dripmail` script: install the project (pip install -e .)"
    return path


def settings_of(unit: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, values in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_accepts_the_unit(unit, tmp_path):
    text = (DEPLOY / unit).read_text()
    assert f"ExecStart={INSTALLED} " in text
    (tmp_path / unit).write_text(text.replace(INSTALLED, str(installed_dripmail())))

    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Any line is a finding (an unknown key is only a warning, with exit 0).
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == ""


@pytest.mark.parametrize("unit", UNITS)
def test_each_unit_runs_as_its_own_user_with_systemds_hardening(unit):
    found = settings_of(unit)
    expected = {
        "User": "dripmail",
        "EnvironmentFile": "/etc/dripmail/dripmail.env",
        "StateDirectory": "dripmail",
        "WorkingDirectory": "/var/lib/dripmail",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }
    assert {key: found.get(key, [None])[-1] for key in expected} == expected
    assert "DynamicUser" not in found  # one static user owns the SQLite file and the outbox


def test_the_worker_and_serve_say_when_they_are_ready():
    assert settings_of("dripmail-worker.service")["Type"] == ["notify"]
    assert settings_of("dripmail-serve.service")["Type"] == ["notify"]
    # SIGTERM to the main process only: it passes the stop on to its worker processes.
    assert settings_of("dripmail-worker.service")["KillMode"] == ["mixed"]
    serve = settings_of("dripmail-serve.service")["ExecStart"][0]
    assert "--host 127.0.0.1" in serve  # loopback: the https proxy faces the internet


def test_the_environment_file_names_only_variables_dripmail_reads():
    text = (DEPLOY / "dripmail.env.example").read_text()
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    unknown = {
        name
        for name in named - set(variables())
        if not name.startswith("AWS_")  # boto3 reads those itself
    }
    assert not unknown
    assert "-m 0600" in text  # readable by root alone: systemd reads it, not the service
    assert "NOTIFY_SOCKET" not in named  # systemd sets it
