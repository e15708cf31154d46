"""Evidence: one request/response exchange, and how it is written into a finding.

Evidence must name the request sent and the response judged (method, URL, status), so a user
can tell *which* response a control looked at (users of sslyze and pshtt asked for exactly
this). Credentials never reach a report: Authorization and Cookie values, Set-Cookie values,
JWT-looking strings, ``access_token``-style query parameters and every secret the user passed
(``--token``, ``--header`` values) are replaced by ``<redacted>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

REDACTED = "<redacted>"
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_SECRET_PARAM_RE = re.compile(
    r"(?i)\b(access_token|id_token|refresh_token|token|api_key|apikey|password|secret)=([^&\s#\"']+)"
)
# Credential headers echoed inside a body (TRACE echoes, debug pages).
_SECRET_HEADER_LINE_RE = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key)(\s*:\s*)([^\r\n\\]+)"
)
_SECRET_REQUEST_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
BODY_EXCERPT = 300


class Redactor:
    """Replaces credentials in any text bound for a report."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        value = _JWT_RE.sub("<redacted JWT>", value)
        value = _SECRET_HEADER_LINE_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", value)
        return _SECRET_PARAM_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", value)

    def request_header(self, name: str, value: str) -> str:
        if name.lower() in _SECRET_REQUEST_HEADERS:
            scheme, _, rest = value.partition(" ")
            # Keep the scheme ("Bearer"): it is evidence, the credential is not.
            if rest and name.lower().endswith("authorization"):
                return f"{scheme} {REDACTED}"
            return REDACTED
        return self.text(value)

    def response_header(self, name: str, value: str) -> str:
        if name.lower() == "set-cookie":
            # Keep the cookie's name and attributes (what the cookie controls judge).
            cookie, sep, attributes = value.partition(";")
            cookie_name = cookie.split("=", 1)[0].strip()
            return f"{cookie_name}={REDACTED}{sep}{attributes}"
        return self.text(value)


@dataclass(frozen=True)
class Exchange:
    """One request the scanner sent and the response it got (body capped in size)."""

    method: str
    url: str
    request_headers: tuple[tuple[str, str], ...]
    status: int
    reason_phrase: str
    http_version: str
    headers: httpx.Headers
    body: bytes
    elapsed_ms: float
    truncated: bool = False
    request_body: bytes = b""
    history: tuple[Exchange, ...] = ()
    redactor: Redactor = field(default_factory=Redactor, repr=False, compare=False)

    # -- reading the response -------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        """The header's value (several fields joined with ", "), or None when absent."""
        values = self.headers.get_list(name)
        return ", ".join(values) if values else None

    def header_list(self, name: str) -> list[str]:
        return self.headers.get_list(name)

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def is_html(self) -> bool:
        return self.content_type in {"text/html", "application/xhtml+xml"} or self.body.lstrip()[
            :15
        ].lower().startswith((b"<!doctype html", b"<html"))

    # -- describing it in a finding -------------------------------------------------------
    @property
    def summary(self) -> str:
        """``GET https://host/path -> 404`` : which response a control judged."""
        return f"{self.method} {self.redactor.text(self.url)} -> {self.status}"

    def describe(
        self,
        headers: Iterable[str] | None = None,
        *,
        body: bool = False,
        request_headers: bool = True,
        note: str = "",
    ) -> str:
        """Evidence text: request line and headers the scanner set, status, selected headers.

        ``headers=None`` lists every response header; an empty tuple lists none. A header
        asked for but absent is shown as ``(absent)``: absence is evidence too.
        """
        r = self.redactor
        lines = [f"> {self.method} {r.text(self.url)} {self.http_version}"]
        if request_headers:
            lines += [f"> {k}: {r.request_header(k, v)}" for k, v in self.request_headers]
        if self.request_body:
            lines.append(f"> [body] {r.text(_excerpt(self.request_body))}")
        lines.append(f"< {self.status} {self.reason_phrase}".rstrip())
        if headers is None:
            lines += [f"< {k}: {r.response_header(k, v)}" for k, v in self.headers.multi_items()]
        else:
            for name in headers:
                values = self.headers.get_list(name)
                if not values:
                    lines.append(f"< {name.lower()}: (absent)")
                lines += [f"< {name.lower()}: {r.response_header(name, v)}" for v in values]
        if body:
            lines.append(f"< [body] {r.text(_excerpt(self.body))}")
        if note:
            lines.append(note)
        return "\n".join(lines)


def _excerpt(data: bytes, limit: int = BODY_EXCERPT) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text + ("…" if len(data) > limit else "")


def join_evidence(*parts: str) -> str:
    """Several exchanges' evidence, separated by a blank line."""
    return "\n\n".join(p for p in parts if p)
