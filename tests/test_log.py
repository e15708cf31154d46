"""bastion.log: JSON lines with a timestamp and a level wherever the stack runs — plain
uvicorn, gunicorn with uvicorn workers, bastion serve — never lost, never written twice."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from bastion.log import (
    JSON_RECORD,
    UVICORN_LOG_CONFIG,
    FallbackHandler,
    JSONFormatter,
    configure,
    ensure_handler,
    timestamp,
)
from tests.support import wait_until
from tests.uvicorn_process import Process, running

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_timestamp_is_rfc3339_utc_with_milliseconds() -> None:
    assert timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert timestamp(1_700_000_000.9876) == "2023-11-14T22:13:20.987Z"
    assert timestamp(1_700_000_001.0) == "2023-11-14T22:13:21.000Z"  # the cached second moves
    assert RFC3339.fullmatch(timestamp())


def record(name: str, level: int, msg: str, **extra: object) -> logging.LogRecord:
    made = logging.getLogger(name).makeRecord(name, level, __file__, 1, msg, (), None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_formatter_passes_bastion_lines_and_wraps_others() -> None:
    formatter = JSONFormatter()
    line = '{"timestamp":"x","level":"info","event":"access"}'
    assert (
        formatter.format(record("bastion.access", logging.INFO, line, **{JSON_RECORD: True}))
        == line
    )
    wrapped = json.loads(
        formatter.format(record("uvicorn.error", logging.INFO, "Started server process [1]"))
    )
    assert set(wrapped) == {"timestamp", "level", "logger", "message"}
    assert RFC3339.fullmatch(wrapped["timestamp"])
    assert (wrapped["level"], wrapped["logger"]) == ("info", "uvicorn.error")
    secret = json.loads(
        formatter.format(record("app", logging.WARNING, "login with password=hunter2 failed"))
    )
    assert secret["message"] == "login with password=[REDACTED] failed"
    assert secret["level"] == "warning"


def test_formatter_redacts_tracebacks() -> None:
    try:
        raise ValueError("token=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0.sig")
    except ValueError:
        made = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info()
        )
    line = JSONFormatter().format(made)
    entry = json.loads(line)
    assert entry["exception"] == "ValueError"
    assert "eyJ" not in line and "[REDACTED]" in entry["traceback"]
    assert "\n" not in line


@contextmanager
def unconfigured() -> Iterator[io.StringIO]:
    """Logging as an unconfigured process has it (no root handler: pytest's own capture
    handlers are set aside while it runs), stderr captured."""
    root = logging.getLogger()
    bastion = logging.getLogger("bastion")
    saved = (root.handlers[:], root.level, bastion.handlers[:], bastion.level, sys.stderr)
    root.handlers.clear()
    bastion.handlers.clear()
    bastion.setLevel(logging.NOTSET)
    root.setLevel(logging.WARNING)
    stream = io.StringIO()
    sys.stderr = stream
    try:
        yield stream
    finally:
        sys.stderr = saved[4]
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        bastion.handlers[:] = saved[2]
        bastion.setLevel(saved[3])


def test_fallback_writes_when_nothing_else_would() -> None:
    with unconfigured() as stderr:
        ensure_handler()
        ensure_handler()  # idempotent: still one handler, one line
        handlers = logging.getLogger("bastion").handlers
        assert sum(isinstance(h, FallbackHandler) for h in handlers) == 1
        logging.getLogger("bastion.access").info('{"event":"access"}', extra={JSON_RECORD: True})
        logging.getLogger("bastion.ratelimit").error("store down: %s", "refused")
        lines = stderr.getvalue().splitlines()
    assert lines[0] == '{"event":"access"}'
    entry = json.loads(lines[1])
    assert (entry["level"], entry["message"]) == ("error", "store down: refused")
    assert len(lines) == 2


def test_fallback_is_silent_once_the_app_configures_logging() -> None:
    configured = io.StringIO()
    with unconfigured() as stderr:
        ensure_handler()
        logging.getLogger().addHandler(logging.StreamHandler(configured))  # basicConfig, later
        logging.getLogger("bastion.access").info("one line")
    assert configured.getvalue() == "one line\n"
    assert stderr.getvalue() == ""  # not twice


def test_fallback_is_silent_when_a_bastion_logger_has_its_own_handler() -> None:
    own = io.StringIO()
    access = logging.getLogger("bastion.access")
    handler = logging.StreamHandler(own)
    with unconfigured() as stderr:
        ensure_handler()
        access.addHandler(handler)
        try:
            access.info("mine")
        finally:
            access.removeHandler(handler)
    assert own.getvalue() == "mine\n" and stderr.getvalue() == ""


def test_an_explicit_level_is_kept() -> None:
    with unconfigured() as stderr:
        logging.getLogger("bastion").setLevel(logging.WARNING)
        ensure_handler()
        assert logging.getLogger("bastion").level == logging.WARNING
        logging.getLogger("bastion.access").info("dropped")
    assert stderr.getvalue() == ""


def test_configure_sets_the_level_of_bastions_lines_too() -> None:
    """``bastion serve`` configures logging before ``secure()`` builds the stack: with
    ``BASTION_LOG_LEVEL=warning`` the access log (INFO) stays silent."""
    stream = io.StringIO()
    with unconfigured():
        configure("warning", stream)
        ensure_handler()
        logging.getLogger("bastion.access").info("an access line")
        logging.getLogger("bastion.error").warning("a warning")
    assert stream.getvalue().count("\n") == 1 and "a warning" in stream.getvalue()


# --- real servers ---------------------------------------------------------------------------
def json_lines(process: Process) -> list[dict[str, object]]:
    return [json.loads(line) for line in process.log().splitlines() if line.startswith("{")]


def requested(process: Process, path: str) -> str:
    with process.client() as client:
        return client.get(path).headers["x-request-id"]


def access_for(process: Process, rid: str) -> list[dict[str, object]]:
    return [e for e in json_lines(process) if e.get("request_id") == rid]


@pytest.mark.integration
def test_plain_uvicorn_without_logging_configuration(tmp_path: Path) -> None:
    with running("examples.starlette_ratelimits:app", tmp_path, ready_path="/search") as server:
        rid = requested(server, "/search")
        (entry,) = wait_until(lambda: access_for(server, rid), timeout=5, what="access line")
    assert RFC3339.fullmatch(str(entry["timestamp"])) and entry["level"] == "info"
    assert {"method", "path", "status", "duration_ms"} <= set(entry)


@pytest.mark.integration
def test_uvicorn_with_bastions_log_config_writes_only_json(tmp_path: Path) -> None:
    config = tmp_path / "log.json"
    config.write_text(json.dumps(UVICORN_LOG_CONFIG))
    target = "examples.starlette_ratelimits:app"
    with running(
        target, tmp_path, args=["--log-config", str(config)], ready_path="/search"
    ) as server:
        rid = requested(server, "/search")
        wait_until(lambda: access_for(server, rid), timeout=5, what="access line")
        lines = server.log().splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines  # lifecycle lines too
    entries = [json.loads(line) for line in lines]
    assert any(
        e.get("logger") == "uvicorn.error" and "Started" in str(e["message"]) for e in entries
    )
    assert len(access_for(server, rid)) == 1  # configured root handler: no second copy
    assert all(RFC3339.fullmatch(str(e["timestamp"])) and e["level"] for e in entries)


@pytest.mark.integration
def test_gunicorn_with_uvicorn_workers(tmp_path: Path) -> None:
    target = "examples.starlette_ratelimits:app"
    with running(target, tmp_path, gunicorn=True, args=["-w", "2"], ready_path="/search") as server:
        rids = [requested(server, "/search") for _ in range(4)]
        for rid in rids:
            wait_until(partial(access_for, server, rid), timeout=5, what="access line")
        counts = [len(access_for(server, rid)) for rid in rids]
    assert counts == [1, 1, 1, 1]
    for rid in rids:
        (entry,) = access_for(server, rid)
        assert entry["level"] == "info" and RFC3339.fullmatch(str(entry["timestamp"]))


@pytest.mark.integration
def test_bastion_serve_writes_one_json_format(tmp_path: Path) -> None:
    from tests.conftest import start_server

    server = start_server(tmp_path)
    try:
        with server.client() as client:
            rid = client.get("/healthz").headers["x-request-id"]

        def logged() -> bool:
            return rid in server.log()

        wait_until(logged, timeout=5, what="the access line")
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not_json == []
    entries = [json.loads(line) for line in lines]
    assert all(RFC3339.fullmatch(str(e["timestamp"])) and e["level"] for e in entries)
    assert next(e for e in entries if e.get("request_id") == rid)["path"] == "/healthz"
