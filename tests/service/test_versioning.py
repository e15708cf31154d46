"""Version selection (URL and ``API-Version``) and the lifecycle headers, unit level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bastion.config import load_settings
from bastion.errors import ConfigError, HTTPError
from bastion.service.versioning import (
    VersionHeaders,
    lifecycle_headers,
    parse_version,
    requested_version,
    version_of,
)
from tests.middleware.rawasgi import (
    Receive,
    Scope,
    Send,
    call,
    make_scope,
    never_receive,
    never_send,
    recorder,
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], 1),  # no header: the default
        ([b"1"], 1),
        ([b"2"], 2),
        ([b" 2 "], 2),  # optional whitespace around a field value (RFC 9110 §5.5)
        ([b"3"], None),
        ([b"0"], None),
        ([b""], None),
        ([b"v2"], None),
        ([b"2.0"], None),
        ([b"02"], None),
        ([b"+2"], None),
        ([b"1, 2"], None),
        ([b"\xd9\xa2"], None),  # Arabic-Indic digit two: int() would accept it
        ([b"2", b"2"], None),  # repeated: ambiguous between hops, refused even if equal
        ([b"1", b"2"], None),
    ],
)
def test_parse_version(values: list[bytes], expected: int | None) -> None:
    assert parse_version(values) == expected


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/api/v1/orders", [], 1),
        ("/api/v1/orders", [("API-Version", "2")], 1),  # the URL wins; the header is ignored
        ("/api/v2/orders/abc", [("API-Version", "1")], 2),
        ("/api/v1/auth/login", [], 1),
        ("/api/orders", [], 1),
        ("/api/orders", [("api-version", "2")], 2),
        ("/api/orders/abc", [("API-VERSION", "2")], 2),
        ("/api/orders", [("API-Version", "9")], None),
        ("/api/ordersx", [("API-Version", "2")], None),
        ("/healthz", [("API-Version", "2")], None),
        ("/api/v3/orders", [], None),
    ],
)
def test_version_of(path: str, headers: list[tuple[str, str]], expected: int | None) -> None:
    assert version_of(make_scope("GET", path, headers=headers)) == expected


def test_requested_version_gives_400_for_an_unknown_version() -> None:
    with pytest.raises(HTTPError) as info:
        requested_version(make_scope(headers=[("API-Version", "3")]), (1, 2))
    assert (info.value.status, info.value.public_message) == (400, "Unsupported API version")


def test_requested_version_gives_405_when_the_version_lacks_the_operation() -> None:
    """POST with API-Version: 2 gets what POST /api/v2/orders gets: 405, Allow: GET, HEAD."""
    with pytest.raises(HTTPError) as info:
        requested_version(make_scope(headers=[("API-Version", "2")]), (1,))
    assert info.value.status == 405
    assert info.value.headers == [(b"allow", b"GET, HEAD")]


def test_requested_version_defaults_to_1() -> None:
    assert requested_version(make_scope(), (1,)) == 1
    assert requested_version(make_scope(headers=[("API-Version", "2")]), (1, 2)) == 2


# --- lifecycle headers -------------------------------------------------------------------


def test_lifecycle_headers_use_the_rfc_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_API_V1_DEPRECATION", "2026-06-30T23:59:59+02:00")
    monkeypatch.setenv("BASTION_API_V1_SUNSET", "2027-01-01T00:00:00Z")
    monkeypatch.setenv("BASTION_API_V1_DEPRECATION_LINK", "https://api.example.com/deprecation")
    headers = lifecycle_headers(load_settings())
    # RFC 9745 §2.1: Date structured field (seconds since the epoch, UTC);
    # RFC 8594 §3: IMF-fixdate in GMT.
    assert headers == {
        1: [
            (b"deprecation", b"@1782856799"),
            (b"sunset", b"Fri, 01 Jan 2027 00:00:00 GMT"),
            (
                b"link",
                b'<https://api.example.com/deprecation>; rel="deprecation"; type="text/html"',
            ),
        ]
    }
    assert datetime.fromtimestamp(1782856799, UTC) == datetime(
        2026, 6, 30, 23, 59, 59, tzinfo=timezone(timedelta(hours=2))
    )


def test_no_lifecycle_headers_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEPRECATION", "SUNSET", "DEPRECATION_LINK"):
        for version in (1, 2):
            monkeypatch.delenv(f"BASTION_API_V{version}_{name}", raising=False)
    assert lifecycle_headers(load_settings()) == {}


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("BASTION_API_V2_SUNSET", "2027-01-01", "timezone"),  # naive: ambiguous, refused
        ("BASTION_API_V1_DEPRECATION", "soon", "BASTION_API_V1_DEPRECATION"),
        ("BASTION_API_V1_DEPRECATION_LINK", "https://x.example/a>; rel=evil", "pattern"),
        ("BASTION_API_V1_DEPRECATION_LINK", "https://x.example/\r\nSet-Cookie: a=b", "pattern"),
        ("BASTION_API_V2_DEPRECATION_LINK", "javascript:alert(1)", "pattern"),
    ],
)
def test_bad_lifecycle_settings_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert env in str(info.value)
    assert fragment in str(info.value)


def test_sunset_before_deprecation_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_API_V2_DEPRECATION", "2027-01-01T00:00:00Z")
    monkeypatch.setenv("BASTION_API_V2_SUNSET", "2026-01-01T00:00:00Z")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "BASTION_API_V2_SUNSET" in str(info.value)
    assert "earlier than api_v2_deprecation" in str(info.value)


# --- the middleware ------------------------------------------------------------------------

V1_HEADERS = [(b"deprecation", b"@1782856799"), (b"sunset", b"Fri, 01 Jan 2027 00:00:00 GMT")]


@pytest.mark.parametrize(
    ("path", "headers", "deprecated", "vary"),
    [
        ("/api/v1/orders", [], True, None),
        ("/api/v1/orders/x", [("API-Version", "2")], True, None),
        ("/api/v1/auth/login", [], True, None),  # the whole version is deprecated
        ("/api/v2/orders", [], False, None),
        ("/api/orders", [], True, "API-Version"),
        ("/api/orders", [("API-Version", "1")], True, "API-Version"),
        ("/api/orders/x", [("API-Version", "2")], False, "API-Version"),
        ("/api/orders", [("API-Version", "7")], False, "API-Version"),
        ("/healthz", [], False, None),
    ],
)
async def test_version_headers_middleware(
    path: str, headers: list[tuple[str, str]], deprecated: bool, vary: str | None
) -> None:
    app, _ = recorder(404)  # errors get the headers too
    result = await call(
        VersionHeaders(app, lifecycle={1: V1_HEADERS}), "GET", path, headers=headers
    )
    assert result.status == 404
    assert result.header("deprecation") == ("@1782856799" if deprecated else None)
    assert result.header("sunset") == ("Fri, 01 Jan 2027 00:00:00 GMT" if deprecated else None)
    assert result.header("vary") == vary


async def test_vary_is_merged_into_an_existing_vary() -> None:
    app, _ = recorder(200, headers=[(b"vary", b"Accept-Encoding")])
    result = await call(VersionHeaders(app, lifecycle={}), "GET", "/api/orders")
    assert result.header_list("vary") == ["Accept-Encoding, API-Version"]


async def test_non_http_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    versioned = VersionHeaders(app, lifecycle={1: V1_HEADERS})
    await versioned({"type": "lifespan"}, never_receive, never_send)
    assert seen == ["lifespan"]


@pytest.mark.parametrize(
    "lifecycle",
    [
        {3: [(b"deprecation", b"@1")]},
        {1: [(b"deprecation", b"@1\r\nSet-Cookie: a=b")]},
        {1: [(b"Deprecation", b"@1")]},
    ],
)
def test_bad_middleware_options_fail_at_construction(
    lifecycle: dict[int, list[tuple[bytes, bytes]]],
) -> None:
    app, _ = recorder()
    with pytest.raises(ConfigError):
        VersionHeaders(app, lifecycle=lifecycle)
