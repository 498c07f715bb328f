"""`make audit`'s latest-release mode (deploy/audit/audit.py), with PyPI's JSON faked."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("audit", ROOT / "deploy/audit/audit.py")
assert spec and spec.loader
audit: Any = importlib.util.module_from_spec(spec)
sys.modules["audit"] = audit
spec.loader.exec_module(audit)

PYCRYPTO = {
    "info": {"version": "2.6.1"},
    "releases": {"2.6.1": [{"yanked": False}], "2.6": [{"yanked": True, "yanked_reason": "bad"}]},
    "vulnerabilities": [
        {
            "id": "PYSEC-2017-94",
            "aliases": ["CVE-2013-7459", "GHSA-cq27-v7xp-c356"],
            "fixed_in": [],
        },
        {
            "id": "GHSA-cq27-v7xp-c356",
            "aliases": ["CVE-2013-7459", "PYSEC-2017-94"],
            "fixed_in": [],
        },
        {"id": "GHSA-old", "aliases": [], "fixed_in": ["2.6.0"], "withdrawn": "2020-01-01"},
    ],
}


def fake_pypi(monkeypatch: pytest.MonkeyPatch, data: Any) -> None:
    monkeypatch.setattr(audit, "get_json", lambda url: data)


def test_the_latest_releases_advisories_are_findings_and_a_withdrawn_one_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_pypi(monkeypatch, PYCRYPTO)
    findings, behind, error = audit.audit_latest_release("pycrypto", "2.6.1")
    assert [finding.id for finding in findings] == ["PYSEC-2017-94", "GHSA-cq27-v7xp-c356"]
    assert behind is None and error is None


def test_an_older_pin_is_listed_as_behind_and_a_yanked_one_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_pypi(monkeypatch, PYCRYPTO)
    findings, behind, _ = audit.audit_latest_release("pycrypto", "2.6")
    assert behind == "2.6.1"
    assert findings[-1].id == "YANKED-pycrypto-2.6"


def test_a_package_pypi_does_not_know_is_an_error_not_a_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_pypi(monkeypatch, None)
    assert audit.audit_latest_release("nowhere", "1.0")[2] == "nowhere 1.0: not found on PyPI"


def test_a_backported_fix_on_the_pins_line_clears_the_advisory() -> None:
    finding = audit.Finding("p", "1.2.6", "X", fixed_in=["1.2.5", "2.1.0"])
    assert not audit.affects(finding, "1.2.6")
    assert audit.affects(finding, "1.1.9")
    assert audit.affects(finding, "2.0.3")


def test_only_accepted_findings_pass_and_an_alias_counts(tmp_path: Path) -> None:
    accepted_file = tmp_path / "accepted.toml"
    accepted_file.write_text(
        '[[accepted]]\nid = "PYSEC-2017-94"\npackage = "PyCrypto"\n'
        'reason = "not imported at run time"\nreview_by = 2099-01-01\n'
    )
    accepted = audit.load_accepted(accepted_file)
    assert accepted[0].review_by == dt.date(2099, 1, 1)
    both = [
        audit.Finding("pycrypto", "2.6.1", "PYSEC-2017-94"),
        audit.Finding("pycrypto", "2.6.1", "GHSA-cq27-v7xp-c356", aliases=["PYSEC-2017-94"]),
    ]
    assert audit.report(both, [], accepted) == 0
    other = audit.Finding("pycrypto", "2.6.1", "PYSEC-2018-97")
    assert audit.report([*both, other], [], accepted) == 1
    assert audit.report([], ["x 1.0: not found on PyPI"], accepted) == 1


def test_an_acceptance_needs_every_field(tmp_path: Path) -> None:
    accepted_file = tmp_path / "accepted.toml"
    accepted_file.write_text('[[accepted]]\nid = "X"\npackage = "p"\n')
    with pytest.raises(SystemExit):
        audit.load_accepted(accepted_file)


def test_the_checked_in_acceptances_are_well_formed() -> None:
    for entry in audit.load_accepted(ROOT / "deploy/audit/accepted.toml"):
        assert entry.reason.strip(), entry.id
