"""API versions: in the URL (``/api/v1/``, ``/api/v2/``) or in the ``API-Version`` header.

``/api/orders`` is the header-versioned twin of ``/api/v1/orders`` and ``/api/v2/orders``:
``API-Version: 1`` (the default when the header is absent) or ``2`` selects the very same
handler as the URL version. Any other value, and a repeated header (two values would be a
request-smuggling-style ambiguity between a proxy and the app), gives ``400``: silently
falling back to a default would hand an old representation to a client that asked for a
new one (OWASP API9, improper inventory management). The header is ignored on the URL-versioned
paths, where the URL already says which version is meant.

Version 2 is the read representation the contract defines (the ``GET`` endpoints); creating
and deleting orders exist in version 1 only, so ``POST``/``DELETE`` on ``/api/orders`` with
``API-Version: 2`` get what ``POST /api/v2/orders`` gets: ``405`` with ``Allow: GET, HEAD``
(the method-policy layer serves ``HEAD`` wherever ``GET`` is served).

Deprecation (RFC 9745) and Sunset (RFC 8594) headers are configured per version
(``BASTION_API_V1_DEPRECATION``, ``BASTION_API_V1_SUNSET``, ``BASTION_API_V1_DEPRECATION_LINK``
and the same for V2) and added by :class:`VersionHeaders` to every response of that version,
errors included, so a client learns about the retirement from any call it makes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated

from fastapi import Depends, Header, Request

from bastion.asgi import ASGIApp, Message, Receive, Scope, Send, get_headers
from bastion.config import Settings
from bastion.errors import ConfigError, HTTPError

API_VERSION_HEADER = "API-Version"
DEFAULT_VERSION = 1
SUPPORTED_VERSIONS = (1, 2)
UNSUPPORTED_MESSAGE = "Unsupported API version"
HEADER_VERSIONED_PATH = "/api/orders"

_HEADER_KEY = API_VERSION_HEADER.lower().encode("latin-1")
_VALUES = {str(v).encode("ascii"): v for v in SUPPORTED_VERSIONS}
_URL_PREFIXES = tuple((f"/api/v{v}/", v) for v in SUPPORTED_VERSIONS)


def parse_version(values: Sequence[bytes]) -> int | None:
    """The version a request asks for with its header(s); ``None`` when unsupported.

    No header means the default; exactly one header must be exactly ``1`` or ``2`` (the
    server has already stripped optional whitespace, RFC 9110 §5.5).
    """
    if not values:
        return DEFAULT_VERSION
    if len(values) > 1:
        return None
    return _VALUES.get(values[0].strip(b" \t"))


def version_of(scope: Scope) -> int | None:
    """The API version a request addresses, from its URL or (on /api/orders) its header.

    ``None`` for paths outside the versioned API and for an unsupported header value.
    """
    path = str(scope.get("path", ""))
    for prefix, version in _URL_PREFIXES:
        if path.startswith(prefix):
            return version
    if _is_header_versioned(path):
        return parse_version(get_headers(scope, _HEADER_KEY))
    return None


def _is_header_versioned(path: str) -> bool:
    return path == HEADER_VERSIONED_PATH or path.startswith(HEADER_VERSIONED_PATH + "/")


_DESCRIPTION = "API version: 1 (the default) or 2; any other value gives 400"
AnyVersionHeader = Annotated[
    str | None,
    Header(
        alias=API_VERSION_HEADER, description=_DESCRIPTION, json_schema_extra={"enum": ["1", "2"]}
    ),
]
V1VersionHeader = Annotated[
    str | None,
    Header(
        alias=API_VERSION_HEADER,
        description="API version: 1 (the default); 2 has no such operation (405), others give 400",
        json_schema_extra={"enum": ["1"]},
    ),
]
# The methods each version serves on the orders paths (405 ``Allow`` for the others).
_ALLOW = {2: "GET, HEAD"}


def requested_version(scope: Scope, available: Sequence[int]) -> int:
    """The version the request asks for, if this operation has it.

    An unsupported value gives ``400``; a supported version that lacks this operation
    gives ``405`` with the ``Allow`` header its URL twin (``/api/v2/orders``) would send.
    """
    version = parse_version(get_headers(scope, _HEADER_KEY))
    if version is None:
        raise HTTPError(400, UNSUPPORTED_MESSAGE)
    if version not in available:
        allow = _ALLOW[version].encode("ascii")
        raise HTTPError(405, "Method not allowed", headers=[(b"allow", allow)])
    return version


async def any_version(request: Request, api_version: AnyVersionHeader = None) -> int:
    """FastAPI dependency for operations every version has (the parameter documents the
    header; the raw header list is read so that a repeated header is caught)."""
    return requested_version(request.scope, SUPPORTED_VERSIONS)


async def v1_only(request: Request, api_version: V1VersionHeader = None) -> int:
    """FastAPI dependency for operations only version 1 has (create, delete)."""
    return requested_version(request.scope, (1,))


def _imf_fixdate(moment: datetime) -> str:
    """RFC 9110 §5.6.7 IMF-fixdate, as RFC 8594 §3 wants for ``Sunset``."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _deprecation_date(moment: datetime) -> str:
    """RFC 9745 §2.1: an RFC 9651 Date structured field, ``@`` + seconds since the epoch."""
    return f"@{int(moment.timestamp())}"


def lifecycle_headers(settings: Settings) -> dict[int, list[tuple[bytes, bytes]]]:
    """``Deprecation``/``Sunset``/``Link`` header pairs per version, from the settings."""
    out: dict[int, list[tuple[bytes, bytes]]] = {}
    for version in SUPPORTED_VERSIONS:
        deprecation: datetime | None = getattr(settings, f"api_v{version}_deprecation", None)
        sunset: datetime | None = getattr(settings, f"api_v{version}_sunset", None)
        link: str | None = getattr(settings, f"api_v{version}_deprecation_link", None)
        pairs: list[tuple[bytes, bytes]] = []
        if deprecation is not None:
            pairs.append((b"deprecation", _deprecation_date(deprecation).encode("ascii")))
        if sunset is not None:
            pairs.append((b"sunset", _imf_fixdate(sunset).encode("ascii")))
        if link:
            # RFC 9745 §3: where to read about the deprecation.
            value = f'<{link}>; rel="deprecation"; type="text/html"'
            pairs.append((b"link", value.encode("ascii")))
        if pairs:
            out[version] = pairs
    return out


class VersionHeaders:
    """Pure ASGI: adds a version's lifecycle headers to its responses, and ``Vary:
    API-Version`` to header-versioned ones (RFC 9110 §12.5.5: the header chose the body).
    """

    def __init__(
        self, app: ASGIApp, *, lifecycle: Mapping[int, Sequence[tuple[bytes, bytes]]]
    ) -> None:
        for version, pairs in lifecycle.items():
            if version not in SUPPORTED_VERSIONS:
                raise ConfigError("lifecycle", f"unknown API version {version!r}")
            for name, value in pairs:
                if b"\r" in value or b"\n" in value or name != name.lower():
                    raise ConfigError("lifecycle", f"invalid header {name!r}")
        self.app = app
        self.lifecycle = {v: list(p) for v, p in lifecycle.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self.lifecycle.get(version_of(scope) or 0, ()))
        vary = _is_header_versioned(str(scope.get("path", "")))
        if not extra and not vary:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.extend(extra)
                if vary:
                    headers = _add_vary(headers, b"API-Version")
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _add_vary(headers: list[tuple[bytes, bytes]], token: bytes) -> list[tuple[bytes, bytes]]:
    """Add *token* to an existing ``Vary`` (one header line), or add the header."""
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if value.strip() == b"*":
                return headers
            headers[index] = (name, value + b", " + token)
            return headers
    headers.append((b"vary", token))
    return headers


ApiVersion = Annotated[int, Depends(any_version)]
V1Only = Annotated[int, Depends(v1_only)]

__all__ = [
    "API_VERSION_HEADER",
    "DEFAULT_VERSION",
    "SUPPORTED_VERSIONS",
    "ApiVersion",
    "V1Only",
    "VersionHeaders",
    "any_version",
    "lifecycle_headers",
    "parse_version",
    "requested_version",
    "v1_only",
    "version_of",
]
