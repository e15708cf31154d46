"""Wall time of a full ``bastion scan`` of an API with 30 OpenAPI operations, on loopback.

Run: ``.venv/bin/python bench/bench_scan_depth.py [--repeat N] [--budget N]``.

The target is the orders fixture of the scanner tests (``tests/scanner/depth_apps.py``) with 23
extra report operations, so its OpenAPI document lists 30 operations, served by uvicorn over
TLS on 127.0.0.1 and mounted under ``/svc`` (the document is found under the prefix). Each
round runs every control, TLS included, with ``--active``, two identities (``--token`` and
``--token-b``), ``--origin`` and ``--login-email``: the deepest scan there is. It prints the
wall time of each round, the best and the median, the requests sent, and the coverage
(operations probed, sweep requests against ``--operation-budget``).
Goal: under 10 s, with the budget respected.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.scanner.context import ScanOptions
from bastion.scanner.runner import scan
from tests.scanner.depth_apps import FRONT_END, KNOWN_EMAIL, orders_api, token_a, token_b
from tests.scanner.servers import make_certs, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=int, default=150, help="--operation-budget")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp))
        times = []
        for round_ in range(args.repeat):
            api = orders_api(mount="/svc", extra_paths=23, login_limit=5)
            with running(api.app, certs=certs) as server:
                options = ScanOptions(
                    active=True,
                    token=token_a(),
                    token_b=token_b(),
                    origins=(FRONT_END,),
                    login_email=KNOWN_EMAIL,
                    ca_file=str(certs.ca),
                    operation_budget=args.budget,
                )
                started = time.perf_counter()
                report = asyncio.run(scan(server.url + "svc/api/v1/", options))
                elapsed = time.perf_counter() - started
            times.append(elapsed)
            coverage = report.coverage
            assert coverage is not None
            print(
                f"round {round_ + 1}: {elapsed:.2f} s, grade {report.grade}, "
                f"{report.requests} requests, {len(report.findings)} controls; coverage "
                f"{coverage.probed}/{coverage.operations} operations, sweep "
                f"{coverage.requests}/{coverage.budget} requests ({coverage.source})"
            )
        print(
            f"full active scan of 30 operations: best {min(times):.2f} s, median "
            f"{statistics.median(times):.2f} s (goal < 10 s)"
        )


if __name__ == "__main__":
    main()
