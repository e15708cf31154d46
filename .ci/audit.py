"""Dependency audit: fail when an installed distribution has a known vulnerability.

Run with the project's virtualenv (``make audit``): it audits what ``pip install -e .[test]``
resolved there — the service's dependencies and the tools the suite runs — not a guess from
pyproject's ranges.

1. ``pip-audit`` checks every installed distribution against PyPI's vulnerability data
   (the per-release JSON API, which carries the OSV advisories). Any finding fails the gate.
2. Where that API cannot be reached — the CI machines of this project reach PyPI through a
   mirror that serves the project JSON (``/pypi/<name>/json``) but not the per-release one,
   so pip-audit reports every package as "not found" — each skipped distribution is checked
   against the project JSON instead. Its ``vulnerabilities`` are those of the *latest*
   release, so the check is exact when the installed version is the latest (nearly all of
   them, since the venv is built from lower bounds) and a finding fails the gate.
3. What neither way could judge (an installed version older than the latest, pinned by a
   dependency's upper bound) is listed by name; ``--strict`` makes that a failure too.

``IGNORED`` is the documented list of advisories accepted on purpose: empty, and each entry
must say why the vulnerable code is unreachable here and when to drop it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

PROJECT_JSON = "https://pypi.org/pypi/{name}/json"

#: advisory id (PYSEC-/GHSA-/CVE-) -> why it is accepted and until when. Keep it empty.
IGNORED: dict[str, str] = {}


def run_pip_audit() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "audit.json"
        command = [sys.executable, "-m", "pip_audit", "--skip-editable", "--desc", "off"]
        command += ["--progress-spinner", "off", "--format", "json", "--output", str(output)]
        for advisory in IGNORED:
            command += ["--ignore-vuln", advisory]
        # S603: a fixed argv (this interpreter, pip_audit, advisory ids from IGNORED), no shell.
        finished = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if not output.exists():  # pip-audit itself failed (not: found something)
            sys.exit(f"audit: pip-audit failed: {finished.stderr.strip()[-500:]}")
        result: dict[str, object] = json.loads(output.read_text())
        return result


def latest_release_vulnerabilities(name: str) -> tuple[str, list[str]] | None:
    """(latest version, advisory ids of the latest release) from the project JSON."""
    url = PROJECT_JSON.format(name=name)
    try:
        with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 - fixed https URL
            data = json.load(response)
    except (urllib.error.URLError, TimeoutError, ValueError):
        return None
    ids = [
        str(item["id"])
        for item in data.get("vulnerabilities", [])
        if not item.get("withdrawn") and not set(item.get("aliases", [])) & set(IGNORED)
    ]
    return str(data["info"]["version"]), [i for i in ids if i not in IGNORED]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="fail when a package is unaudited")
    args = parser.parse_args()

    report = run_pip_audit()
    findings: list[str] = []
    unaudited: list[str] = []
    by_pip_audit = by_project_json = 0
    skipped: list[str] = []
    for dep in report["dependencies"]:  # type: ignore[attr-defined]
        name = dep["name"]
        if "skip_reason" not in dep:
            by_pip_audit += 1
            for vuln in dep.get("vulns", []):
                fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
                findings.append(f"{name} {dep['version']}: {vuln['id']} (fixed in {fixes})")
        elif "editable" not in dep["skip_reason"]:  # (bastion itself is editable)
            skipped.append(name)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        latest_of = dict(
            zip(skipped, pool.map(latest_release_vulnerabilities, skipped), strict=True)
        )
    for name in skipped:
        installed = importlib.metadata.version(name)
        latest = latest_of[name]
        if latest is None or latest[0] != installed:
            newest = "unreachable" if latest is None else f"latest {latest[0]}"
            unaudited.append(f"{name} {installed} ({newest})")
            continue
        by_project_json += 1
        findings += [f"{name} {installed}: {advisory}" for advisory in latest[1]]

    print(
        f"audit: {by_pip_audit + by_project_json} distributions audited "
        f"({by_pip_audit} by pip-audit, {by_project_json} by PyPI's project JSON)"
    )
    if unaudited:
        print(f"audit: not audited (older than the latest release): {', '.join(unaudited)}")
    for finding in findings:
        print(f"audit: VULNERABLE {finding}")
    if findings:
        print("audit: upgrade the package (or its dependant) past the fixed version")
        return 1
    if unaudited and args.strict:
        return 1
    print("audit: no known vulnerability")
    return 0


if __name__ == "__main__":
    sys.exit(main())
