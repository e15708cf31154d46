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

from bastion.scanner.baseline import BaselineError
from bastion.scanner.baseline import compare as compare_baseline
from bastion.scanner.baseline import load as load_baseline
from bastion.scanner.context import ScanOptions, TargetUnreachable
from bastion.scanner.grading import at_least
from bastion.scanner.model import GRADES, Report
from bastion.scanner.notices import TOKEN_OPENED_NOTHING, plain_http_on_tls_port
from bastion.scanner.redaction import Redactor, command_line_secrets
from bastion.scanner.registry import load_default_checks
from bastion.scanner.reporters import FORMATS, renderer
from bastion.scanner.reporters._common import summary_line
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
    p.add_argument(
        "--format",
        default=None,
        metavar="FORMAT[,FORMAT...]",
        help="report format: text, json, sarif or html (default text); several, comma-"
        "separated, from one scan need --output DIR",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        help="write the report to FILE instead of stdout; a directory (or several formats) "
        "gets bastion-scan.<ext> per format",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        metavar="OLD.json",
        help="an earlier JSON report: say which findings are new and which are fixed",
    )
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
    """API depth: the API's map, a second identity, what is legitimate."""
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
    """Validate everything before any request: (url, options, fail_under, first format)."""
    options, url, fail_under, formats, _ = resolve_arguments(args)
    return url, options, fail_under, formats[0]


EXTENSIONS = {"text": "txt", "json": "json", "sarif": "sarif", "html": "html"}


def _formats(value: str | None) -> list[str]:
    """``json,sarif,html`` -> the formats, each once, in the order given."""
    if value is None:
        return ["text"]
    formats: list[str] = []
    for part in value.split(","):
        fmt = part.strip().lower()
        if fmt not in FORMATS:
            raise UsageError(
                f"--format {value!r}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})"
            )
        if fmt not in formats:
            formats.append(fmt)
    return formats


def _destinations(formats: list[str], output: Path | None) -> list[Path | None]:
    """Where each format goes: stdout (None), the file given, or DIR/bastion-scan.<ext>."""
    if output is None:
        if len(formats) > 1:
            raise UsageError(f"--format {','.join(formats)}: several formats need --output DIR")
        return [None]
    if len(formats) == 1 and not output.is_dir():
        return [output]
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output}: several formats need a directory, not a file")
    return [output / f"bastion-scan.{EXTENSIONS[fmt]}" for fmt in formats]


def _positive(name: str, value: object, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
        raise UsageError(f"{name} must be a positive number of seconds")
    return float(value)


def resolve_arguments(
    args: argparse.Namespace,
) -> tuple[ScanOptions, str, str | None, list[str], bool]:
    """Every flag and the ``--config`` file, validated before any request (a
    :class:`UsageError` otherwise): (options, url, fail_under, formats, allow_errors)."""
    config = _load_config(args.config)
    formats = _formats(args.format)
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
    return options, str(url), fail_under, formats, allow_errors


PROGRESS_AFTER_S = 2.0  # a scan shorter than this shows no progress at all
PROGRESS_EVERY_S = 15.0  # without a terminal (a CI log): one line this often


async def _scan_with_progress(url: str, options: ScanOptions, terminal: bool) -> Report:
    """Run the scan; if it lasts more than a couple of seconds, show progress on stderr: a
    rich bar on a terminal (cleared when done), otherwise a plain line every 15 s naming the
    controls still running (a slow target in CI is then visibly slow, not hung)."""
    total = len(load_default_checks())
    done: list[str] = []
    running: dict[str, None] = {c.id: None for c in load_default_checks()}

    def advance(check: Any, finding: Any) -> None:
        done.append(check.id)
        running.pop(check.id, None)

    task = asyncio.ensure_future(scan(url, options, progress=advance))
    finished, _ = await asyncio.wait([task], timeout=PROGRESS_AFTER_S)
    if finished:
        return task.result()
    if terminal:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(
            TextColumn("[bold]scanning[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress:
            shown = visible(_stderr_redactor.text(url), one_line=True)
            bar = progress.add_task(escape(shown), total=total)
            while not task.done():
                progress.update(bar, completed=len(done))
                await asyncio.wait([task], timeout=0.2)
        return task.result()
    started = time.monotonic() - PROGRESS_AFTER_S
    while True:
        finished, _ = await asyncio.wait([task], timeout=PROGRESS_EVERY_S)
        if finished:
            return task.result()
        waiting = list(running)[:3]
        more = f" and {len(running) - 3} more" if len(running) > 3 else ""
        say(
            f"{len(done)}/{total} controls done after {time.monotonic() - started:.0f} s; "
            f"still running: {', '.join(waiting)}{more}"
        )


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


# Masks what reaches stderr (a CI log): the URL's password, --token and --header values, and
# secret shapes (a JWT in an error message). Replaced in run() once the secrets are known.
_stderr_redactor = Redactor()


def say(message: str) -> None:
    """One line on stderr, secrets masked; target-supplied parts (error messages) cannot drive
    the terminal."""
    text = _stderr_redactor.text(message)
    print(f"bastion scan: {visible(text, one_line=True)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.list_controls:
        return list_controls()
    global _stderr_redactor
    try:
        options, url, fail_under, formats, allow_errors = resolve_arguments(args)
        _stderr_redactor = Redactor(
            command_line_secrets(options.token, options.headers, httpx.URL(url).password or None)
        )
        destinations = _destinations(formats, args.output)
        baseline = None if args.baseline is None else load_baseline(args.baseline)
    except (UsageError, BaselineError) as exc:
        say(str(exc))
        return EXIT_USAGE
    if options.active:
        say(
            f"--active: sending bounded bursts (up to {options.budget} requests in "
            f"all) and failed-login probes to {url}"
        )
    try:
        report = asyncio.run(_scan_with_progress(url, options, sys.stderr.isatty()))
    except TargetUnreachable as exc:
        say(f"cannot reach {url}: {exc}{_unreachable_hint(url, str(exc))}")
        return EXIT_USAGE
    if baseline is not None:
        report = compare_baseline(report, baseline, str(args.baseline))
    for warning in report.warnings:
        say(f"warning: {warning}")
    written: list[str] = []
    for fmt, destination in zip(formats, destinations, strict=True):
        if fmt == "text" and destination is None and sys.stdout.isatty():
            from bastion.scanner.reporters.text import render as render_text

            width = os.get_terminal_size(sys.stdout.fileno()).columns
            output = render_text(report, color=True, width=max(80, width))
        else:
            output = renderer(fmt)(report)
        if destination is None:
            _write_stdout(output)
            continue
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(output, encoding="utf-8")
        except OSError as exc:
            say(f"--output {destination}: {exc.strerror or exc}")
            return EXIT_USAGE
        written.append(str(destination))
    if not report.complete:
        say(
            f"incomplete: --max-time {options.max_time:g} s ran out ({len(report.unfinished)} "
            "controls did not finish)"
        )
    summary = summary_line(report)
    if written:
        summary += f"; report{'s' if len(written) > 1 else ''}: {', '.join(written)}"
    say(summary)
    return exit_status(report, fail_under, allow_errors)


def _unreachable_hint(url: str, error: str) -> str:
    """Why an ``https://`` target could not be reached, when the port speaks plain HTTP
    (OpenSSL only says ``WRONG_VERSION_NUMBER``)."""
    target = httpx.URL(url)
    if target.scheme != "https" or not any(
        marker in error for marker in ("WRONG_VERSION_NUMBER", "SSL", "record layer")
    ):
        return ""
    port = target.port or 443
    if not plain_http_on_tls_port(target.host, port):
        return ""
    plain = str(target.copy_with(scheme="http"))
    return (
        f". Port {port} speaks plain HTTP, not TLS: scan {plain} (or point the https:// URL "
        "at the TLS port)"
    )


def exit_status(report: Report, fail_under: str | None, allow_errors: bool) -> int:
    """0 at or above ``--fail-under`` (or without it), 1 below it; errored controls count as
    below unless ``--allow-errors``, so making controls fail cannot raise a grade."""
    if fail_under is None:
        return EXIT_OK
    if not allow_errors and any(w.startswith(TOKEN_OPENED_NOTHING) for w in report.warnings):
        say(
            f"{TOKEN_OPENED_NOTHING}: failing --fail-under {fail_under} (the token controls "
            "did not run; pass --allow-errors to judge only what was measured)"
        )
        return EXIT_BELOW
    errors = len(report.errors)
    if errors and not allow_errors:
        say(
            f"{errors} controls could not judge the target (errors): failing --fail-under "
            f"{fail_under} (pass --allow-errors to judge only what was measured)"
        )
        return EXIT_BELOW
    return EXIT_OK if at_least(report.grade, fail_under) else EXIT_BELOW
