"""`bastion scan` against hostile servers: it ends by its deadline, stays small, keeps the user's
credentials to the scanned origin, keeps the terminal and reports clean, and grades honestly.

Each case runs the real command in child processes (one per report format, at once) against a
small hostile server on loopback, and asserts the wall time under the deadline, the peak RSS
under 300 MB, what a credential sink received, and the bytes of every report format. The
figures before the fix are the issue's (issue 18); they are recalled in each test's docstring.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.scanner.apps import mint
from tests.scanner.hostile import (
    OK_JSON,
    H2Responder,
    H2Session,
    Request,
    ScanRun,
    Served,
    ServerCert,
    h2_handler,
    http11_handler,
    make_cert,
    response,
    run_scan,
    run_scan_on_a_terminal,
    scan_every_format,
    serving,
    stacked_gzip_bomb,
    with_negative_serial,
)

pytestmark = pytest.mark.integration

# --max-time counts from the child's start (interpreter start-up included) and keeps its last
# 15 % to stop controls and write the report; what comes after is the interpreter's exit and
# the parent noticing it, with four children and the other test worker sharing two cores. The
# tight bound is a timing assertion (skipped with BASTION_SKIP_TIMING=1 on a loaded machine);
# the loose one always holds, where the scanner used to run until killed (120 s, 600 s).
SKIP_TIMING = os.environ.get("BASTION_SKIP_TIMING") == "1"
EXIT_S = 2.5
LOOSE_S = 15.0
PEAK_RSS_MB = 300
# Four scans start at once; on a noisy machine their start-up alone can take seconds of the
# budget, so the deadline is more generous there (the behaviour asserted is the same).
MAX_TIME = 30.0 if SKIP_TIMING else 6.0
# A slow target needs about a dozen waves of --concurrency requests, each as long as
# --timeout: at a quarter of --max-time the deadline always comes first.
TIMEOUT = MAX_TIME / 4
SLOW_S = 5.0  # one byte every 5 s, as in the issue


def _stderr(runs: dict[str, ScanRun]) -> str:
    return " | ".join(f"{fmt}: {run.stderr.strip()}" for fmt, run in runs.items())


def _without_summary(stderr: str) -> str:
    """stderr without the one-line summary every scan ends with (``bastion scan: grade ...``)."""
    return "".join(
        line
        for line in stderr.splitlines(keepends=True)
        if not line.startswith("bastion scan: grade ")
    )


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
    # Each format comes from its own run: what did not finish differs from run to run.
    sarif = json.loads(runs["sarif"].report)
    run = sarif["runs"][0]
    assert run["invocations"][0]["executionSuccessful"] is False
    sarif_unfinished = run["properties"]["unfinished"]
    assert sarif_unfinished
    errored = {r["ruleId"] for r in run["results"] if r["properties"]["status"] == "error"}
    assert set(sarif_unfinished) <= errored
    for fmt in ("text", "html"):
        report = html.unescape(runs[fmt].report)
        line = re.search(
            rf"INCOMPLETE: the scan's --max-time of {MAX_TIME:g} s ran out; (\d+) controls did "
            r"not finish: ([a-z0-9.-]+)",
            report,
        )
        assert line, fmt
        assert line.group(2) in report.replace(line.group(0), "")  # listed as an error too
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
    assert {f: r.returncode for f, r in runs.items()} == dict.fromkeys(runs, 0), _stderr(runs)
    _assert_incomplete_everywhere(runs)
    findings = _findings(runs["json"])
    # Measured before the deadline: the baseline's headers were judged.
    assert findings["headers.xcto"]["status"] == "fail"
    assert "(absent)" in str(findings["headers.xcto"]["evidence"])


async def _stall(
    served: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await asyncio.sleep(3600)  # accepts the connection, never says a word (not even TLS)


def test_a_stalled_tls_handshake_is_unreachable_within_the_request_deadline() -> None:
    """A server that accepts TCP and never completes TLS: before, nothing bounded the
    handshake but the gap timeout; now the baseline's total deadline covers it, and the
    target is reported unreachable (exit 2, one line) in --timeout seconds."""
    with serving(_stall) as target:
        run = run_scan(f"https://127.0.0.1:{target.port}/", "--timeout", str(TIMEOUT))
    assert run.returncode == 2, run.stderr
    assert run.stderr == (
        f"bastion scan: cannot reach https://127.0.0.1:{target.port}/: no response head within "
        f"{TIMEOUT:g} s (the request's total deadline: connect, TLS, interim responses and "
        "head)\n"
    )
    assert run.wall_s < TIMEOUT + LOOSE_S
    if not SKIP_TIMING:
        assert run.wall_s < TIMEOUT + EXIT_S + 1.0  # start-up before the clock of --timeout
    assert run.peak_rss_mb < PEAK_RSS_MB


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
    timed_out = [f for f in errored if f"no response head within {TIMEOUT:g} s" in str(f["reason"])]
    assert timed_out, [f["reason"] for f in errored]


def _root_fast(
    hostile: Callable[[Served, Request, asyncio.StreamWriter], Awaitable[bool]],
) -> Callable[[Served, Request, asyncio.StreamWriter], Awaitable[bool]]:
    """``/`` answers at once (the target is reachable and graded); every other path is
    ``hostile``."""

    async def respond(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.path == "/":
            writer.write(OK_JSON)
            await writer.drain()
            return True
        return await hostile(served, request, writer)

    return respond


async def _interim_trickle(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
    while True:
        writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1.0)  # fewer than 8 before the request's deadline


async def _interim_flood(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
    burst = b"HTTP/1.1 100 Continue\r\n\r\n" * 2048
    while True:
        writer.write(burst)
        await writer.drain()
        await asyncio.sleep(0)  # let the other test servers on this loop run


@pytest.mark.parametrize(
    "flood", [_interim_trickle, _interim_flood], ids=["102-trickle", "100-flood"]
)
def test_interim_responses_end_the_request_without_burning_a_core(
    tmp_path: Path, flood: Callable[[Served, Request, asyncio.StreamWriter], Awaitable[bool]]
) -> None:
    """Before: endless `102 Processing` held the scan until it was killed at 120 s, and a
    flood of `100 Continue` also burned a full core while it lasted. Now a request that gets
    more than 8 interim responses ends at once (before h11 parses them), a slow trickle ends
    at the request's deadline, and the scan's CPU time stays a fraction of its wall time."""
    with serving(http11_handler(_root_fast(flood))) as target:
        runs = scan_every_format(
            target.url, tmp_path, "--timeout", str(TIMEOUT), "--max-time", str(MAX_TIME)
        )
    _assert_bounded(runs)
    findings = _findings(runs["json"])
    reasons = " ".join(str(f["reason"]) for f in findings.values() if f["status"] == "error")
    if flood is _interim_flood:
        assert "more than 8 interim (1xx) responses" in reasons
    else:
        assert f"no response head within {TIMEOUT:g} s" in reasons
    for fmt, run in runs.items():
        # The whole scan, start-up included, used well under one core for its duration.
        assert run.cpu_s < 0.6 * run.wall_s + 1.0, (fmt, run.cpu_s, run.wall_s)


# --- HTTP/2 -----------------------------------------------------------------------------------
async def _h2_slow_data(session: H2Session, stream_id: int, request: Request) -> None:
    session.conn.send_headers(
        stream_id,
        [(":status", "200"), ("content-type", "application/json"), ("content-length", "1000")],
    )
    await session.flush()
    while True:
        session.conn.send_data(stream_id, b" ")
        await session.flush()
        await asyncio.sleep(SLOW_S)


async def _h2_interim_flood(session: H2Session, stream_id: int, request: Request) -> None:
    if request.path == "/":
        session.conn.send_headers(stream_id, [(":status", "200"), ("content-length", "2")])
        session.conn.send_data(stream_id, b"{}", end_stream=True)
        await session.flush()
        return
    while True:
        for _ in range(256):
            session.conn.send_headers(stream_id, [(":status", "103")])
            session.conn.ping(b"bastion!")
        await session.flush()
        await asyncio.sleep(0)  # let the other test servers on this loop run


@pytest.fixture(scope="module")
def h2_cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    return make_cert(tmp_path_factory.mktemp("h2cert"))


@pytest.mark.parametrize(
    "responder", [_h2_slow_data, _h2_interim_flood], ids=["slow-DATA", "1xx-and-PING-flood"]
)
def test_http2_slow_data_and_frame_floods_are_bounded(
    tmp_path: Path, h2_cert: ServerCert, responder: H2Responder
) -> None:
    """Before: slow HTTP/2 DATA frames held the scan until it was killed at 120 s. Now the
    body is cut at the request's deadline; and a flood of frames that carry nothing (1xx
    HEADERS, PING) ends the connection once it exceeds what the requests can explain."""
    with serving(h2_handler(responder), tls=h2_cert.server_context(alpn=("h2",))) as target:
        runs = scan_every_format(
            target.url,
            tmp_path,
            "--ca-file",
            str(h2_cert.ca),
            "--timeout",
            str(TIMEOUT),
            "--max-time",
            str(MAX_TIME),
        )
    _assert_bounded(runs)
    findings = _findings(runs["json"])
    assert "HTTP/2" in str(findings["headers.xcto"]["evidence"])  # it did speak h2
    if responder is _h2_slow_data:
        _assert_incomplete_everywhere(runs)
        assert f"body cut by the {TIMEOUT:g} s request deadline" in runs["json"].report
    else:
        reasons = " ".join(str(f["reason"]) for f in findings.values())
        if not SKIP_TIMING:  # a starved machine may reach --max-time before the first flood
            assert "HTTP/2 frames received" in reasons
        for fmt, run in runs.items():
            assert run.cpu_s < 0.6 * run.wall_s + 1.0, (fmt, run.cpu_s, run.wall_s)


# --- memory -----------------------------------------------------------------------------------
async def _bomb(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(
        response(
            200,
            stacked_gzip_bomb(),
            [("Content-Type", "application/json"), ("Content-Encoding", "gzip, gzip")],
        )
    )
    await writer.drain()
    return True


def test_stacked_gzip_bomb_keeps_memory_flat(tmp_path: Path) -> None:
    """Before: 26 KB of `Content-Encoding: gzip, gzip` expanding to 16 GiB took the scanner
    to 10 GB of RSS (capped) and a 51-line MemoryError traceback. Now each layer decodes at
    most what the 256 KiB cap still wants; run under a 768 MiB address-space limit so that a
    regression fails here instead of taking the machine down."""
    bomb = stacked_gzip_bomb()
    assert 20_000 < len(bomb) < 32_000  # the 26 KB
    with serving(http11_handler(_bomb)) as target:
        runs = scan_every_format(
            target.url,
            tmp_path,
            "--timeout",
            "5",
            "--max-time",
            "20",
            address_space_mb=768,
        )
    _assert_bounded(runs, max_time=20)
    for fmt, run in runs.items():
        assert run.returncode == 0, (fmt, run.stderr)
        assert "MemoryError" not in run.stderr + run.report
    evidence = " ".join(str(f["evidence"]) for f in json.loads(runs["json"].report)["findings"])
    assert "cut at 256 KiB after decoding" in evidence


# --- honest grades ----------------------------------------------------------------------------
async def _hang_up(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
    return False  # close without an answer: every control but the baseline's errors


def test_errored_controls_fail_the_gate_unless_allowed_and_show_in_every_format(
    tmp_path: Path,
) -> None:
    """Before: errored controls deducted nothing, so a target that made every path but /
    fail raised its grade (C- to C) and passed --fail-under. Now errors are shown in every
    format (SARIF results included) and fail --fail-under unless --allow-errors."""
    (tmp_path / "allowed").mkdir()
    with serving(http11_handler(_root_fast(_hang_up))) as target:
        gated = scan_every_format(target.url, tmp_path, "--fail-under", "F")
        allowed = scan_every_format(
            target.url, tmp_path / "allowed", "--fail-under", "F", "--allow-errors"
        )
    _assert_bounded(gated, max_time=120)
    assert {f: r.returncode for f, r in gated.items()} == dict.fromkeys(gated, 1), _stderr(gated)
    assert {f: r.returncode for f, r in allowed.items()} == dict.fromkeys(allowed, 0)
    for run in gated.values():
        assert "could not judge the target (errors): failing --fail-under F" in run.stderr
    report = json.loads(gated["json"].report)
    assert report["complete"] is True  # errors, not a deadline
    errored = sorted(f["id"] for f in report["findings"] if f["status"] == "error")
    assert len(errored) >= 5
    assert report["counts"]["error"] == len(errored)
    sarif_run = json.loads(gated["sarif"].report)["runs"][0]
    sarif_errors = sorted(
        r["ruleId"] for r in sarif_run["results"] if r["properties"]["status"] == "error"
    )
    assert sarif_errors == errored
    assert all(
        r["kind"] == "review" and "could not be judged" in r["message"]["text"]
        for r in sarif_run["results"]
        if r["properties"]["status"] == "error"
    )
    for fmt in ("text", "html"):
        assert f"{len(errored)} controls could not judge the target (errors)" in gated[fmt].report
        assert errored[0] in gated[fmt].report


# --- credentials ------------------------------------------------------------------------------
API_KEY = "k-" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"[:45]  # 47 characters
COOKIE_SECRET = "sid-s3cret-cookie-value-7f3a"


def _sink() -> Callable[[Served, Request, asyncio.StreamWriter], Awaitable[bool]]:
    async def record(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK_JSON)
        await writer.drain()
        return True

    return record


def test_credentials_stay_on_the_scanned_origin(tmp_path: Path, h2_cert: ServerCert) -> None:
    """Before: --header values went in cleartext to http://127.0.0.1:<another port>/ after a
    redirect from the HTTPS target and through the target's jwks_uri (same_target() compared
    host names only), and "anonymous" probes still sent X-API-Key. Now redirects and URLs
    the target names are followed only within the exact origin; sinks on another port, on
    another scheme and on 127.0.0.2 receive nothing, and the declared plain-HTTP listener
    receives requests without any credential."""
    token = mint()
    with (
        serving(http11_handler(_sink())) as plain_listener,
        serving(http11_handler(_sink()), host="127.0.0.2") as other_address,
        serving(http11_handler(_sink()), tls=h2_cert.server_context()) as other_port,
    ):

        async def target_app(
            served: Served, request: Request, writer: asyncio.StreamWriter
        ) -> bool:
            routes = {
                # Same host, another port and scheme: the leak of the issue.
                "/": response(302, b"", [("Location", f"{plain_listener.origin}/landing")]),
                # A hop on the origin (followed), then another loopback address.
                "/v2/": response(302, b"", [("Location", "/v2/step")]),
                "/v2/step": response(
                    307, b"", [("Location", f"http://127.0.0.2:{other_address.port}/v2/")]
                ),
                "/api/v1/me": response(
                    307, b"", [("Location", f"http://127.0.0.2:{other_address.port}/me")]
                ),
                "/login": response(301, b"", [("Location", f"{other_port.origin}/login")]),
                "/api/v1/auth/login": response(
                    308, b"", [("Location", f"https://127.0.0.2:{other_port.port}/")]
                ),
                "/.well-known/openid-configuration": response(
                    200,
                    json.dumps(
                        {
                            "issuer": served.origin,
                            # Same host and scheme, another port: the leak of the issue.
                            "jwks_uri": f"{other_port.origin}/jwks.json",
                        }
                    ).encode(),
                    [("Content-Type", "application/json")],
                ),
                "/openapi.json": response(
                    200,
                    json.dumps(
                        {"openapi": "3.1.0", "servers": [{"url": other_port.url}], "paths": {}}
                    ).encode(),
                    [("Content-Type", "application/json")],
                ),
            }
            writer.write(routes.get(request.path, response(404, b'{"error":"Not found"}')))
            await writer.drain()
            return True

        with serving(http11_handler(target_app), tls=h2_cert.server_context()) as target:
            args = (
                "--ca-file",
                str(h2_cert.ca),
                "--http-url",
                plain_listener.origin,
                "--header",
                f"X-API-Key: {API_KEY}",
                "--header",
                f"Cookie: session={COOKIE_SECRET}",
                "--token",
                token,
                "--active",
            )
            runs = scan_every_format(target.url, tmp_path, *args)
            chain = run_scan(
                f"{target.origin}/v2/", "--format", "json", *args, output=tmp_path / "v2.json"
            )
    _assert_bounded({**runs, "v2": chain}, max_time=120)
    hops = json.loads(chain.report)["findings"]
    assert any(
        "GET https://127.0.0.1" in f["evidence"] and "/v2/step" in f["evidence"] for f in hops
    )
    assert other_address.connections == 0, other_address.requests
    assert other_port.connections == 0, other_port.requests
    # The plain-HTTP listener the user declared is probed, never with a credential.
    assert plain_listener.requests
    for request in plain_listener.requests:
        raw = request.raw.decode("latin-1")
        for secret in (API_KEY, COOKIE_SECRET, token, "authorization:", "cookie:", "x-api-key:"):
            assert secret.lower() not in raw.lower(), raw
    # On the target: the key goes with ordinary probes, never with anonymous ones.
    by_path: dict[str, list[Request]] = {}
    for request in target.requests:
        by_path.setdefault(request.path, []).append(request)
    baseline = next(r for r in target.requests if r.path == "/")  # a preflight
    assert baseline.method == "GET"
    assert baseline.headers.get("x-api-key") == API_KEY
    assert baseline.headers.get("cookie") == f"session={COOKIE_SECRET}"
    for path in ("/.well-known/openid-configuration", "/api/v1/me"):
        assert by_path[path]
        for request in by_path[path]:
            assert "x-api-key" not in request.headers, (path, request.headers)
            assert "cookie" not in request.headers, (path, request.headers)
    findings = _findings(runs["json"])
    assert "is outside the scanned origin" in str(findings["jwt.jwks-private"]["reason"])
    for run in runs.values():
        for secret in (API_KEY, COOKIE_SECRET, token):
            assert secret not in run.report


# --- the terminal and the reports -------------------------------------------------------------
OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # overwrite the clipboard
CLEAR = "\x1b[2J\x1b[3J\x1b[H"  # clear the screen and scrollback
OSC8 = "\x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\"  # a planted hyperlink
C1_CSI = "\x9b2J"  # the 8-bit CSI form
PAYLOAD = OSC52 + CLEAR + OSC8
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\x9d")


@pytest.fixture(scope="module")
def escape_cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    return make_cert(
        tmp_path_factory.mktemp("esccert"),
        common_name=f"evil{OSC52}{CLEAR}",
        dns_names=(f"x{OSC8}.example", "localhost"),
    )


async def _terminal_injector(
    served: Served, request: Request, writer: asyncio.StreamWriter
) -> bool:
    headers = [
        ("Content-Type", "application/json"),
        ("Server", f"nginx/1.18.0 {CLEAR}{OSC52}\x9b2J"),
        ("X-Powered-By", f"PHP/5.6 {OSC8}"),
        ("Set-Cookie", f"{OSC52}sid=1; Path=/"),
    ]
    reason = f"OK {OSC52}{C1_CSI}".encode("latin-1")
    if request.path == "/":
        writer.write(response(200, b'{"ok": true}', headers, reason=reason))
    else:
        body = (
            'Traceback (most recent call last):\n  File "/app/main.py", line 3, in <module>\n'
            f"    {PAYLOAD}\nValueError: {OSC8}\n"
        ).encode()
        writer.write(response(404, body, [("Content-Type", "text/plain"), *headers[1:]], reason))
    await writer.drain()
    return True


def _assert_no_raw_controls(fmt: str, data: str) -> None:
    for char in RAW_CONTROLS:
        assert char not in data, (fmt, repr(char), data[max(0, data.find(char) - 80) :][:160])


def test_escape_sequences_never_reach_a_terminal_or_a_report(
    tmp_path: Path, escape_cert: ServerCert
) -> None:
    """Before: the reason phrase, header values, body excerpts and certificate SANs reached
    the text report with their ESC sequences intact (rich strips BEL and CR, not ESC): a run
    in tmux had its clipboard overwritten (OSC 52) more than 50 times, the screen cleared and
    hyperlinks planted. Now every report's bytes hold no raw control character: the text and
    HTML reports show them escaped, SARIF messages drop them, JSON escapes them (the decoded
    values keep them, as data). On a terminal, only rich's own colour codes are written."""
    with serving(http11_handler(_terminal_injector), tls=escape_cert.server_context()) as target:
        args = ("--ca-file", str(escape_cert.ca))
        runs = scan_every_format(target.url, tmp_path, *args)
        code, terminal = run_scan_on_a_terminal(target.url, *args)
    _assert_bounded(runs, max_time=120)
    for fmt, run in runs.items():
        assert run.returncode == 0, (fmt, run.stderr)
        # Only the one-line summary: no library warning about the odd certificate either.
        assert _without_summary(run.stderr) == "", fmt
        _assert_no_raw_controls(fmt, run.report)
    # The quoted fields are all there, made visible.
    text = runs["text"].report
    for visible in (
        "\\x1b]52;c;ZWNobyBwd25lZA==\\x07",
        "\\x1b[2J",
        "\\x1b]8;;https://evil.example/",
    ):
        assert visible in text
        assert visible in runs["html"].report
    assert "\\x9b2J" in text  # the C1 CSI from a header value
    report = json.loads(runs["json"].report)
    evidence = " ".join(f["evidence"] + f["reason"] for f in report["findings"])
    assert OSC52 in evidence  # decoded JSON keeps the data
    assert f"x{OSC8}.example" in evidence  # the certificate SAN, quoted by tls.cert-hostname
    sarif = json.loads(runs["sarif"].report)
    messages = [r["message"]["text"] for r in sarif["runs"][0]["results"]]
    assert any("]52;c;ZWNobyBwd25lZA==" in m for m in messages)
    for message in messages:
        assert not any(
            (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 for c in message
        )
    # A person's terminal: the coloured report, and no escape sequence but SGR colours.
    assert code == 0
    assert b"\\x1b]52;c;" in terminal
    stripped = re.sub(rb"\x1b\[[0-9;]*m", b"", terminal)
    for char in (b"\x1b", b"\x07", "\x9b".encode()):
        assert char not in stripped, terminal[max(0, terminal.find(char) - 80) :][:160]


def test_an_odd_certificate_prints_no_library_warning(h2_cert: ServerCert) -> None:
    """A certificate with a negative serial number (RFC 5280 forbids it) made cryptography
    print a deprecation warning on the scanner's stderr; now the oddity is a note in the
    certificate's evidence and stderr stays empty."""
    odd = with_negative_serial(h2_cert)

    async def ok(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK_JSON)
        await writer.drain()
        return True

    with serving(http11_handler(ok), tls=odd.server_context()) as target:
        run = run_scan(
            target.url, "--format", "json", "--insecure", output=Path(odd.chain.parent) / "odd.json"
        )
    assert run.returncode == 0, run.stderr
    assert _without_summary(run.stderr) == ""
    assert "serial number which wasn't positive" in run.report
    assert run.peak_rss_mb < PEAK_RSS_MB


# --- secrets in reports -------------------------------------------------------------------------
def _fragments(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def test_echoed_secrets_leave_no_fragment_in_any_report(tmp_path: Path) -> None:
    """Before: excerpts were cut at 300 characters before redaction, so a 47-character API key
    that the target echoed appeared as a 46-character prefix, 6 times in JSON, 4 times in
    text, and in SARIF and HTML. Now secrets are masked before any cut, and any run of 8 or
    more characters copied from a command-line secret is masked wherever it sits (the target
    may cut its echo itself)."""
    token = mint()

    async def echo(served: Served, request: Request, writer: asyncio.StreamWriter) -> bool:
        key = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        headers = [
            ("Content-Type", "text/plain"),
            ("Server", f"gateway {key[:46]}"),  # the target cuts its own echo
            ("X-Echo", f"{key} {auth}"),
            ("Set-Cookie", f"k={key}; Path=/"),
        ]
        if request.path == "/":
            body = json.dumps({"echo": key, "authorization": auth}).encode()
            writer.write(response(200, body, headers, reason=f"OK {key[:40]}"))
        else:
            lead = "Traceback (most recent call last):\n"
            # Placed so that the 300-character excerpt ends inside the key.
            padding = "x" * (300 - len(lead) - 20)
            body = (
                f"{lead}{padding}{key}{auth}\n"
                f'  File "/srv/app/{key[:30]}.py", line 1, in <module>\n'
                f"ValueError: bad key {key} for {auth[:50]}\n"
            ).encode()
            writer.write(response(500, body, headers, reason=f"Error {key}"))
        await writer.drain()
        return True

    with serving(http11_handler(echo)) as target:
        runs = scan_every_format(
            target.url, tmp_path, "--header", f"X-API-Key: {API_KEY}", "--token", token
        )
    _assert_bounded(runs, max_time=120)
    findings = _findings(runs["json"])
    assert findings["disclosure.stack-trace"]["status"] == "fail"  # the echo was quoted
    assert "<redacted>" in str(findings["disclosure.stack-trace"]["evidence"])
    for fmt, run in runs.items():
        assert run.returncode == 0, (fmt, run.stderr)
        for secret in (API_KEY, token):
            leaked = sorted(f for f in _fragments(secret) if f in run.report)
            assert not leaked, (fmt, leaked[:5])


# --- hostile documents --------------------------------------------------------------------------
DEEP = 100_000


async def _hostile_documents(
    served: Served, request: Request, writer: asyncio.StreamWriter
) -> bool:
    json_type = [("Content-Type", "application/json")]
    deep = b"[" * DEEP + b"]" * DEEP
    documents = {
        "/openapi.json": b'{"openapi": "3.1.0", "info": {}, "paths": {"/a": ' + deep + b"}}",
        "/swagger.json": json.dumps(
            {
                "swagger": "2.0",
                "paths": {"/a": {"$ref": "#/paths/~1b"}, "/b": {"$ref": "#/paths/~1a"}},
            }
        ).encode(),
        "/.well-known/openid-configuration": b'{"jwks_uri": ' + deep + b"}",
        "/.well-known/jwks.json": b'{"keys": [' + deep + b"]}",
        "/actuator/env": b'{"propertySources": ' + deep + b"}",
    }
    body = documents.get(request.path)
    if body is None:
        writer.write(response(404, b'{"error": "Not found"}', json_type))
    else:
        writer.write(response(200, body, json_type))
    await writer.drain()
    return True


def test_deeply_nested_json_and_ref_loops_are_findings_not_crashes(tmp_path: Path) -> None:
    """Before: a deeply nested /openapi.json turned a control into a RecursionError. Now
    documents are parsed with a depth limit and $ref chains followed with loop detection:
    the exposure is still reported, with what is wrong with the document."""
    with serving(http11_handler(_hostile_documents)) as target:
        runs = scan_every_format(target.url, tmp_path)
    _assert_bounded(runs, max_time=120)
    findings = _findings(runs["json"])
    openapi = findings["exposure.openapi"]
    assert openapi["status"] == "fail"
    assert "$ref loop: #/paths/~1b -> #/paths/~1a -> #/paths/~1b" in str(openapi["reason"])
    assert "/openapi.json: JSON nested deeper than 64 levels" in str(openapi["reason"])
    actuator = findings["exposure.actuator"]
    assert actuator["status"] == "warn"
    assert "/actuator/env serves a document that cannot be read safely: JSON nested deeper" in str(
        actuator["reason"]
    )
    assert findings["jwt.jwks-private"]["status"] == "skip"
    for fmt, run in runs.items():
        assert run.returncode == 0, (fmt, run.stderr)
        assert "RecursionError" not in run.report + run.stderr, fmt
    assert json.loads(runs["json"].report)["counts"]["error"] == 0
