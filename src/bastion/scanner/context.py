"""The scan context: one HTTP client, a request budget, shared fetches and shared facts.

Every probe talks to the target only through :class:`ScanContext`, which

* holds one ``httpx.AsyncClient`` (HTTP/1.1 and HTTP/2, no cookie jar: every probe starts
  from a clean client state, no automatic redirects: a probe sees each hop);
* bounds concurrency (a semaphore) and the *total* number of requests (the passive mode
  promises a bounded number of harmless requests), and makes each check keep to the
  ``max_requests`` it declared;
* caches fetches (:meth:`fetch`) so several checks judging the same response share one request;
* memoises expensive facts computed once per scan (:meth:`memo`), e.g. the TLS facts
  (:meth:`tls_facts`, gathered by the :class:`TLSFactsProvider` the runner passes in,
  :func:`bastion.scanner.tls.collect`);
* redacts credentials in all evidence it produces (:class:`~bastion.scanner.redaction.Redactor`).

The target may be hostile, so every request goes through one funnel (:meth:`_send_one`) that

* asks the origin policy (:class:`~bastion.scanner.origin.OriginPolicy`) where it may go and
  which headers may go with it: credentials only to the exact scanned origin;
* gives it a total deadline, ``--timeout`` (connect, TLS, interim responses, head, body), and
  never past the scan's own deadline, ``--max-time``: a body still arriving at its deadline is
  kept as far as it came (like a body cut at the size cap); a head that has not arrived is a
  :class:`RequestDeadline`; the scan's deadline raises :class:`ScanDeadline`, which the runner
  reports as "did not finish";
* reads the body through :class:`~bastion.scanner.body.BodyDecoder` (capped after decoding) over
  the guarded network of :mod:`bastion.scanner.transport` (interim-response and frame floods).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Protocol, TypeVar

import httpx

from bastion import __version__
from bastion.scanner.body import BodyDecoder
from bastion.scanner.evidence import Exchange
from bastion.scanner.model import Coverage
from bastion.scanner.origin import OffOrigin, OriginPolicy
from bastion.scanner.redaction import Redactor, command_line_secrets
from bastion.scanner.transport import (
    FrameFlood,
    InterimFlood,
    ResponseGuard,
    guarded_transport,
    guarding,
)

T = TypeVar("T")
FactsT = TypeVar("FactsT")

USER_AGENT = f"bastion-scan/{__version__} (+https://github.com/bastion; outside-in security scan)"
MAX_REDIRECTS = 5
# Only what BodyDecoder decodes itself (httpx would add br/zstd when their packages are there).
ACCEPT_ENCODING = "gzip, deflate"
CLOSE_GRACE_S = 1.0  # closing a response or the client never waits longer on the target
DROP_RETRIES = 2  # a request whose connection the server dropped is sent again at most twice


class ScanError(Exception):
    """Base of the scanner's own errors."""


class TargetUnreachable(ScanError):
    """The target could not be reached at all (DNS, refused, TLS, no answer in time): exit 2."""


class ScanDeadline(ScanError):
    """The scan's overall deadline (``--max-time``) passed: the control did not finish."""


class RequestDeadline(httpx.TimeoutException):
    """No response head within the request's total deadline (``--timeout``)."""


ANONYMOUS = "anonymous"
"""``extra_headers=ANONYMOUS``: none of the user's ``--header`` values (every one may be a
credential: an API key in ``X-API-Key`` is one as much as ``Authorization``), so the probe is
what an anonymous client sends."""


class BudgetExhausted(ScanError):
    """A check (or the whole scan) tried to send more requests than it was allowed."""


@dataclass(frozen=True)
class ScanOptions:
    """What the user asked for. Defaults are the passive, polite scan."""

    active: bool = False
    token: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    insecure: bool = False
    ca_file: str | None = None
    http_url: str | None = None  # the plain-HTTP listener, when not derivable from the target
    timeout: float = 10.0  # total deadline of one request: connect, TLS, 1xx, head and body
    max_time: float | None = 120.0  # the whole scan's deadline (None: none)
    # When the --max-time clock started (time.monotonic()); None: when the scan starts. The
    # CLI passes its process's start, so that start-up counts too.
    clock_started: float | None = None
    concurrency: int = 8
    max_requests: int = 400  # passive budget; --active adds ACTIVE_EXTRA_REQUESTS
    body_limit: int = 256 * 1024
    ignore: Mapping[str, str] = field(default_factory=dict)  # check id -> reason
    # API depth: where the OpenAPI document is (a file or a same-origin URL;
    # None: look for it), a second identity for authorization tests (``--token-b`` or
    # ``--auth-b 'Header: value'``), the front-end origins the API legitimately trusts, a
    # known account for the enumeration control and an expired token for jwt.expired.
    openapi: str | None = None
    token_b: str | None = None
    auth_b: tuple[tuple[str, str], ...] = ()
    origins: tuple[str, ...] = ()
    login_email: str | None = None
    expired_token: str | None = None
    # Requests the per-operation sweep may send (anonymous, authenticated, second identity):
    # every operation of a large API is covered as far as this goes, and no further.
    operation_budget: int = 150

    ACTIVE_EXTRA_REQUESTS = 400

    @property
    def budget(self) -> int:
        extra = self.ACTIVE_EXTRA_REQUESTS if self.active else 0
        return self.max_requests + self.operation_budget + extra


@dataclass(frozen=True)
class TLSEndpoint:
    """Where the scanned TLS endpoint is and how to reach it: all a TLS-facts provider needs."""

    host: str
    port: int
    https: bool  # False: a plain-HTTP target, nothing to probe
    ca_file: str | None  # trusted in addition to the system store (``--ca-file``)
    timeout: float  # ``--timeout``: no handshake waits longer


class TLSFactsProvider(Protocol):
    """Gathers the facts about the target's TLS endpoint that the ``tls.*`` controls judge.

    The context calls it at most once per scan and shares the result
    (:meth:`ScanContext.tls_facts`). Handshakes are not HTTP requests and are not charged to
    the request budget. The real provider is :func:`bastion.scanner.tls.collect`; a test can
    pass one that returns prepared facts.
    """

    async def __call__(self, endpoint: TLSEndpoint, /) -> object: ...


@dataclass
class _CheckBudget:
    check_id: str
    allowed: int
    used: int = 0


# Which check is running in this task (set by the runner), so the context can hold each check
# to the ``max_requests`` it declared without the probe passing anything around.
_current_check: contextvars.ContextVar[_CheckBudget | None] = contextvars.ContextVar(
    "bastion_scan_current_check", default=None
)


class _NoCookies(DefaultCookiePolicy):
    """Refuse to store cookies: each probe must see the server's answer to a fresh client."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False


def build_ssl_context(*, insecure: bool = False, ca_file: str | None = None) -> ssl.SSLContext:
    """The verification context for HTTP requests (and for TLS probes that verify trust).

    ``ca_file`` adds a private CA (or a pinned self-signed certificate) to the system store;
    ``insecure`` connects whatever the certificate (the trust control then reports ``warn``).
    Cached per (insecure, ca_file, its mtime): a context is safe to share as long as nobody
    mutates its trust settings (don't).
    """
    stamp = None
    if ca_file:
        try:
            stamp = os.stat(ca_file).st_mtime_ns
        except OSError:
            stamp = None  # load_verify_locations below reports the real problem
    return _cached_ssl_context(insecure, ca_file, stamp)


@functools.lru_cache(maxsize=16)
def _cached_ssl_context(insecure: bool, ca_file: str | None, _stamp: int | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and host name
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    _load_system_store(context)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _load_system_store(context: ssl.SSLContext) -> None:
    """The system trust store, as the hashed directory when there is one: OpenSSL then reads
    issuers on demand (milliseconds) instead of parsing the whole bundle (~0.15 s per scan).
    An explicit SSL_CERT_FILE, or no hashed directory, falls back to the default loading."""
    paths = ssl.get_default_verify_paths()
    capath = paths.capath
    hashed = bool(
        capath
        and not os.environ.get(paths.openssl_cafile_env)
        and os.path.isdir(capath)
        and any(name.endswith(".0") for name in os.listdir(capath))
    )
    if hashed and capath:
        context.load_verify_locations(capath=capath)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)


class ScanContext:
    """Everything a probe may use. Create with :meth:`open` or as an async context manager."""

    def __init__(
        self,
        target: str,
        options: ScanOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        tls: TLSFactsProvider | None = None,
    ) -> None:
        self.options = options or ScanOptions()
        self._tls = tls
        self.target = httpx.URL(target)
        if self.target.scheme not in {"http", "https"} or not self.target.host:
            raise ValueError(f"target must be an http(s) URL with a host, got {target!r}")
        # The scan's deadline, a little before --max-time so that unfinished controls can be
        # stopped and the report written within it.
        self.started = self.options.clock_started or time.monotonic()
        max_time = self.options.max_time
        self.deadline = (
            None if max_time is None else self.started + max_time - finish_reserve(max_time)
        )
        self.ssl_context = build_ssl_context(
            insecure=self.options.insecure, ca_file=self.options.ca_file
        )
        secrets = command_line_secrets(
            self.options.token, self.options.headers, self.target.password or None
        )
        # The second identity and the expired token are credentials like the first: masked in
        # every report and kept home by the same origin policy.
        secrets += command_line_secrets(self.options.token_b, self.options.auth_b)
        secrets += command_line_secrets(self.options.expired_token, ())
        self.redactor = Redactor(secrets)
        self.policy = OriginPolicy(
            self.target,
            plain_http=self.http_origin(),
            secrets=secrets,
            credential_headers=[name for name, _ in (*self.options.headers, *self.options.auth_b)],
        )
        self._transport = transport
        self.client = self._make_client(self.ssl_context)
        # Set by preflight() when the certificate did not verify and the scan went on without
        # verification (the TLS trust control judges it; HTTP controls still run).
        self.http_trust_error: str | None = None
        self._semaphore = asyncio.Semaphore(max(1, self.options.concurrency))
        self._fetches: dict[tuple[Any, ...], asyncio.Future[Exchange]] = {}
        self._memo: dict[str, asyncio.Future[Any]] = {}
        self.requests_sent = 0
        # Set by the operation sweep (bastion.scanner.api), reported as Report.coverage.
        self.coverage: Coverage | None = None
        # Set once the target answered over HTTP/2, where a GOAWAY or a dropped connection
        # fails every stream in flight on it (each is retried, see _send_one).
        self.speaks_h2 = False

    def _make_client(self, verify: ssl.SSLContext) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            http2=True,
            verify=verify,
            follow_redirects=False,
            timeout=httpx.Timeout(self.options.timeout),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
            transport=self._transport or guarded_transport(verify=verify),
            trust_env=False,  # never route a scan through a proxy from the environment
        )
        # httpx copies a given jar into a fresh one (losing its policy): set it on the client's.
        client.cookies.jar.set_policy(_NoCookies())
        return client

    async def preflight(self) -> Exchange:
        """Reach the target once (the baseline) before any control runs.

        A certificate that does not verify does not stop the scan: the HTTP controls go on
        over an unverified connection and the TLS trust control fails (or warns with
        ``--insecure``), as the contract asks. Anything else that prevents a response head
        (refused, DNS, the request's or the scan's deadline, not HTTP) raises
        :class:`TargetUnreachable`. A body still arriving at the deadline is not fatal: the
        baseline keeps what came.
        """
        try:
            return await self.baseline()
        except httpx.ConnectError as exc:
            verify_error = _ssl_verify_error(exc)
            if verify_error is None or self.options.insecure:
                raise TargetUnreachable(_describe_error(exc)) from exc
            self.http_trust_error = verify_error
            await self._close_client()
            self.client = self._make_client(build_ssl_context(insecure=True))
            self._fetches.clear()
            try:
                return await self.baseline()
            except (httpx.HTTPError, OSError, ScanDeadline) as retry_exc:
                raise TargetUnreachable(_describe_error(retry_exc)) from retry_exc
        except (httpx.HTTPError, OSError, ScanDeadline) as exc:
            raise TargetUnreachable(_describe_error(exc)) from exc

    async def __aenter__(self) -> ScanContext:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._close_client()

    async def _close_client(self) -> None:
        """Close every connection, never waiting on the target for long (a hostile server
        can stall a graceful close)."""
        with contextlib.suppress(TimeoutError, httpx.HTTPError, OSError):
            async with asyncio.timeout(CLOSE_GRACE_S):
                await self.client.aclose()

    # -- time ----------------------------------------------------------------------------
    def remaining(self) -> float | None:
        """Seconds left before the scan's deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _request_deadline(self) -> tuple[float, bool]:
        """The deadline of a request starting now, and whether the scan's deadline set it."""
        own = time.monotonic() + self.options.timeout
        if self.deadline is not None and self.deadline <= own:
            return self.deadline, True
        return own, False

    def _scan_deadline_error(self) -> ScanDeadline:
        limit = self.options.max_time
        return ScanDeadline(f"did not finish within the scan's --max-time of {limit:g} s")

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of the ``--concurrency`` request slots, waited for no later than the deadline."""
        remaining = self.remaining()
        try:
            async with asyncio.timeout(remaining):
                await self._semaphore.acquire()
        except TimeoutError:
            raise self._scan_deadline_error() from None
        try:
            yield
        finally:
            self._semaphore.release()

    # -- URLs ----------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the target."""
        return str(self.target.copy_with(path="/", query=None, fragment=None)).rstrip("/")

    @property
    def host(self) -> str:
        return self.target.host

    @property
    def is_https(self) -> bool:
        return self.target.scheme == "https"

    @property
    def prefix(self) -> str:
        """The path the API is mounted under, from the URL the user gave: ``/svc/api/v1`` for
        ``https://h/svc/api/v1/``; ``""`` for an API at the root. Discovery looks under it
        first, so that an API behind a path prefix gets the same controls as one at ``/``."""
        return self.target.path.rstrip("/")

    def under_prefix(self, path: str) -> list[str]:
        """``path`` (an absolute path such as ``/api/v1/me``) where the API may serve it: under
        the prefix (with any overlap folded: ``/svc/api/v1`` + ``/api/v1/me`` gives
        ``/svc/api/v1/me``), then under each shorter prefix, then at the root; no duplicates."""
        prefix = self.prefix
        found: list[str] = []
        segments = [s for s in prefix.split("/") if s]
        for cut in range(len(segments), -1, -1):
            base = "/" + "/".join(segments[:cut]) if cut else ""
            joined = base + path
            # fold an overlap: base ends with the path's first segments
            parts = [s for s in path.split("/") if s]
            for k in range(min(len(parts), cut), 0, -1):
                if segments[cut - k : cut] == parts[:k]:
                    joined = base + "/" + "/".join(parts[k:]) if parts[k:] else base
                    if path.endswith("/") and not joined.endswith("/"):
                        joined += "/"
                    break
            if joined and joined not in found:
                found.append(joined)
        return found

    def url(self, path: str = "") -> str:
        """An absolute URL: ``path`` starting with ``/`` is on the target's origin; ``""`` is the
        target itself; an absolute URL is returned unchanged."""
        if not path:
            return str(self.target)
        if path.startswith(("http://", "https://")):
            return path
        return self.origin + (path if path.startswith("/") else "/" + path)

    def http_origin(self) -> str | None:
        """Where the plain-HTTP listener should be, or None when it cannot be guessed.

        ``--http-url`` wins; otherwise 443 pairs with 80 and 8443 with 8080 (the contract's
        defaults). Probing plain HTTP on the TLS port itself (as Observatory 1.4.8 does) would
        report a missing redirect for every TLS-only port, a false positive we avoid.
        """
        if self.options.http_url:
            return str(httpx.URL(self.options.http_url)).rstrip("/")
        if not self.is_https:
            return self.origin
        port = self.target.port or 443
        http_port = {443: 80, 8443: 8080}.get(port)
        if http_port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}" + ("" if http_port == 80 else f":{http_port}")

    def same_target(self, url: str | httpx.URL) -> bool:
        """True when ``url`` is on the exact scanned origin (scheme, host and port): the only
        place a redirect is followed to, or a URL the target names is fetched from."""
        return self.policy.may_follow(url)

    # -- requests ------------------------------------------------------------------------
    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <--token>`` when a token was given, else nothing."""
        return {"Authorization": f"Bearer {self.options.token}"} if self.options.token else {}

    def auth_headers_b(self) -> dict[str, str]:
        """The second identity's credentials (``--token-b`` or ``--auth-b``), else nothing."""
        if self.options.token_b:
            return {"Authorization": f"Bearer {self.options.token_b}"}
        return dict(self.options.auth_b)

    @property
    def has_identity_b(self) -> bool:
        return bool(self.options.token_b or self.options.auth_b)

    def _ensure_budget(self) -> None:
        """Raise if one more request would exceed the scan's or the current check's budget."""
        if self.requests_sent >= self.options.budget:
            raise BudgetExhausted(f"scan request budget of {self.options.budget} exhausted")
        budget = _current_check.get()
        if budget is not None and budget.used >= budget.allowed:
            raise BudgetExhausted(
                f"check {budget.check_id} exceeded its max_requests={budget.allowed}"
            )

    def _charge(self) -> None:
        self._ensure_budget()
        budget = _current_check.get()
        if budget is not None:
            budget.used += 1
        self.requests_sent += 1

    async def request(
        self,
        method: str,
        path: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json_body: Any = None,
        extra_headers: bool | str = True,
        raw_target: bytes | None = None,
        follow: bool = False,
    ) -> Exchange:
        """Send one request (uncached) and return the exchange.

        ``extra_headers`` adds the user's ``--header`` values: ``True`` all of them, ``False``
        or :data:`ANONYMOUS` none (plain-HTTP probes, unauthenticated probes); either way the
        origin policy strips every credential from a request that leaves the scanned origin.
        ``raw_target`` sends a request-target byte-for-byte (e.g. ``/%``, which a URL library
        would "fix"). ``follow`` follows redirects that stay on the exact scanned origin (each
        hop counts as a request); the exchange's ``history`` holds the earlier hops. A URL the
        policy does not allow raises :class:`~bastion.scanner.origin.OffOrigin` unsent.
        """
        url = self.url(path)
        if not self.policy.may_contact(url):
            raise OffOrigin(self.policy.why_not(url))
        history: list[Exchange] = []
        current_method = method
        for _ in range(MAX_REDIRECTS + 1):
            try:
                exchange = await self._send_one(
                    current_method,
                    url,
                    headers=headers,
                    content=content,
                    json_body=json_body,
                    extra_headers=extra_headers,
                    raw_target=raw_target,
                )
            except httpx.TransportError:
                if not history:
                    raise
                # The target answered; only a hop it pointed to is dead. Judge the redirect
                # itself rather than calling the whole target unreachable.
                exchange = history.pop()
                break
            location = exchange.header("location")
            if not (follow and exchange.status in {301, 302, 303, 307, 308} and location):
                break
            try:
                next_url = httpx.URL(exchange.url).join(location)
            except httpx.InvalidURL:
                break
            if not self.policy.may_follow(next_url):
                break  # never follow off the scanned origin: the hop itself is the evidence
            history.append(exchange)
            url, raw_target = str(next_url), None
            if exchange.status == 303 or (exchange.status in {301, 302} and method == "POST"):
                current_method, content, json_body = "GET", None, None
        if history:
            exchange = _with_history(exchange, tuple(history))
        return exchange

    async def _send_one(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        content: bytes | str | None,
        json_body: Any,
        extra_headers: bool | str,
        raw_target: bytes | None,
    ) -> Exchange:
        """The one place a request leaves the scanner (see the module docstring)."""
        sent_headers: dict[str, str] = {}
        if extra_headers is True:
            sent_headers.update(dict(self.options.headers))
        sent_headers.update(headers or {})
        sent_headers = self.policy.outgoing_headers(url, sent_headers)
        extensions = {"target": raw_target} if raw_target is not None else None
        request = self.client.build_request(
            method,
            url,
            headers=sent_headers,
            content=content,
            json=json_body,
            extensions=extensions,
        )
        self._charge()
        async with self._slot():
            started = time.perf_counter()
            deadline, by_scan = self._request_deadline()
            for attempt in range(DROP_RETRIES + 1):
                try:
                    response, body, truncated, note = await self._exchange(
                        request, deadline, by_scan
                    )
                    break
                except (httpx.ProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                    if (
                        attempt == DROP_RETRIES
                        or _guarded(exc)
                        or _large_head(request)
                        or not (self.speaks_h2 or _dropped(exc))
                    ):
                        raise
                    # The server dropped a connection this request shared (HTTP/2 GOAWAY, a
                    # stream or TCP reset): retried on a fresh connection, same deadline.
                    self.requests_sent += 1
            elapsed = (time.perf_counter() - started) * 1000
        if response.http_version == "HTTP/2":
            self.speaks_h2 = True
        request_body = request.content if isinstance(request.content, bytes) else b""
        return Exchange(
            method=method,
            url=url if raw_target is None else _with_raw_target(url, raw_target),
            request_headers=tuple(sent_headers.items()),
            status=response.status_code,
            reason_phrase=response.reason_phrase,
            http_version=response.http_version,
            headers=response.headers,
            body=body,
            elapsed_ms=elapsed,
            truncated=truncated,
            body_note=note,
            request_body=request_body,
            redactor=self.redactor,
        )

    async def _exchange(
        self, request: httpx.Request, deadline: float, by_scan: bool
    ) -> tuple[httpx.Response, bytes, bool, str]:
        """Send ``request`` and read its body, all before ``deadline``."""
        guard = ResponseGuard()
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                with guarding(guard):
                    response = await self.client.send(request, stream=True)
        except TimeoutError:
            if by_scan:
                raise self._scan_deadline_error() from None
            raise RequestDeadline(
                f"no response head within {self.options.timeout:g} s (the request's total "
                "deadline: connect, TLS, interim responses and head)",
                request=request,
            ) from None
        guard.head_done = True
        decoder = BodyDecoder(
            response.headers.get_list("content-encoding"), self.options.body_limit
        )
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                chunks = response.aiter_raw()
                try:
                    async for chunk in chunks:
                        if decoder.feed(chunk):
                            break
                finally:
                    await chunks.aclose()  # type: ignore[attr-defined]  # an async generator
        except TimeoutError:
            if by_scan:
                raise self._scan_deadline_error() from None
            decoder.cut(
                f"body cut by the {self.options.timeout:g} s request deadline (still arriving)"
            )
        finally:
            with contextlib.suppress(TimeoutError, httpx.HTTPError, OSError):
                async with asyncio.timeout(CLOSE_GRACE_S):
                    await response.aclose()
        return response, decoder.result(), decoder.truncated, decoder.note

    async def fetch(
        self,
        method: str = "GET",
        path: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        extra_headers: bool | str = True,
        follow: bool = False,
    ) -> Exchange:
        """Like :meth:`request`, but shared: the same request is sent once per scan.

        Concurrent callers await one in-flight request; an exception is shared too (the
        budget is not spent twice on a dead endpoint). Only the first caller's check is charged.
        """
        key = (
            method.upper(),
            self.url(path),
            tuple(sorted((headers or {}).items())),
            content,
            extra_headers,
            follow,
        )
        future = self._fetches.get(key)
        if future is None:
            # A check over its own budget must fail alone, not poison the shared fetch.
            self._ensure_budget()
            future = asyncio.get_running_loop().create_future()
            self._fetches[key] = future
            try:
                result = await self.request(
                    method,
                    path,
                    headers=headers,
                    content=content,
                    extra_headers=extra_headers,
                    follow=follow,
                )
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # mark retrieved: no "never retrieved" warning
                raise
            future.set_result(result)
            return result
        return await asyncio.shield(future)

    async def baseline(self) -> Exchange:
        """``GET`` of the URL the user gave, following redirects within the target.

        Most header controls judge this response. An API whose ``/`` is 404 is still graded:
        the 404 carries (or fails to carry) the same headers.
        """
        return await self.fetch("GET", "", follow=True)

    async def not_found(self) -> Exchange:
        """A response to a path that cannot exist: judges headers and leaks on errors."""
        return await self.fetch("GET", "/bastion-scan-404-check")

    # -- shared facts --------------------------------------------------------------------
    async def memo(self, key: str, factory: Callable[[], Awaitable[T]]) -> T:
        """Compute ``factory()`` once per scan; concurrent callers share the result."""
        future = self._memo.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._memo[key] = future
            # Run outside any one check's budget: a shared fact belongs to the scan.
            token = _current_check.set(None)
            try:
                value = await factory()
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()
                raise
            finally:
                _current_check.reset(token)
            future.set_result(value)
            return value
        return await asyncio.shield(future)

    @property
    def tls_endpoint(self) -> TLSEndpoint:
        """The target's TLS endpoint, as the TLS-facts provider is given it."""
        return TLSEndpoint(
            host=self.host,
            port=self.target.port or (443 if self.is_https else 80),
            https=self.is_https,
            ca_file=self.options.ca_file,
            timeout=self.options.timeout,
        )

    async def tls_facts(self, kind: type[FactsT]) -> FactsT:
        """The facts about the target's TLS endpoint, gathered once per scan by the provider
        this context was given, as ``kind`` (the type the provider returns: the context does
        not depend on the TLS package, whose controls say what they expect)."""
        provider = self._tls
        if provider is None:
            raise RuntimeError("this ScanContext was built without a TLS-facts provider (tls=)")
        endpoint = self.tls_endpoint
        facts = await self.memo("tls", lambda: provider(endpoint))
        if not isinstance(facts, kind):
            raise TypeError(f"the TLS-facts provider returned {type(facts).__name__}, not {kind}")
        return facts


_DROPPED = ("ConnectionTerminated", "StreamReset", "Connection reset", "reset by peer")


def _dropped(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection the server dropped under a request (HTTP/2 GOAWAY, whose
    streams above its last id were never processed, a stream reset, a TCP reset), which is
    worth a retry, unlike an HTTP/1.1 server that hangs up without answering. Over HTTP/2
    every protocol or read error is retried: the connection is shared, and httpcore
    reports a GOAWAY to the streams in flight in several ways ("Server disconnected", a
    local protocol error in state CLOSED)."""
    text = f"{type(exc).__name__}: {exc!r}"
    return any(marker in text for marker in _DROPPED)


def _large_head(request: httpx.Request) -> bool:
    """A request with a head over 8 KiB (the oversized-header probe) is likely the *cause* of
    the drop (nginx answers it over HTTP/2 with GOAWAY ENHANCE_YOUR_CALM, ending every stream
    on the connection): sent again, it would end the retries of the others too."""
    return sum(len(k) + len(v) for k, v in request.headers.raw) > 8192


def _guarded(exc: BaseException) -> bool:
    """Whether the transport's guard ended the request (a flood): never worth a retry."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, InterimFlood | FrameFlood):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _ssl_verify_error(exc: BaseException) -> str | None:
    """The certificate-verification message hidden in an httpx error's chain, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _describe_error(exc: BaseException) -> str:
    """One line for the user: the error's class and message, without a traceback."""
    message = str(exc).strip() or exc.__class__.__name__
    if isinstance(exc, ScanDeadline | RequestDeadline):
        return message.splitlines()[0]  # our own words already say what happened
    return f"{exc.__class__.__name__}: {message.splitlines()[0]}"


def _with_history(exchange: Exchange, history: tuple[Exchange, ...]) -> Exchange:
    from dataclasses import replace

    return replace(exchange, history=history)


def _with_raw_target(url: str, raw_target: bytes) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(path="/", query=None)).rstrip("/") + raw_target.decode("latin-1")


def finish_reserve(max_time: float) -> float:
    """Seconds kept at the end of ``--max-time`` to stop unfinished controls and write the
    report: 15 % of it, at most 2 s."""
    return min(2.0, 0.15 * max_time)


def current_check_budget(check_id: str, allowed: int) -> contextvars.Token[_CheckBudget | None]:
    """Runner hook: charge requests made in this task to ``check_id`` (at most ``allowed``)."""
    return _current_check.set(_CheckBudget(check_id, allowed))


def reset_check_budget(token: contextvars.Token[_CheckBudget | None]) -> None:
    _current_check.reset(token)
