"""Hostile servers on loopback, and a harness that runs `bastion scan` against them as a user would.

Each server is a small asyncio handler written at the socket level (HTTP/1.1 by hand, HTTP/2
with the ``h2`` package), served from a loop in a background thread so that the scan itself
runs in a child process: ``python -m bastion scan ...``. The harness measures what the issue
asks of every case: the wall time, the peak RSS (``VmHWM`` from ``/proc``: polled while the
child runs, and read by the child itself as it exits), the CPU time (``wait4``), and it keeps
the bytes of every report. Memory-heavy cases run under ``RLIMIT_AS`` so that a regression
fails the test instead of taking the machine down.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import gzip
import ipaddress
import os
import resource
import select
import signal
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import free_port
from tests.support_tls import private_key_pem

T = TypeVar("T")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Every report format, as the CLI writes it.
FORMATS = ("text", "json", "sarif", "html")


# --- the server side ----------------------------------------------------------------------
@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    raw: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Served:
    host: str
    port: int
    tls: bool
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + "/"


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One HTTP/1.1 request head (and its Content-Length body); None when the client left."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, head + body)


class _LoopThread:
    """An event loop in a daemon thread, shared by every hostile server of a test module."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


_LOOP: _LoopThread | None = None


def _loop() -> _LoopThread:
    global _LOOP
    if _LOOP is None:
        _LOOP = _LoopThread()
    return _LOOP


@contextlib.contextmanager
def serving(
    handler: Callable[[Served, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    *,
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> Iterator[Served]:
    """Serve ``handler(served, reader, writer)`` on ``host``:<free port> until the block ends.
    Connections still open at the end are aborted (a hostile handler never ends by itself)."""
    port = free_port()
    served = Served(host, port, tls is not None)
    writers: set[asyncio.StreamWriter] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.connections += 1
        writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)
        try:
            await handler(served, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # stop() ends handlers that never end by themselves; nothing to report
        finally:
            writer.transport.abort()
            writers.discard(writer)

    async def start() -> asyncio.Server:
        return await asyncio.start_server(on_connect, host, port, ssl=tls, backlog=512)

    loop = _loop()
    server = loop.run(start())

    async def stop() -> None:
        server.close()
        for writer in list(writers):
            writer.transport.abort()
        for task in list(tasks):
            task.cancel()
        await asyncio.sleep(0)

    try:
        yield served
    finally:
        loop.run(stop())


def http11_handler(
    respond: Callable[[Served, Request, asyncio.StreamWriter], Awaitable[bool]],
) -> Callable[[Served, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """Keep-alive HTTP/1.1: ``respond`` answers each request; False closes the connection."""

    async def handle(
        served: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            request = await read_request(reader)
            if request is None:
                return
            served.requests.append(request)
            if not await respond(served, request, writer):
                return

    return handle


def response(
    status: int = 200,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    reason: str | bytes = "OK",
) -> bytes:
    """A complete HTTP/1.1 response, bytes as given (reason phrase and values unchecked)."""
    reason_bytes = reason if isinstance(reason, bytes) else reason.encode("latin-1")
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason_bytes)
    fields = list(headers or [])
    if not any(k.lower() == "content-length" for k, _ in fields):
        fields.append(("Content-Length", str(len(body))))
    for name, value in fields:
        head += name.encode("latin-1") + b": " + value.encode("latin-1") + b"\r\n"
    return head + b"\r\n" + body


OK_JSON = response(200, b'{"ok": true}', [("Content-Type", "application/json")])


class H2Session:
    """One server-side HTTP/2 connection (``h2``), shared by its streams' responders."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()


H2Responder = Callable[[H2Session, int, Request], Awaitable[None]]


def h2_handler(
    respond: H2Responder,
) -> Callable[[Served, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """HTTP/2 over TLS (ALPN h2): ``respond(session, stream_id, request)`` runs as a task per
    stream; a stream the client resets simply ends its responder."""

    async def guarded(session: H2Session, stream_id: int, request: Request) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError, ConnectionError, OSError):
            await respond(session, stream_id, request)

    async def handle(
        served: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = H2Session(writer)
        session.conn.initiate_connection()
        await session.flush()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while data := await reader.read(65536):
                for event in session.conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = {str(k): str(v) for k, v in event.headers or []}
                        request = Request(headers[":method"], headers[":path"], headers, b"")
                        served.requests.append(request)
                        task = asyncio.create_task(guarded(session, event.stream_id, request))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                await session.flush()
        finally:
            for task in tasks:
                task.cancel()

    return handle


# --- certificates -------------------------------------------------------------------------
@dataclass
class ServerCert:
    ca: Path
    chain: Path
    key: Path

    def server_context(self, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.chain, self.key)
        context.set_alpn_protocols(list(alpn))
        return context


def make_cert(
    directory: Path, *, common_name: str = "localhost", dns_names: tuple[str, ...] = ("localhost",)
) -> ServerCert:
    """A private CA and a leaf for 127.0.0.1 whose subject CN and DNS SANs are as given (any
    characters: cryptography writes them as UTF8String / IA5String without judging them)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert = ServerCert(directory / "ca.pem", directory / "chain.pem", directory / "key.pem")
    cert.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert.chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    cert.key.write_bytes(private_key_pem(key))
    return cert


def with_negative_serial(cert: ServerCert) -> ServerCert:
    """The same leaf with its serial number's sign bit set (RFC 5280 §4.1.2.2 forbids a
    negative serial; the signature no longer verifies, so scan it with --insecure)."""
    leaf_pem, _, rest = cert.chain.read_bytes().partition(b"-----END CERTIFICATE-----\n")
    leaf = x509.load_pem_x509_certificate(leaf_pem + b"-----END CERTIFICATE-----\n")
    der = leaf.public_bytes(serialization.Encoding.DER)
    # DER's minimal two's-complement encoding of the (positive) serial, then its sign bit set.
    serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big")
    field = bytes([0x02, len(serial)]) + serial
    if field not in der:
        raise ValueError("unexpected serial encoding")
    odd = der.replace(field, bytes([0x02, len(serial), serial[0] | 0x80]) + serial[1:], 1)

    body = base64.encodebytes(odd).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    pem = b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"
    chain = cert.chain.with_name("odd-chain.pem")
    chain.write_bytes(pem + rest)
    return ServerCert(cert.ca, chain, cert.key)


# --- payloads -----------------------------------------------------------------------------
def _crc32_of_zeros(count: int) -> int:
    """CRC-32 of ``count`` zero bytes without touching them: appending zeros is linear over
    GF(2), so the operator for 2^k zeros is squared k times (log2(count) 32x32 products)."""

    def apply(matrix: list[int], vector: int) -> int:
        out = 0
        row = 0
        while vector:
            if vector & 1:
                out ^= matrix[row]
            vector >>= 1
            row += 1
        return out

    def square(matrix: list[int]) -> list[int]:
        return [apply(matrix, matrix[n]) for n in range(32)]

    # Operator for one zero *bit* on the reflected register (polynomial 0xEDB88320).
    one_bit = [0xEDB88320] + [1 << n for n in range(31)]
    op = square(square(square(one_bit)))  # one zero byte
    crc = 0xFFFFFFFF  # the register before any data (crc32's pre-conditioning)
    while count:
        if count & 1:
            crc = apply(op, crc)
        count >>= 1
        if count:
            op = square(op)
    return crc ^ 0xFFFFFFFF


def gzip_of_zeros(total: int, *, chunk: int = 1 << 24) -> bytes:
    """A single valid gzip member of ``total`` zero bytes, built without compressing them
    all: with a full flush between chunks every chunk compresses to the same bytes, so one
    compressed chunk is repeated (``total`` must be a multiple of ``chunk``)."""
    if total % chunk:
        raise ValueError("total must be a multiple of chunk")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = compressor.compress(b"\0" * chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(b"\0" * chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = _crc32_of_zeros(total).to_bytes(4, "little") + (total % (1 << 32)).to_bytes(
        4, "little"
    )
    return header + first + again * (total // chunk - 1) + tail + trailer


@functools.cache
def stacked_gzip_bomb(total: int = 16 << 30) -> bytes:
    """``Content-Encoding: gzip, gzip``: a gzip of a gzip of ``total`` zero bytes (16 GiB by
    default, about 26 KB on the wire)."""
    return gzip.compress(gzip_of_zeros(total), compresslevel=9)


# --- the client side: `bastion scan` in a child process, measured ---------------------------
@dataclass
class ScanRun:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    exit_hwm_kb: int  # VmHWM from the child's own /proc/self/status as it exits
    proc_hwm_kb: int  # the highest VmHWM seen in /proc/<pid>/status while it ran
    report: str  # the --output file, when one was asked for

    @property
    def peak_rss_mb(self) -> float:
        """The child's peak resident memory. Not wait4's ru_maxrss: Linux folds the parent's
        high-water mark into the child's at exec, so it reports the test process's size."""
        return max(self.exit_hwm_kb, self.proc_hwm_kb) / 1024


# `python -m bastion scan ...`, plus one line at exit: the process's own peak RSS (VmHWM), read
# from /proc when nothing more can allocate. runpy.run_module is what `-m` does.
_ENTRY = """
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:")).split()[1]
    with open(os.environ["HOSTILE_TEST_PEAK_FILE"], "w") as out:
        out.write(peak)
atexit.register(_peak)
sys.argv[0] = "bastion"
runpy.run_module("bastion", run_name="__main__", alter_sys=True)
"""


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class _Child:
    command: list[str]
    process: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    hwm_path: Path
    output: Path | None
    started: float
    hwm: int = 0
    result: ScanRun | None = None


def _start(
    args: tuple[str, ...], output: Path | None, address_space_mb: int | None, tag: str
) -> _Child:
    command = [sys.executable, "-c", _ENTRY, "scan", *args]
    if output is not None:
        command += ["--output", str(output)]
    preexec = None
    if address_space_mb is not None:
        limit = address_space_mb << 20
        # A C-level call between fork and exec: no Python lock is taken in the child.
        preexec = functools.partial(resource.setrlimit, resource.RLIMIT_AS, (limit, limit))
    directory = Path(os.environ.get("TMPDIR", "/tmp"))
    stamp = f"{os.getpid()}-{time.monotonic_ns()}-{tag}"
    out_path, err_path = directory / f"scan-{stamp}.out", directory / f"scan-{stamp}.err"
    hwm_path = directory / f"scan-{stamp}.hwm"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec,
            env={**os.environ, "HOSTILE_TEST_PEAK_FILE": str(hwm_path)},
        )
    return _Child(command, process, out_path, err_path, hwm_path, output, time.monotonic())


def _finish(child: _Child, status: int, usage: resource.struct_rusage) -> ScanRun:
    child.process.returncode = os.waitstatus_to_exitcode(status)
    stdout = child.out_path.read_text(errors="replace")
    stderr = child.err_path.read_text(errors="replace")
    exit_hwm = int(child.hwm_path.read_text() or 0) if child.hwm_path.exists() else 0
    for path in (child.out_path, child.err_path, child.hwm_path):
        path.unlink(missing_ok=True)
    output = child.output
    report = output.read_text(errors="replace") if output is not None and output.exists() else ""
    return ScanRun(
        returncode=child.process.returncode,
        stdout=stdout,
        stderr=stderr,
        wall_s=time.monotonic() - child.started,
        cpu_s=usage.ru_utime + usage.ru_stime,
        exit_hwm_kb=exit_hwm,
        proc_hwm_kb=child.hwm,
        report=report,
    )


def _wait_all(children: list[_Child], timeout: float) -> list[ScanRun]:
    """Reap every child with its own rusage (os.wait4), sampling /proc while they run."""
    deadline = time.monotonic() + timeout
    while any(c.result is None for c in children):
        for child in children:
            if child.result is not None:
                continue
            pid, status, usage = os.wait4(child.process.pid, os.WNOHANG)
            if pid:
                child.result = _finish(child, status, usage)
            else:
                child.hwm = max(child.hwm, _vm_hwm_kb(child.process.pid))
        if time.monotonic() > deadline:
            for child in children:
                if child.result is None:
                    os.kill(child.process.pid, signal.SIGKILL)
                    _pid, status, usage = os.wait4(child.process.pid, 0)
                    child.result = _finish(child, status, usage)
            raise AssertionError(f"bastion scan still running after {timeout} s")
        time.sleep(0.02)  # sampling the children's memory, not waiting for a condition
    return [c.result for c in children if c.result is not None]


def run_scan(
    *args: str,
    output: Path | None = None,
    address_space_mb: int | None = None,
    timeout: float = 90,
) -> ScanRun:
    """``python -m bastion scan ARGS`` in a child process, measured until it exits."""
    return _wait_all([_start(args, output, address_space_mb, "0")], timeout)[0]


def run_scan_on_a_terminal(*args: str, timeout: float = 90) -> tuple[int, bytes]:
    """``bastion scan ARGS`` with stdout on a pseudo-terminal (the coloured rich path a
    person sees): the exit status and every byte the terminal received."""
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion", "scan", *args],
        stdout=slave,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    received = bytearray()
    started = time.monotonic()
    try:
        while True:
            if time.monotonic() - started > timeout:
                process.kill()
                raise AssertionError("bastion scan on a terminal did not finish")
            readable, _, _ = select.select([master], [], [], 0.5)
            if not readable:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(master)
    return process.wait(timeout), bytes(received)


def scan_every_format(
    url: str, tmp_path: Path, *args: str, address_space_mb: int | None = None, timeout: float = 90
) -> dict[str, ScanRun]:
    """The same scan once per report format (each written with --output), run at once."""
    children = [
        _start((url, "--format", fmt, *args), tmp_path / f"report.{fmt}", address_space_mb, fmt)
        for fmt in FORMATS
    ]
    return dict(zip(FORMATS, _wait_all(children, timeout), strict=True))
