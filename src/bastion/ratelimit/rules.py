"""Rate-limit rules: which requests a limit applies to, whom it charges, and what it does.

A :class:`Rule` is declarative and validated at construction (a bad option raises
:class:`~bastion.errors.ConfigError` naming it). The contract's two rules are built by
:func:`api_rule` and :func:`auth_rule`; an application adds its own the same way, e.g. a
per-user limit keyed on the authenticated principal::

    Rule("orders-per-user", "30/1m", paths=("/api/v1/orders",), methods={"POST"},
         key=lambda scope: getattr(scope.get("state", {}).get("principal"), "sub", None))
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion.asgi import Scope
from bastion.errors import ConfigError
from bastion.ratelimit.headers import POLICY_NAME, limit_item_format, policy_item
from bastion.ratelimit.keys import canonical_path, client_key
from bastion.ratelimit.policy import Rate

__all__ = [
    "API_PATHS",
    "AUTH_MESSAGE",
    "AUTH_PATHS",
    "OAUTH_AUTHORIZE",
    "Charge",
    "Count",
    "FailureMode",
    "Rule",
    "api_rule",
    "auth_rule",
]

Count = Literal["all", "failures"]
FailureMode = Literal["fail-open", "fail-closed"]

API_PATHS = ("/api/",)
# The OAuth endpoints that take credentials share the budget of the JSON ones: a failed
# password on the OAuth login form and one on /api/v1/auth/login count together, so OAuth
# opens no second set of guesses. On /oauth/authorize only the form's POST counts (see
# _credential_request). The password-reset page's form POST runs the JSON confirm endpoint's
# logic, so it shares that budget too.
AUTH_PATHS = (
    "/api/v1/auth/",
    "/api/v1/password-reset",
    "/oauth/token",
    "/oauth/authorize",
    "/password-reset",
)
OAUTH_AUTHORIZE = "/oauth/authorize"
RESET_PAGE = "/password-reset"
# HTML pages whose GET only renders a form: not counted (see _credential_request).
_FORM_PAGES = (OAUTH_AUTHORIZE, RESET_PAGE)
AUTH_MESSAGE = "Too many authentication attempts"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


@dataclass(frozen=True, slots=True, init=False)
class Rule:
    """One limit.

    * ``name`` — the policy name in ``RateLimit-Policy`` and the key namespace in the store
      (two rules never share counters: a shared namespace would charge one request twice,
      which express-rate-limit refuses as ``ERR_ERL_DOUBLE_COUNT``).
    * ``rate`` — a :class:`Rate` or its text (``"100/15m"``). Options after it are keywords.
    * ``paths`` — path prefixes, matched segment by segment against the canonical path
      (case-insensitive, dot segments and doubled slashes resolved): ``/api/`` matches
      ``/api`` and ``/API//v1/x`` but not ``/apix``. Routed or not: a 404 counts (else a
      scanner probing unrouted paths is never limited, as with slowapi's exemption of
      unmatched routes), and ``/api/v1/orders/<id>`` counts against one budget for every id
      (per-URL keys would make enumeration unlimited: https://github.com/laurentS/slowapi/issues/217).
    * ``when`` — an extra predicate on the scope (both must hold).
    * ``methods`` — restrict to these methods (default: all; ``HEAD`` and ``GET`` always share
      a budget because the key never includes the method).
    * ``key`` — whom to charge: returns a string, or ``None`` to skip the rule for this
      request (e.g. a per-user rule on an anonymous request). Default: the client address.
    * ``count`` — ``"all"``, or ``"failures"``: every request is charged *before* it runs and
      the charge is given back when the response status is below 400. Charging first is what
      stops a parallel burst (counting after the response lets N concurrent guesses all
      through before the first is counted); giving back keeps successful logins free.
    * ``slowdown_after`` / ``slowdown_delay_ms`` / ``slowdown_max_delay_ms`` — progressive
      delay: the n-th request over ``slowdown_after`` in the window waits n × delay.
    * ``message`` — the public ``429`` message.
    * ``on_store_failure`` — ``"fail-open"`` (serve without this limit, log an error) or
      ``"fail-closed"`` (answer ``503``) while the store is unreachable.
    * ``namespace`` — the store keys' prefix (default: ``name``). Two rules with one namespace
      share counters; per-route limits (:class:`bastion.RateLimit`) use ``route.<...>``.
    """

    name: str
    rate: Rate
    paths: tuple[str, ...]
    when: Callable[[Scope], bool] | None
    methods: frozenset[str] | None
    key: Callable[[Scope], str | None]
    count: Count
    slowdown_after: int | None
    slowdown_delay_ms: int
    slowdown_max_delay_ms: int | None
    message: str
    on_store_failure: FailureMode
    # Precomputed at construction:
    prefixes: tuple[str, ...] = field(repr=False)
    policy: bytes = field(repr=False)
    store_prefix: str = field(repr=False)
    limit_bytes: bytes = field(repr=False)  # X-RateLimit-Limit's value
    every_request: bool = field(repr=False)  # no methods, no when: matches_request is True
    item_format: bytes = field(repr=False)  # this rule's RateLimit member, r and t to fill in
    policy_header: tuple[bytes, bytes] = field(repr=False)  # RateLimit-Policy, this rule alone
    limit_header: tuple[bytes, bytes] = field(repr=False)  # X-RateLimit-Limit, this rule alone

    def __init__(
        self,
        name: str,
        rate: Rate | str,
        *,
        paths: str | Iterable[str] = ("/",),
        when: Callable[[Scope], bool] | None = None,
        methods: Collection[str] | None = None,
        key: Callable[[Scope], str | None] = client_key,
        count: Count = "all",
        slowdown_after: int | None = None,
        slowdown_delay_ms: int = 0,
        slowdown_max_delay_ms: int | None = None,
        message: str = "Too many requests",
        on_store_failure: FailureMode = "fail-open",
        namespace: str | None = None,
    ) -> None:
        def fix(attribute: str, value: object) -> None:
            object.__setattr__(self, attribute, value)

        if not isinstance(name, str) or not POLICY_NAME.match(name):
            raise ConfigError(
                "name", f"{name!r}: 1-64 letters, digits, '.', '_' or '-', starting alnum"
            )
        fix("name", name)
        fix("rate", _rate(name, rate))

        path_list = (paths,) if isinstance(paths, str) else tuple(paths)
        if not path_list or not all(isinstance(p, str) and p.startswith("/") for p in path_list):
            raise ConfigError(f"rule {name}: paths", "must be prefixes starting with '/'")
        fix("paths", path_list)
        fix("prefixes", tuple(sorted({canonical_path(p) for p in path_list})))

        method_set: frozenset[str] | None = None
        if methods is not None:
            if isinstance(methods, str):
                raise ConfigError(f"rule {name}: methods", "must be a collection of names")
            method_set = frozenset(m.upper() for m in methods)
            unknown = method_set - _METHODS
            if not method_set or unknown:
                raise ConfigError(f"rule {name}: methods", f"unknown {sorted(unknown)}")
        fix("methods", method_set)
        if when is not None and not callable(when):
            raise ConfigError(f"rule {name}: when", "must be callable")
        fix("when", when)
        if not callable(key):
            raise ConfigError(f"rule {name}: key", "must be callable")
        fix("key", key)
        if count not in ("all", "failures"):
            raise ConfigError(f"rule {name}: count", "must be 'all' or 'failures'")
        fix("count", count)
        if on_store_failure not in ("fail-open", "fail-closed"):
            raise ConfigError(
                f"rule {name}: on_store_failure", "must be 'fail-open' or 'fail-closed'"
            )
        fix("on_store_failure", on_store_failure)
        for option, value in (
            ("slowdown_after", slowdown_after),
            ("slowdown_max_delay_ms", slowdown_max_delay_ms),
        ):
            if value is not None and (not _is_int(value) or value < 0):
                raise ConfigError(f"rule {name}: {option}", "must be a non-negative integer")
            fix(option, value)
        if not _is_int(slowdown_delay_ms) or not 0 <= slowdown_delay_ms <= 60_000:
            raise ConfigError(f"rule {name}: slowdown_delay_ms", "must be 0..60000")
        fix("slowdown_delay_ms", slowdown_delay_ms)
        if not isinstance(message, str) or not message:
            raise ConfigError(f"rule {name}: message", "must be a non-empty string")
        fix("message", message)
        fix("policy", policy_item(name, self.rate.limit, self.rate.window))
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ConfigError(f"rule {name}: namespace", "must be a non-empty string")
        fix("store_prefix", f"{namespace or name}:")
        fix("limit_bytes", b"%d" % self.rate.limit)
        fix("every_request", method_set is None and when is None)
        fix("item_format", limit_item_format(name))
        fix("policy_header", (b"ratelimit-policy", self.policy))
        fix("limit_header", (b"x-ratelimit-limit", self.limit_bytes))

    def matches(self, scope: Scope, path: str) -> bool:
        """Whether this rule applies to the request (*path* is :func:`canonical_path`'s)."""
        return self.matches_path(path) and self.matches_request(scope)

    def matches_path(self, path: str) -> bool:
        """The path half of :meth:`matches`: a function of the canonical path alone, so the
        middleware may remember its answer per path."""
        for prefix in self.prefixes:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return True
        return False

    def matches_request(self, scope: Scope) -> bool:
        """The rest of :meth:`matches`: the method and the ``when`` predicate."""
        if self.methods is not None and scope.get("method", "GET") not in self.methods:
            return False
        return self.when is None or bool(self.when(scope))

    def delay(self, used: int) -> float:
        """Seconds to hold an admitted request that is the *used*-th in the window."""
        after = self.slowdown_after
        if after is None or used <= after or not self.slowdown_delay_ms:
            return 0.0
        delay_ms = (used - after) * self.slowdown_delay_ms
        if self.slowdown_max_delay_ms is not None:
            delay_ms = min(delay_ms, self.slowdown_max_delay_ms)
        return delay_ms / 1000


def _rate(name: str, rate: object) -> Rate:
    if isinstance(rate, Rate):
        return rate
    if not isinstance(rate, str):
        raise ConfigError(f"rule {name}: rate", "must be a Rate or text like 100/15m")
    try:
        return Rate.parse(rate)
    except ValueError as exc:
        raise ConfigError(f"rule {name}: rate", str(exc)) from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(slots=True)
class Charge:
    """One rule applied to one request: what its headers say, and what a refund gives back.

    Mutable: a refund of a rule that counts only failures updates it in place, and the
    headers are computed again from it (:func:`bastion.ratelimit.headers.rate_headers`).
    """

    rule: Rule
    key: str  # the store key charged
    used: int
    reset_after: float
    token: Any  # the store's proof for refund; None once refused or given back


def api_rule(
    rate: Rate | str = "100/15m",
    *,
    slowdown_after: int | None = 50,
    slowdown_delay_ms: int = 200,
    on_store_failure: FailureMode = "fail-open",
    key: Callable[[Scope], str | None] = client_key,
) -> Rule:
    """The contract's global rule: everything under ``/api/``, with progressive slow-down."""
    return Rule(
        "api",
        rate,
        paths=API_PATHS,
        key=key,
        slowdown_after=slowdown_after,
        slowdown_delay_ms=slowdown_delay_ms,
        on_store_failure=on_store_failure,
    )


def _credential_request(scope: Scope) -> bool:
    """False for a ``GET``/``HEAD`` of ``/oauth/authorize`` or ``/password-reset``: they
    render a form (or redirect with a code), carry no password, and a broken link must not
    eat the user's budget (nor be refused with ``429`` while the form POST is the guess)."""
    if scope.get("method") not in ("GET", "HEAD"):
        return True
    path = canonical_path(scope.get("path", ""))
    return not any(path == page or path.startswith(page + "/") for page in _FORM_PAGES)


def auth_rule(
    rate: Rate | str = "5/15m",
    *,
    paths: str | Iterable[str] = AUTH_PATHS,
    on_store_failure: FailureMode = "fail-closed",
    key: Callable[[Scope], str | None] = client_key,
) -> Rule:
    """The contract's strict rule: failed requests to auth and password-reset endpoints,
    ``POST /oauth/token`` and the OAuth login form (``POST /oauth/authorize``).

    Once the budget is spent every request to these paths gets ``429``, a correct password
    included: answering 200 there would turn the limit into a password oracle. Another app
    names its own credential endpoints: ``auth_rule("5/15m", paths=["/login", "/token"])``.
    """
    return Rule(
        "auth",
        rate,
        paths=paths,
        when=_credential_request,
        key=key,
        count="failures",
        message=AUTH_MESSAGE,
        on_store_failure=on_store_failure,
    )
