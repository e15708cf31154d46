"""The cost of access-token revocation on ``GET /api/v1/me``: CPU per request, in process.

``bastion serve``'s app (every layer, real routes, a real database) is driven with ASGI
messages as ``bench_service_inprocess.py`` does, 32 requests at a time on one uvloop loop,
and the process CPU per request is counted. Three variants run in interleaved rounds in one
process (best round kept, since noise only adds time):

* ``without``: ``require_principal`` with the revocation check removed (its code swapped for
  the version before issue 13): the baseline;
* ``with, none revoked``: the check, nobody revoked;
* ``with, 100k revoked``: the check with 100,000 users in the in-process map (the caller not
  among them): a map that large still costs one dict lookup.

The goal (issue 13): ``/me`` within 5% of its throughput without revocation.

    .venv/bin/python bench/bench_revocation.py [--database sqlite|postgres] [--requests 4000]
        [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.log import configure
from bastion.service import deps
from bastion.service.main import build, prepare
from bench.bench_service_inprocess import bench_database, call, cpu_per_request, service_settings
from bench.compare import PASSWORD


async def _unchecked(request: Any) -> Any:
    """``require_principal`` as it was before revocations (the baseline)."""
    return caller_of(await request.app.state.bearer_auth.authenticate(request.scope))  # type: ignore[name-defined]  # noqa: F821


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, bench_database(args.database, Path(tmp)) as url:
        uvloop.run(measure(args, Path(tmp), url))


async def measure(args: argparse.Namespace, tmp: Path, url: str | None) -> None:
    settings = service_settings(tmp, url)
    configure(settings.log_level)
    await prepare(settings)
    app = build(settings)
    inner: Any = app
    while not hasattr(inner, "state"):
        inner = inner.app
    json_type = {"Content-Type": "application/json"}
    login = json.dumps({"email": "revocation@bench.invalid", "password": PASSWORD}).encode()
    assert (await call(app, "POST", "/api/v1/auth/register", json_type, login))[0] == 202
    status, answer = await call(app, "POST", "/api/v1/auth/login", json_type, login)
    assert status == 200, answer
    auth = {"Authorization": f"Bearer {json.loads(answer)['access_token']}"}
    revocations = inner.state.revocations
    checked = deps.require_principal.__code__
    crowd = {uuid.uuid4(): 1 for _ in range(100_000)}

    def without() -> None:
        deps.require_principal.__code__ = _unchecked.__code__
        revocations._seconds = {}

    def with_none() -> None:
        deps.require_principal.__code__ = checked
        revocations._seconds = {}

    def with_crowd() -> None:
        deps.require_principal.__code__ = checked
        revocations._seconds = crowd

    variants = {
        "without": without,
        "with, none revoked": with_none,
        "with, 100k revoked": with_crowd,
        "without (again)": without,  # an A/A pair: the spread of the measurement itself
    }
    best = {name: float("inf") for name in variants}
    names = list(variants)
    for round_ in range(args.repeats):
        # Rotate the order every round: no variant always runs first (warm-up) or last.
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            setup = variants[name]
            setup()
            me = ("GET", "/api/v1/me", auth, b"")
            spent = sum(await cpu_per_request(app, me, 200, args.requests))
            best[name] = min(best[name], spent)
    deps.require_principal.__code__ = checked
    # The check alone (what "with" adds to a request), timed in a tight loop: on a shared
    # machine the whole-request figures above spread more than the check costs.
    from starlette.requests import Request

    scope = {
        "type": "http",
        "app": inner,
        "headers": [(b"authorization", auth["Authorization"].encode())],
    }
    request = Request(scope)
    loops = 20_000
    alone = {
        "without": float("inf"),
        "with, none revoked": float("inf"),
        "with, 100k revoked": float("inf"),
    }
    for _ in range(args.repeats):
        for name in alone:
            variants[name]()
            started = time.process_time()
            for _ in range(loops):
                await deps.require_principal(request)
            alone[name] = min(alone[name], (time.process_time() - started) / loops * 1e6)
    deps.require_principal.__code__ = checked
    print(f"{args.database}: require_principal alone (token verification included), µs per call")
    for name, value in alone.items():
        print(f"  {name:<22}{value:>8.2f} µs  (+{value - alone['without']:.2f})")
    base = best["without"]
    print(f"{args.database}: GET /api/v1/me, CPU µs per request (best of {args.repeats} rounds)")
    for name, value in best.items():
        print(f"  {name:<22}{value:>8.1f} µs  {base / value * 100:>6.1f}% of the baseline's rate")
    await inner.state.database.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=7)
    main(parser.parse_args())
