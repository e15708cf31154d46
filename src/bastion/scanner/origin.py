"""Where the scanner may send requests, and where the user's credentials may go.

The user's credentials (``--token``, every ``--header``) belong to the origin they asked to
scan: its scheme, host and port together (RFC 6454 §4). A host-only comparison sent an API key
in cleartext to ``http://same-host:<another port>/`` after a redirect from the HTTPS target.
The target also names URLs of its own (``Location``, ``jwks_uri``, OpenAPI ``servers``, links):
a hostile one would point the scanner at a sink for the credentials, or at an internal service
whose answer would then be quoted in the report (server-side request forgery through the
scanner). So :class:`OriginPolicy` decides, in one place that every request goes through:

* credentials go only to the exact scanned origin;
* a redirect is followed, and a URL the target names is fetched, only within that origin;
* the one other origin the scanner contacts is the plain-HTTP listener that the user gave
  (``--http-url``) or that is derived from the target (443 -> 80, 8443 -> 8080), and it never
  gets credentials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

DEFAULT_PORTS = {"http": 80, "https": 443}
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True)
class Origin:
    """``(scheme, host, port)``, normalised: lower-case scheme and ASCII host, explicit port."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str | httpx.URL) -> Origin | None:
        """The origin of an absolute http(s) URL, or None (relative, other scheme, no host)."""
        try:
            parsed = httpx.URL(str(url))
        except httpx.InvalidURL:
            return None
        scheme = parsed.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parsed.raw_host:
            return None
        host = parsed.raw_host.decode("ascii").lower()
        return cls(scheme, host, parsed.port or DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")


class OffOrigin(ValueError):
    """A request to a URL the origin policy does not allow (never sent)."""


class OriginPolicy:
    """The scanned origin, the plain-HTTP listener, and the user's credentials to keep home."""

    def __init__(
        self,
        target: str | httpx.URL,
        *,
        plain_http: str | None = None,
        secrets: Iterable[str] = (),
        credential_headers: Iterable[str] = (),
    ) -> None:
        origin = Origin.of(target)
        if origin is None:
            raise ValueError(f"target must be an http(s) URL with a host, got {str(target)!r}")
        self.origin = origin
        self.plain_http = Origin.of(plain_http) if plain_http else None
        self._secrets = tuple(s for s in secrets if s)
        self._credential_headers = CREDENTIAL_HEADERS | {h.lower() for h in credential_headers}

    def same_origin(self, url: str | httpx.URL) -> bool:
        """True only for the exact scanned origin (scheme, host and port)."""
        return Origin.of(url) == self.origin

    def may_contact(self, url: str | httpx.URL) -> bool:
        """The scanned origin, or the plain-HTTP listener (contacted without credentials)."""
        origin = Origin.of(url)
        return origin is not None and origin in (self.origin, self.plain_http)

    def may_follow(self, url: str | httpx.URL) -> bool:
        """Redirects and URLs the target names are followed only within the scanned origin."""
        return self.same_origin(url)

    def why_not(self, url: str | httpx.URL) -> str:
        """One line for a finding: why ``url`` was not contacted."""
        origin = Origin.of(url)
        where = str(origin) if origin else repr(str(url)[:200])
        return f"{where} is outside the scanned origin {self.origin}: not contacted"

    def outgoing_headers(self, url: str | httpx.URL, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` as they may be sent to ``url``: everything for the scanned origin;
        elsewhere, without any credential header, any of the user's ``--header`` names and
        any value carrying one of the user's secrets."""
        if self.same_origin(url):
            return dict(headers)
        return {
            name: value
            for name, value in headers.items()
            if name.lower() not in self._credential_headers
            and not any(secret in value for secret in self._secrets)
        }
