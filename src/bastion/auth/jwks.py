"""An issuer's keys over the network: OpenID Connect discovery, the JWKS, and the cache rules.

:class:`RemoteKeys` is the key source behind ``BearerAuth(issuer=...)`` (discovery) and
``BearerAuth(jwks_url=...)``. The rules, each there for a reason:

* **HTTPS only** (plain HTTP for loopback hosts, for local issuers and tests): a JWKS read
  over plain HTTP lets anyone on the path sign tokens. Checked at construction for the URLs
  given, at fetch time for a discovered ``jwks_uri``. Redirects are not followed (a redirect
  to ``http://`` or to an internal host would undo both rules; PyJWT 2.14 made the same call).
* **Discovery** (OpenID Connect Discovery 1.0 §4): ``{issuer}/.well-known/openid-configuration``
  (a trailing ``/`` of the issuer removed first, §4.1); its ``issuer`` must equal the
  configured one exactly (§4.3), otherwise its keys are not the issuer's and none are used.
* **Cached** for the response's ``Cache-Control: max-age`` (minus ``Age``, RFC 9111 §4.2.3),
  bounded to 5 min … 24 h: an issuer cannot make us fetch on every request, nor keep a
  removed key alive for days. When the time is up the keys are refreshed in the background
  while the current ones keep verifying.
* **Refetched on an unknown ``kid``** (the issuer rotated) at most once per 30 s, counted from
  the last fetch, successful or not: a flood of tokens with forged ``kid`` values costs the
  issuer one request per 30 s, whatever its size.
* **One fetch in flight**: concurrent requests that need fresh keys wait for the same fetch.
  Fetches run in one worker thread, off the event loop.
* **Bounded**: a response over 256 KiB, or a fetch over the timeout (connect, headers and body
  together: a watchdog closes the socket), fails.
* **Last good keys kept** while the issuer is unreachable or answers nonsense; a token with a
  new ``kid`` is refused until a fetch succeeds. Failures are logged (``bastion.auth``).

Proxies from the ``https_proxy`` / ``no_proxy`` environment variables are honoured for HTTPS
fetches (a CONNECT tunnel), as ``urllib`` does.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import http.client
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from bastion.auth.jwk import EMPTY, KeySet, VerificationKey, key_set, pinned_algorithms
from bastion.errors import ConfigError

log = logging.getLogger("bastion.auth")

REFETCH_INTERVAL = 30.0  # seconds between two fetches of one issuer's keys, at least
MIN_CACHE_SECONDS = 300  # 5 min
MAX_CACHE_SECONDS = 86_400  # 24 h
DEFAULT_TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 256 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"
_USER_AGENT = "bastion-jwks"
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:[,=]|$)", re.IGNORECASE)


class FetchError(Exception):
    """A key or discovery document could not be fetched or was not usable."""


# --- URLs ---------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): plain HTTP stays on the host."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_url(url: object, option: str) -> str:
    """*url* if it is an absolute HTTPS URL (or HTTP to a loopback host); ConfigError if not."""
    if not isinstance(url, str) or not url:
        raise ConfigError(option, "give an https:// URL")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConfigError(option, f"{url[:100]!r} is not an absolute https:// URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            option, "must use https:// (plain http:// only for loopback hosts such as 127.0.0.1)"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(option, "must not carry credentials")
    if parts.fragment:
        raise ConfigError(option, "must not have a #fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(option, "has an invalid port") from None
    return url


def discovery_url(issuer: str) -> str:
    """Where an issuer's OpenID Provider configuration lives (OIDC Discovery §4.1)."""
    return issuer.rstrip("/") + DISCOVERY_PATH


# --- caching ------------------------------------------------------------------------------------


def cache_lifetime(cache_control: str | None, age: str | None = None) -> float:
    """Seconds a response may be used: ``max-age`` minus ``Age``, bounded to 5 min … 24 h.

    No header, ``no-cache``/``no-store`` or ``max-age=0`` all give the 5-minute floor: the
    keys are still needed on the next request, and fetching them per request would let
    any client make us hammer the issuer.
    """
    seconds = 0.0
    if cache_control and not _NO_CACHE.search(cache_control):
        match = _MAX_AGE.search(cache_control)
        if match:
            seconds = float(match.group(1))
            if age and age.strip().isdigit():
                seconds -= float(age.strip())
    return min(max(seconds, MIN_CACHE_SECONDS), MAX_CACHE_SECONDS)


# --- fetching -----------------------------------------------------------------------------------


def _proxy_for(parts: urllib.parse.SplitResult) -> urllib.parse.SplitResult | None:
    """The HTTPS proxy the environment names for this URL (honouring ``no_proxy``)."""
    if parts.scheme != "https" or is_loopback(parts.hostname or ""):
        return None
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return proxy_parts if proxy_parts.hostname else None


def _connection(
    parts: urllib.parse.SplitResult, timeout: float, context: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    host = parts.hostname or ""
    if parts.scheme == "http":
        return http.client.HTTPConnection(host, parts.port or 80, timeout=timeout)
    context = context or ssl.create_default_context()
    proxy = _proxy_for(parts)
    if proxy is None:
        return http.client.HTTPSConnection(
            host, parts.port or 443, timeout=timeout, context=context
        )
    connection = http.client.HTTPSConnection(
        proxy.hostname or "", proxy.port or 8080, timeout=timeout, context=context
    )
    headers = {}
    if proxy.username is not None:
        credentials = f"{urllib.parse.unquote(proxy.username)}:" + urllib.parse.unquote(
            proxy.password or ""
        )
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    connection.set_tunnel(host, parts.port or 443, headers=headers)
    return connection


def fetch_json(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[Any, float]:
    """GET *url*: its JSON document and how long it may be cached (seconds).

    Raises :class:`FetchError` for anything but a ``200`` with a JSON body within the size
    and time bounds. A watchdog closes the socket when *timeout* is over, so a server that
    trickles its headers or body one byte at a time cannot hold the fetch longer.
    """
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    connection = _connection(parts, timeout, ssl_context)
    expired = threading.Event()

    def watchdog() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv in the fetch thread

    timer = threading.Timer(timeout, watchdog)
    timer.daemon = True
    timer.start()
    try:
        connection.request(
            "GET",
            target,
            headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
        )
        response = connection.getresponse()
        if response.status != 200:
            raise FetchError(f"HTTP {response.status} from {url}")  # redirects not followed
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"{url} announced {declared} bytes (at most {max_bytes})")
        body = bytearray()
        while chunk := response.read1(65536):
            body += chunk
            if len(body) > max_bytes:
                raise FetchError(f"{url} sent more than {max_bytes} bytes")
        lifetime = cache_lifetime(
            ", ".join(response.headers.get_all("Cache-Control") or ()) or None,
            response.getheader("Age"),
        )
    except FetchError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if expired.is_set():
            raise FetchError(f"{url} took longer than {timeout:g} s") from None
        raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None
    finally:
        timer.cancel()
        connection.close()
    if expired.is_set():
        raise FetchError(f"{url} took longer than {timeout:g} s")
    try:
        document = json.loads(bytes(body), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise FetchError(f"{url} did not answer JSON") from None
    return document, lifetime


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name}")


# --- the key source -----------------------------------------------------------------------------


class RemoteKeys:
    """An issuer's keys, from its JWKS URL or found through OIDC discovery (rules: module doc).

    Give *jwks_url*, or *issuer* alone for discovery. *clock* is a monotonic clock, injectable
    for tests of the cache and throttle rules.
    """

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        issuer: str | None = None,
        algorithms: Sequence[str],
        low_s: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (jwks_url is None) == (issuer is None):
            raise ConfigError("jwks_url", "give a JWKS URL, or an issuer for discovery")
        if not (isinstance(timeout, int | float) and 0.1 <= timeout <= 60):
            raise ConfigError("timeout", "must be between 0.1 and 60 seconds")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigError("ssl_context", "must be an ssl.SSLContext")
        self.algorithms = pinned_algorithms(algorithms)
        self.issuer = issuer
        self.discovery_url = checked_url(discovery_url(issuer), "issuer") if issuer else None
        self.jwks_url = checked_url(jwks_url, "jwks_url") if jwks_url else None
        self.low_s = low_s
        self.timeout = float(timeout)
        self.max_bytes = max_bytes
        self.ssl_context = ssl_context
        self.clock = clock
        self._keys: KeySet = EMPTY
        self._stale_at = -math.inf  # keys are due for a (background) refresh from then on
        self._discovery_stale_at = -math.inf
        self._last_attempt = -math.inf
        self._inflight: concurrent.futures.Future[bool] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.fetches = 0  # attempts so far (for logs and tests)

    # --- the KeySource protocol ---------------------------------------------------------------

    def get(self, kid: str | None, alg: str) -> VerificationKey | None:
        return self._keys.get(kid, alg)

    def poll(self) -> None:
        """Start a background refresh when the keys are past their cache lifetime."""
        now = self.clock()
        if (
            now >= self._stale_at
            and now - self._last_attempt >= REFETCH_INTERVAL
            and self._inflight is None
        ):
            self._start()

    def refetch(self) -> concurrent.futures.Future[bool] | None:
        return self._start()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    # --- fetching -----------------------------------------------------------------------------

    @property
    def keys(self) -> KeySet:
        """The current key set (empty until the first successful fetch)."""
        return self._keys

    def _start(self) -> concurrent.futures.Future[bool] | None:
        """The fetch in flight, a new one if the throttle allows, else ``None``."""
        if self._pid != os.getpid():  # forked (e.g. a pre-loading server): start afresh
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._executor = None
            self._inflight = None
        with self._lock:
            if self._inflight is not None:
                return self._inflight  # concurrent requests share one fetch
            now = self.clock()
            if now - self._last_attempt < REFETCH_INTERVAL:
                return None  # counted from the last fetch, successful or not
            self._last_attempt = now
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="bastion-jwks"
                )
            future = self._executor.submit(self._fetch)
            self._inflight = future
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: concurrent.futures.Future[bool]) -> None:
        with self._lock:
            if self._inflight is future:
                self._inflight = None

    def _fetch(self) -> bool:
        """One refresh: discovery when due, then the JWKS. True when new keys are installed."""
        self.fetches += 1
        try:
            url = self._jwks_location()
            document, lifetime = self._get(url)
            keys = key_set(document, self.algorithms, low_s=self.low_s, source=url)
        except (FetchError, ValueError) as exc:
            log.warning("keys not refreshed (the last good ones stay in use): %s", exc)
            return False
        except Exception as exc:  # never let a bug kill the worker silently
            log.exception("keys not refreshed: unexpected %s", type(exc).__name__)
            return False
        self._keys = keys
        self._stale_at = self.clock() + lifetime
        for listener in self._listeners:
            listener()
        return True

    def _get(self, url: str) -> tuple[Any, float]:
        return fetch_json(
            url, timeout=self.timeout, max_bytes=self.max_bytes, ssl_context=self.ssl_context
        )

    def _jwks_location(self) -> str:
        """The JWKS URL: configured, or from the (cached) discovery document."""
        if self.discovery_url is None:
            return self.jwks_url or ""
        if self.jwks_url is not None and self.clock() < self._discovery_stale_at:
            return self.jwks_url
        try:
            document, lifetime = self._get(self.discovery_url)
            self.jwks_url = self._jwks_uri_of(document)
            self._discovery_stale_at = self.clock() + lifetime
        except FetchError:
            if self.jwks_url is None:
                raise
            log.warning("discovery failed; the last known jwks_uri stays in use")
        return self.jwks_url

    def _jwks_uri_of(self, document: Any) -> str:
        if not isinstance(document, dict):
            raise FetchError(f"{self.discovery_url} is not a JSON object")
        # OIDC Discovery §4.3: the issuer in the document MUST be exactly the one configured.
        if document.get("issuer") != self.issuer:
            raise FetchError(
                f"{self.discovery_url} names issuer {str(document.get('issuer'))[:100]!r}, "
                f"not {self.issuer!r}: its keys are not used"
            )
        try:
            return checked_url(document.get("jwks_uri"), "jwks_uri")
        except ConfigError as exc:
            raise FetchError(f"{self.discovery_url}: {exc}") from None


__all__ = [
    "MAX_CACHE_SECONDS",
    "MIN_CACHE_SECONDS",
    "REFETCH_INTERVAL",
    "FetchError",
    "RemoteKeys",
    "cache_lifetime",
    "checked_url",
    "discovery_url",
    "fetch_json",
]
