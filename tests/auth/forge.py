"""An attacker's toolbox: hand-made JWTs with any header, payload and signature.

Nothing here uses bastion's issuer, so a forged token is exactly what an attacker could
build: the only secret it may use is one the test hands it (the real private key, to show
that a *claim* or *header* check — not the signature — refuses the token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bastion.auth.keys import PrivateKey, PublicKey, public_jwk

ISSUER = "https://localhost:8443"
AUDIENCE = "bastion-api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid access-token claims for a random user; ``name=None`` removes a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
        "type": "access",
        "role": "user",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign_raw(key: PrivateKey, alg: str, data: bytes, *, high_s: bool | None = False) -> bytes:
    """The JWS signature bytes of *data* (ECDSA as R||S, RFC 7518 §3.4).

    ECDSA comes in low-S form (as bastion and careful issuers sign), or its high-S twin with
    ``high_s=True``, or as OpenSSL made it (either, at random) with ``high_s=None``.
    """
    if alg.startswith("ES"):
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        size = (key.curve.key_size + 7) // 8
        hash_alg = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_alg[alg])))
        if high_s is not None and alg in curve_orders():
            n = curve_orders()[alg]
            s = max(s, n - s) if high_s else min(s, n - s)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg.startswith("RS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        hash_alg = {"RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512()}
        return key.sign(data, padding.PKCS1v15(), hash_alg[alg])
    if alg.startswith("PS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return key.sign(data, pss, hashes.SHA256())
    if alg in {"EdDSA", "Ed25519"}:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(data)
    raise ValueError(alg)


def curve_orders() -> dict[str, int]:
    from bastion.auth.jwk import curve_order

    return {alg: curve_order(alg) for alg in ("ES256", "ES384", "ES512")}


def token(
    header: dict[str, Any],
    payload: dict[str, Any],
    *,
    key: PrivateKey | None = None,
    alg: str | None = None,
    hmac_secret: bytes | None = None,
    signature: bytes | None = None,
    high_s: bool | None = False,
) -> str:
    """A compact JWS. Sign with *key* (as *alg*, default the header's; ECDSA low-S unless
    *high_s*), HMAC with *hmac_secret*, or append a given *signature* (default: none)."""
    signing_input = f"{segment(header)}.{segment(payload)}".encode()
    alg = alg or str(header.get("alg"))
    if key is not None:
        signature = sign_raw(key, alg, signing_input, high_s=high_s)
    elif hmac_secret is not None:
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        signature = hmac.new(hmac_secret, signing_input, digest).digest()
    return f"{signing_input.decode()}.{b64(signature or b'')}"


def public_key_encodings(public: PublicKey, kid: str, alg: str) -> dict[str, bytes]:
    """The public key in every form an HMAC key-confusion attack would try (pitfall #16)."""
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk = {**public_jwk(public), "kid": kid, "alg": alg, "use": "sig"}
    forms = {
        "pem": pem,
        "pem-crlf": pem.replace(b"\n", b"\r\n"),
        "pem-no-newline": pem.rstrip(b"\n"),
        "der": der,
        "jwk-json": json.dumps(jwk).encode(),
        "jwks-json": json.dumps({"keys": [jwk]}).encode(),
        "jwk-x-raw": base64.urlsafe_b64decode(jwk.get("x", jwk.get("n", "")) + "=="),
        "openssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    }
    if isinstance(public, rsa.RSAPublicKey):
        forms["pkcs1-pem"] = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        )
    return forms
