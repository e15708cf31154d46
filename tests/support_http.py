"""Raw HTTP/1.1 over real sockets (plain or TLS), and a server process's memory and CPU.

For tests that must send what no HTTP client would (partial heads, malformed lines, slow
bytes) and observe exactly what comes back and when the server closes. Time is bounded by
socket timeouts; nothing here sleeps in place of waiting.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import Server


@dataclass
class Listener:
    """One of a server's listeners: where it is and whether it speaks TLS."""

    name: str
    port: int
    tls: bool
    cert: Path | None = None

    def connect(
        self, *, source: str | None = None, timeout: float = 5.0, handshake: bool = True
    ) -> socket.socket:
        """A connected socket (TLS-wrapped and handshaken unless *handshake* is False)."""
        raw = socket.create_connection(
            ("127.0.0.1", self.port),
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        if not self.tls or not handshake:
            return raw
        ctx = ssl.create_default_context(cafile=str(self.cert))
        return ctx.wrap_socket(raw, server_hostname="localhost")


def listeners(server: Server) -> dict[str, Listener]:
    return {
        "https": Listener("https", server.port, True, server.cert_path),
        "redirect": Listener("redirect", server.http_port, False),
    }


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and the seconds that took.

    A reset counts as a close. Fails (TimeoutError) if the connection is still open after
    *timeout* seconds without a byte.
    """
    start = time.monotonic()
    sock.settimeout(timeout)
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            break
        except ssl.SSLError as exc:
            if "APPLICATION_DATA_AFTER_CLOSE_NOTIFY" in str(exc):
                break
            raise
        if not chunk:
            break
        data += chunk
    return bytes(data), time.monotonic() - start


def parse_response(data: bytes) -> tuple[Response, bytes]:
    """The first response in *data* (by Content-Length) and what follows it."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no complete response head in {data[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    response = Response(status, headers)
    length = int(response.header("content-length") or 0)
    response.body = rest[:length]
    return response, rest[length:]


def exchange(sock: socket.socket, data: bytes, timeout: float = 10.0) -> Response:
    """Send *data*, read one response (keeping the connection open)."""
    sock.sendall(data)
    sock.settimeout(timeout)
    received = bytearray()
    while True:
        _, sep, rest = bytes(received).partition(b"\r\n\r\n")
        if sep:
            response, _ = parse_response(bytes(received))
            length = int(response.header("content-length") or 0)
            if len(rest) >= length:
                return response
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a whole response: {bytes(received)[:300]!r}")
        received += chunk


def rss_kib(pid: int) -> int:
    """Resident memory of *pid*, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid*, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
