"""A local OpenID provider for tests: discovery and JWKS over real HTTP on loopback.

    issuer = LocalIssuer()                 # ES256 key, serving at once
    issuer.url                             # "http://127.0.0.1:<port>/realms/test" (its iss)
    token = issuer.token(sub="42", scope="orders:read")
    issuer.hits["jwks"]                    # how many times the JWKS was fetched
    issuer.stop(); issuer.start()          # the issuer goes down and comes back (same port)
    kid = issuer.rotate("RS256")           # a new key, published in the JWKS

Like a real provider (Keycloak's layout), the issuer has a path; its keys are served with
``Cache-Control: max-age=600`` unless told otherwise. Tokens are signed the way a careful
issuer signs them (ECDSA in low-S form); ``high_s=True`` gives the malleable twin.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bastion.auth.keys import PrivateKey, public_jwk
from tests.auth import forge
from tests.support import free_port

REALM = "/realms/test"
DISCOVERY = REALM + "/.well-known/openid-configuration"
JWKS = REALM + "/protocol/openid-connect/certs"
AUDIENCE = "orders-api"


def new_key(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(65537, 2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(alg)


class LocalIssuer:
    """An OpenID provider on 127.0.0.1 that counts what it serves (module docstring)."""

    def __init__(self, alg: str = "ES256", *, cache_control: str | None = "max-age=600") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{REALM}"
        self.keys: dict[str, tuple[str, PrivateKey]] = {}
        self.published: list[str] = []
        self.kid = self.rotate(alg)
        self.cache_control = cache_control
        self.discovery_issuer: str | None = None  # None: our own url (a mismatch when set)
        self.jwks_uri: str | None = None  # None: our own JWKS URL
        self.jwks_body: bytes | None = None  # served instead of the JWKS when set
        self.delay = 0.0  # seconds before answering the JWKS (concurrency tests)
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    # --- keys and tokens -----------------------------------------------------------------------

    def rotate(self, alg: str = "ES256", *, publish: bool = True) -> str:
        """Add a key (published in the JWKS unless told otherwise); return its kid."""
        kid = f"{alg.lower()}-{uuid.uuid4().hex[:12]}"
        self.keys[kid] = (alg, new_key(alg))
        if publish:
            self.published.append(kid)
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            alg, private = self.keys[kid]
            keys.append({**public_jwk(private.public_key()), "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Standard access-token claims (``name=None`` removes one)."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url,
            "sub": "42",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "scope": "orders:read",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def token(
        self,
        *,
        kid: str | None = None,
        header: dict[str, Any] | None = None,
        high_s: bool = False,
        **claims: Any,
    ) -> str:
        """A token signed by key *kid* (default: the first key), claims as :meth:`claims`."""
        kid = kid or self.kid
        alg, private = self.keys[kid]
        head = {"alg": alg, "kid": kid, "typ": "JWT", **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        payload = self.claims(**claims)
        signing_input = f"{forge.segment(head)}.{forge.segment(payload)}".encode()
        signature = forge.sign_raw(private, alg, signing_input, high_s=high_s)
        return f"{signing_input.decode()}.{forge.b64(signature)}"

    # --- HTTP ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve (again, on the same port)."""
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer._answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Go down: the port refuses connections until :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        if path == DISCOVERY:
            with self._lock:
                self.hits["discovery"] += 1
            body = json.dumps(
                {
                    "issuer": self.discovery_issuer or self.url,
                    "jwks_uri": self.jwks_uri or f"http://127.0.0.1:{self.port}{JWKS}",
                    "id_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
                }
            ).encode()
        elif path == JWKS:
            with self._lock:
                self.hits["jwks"] += 1
            if self.delay:
                time.sleep(self.delay)
            body = (
                self.jwks_body if self.jwks_body is not None else json.dumps(self.jwks()).encode()
            )
        else:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        if self.cache_control is not None:
            handler.send_header("Cache-Control", self.cache_control)
        handler.end_headers()
        handler.wfile.write(body)
