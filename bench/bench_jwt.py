"""JWT verification throughput: bastion's verifier against the raw signature check.

Run: ``.venv/bin/python bench/bench_jwt.py`` (add ``--quick`` for a short run).

For ES256, RS256 (the ring's 3072-bit key, and a 2048-bit one for comparison) and EdDSA it
measures verifications per second of:

* ``raw``: ``cryptography``'s ``public_key.verify`` on pre-decoded signature bytes and the
  signing input — no parsing, no claims: the floor no JWT verifier can beat;
* ``bastion decode``: ``TokenVerifier.decode`` — the full verification: size and shape
  checks, header (cached per key), canonical base64url, signature (low-S for ECDSA), JSON,
  every claim;
* ``BearerAuth.verify``: ``decode`` plus the key source's poll and building the
  ``Principal`` (subject, scopes) — what ``Depends(auth)`` does after reading the header;
* ``PyJWT`` and ``joserfc`` (if importable) with key objects parsed once, required claims and
  the same issuer/audience checks;
* two diagnostic rows: ``bastion minus signature`` (``decode`` with the signature check
  stubbed out: the Python bastion adds) and the ratio that overhead implies
  (floor / (floor + overhead)), which is steadier on a busy machine than the ratio of two
  separately measured throughputs.

Every implementation verifies the same pool of distinct tokens (different ``sub``/``jti``),
so nothing can cache a result. Timing uses the process CPU clock, interleaves the
implementations round by round and keeps each one's best round, which makes the figures
stable on a shared machine. The ratio column is ops/s divided by the raw floor's.
"""

from __future__ import annotations

import base64
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bastion.auth.bearer import BearerAuth
from bastion.auth.keys import KeyRing
from bastion.auth.tokens import TokenIssuer, TokenVerifier

ISSUER, AUDIENCE = "https://localhost:8443", "bastion-api"
POOL = 256


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def raw_verifier(ring: KeyRing, tokens: list[str]) -> Callable[[int], None]:
    """The floor: the library's signature check alone, inputs prepared in advance."""
    key = ring.active
    public: Any = key.public_key
    prepared = []
    for value in tokens:
        signing_input, _, signature = value.rpartition(".")
        sig = _b64(signature)
        if key.alg == "ES256":
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            sig = encode_dss_signature(r, s)
        prepared.append((sig, signing_input.encode()))
    if key.alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda i: public.verify(*prepared[i % POOL], ecdsa)
    if key.alg == "RS256":
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda i: public.verify(*prepared[i % POOL], pkcs1, sha256)
    return lambda i: public.verify(*prepared[i % POOL])


def pyjwt_verifier(ring: KeyRing, tokens: list[str]) -> Callable[[int], None]:
    key: Any = ring.active.public_key
    alg = ring.active.alg
    options: Any = {"require": ["exp", "iat", "iss", "aud", "sub", "jti"]}

    def verify(i: int) -> None:
        claims = jwt.decode(
            tokens[i % POOL],
            key,
            algorithms=[alg],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=30,
            options=options,
        )
        if claims.get("type") != "access":
            raise ValueError("type")

    return verify


def joserfc_verifier(ring: KeyRing, tokens: list[str]) -> Callable[[int], None] | None:
    try:
        from joserfc import jwt as jose_jwt
        from joserfc.jwk import ECKey, OKPKey, RSAKey
    except ImportError:
        return None
    key = ring.active
    key_class: Any = {"ES256": ECKey, "RS256": RSAKey, "EdDSA": OKPKey}[key.alg]
    jose_key = key_class.import_key(key.public_jwk())
    registry = jose_jwt.JWTClaimsRegistry(
        leeway=30,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        jti={"essential": True},
        type={"essential": True, "value": "access"},
    )
    algorithms = [key.alg]

    def verify(i: int) -> None:
        decoded = jose_jwt.decode(tokens[i % POOL], jose_key, algorithms=algorithms)
        registry.validate(decoded.claims)

    return verify


def measure(fns: dict[str, Callable[[int], object]], n: int, rounds: int) -> dict[str, float]:
    """Best seconds per call for each function, interleaved round by round (CPU clock)."""
    for fn in fns.values():
        for i in range(min(n, 200)):  # warm-up
            fn(i)
    best = dict.fromkeys(fns, float("inf"))
    clock = time.process_time
    for _ in range(rounds):
        for name, fn in fns.items():
            started = clock()
            for i in range(n):
                fn(i)
            best[name] = min(best[name], (clock() - started) / n)
    return best


def bench(alg: str, rsa_bits: int, n: int, rounds: int) -> list[tuple[str, str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyRing(Path(tmp) / "keys", alg=alg, rsa_bits=rsa_bits)  # type: ignore[arg-type]
        ring.ensure()
        issuer = TokenIssuer(ring, issuer=ISSUER, audience=AUDIENCE)
        verifier = TokenVerifier(ring, issuer=ISSUER, audience=AUDIENCE)
        auth = BearerAuth(key_ring=ring, issuer=ISSUER, audience=AUDIENCE)
        tokens = [issuer.issue(uuid.uuid4(), "user").token for _ in range(POOL)]
        fns: dict[str, Callable[[int], object]] = {
            "raw cryptography": raw_verifier(ring, tokens),
            "bastion decode": lambda i: verifier.decode(tokens[i % POOL]),
            "BearerAuth.verify": lambda i: auth.verify(tokens[i % POOL]),
            "PyJWT 2.x (cached key)": pyjwt_verifier(ring, tokens),
        }
        jose = joserfc_verifier(ring, tokens)
        if jose is not None:
            fns["joserfc (cached key)"] = jose
        for fn in fns.values():  # every implementation accepts every token
            for i in range(POOL):
                fn(i)
        # Diagnostic: the same decode with the signature check replaced by a no-op, i.e. the
        # Python bastion wraps around the library call (its share decides the ratio).
        unsigned = TokenVerifier(ring, issuer=ISSUER, audience=AUDIENCE)
        unsigned.decode(tokens[0])
        for key in unsigned._headers.values():
            object.__setattr__(key, "verify", lambda signature, data: None)
        fns["bastion minus signature"] = lambda i: unsigned.decode(tokens[i % POOL])
        best = measure(fns, n, rounds)
    label = f"{alg}" + (f"-{rsa_bits}" if alg == "RS256" else "")
    floor = best["raw cryptography"]
    rows = [(label, name, 1 / seconds, floor / seconds) for name, seconds in best.items()]
    overhead = best.pop("bastion minus signature")
    rows.append(
        (label, "floor / (floor + that)", 1 / (floor + overhead), floor / (floor + overhead))
    )
    return rows


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    n, rounds = (300, 5) if quick else (2000, 15)
    print(f"JWT verify, ops/s per core (best of {rounds} interleaved rounds of {n}, CPU time)")
    print(f"Python {sys.version.split()[0]}, PyJWT {jwt.__version__}")
    print(f"{'alg':<11} {'implementation':<24} {'ops/s':>10} {'vs raw':>8} {'us/op':>8}")
    cases = [("ES256", 3072), ("RS256", 3072), ("RS256", 2048), ("EdDSA", 3072)]
    for alg, bits in cases:
        for label, name, ops, ratio in bench(alg, bits, n, rounds):
            print(f"{label:<11} {name:<24} {ops:>10,.0f} {ratio:>8.1%} {1e6 / ops:>8.1f}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
