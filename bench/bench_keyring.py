"""What the shared key ring costs: the token path, the direct read after an unknown kid, and
how long a rotation takes to reach another host.

    .venv/bin/python bench/bench_keyring.py [--database postgresql+asyncpg://...] [--rounds 5]

Two rings stand for two hosts: each has its own DatabaseKeyStore (its own thread, engine and
watcher) on one PostgreSQL database, as two `bastion serve` hosts would. Figures:

* ``get`` / ``refresh()`` per call, directory ring vs database ring: what TokenIssuer.issue and
  the verifier pay on every token (refresh() is throttled to once per second and, with the
  database, answered from the watcher's memory, so it should cost the same on both);
* the direct read after an unknown kid (one version query through the store's thread);
* rotation to use: from ``rotate()`` on host A to host B's ``refresh()`` returning True with the
  watcher's default 2 s poll (the promise: within 5 s), best and worst of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import timeit
import uuid
from pathlib import Path

import asyncpg

from bastion.auth.key_encryption import KeyEncryptionKey, generate
from bastion.auth.keys import KeyRing
from bastion.service.signing_keys import DatabaseKeyStore

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def per_call_ns(fn: object, number: int = 200_000) -> float:
    timer = timeit.Timer(fn)  # type: ignore[arg-type]
    return min(timer.repeat(5, number)) / number * 1e9


def hot_path(ring: KeyRing, label: str) -> None:
    kid = ring.active.kid
    hit = per_call_ns(lambda: ring.get(kid))
    ring.refresh()  # the next calls are inside the one-second throttle, as on the token path
    refresh = per_call_ns(ring.refresh)
    print(f"  {label:<10} get(kid) {hit:6.0f} ns   refresh() {refresh:6.0f} ns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="an empty PostgreSQL database (default: a fresh one)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    name = None
    url = args.database
    if url is None:
        name = f"bastion_bench_{uuid.uuid4().hex[:12]}"
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    kek = KeyEncryptionKey.parse(generate())
    host_a = KeyRing(DatabaseKeyStore(url, kek))
    host_b = KeyRing(DatabaseKeyStore(url, kek, watch=True))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            disk = KeyRing(Path(tmp) / "keys")
            disk.ensure()
            host_a.ensure()
            host_b.ensure()
            print("token path (per call, best of 5):")
            hot_path(disk, "directory")
            hot_path(host_b, "database")

        reads = []
        for _ in range(200):
            host_b._missed, host_b._next_fresh_check = True, 0.0
            started = time.perf_counter()
            host_b.refresh()
            reads.append((time.perf_counter() - started) * 1e3)
        print(
            f"direct read after an unknown kid: median {statistics.median(reads):.2f} ms, "
            f"p95 {sorted(reads)[189]:.2f} ms (200 reads)"
        )

        delays = []
        for _ in range(args.rounds):
            time.sleep(random.uniform(0, 2))  # any phase of the other host's poll
            key = host_a.rotate()
            started = time.monotonic()
            while not (host_b.refresh() and host_b.active.kid == key.kid):
                time.sleep(0.01)  # the token path asks at most every second anyway
                host_b._next_check = 0.0  # measure the watcher, not the throttle
            delays.append(time.monotonic() - started)
        print(
            f"rotation to use on the other host (2 s poll): best {min(delays):.2f} s, "
            f"worst {max(delays):.2f} s over {args.rounds} rotations"
        )
    finally:
        host_a.close()
        host_b.close()
        if name is not None:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
