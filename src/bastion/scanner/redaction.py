"""Masking secrets in everything bound for a report: the one place that decides what is hidden.

Two kinds of secret reach a scanner's evidence:

* the user's own, given on the command line (``--token``, every ``--header`` value, a password
  in the target URL): a hostile or careless target echoes them back in bodies, headers, reason
  phrases and redirects;
* secrets the target exposes (a JWT in a body, ``DB_PASSWORD=...`` in an exposed ``.env``, a
  private key, a session cookie's value): the report proves the exposure without repeating it.

Order matters. A value is masked **before** it is cut to an excerpt (:meth:`Redactor.excerpt`):
cutting first leaves a fragment the exact match no longer recognises (a 47-character API key cut
to a 46-character prefix). As a second line of defence, :meth:`Redactor.text` also masks any run
of :data:`MIN_FRAGMENT` or more characters copied from a command-line secret, wherever it sits,
so a prefix the *target* cut (an echo truncated to 40 characters) is hidden too.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "<redacted>"
MIN_SECRET = 4  # shorter values would mask ordinary words
MIN_FRAGMENT = 8  # a copied run this long of a secret is masked wherever it appears
ELLIPSIS = "…"

# Header values the user may pass that are not credentials: masking them would only damage
# evidence ("application/json" hidden in every Content-Type). Everything else is a secret.
NOT_SECRET_HEADERS = frozenset({"accept", "accept-language", "accept-encoding", "content-type"})

# A JWT starts a base64url run (the lookbehind) and each segment is read possessively: without
# both, "eyJeyJeyJ..." backtracks quadratically (32 s on a 240 KB body).
_JWT_RE = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{2,}+\.[A-Za-z0-9_-]*+"
)
# key=value in query strings and form bodies.
_SECRET_PARAM_RE = re.compile(
    r"(?i)\b(access_token|id_token|refresh_token|token|api_key|apikey|password|secret)=([^&\s#\"']+)"
)
# Credential headers echoed inside a body (TRACE echoes, debug pages).
_SECRET_HEADER_LINE_RE = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key)(\s*:\s*)([^\r\n\\]+)"
)
# Assignments whose name says "secret" in .env, YAML, JSON, INI, connection strings and .npmrc
# (DB_PASSWORD=..., "client_secret": "...", password: ..., Password=...; _authToken=...). Every
# pattern here runs on target-supplied text, so each is anchored on a literal and its
# quantifiers are bounded or single character classes: no catastrophic backtracking (ReDoS).
# a pattern of key names, not a password
_SECRET_NAME = (
    r"(?:passw(?:or)?d|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)"  # noqa: S105
)
_SECRET_VALUE = r"([^\s\"',;&<>]{3,})"  # noqa: S105 - a pattern
_SECRET_ASSIGNMENT_RE = re.compile(
    # NAME=value (.env, INI, connection strings, .npmrc): the value right after "=".
    rf"(?i)({_SECRET_NAME}[\w-]{{0,40}}\s{{0,2}}=\"?){_SECRET_VALUE}"
    # "name": "value" (JSON): the name quoted.
    rf"|(?i:({_SECRET_NAME}[\w-]{{0,40}}\"\s{{0,4}}:\s{{0,4}}\"?){_SECRET_VALUE})"
    # name: value at the start of a line (YAML), also after an excerpt's escaped "\\n".
    rf"|(?im:((?:^|\\n)[ \t-]{{0,16}}[\w.-]{{0,40}}{_SECRET_NAME}[\w-]{{0,40}}:[ \t]{{1,4}}\"?)"
    rf"{_SECRET_VALUE})"
)
# A password in a URL's userinfo: scheme://user:password@host
_URL_PASSWORD_RE = re.compile(r"(://[^/\s:@]{0,256}:)([^/\s@]{1,256})(@)")
_PEM_PRIVATE_KEY_RE = re.compile(r"-----BEGIN ([A-Z ]{0,40}PRIVATE KEY)-----[A-Za-z0-9+/=\s\\]*")
# Well-known token shapes (issuers document these prefixes so that scanners can find them).
_TOKEN_SHAPES_RE = re.compile(
    r"\b(?:AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{40,}|"
    r"xox[abprs]-[A-Za-z0-9-]{10,}|sk_live_[A-Za-z0-9]{16,}|rk_live_[A-Za-z0-9]{16,}|"
    r"AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,})"
)
_SECRET_REQUEST_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


def _mask_header_line(match: re.Match[str]) -> str:
    name, sep, value = match.group(1), match.group(2), match.group(3)
    scheme, _, credential = value.partition(" ")
    if name.lower().endswith("authorization") and credential and scheme.isalpha():
        return f"{name}{sep}{scheme} {REDACTED}"  # the scheme is evidence, not a secret
    return f"{name}{sep}{REDACTED}"


def _mask_assignment(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(3) or match.group(5) or ""
    return f"{prefix}{REDACTED}"


def command_line_secrets(
    token: str | None, headers: Iterable[tuple[str, str]], url_password: str | None = None
) -> list[str]:
    """The secrets the user handed the scanner, with the parts an echo might show alone: the
    credential after an auth scheme (``Bearer x`` -> ``x``) and each cookie's value."""
    secrets: list[str] = []
    if token:
        secrets.append(token)
    if url_password:
        secrets.append(url_password)
    for name, value in headers:
        if name.lower() in NOT_SECRET_HEADERS:
            continue
        secrets.append(value)
        scheme, _, credential = value.partition(" ")
        if credential.strip() and scheme.isalpha():
            secrets.append(credential.strip())
        if name.lower() == "cookie":
            for pair in value.split(";"):
                secrets.append(pair.partition("=")[2].strip())
    return secrets


class Redactor:
    """Masks credentials in any text bound for a report."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        originals = {s for s in secrets if s and len(s) >= MIN_SECRET}
        variants: set[str] = set()
        for secret in originals:
            # As an echo may show it: percent-encoded, JSON-escaped, HTML-escaped.
            variants |= {
                secret,
                quote(secret, safe=""),
                json.dumps(secret)[1:-1],
                html.escape(secret, quote=True),
            }
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(variants, key=len, reverse=True)
        # Every MIN_FRAGMENT-long run of each secret, found in one regex pass (the texts are
        # the target's: a Python loop per position would cost more than all the patterns).
        self._grams: dict[str, list[str]] = {}
        for secret in originals:
            for i in range(len(secret) - MIN_FRAGMENT + 1):
                self._grams.setdefault(secret[i : i + MIN_FRAGMENT], []).append(secret)
        self._gram_re = (
            re.compile("|".join(re.escape(g) for g in sorted(self._grams))) if self._grams else None
        )

    @property
    def has_secrets(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        """``value`` with every known secret, secret shape and copied fragment masked."""
        if not value:
            return value
        value = self._mask_whole(value)
        return self._mask_fragments(value)

    def excerpt(self, value: str, limit: int) -> str:
        """At most ``limit`` characters of ``value``, masked first and then cut (never the
        other way round), with ``…`` when something was cut."""
        masked = self.text(value)
        if len(masked) <= limit:
            return masked
        return masked[:limit] + ELLIPSIS

    def _mask_whole(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        value = _PEM_PRIVATE_KEY_RE.sub(lambda m: f"-----BEGIN {m.group(1)}-----{REDACTED}", value)
        value = _JWT_RE.sub("<redacted JWT>", value)
        value = _SECRET_HEADER_LINE_RE.sub(_mask_header_line, value)
        value = _SECRET_PARAM_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", value)
        value = _URL_PASSWORD_RE.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", value)
        value = _SECRET_ASSIGNMENT_RE.sub(_mask_assignment, value)
        return _TOKEN_SHAPES_RE.sub(REDACTED, value)

    def _mask_fragments(self, value: str) -> str:
        """Mask runs of ``MIN_FRAGMENT``+ characters copied from a command-line secret."""
        if self._gram_re is None or len(value) < MIN_FRAGMENT:
            return value
        spans: list[tuple[int, int]] = []
        position = 0
        while match := self._gram_re.search(value, position):
            start, end = match.start(), match.end()
            # Extend while the run stays a substring of one of the secrets holding this gram.
            for secret in self._grams[match.group(0)]:
                while end < len(value) and value[start : end + 1] in secret:
                    end += 1
            spans.append((start, end))
            position = end
        if not spans:
            return value
        out: list[str] = []
        cursor = 0
        for start, end in spans:
            out.append(value[cursor:start])
            out.append(REDACTED)
            cursor = end
        out.append(value[cursor:])
        return "".join(out)

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
            return f"{self.text(cookie_name)}={REDACTED}{sep}{self.text(attributes)}"
        return self.text(value)
