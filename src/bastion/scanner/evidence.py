"""Evidence: one request/response exchange, and how it is written into a finding.

Evidence must name the request sent and the response judged (method, URL, status), so a user
can tell *which* response a control looked at (users of sslyze and pshtt asked for exactly
this). Credentials never reach a report: Authorization and Cookie values, Set-Cookie values,
JWT-looking strings, ``access_token``-style query parameters and every secret the user passed
(``--token``, ``--header`` values) are replaced by ``<redacted>``, by
:class:`~bastion.scanner.redaction.Redactor`, always before an excerpt is cut.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bastion.scanner.documents import DocumentError, load_json
from bastion.scanner.redaction import REDACTED, Redactor

__all__ = ["BODY_EXCERPT", "REDACTED", "Exchange", "Redactor", "join_evidence"]

BODY_EXCERPT = 300


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
    body_note: str = ""  # why the body is incomplete or undecoded (cap, deadline, coding)
    request_body: bytes = b""
    history: tuple[Exchange, ...] = ()
    redactor: Redactor = field(default_factory=Redactor, repr=False, compare=False)

    # -- reading the response -------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @functools.cached_property
    def _document(self) -> tuple[Any, str]:
        try:
            return load_json(self.body), ""
        except DocumentError as exc:
            return None, str(exc)

    def json(self) -> Any:
        """The body as JSON, or ``None`` when it is not JSON (or nests too deeply to be
        read safely: :attr:`json_problem` says which)."""
        return self._document[0]

    @property
    def json_problem(self) -> str:
        """Why :meth:`json` is None: ``"not JSON (...)"`` or ``"JSON nested deeper than 64
        levels"``; empty when the body is usable JSON."""
        return self._document[1]

    @functools.cached_property
    def masked_text(self) -> str:
        """The body as text with every secret masked: excerpts are cut from this, so a cut
        can never leave a fragment of a secret behind."""
        return self.redactor.text(self.text)

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
            request_text = self.request_body.decode("utf-8", errors="replace")
            lines.append(f"> [body] {_excerpt(r.text(request_text))}")
        lines.append(f"< {self.status} {r.text(self.reason_phrase)}".rstrip())
        if headers is None:
            lines += [f"< {k}: {r.response_header(k, v)}" for k, v in self.headers.multi_items()]
        else:
            for name in headers:
                values = self.headers.get_list(name)
                if not values:
                    lines.append(f"< {name.lower()}: (absent)")
                lines += [f"< {name.lower()}: {r.response_header(name, v)}" for v in values]
        if body:
            lines.append(f"< [body] {_excerpt(self.masked_text)}")
        if self.body_note:  # an incomplete or undecoded body is part of what was judged
            lines.append(f"< [body note] {self.body_note}")
        if note:
            lines.append(note)
        return "\n".join(lines)


def _excerpt(masked: str, limit: int = BODY_EXCERPT) -> str:
    """The start of an already-masked text, line breaks shown as ``\\n``: masking comes
    first, so no cut can leave part of a secret."""
    text = masked[:limit].replace("\r", "\\r").replace("\n", "\\n")
    return text + ("…" if len(masked) > limit else "")


def join_evidence(*parts: str) -> str:
    """Several exchanges' evidence, separated by a blank line."""
    return "\n\n".join(p for p in parts if p)
