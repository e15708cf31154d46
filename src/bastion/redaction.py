"""What a log line may carry: :func:`redact` masks credentials in free text, :func:`log_line`
writes one JSON object on one line.

Logs are read by more people, kept longer and copied to more places than the data they
describe, so a token in a log is a token leaked (OWASP Logging Cheat Sheet, "data to exclude":
https://cheatsheetseries.owasp.org/cheatsheets/Logging_Cheat_Sheet.html; CWE-532). The access
log, the error log and every line :mod:`bastion.log` formats go through here; JSON encoding
escapes CR and LF, so a client cannot forge a second line (CWE-117).
"""

from __future__ import annotations

import json
import re

__all__ = ["REDACTED", "log_line", "redact"]

REDACTED = "[REDACTED]"

# --- redaction -----------------------------------------------------------------------------
# Names whose values are secrets wherever they appear: ``name=value``, ``name: value``,
# ``"name": "value"`` (JSON), ``'name': 'value'`` (a Python repr in a traceback). A name counts
# when it contains one of the long words (``refresh_token``, ``X-Api-Key``, ``newPassword``) or
# one of its parts is a short word (``code``, ``pwd``) — so ``UnicodeDecodeError`` is not one.
_SECRET_WORDS = re.compile(
    r"passw|passphrase|secret|token|apikey|privatekey|authori[sz]ation|cookie|session"
    r"|credential|signature|verifier"
).search
_SHORT_SECRET_PARTS = frozenset({"pwd", "pass", "code", "sig", "otp", "jwt", "pin", "auth"})
_NAME_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])").findall


def _secret_name(name: str) -> bool:
    if _SECRET_WORDS(name.lower().replace("_", "").replace("-", "")):
        return True
    return any(part.lower() in _SHORT_SECRET_PARTS for part in _NAME_PARTS(name))


# Linear by construction: a name starts only where a [\w-] run starts and is at most 64 long,
# and every value alternative consumes greedily without backtracking (an unterminated quote
# runs to the end of the text instead of failing and being retried at each position).
_NAMED_VALUE = re.compile(
    r"""(?x)
    (?<![\w-])(?P<name>[\w-]{1,64})
    (?P<sep>["']?\s*[:=]\s*)
    (?P<value>"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?
      |(?i:bearer|basic)\s+[^\s"',;&]+|[^\s"',;&)}\]]+)
    """
)
# Credentials in a URL's userinfo (RFC 3986 §3.2.1, deprecated there for this very reason):
# ``postgresql://admin:hunter2@db/prod`` in a database error. Starts only at "://".
_USERINFO = re.compile(r"://[^/\s:@]*:[^/\s@]*@")
# An Authorization value on its own, e.g. in an exception text: ``Bearer abc.def``.
_AUTH_SCHEME = re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+")
# JWT / JWS compact serialisation: base64url of '{"' always starts with 'eyJ'.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,4}")
# Long runs that look random: 32+ hex digits, or 32+ base64/base64url characters mixing upper
# case, lower case and digits (secrets.token_urlsafe, API keys). Identifiers, words, file paths
# and UUIDs (short hex groups between hyphens) do not match.
_HEX_SECRET = re.compile(r"(?<![A-Za-z0-9_-])[0-9a-fA-F]{32,}(?![A-Za-z0-9_-])")
# '/' only counts inside padded standard base64, so ``/reset/<token>`` keeps its path.
_B64_RUN = re.compile(
    r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9_+/-]{32,}={1,2}|(?<![A-Za-z0-9_+-])[A-Za-z0-9_+-]{32,}"
)
# An e-mail address (personal data): the local part is masked, the domain kept, as the
# mail log does (``a***@example.com``). Quotes, brackets and commas end it (SQL parameters).
_EMAIL = re.compile(
    r"(?<![\w.+-])([^\s@'\"(),<>\[\]{}:;/\\=])[^\s@'\"(),<>\[\]{}:;/\\=]*@(?=[\w-])"
)


def _mask_email(match: re.Match[str]) -> str:
    return f"{match.group(1)}***@"


_HAS_UPPER = re.compile(r"[A-Z]").search
_HAS_LOWER = re.compile(r"[a-z]").search
_HAS_DIGIT = re.compile(r"[0-9]").search


def _mask_named(match: re.Match[str]) -> str:
    if not _secret_name(match.group("name")):
        return match.group(0)
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('name')}{match.group('sep')}{quote}{REDACTED}{quote}"


def _mask_b64(match: re.Match[str]) -> str:
    run = match.group(0)
    if _HAS_UPPER(run) and _HAS_LOWER(run) and _HAS_DIGIT(run):
        return REDACTED
    return run


def redact(text: str) -> str:
    """Mask anything in *text* that looks like a credential; the rest stays readable.

    Masks ``user:password@`` in URLs, ``name=value`` pairs for secret-ish names (password,
    token, cookie, code, ...), ``Bearer``/``Basic`` credentials, JWT-shaped strings and long
    random-looking runs.
    Used for every free-text field of the access log and for tracebacks in the error log.
    """
    if not text:
        return text
    text = _USERINFO.sub(f"://{REDACTED}@", text)
    text = _NAMED_VALUE.sub(_mask_named, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _HEX_SECRET.sub(REDACTED, text)
    text = _EMAIL.sub(_mask_email, text)  # SQL parameters of a failed statement, mostly
    return _B64_RUN.sub(_mask_b64, text)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str)


def log_line(fields: dict[str, object]) -> str:
    """One compact JSON object on one line (``json`` escapes CR, LF and other controls)."""
    return _ENCODER.encode(fields)
