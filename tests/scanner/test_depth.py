"""API depth (issue 16, part A): ground truths on fixture APIs, control by control, both ways.

Each fixture is the orders API of ``depth_apps.py`` with mistakes planted or not; the tables
name what each control must conclude. The planted mistakes are the ones the head-to-head
comparison saw the first-generation scanner miss: a prefix-mounted API, object access across
two users, a suffix/prefix-matching CORS policy, a login that enumerates a real account, an
unprotected legacy version, a traceback on a real endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.scanner.api import join_prefix
from bastion.scanner.context import ScanContext, ScanOptions
from bastion.scanner.model import Report
from bastion.scanner.registry import load_default_checks
from bastion.scanner.runner import scan
from tests.scanner.depth_apps import (
    API_KEY,
    FRONT_END,
    KNOWN_EMAIL,
    OrdersApi,
    orders_api,
    spec_document,
    token_a,
    token_b,
)

PREFIXED = "https://api.test/svc/api/v1/"


async def _scan(api: OrdersApi, target: str = PREFIXED, **options: Any) -> Report:
    checks = [c for c in load_default_checks() if c.category != "tls"]
    return await scan(
        target, ScanOptions(**options), checks=checks, transport=httpx.ASGITransport(api.app)
    )


def _statuses(report: Report) -> dict[str, str]:
    return {f.id: f.status for f in report.findings}


def _reasons(report: Report) -> dict[str, str]:
    return {f.id: f.reason for f in report.findings}


FULL: dict[str, Any] = {
    "token": token_a(),
    "token_b": token_b(),
    "active": True,
    "origins": (FRONT_END,),
    "login_email": KNOWN_EMAIL,
}

# Under /svc/api/v1: what the first-generation scanner skipped or missed there must now judge.
PREFIX_GROUND_TRUTH_CLEAN = {
    "jwt.alg-none": "pass",
    "jwt.signature-stripped": "pass",
    "auth.token-in-url": "pass",
    "auth.www-authenticate": "pass",
    "auth.requires-token": "pass",
    "ratelimit.login-burst": "pass",
    "versioning.versioned": "pass",
    "auth.user-enumeration": "pass",
    "auth.operations-protected": "pass",
    "auth.operations-challenge": "pass",
    "auth.bola": "pass",
    "auth.bfla": "pass",
    "disclosure.operation-errors": "pass",
    "headers.operation-errors": "pass",
    "methods.operation-405": "pass",
    "ratelimit.operation-headers": "pass",
    "cors.trusted-origin-variants": "pass",
}
PLANTED: dict[str, Any] = {
    "bola": True,
    "legacy_v0": True,
    "cors": "suffix",
    "enumerate": True,
    "trace_on_bad_id": True,
    "bare_401": True,
}
PREFIX_GROUND_TRUTH_PLANTED = {
    "auth.bola": "fail",
    "auth.bfla": "fail",
    "auth.operations-protected": "fail",
    "auth.operations-challenge": "fail",
    "auth.www-authenticate": "fail",
    "auth.user-enumeration": "fail",
    "cors.trusted-origin-variants": "fail",
    "disclosure.operation-errors": "fail",
    # still judged (not skipped) under the prefix
    "jwt.alg-none": "pass",
    "auth.token-in-url": "pass",
    "ratelimit.login-burst": "pass",
    "versioning.versioned": "pass",
}


async def test_a_prefix_mounted_api_is_judged_like_one_at_the_root() -> None:
    report = await _scan(orders_api(mount="/svc"), **FULL)
    statuses = _statuses(report)
    wrong = {
        i: (statuses[i], _reasons(report)[i])
        for i, want in PREFIX_GROUND_TRUTH_CLEAN.items()
        if statuses[i] != want
    }
    assert not wrong
    assert report.coverage is not None
    assert report.coverage.source == "openapi https://api.test/svc/openapi.json"
    # every operation but the login, which its own controls probe (its limit is 5 failures)
    assert (report.coverage.operations, report.coverage.probed) == (7, 6)
    assert report.coverage.not_probed_writes == 1


async def test_every_planted_mistake_under_the_prefix_is_found() -> None:
    report = await _scan(orders_api(mount="/svc", **PLANTED), **FULL)
    statuses = _statuses(report)
    wrong = {
        i: (statuses[i], _reasons(report)[i])
        for i, want in PREFIX_GROUND_TRUTH_PLANTED.items()
        if statuses[i] != want
    }
    assert not wrong
    reasons = _reasons(report)
    assert "/svc/api/v0/orders -> 200 anonymously" in reasons["auth.operations-protected"]
    assert "Python traceback" in reasons["disclosure.operation-errors"]


async def test_without_a_document_endpoints_are_discovered_and_the_legacy_version_caught() -> None:
    api = orders_api(mount="/svc", spec=False, legacy_v0=True)
    report = await _scan(api, token=token_a())
    assert report.coverage is not None and report.coverage.source == "discovered"
    assert report.coverage.probed >= 2
    assert _statuses(report)["auth.operations-protected"] == "fail"
    clean = await _scan(orders_api(mount="/svc", spec=False), token=token_a())
    assert _statuses(clean)["auth.operations-protected"] == "pass"


async def test_openapi_given_as_a_file_is_mapped_under_the_prefix(tmp_path: Path) -> None:
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec_document()))
    api = orders_api(mount="/svc", spec=False, trace_on_bad_id=True)
    report = await _scan(api, token=token_a(), openapi=str(document))
    assert report.coverage is not None
    assert report.coverage.source == f"openapi {document}"
    assert report.coverage.probed == 3  # the three GET operations (writes need --active)
    assert report.coverage.not_probed_writes == 4
    assert _statuses(report)["disclosure.operation-errors"] == "fail"


# --- two identities ------------------------------------------------------------------------
@pytest.mark.parametrize("active", [False, True])
async def test_bola_is_found_with_two_users_and_not_on_an_api_that_checks_owners(
    active: bool,
) -> None:
    options = {"token": token_a(), "token_b": token_b(), "active": active}
    vulnerable = await _scan(orders_api(bola=True), "https://api.test/", **options)
    fixed = await _scan(orders_api(), "https://api.test/", **options)
    assert _statuses(vulnerable)["auth.bola"] == "fail", _reasons(vulnerable)["auth.bola"]
    assert _statuses(fixed)["auth.bola"] == "pass", _reasons(fixed)["auth.bola"]
    assert "B read /api/v1/orders/" in _reasons(vulnerable)["auth.bola"]
    want_bfla = ("fail", "pass") if active else ("skip", "skip")
    assert (_statuses(vulnerable)["auth.bfla"], _statuses(fixed)["auth.bfla"]) == want_bfla


async def test_writes_touch_only_the_object_the_scan_created_and_it_is_cleaned_up() -> None:
    api = orders_api()
    seeded = {oid: dict(order) for oid, order in api.orders.items()}
    report = await _scan(api, "https://api.test/", **FULL)
    assert _statuses(report)["auth.bfla"] == "pass"
    assert "clean-up DELETE" in _reasons(report)["auth.bfla"]
    assert api.orders == seeded  # the users' own orders untouched, the scan's own one gone
    writes = [r for r in api.requests if r.method in {"PATCH", "DELETE"}]
    assert writes and all(
        "bastion-scan" in r.path or r.path.split("/")[-1] not in seeded for r in writes
    )


async def test_passive_scans_send_no_write_that_could_change_anything() -> None:
    api = orders_api(bola=True)
    seeded = {oid: dict(order) for oid, order in api.orders.items()}
    await _scan(api, "https://api.test/", token=token_a(), token_b=token_b())
    assert api.orders == seeded
    api_writes = [r for r in api.requests if r.method in {"PUT", "PATCH", "DELETE"}]
    assert not [r for r in api_writes if "/api/" in r.path]
    posts = [r for r in api.requests if r.method == "POST"]
    assert all(r.path.endswith("/login") or "orders" not in r.path for r in posts)


async def test_the_same_user_twice_is_not_reported_as_bola() -> None:
    report = await _scan(
        orders_api(bola=True), "https://api.test/", token=token_a(), token_b=token_a()
    )
    assert _statuses(report)["auth.bola"] == "skip"
    assert "same user" in _reasons(report)["auth.bola"]


async def test_auth_b_header_is_a_second_identity_and_never_leaks_into_the_report() -> None:
    report = await _scan(
        orders_api(bola=True),
        "https://api.test/",
        token=token_b(),
        auth_b=(("X-Api-Key", API_KEY),),  # the key is user-1's: B here reads A's orders
    )
    assert _statuses(report)["auth.bola"] == "fail"
    from bastion.scanner.reporters import renderer

    for fmt in ("json", "text", "sarif", "html"):
        assert API_KEY not in renderer(fmt)(report)


# --- what is legitimate ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "want", "kind"),
    [("suffix", "fail", "prefix of"), ("prefix", "fail", "suffix of"), ("exact", "pass", "")],
)
async def test_look_alikes_of_the_real_front_end_are_tested(
    policy: str, want: str, kind: str
) -> None:
    report = await _scan(orders_api(cors=policy), "https://api.test/", origins=(FRONT_END,))
    assert _statuses(report)["cors.trusted-origin-variants"] == want
    assert kind in _reasons(report)["cors.trusted-origin-variants"]
    # Without --origin only the API's own host is mutated: the suffix policy slips through.
    before = await _scan(orders_api(cors=policy), "https://api.test/")
    assert _statuses(before)["cors.lookalike-origin"] == "pass"
    assert _statuses(before)["cors.trusted-origin-variants"] == "skip"


async def test_preflights_are_tried_from_the_allowed_origin() -> None:
    api = orders_api()
    await _scan(api, "https://api.test/", origins=(FRONT_END,))
    preflights = [r for r in api.requests if r.method == "OPTIONS"]
    assert any(r.headers.get("origin") == FRONT_END for r in preflights)


@pytest.mark.parametrize(("email", "want"), [(KNOWN_EMAIL, "fail"), (None, "pass")])
async def test_user_enumeration_needs_a_real_account_to_be_seen(
    email: str | None, want: str
) -> None:
    report = await _scan(
        orders_api(enumerate=True), "https://api.test/", active=True, login_email=email
    )
    assert _statuses(report)["auth.user-enumeration"] == want
    fixed = await _scan(orders_api(), "https://api.test/", active=True, login_email=KNOWN_EMAIL)
    assert _statuses(fixed)["auth.user-enumeration"] == "pass"


async def test_expired_token_is_separate_from_token() -> None:
    from tests.scanner.apps import mint

    report = await _scan(
        orders_api(),
        "https://api.test/",
        token=token_a(),
        expired_token=mint(sub="user-1", lifetime=-3600),
    )
    assert _statuses(report)["jwt.expired"] == "pass"
    assert _statuses(report)["jwt.alg-none"] == "pass"  # --token still valid for the rest
    without = await _scan(orders_api(), "https://api.test/", token=token_a())
    assert _statuses(without)["jwt.expired"] == "skip"


async def test_anonymous_probes_drop_the_credential_headers() -> None:
    api = orders_api(legacy_v0=True)
    report = await _scan(api, "https://api.test/", headers=(("X-Api-Key", API_KEY),))
    # v1 is seen refusing anonymous requests only if the key was not sent with them
    assert _statuses(report)["auth.operations-protected"] == "fail"
    swept = [r for r in api.requests if "/api/v1/orders/bastion-scan-" in r.path]
    assert swept and not any("x-api-key" in r.headers for r in swept)


# --- budget and coverage -------------------------------------------------------------------
async def test_thirty_operations_are_all_probed_within_the_default_budget() -> None:
    api = orders_api(extra_paths=23)
    report = await _scan(api, "https://api.test/", **FULL)
    assert report.coverage is not None
    assert report.coverage.operations == 30
    assert report.coverage.probed == 29  # all but the login (see above)
    assert report.coverage.not_probed_writes == 1
    assert report.coverage.requests <= report.coverage.budget == 150


async def test_the_operation_budget_is_respected() -> None:
    api = orders_api(extra_paths=23)
    report = await _scan(api, "https://api.test/", token=token_a(), operation_budget=20)
    assert report.coverage is not None
    assert report.coverage.requests <= 20
    assert report.coverage.probed < 26
    swept = [
        r
        for r in api.requests
        if r.path.startswith("/api/v1/reports/") or r.path.startswith("/api/v1/orders/bastion")
    ]
    assert len(swept) <= 20


def test_join_prefix_folds_the_overlap() -> None:
    assert join_prefix("/svc/api/v1", "/api/v1/me") == "/svc/api/v1/me"
    assert join_prefix("/svc", "/api/v1/me") == "/svc/api/v1/me"
    assert join_prefix("/svc/api/v1", "/orders") == "/svc/api/v1/orders"
    assert join_prefix("", "/orders") == "/orders"
    assert join_prefix("/svc", "/svc/orders") == "/svc/orders"


def test_under_prefix_tries_the_prefix_first_then_the_root() -> None:
    ctx = ScanContext(PREFIXED)
    assert ctx.prefix == "/svc/api/v1"
    assert ctx.under_prefix("/api/v1/me") == ["/svc/api/v1/me", "/api/v1/me"]
    assert ScanContext("https://api.test/").under_prefix("/login") == ["/login"]


async def test_a_target_at_the_mount_itself_finds_the_versioned_api_below_it() -> None:
    """`https://api.test/svc/`: the token, login and versioning controls look under /svc."""
    report = await _scan(orders_api(mount="/svc"), "https://api.test/svc/", **FULL)
    statuses = _statuses(report)
    for check_id in ("jwt.alg-none", "auth.token-in-url", "ratelimit.login-burst"):
        assert statuses[check_id] == "pass", (check_id, _reasons(report)[check_id])
    assert statuses["versioning.versioned"] == "pass"
    assert "/svc/api/v1/" in _reasons(report)["versioning.versioned"]


async def test_openapi_given_as_a_url_on_the_scanned_origin() -> None:
    api = orders_api(mount="/svc")
    report = await _scan(api, token=token_a(), openapi="https://api.test/svc/openapi.json")
    assert report.coverage is not None
    assert report.coverage.source == "openapi https://api.test/svc/openapi.json"
    assert report.coverage.probed == 3
