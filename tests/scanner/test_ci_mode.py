"""The CI mode of ``bastion scan`` (issue 16): several formats from one scan, a one-line
summary on stderr, ``--baseline`` new/fixed findings, warnings when a scan is clean for the
wrong reason, a named cause for an ``https://`` URL on a plain-HTTP port, and progress.

Every scan here is a real one, over loopback sockets (uvicorn), through the CLI's code path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.scanner.apps import Receive, Response, Scope, Send, custom_app, mint, secure_app
from tests.scanner.servers import Certs, Running, make_certs, running
from tests.scanner.test_cli_scan import bastion, bind_capsys, subprocess_bastion  # noqa: F401

REPORT_SCHEMA = Path(__file__).parents[2] / "src/bastion/scanner/report.schema.json"
SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
SUMMARY = "bastion scan: grade "


class Switchable:
    """The secure API, or (``broken = True``) the same API without X-Content-Type-Options
    and with a wildcard CORS policy: one target whose findings change between two scans."""

    def __init__(self) -> None:
        self.broken = False
        self.good = secure_app()
        self.bad = secure_app(
            drop_headers=("x-content-type-options",),
            extra_headers=[("Access-Control-Allow-Origin", "*")],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.bad if self.broken else self.good)(scope, receive, send)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("ci-certs"))


@pytest.fixture(scope="module")
def switchable() -> Switchable:
    return Switchable()


@pytest.fixture(scope="module")
def server(switchable: Switchable, certs: Certs) -> Iterator[Running]:
    with running(switchable, certs=certs) as served:
        yield served


@pytest.fixture(autouse=True)
def _secure_by_default(switchable: Switchable) -> Iterator[None]:
    switchable.broken = False
    yield
    switchable.broken = False


def _args(server: Running, *more: str) -> list[str]:
    assert server.certs is not None
    return [server.url, "--ca-file", str(server.certs.ca), *more]


def _summary(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(SUMMARY)]
    assert len(lines) == 1, stderr
    return lines[0]


def _validate_json(data: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(json.loads(REPORT_SCHEMA.read_text())).validate(data)


def _validate_sarif(data: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(data)


# --- several formats, one scan, one summary line -------------------------------------------------
def test_several_formats_from_one_scan_into_a_directory(server: Running, tmp_path: Path) -> None:
    out = tmp_path / "reports"  # created on demand
    result = bastion(*_args(server, "--format", "json,sarif,html", "-o", str(out)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bastion-scan.html", "bastion-scan.json", "bastion-scan.sarif"]
    report = json.loads((out / "bastion-scan.json").read_text())
    _validate_json(report)
    sarif = json.loads((out / "bastion-scan.sarif").read_text())
    _validate_sarif(sarif)
    html = (out / "bastion-scan.html").read_text()
    # One scan: the three files tell the same story (same start time, same grade).
    assert sarif["runs"][0]["invocations"][0]["startTimeUtc"] == report["started_at"]
    assert sarif["runs"][0]["properties"]["grade"] == report["grade"]
    assert f'id="grade">{report["grade"]}</span>' in html.replace("&#x27;", "'")
    line = _summary(result.stderr)
    assert line.startswith(
        f"bastion scan: grade {report['grade']} (score {report['score']}/100) for {server.url}: "
        f"{report['counts']['fail']} failed, {report['counts']['warn']} warnings, 0 errors"
    )
    assert line.endswith(
        f"reports: {out / 'bastion-scan.json'}, {out / 'bastion-scan.sarif'}, "
        f"{out / 'bastion-scan.html'}"
    )


def test_one_file_also_prints_the_summary_and_stdout_stays_the_report(
    server: Running, tmp_path: Path
) -> None:
    """Before: ``-o FILE`` printed no grade at all to the CI log."""
    target = tmp_path / "scan.sarif"
    result = bastion(*_args(server, "--format", "sarif", "-o", str(target)))
    assert result.returncode == 0
    sarif = json.loads(target.read_text())
    _validate_sarif(sarif)
    grade = sarif["runs"][0]["properties"]["grade"]
    assert f"grade {grade} " in _summary(result.stderr)
    assert _summary(result.stderr).endswith(f"report: {target}")
    to_stdout = bastion(*_args(server, "--format", "json"))
    _validate_json(json.loads(to_stdout.stdout))  # stdout is only the report
    assert f"grade {grade} " in _summary(to_stdout.stderr)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--format", "json,sarif"], "several formats need --output DIR"),
        (["--format", "json,yaml", "-o", "x"], "unknown format 'yaml'"),
    ],
)
def test_format_usage_errors_are_one_line(args: list[str], expected: str) -> None:
    result = bastion("http://127.0.0.1:1/", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert expected in result.stderr


def test_several_formats_into_an_existing_file_is_a_usage_error(tmp_path: Path) -> None:
    existing = tmp_path / "report.json"
    existing.write_text("{}")
    result = bastion("http://127.0.0.1:1/", "--format", "json,html", "-o", str(existing))
    assert result.returncode == 2
    assert "need a directory, not a file" in result.stderr


# --- --baseline ---------------------------------------------------------------------------------
def test_baseline_reports_new_and_fixed_findings(
    server: Running, switchable: Switchable, tmp_path: Path
) -> None:
    clean = tmp_path / "clean.json"
    assert bastion(*_args(server, "--format", "json", "-o", str(clean))).returncode == 0
    # uvicorn's TLS defaults (CBC suites, curves) fail in both scans: unchanged, not new.
    before = {
        f["id"]
        for f in json.loads(clean.read_text())["findings"]
        if f["status"] in {"fail", "warn", "error"}
    }

    switchable.broken = True
    out = tmp_path / "broken"
    result = bastion(
        *_args(server, "--format", "json,sarif,text", "-o", str(out), "--baseline", str(clean))
    )
    report = json.loads((out / "bastion-scan.json").read_text())
    _validate_json(report)
    new = set(report["baseline"]["new"])
    assert {"headers.xcto", "cors.wildcard"} <= new
    assert report["baseline"]["fixed"] == []
    assert report["baseline"]["source"] == str(clean)
    failing = {f["id"] for f in report["findings"] if f["status"] in {"fail", "warn", "error"}}
    assert new == failing - before
    assert report["baseline"]["unchanged"] == len(failing & before)
    assert f"{len(new)} new, 0 fixed" in _summary(result.stderr)
    sarif = json.loads((out / "bastion-scan.sarif").read_text())
    _validate_sarif(sarif)
    states = {r["ruleId"]: r["baselineState"] for r in sarif["runs"][0]["results"]}
    assert states["headers.xcto"] == "new"
    text = (out / "bastion-scan.txt").read_text()
    assert f"against the baseline {clean}: {len(new)} new" in text

    # And back: what the broken scan had is fixed now, nothing is new.
    switchable.broken = False
    fixed = bastion(
        *_args(server, "--format", "json", "--baseline", str(out / "bastion-scan.json"))
    )
    comparison = json.loads(fixed.stdout)["baseline"]
    assert set(comparison["fixed"]) == new
    assert comparison["new"] == []
    assert comparison["unchanged"] == len(before)
    assert json.loads(fixed.stdout)["warnings"] == []  # same target: no matching caveat


def test_a_baseline_from_another_url_is_matched_by_control_id(
    server: Running, tmp_path: Path
) -> None:
    old = json.loads(bastion(*_args(server, "--format", "json")).stdout)
    old["target"] = "https://127.0.0.1:1/"  # the CI job's previous, ephemeral port
    old["findings"].append({"id": "headers.csp", "status": "fail"})
    baseline = tmp_path / "old.json"
    baseline.write_text(json.dumps(old))
    report = json.loads(
        bastion(*_args(server, "--format", "json", "--baseline", str(baseline))).stdout
    )
    assert report["baseline"]["fixed"] == ["headers.csp"]
    assert report["baseline"]["target"] == "https://127.0.0.1:1/"
    assert any("findings matched by control id" in w for w in report["warnings"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not JSON"),
        ('{"runs": []}', "not a bastion scan JSON report"),
        ('{"target": "x", "findings": [{"id": 1}]}', "not a bastion scan JSON report"),
    ],
)
def test_a_bad_baseline_is_a_usage_error_before_any_request(
    tmp_path: Path, content: str, expected: str
) -> None:
    baseline = tmp_path / "old.json"
    baseline.write_text(content)
    result = bastion("http://127.0.0.1:1/", "--baseline", str(baseline))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "cannot reach" not in result.stderr  # refused before scanning


# --- warnings: clean for the wrong reason ---------------------------------------------------------
def test_a_garbage_token_is_a_warning_and_fails_the_gate(server: Running, tmp_path: Path) -> None:
    """Before: ``--token garbage`` skipped every token control and exited 0. Now a warning
    names it on stderr and in every format, and ``--fail-under`` fails unless
    ``--allow-errors``."""
    out = tmp_path / "r"
    gated = bastion(
        *_args(
            server,
            "--token",
            "garbage",
            "--fail-under",
            "F",
            "--format",
            "json,sarif,html,text",
            "-o",
            str(out),
        )
    )
    assert gated.returncode == 1
    assert "bastion scan: warning: the --token opened nothing" in gated.stderr
    assert "it is not a compact JWT either" in gated.stderr
    assert "failing --fail-under F" in gated.stderr
    report = json.loads((out / "bastion-scan.json").read_text())
    assert report["warnings"][0].startswith("the --token opened nothing")
    sarif = json.loads((out / "bastion-scan.sarif").read_text())
    _validate_sarif(sarif)
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any("the --token opened nothing" in n["message"]["text"] for n in notes)
    for fmt in ("html", "txt"):
        assert "the --token opened nothing" in (out / f"bastion-scan.{fmt}").read_text()
    for path in out.iterdir():  # the token itself is masked everywhere, evidence included
        assert "garbage" not in path.read_text(), path
    allowed = bastion(*_args(server, "--token", "garbage", "--fail-under", "F", "--allow-errors"))
    assert allowed.returncode == 0
    # A token the API accepts raises no warning.
    valid = bastion(*_args(server, "--token", mint(), "--fail-under", "A", "--format", "json"))
    assert valid.returncode == 0, valid.stderr
    assert json.loads(valid.stdout)["warnings"] == []
    assert "warning:" not in valid.stderr


def test_a_target_whose_root_is_404_is_a_warning(certs: Certs) -> None:
    """A web server's 404 page at the URL given: probably not the API's base URL."""
    page = Response(404, "<h1>Not Found</h1>", content_type="text/html")
    app = custom_app({"/api/v1/orders": Response(200, {"items": []})}, default=page)
    with running(app, certs=certs) as served:
        result = bastion(served.url, "--ca-file", str(certs.ca), "--format", "json")
    warnings = json.loads(result.stdout)["warnings"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"the target URL answers 404 (GET {served.url} -> 404)")
    assert "bastion scan: warning: the target URL answers 404" in result.stderr


def test_an_api_answering_404_in_json_at_its_root_is_no_warning(certs: Certs) -> None:
    """An API whose root is not a resource answers its JSON error (bastion serve does)."""
    app = custom_app({"/api/v1/orders": Response(200, {"items": []})})  # JSON 404 elsewhere
    with running(app, certs=certs) as served:
        result = bastion(served.url, "--ca-file", str(certs.ca), "--format", "json")
    assert json.loads(result.stdout)["warnings"] == []


def test_https_on_a_plain_http_port_is_named(certs: Certs) -> None:
    """Before: only OpenSSL's WRONG_VERSION_NUMBER. Now the cause and the URL to scan."""
    with running(secure_app()) as plain:
        https_url = plain.url.replace("http://", "https://")
        result = subprocess_bastion(https_url)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Port {plain.port} speaks plain HTTP, not TLS: scan {plain.url}" in lines[0]


def test_secrets_on_the_command_line_never_reach_stderr(server: Running) -> None:
    """stderr is a CI log too: the URL's password and the token are masked in every line
    (the --active announcement, the summary, an unreachable target)."""
    from tests.support import free_port

    token = mint()
    dead = bastion(f"http://ci:hunter2-password@127.0.0.1:{free_port()}/", "--token", token)
    assert dead.returncode == 2
    assert "hunter2-password" not in dead.stderr and "ci:<redacted>@" in dead.stderr
    url = server.url.replace("https://", "https://ci:hunter2-password@")
    assert server.certs is not None
    live = bastion(
        url, "--ca-file", str(server.certs.ca), "--token", token, "--active", "--format", "json"
    )
    assert "--active: sending bounded bursts" in live.stderr
    assert "grade " in live.stderr
    for text in (live.stderr, live.stdout):
        assert "hunter2-password" not in text
        assert token not in text and token[-20:] not in text


def test_a_tls_port_that_is_simply_closed_gets_no_such_hint() -> None:
    from tests.support import free_port

    result = subprocess_bastion(f"https://127.0.0.1:{free_port()}/")
    assert result.returncode == 2
    assert "speaks plain HTTP" not in result.stderr


# --- progress -----------------------------------------------------------------------------------
def test_a_long_scan_shows_progress_on_stderr_without_a_terminal(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI log (no terminal) gets a plain line now and then; the real thresholds are 2 s and
    every 15 s, shortened here so a one-second scan counts as long."""
    import bastion.cli.scan as cli

    monkeypatch.setattr(cli, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(cli, "PROGRESS_EVERY_S", 0.05)
    result = bastion(*_args(server, "--format", "json"))
    progress = [line for line in result.stderr.splitlines() if "controls done after" in line]
    assert progress, result.stderr
    assert "still running:" in progress[0]
    json.loads(result.stdout)  # stdout untouched


def test_a_short_scan_shows_no_progress(server: Running) -> None:
    result = bastion(*_args(server, "--format", "json"))
    assert "controls done after" not in result.stderr
