"""The service puts its most requested routes first (service/main.py): that may change only
the cost of finding a route, never which route a request reaches. It holds because no two of
the service's paths can match the same request, which this checks on the real app."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from bastion.config import Settings
from bastion.service.main import create_app
from bastion.service.routes.auth import prepare_keys

# A value for each kind of path parameter the service's routes take.
_SAMPLE = {"order_id": "0b8e7a52-6f1c-4d8e-9a3b-2f6c1d0e9a77"}


def _patterns(app: FastAPI) -> dict[str, re.Pattern[str]]:
    """Every path template of the app (inside included routers too) and its compiled regex."""
    found: dict[str, re.Pattern[str]] = {}
    for route in app.router.routes:
        contexts: list[Any] = (
            list(route.effective_route_contexts())
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for context in contexts:
            found[context.path] = context.path_regex
    return found


def test_no_two_service_paths_match_the_same_request(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    prepare_keys(settings)
    patterns = _patterns(create_app(settings))
    assert {"/api/v1/me", "/api/v1/orders/{order_id}", "/api/v1/auth/login"} <= set(patterns)
    for template in patterns:
        sample = re.sub(r"\{(\w+)[^}]*\}", lambda m: _SAMPLE.get(m[1], "x"), template)
        matching = [other for other, regex in patterns.items() if regex.match(sample)]
        assert matching == [template], f"{sample} is matched by {matching}"


def test_the_most_requested_routes_come_first(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    prepare_keys(settings)
    paths = [getattr(route, "path", None) for route in create_app(settings).router.routes]
    assert paths[0] == "/api/v1/me"
    assert paths.index("/api/v1/orders/{order_id}") < paths.index("/healthz")
    assert None not in paths[: paths.index("/readyz")]  # included routers after the rest
