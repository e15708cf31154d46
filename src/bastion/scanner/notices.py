"""Warnings about the scan itself: what the user should know before trusting the grade.

A scan can be "clean" for the wrong reason. These are checked once the controls have run and
go into the report (``Report.warnings``, every format) and onto stderr:

* a ``--token`` that opened nothing: no path that refuses anonymous requests accepted it, so
  every control that needs an accepted token skipped, and a scan with a garbage token would
  otherwise look clean and exit 0; with ``--fail-under`` it fails the gate like an errored
  control;
* a target URL that answers 404 with something other than JSON (a web server's page, an empty
  body): the header and disclosure controls judged that page, which is often a mistyped base
  URL. A JSON 404 is the API answering in its own error shape (``bastion serve``'s ``/``): an
  API whose root is not a resource, no warning.

The third, an ``https://`` URL whose port speaks plain HTTP, stops the scan before it starts;
:func:`plain_http_on_tls_port` names it instead of OpenSSL's ``WRONG_VERSION_NUMBER``.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from bastion.scanner.context import ScanContext
from bastion.scanner.model import Finding

TOKEN_OPENED_NOTHING = "the --token opened nothing"  # noqa: S105 - a message, not a secret


async def scan_warnings(ctx: ScanContext, findings: Sequence[Finding]) -> list[str]:
    """The warnings for a finished scan (its context still open; discovery is memoised, so
    this costs a request only when no control looked for a protected path)."""
    from bastion.scanner.checks._util import candidates_tried, find_token_resource, jwt_parts

    warnings: list[str] = []
    if ctx.options.token:
        try:
            resource = await find_token_resource(ctx)
        except Exception as exc:  # a dead target is already reported by the controls
            resource = None
            why = f"({type(exc).__name__} while looking)"
        else:
            why = f"(tried {candidates_tried(ctx)})"
        if resource is None:
            shape = "" if jwt_parts(ctx.options.token) else "; it is not a compact JWT either"
            skipped = sum(1 for f in findings if f.status == "skip" and "token" in f.reason)
            warnings.append(
                f"{TOKEN_OPENED_NOTHING}: no path that refuses anonymous requests accepted it "
                f"{why}{shape}; {skipped} controls that need an accepted token were skipped. "
                "Give a valid access token (or none)"
            )
    try:
        base = await ctx.baseline()
    except Exception:
        return warnings
    if base.status == 404 and base.json() is None:
        warnings.append(
            f"the target URL answers 404 ({base.summary}): the header and disclosure "
            "controls judged a 404 page. If that is not the API, give its base URL (e.g. "
            "https://host/api/v1/)"
        )
    return warnings


def plain_http_on_tls_port(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether ``host:port`` answers a plain ``HEAD / HTTP/1.0`` with an HTTP status line: an
    ``https://`` URL pointed at a plain-HTTP listener. No credential is sent."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            name = f"[{host}]" if ":" in host else host
            sock.sendall(f"HEAD / HTTP/1.0\r\nHost: {name}:{port}\r\n\r\n".encode("ascii"))
            return sock.recv(8).startswith(b"HTTP/")
    except (OSError, UnicodeError):
        return False
