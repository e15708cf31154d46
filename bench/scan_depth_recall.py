"""Recall and false positives of ``bastion scan`` on the depth fixtures, for a before/after table.

Run: ``.venv/bin/python bench/scan_depth_recall.py`` (this tree), or against an older tree::

    git archive <commit> src | tar -x -C /tmp/old
    cp -r tests /tmp/old/  # the fixtures (tests/scanner/depth_apps.py) come from this tree
    PYTHONPATH=/tmp/old/src:/tmp/old .venv/bin/python bench/scan_depth_recall.py

Each ground-truth item is one mistake planted in the orders fixture (``depth_apps.py``), at the
root and mounted under ``/svc``; an item is found when one of the controls named for it fails or
warns. The clean fixture's failures and warnings are listed (false positives, or the fixture's
own shortcuts: no HSTS preload, POST over HTTP redirected, no API burst limiter), and whether
the token and login controls judged the API at all (``skip`` = missed).
Options a tree does not know (``token_b`` before issue 16) are dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.scanner.context import ScanOptions
from bastion.scanner.registry import load_default_checks
from bastion.scanner.runner import scan
from tests.scanner.depth_apps import FRONT_END, KNOWN_EMAIL, orders_api, token_a, token_b

ITEMS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "traceback on /orders/{id}": (
        {"trace_on_bad_id": True},
        ["disclosure.operation-errors", "disclosure.stack-trace"],
    ),
    "legacy /api/v0 without auth": (
        {"legacy_v0": True},
        ["auth.operations-protected", "versioning.prerelease-gone"],
    ),
    "BOLA read (B reads A's order)": ({"bola": True}, ["auth.bola"]),
    "BOLA write (B changes/deletes A's order)": ({"bola": True}, ["auth.bfla"]),
    "CORS endswith('example.com')": (
        {"cors": "suffix"},
        ["cors.trusted-origin-variants", "cors.lookalike-origin"],
    ),
    "CORS startswith(front end)": (
        {"cors": "prefix"},
        ["cors.trusted-origin-variants", "cors.lookalike-origin"],
    ),
    "login enumerates a real account": ({"enumerate": True}, ["auth.user-enumeration"]),
    "401 without WWW-Authenticate": (
        {"bare_401": True},
        ["auth.www-authenticate", "auth.operations-challenge"],
    ),
}
JUDGED = (
    "jwt.alg-none",
    "auth.token-in-url",
    "auth.requires-token",
    "ratelimit.login-burst",
    "versioning.versioned",
)


def options(**wanted: Any) -> ScanOptions:
    known = {f.name for f in dataclasses.fields(ScanOptions)}
    return ScanOptions(**{k: v for k, v in wanted.items() if k in known})


async def findings(app: Any, target: str) -> dict[str, Any]:
    checks = [c for c in load_default_checks() if c.category != "tls"]
    wanted = options(
        token=token_a(),
        token_b=token_b(),
        active=True,
        origins=(FRONT_END,),
        login_email=KNOWN_EMAIL,
    )
    report = await scan(target, wanted, checks=checks, transport=httpx.ASGITransport(app))
    return {f.id: f for f in report.findings}


async def main() -> None:
    for mount in ("", "/svc"):
        target = "https://api.test" + (f"{mount}/api/v1/" if mount else "/")
        found = 0
        for item, (planted, ids) in ITEMS.items():
            result = await findings(orders_api(mount=mount, **planted).app, target)
            hit = [i for i in ids if i in result and result[i].status in {"fail", "warn"}]
            found += bool(hit)
            print(f"  [{'x' if hit else ' '}] {item:42} {', '.join(hit)}")
        clean = await findings(orders_api(mount=mount).app, target)
        noisy = sorted(i for i, f in clean.items() if f.status in {"fail", "warn"})
        judged = ", ".join(f"{i}={clean[i].status}" for i in JUDGED)
        print(f"mounted at {mount or '/'}: recall {found}/{len(ITEMS)}")
        print(f"  clean fixture, fail/warn: {', '.join(noisy)}")
        print(f"  judged: {judged}")


if __name__ == "__main__":
    asyncio.run(main())
