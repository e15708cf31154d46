"""PathCanonicalMiddleware against the path-variant attacks of research pitfall #5."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.middleware.paths import (
    _ALREADY_CANONICAL,
    InvalidPath,
    PathCanonicalMiddleware,
    canonicalise,
)
from tests.middleware.rawasgi import call, recorder

LOGIN = "/api/v1/auth/login"


def login_app() -> Starlette:
    """Starlette with its default redirect_slashes=True: the 307 the contract forbids."""

    async def login(request: Request) -> JSONResponse:
        return JSONResponse({"path": request.url.path, "raw": request.scope["raw_path"].decode()})

    return Starlette(routes=[Route(LOGIN, login, methods=["POST"])])


# --- the attacks, through a real Starlette router -------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"/api%2Fv1/auth/login",  # uvicorn decodes this to the login path (EXP-2)
        b"/api%2fv1/auth/login",
        b"/api/v1/auth%5Clogin",
        b"/api/v1/auth%5clogin",
        b"/api\\v1/auth/login",
        b"/api//v1/auth/login",
        b"//api/v1/auth/login",
        b"/api/v1/./auth/login",
        b"/api/v1/auth/../auth/login",
        b"/api/v1/auth/%2E%2E/auth/login",
        b"/api/v1/auth/%2e/login",
        b"/api/v1/auth/.%2E/auth/login",
        b"/api/v1/auth/..;/auth/login",  # Tomcat-style
        b"/api/v1/auth/login/.",
        b"/api/v1/auth/login/..",
        b"/api/v1/auth/login//",
        b"/api/v1/auth/login%00",
        b"/api/v1/auth/login\x00",
        b"/api/v1/auth/login%0A",
        b"/api/v1/auth/login%7F",
        b"/api/v1/auth/log in",
        b"/api/v1/auth/login\xc3\xa9",  # raw non-ASCII
        b"/api/v1/auth/%C0%AEgin",  # overlong UTF-8
        b"/api/v1/auth/login%",
        b"/api/v1/auth/login%2",
        b"/api/v1/auth/login%zz",
        b"*",
        b"api/v1/auth/login",
    ],
)
async def test_ambiguous_spellings_refused_before_routing(raw: bytes) -> None:
    result = await call(PathCanonicalMiddleware(login_app()), "POST", raw)
    assert result.status == 400
    assert result.json() == {"error": "Invalid path", "requestId": ""}


@pytest.mark.parametrize(
    "raw",
    [
        b"/api/v1/auth/%6Cogin",  # unreserved escape: the same resource, canonicalised
        b"/api/v1/auth/%6cogin",
        b"/%61pi/v1/auth/login",
        b"/api/v1/auth/login/",  # trailing slash: same resource, not a 307
        b"/api/v1/auth/lo%67%69n/",
    ],
)
async def test_equivalent_spellings_reach_the_route_canonical(raw: bytes) -> None:
    result = await call(PathCanonicalMiddleware(login_app()), "POST", raw)
    assert result.status == 200
    assert result.json() == {"path": LOGIN, "raw": LOGIN}


async def test_without_the_layer_starlette_would_redirect_the_post() -> None:
    """The behaviour this layer exists to prevent (a 307 re-sends the credentials)."""
    result = await call(login_app(), "POST", b"/api/v1/auth/login/")
    assert result.status == 307


async def test_case_is_kept() -> None:
    inner, seen = recorder()
    await call(PathCanonicalMiddleware(inner), "GET", b"/API/v1/Auth/%4Cogin")
    assert seen[0]["path"] == "/API/v1/Auth/Login"
    assert seen[0]["raw_path"] == b"/API/v1/Auth/Login"


async def test_reserved_and_other_escapes_kept_with_upper_case_hex() -> None:
    inner, seen = recorder()
    raw = b"/files/a%3fb%20c%25d%e2%82%ac"
    await call(PathCanonicalMiddleware(inner), "GET", raw)
    assert seen[0]["raw_path"] == b"/files/a%3Fb%20c%25d%E2%82%AC"
    assert seen[0]["path"] == "/files/a?b c%d\u20ac"


async def test_canonical_path_untouched() -> None:
    inner, seen = recorder()
    scope_path = "/api/v1/orders/550e8400-e29b-41d4-a716-446655440000"
    result = await call(PathCanonicalMiddleware(inner), "GET", scope_path.encode())
    assert result.status == 200
    assert seen[0]["path"] == scope_path and seen[0]["raw_path"] == scope_path.encode()


async def test_root_and_query_in_raw_path() -> None:
    inner, seen = recorder()
    await call(PathCanonicalMiddleware(inner), "GET", b"/")
    await call(PathCanonicalMiddleware(inner), "GET", b"/a/?x=%2F", path="/a/")
    assert seen[0]["path"] == "/"
    assert seen[1]["path"] == "/a" and seen[1]["raw_path"] == b"/a"


async def test_missing_raw_path_falls_back_to_path() -> None:
    inner, seen = recorder()
    await call(PathCanonicalMiddleware(inner), "GET", b"", path="/a b/")
    assert seen[0]["path"] == "/a b" and seen[0]["raw_path"] == b"/a%20b"
    result = await call(PathCanonicalMiddleware(inner), "GET", b"", path="/a//b")
    assert result.status == 400


def test_canonicalise_unit() -> None:
    assert canonicalise(b"/%7Euser/%41") == (b"/~user/A", "/~user/A")
    assert canonicalise(b"/") == (b"/", "/")
    assert canonicalise(b"/a/...") == (b"/a/...", "/a/...")  # not a dot segment
    with pytest.raises(InvalidPath):
        canonicalise(b"/a/%2e%2E")


PIECES = ["/", "a", "B", ".", "..", "%2F", "%2e", "%6C", "%41", "%20", "%25", "%", ";", "~", "\\"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12))
def test_property_canonical_form_is_stable_and_unambiguous(pieces: list[str]) -> None:
    """Whatever is accepted is a fixed point, and its decoded form has no ambiguous parts."""
    raw = "".join(pieces).encode()
    if _ALREADY_CANONICAL(raw):
        assert canonicalise(raw) == (raw, raw.decode())  # the fast path agrees
    try:
        encoded, decoded = canonicalise(raw)
    except InvalidPath:
        return
    assert canonicalise(encoded) == (encoded, decoded)
    assert "//" not in decoded and "\\" not in decoded
    assert decoded == "/" or not decoded.endswith("/")
    segments = encoded.split(b"/")
    assert not any(s.split(b";")[0] in (b".", b"..") for s in segments)
