"""Rules: validation at construction, segment-aligned case-insensitive matching, delays."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.ratelimit.keys import canonical_path
from bastion.ratelimit.policy import Rate
from bastion.ratelimit.rules import AUTH_MESSAGE, Rule, api_rule, auth_rule


def matches(rule: Rule, path: str, method: str = "GET", **scope: object) -> bool:
    return rule.matches(
        {"type": "http", "method": method, "path": path, **scope}, canonical_path(path)
    )


def test_contract_rules() -> None:
    api, auth = api_rule(), auth_rule()
    assert (api.name, api.rate, api.count, api.slowdown_after, api.slowdown_delay_ms) == (
        "api",
        Rate(100, 900),
        "all",
        50,
        200,
    )
    assert api.on_store_failure == "fail-open"
    assert (auth.name, auth.rate, auth.count, auth.message) == (
        "auth",
        Rate(5, 900),
        "failures",
        AUTH_MESSAGE,
    )
    assert auth.on_store_failure == "fail-closed"
    assert api.policy == b'"api";q=100;w=900'
    assert auth.policy == b'"auth";q=5;w=900'


@pytest.mark.parametrize(
    ("path", "api", "auth"),
    [
        ("/api/v1/auth/login", True, True),
        ("/API/v1/AUTH/login", True, True),
        ("/api/v1/auth", True, True),
        ("/api/v1/password-reset", True, True),
        ("/api/v1/password-reset/confirm", True, True),
        ("/api/v1/password-resetx", True, False),  # segment-aligned: not a prefix trick
        ("/api/v1/authx/login", True, False),
        ("/api/v1/orders/3f1c", True, False),
        ("/api/does-not-exist", True, False),  # unrouted paths count (pitfall #7)
        ("/api", True, False),
        ("/apix", False, False),
        ("/healthz", False, False),
        ("/", False, False),
    ],
)
def test_matching(path: str, api: bool, auth: bool) -> None:
    assert matches(api_rule(), path) is api
    assert matches(auth_rule(), path) is auth


def test_methods_and_predicate() -> None:
    posts = Rule("posts", "10/1m", paths="/api/", methods={"post"})
    assert matches(posts, "/api/x", "POST")
    assert not matches(posts, "/api/x", "GET")
    admin = Rule("admin", "10/1m", when=lambda scope: scope.get("user") == "admin")
    assert matches(admin, "/anything", user="admin")
    assert not matches(admin, "/anything", user="bob")


def test_root_prefix_matches_everything() -> None:
    everything = Rule("all", "10/1m")
    assert matches(everything, "/") and matches(everything, "/x/y")


def test_progressive_delay_is_cumulative() -> None:
    rule = api_rule(slowdown_after=50, slowdown_delay_ms=200)
    assert [rule.delay(n) for n in (1, 50, 51, 52, 60, 100)] == [0, 0, 0.2, 0.4, 2.0, 10.0]
    capped = Rule("c", "100/1m", slowdown_after=0, slowdown_delay_ms=100, slowdown_max_delay_ms=250)
    assert [capped.delay(n) for n in (1, 2, 3, 9)] == [0.1, 0.2, 0.25, 0.25]
    assert api_rule(slowdown_after=None).delay(99) == 0
    assert api_rule(slowdown_delay_ms=0).delay(99) == 0


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"name": 'a"b'}, "name"),
        ({"name": ""}, "name"),
        ({"rate": "100 per minute"}, "rate"),
        ({"rate": 100}, "rate"),
        ({"paths": ("api/",)}, "paths"),
        ({"paths": ()}, "paths"),
        ({"methods": "GET"}, "methods"),
        ({"methods": {"FETCH"}}, "methods"),
        ({"when": 1}, "when"),
        ({"key": "ip"}, "key"),
        ({"count": "successes"}, "count"),
        ({"on_store_failure": "ignore"}, "on_store_failure"),
        ({"slowdown_after": -1}, "slowdown_after"),
        ({"slowdown_delay_ms": 60_001}, "slowdown_delay_ms"),
        ({"slowdown_max_delay_ms": 1.5}, "slowdown_max_delay_ms"),
        ({"message": ""}, "message"),
    ],
)
def test_bad_options_raise_config_error_naming_them(kwargs: dict[str, object], option: str) -> None:
    args: dict[str, object] = {"name": "r", "rate": "10/1m", **kwargs}
    with pytest.raises(ConfigError) as caught:
        Rule(**args)  # type: ignore[arg-type]
    assert option in caught.value.name


def test_helper_rate_errors_name_the_rule() -> None:
    with pytest.raises(ConfigError, match="rule auth: rate"):
        auth_rule("five a minute")


@pytest.mark.parametrize(
    ("method", "path", "auth"),
    [
        ("POST", "/oauth/token", True),  # codes, verifiers, refresh tokens
        ("GET", "/oauth/token", True),  # a 405 there is a failed request like any other
        ("POST", "/OAuth/Token", True),
        ("POST", "/oauth/authorize", True),  # the login form: email + password
        ("POST", "/OAUTH/authorize/", True),
        ("GET", "/oauth/authorize", False),  # renders the form / redirects with a code
        ("HEAD", "/oauth/authorize", False),
        ("GET", "/OAuth/Authorize", False),
        ("GET", "/oauth/authorize/x", False),
        ("PUT", "/oauth/authorize", True),
        ("POST", "/oauth/tokenx", False),
        ("POST", "/oauth", False),
        ("GET", "/api/v1/auth/login", True),  # unchanged for the JSON endpoints
    ],
)
def test_oauth_credential_endpoints_share_the_auth_budget(
    method: str, path: str, auth: bool
) -> None:
    assert matches(auth_rule(), path, method) is auth
    assert not matches(api_rule(), path, method) or path.lower().startswith("/api/")
