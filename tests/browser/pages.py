"""Tiny HTTPS page servers and the Chromium launcher for the browser tests.

A page server answers every ``GET`` with an empty HTML page, so the browser gets a document whose
origin is ``https://<host>:<port>``; the tests then run ``fetch`` inside that document. Pages
are served over HTTPS because cookie "sites" are schemeful: an ``http://127.0.0.1`` page is
cross-site to ``https://127.0.0.1`` and would never be given a ``SameSite=Strict`` cookie.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import wait_until
from tests.support_tls import private_key_pem

#: Flags that keep headless Chromium quiet and offline (no sandbox: tests may run as root).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

PAGE = b"<!doctype html><meta charset=utf-8><title>bastion browser test</title>"

#: Runs in the page: a fetch whose outcome (or the error that blocked it) comes back as JSON.
FETCH_JS = """
async ([url, init]) => {
  try {
    const response = await fetch(url, init);
    const headers = {};
    response.headers.forEach((value, name) => { headers[name] = value; });
    return {status: response.status, headers, body: await response.text()};
  } catch (error) {
    return {error: `${error.name}: ${error.message}`};
  }
}
"""


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway EC certificate for ``localhost`` and ``127.0.0.1`` (cert, key paths)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bastion test pages")])
    now = datetime.datetime.now(datetime.UTC)
    sans = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(sans, critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "pages-cert.pem", directory / "pages-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(private_key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def spki_hash(cert_path: Path) -> str:
    """Base64 SHA-256 of the certificate's public key, as ``--ignore-certificate-errors-spki-list``
    wants it: Chromium then trusts exactly this key (unlike ``ignore_https_errors``, which
    would trust any certificate)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium_args(trusted_certs: Iterable[Path]) -> list[str]:
    pins = ",".join(spki_hash(path) for path in trusted_certs)
    return [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pins}"]


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # Any path: a page under /api/v1/auth/ shares the refresh cookie's Path, which the
        # HttpOnly test needs (cookies are not isolated by port, RFC 6265 §8.5).
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class PageServer(ThreadingHTTPServer):
    """An HTTPS page server on 127.0.0.1 (its own free port), named by *host* in URLs.

    *host* is ``127.0.0.1`` or ``localhost``: the same socket, but a different origin (and a
    different cookie site) to the browser.
    """

    daemon_threads = True

    def __init__(self, host: str, cert: Path, key: Path) -> None:
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.host = host
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.server_address[1]}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the connection's own thread: a browser's idle
        # pre-connection must not block the accept loop.
        sock: socket.socket = request
        sock.settimeout(10)
        try:
            tls_sock = self._tls.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls_sock, client_address)
        finally:
            tls_sock.close()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


@dataclass
class Exchange:
    """One request as Chromium's network stack saw it (a preflight is its own exchange)."""

    method: str
    url: str
    status: int | None = None  # None: no response ever arrived (the request was not sent)
    headers: dict[str, str] = field(default_factory=dict)  # raw response headers, lower-case
    cors_error: str | None = None  # Chromium's CorsError name when the CORS check failed
    request_headers: dict[str, str] = field(default_factory=dict)  # as sent, Cookie included
    blocked_cookies: dict[str, list[str]] = field(default_factory=dict)  # name -> reasons

    def sent_cookies(self) -> dict[str, str]:
        """The cookies the browser actually put on the wire."""
        pairs = (
            p.strip().partition("=") for p in self.request_headers.get("cookie", "").split(";")
        )
        return {name: value for name, _, value in pairs if name}


class NetworkLog:
    """Records a tab's requests through the DevTools protocol.

    Playwright reports no response for a CORS-blocked fetch; the DevTools ``Network`` domain
    does — the raw status and headers (``responseReceivedExtraInfo``) and the exact reason the
    browser refused them (``loadingFailed.corsErrorStatus``) — so a test can tell "blocked by
    CORS" from "the request failed".
    """

    def __init__(self, context: Any, tab: Any) -> None:
        self._tab = tab
        self._by_id: dict[str, Exchange] = {}
        cdp = context.new_cdp_session(tab)
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.requestWillBeSentExtraInfo", self._sent_extra)
        cdp.on("Network.responseReceivedExtraInfo", self._response)
        cdp.on("Network.loadingFailed", self._failed)
        cdp.send("Network.enable")

    def _exchange(self, request_id: str) -> Exchange:
        return self._by_id.setdefault(request_id, Exchange("", ""))

    def _sent(self, params: dict[str, Any]) -> None:
        exchange = self._exchange(params["requestId"])
        exchange.method = params["request"]["method"]
        exchange.url = params["request"]["url"]

    def _sent_extra(self, params: dict[str, Any]) -> None:
        exchange = self._exchange(params["requestId"])
        exchange.request_headers = {k.lower(): v for k, v in params.get("headers", {}).items()}
        for item in params.get("associatedCookies", ()):
            if item.get("blockedReasons"):
                exchange.blocked_cookies[item["cookie"]["name"]] = list(item["blockedReasons"])

    def _response(self, params: dict[str, Any]) -> None:
        exchange = self._exchange(params["requestId"])
        exchange.status = params["statusCode"]
        exchange.headers = {k.lower(): v for k, v in params.get("headers", {}).items()}

    def _failed(self, params: dict[str, Any]) -> None:
        cors = params.get("corsErrorStatus") or {}
        self._exchange(params["requestId"]).cors_error = cors.get("corsError")

    def find(self, method: str, url: str, index: int = 0) -> Exchange:
        """The *index*-th exchange for *method url*, once its response or failure is known."""

        def ready() -> Exchange | None:
            self._tab.evaluate("0")  # let Playwright deliver pending protocol events
            settled = [e for e in self.all(method, url) if e.status is not None or e.cors_error]
            return settled[index] if len(settled) > index else None

        found = wait_until(ready, timeout=10, what=f"{method} {url} in the network log")
        assert isinstance(found, Exchange)
        return found

    def all(self, method: str, url: str) -> list[Exchange]:
        return [e for e in self._by_id.values() if e.method == method and e.url == url]
