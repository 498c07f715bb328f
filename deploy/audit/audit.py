"""`make audit`: every distribution in the virtualenv against PyPI's security advisories.

Run with the virtualenv's Python (`make audit` does): it audits what `make install`
installed from pyproject.toml's pins, the dev extra and every transitive dependency
included. The project itself (an editable install) is not on PyPI and is skipped.

Two ways to ask PyPI, both from the package index alone (no other service):

- ``pip-audit``: when PyPI's per-release JSON API (``/pypi/NAME/VERSION/json``)
  answers, pip-audit (``-s pypi --strict``) looks up each installed version's own
  advisories. Complete.
- ``latest-release``: where only ``/pypi/NAME/json`` and ``/simple/`` are served (the
  index proxy CI runs behind), the advisories PyPI lists against each project's latest
  release, which are checked against the installed version, and a yanked installed
  release. A pin that is the latest release is audited completely; for an older pin an
  advisory fixed between it and the latest release cannot be seen: those pins are
  listed, so that the gap is never silent.

``--mode auto`` (the default) probes the per-release API and picks. Findings accepted in
deploy/audit/accepted.toml (id, package, why, review date) are passed over; any other
finding, a package that could not be audited, or an acceptance past its review date
fails the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

PYPI = "https://pypi.org/pypi"
DEFAULT_ACCEPTED = Path(__file__).with_name("accepted.toml")


@dataclass(frozen=True)
class Accepted:
    id: str
    package: str
    reason: str
    review_by: dt.date


@dataclass
class Finding:
    package: str
    version: str
    id: str
    aliases: list[str] = field(default_factory=list)
    fixed_in: list[str] = field(default_factory=list)
    summary: str = ""

    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def load_accepted(path: Path) -> list[Accepted]:
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("accepted", [])
    accepted = []
    for entry in entries:
        missing = {"id", "package", "reason", "review_by"} - set(entry)
        if missing:
            raise SystemExit(f"{path}: an [[accepted]] entry lacks {sorted(missing)}: {entry}")
        if not isinstance(entry["review_by"], dt.date):
            raise SystemExit(f"{path}: review_by of {entry['id']} is not a date (YYYY-MM-DD)")
        accepted.append(
            Accepted(entry["id"], canonical(entry["package"]), entry["reason"], entry["review_by"])
        )
    return accepted


def installed() -> list[tuple[str, str]]:
    """(canonical name, version) of every non-editable distribution in this environment."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        direct_url = dist.read_text("direct_url.json")
        if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
            print(f"skipped: {name} {dist.version} (editable, the project itself)")
            continue
        found[canonical(name)] = dist.version
    return sorted(found.items())


def get_json(url: str) -> Any:
    """The JSON at url; None on 404; raises after three failed tries otherwise."""
    for attempt in range(3):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            if attempt == 2:
                raise
        except (urllib.error.URLError, TimeoutError):
            if attempt == 2:
                raise
        time.sleep(2**attempt)
    raise AssertionError("unreachable")


def per_release_api_answers() -> bool:
    try:
        return get_json(f"{PYPI}/pip/{metadata.version('pip')}/json") is not None
    except (urllib.error.URLError, TimeoutError):
        return False


def run_pip_audit(accepted: list[Accepted]) -> int:
    command = [sys.executable, "-m", "pip_audit", "--vulnerability-service", "pypi"]
    command += ["--strict", "--skip-editable", "--progress-spinner", "off", "--desc", "on"]
    for entry in accepted:
        command += ["--ignore-vuln", entry.id]
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode


def affects(finding: Finding, version: str) -> bool:
    """Whether an advisory listed against the latest release applies to `version` too.

    It does unless `version` is one of its fixes, or later than a fix on its own
    release line (a backported fix)."""
    try:
        mine = Version(version)
    except InvalidVersion:
        return True
    for fix in finding.fixed_in:
        try:
            fixed = Version(fix)
        except InvalidVersion:
            continue
        if mine == fixed or (mine > fixed and mine.release[:2] == fixed.release[:2]):
            return False
    return True


def audit_latest_release(
    package: str, version: str
) -> tuple[list[Finding], str | None, str | None]:
    """(findings, the latest release if the pin is older, an error) for one package."""
    try:
        data = get_json(f"{PYPI}/{package}/json")
    except (urllib.error.URLError, TimeoutError) as error:
        return [], None, f"{package} {version}: PyPI did not answer ({error})"
    if data is None:
        return [], None, f"{package} {version}: not found on PyPI"
    findings = []
    for vuln in data.get("vulnerabilities") or []:
        if vuln.get("withdrawn"):
            continue
        text = (vuln.get("summary") or vuln.get("details") or "").strip()
        finding = Finding(
            package,
            version,
            vuln["id"],
            list(vuln.get("aliases") or []),
            list(vuln.get("fixed_in") or []),
            text.splitlines()[0] if text else "",
        )
        if affects(finding, version):
            findings.append(finding)
    files = data.get("releases", {}).get(version) or []
    if files and all(file.get("yanked") for file in files):
        reason = next((f.get("yanked_reason") for f in files if f.get("yanked_reason")), "")
        findings.append(
            Finding(package, version, f"YANKED-{package}-{version}", summary=reason or "")
        )
    latest = data.get("info", {}).get("version")
    behind = None
    try:
        if latest and Version(version) < Version(latest):
            behind = latest
    except InvalidVersion:
        behind = latest
    return findings, behind, None


def run_latest_release(accepted: list[Accepted]) -> int:
    print(
        "PyPI's per-release JSON API does not answer from here: auditing against the "
        "advisories PyPI lists for each project's latest release (see deploy/audit/audit.py)"
    )
    packages = installed()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda item: audit_latest_release(*item), packages))
    errors = [error for _, _, error in results if error]
    findings = [finding for found, _, _ in results for finding in found]
    behind = [
        f"{package} {version} (latest {latest})"
        for (package, version), (_, latest, _) in zip(packages, results, strict=True)
        if latest
    ]
    complete = len(packages) - len(behind) - len(errors)
    print(
        f"audited {len(packages) - len(errors)} of {len(packages)} distributions: "
        f"{complete} completely (the pin is the latest release), {len(behind)} against "
        "their latest release's advisories only (an advisory fixed since the pin would not show):"
    )
    for line in behind:
        print(f"  {line}")
    return report(findings, errors, accepted)


def report(findings: Iterable[Finding], errors: list[str], accepted: list[Accepted]) -> int:
    accepted_ids = {(entry.package, entry.id) for entry in accepted}
    new = []
    used = set()
    for finding in findings:
        match = {(finding.package, id_) for id_ in finding.ids()} & accepted_ids
        if match:
            used |= match
            print(f"accepted: {finding.package} {finding.version} {finding.id}")
        else:
            new.append(finding)
    for entry in accepted:
        if (entry.package, entry.id) not in used:
            print(f"note: accepted {entry.package} {entry.id} is no longer found: remove it")
    for error in errors:
        print(f"NOT AUDITED: {error}")
    for finding in new:
        aliases = f" ({', '.join(finding.aliases)})" if finding.aliases else ""
        fixed = f"; fixed in {', '.join(finding.fixed_in)}" if finding.fixed_in else "; no fix yet"
        print(f"FINDING: {finding.package} {finding.version} {finding.id}{aliases}{fixed}")
        if finding.summary:
            print(f"  {finding.summary}")
    if new or errors:
        print(
            f"audit FAILED: {len(new)} finding(s) not accepted, {len(errors)} package(s) not "
            "audited. Upgrade, or accept in deploy/audit/accepted.toml with a reason."
        )
        return 1
    print("audit OK: no finding but those accepted")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accepted", type=Path, default=DEFAULT_ACCEPTED)
    parser.add_argument("--mode", choices=["auto", "pip-audit", "latest-release"], default="auto")
    args = parser.parse_args()

    accepted = load_accepted(args.accepted)
    today = dt.date.today()
    overdue = [entry for entry in accepted if entry.review_by < today]
    for entry in overdue:
        print(f"REVIEW OVERDUE: {entry.package} {entry.id} (review by {entry.review_by})")

    mode = args.mode
    if mode == "auto":
        mode = "pip-audit" if per_release_api_answers() else "latest-release"
    rc = run_pip_audit(accepted) if mode == "pip-audit" else run_latest_release(accepted)
    if overdue:
        print(f"audit FAILED: {len(overdue)} accepted finding(s) past their review date")
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
