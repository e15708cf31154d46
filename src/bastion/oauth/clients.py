"""Registered public clients and their redirect URIs: exact string matching only.

RFC 9700 §2.1 / §4.1.3 and ASVS 10.4.1: the authorization server compares the
``redirect_uri`` of a request with the registered ones character for character — no
prefixes, no wildcards, no normalisation (``https://app/cb/``, ``https://app/cb?x``,
``https://APP/cb`` and ``https://app/cb/../evil`` are all different URIs, and all refused).
The loopback port exception of RFC 8252 §7.3 is deliberately not implemented: every port is
registered explicitly.

What a registered redirect URI may be (checked at start, one clear line when wrong):

* ``https://host[:port]/path[?query]`` — no userinfo, no fragment (RFC 6749 §3.1.2);
* ``http://127.0.0.1:port/...`` or ``http://[::1]:port/...`` — loopback only, for native
  apps (RFC 8252 §7.3; RFC 9700 §2.6 forbids other plain-HTTP redirect URIs). ``localhost``
  is refused (RFC 8252 §8.3: a name can resolve elsewhere);
* a private-use scheme in reverse-domain form, ``com.example.app:/callback`` (RFC 8252 §7.1),
  which also rules out ``javascript:``, ``data:``, ``file:`` and friends.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from bastion.errors import ConfigError

__all__ = ["Client", "ClientRegistry", "check_redirect_uri", "form_action_source"]

MAX_REDIRECT_URI = 2000
_VISIBLE = re.compile(r"[\x21-\x7e]+")  # no spaces or controls: nothing to smuggle into a header
_CLIENT_ID = re.compile(r"[\x20-\x7e]{1,200}")  # RFC 6749 Appendix A.1: *VSCHAR
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")  # RFC 3986 §3.1 (lower-case as registered)
_HOST = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")


def check_redirect_uri(uri: str) -> str:
    """*uri* when it may be registered as a redirect URI, else ``ValueError`` saying why."""
    if not isinstance(uri, str) or not uri:
        raise ValueError("a redirect URI must be a non-empty string")
    if len(uri) > MAX_REDIRECT_URI:
        raise ValueError(f"redirect URI longer than {MAX_REDIRECT_URI} characters")
    if _VISIBLE.fullmatch(uri) is None:
        raise ValueError(f"{uri!r}: spaces and control characters are not allowed")
    if "*" in uri:
        raise ValueError(f"{uri!r}: wildcards are not allowed (exact matching, RFC 9700 §2.1)")
    if "#" in uri:
        raise ValueError(f"{uri!r}: a fragment is not allowed (RFC 6749 §3.1.2)")
    parts = urlsplit(uri)
    scheme = parts.scheme
    if not scheme or _SCHEME.fullmatch(scheme) is None or not uri.startswith(scheme + ":"):
        raise ValueError(f"{uri!r}: not an absolute URI with a lower-case scheme")
    if scheme in ("https", "http"):
        if not uri.startswith(scheme + "://") or not parts.netloc:
            raise ValueError(f"{uri!r}: an {scheme} redirect URI needs a host")
        if "@" in parts.netloc:
            raise ValueError(f"{uri!r}: userinfo is not allowed")
        host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
        if _HOST.fullmatch(host) is None:
            raise ValueError(f"{uri!r}: not a valid host")
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError(f"{uri!r}: not a valid port") from None
        if scheme == "http" and not _is_loopback_ip(parts.hostname or ""):
            raise ValueError(
                f"{uri!r}: plain http only for loopback IP addresses (RFC 9700 §2.6, RFC 8252 §7.3)"
            )
        return uri
    if "." not in scheme:
        raise ValueError(
            f"{uri!r}: a private-use scheme must be a reverse domain name such as "
            "com.example.app (RFC 8252 §7.1)"
        )
    if parts.netloc:
        raise ValueError(f"{uri!r}: a private-use scheme URI has one slash (RFC 8252 §7.1)")
    return uri


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, localhost included


def form_action_source(uri: str) -> str:
    """The CSP source expression that lets a form's redirect reach *uri* (a registered URI).

    ``https://app.example:8443/cb`` → ``https://app.example:8443``;
    ``com.example.app:/cb`` → ``com.example.app:`` (a scheme-source).
    """
    parts = urlsplit(check_redirect_uri(uri))
    if parts.scheme in ("https", "http"):
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"


@dataclass(frozen=True, slots=True)
class Client:
    """A public client: an id and the exact redirect URIs it may use."""

    client_id: str
    redirect_uris: tuple[str, ...]

    def allows(self, redirect_uri: str) -> bool:
        """Exact, case-sensitive string equality with one registered URI (RFC 9700 §4.1.3)."""
        return redirect_uri in self.redirect_uris


class _ClientConfig(Protocol):
    @property
    def client_id(self) -> str: ...

    @property
    def redirect_uris(self) -> Sequence[str]: ...


class ClientRegistry:
    """The configured public clients, by id (``settings.oauth_clients``)."""

    def __init__(self, clients: Iterable[_ClientConfig] = ()) -> None:
        self._clients: dict[str, Client] = {}
        for index, item in enumerate(clients):
            name = f"oauth_clients[{index}]"
            client_id = item.client_id
            if not isinstance(client_id, str) or _CLIENT_ID.fullmatch(client_id) is None:
                raise ConfigError(f"{name}.client_id", "1-200 visible ASCII characters")
            if client_id in self._clients:
                raise ConfigError(f"{name}.client_id", f"{client_id!r} is registered twice")
            uris = tuple(item.redirect_uris)
            if not uris:
                raise ConfigError(f"{name}.redirect_uris", "at least one redirect URI")
            for uri in uris:
                try:
                    check_redirect_uri(uri)
                except ValueError as exc:
                    raise ConfigError(f"{name}.redirect_uris", str(exc)) from None
            self._clients[client_id] = Client(client_id, uris)

    def get(self, client_id: str | None) -> Client | None:
        """The client registered as *client_id* (exact match), or ``None``."""
        if client_id is None:
            return None
        return self._clients.get(client_id)

    def __len__(self) -> int:
        return len(self._clients)
