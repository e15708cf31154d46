"""`bastion scan` against hostile servers: it ends by its deadline, stays small, keeps the user's
credentials to the scanned origin, keeps the terminal and reports clean, and grades honestly.

Each case runs the real command in child processes (one per report format, at once) against a
small hostile server on loopback, and asserts the wall time under the deadline, the peak RSS
under 300 MB, what a credential sink received, and the bytes of every report format. The
figures before the fix are the issue's (issue 18); they are recalled in each test's docstring.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.scanner.hostile import (
    OK_JSON,
    FORMATS,
    Request,
    ScanRun,
    Served,
    http11_handler,
    response,
    scan_every_format,
    serving,
)

pytestmark = pytest.mark.integration

# --max-time counts from the child's start (interpreter start-up included); what comes after
# is the interpreter's exit and the parent noticing it. The tight bound is a timing
# assertion (skipped with BASTION_SKIP_TIMING=1 on a loaded machine); the loose one always
# holds, where the scanner used to run until killed (120 s, 600 s).
EXIT_S = 1.5
LOOSE_S = 15.0
PEAK_RSS_MB = 300
MAX_TIME = 6.0
TIMEOUT = 1.0
SLOW_S = 5.0  # one byte every 5 s, as in the issue
SKIP_TIMING = os.environ.get("BASTION_SKIP_TIMING") == "1"


def _findings(run: ScanRun) -> dict[str, dict[str, object]]:
    return {f["id"]: f for f in json.loads(run.report)["findings"]}


def _assert_bounded(runs: dict[str, ScanRun], max_time: float = MAX_TIME) -> None:
    for fmt, run in runs.items():
        assert "Traceback" not in run.stderr, (fmt, run.stderr)
        assert run.wall_s < max_time + LOOSE_S, (fmt, run.wall_s)
        if not SKIP_TIMING:
            assert run.wall_s < max_time + EXIT_S, (fmt, run.wall_s)
        assert run.peak_rss_mb < PEAK_RSS_MB, (fmt, run.peak_rss_mb)


def _assert_incomplete_everywhere(runs: dict[str, ScanRun]) -> list[str]:
    """Every format says the scan is incomplete and names the controls that did not finish."""
    report = json.loads(runs["json"].report)
    assert report["complete"] is False
    unfinished = report["unfinished"]
    assert unfinished
    findings = {f["id"]: f for f in report["findings"]}
    for check_id in unfinished:
        assert findings[check_id]["status"] == "error"
        assert findings[check_id]["reason"].startswith("unfinished: did not finish within")
    sarif = json.loads(runs["sarif"].report)
    run = sarif["runs"][0]
    assert run["invocations"][0]["executionSuccessful"] is False
    assert run["properties"]["unfinished"] == unfinished
    errored = {r["ruleId"] for r in run["results"] if r["properties"]["status"] == "error"}
    assert set(unfinished) <= errored
    for fmt in ("text", "html"):
        assert f"INCOMPLETE: the scan's --max-time of {MAX_TIME:g} s ran out" in runs[fmt].report
        assert unfinished[0] in runs[fmt].report
    for run_ in runs.values():
        assert "incomplete: --max-time" in run_.stderr
    return list(unfinished)


# --- time -----------------------------------------------------------------------------------
async def _slow_body(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(
        response(200, b"", [("Content-Type", "application/json"), ("Content-Length", "1000")])
    )
    await writer.drain()
    while True:
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(SLOW_S)


def test_slow_body_is_cut_by_the_request_deadline_and_the_scan_by_max_time(
    tmp_path: Path,
) -> None:
    """Before: one byte every 5 s kept the scan running until it was killed at 600 s, with no
    output (`--timeout` bounded only the gap between bytes). Now every response is judged on
    what arrived within --timeout, and the scan reports at --max-time what it measured."""
    with serving(http11_handler(_slow_body)) as target:
        runs = scan_every_format(
            target.url, tmp_path, "--timeout", str(TIMEOUT), "--max-time", str(MAX_TIME)
        )
    _assert_bounded(runs)
    assert {run.returncode for run in runs.values()} == {0}  # no --fail-under
    _assert_incomplete_everywhere(runs)
    findings = _findings(runs["json"])
    # Measured before the deadline: the baseline's headers were judged.
    assert findings["headers.xcto"]["status"] == "fail"
    assert "(absent)" in str(findings["headers.xcto"]["evidence"])


async def _slow_headers(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
    if request.path == "/":
        writer.write(OK_JSON)
        await writer.drain()
        return True
    writer.write(b"HTTP/1.1 200 OK\r\n")
    await writer.drain()
    while True:
        await asyncio.sleep(SLOW_S)
        writer.write(b"X")
        await writer.drain()


def test_slow_headers_error_the_controls_and_fail_the_gate(tmp_path: Path) -> None:
    """Before: slow headers held the scan until it was killed at 120 s. Now each request ends
    at its total deadline; the controls that could not judge are errors, shown in every
    format, and --fail-under fails on them unless --allow-errors (before, errors deducted
    nothing, so stalling every path but / raised a grade from C- to C)."""
    with serving(http11_handler(_slow_headers)) as target:
        runs = scan_every_format(
            target.url,
            tmp_path,
            "--timeout",
            str(TIMEOUT),
            "--max-time",
            str(MAX_TIME),
            "--fail-under",
            "F",
        )
        (tmp_path / "allowed").mkdir()
        allowed = scan_every_format(
            target.url,
            tmp_path / "allowed",
            "--timeout",
            str(TIMEOUT),
            "--max-time",
            str(MAX_TIME),
            "--fail-under",
            "F",
            "--allow-errors",
        )
    _assert_bounded(runs)
    _assert_bounded(allowed)
    assert {run.returncode for run in runs.values()} == {1}
    assert {run.returncode for run in allowed.values()} == {0}
    for run in runs.values():
        assert "could not judge the target (errors): failing --fail-under F" in run.stderr
    findings = _findings(runs["json"])
    errored = [f for f in findings.values() if f["status"] == "error"]
    assert errored
    timed_out = [f for f in errored if "no response head within 1 s" in str(f["reason"])]
    assert timed_out, [f["reason"] for f in errored]
