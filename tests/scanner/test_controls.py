"""Every non-TLS control: one scan where it fails and one where it passes.

Each case names the app (and scan options) that must make the control fail, and the one that
must make it pass; by default the deliberately insecure fixture and the secure one. A test
also makes sure no control is missing from the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest

from bastion.scanner.registry import load_default_checks
from tests.scanner.apps import (
    App,
    Response,
    custom_app,
    insecure_app,
    mint,
    run_checks,
    secure_app,
)
from tests.scanner.depth_apps import FRONT_END, orders_api, token_a, token_b
from tests.scanner.riskapps import plain_api

# The insecure API's token: HS256 with a guessable secret and no exp (weak-secret, lifetime).
WEAK_TOKEN = jwt.encode(
    {"sub": "user-1", "role": "user", "iat": int(time.time())},
    "secret" * 6,  # long enough that PyJWT does not warn; the scanner's list has "secret"
    algorithm="HS256",
)


def _weak_secret_token() -> str:
    """HS256 signed with "secret" (built by hand: PyJWT warns about so short a key)."""
    import base64
    import hashlib
    import hmac
    import json

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    def segment(obj: dict[str, Any]) -> str:
        return b64url(json.dumps(obj, separators=(",", ":")).encode())

    header = segment({"alg": "HS256", "typ": "JWT"})
    payload = segment({"sub": "user-1", "iat": int(time.time())})
    sig = hmac.new(b"secret", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(sig)}"


@dataclass
class Case:
    fail_app: Callable[[], App] = insecure_app
    pass_app: Callable[[], App] = secure_app
    fail_opts: dict[str, Any] = field(default_factory=dict)
    pass_opts: dict[str, Any] = field(default_factory=dict)
    fail_status: str = "fail"


ACTIVE = {"active": True}


def token(value: Callable[[], str]) -> dict[str, Any]:
    return {"token": value()}


def orders(**planted: Any) -> Callable[[], App]:
    """The depth fixture (tests/scanner/depth_apps.py) with the given mistakes planted."""
    return lambda: orders_api(**planted).app


TWO_USERS = {"token": token_a(), "token_b": token_b()}
CLEAN = orders()


def v2_app(deprecated: bool) -> App:
    headers = [("Deprecation", "@1767225600"), ("Sunset", "Sat, 01 Jan 2028 00:00:00 GMT")]
    return custom_app(
        {
            "/api/v2/orders": Response(200, {"data": []}),
            "/api/v1/orders": Response(200, {"items": []}, headers if deprecated else []),
        }
    )


CASES: dict[str, Case] = {
    # https
    "https.tls": Case(lambda: plain_api(), fail_opts={"target": "http://api.test/"}),
    "https.redirect": Case(),
    "https.redirect-permanent": Case(lambda: secure_app(redirect=(302, None))),
    "https.redirect-same-host": Case(lambda: secure_app(redirect=(301, "elsewhere.test"))),
    "https.http-body-refused": Case(),
    "https.hsts": Case(lambda: secure_app(hsts=None)),
    "https.hsts-max-age": Case(),
    "https.hsts-subdomains": Case(),
    "https.hsts-preload": Case(lambda: secure_app(hsts="max-age=300; preload")),
    "https.hsts-valid": Case(),
    "https.hsts-over-http": Case(fail_status="warn"),
    # headers
    "headers.xcto": Case(),
    "headers.cache-control": Case(),
    "headers.csp": Case(),
    "headers.csp-strict": Case(
        lambda: secure_app(
            drop_headers=("content-security-policy",),
            extra_headers=[("Content-Security-Policy", "default-src 'self' 'unsafe-inline'")],
        )
    ),
    "headers.csp-report-only": Case(),
    "headers.frame-options": Case(),
    "headers.referrer-policy": Case(),
    "headers.corp": Case(),
    "headers.x-xss-protection": Case(),
    "headers.content-type": Case(lambda: custom_app({"/": Response(200, b'{"a": 1}')})),
    "headers.on-errors": Case(lambda: secure_app(bare_errors=True)),
    "headers.request-id": Case(),
    # cookies
    "cookies.secure": Case(),
    "cookies.httponly": Case(),
    "cookies.samesite": Case(),
    "cookies.scope": Case(),
    "cookies.prefix": Case(lambda: secure_app(cookies=("__Host-sid=1; Path=/api; Secure",))),
    "cookies.lifetime": Case(fail_status="warn"),
    # cors
    "cors.origin-reflection-credentials": Case(),
    "cors.origin-reflection": Case(),
    "cors.null-origin": Case(),
    "cors.lookalike-origin": Case(),
    "cors.insecure-origin": Case(),
    "cors.wildcard": Case(
        lambda: secure_app(extra_headers=[("Access-Control-Allow-Origin", "*")]),
        fail_status="warn",
    ),
    "cors.wildcard-credentials": Case(
        lambda: secure_app(
            extra_headers=[
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Credentials", "true"),
            ]
        )
    ),
    "cors.preflight-methods": Case(),
    "cors.preflight-headers": Case(),
    "cors.vary-origin": Case(),
    "cors.legacy-policy-files": Case(),
    # methods
    "methods.trace": Case(),
    "methods.track": Case(),
    "methods.unexpected": Case(),
    "methods.options": Case(),
    "methods.405-allow": Case(lambda: secure_app(allow_on_405=False)),
    "methods.override": Case(),
    # disclosure
    "disclosure.stack-trace": Case(),
    "disclosure.debug-mode": Case(),
    "disclosure.framework-errors": Case(),
    "disclosure.internal-details": Case(),
    "disclosure.server-version": Case(),
    "disclosure.powered-by": Case(),
    "disclosure.backend-headers": Case(),
    "disclosure.debug-headers": Case(),
    # exposure
    "exposure.git": Case(),
    "exposure.env": Case(),
    "exposure.vcs-artifacts": Case(),
    "exposure.backups": Case(),
    "exposure.config-files": Case(),
    "exposure.openapi": Case(),
    "exposure.docs-ui": Case(),
    "exposure.graphql": Case(),
    "exposure.actuator": Case(),
    "exposure.server-status": Case(),
    "exposure.metrics": Case(),
    "exposure.debug-endpoints": Case(),
    "exposure.phpinfo": Case(),
    "exposure.dir-listing": Case(),
    # auth
    "auth.www-authenticate": Case(),
    "auth.token-in-url": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    "auth.requires-token": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    "auth.invalid-token": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    "auth.user-enumeration": Case(fail_opts=ACTIVE, pass_opts=ACTIVE),
    # jwt
    "jwt.jwks-private": Case(),
    "jwt.alg-none": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    "jwt.hmac-confusion": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    "jwt.signature-stripped": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    "jwt.tampered-payload": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    "jwt.embedded-key": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    "jwt.expired": Case(
        fail_opts=token(lambda: mint(lifetime=-60)), pass_opts=token(lambda: mint(lifetime=-60))
    ),
    "jwt.weak-secret": Case(fail_opts=token(_weak_secret_token), pass_opts=token(mint)),
    "jwt.lifetime": Case(fail_opts=token(lambda: WEAK_TOKEN), pass_opts=token(mint)),
    # ratelimit
    "ratelimit.headers": Case(),
    "ratelimit.login-burst": Case(fail_opts=ACTIVE, pass_opts=ACTIVE),
    "ratelimit.retry-after": Case(
        lambda: secure_app(retry_after=False), fail_opts=ACTIVE, pass_opts=ACTIVE
    ),
    "ratelimit.forwarded-spoof": Case(
        lambda: secure_app(key_on_forwarded_for=True), fail_opts=ACTIVE, pass_opts=ACTIVE
    ),
    "ratelimit.api-burst": Case(fail_opts=ACTIVE, pass_opts=ACTIVE),
    # per operation and two identities (checks/operations.py, checks/authorization.py)
    "auth.operations-protected": Case(orders(legacy_v0=True), CLEAN),
    "auth.operations-challenge": Case(orders(bare_401=True), CLEAN),
    "disclosure.operation-errors": Case(orders(trace_on_bad_id=True), CLEAN, TWO_USERS, TWO_USERS),
    "headers.operation-errors": Case(orders(plain_errors=True), CLEAN),
    "methods.operation-405": Case(orders(no_allow=True), CLEAN, ACTIVE, ACTIVE),
    "ratelimit.operation-headers": Case(
        orders(limit_headers=False), CLEAN, TWO_USERS, TWO_USERS, fail_status="warn"
    ),
    "auth.bola": Case(orders(bola=True), CLEAN, TWO_USERS, TWO_USERS),
    "auth.bfla": Case(orders(bola=True), CLEAN, {**TWO_USERS, **ACTIVE}, {**TWO_USERS, **ACTIVE}),
    "cors.trusted-origin-variants": Case(
        orders(cors="suffix"), CLEAN, {"origins": (FRONT_END,)}, {"origins": (FRONT_END,)}
    ),
    # versioning
    "versioning.versioned": Case(
        lambda: custom_app({"/": Response(200, {"status": "ok"})}), fail_status="warn"
    ),
    "versioning.prerelease-gone": Case(),
    "versioning.previous-deprecated": Case(
        lambda: v2_app(deprecated=False),
        lambda: v2_app(deprecated=True),
        fail_opts={"target": "https://api.test/api/v2/orders"},
        pass_opts={"target": "https://api.test/api/v2/orders"},
        fail_status="warn",
    ),
}


def test_every_control_has_a_case() -> None:
    ids = {c.id for c in load_default_checks() if c.category != "tls"}
    assert ids == set(CASES), f"missing: {ids - set(CASES)}, unknown: {set(CASES) - ids}"
    assert len(ids) >= 60


@pytest.mark.parametrize("check_id", sorted(CASES))
async def test_control_fails_on_the_insecure_app(check_id: str) -> None:
    case = CASES[check_id]
    findings = await run_checks(case.fail_app(), [check_id], **case.fail_opts)
    finding = findings[check_id]
    assert finding.status == case.fail_status, (finding.reason, finding.evidence)
    assert finding.reason, "a failing control must say why"
    assert finding.evidence, "a failing control must show what it judged"


@pytest.mark.parametrize("check_id", sorted(CASES))
async def test_control_passes_on_the_secure_app(check_id: str) -> None:
    case = CASES[check_id]
    findings = await run_checks(case.pass_app(), [check_id], **case.pass_opts)
    finding = findings[check_id]
    assert finding.status == "pass", (finding.reason, finding.evidence)


async def test_a_catch_all_spa_is_not_an_exposure() -> None:
    """An app answering 200 + index.html to every path (an SPA fallback) must not be reported
    as exposing .git, .env, backups or docs: exposure is judged by content."""
    index = Response(
        200, "<!doctype html><html><div id=app>Loading</div></html>", content_type="text/html"
    )
    app = custom_app({}, default=index)
    exposure = [c.id for c in load_default_checks() if c.category == "exposure"]
    findings = await run_checks(app, exposure)
    assert {f.status for f in findings.values()} == {"pass"}, {
        i: f.reason for i, f in findings.items() if f.status != "pass"
    }


async def test_an_api_whose_root_is_404_is_still_graded() -> None:
    """Unlike the Observatory, a 404 at the target is judged (its headers are the API's)."""
    findings = await run_checks(
        secure_app(), ["headers.xcto", "headers.csp"], target="https://api.test/nothing-here"
    )
    assert {f.status for f in findings.values()} == {"pass"}
    assert (
        "-> 404" in findings["headers.xcto"].evidence or "404" in findings["headers.xcto"].evidence
    )
