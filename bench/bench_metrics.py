"""What the metrics cost a request: ``bastion serve``'s app with and without
``BASTION_METRICS_PORT`` (bastion.service.metrics), in one process, interleaved rounds.

Both apps are built by ``bastion.service.main.build`` on the same SQLite database; the one
with metrics counts into prometheus_client's multiprocess files, as a worker of
``bastion serve`` does. CPU time per request, 32 requests at a time on one uvloop loop, best
of the rounds (noise only adds time): the difference is the metrics' cost.

    .venv/bin/python bench/bench_metrics.py [--requests 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.log import configure
from bastion.service import metrics
from bastion.service.main import build, prepare
from bench.bench_service_inprocess import call, cpu_per_request, service_settings
from bench.compare import PASSWORD


async def measure(args: argparse.Namespace, tmp: Path) -> None:
    # metrics_port: any port; no listener is opened here, only the counting
    settings = service_settings(tmp, metrics_port=9)
    configure(settings.log_level)
    await prepare(settings)
    without = build(settings)  # before the variable is set: metrics.enabled() is False
    metrics.prepare_directory(settings)  # sets the variable before prometheus_client loads
    with_metrics = build(settings)
    apps = {"without metrics": without, "with metrics": with_metrics}
    json_type = {"Content-Type": "application/json"}
    login = json.dumps({"email": "metrics@bench.invalid", "password": PASSWORD}).encode()
    status, _ = await call(without, "POST", "/api/v1/auth/register", json_type, login)
    status, answer = await call(without, "POST", "/api/v1/auth/login", json_type, login)
    assert status == 200, answer
    auth = {"Authorization": f"Bearer {json.loads(answer)['access_token']}"}
    cases = {
        "GET /healthz": ("GET", "/healthz", {}, b"", 200),
        "GET /api/v1/me": ("GET", "/api/v1/me", auth, b"", 200),
        "GET /nothing (404)": ("GET", "/nothing", {}, b"", 404),
    }
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeats):
        for name, (method, target, headers, body, expected) in cases.items():
            for label, app in apps.items():
                case = (method, target, headers, body)
                per = sum(await cpu_per_request(app, case, expected, args.requests))
                best[(name, label)] = min(best.get((name, label), float("inf")), per)
    print(f"CPU µs per request, best of {args.repeats} rounds of {args.requests}")
    print(f"  {'':<22}{'without':>10}{'with':>10}{'cost':>10}")
    for name in cases:
        bare, counted = best[(name, "without metrics")], best[(name, "with metrics")]
        print(f"  {name:<22}{bare:>10.1f}{counted:>10.1f}{counted - bare:>10.1f}")


async def layer_alone(args: argparse.Namespace) -> None:
    """The two layers around an app that answers at once: their cost without the noise of
    a whole request (process CPU of 100,000 sequential calls, best of the rounds)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    class Route:
        path = "/api/v1/orders/{order_id}"

    async def routed(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = Route
        await app(scope, receive, send)

    counted = metrics.RequestMetrics(metrics.RouteTemplate(routed))
    scope = {"type": "http", "method": "GET", "path": "/api/v1/orders/x", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        return None

    calls = 100_000
    best = {"bare app": float("inf"), "with both layers": float("inf")}
    for _ in range(args.repeats):
        for label, target in (("bare app", routed), ("with both layers", counted)):
            before = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(calls):
                await target(dict(scope), receive, send)
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            best[label] = min(best[label], cpu / calls * 1e6)
    print(f"the layers alone, µs per call (best of {args.repeats} rounds of {calls:,})")
    for label, value in best.items():
        print(f"  {label:<22}{value:>10.2f}")
    print(f"  {'cost':<22}{best['with both layers'] - best['bare app']:>10.2f}")


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        uvloop.run(measure(args, Path(tmp)))
        uvloop.run(layer_alone(args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    main(parser.parse_args())
