"""``bastion scan URL``: the outside-in scanner on the command line.

Exit status: 0 when the grade is at or above ``--fail-under`` (default: never fail), 1 below
it, or when controls errored (unless ``--allow-errors``: a target must not raise its grade by
making controls fail to run), 2 for a usage error or an unreachable target (one line on
stderr, never a traceback). Reports go to stdout (or ``--output``); progress and the
``--active`` announcement go to stderr, so stdout stays parseable. The scan ends within
``--max-time`` seconds whatever the target does; every request within ``--timeout``.

A TOML config file (``--config``) may hold the same settings, and suppress controls with a
reason::

    fail_under = "B"
    http_url = "http://127.0.0.1:8080"
    headers = ["X-Api-Key: ..."]

    [ignore]
    "headers.corp" = "the CDN adds CORP for us"
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from bastion.scanner.context import ScanOptions, TargetUnreachable
from bastion.scanner.grading import at_least
from bastion.scanner.model import GRADES, Report
from bastion.scanner.registry import load_default_checks
from bastion.scanner.reporters import FORMATS, renderer
from bastion.scanner.runner import scan
from bastion.scanner.safe_text import visible

EXIT_OK, EXIT_BELOW, EXIT_USAGE = 0, 1, 2


def clock_start() -> float:
    """When ``--max-time`` starts counting, on the ``time.monotonic()`` clock.

    Run as its own process (``bastion scan``, ``python -m bastion scan``), the command keeps
    the promise as a whole: the clock starts when the process did, so the interpreter's
    start-up counts too (read from ``/proc/self/stat``: start time in clock ticks after boot,
    against CLOCK_BOOTTIME). Called in-process (tests, a program embedding the CLI), it starts
    now: the host process's age says nothing about this scan."""
    now = time.monotonic()
    if not _own_process():
        return now
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5); fields[0] is field 3
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0 <= age < 600 else now


def _own_process() -> bool:
    """Whether this process is the ``bastion`` command (console script or ``-m bastion``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "bastion.__main__":
        return True
    return os.path.basename(getattr(main, "__file__", None) or "") == "bastion"


class UsageError(Exception):
    """A bad flag, config or target: one line on stderr, exit 2."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "scan",
        help="grade a live API from the outside (TLS, headers, CORS, exposure, auth, ...)",
        description="Scan URL and grade it A+ to F. Exit 0 at or above --fail-under, 1 below "
        "it or when controls errored (unless --allow-errors), 2 for a usage error or an "
        "unreachable target.",
    )
    p.add_argument("url", nargs="?", help="the API to scan, e.g. https://127.0.0.1:8443/")
    p.add_argument(
        "--list-controls", action="store_true", help="print every control (id, severity, title)"
    )
    p.add_argument("--format", choices=FORMATS, default=None, help="report format (default text)")
    p.add_argument("--output", "-o", type=Path, help="write the report to FILE instead of stdout")
    p.add_argument(
        "--fail-under",
        choices=GRADES,
        help="exit 1 when the grade is below GRADE, or when controls errored",
    )
    p.add_argument(
        "--allow-errors",
        action="store_true",
        help="with --fail-under, judge the grade even if some controls errored",
    )
    p.add_argument(
        "--active",
        action="store_true",
        help="also send bounded bursts (rate limits) and login probes (user enumeration)",
    )
    p.add_argument("--token", help="a valid access token (JWT) to test token handling with")
    _add_depth_arguments(p)
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable); sent only to the scanned origin, never "
        "written into reports",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="ID[=REASON]",
        help="suppress a control (repeatable); reported as skipped with the reason",
    )
    p.add_argument(
        "--insecure", action="store_true", help="connect even if the certificate is not trusted"
    )
    p.add_argument("--ca-file", type=Path, help="trust this CA or certificate (PEM) as well")
    p.add_argument("--config", type=Path, help="TOML file with settings and [ignore] reasons")
    p.add_argument("--http-url", help="the plain-HTTP listener (default: derived from URL)")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="total deadline of each request in seconds: connect, TLS, interim responses, "
        "head and body (default 10)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="deadline of the whole scan (default 120); what did not finish is reported",
    )
    p.add_argument("--concurrency", type=int, help="requests in flight at once (default 8)")
    p.set_defaults(func=run)


def _add_depth_arguments(p: Any) -> None:
    """API depth (issue 16, part A): the API's map, a second identity, what is legitimate."""
    p.add_argument(
        "--openapi",
        metavar="FILE|URL",
        help="the API's OpenAPI document (JSON; a URL must be on the scanned origin); default: "
        "looked for under the URL's path prefix (openapi.json, swagger.json, ...)",
    )
    p.add_argument(
        "--operation-budget",
        type=int,
        metavar="N",
        help="requests the per-operation sweep may send (default 150)",
    )
    p.add_argument("--token-b", help="a second user's access token (authorization tests)")
    p.add_argument(
        "--auth-b",
        metavar="'NAME: VALUE'",
        help="the second user's credential as a header, instead of --token-b",
    )
    p.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a real front-end origin the API trusts (repeatable); its look-alikes are tested",
    )
    p.add_argument("--login-email", help="an existing account, for the user-enumeration control")
    p.add_argument("--expired-token", help="an expired access token of this API (jwt.expired)")


def _depth_options(args: argparse.Namespace) -> dict[str, Any]:
    """The depth flags, validated (one line each on error)."""
    openapi = args.openapi
    if openapi is not None and not openapi.startswith(("http://", "https://")):
        if not Path(openapi).is_file():
            raise UsageError(f"--openapi {openapi}: no such file")
    elif openapi is not None:
        target = httpx.URL(args.url)
        given = httpx.URL(openapi)
        if (given.scheme, given.host, given.port) != (target.scheme, target.host, target.port):
            raise UsageError(
                f"--openapi {openapi}: not on the scanned origin (download it and pass the file)"
            )
    if args.token_b and args.auth_b:
        raise UsageError("give --token-b or --auth-b, not both")
    auth_b = (_parse_header(args.auth_b),) if args.auth_b else ()
    origins = []
    for origin in args.origin:
        url = httpx.URL(origin) if "://" in origin else None
        if (
            url is None
            or url.scheme not in {"http", "https"}
            or not url.host
            or url.path
            not in {
                "",
                "/",
            }
        ):
            raise UsageError(f"--origin {origin!r}: expected scheme://host[:port]")
        origins.append(origin.rstrip("/"))
    if args.login_email is not None and "@" not in args.login_email:
        raise UsageError(f"--login-email {args.login_email!r}: not an e-mail address")
    budget = args.operation_budget
    if budget is not None and not 0 <= budget <= 10000:
        raise UsageError("--operation-budget must be an integer from 0 to 10000")
    depth: dict[str, Any] = {
        "openapi": openapi,
        "token_b": args.token_b,
        "auth_b": auth_b,
        "origins": tuple(origins),
        "login_email": args.login_email,
        "expired_token": args.expired_token,
    }
    if budget is not None:
        depth["operation_budget"] = budget
    return depth


def _parse_header(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n") or "\n" in rest or "\r" in rest:
        raise UsageError(f"--header {value!r}: expected 'Name: value'")
    return name, rest.strip()


def _load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: invalid TOML: {exc}") from None
    known = {
        "ignore",
        "fail_under",
        "http_url",
        "headers",
        "timeout",
        "max_time",
        "allow_errors",
        "concurrency",
        "insecure",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"--config {path}: unknown setting {unknown[0]!r}")
    ignore = data.get("ignore", {})
    if not isinstance(ignore, Mapping) or not all(isinstance(v, str) for v in ignore.values()):
        raise UsageError(f"--config {path}: [ignore] maps control ids to reason strings")
    headers = data.get("headers", [])
    if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
        raise UsageError(f"--config {path}: headers must be a list of 'Name: value' strings")
    if "fail_under" in data and data["fail_under"] not in GRADES:
        raise UsageError(f"--config {path}: fail_under must be one of {', '.join(GRADES)}")
    return data


def build_options(args: argparse.Namespace) -> tuple[str, ScanOptions, str | None, str]:
    """Validate everything before any request: (url, options, fail_under, format)."""
    options, url, fail_under, fmt, _ = _build(args)
    return url, options, fail_under, fmt


def _positive(name: str, value: object, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
        raise UsageError(f"{name} must be a positive number of seconds")
    return float(value)


def _build(args: argparse.Namespace) -> tuple[ScanOptions, str, str | None, str, bool]:
    config = _load_config(args.config)
    if not args.url:
        raise UsageError("the URL to scan is required")
    url = httpx.URL(args.url) if "://" in args.url else None
    if url is None or url.scheme not in {"http", "https"} or not url.host:
        raise UsageError(f"{args.url!r} is not an http:// or https:// URL")
    headers = tuple(_parse_header(h) for h in [*config.get("headers", []), *args.header])
    ignore: dict[str, str] = {k: v for k, v in config.get("ignore", {}).items()}
    for item in args.ignore:
        check_id, _, reason = item.partition("=")
        ignore[check_id.strip()] = reason.strip() or "ignored with --ignore"
    known = {c.id for c in load_default_checks()}
    unknown = sorted(set(ignore) - known)
    if unknown:
        raise UsageError(f"unknown control id {unknown[0]!r} (see the README for the list)")
    if args.ca_file is not None and not args.ca_file.is_file():
        raise UsageError(f"--ca-file {args.ca_file}: no such file")
    if args.http_url is not None and not args.http_url.startswith("http://"):
        raise UsageError(f"--http-url {args.http_url!r}: expected an http:// URL")
    timeout = _positive(
        "--timeout", args.timeout if args.timeout is not None else config.get("timeout"), 10.0
    )
    max_time = _positive(
        "--max-time", args.max_time if args.max_time is not None else config.get("max_time"), 120.0
    )
    allow_errors = args.allow_errors or config.get("allow_errors", False)
    if not isinstance(allow_errors, bool):
        raise UsageError(f"--config {args.config}: allow_errors must be true or false")
    concurrency = args.concurrency if args.concurrency is not None else config.get("concurrency", 8)
    if not isinstance(concurrency, int) or not 1 <= concurrency <= 64:
        raise UsageError("--concurrency must be an integer from 1 to 64")
    options = ScanOptions(
        active=args.active,
        token=args.token,
        headers=headers,
        insecure=bool(args.insecure or config.get("insecure", False)),
        ca_file=str(args.ca_file) if args.ca_file else None,
        http_url=args.http_url or config.get("http_url"),
        timeout=timeout,
        max_time=max_time,
        clock_started=clock_start(),
        concurrency=concurrency,
        ignore=ignore,
        **_depth_options(args),
    )
    if args.ca_file is not None:
        try:
            from bastion.scanner.context import build_ssl_context

            build_ssl_context(ca_file=options.ca_file)
        except Exception as exc:
            raise UsageError(f"--ca-file {args.ca_file}: not a PEM certificate ({exc})") from None
    fail_under = args.fail_under or config.get("fail_under")
    return options, str(url), fail_under, args.format or "text", allow_errors


async def _scan_with_progress(url: str, options: ScanOptions, show: bool) -> Report:
    if not show:
        return await scan(url, options)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    total = len(load_default_checks())
    with Progress(
        TextColumn("[bold]scanning[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(escape(visible(url, one_line=True)), total=total)
        return await scan(url, options, progress=lambda check, finding: progress.advance(task))


def list_controls() -> int:
    lines = []
    for c in load_default_checks():
        flags = " [active]" if c.active else " [--token]" if c.needs_token else ""
        lines.append(f"{c.id:40} {c.severity:8} {c.title}{flags}\n")
    _write_stdout("".join(lines))
    return EXIT_OK


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `bastion scan ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _say(message: str) -> None:
    """One line on stderr; target-supplied parts (error messages) cannot drive the terminal."""
    print(f"bastion scan: {visible(message, one_line=True)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.list_controls:
        return list_controls()
    try:
        options, url, fail_under, fmt, allow_errors = _build(args)
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    if options.active:
        _say(
            f"--active: sending bounded bursts (up to {options.budget} requests in "
            f"all) and failed-login probes to {url}"
        )
    show_progress = fmt == "text" and sys.stderr.isatty()
    try:
        report = asyncio.run(_scan_with_progress(url, options, show_progress))
    except TargetUnreachable as exc:
        _say(f"cannot reach {url}: {exc}")
        return EXIT_USAGE
    if fmt == "text" and args.output is None and sys.stdout.isatty():
        from bastion.scanner.reporters.text import render as render_text

        width = os.get_terminal_size(sys.stdout.fileno()).columns
        output = render_text(report, color=True, width=max(80, width))
    else:
        output = renderer(fmt)(report)
    if args.output is not None:
        try:
            args.output.write_text(output, encoding="utf-8")
        except OSError as exc:
            _say(f"--output {args.output}: {exc.strerror or exc}")
            return EXIT_USAGE
    else:
        _write_stdout(output)
    if not report.complete:
        _say(
            f"incomplete: --max-time {options.max_time:g} s ran out ({len(report.unfinished)} "
            "controls did not finish)"
        )
    return _exit_status(report, fail_under, allow_errors)


def _exit_status(report: Report, fail_under: str | None, allow_errors: bool) -> int:
    """0 at or above ``--fail-under`` (or without it), 1 below it; errored controls count as
    below unless ``--allow-errors``, so making controls fail cannot raise a grade."""
    if fail_under is None:
        return EXIT_OK
    errors = len(report.errors)
    if errors and not allow_errors:
        _say(
            f"{errors} controls could not judge the target (errors): failing --fail-under "
            f"{fail_under} (pass --allow-errors to judge only what was measured)"
        )
        return EXIT_BELOW
    return EXIT_OK if at_least(report.grade, fail_under) else EXIT_BELOW
