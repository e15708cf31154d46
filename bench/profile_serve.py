"""Where a `bastion serve` request spends its time: py-spy samples the server under wrk load.

Starts `bastion serve` exactly as ``bench/run`` does (pinned to core 0, limits out of reach,
plain HTTP), loads one case with wrk on core 1 and samples the server with py-spy (``pip
install py-spy``; it is not a dependency), then prints the functions by share of samples:
inclusive (the function and what it calls) and self.

py-spy samples wall time, and with uvloop on CPython 3.11 the loop's idle time (waiting in
epoll) shows up under the frame that awaited last: on PostgreSQL, most of
``Connection._do_execute``'s "self" share is the wait for the server's answer, not CPU. For
CPU per request, trust ``bench_service_inprocess.py`` (``getrusage``) and ``bench/run``'s
server-CPU column.

    .venv/bin/python bench/profile_serve.py me [--database postgres] [--seconds 10]
        cases: healthz, me, get, list, post
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.compare import (
    _bastion,
    _free_port,
    _headers,
    _lua,
    _pin,
    _start,
    _stop,
    postgres_database,
)


def _frame(text: str) -> str:
    name, _, where = text.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name


def summary(raw: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")[1:]]  # [0] is the thread
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
    out = [f"{total} samples; inclusive share:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    out.append("self share:")
    out += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=["healthz", "me", "get", "list", "post"])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw (collapsed) output here")
    parser.add_argument(
        "--gil", action="store_true",
        help="sample only while the server holds the GIL (its Python CPU, not its waits)",
    )  # fmt: skip
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed (.venv/bin/pip install py-spy)")
    with (
        tempfile.TemporaryDirectory(prefix="bastion-profile-") as tmp,
        contextlib.ExitStack() as st,
    ):
        workdir = Path(tmp)
        url = st.enter_context(postgres_database()) if args.database == "postgres" else None
        server = _bastion(args.database, workdir / "data", url)
        case = next(c for c in server.cases if c.key.endswith(f".{args.case}"))
        port = _free_port()
        command, env = server.command(port)
        running = _start(command, env, port, server.probe, workdir / "serve.log")
        try:
            context = server.prepare(running)
            script = workdir / "case.lua"
            script.write_text(_lua(case.method, _headers(case, context), case.body))
            target = running.base + case.path.format(order=context.get("order", ""))
            wrk = [*_pin(1), "wrk", "-t1", "-c32", f"-d{args.seconds + 3}s", "-s", str(script)]
            load = threading.Thread(
                target=subprocess.run, args=([*wrk, target],), kwargs={"capture_output": True}
            )
            load.start()
            raw = args.raw or workdir / "profile.txt"
            subprocess.run(
                [spy, "record", "-p", str(running.process.pid), "-d", str(args.seconds),
                 "-r", "200", "--format", "raw", "--nonblocking", "-o", str(raw),
                 *(["--gil"] if args.gil else [])],
                check=True, capture_output=True,
            )  # fmt: skip
            load.join()
            print(f"{case.label}, {args.seconds} s under wrk -c32:")
            print(summary(raw, args.top))
        finally:
            _stop(running)


if __name__ == "__main__":
    main()
