"""`bastion scan` as a user runs it: a subprocess against loopback servers; exit codes, one-line
errors, formats, suppressions, secrets kept out of reports, --insecure and --ca-file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.scanner.model import Report
from tests.scanner.apps import insecure_app, mint, secure_app
from tests.scanner.servers import Certs, Running, make_certs, running
from tests.support import free_port


def subprocess_bastion(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real entry point, in a child process (exit status, stderr, no traceback)."""
    return subprocess.run(
        [sys.executable, "-m", "bastion", "scan", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_capture: pytest.CaptureFixture[str] | None = None


@pytest.fixture(autouse=True)
def bind_capsys(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    global _capture
    _capture = capsys
    yield
    _capture = None


def bastion(*args: str) -> subprocess.CompletedProcess[str]:
    """``bastion scan ARGS`` in this process (same code path as the CLI, without the ~1 s
    interpreter start-up per call); returns what a subprocess would."""
    from bastion.cli.main import main

    assert _capture is not None
    _capture.readouterr()
    try:
        code = main(["scan", *args])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = _capture.readouterr()
    return subprocess.CompletedProcess(["bastion", "scan", *args], code, out, err)


@pytest.fixture(scope="module")
def insecure_server() -> Iterator[Running]:
    with running(insecure_app()) as server:
        yield server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[Running]:
    with running(secure_app(), certs=certs) as server:
        yield server


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def test_unreachable_target_is_one_line_and_exit_2() -> None:
    line = one_line_error(subprocess_bastion(f"http://127.0.0.1:{free_port()}/"))
    assert line.startswith("bastion scan: cannot reach http://127.0.0.1:")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ftp://127.0.0.1/"], "is not an http:// or https:// URL"),
        (["http://127.0.0.1:1/", "--header", "NoColon"], "expected 'Name: value'"),
        (["http://127.0.0.1:1/", "--ignore", "headers.nope"], "unknown control id 'headers.nope'"),
        (["http://127.0.0.1:1/", "--ca-file", "/nonexistent.pem"], "no such file"),
        (["http://127.0.0.1:1/", "--fail-under", "E"], "invalid choice"),
        (["http://127.0.0.1:1/", "--format", "xml"], "unknown format 'xml'"),
        (["http://127.0.0.1:1/", "--max-time", "0"], "--max-time must be a positive number"),
        (["http://127.0.0.1:1/", "--max-time", "-5"], "--max-time must be a positive number"),
        (["http://127.0.0.1:1/", "--max-time", "nan"], "--max-time must be a positive number"),
        (["http://127.0.0.1:1/", "--timeout", "0"], "--timeout must be a positive number"),
        (["http://127.0.0.1:1/", "--max-time", "soon"], "invalid float value"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], expected: str) -> None:
    assert expected in one_line_error(bastion(*args))


def test_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "scan.toml"
    config.write_text("[ignore\n")
    assert "invalid TOML" in one_line_error(bastion("http://127.0.0.1:1/", "--config", str(config)))
    config.write_text('colour = "blue"\n')
    assert "unknown setting 'colour'" in one_line_error(
        bastion("http://127.0.0.1:1/", "--config", str(config))
    )
    config.write_text("max_time = -1\n")
    assert "--max-time must be a positive number" in one_line_error(
        bastion("http://127.0.0.1:1/", "--config", str(config))
    )
    config.write_text('allow_errors = "yes"\n')
    assert "allow_errors must be true or false" in one_line_error(
        bastion("http://127.0.0.1:1/", "--config", str(config))
    )


def test_config_file_sets_the_deadlines_and_allow_errors(tmp_path: Path) -> None:
    import argparse

    from bastion.cli.scan import register, resolve_arguments

    config = tmp_path / "scan.toml"
    config.write_text("max_time = 30\ntimeout = 2.5\nallow_errors = true\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["scan", "https://api.test/", "--config", str(config)])
    options, _, _, _, allow_errors = resolve_arguments(args)
    assert (options.max_time, options.timeout, allow_errors) == (30.0, 2.5, True)
    args = parser.parse_args(["scan", "https://api.test/", "--max-time", "9"])
    options, _, _, _, allow_errors = resolve_arguments(args)
    assert (options.max_time, options.timeout, allow_errors) == (9.0, 10.0, False)
    # In-process, --max-time counts from the call (the test process is older than the scan).
    assert options.clock_started is not None
    assert abs(options.clock_started - time.monotonic()) < 5


def test_max_time_counts_from_the_process_start_when_bastion_is_the_process() -> None:
    code = (
        "import time, runpy, sys\n"
        "sys.modules['__main__'].__spec__ = type('S', (), {'name': 'bastion.__main__'})()\n"
        "from bastion.cli.scan import clock_start\n"
        "print(time.monotonic() - clock_start())\n"
    )
    age = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    # The interpreter's start-up and the imports (a tenth of a second at least) are counted.
    assert 0.05 < age < 60


def _report_with(grade: str, errors: int) -> Report:
    from bastion.scanner.model import Finding

    findings = tuple(
        Finding(
            id=f"headers.e{i}",
            title="t",
            category="headers",
            severity="low",
            status="error",
            reason="RequestDeadline: no response head within 1 s",
        )
        for i in range(errors)
    )
    return Report(
        target="https://api.test/",
        started_at="2026-01-01T00:00:00Z",
        duration_s=1,
        grade=grade,
        score=90,
        findings=findings,
    )


@pytest.mark.parametrize(
    ("grade", "errors", "fail_under", "allow_errors", "expected"),
    [
        ("A", 0, None, False, 0),  # no --fail-under: never fails
        ("F", 3, None, False, 0),
        ("A", 0, "B", False, 0),
        ("C", 0, "B", False, 1),
        ("A", 2, "B", False, 1),  # errors fail the gate: a target cannot hide behind them
        ("A", 2, "B", True, 0),
        ("C", 2, "B", True, 1),
    ],
)
def test_exit_status_with_errors(
    grade: str,
    errors: int,
    fail_under: str | None,
    allow_errors: bool,
    expected: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bastion.cli.scan import exit_status

    assert exit_status(_report_with(grade, errors), fail_under, allow_errors) == expected
    err = capsys.readouterr().err
    if errors and fail_under and not allow_errors:
        assert err == (
            f"bastion scan: {errors} controls could not judge the target (errors): failing "
            f"--fail-under {fail_under} (pass --allow-errors to judge only what was measured)\n"
        )


def test_stderr_lines_cannot_drive_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.cli.scan import say

    say("cannot reach https://x/: Server said \x1b]52;c;aGk=\x07\x1b[2J\nsecond line")
    err = capsys.readouterr().err
    assert err == (
        "bastion scan: cannot reach https://x/: Server said \\x1b]52;c;aGk=\\x07\\x1b[2J"
        "\\x0asecond line\n"
    )


def test_json_report_and_fail_under(insecure_server: Running) -> None:
    result = subprocess_bastion(insecure_server.url, "--format", "json", "--fail-under", "D")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["grade"] == "F"
    assert report["target"] == insecure_server.url
    statuses = {f["id"]: f["status"] for f in report["findings"]}
    assert statuses["exposure.env"] == "fail"
    assert statuses["disclosure.stack-trace"] == "fail"  # the `%` path / malformed JSON leak
    assert statuses["https.redirect"] == "fail"  # an http:// target that does not redirect
    # At or above the threshold: exit 0.
    assert bastion(insecure_server.url, "--format", "json", "--fail-under", "F").returncode == 0
    # No --fail-under: never fails.
    assert bastion(insecure_server.url, "--format", "json").returncode == 0


def test_ignore_and_config_suppress_with_a_reason(insecure_server: Running, tmp_path: Path) -> None:
    config = tmp_path / "scan.toml"
    config.write_text('[ignore]\n"exposure.git" = "a decoy repository, on purpose"\n')
    result = bastion(
        insecure_server.url,
        "--format",
        "json",
        "--config",
        str(config),
        "--ignore",
        "exposure.env=the file is a honeypot",
        "--ignore",
        "methods.trace",
    )
    findings = {f["id"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["exposure.git"]["status"] == "skip"
    assert findings["exposure.git"]["reason"] == "suppressed: a decoy repository, on purpose"
    assert findings["exposure.env"]["reason"] == "suppressed: the file is a honeypot"
    assert findings["methods.trace"]["reason"] == "suppressed: ignored with --ignore"
    assert all(findings[i]["deduction"] == 0 for i in ("exposure.git", "exposure.env"))


def test_active_announces_itself_on_stderr_and_keeps_stdout_parseable(
    insecure_server: Running,
) -> None:
    result = bastion(insecure_server.url, "--format", "json", "--active")
    assert result.stderr.startswith("bastion scan: --active: sending bounded bursts")
    report = json.loads(result.stdout)
    assert report["active"] is True
    statuses = {f["id"]: f["status"] for f in report["findings"]}
    assert statuses["auth.user-enumeration"] == "fail"
    assert statuses["ratelimit.login-burst"] == "fail"


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "html"])
def test_secrets_never_reach_a_report(insecure_server: Running, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    token = mint()
    result = bastion(
        insecure_server.url,
        "--format",
        fmt,
        "--output",
        str(out),
        "--token",
        token,
        "--header",
        "X-Api-Key: cli-secret-9d1c",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    text = out.read_text()
    assert len(text) > 1000
    assert token not in text
    assert "cli-secret-9d1c" not in text
    assert token.split(".")[1] not in text  # not even the payload


def test_tls_target_with_a_private_ca(tls_server: Running, certs: Certs) -> None:
    trusted = json.loads(
        bastion(tls_server.url, "--format", "json", "--ca-file", str(certs.ca)).stdout
    )
    insecure = json.loads(bastion(tls_server.url, "--format", "json", "--insecure").stdout)
    untrusted = json.loads(bastion(tls_server.url, "--format", "json").stdout)

    def status(report: dict[str, Any], check_id: str) -> str:
        found: str = {f["id"]: f["status"] for f in report["findings"]}[check_id]
        return found

    assert status(trusted, "tls.cert-trust") == "pass"
    assert status(insecure, "tls.cert-trust") == "warn"
    assert status(untrusted, "tls.cert-trust") == "fail"
    # The HTTP controls ran over TLS in every case.
    for report in (trusted, insecure, untrusted):
        assert status(report, "headers.xcto") == "pass"
        assert status(report, "cors.origin-reflection-credentials") == "pass"


def test_localhost_name_and_text_output(tls_server: Running, certs: Certs) -> None:
    url = tls_server.url.replace("127.0.0.1", "localhost")
    result = bastion(url, "--ca-file", str(certs.ca))
    assert result.returncode == 0, result.stderr
    assert f"{url}" in result.stdout
    assert "How the grade was computed" in result.stdout


def test_list_controls_prints_every_control() -> None:
    from bastion.scanner.registry import load_default_checks

    result = bastion("--list-controls")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(load_default_checks())
    assert any(line.startswith("exposure.env ") and "critical" in line for line in lines)
    assert any("auth.user-enumeration" in line and line.endswith("[active]") for line in lines)


def test_missing_url_is_a_usage_error() -> None:
    assert "the URL to scan is required" in one_line_error(bastion())


def test_ca_file_that_is_not_pem_is_a_usage_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    assert "not a PEM certificate" in one_line_error(
        bastion("https://127.0.0.1:1/", "--ca-file", str(bogus))
    )
