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
from typing import Literal

from bastion.asgi import Scope
from bastion.errors import ConfigError
from bastion.ratelimit.headers import POLICY_NAME, policy_item
from bastion.ratelimit.keys import canonical_path, client_key
from bastion.ratelimit.policy import Rate

__all__ = [
    "API_PATHS",
    "AUTH_MESSAGE",
    "AUTH_PATHS",
    "Count",
    "FailureMode",
    "Rule",
    "api_rule",
    "auth_rule",
]

Count = Literal["all", "failures"]
FailureMode = Literal["fail-open", "fail-closed"]

API_PATHS = ("/api/",)
AUTH_PATHS = ("/api/v1/auth/", "/api/v1/password-reset")
AUTH_MESSAGE = "Too many authentication attempts"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit.

    * ``name`` — the policy name in ``RateLimit-Policy`` and the key namespace in the store
      (two rules never share counters: pitfall #11, double counting).
    * ``rate`` — a :class:`Rate` or its text (``"100/15m"``).
    * ``paths`` — path prefixes, matched segment by segment against the canonical path
      (case-insensitive, dot segments and doubled slashes resolved): ``/api/`` matches
      ``/api`` and ``/API//v1/x`` but not ``/apix``. Routed or not: a 404 counts (pitfall #7),
      and ``/api/v1/orders/<id>`` counts against one budget for every id (pitfall #6).
    * ``when`` — an extra predicate on the scope (both must hold).
    * ``methods`` — restrict to these methods (default: all; ``HEAD`` and ``GET`` always share
      a budget because the key never includes the method).
    * ``key`` — whom to charge: returns a string, or ``None`` to skip the rule for this
      request (e.g. a per-user rule on an anonymous request). Default: the client address.
    * ``count`` — ``"all"``, or ``"failures"``: every request is charged *before* it runs and
      the charge is given back when the response status is below 400. Charging first is what
      stops a parallel burst (pitfall #10); giving back keeps successful logins free.
    * ``slowdown_after`` / ``slowdown_delay_ms`` / ``slowdown_max_delay_ms`` — progressive
      delay: the n-th request over ``slowdown_after`` in the window waits n × delay.
    * ``message`` — the public ``429`` message.
    * ``on_store_failure`` — ``"fail-open"`` (serve without this limit, log an error) or
      ``"fail-closed"`` (answer ``503``) while the store is unreachable.
    """

    name: str
    rate: Rate  # text such as "100/15m" is accepted too and parsed here
    paths: Iterable[str] = ("/",)
    when: Callable[[Scope], bool] | None = None
    methods: Collection[str] | None = None
    key: Callable[[Scope], str | None] = client_key
    count: Count = "all"
    slowdown_after: int | None = None
    slowdown_delay_ms: int = 0
    slowdown_max_delay_ms: int | None = None
    message: str = "Too many requests"
    on_store_failure: FailureMode = "fail-open"
    # Precomputed at construction:
    prefixes: tuple[str, ...] = field(init=False, repr=False)
    policy: bytes = field(init=False, repr=False)
    store_prefix: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        def fix(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.name, str) or not POLICY_NAME.match(self.name):
            raise ConfigError(
                "name", f"{self.name!r}: 1-64 letters, digits, '.', '_' or '-', starting alnum"
            )
        rate: object = self.rate
        if isinstance(rate, str):
            try:
                rate = Rate.parse(rate)
            except ValueError as exc:
                raise ConfigError(f"rule {self.name}: rate", str(exc)) from None
        if not isinstance(rate, Rate):
            raise ConfigError(f"rule {self.name}: rate", "must be a Rate or text like 100/15m")
        fix("rate", rate)

        paths = (self.paths,) if isinstance(self.paths, str) else tuple(self.paths)
        if not paths or not all(isinstance(p, str) and p.startswith("/") for p in paths):
            raise ConfigError(f"rule {self.name}: paths", "must be prefixes starting with '/'")
        fix("paths", paths)
        fix("prefixes", tuple(sorted({canonical_path(p) for p in paths})))

        if self.methods is not None:
            if isinstance(self.methods, str):
                raise ConfigError(f"rule {self.name}: methods", "must be a collection of names")
            methods = frozenset(m.upper() for m in self.methods)
            unknown = methods - _METHODS
            if not methods or unknown:
                raise ConfigError(f"rule {self.name}: methods", f"unknown {sorted(unknown)}")
            fix("methods", methods)
        if self.when is not None and not callable(self.when):
            raise ConfigError(f"rule {self.name}: when", "must be callable")
        if not callable(self.key):
            raise ConfigError(f"rule {self.name}: key", "must be callable")
        if self.count not in ("all", "failures"):
            raise ConfigError(f"rule {self.name}: count", "must be 'all' or 'failures'")
        if self.on_store_failure not in ("fail-open", "fail-closed"):
            raise ConfigError(
                f"rule {self.name}: on_store_failure", "must be 'fail-open' or 'fail-closed'"
            )
        for option in ("slowdown_after", "slowdown_max_delay_ms"):
            value = getattr(self, option)
            if value is not None and (not _is_int(value) or value < 0):
                raise ConfigError(f"rule {self.name}: {option}", "must be a non-negative integer")
        if not _is_int(self.slowdown_delay_ms) or not 0 <= self.slowdown_delay_ms <= 60_000:
            raise ConfigError(f"rule {self.name}: slowdown_delay_ms", "must be 0..60000")
        if not isinstance(self.message, str) or not self.message:
            raise ConfigError(f"rule {self.name}: message", "must be a non-empty string")
        fix("policy", policy_item(self.name, rate.limit, rate.window))
        fix("store_prefix", f"{self.name}:")

    def matches(self, scope: Scope, path: str) -> bool:
        """Whether this rule applies to the request (*path* is :func:`canonical_path`'s)."""
        for prefix in self.prefixes:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                break
        else:
            return False
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


def _rate(name: str, rate: Rate | str) -> Rate:
    if isinstance(rate, Rate):
        return rate
    try:
        return Rate.parse(rate)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"rule {name}: rate", str(exc)) from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        _rate("api", rate),
        paths=API_PATHS,
        key=key,
        slowdown_after=slowdown_after,
        slowdown_delay_ms=slowdown_delay_ms,
        on_store_failure=on_store_failure,
    )


def auth_rule(
    rate: Rate | str = "5/15m",
    *,
    on_store_failure: FailureMode = "fail-closed",
    key: Callable[[Scope], str | None] = client_key,
) -> Rule:
    """The contract's strict rule: failed requests to auth and password-reset endpoints.

    Once the budget is spent every request to these paths gets ``429``, a correct password
    included: answering 200 there would turn the limit into a password oracle.
    """
    return Rule(
        "auth",
        _rate("auth", rate),
        paths=AUTH_PATHS,
        key=key,
        count="failures",
        message=AUTH_MESSAGE,
        on_store_failure=on_store_failure,
    )
