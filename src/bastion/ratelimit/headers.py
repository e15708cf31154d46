"""Response header values for rate limits, one small function per field.

``RateLimit-Policy`` and ``RateLimit`` follow draft-ietf-httpapi-ratelimit-headers-10:
each is a Structured Field List (RFC 9651 §3.1) whose Items are the policy name as an sf-string
with Integer parameters — ``q`` (quota) and ``w`` (window, seconds) for the policy (§3.1),
``r`` (remaining) and ``t`` (seconds until more quota, a delay-seconds value) for the
current state (§4.1). No ``pk`` partition key: the key is the client address, and §9 asks
servers not to echo personal data. ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` are the
de-facto fields older clients read; ``Retry-After`` is RFC 9110 §10.2.3 delay-seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

from bastion.ratelimit.policy import Rate

__all__ = [
    "POLICY_NAME",
    "ChargeHeaders",
    "RuleHeaders",
    "limit_item",
    "limit_item_format",
    "policy_item",
    "rate_headers",
    "retry_after",
    "seconds",
]

#: Policy names are emitted inside an sf-string unescaped, so they are restricted to
#: characters that need no escaping (and read well in logs and Redis keys).
POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def seconds(delay: float) -> int:
    """A non-negative delay rounded *up* to whole seconds: a client told to wait ``t`` and
    coming back exactly then must not be early (the window is tracked to the microsecond)."""
    return math.ceil(delay) if delay > 0 else 0


def policy_item(name: str, quota: int, window: int) -> bytes:
    """One ``RateLimit-Policy`` member: ``"api";q=100;w=900``."""
    return b'"%s";q=%d;w=%d' % (name.encode("ascii"), quota, window)


def limit_item(name: str, remaining: int, reset: int) -> bytes:
    """One ``RateLimit`` member: ``"api";r=73;t=412``."""
    return limit_item_format(name) % (remaining, reset)


def limit_item_format(name: str) -> bytes:
    """:func:`limit_item` as a bytes template (``b'"api";r=%d;t=%d'``), for a rule to keep:
    per request it is then one ``%`` of two integers."""
    return b'"%s";r=%%d;t=%%d' % name.encode("ascii").replace(b"%", b"%%")


def retry_after(delay: float) -> bytes:
    """``Retry-After`` in delay-seconds, at least 1 (a ``0`` invites an immediate retry)."""
    return b"%d" % max(1, seconds(delay))


class RuleHeaders(Protocol):
    """What :func:`rate_headers` reads of a rule (:class:`~bastion.ratelimit.rules.Rule`,
    which builds these from this module's helpers: so this module cannot import it)."""

    @property
    def rate(self) -> Rate: ...
    @property
    def policy(self) -> bytes: ...
    @property
    def item_format(self) -> bytes: ...
    @property
    def policy_header(self) -> tuple[bytes, bytes]: ...
    @property
    def limit_header(self) -> tuple[bytes, bytes]: ...


class ChargeHeaders(Protocol):
    """What :func:`rate_headers` reads of a charge (:class:`~bastion.ratelimit.rules.Charge`)."""

    @property
    def rule(self) -> RuleHeaders: ...
    @property
    def used(self) -> int: ...
    @property
    def reset_after(self) -> float: ...


def rate_headers(charges: Sequence[ChargeHeaders]) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy``, ``RateLimit`` and the ``X-RateLimit-*`` pair for *charges*.

    Each charge's rule gives the policy name and quota. Always four headers, in this order.
    """
    if len(charges) == 1:  # the usual case, written out: the same four headers, no joins
        charge = charges[0]
        rule, used, reset = charge.rule, charge.used, charge.reset_after
        limit = rule.rate.limit
        remaining = limit - used if used < limit else 0
        # seconds(reset), inline: a delay rounded up, never negative
        wait = (math.ceil(reset) if reset > 0 else 0) if used > 0 else 0
        return [
            rule.policy_header,
            (b"ratelimit", rule.item_format % (remaining, wait)),
            rule.limit_header,
            (b"x-ratelimit-remaining", b"%d" % remaining),
        ]
    policies: list[bytes] = []
    items: list[bytes] = []
    states: list[tuple[int, int]] = []
    for charge in charges:
        rule, used = charge.rule, charge.used
        limit = rule.rate.limit
        remaining = limit - used if used < limit else 0
        policies.append(rule.policy)
        items.append(rule.item_format % (remaining, seconds(charge.reset_after) if used > 0 else 0))
        states.append((remaining, limit))
    remaining, limit = min(states)  # the most restrictive: fewest left, then smallest quota
    return [
        (b"ratelimit-policy", b", ".join(policies)),
        (b"ratelimit", b", ".join(items)),
        (b"x-ratelimit-limit", b"%d" % limit),
        (b"x-ratelimit-remaining", b"%d" % remaining),
    ]
