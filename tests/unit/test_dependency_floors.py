"""pyproject.toml's runtime dependencies stay at floors that leave out known-vulnerable releases.

Each row: the package, the last release an advisory names as affected, the first fixed one,
and the advisories (the comment beside the requirement in pyproject.toml says the same).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

FLOORS = [
    ("jinja2", "3.1.5", "3.1.6", "CVE-2025-27516; CVE-2024-56326, CVE-2024-56201 (3.1.5)"),
    ("starlette", "1.3.0", "1.3.1", "CVE-2026-48710, CVE-2026-48818, CVE-2026-54282/54283"),
    ("h11", "0.15.0", "0.16.0", "CVE-2025-43859 (request smuggling, under uvicorn)"),
    ("cryptography", "50.0.0", "50.0.1", "GHSA-537c-gmf6-5ccf, CVE-2026-69247, OpenSSL 4.0.2"),
    ("lxml", "6.0.4", "6.1.0", "CVE-2026-41066 (XXE to local files)"),
    ("pyyaml", "5.3.1", "6.0", "CVE-2020-14343 (full_load runs code)"),
    ("lxml-html-clean", "0.3.1", "0.4.0", "CVE-2024-52595"),
    ("pydantic", "2.3.0", "2.6.0", "CVE-2024-3772 (email ReDoS, 2.4.0)"),
    ("markdown-it-py", "2.1.0", "3.0.0", "CVE-2023-26303 (2.2.0)"),
    ("uvicorn", "0.11.6", "0.29.0", "CVE-2020-7694, CVE-2020-7695 (0.11.7)"),
    ("boto3", "1.4.4", "1.35.0", "SNYK-PYTHON-BOTO3-40617 (1.4.5); urllib3 2.x on Python 3.10+"),
    ("httpx", "0.22.0", "0.23.0", "CVE-2021-41945 (URL parsing, 0.23.0)"),
    ("dnspython", "2.6.0", "2.6.1", "CVE-2023-29483 (TuDoor: a forged answer taken first)"),
]


def runtime_requirements(pyproject: Path) -> dict[str, Requirement]:
    """Normalised name -> requirement, for [project].dependencies."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    found = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        found[requirement.name.lower().replace("_", "-")] = requirement
    return found


@pytest.mark.parametrize(("name", "vulnerable", "fixed", "advisories"), FLOORS)
def test_the_floor_leaves_out_the_vulnerable_release_and_allows_the_fixed_one(
    name, vulnerable, fixed, advisories
):
    requirements = runtime_requirements(ROOT / "pyproject.toml")
    assert name in requirements, f"{name} is not a runtime dependency ({advisories})"
    specifier = requirements[name].specifier
    assert not specifier.contains(Version(vulnerable), prereleases=True), (
        f"{name} {specifier} still allows {vulnerable}: {advisories}"
    )
    assert specifier.contains(Version(fixed)), f"{name} {specifier} refuses {fixed}"


def test_a_module_that_imports_cryptography_declares_it():
    # The webhook signature check imports cryptography; a transitive copy through sendgrid
    # would follow sendgrid's floor, not ours.
    source = (ROOT / "campaigns" / "web" / "webhooks.py").read_text(encoding="utf-8")
    assert "from cryptography" in source
    assert "cryptography" in runtime_requirements(ROOT / "pyproject.toml")
